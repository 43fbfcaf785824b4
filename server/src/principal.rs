//! Who a request acts as. A module of its own because both the scope policy (`access`) and
//! the key table (`service::keys`) need it, and the key table asks the policy which keys
//! evaluate: kept in either, the two would import each other.

use crate::store::Scope;

/// The key a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    pub environment: Option<String>,
    /// The OFREP event-stream channel of the key's token, worked out once when the key is
    /// loaded rather than on every bulk evaluation that advertises it. `None` for the
    /// server's own principals, which have no token.
    pub event_channel: Option<String>,
}
