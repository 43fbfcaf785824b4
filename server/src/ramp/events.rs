//! What an operator's screen follows live: every committed change of an environment, every
//! ramp decision and every incident, as numbered events. The last [`KEPT`] are kept in
//! memory, so that a client that lost its connection resumes where it was; one that fell
//! further behind, or comes back after a restart, is told to start over.
//!
//! Changes come from the service's feed, so they include those made by other nodes sharing
//! the store; ramp decisions and incidents are those of this node's controller.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::feed::Update;

/// Events kept for clients that resume.
pub const KEPT: usize = 1024;

/// One event, as the stream sends it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminEvent {
    /// An environment is at a new revision: created, changed by anyone (a person, an import,
    /// the ramp controller), or reloaded.
    Change {
        environment: String,
        revision: u64,
        /// The flags whose evaluation may have changed; absent when not known (a new or
        /// reloaded environment): then any flag may have.
        #[serde(skip_serializing_if = "Option::is_none")]
        flags: Option<Vec<String>>,
    },
    /// An environment was deleted.
    EnvironmentDeleted { environment: String },
    /// A ramp decision that the audit log keeps: `start`, `hold` (when its cause changes),
    /// `advance`, `pause`, `resume`, `kill`, `complete` or `abort`.
    Ramp {
        environment: String,
        flag: String,
        action: String,
        /// Who: a key's name, or `ramp-controller`.
        actor: String,
        reason: String,
        generation: u64,
        /// The ramp's status after the decision.
        status: String,
        stage: u32,
        percentage: f64,
        time: String,
    },
    /// The guard recorded an incident (a kill, or a pause on a regression): its id for
    /// `GET /api/v1/incidents/{id}`.
    Incident {
        id: u64,
        environment: String,
        flag: String,
        action: String,
        reason: String,
        time: String,
    },
}

/// An event with its place in the sequence.
#[derive(Debug, Clone)]
pub struct Numbered {
    pub sequence: u64,
    pub event: Arc<AdminEvent>,
}

/// Where a stream resumes.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// After this sequence number: every later event is still kept.
    After(u64),
    /// What the client last saw is no longer kept, or came from before a restart: it must
    /// read the state afresh; events continue after this sequence number.
    Reset(u64),
}

/// The kept events and their numbering.
pub struct Events {
    /// Tells event ids of this process from those of an earlier one.
    epoch: u64,
    ring: Mutex<Ring>,
    /// The sequence number of the latest event: streams wait on it.
    latest: watch::Sender<u64>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Numbered>,
    /// The latest sequence number given out.
    latest: u64,
    /// Every event after this one is kept: a client that saw an event before it missed some.
    floor: u64,
}

impl Events {
    pub fn new(epoch: u64) -> Events {
        Events {
            epoch,
            ring: Mutex::default(),
            latest: watch::channel(0).0,
        }
    }

    pub fn publish(&self, event: AdminEvent) {
        let sequence = {
            let mut ring = self.ring();
            ring.latest += 1;
            let sequence = ring.latest;
            if ring.events.len() == KEPT {
                if let Some(oldest) = ring.events.pop_front() {
                    ring.floor = oldest.sequence;
                }
            }
            ring.events.push_back(Numbered {
                sequence,
                event: Arc::new(event),
            });
            sequence
        };
        self.latest.send_replace(sequence);
    }

    /// Waits on the latest sequence number.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The id an event is sent with: the process's epoch and the sequence number.
    pub fn id(&self, sequence: u64) -> String {
        format!("{}-{sequence}", self.epoch)
    }

