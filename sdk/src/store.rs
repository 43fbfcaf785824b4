//! The ruleset a local client serves, between the two sides that use it: the follower
//! (`follow`) installs what the server sends, and the client (`local`) evaluates from it and
//! hands out subscriptions to its changes.
//!
//! Evaluation loads the current ruleset through an `ArcSwap`, so it takes no lock and never
//! waits for the follower: it costs what the engine costs, plus a pointer load.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwapOption, Guard};
use ripcord_engine::context::AttributeName;
use ripcord_engine::document::MetricKind;
use ripcord_engine::{Document, Snapshot};
use tokio::sync::watch;

use crate::error::Error;

/// What the follower and the client share.
pub(crate) struct Store {
    installed: ArcSwapOption<Installed>,
    /// Bumped at every install; subscriptions wait on it. Taken out by
    /// [`end_subscriptions`](Store::end_subscriptions).
    generation: Mutex<Option<watch::Sender<u64>>>,
    progress: Mutex<Progress>,
}

/// How the ruleset and its stream are doing: the client's status, less what tracking adds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub(crate) revision: Option<u64>,
    pub(crate) from_server: bool,
    pub(crate) connected: bool,
    pub(crate) last_error: Option<Error>,
}

/// A ruleset ready to serve: its snapshot, and what `track` needs of its ramps.
pub(crate) struct Installed {
    pub(crate) snapshot: Arc<Snapshot>,
    /// The flags with a ramp, by key. Looked up on every evaluation of a reporting client:
    /// a fast hash, fit for the keys of the ruleset, which come from its authors.
    pub(crate) ramps: rustc_hash::FxHashMap<Box<str>, RampGuards>,
}

/// What `track` needs of a flag's ramp.
pub(crate) struct RampGuards {
    /// The attribute that names the unit.
    pub(crate) stickiness: AttributeName,
    /// Each guard's metric and its kind.
    pub(crate) guards: Vec<(Box<str>, MetricKind)>,
}

impl Installed {
    fn new(snapshot: Snapshot, document: &Document) -> Installed {
        let ramps = document
            .flags
            .iter()
            .filter_map(|(key, flag)| {
                let ramp = flag.ramp.as_ref()?;
                let stickiness = flag
                    .rollout
                    .as_ref()
                    .map_or(ripcord_engine::document::DEFAULT_STICKINESS, |rollout| {
                        rollout.stickiness()
                    });
                let guards = ramp
                    .guards
                    .iter()
                    .map(|guard| (guard.metric.as_str().into(), guard.kind))
                    .collect();
                Some((
                    key.as_str().into(),
                    RampGuards {
                        stickiness: AttributeName::new(stickiness),
                        guards,
                    },
                ))
            })
            .collect();
        Installed {
            snapshot: Arc::new(snapshot),
            ramps,
        }
    }
}

impl Store {
    pub(crate) fn new() -> Store {
        let (generation, _) = watch::channel(0);
        Store {
            installed: ArcSwapOption::empty(),
            generation: Mutex::new(Some(generation)),
            progress: Mutex::new(Progress::default()),
        }
    }

    /// Serves `snapshot`, compiled from `document`, from now on and wakes the
    /// subscriptions.
    pub(crate) fn install(&self, snapshot: Snapshot, document: &Document, from_server: bool) {
        let revision = snapshot.revision();
        self.installed
            .store(Some(Arc::new(Installed::new(snapshot, document))));
        if let Ok(mut progress) = self.progress.lock() {
            progress.revision = Some(revision);
            progress.from_server |= from_server;
            if from_server {
                progress.last_error = None;
            }
        }
        if let Ok(generation) = self.generation.lock() {
            if let Some(generation) = generation.as_ref() {
                generation.send_modify(|generation| *generation += 1);
            }
        }
    }

    /// The ruleset served, without taking a lock.
    pub(crate) fn installed(&self) -> Guard<Option<Arc<Installed>>> {
        self.installed.load()
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.connected = connected;
        }
    }

    pub(crate) fn set_error(&self, error: Error) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.last_error = Some(error);
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress
            .lock()
            .map(|progress| progress.clone())
            .unwrap_or_default()
    }

    /// Wakes at every install; `None` once subscriptions have ended.
    pub(crate) fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        self.generation
            .lock()
            .ok()?
            .as_ref()
            .map(watch::Sender::subscribe)
    }

    /// Ends every subscription, now and to come. Subscriptions hold the store, and with it
    /// the sender they wait on: unless it goes, a subscription would wait for ever.
    pub(crate) fn end_subscriptions(&self) {
        if let Ok(mut generation) = self.generation.lock() {
            generation.take();
        }
    }

    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.installed
            .load()
            .as_deref()
            .map(|installed| Arc::clone(&installed.snapshot))
    }

    pub(crate) fn flag_revision(&self, key: &str) -> Option<u64> {
        self.installed
            .load()
            .as_deref()
            .and_then(|installed| installed.snapshot.flag(key))
            .map(|flag| flag.revision())
    }
}
