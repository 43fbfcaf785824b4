//! The delivery feed: every snapshot the service installs, announced to the streams that SDKs
//! follow (gRPC `Watch`, server-sent events), with the delta from the revision before.
//!
//! A stream subscribes first and reads the current environment second, then skips updates
//! at or below the revision it has sent: no change falls between the two. The last deltas of
//! each environment are kept so that a client coming back at a recent revision gets only
//! what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ripcord_engine::RulesetDelta;
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::environment::{Environment, Frames, Framing};

/// Deltas kept per environment for clients that resume.
const HISTORY: usize = 256;
/// Updates a slow stream may fall behind by before it must start over from a whole ruleset.
const CAPACITY: usize = 1024;

/// One revision's change, serialized once for every stream.
#[derive(Debug)]
pub struct Delta {
    pub from_revision: u64,
    pub revision: u64,
    /// The `RulesetDelta` as JSON.
    pub json: Bytes,
    /// The flags whose evaluation may have changed, by key.
    pub changed_flags: Vec<String>,
    frames: Frames,
}

impl Delta {
    pub fn new(
        from_revision: u64,
        revision: u64,
        json: Bytes,
        changed_flags: Vec<String>,
    ) -> Delta {
        Delta {
            from_revision,
            revision,
            json,
            changed_flags,
            frames: Frames::default(),
        }
    }

    /// The delta as a stream of `framing` sends it, encoded by `encode` once.
    pub fn frame(&self, framing: Framing, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.frames.get(framing, encode)
    }
}

#[derive(Debug, Clone)]
pub enum Update {
    /// The environment is at a new revision. `delta` is absent when the previous revision is
    /// not known here (the environment was just created, or reloaded whole).
    Changed {
        environment: Arc<Environment>,
        delta: Option<Arc<Delta>>,
    },
    Deleted {
        name: String,
    },
}

impl Update {
    pub fn environment_name(&self) -> &str {
        match self {
            Update::Changed { environment, .. } => &environment.name,
            Update::Deleted { name } => name,
        }
    }
}

pub struct Feed {
    sender: broadcast::Sender<Arc<Update>>,
    history: Mutex<FxHashMap<String, VecDeque<Arc<Delta>>>>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            sender: broadcast::channel(CAPACITY).0,
            history: Mutex::default(),
        }
    }
}

impl Feed {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.sender.subscribe()
    }

    /// Announces a newly installed environment (or its deletion). Called by the service with
    /// its writer lock held, so announcements come in revision order.
    pub fn publish(&self, previous: Option<&Arc<Environment>>, current: Option<&Arc<Environment>>) {
        let update = match (previous, current) {
            (_, None) => {
                let Some(previous) = previous else { return };
                self.history().remove(&previous.name);
                Update::Deleted {
                    name: previous.name.clone(),
                }
            }
            (Some(previous), Some(current)) if current.revision > previous.revision => {
                let delta = RulesetDelta::between(&previous.ruleset(), &current.ruleset());
                let delta = Arc::new(Delta::new(
                    delta.from_revision,
                    delta.revision,
                    Bytes::from(delta.to_json()),
                    delta.changed_flags().map(str::to_string).collect(),
                ));
                let mut history = self.history();
                let deltas = history.entry(current.name.clone()).or_default();
                if deltas.len() == HISTORY {
                    deltas.pop_front();
                }
                deltas.push_back(Arc::clone(&delta));
                Update::Changed {
                    environment: Arc::clone(current),
                    delta: Some(delta),
                }
            }
            (previous, Some(current)) => {
                // Created, recreated, or reloaded at a revision not after the one served: the
                // history no longer leads here.
                if previous.is_some_and(|previous| previous.revision == current.revision) {
                    return;
                }
                self.history().remove(&current.name);
                Update::Changed {
                    environment: Arc::clone(current),
                    delta: None,
                }
            }
        };
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(Arc::new(update));
    }

    /// The deltas that take an environment from `revision` to `current`, in order, if every
    /// one of them is still kept. Empty when `revision` is `current`.
    pub fn deltas_since(
        &self,
        environment: &str,
        revision: u64,
        current: u64,
    ) -> Option<Vec<Arc<Delta>>> {
        if revision == current {
            return Some(Vec::new());
        }
        if revision > current {
            return None;
        }
        let history = self.history();
        let deltas = history.get(environment)?;
        let start = deltas
            .iter()
            .position(|delta| delta.from_revision == revision)?;
        let chain: Vec<Arc<Delta>> = deltas.iter().skip(start).cloned().collect();
        // Contiguous and ending where the caller's snapshot is; anything else (a gap after a
        // reload) means starting over.
        let contiguous = chain
            .windows(2)
            .all(|pair| pair[0].revision == pair[1].from_revision);
        let chain: Vec<Arc<Delta>> = chain
            .into_iter()
            .take_while(|delta| delta.revision <= current)
            .collect();
        (contiguous && chain.last().is_some_and(|last| last.revision == current)).then_some(chain)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, VecDeque<Arc<Delta>>>> {
        // The map is only ever left consistent: a panic elsewhere does not poison its data.
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
