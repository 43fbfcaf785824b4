//! The one evaluation path. OFREP, `ripcord.v1` and flagd's services each authenticate and
//! read the context in their own way, then come here to find the environment, note the
//! calling instance for a kill's reach, keep to what the key may see, evaluate and count;
//! what comes back they only encode.

use std::sync::Arc;

use ripcord_engine::{evaluate_flag, evaluate_typed, CompiledFlag, Context, Evaluation, FlagType};

use crate::environment::Environment;
use crate::service::Service;
use crate::store::Scope;
use crate::telemetry::Evaluations;

/// Who evaluates, and where.
pub struct Caller<'a> {
    /// `None` for an anonymous flagd call: see [`crate::access::sees`].
    pub scope: Option<Scope>,
    pub environment: &'a str,
    /// The raw value of the call's instance header, if it had one (see [`crate::reach`]).
    pub instance: Option<&'a [u8]>,
}

/// An environment opened for one call's evaluations.
pub struct Evaluator {
    environment: Arc<Environment>,
    scope: Option<Scope>,
}

/// One flag's evaluation.
pub struct Evaluated<'a> {
    pub flag: &'a CompiledFlag,
    pub evaluation: Evaluation<'a>,
}

impl Evaluator {
    /// The caller's environment as it is now, with the instance noted as having fetched its
    /// revision. `None` when the environment is not here: deleted while the call came in
    /// (which revoked the key), or, with a shared store, not arrived at this node yet.
    ///
    /// Callers open it only once the request is read whole: opened before, a slow upload
    /// would be evaluated against flags older than writes acknowledged while it was sent.
    pub fn open(service: &Service, caller: &Caller<'_>) -> Option<Evaluator> {
        let environment = service.environment(caller.environment)?;
        service
            .reach()
            .record_header(&environment.name, caller.instance, environment.revision);
        Some(Evaluator {
            environment,
            scope: caller.scope,
        })
    }

    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// Evaluates the flag `key`, counted; `None` when there is no such flag or the caller may
    /// not see it, which are told apart by nobody, so that a client key cannot learn which
    /// server-side flags exist. With `expected`, a flag of another type answers
    /// `TYPE_MISMATCH` (an integer flag satisfies a float).
    pub fn one(
        &self,
        counts: &Evaluations,
        key: &str,
        context: &Context,
        expected: Option<FlagType>,
    ) -> Option<Evaluated<'_>> {
        let snapshot = &self.environment.snapshot;
        let flag = snapshot
            .flag(key)
            .filter(|flag| crate::access::sees(self.scope, flag))?;
        let evaluation = match expected {
            Some(expected) => evaluate_typed(snapshot, key, context, expected),
            None => evaluate_flag(flag, context),
        };
        counts
            .recorder(&self.environment.name)
            .record(flag.key(), evaluation.reason);
        Some(Evaluated { flag, evaluation })
    }

    /// Evaluates every flag the caller may see, in key order, counted. `each` receives them
    /// one by one, so that a protocol can encode each as it comes instead of collecting them.
    pub fn all<'s>(
        &'s self,
        counts: &Evaluations,
        context: &Context,
        mut each: impl FnMut(Evaluated<'s>),
    ) {
        let counters = self.environment.counters(counts);
        for (position, flag) in self
            .environment
            .snapshot
            .flags()
            .enumerate()
            .filter(|(_, flag)| crate::access::sees(self.scope, flag))
        {
            let evaluation = evaluate_flag(flag, context);
            counters.record(position, evaluation.reason);
            each(Evaluated { flag, evaluation });
        }
    }

    /// How many flags the snapshot holds: room enough for [`all`](Self::all)'s.
    pub fn flag_count(&self) -> usize {
        self.environment.snapshot.len()
    }
}
