//! What each kind of key may do: decided here once, for HTTP and gRPC alike.
//!
//! | scope  | evaluate | sees flags not client-visible | ruleset | report | judge | administer |
//! |--------|----------|-------------------------------|---------|--------|-------|------------|
//! | client | yes      | no                            | no      | yes    | no    | no         |
//! | server | yes      | yes                           | yes     | yes    | yes   | no         |
//! | admin  | no       | —                             | no      | no     | yes   | yes        |
//!
//! Client keys ship inside apps, where anyone can read them: they see only the flags marked
//! client-visible, never a ruleset (which holds every flag and rule), and spend no server
//! CPU on the judge. Admin keys belong to no environment, so nothing that happens inside
//! one (evaluating, following its ruleset, reporting metrics for it) is theirs to do.
//!
//! A refusal is a [`Denied`]; each protocol answers it as its own "forbidden" (HTTP 403,
//! gRPC `PERMISSION_DENIED`) with the same message.

use ripcord_engine::CompiledFlag;

use crate::principal::Principal;
use crate::store::Scope;

/// Something a key may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Evaluate flags of its environment (OFREP, `ripcord.v1`, flagd).
    Evaluate,
    /// Read its environment's ruleset, or follow it (`/api/v1/sdk/*`, `Watch`).
    FetchRuleset,
    /// Post metric observations for running ramps of its environment.
    Report,
    /// Run the judge, which reads nothing of an environment but costs CPU.
    Judge,
    /// Use the admin API.
    Administer,
}

/// Whether a key of `scope` may do `action`: the table of the module's documentation.
pub fn allows(scope: Scope, action: Action) -> bool {
    match action {
        Action::Evaluate | Action::Report => scope != Scope::Admin,
        Action::FetchRuleset => scope == Scope::Server,
        Action::Judge => scope != Scope::Client,
        Action::Administer => scope == Scope::Admin,
    }
}

/// Whether a caller sees every flag of its environment, client-visible or not. `None` is an
/// anonymous flagd call, allowed only when the operator opened flagd's services to
/// anonymous calls, and which then sees every flag.
pub fn sees_all(scope: Option<Scope>) -> bool {
    scope != Some(Scope::Client)
}

/// Whether a caller may see `flag` (see [`sees_all`]).
pub fn sees(scope: Option<Scope>, flag: &CompiledFlag) -> bool {
    sees_all(scope) || flag.is_client_visible()
}

/// A valid key that may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub scope: Scope,
    pub action: Action,
}

impl Denied {
    pub fn message(&self) -> String {
        let scope = self.scope.as_str();
        match self.action {
            Action::Evaluate => {
                "admin keys do not evaluate flags: use a client or server key of the environment"
                    .to_string()
            }
            Action::Report => {
                "admin keys do not report metrics: use a client or server key of the environment"
                    .to_string()
            }
            Action::FetchRuleset => {
                format!("this is a {scope} key; rulesets are delivered to server keys only")
            }
            Action::Judge => {
                format!("this is a {scope} key; the judge needs an admin or a server key")
            }
            Action::Administer => {
                format!("this is a {scope} key; the admin API needs an admin key")
            }
        }
    }
}

impl From<Denied> for crate::error::Error {
    fn from(denied: Denied) -> crate::error::Error {
        crate::error::Error::Forbidden(denied.message())
    }
}

/// Checks that `principal` may do `action`.
pub fn check(principal: &Principal, action: Action) -> Result<(), Denied> {
    if allows(principal.scope, action) {
        Ok(())
    } else {
        Err(Denied {
            scope: principal.scope,
            action,
        })
    }
}

/// The environment in which `principal` does `action`, one that happens inside an
/// environment: its own. A key that may do it but has no environment cannot be stored;
/// should one be, it is refused as if its scope did not allow it.
pub fn environment(principal: &Principal, action: Action) -> Result<&str, Denied> {
    check(principal, action)?;
    principal.environment.as_deref().ok_or(Denied {
        scope: principal.scope,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_does_what_the_table_says() {
        use Action::*;
        let table = [
            (Scope::Client, [true, false, true, false, false]),
            (Scope::Server, [true, true, true, true, false]),
            (Scope::Admin, [false, false, false, true, true]),
        ];
        for (scope, allowed) in table {
            for (action, allowed) in [Evaluate, FetchRuleset, Report, Judge, Administer]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(allows(scope, action), allowed, "{scope:?} {action:?}");
            }
        }
    }

    #[test]
    fn keys_act_in_their_own_environment_only() {
        let key = |scope, environment: Option<&str>| Principal {
            name: "k".to_string(),
            scope,
            environment: environment.map(str::to_string),
            event_channel: None,
        };
        assert_eq!(
            environment(&key(Scope::Client, Some("prod")), Action::Evaluate),
            Ok("prod")
        );
        let refused = environment(&key(Scope::Client, Some("prod")), Action::FetchRuleset)
            .expect_err("client keys get no ruleset");
        assert_eq!(
            refused.message(),
            "this is a client key; rulesets are delivered to server keys only"
        );
        assert!(environment(&key(Scope::Admin, None), Action::Evaluate).is_err());
        assert!(environment(&key(Scope::Server, None), Action::Report).is_err());
    }
}