    /// Where a stream whose client sent `last_event_id` resumes. Without one it starts with
    /// the next event.
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let ring = self.ring();
        let Some(id) = last_event_id.map(str::trim).filter(|id| !id.is_empty()) else {
            return Resume::After(ring.latest);
        };
        let seen = id
            .split_once('-')
            .filter(|(epoch, _)| epoch.parse() == Ok(self.epoch))
            .and_then(|(_, sequence)| sequence.parse::<u64>().ok());
        match seen {
            Some(seen) if seen >= ring.floor && seen <= ring.latest => Resume::After(seen),
            _ => Resume::Reset(ring.latest),
        }
    }

    /// The events after `sequence`, or `None` when some of them are no longer kept.
    pub fn after(&self, sequence: u64) -> Option<Vec<Numbered>> {
        let ring = self.ring();
        if sequence < ring.floor {
            return None;
        }
        Some(
            ring.events
                .iter()
                .filter(|numbered| numbered.sequence > sequence)
                .cloned()
                .collect(),
        )
    }

    /// The latest sequence number given out.
    pub fn latest(&self) -> u64 {
        self.ring().latest
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Each change leaves the ring whole: a panic elsewhere does not poison its data.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes the feed's changes until `stop` fires.
    pub fn relay(
        self: &Arc<Self>,
        mut updates: broadcast::Receiver<Arc<Update>>,
        mut stop: crate::shutdown::Signal,
    ) -> tokio::task::JoinHandle<()> {
        let events = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let update = tokio::select! {
                    update = updates.recv() => update,
                    () = stop.stopped() => return,
                };
                match update {
                    Ok(update) => events.publish(change(&update)),
                    // Changes were missed: which environments they touched is not known,
                    // so every client is told to start over.
                    Err(broadcast::error::RecvError::Lagged(_)) => events.forget(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// Makes every event given out so far count as missed: every stream, and every client
    /// that resumes, is told to start over.
    fn forget(&self) {
        let latest = {
            let mut ring = self.ring();
            ring.events.clear();
            // A number that no event has: every client saw one below it.
            ring.latest += 1;
            ring.floor = ring.latest;
            ring.latest
        };
        self.latest.send_replace(latest);
    }
}

fn change(update: &Update) -> AdminEvent {
    match update {
        Update::Changed { environment, delta } => AdminEvent::Change {
            environment: environment.name.clone(),
            revision: environment.revision,
            flags: delta.as_ref().map(|delta| delta.changed_flags.clone()),
        },
        Update::Deleted { name } => AdminEvent::EnvironmentDeleted {
            environment: name.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deleted(name: &str) -> AdminEvent {
        AdminEvent::EnvironmentDeleted {
            environment: name.to_string(),
        }
    }

    #[test]
    fn a_client_resumes_while_what_it_missed_is_kept_and_starts_over_after() {
        let events = Events::new(7);
        assert_eq!(events.resume(None), Resume::After(0));
        assert_eq!(events.resume(Some("7-0")), Resume::After(0));
        for index in 0..3 {
            events.publish(deleted(&format!("e{index}")));
        }
        assert_eq!(events.resume(Some("7-1")), Resume::After(1));
        let missed = events.after(1).unwrap();
        assert_eq!(
            missed.iter().map(|n| n.sequence).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(*missed[0].event, deleted("e1"));
        assert_eq!(events.id(3), "7-3");
        // Another process's ids, ids from the future and garbage all start over.
        for id in ["6-1", "7-4", "x", "7-", "-1", "7-1-1"] {
            assert_eq!(events.resume(Some(id)), Resume::Reset(3), "{id}");
        }

        for index in 3..KEPT + 10 {
            events.publish(deleted(&format!("e{index}")));
        }
        let latest = events.latest();
        assert_eq!(latest, (KEPT + 10) as u64);
        assert_eq!(events.resume(Some("7-1")), Resume::Reset(latest));
        assert!(events.after(1).is_none());
        // The last client that missed nothing dropped saw the event before the oldest kept.
        let floor = latest - KEPT as u64;
        assert_eq!(
            events.resume(Some(&format!("7-{floor}"))),
            Resume::After(floor)
        );
        assert_eq!(events.after(floor).unwrap().len(), KEPT);
        assert!(events.after(floor - 1).is_none());
    }

    #[test]
    fn missed_changes_send_everyone_back_to_the_start() {
        let events = Events::new(1);
        events.publish(deleted("a"));
        events.forget();
        assert!(events.after(1).is_none());
        assert_eq!(events.resume(Some("1-1")), Resume::Reset(2));
        assert_eq!(events.after(2).unwrap().len(), 0);
        events.publish(deleted("b"));
        assert_eq!(events.after(2).unwrap().len(), 1);
    }
}
