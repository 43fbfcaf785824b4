//! The one evaluation path. OFREP, `ripcord.v1` and flagd's services each authenticate and
//! read the context in their own way, then come here to find the environment, note the
//! calling instance for a kill's reach, keep to what the key may see, evaluate and count;
//! what comes back they only encode.

use std::sync::Arc;

use ripcord_engine::{
    evaluate_flag, evaluate_flag_with, evaluate_typed, CompiledFlag, Context, Evaluation, FlagType,
    Memo,
};

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
    /// The flag's position in the snapshot's [`flags`](ripcord_engine::Snapshot::flags).
    pub position: usize,
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
        Some(Evaluator::new(environment, caller.scope))
    }

    /// Evaluations of `environment` for a key of `scope`, with no service around them: for
    /// the load benchmark's floor, which measures evaluating alone.
    pub fn new(environment: Arc<Environment>, scope: Option<Scope>) -> Evaluator {
        Evaluator { environment, scope }
    }

    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// The OFREP answer pieces of the environment's flags.
    pub fn ofrep_pieces(&self) -> &crate::answers::OfrepPieces {
        self.environment.ofrep_pieces()
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
        let (position, flag) = snapshot
            .find(key)
            .filter(|(_, flag)| crate::access::sees(self.scope, flag))?;
        let evaluation = match expected {
            Some(expected) => evaluate_typed(snapshot, key, context, expected),
            None => evaluate_flag(flag, context),
        };
        counts
            .recorder(&self.environment.name)
            .record(flag.key(), evaluation.reason);
        Some(Evaluated {
            position,
            flag,
            evaluation,
        })
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
        self.each(context, |evaluated| {
            counters.record(evaluated.position, evaluated.evaluation.reason);
            each(evaluated);
        });
    }

    /// Evaluates every flag the caller may see, in key order, not counted: for a person
    /// trying contexts out to see why each flag answers as it does, whose tries are not
    /// traffic. The evaluations are those [`all`](Self::all) gives, metadata and all.
    pub fn explain<'s>(&'s self, context: &Context, each: impl FnMut(Evaluated<'s>)) {
        self.each(context, each);
    }

    fn each<'s>(&'s self, context: &Context, mut each: impl FnMut(Evaluated<'s>)) {
        let snapshot = &self.environment.snapshot;
        let mut memo = Memo::default();
        let mut visit = |position: usize, flag: &'s CompiledFlag| {
            if !crate::access::sees(self.scope, flag) {
                return;
            }
            let evaluation = evaluate_flag_with(flag, context, &mut memo);
            each(Evaluated {
                position,
                flag,
                evaluation,
            });
        };
        if crate::access::sees_all(self.scope) {
            for (position, flag) in snapshot.flags().enumerate() {
                visit(position, flag);
            }
        } else {
            // Only client-visible flags can be seen: those are visited, not every flag.
            for &position in self.environment.client_visible() {
                if let Some(flag) = snapshot.flag_at(position) {
                    visit(position, flag);
                }
            }
        }
    }

    /// How many flags [`all`](Self::all) can give at most: every flag of the snapshot, or
    /// for a key that sees only client-visible flags, those.
    pub fn flag_count(&self) -> usize {
        if crate::access::sees_all(self.scope) {
            self.environment.snapshot.len()
        } else {
            self.environment.client_visible().len()
        }
    }
}
