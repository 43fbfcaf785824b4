//! The one delivery follower: what a stream that follows an environment tells its client,
//! and when. Server-sent events (`/api/v1/sdk/stream`, OFREP's `/ofrep/v1/events`), gRPC
//! `Watch` and flagd's `EventStream` take its events and only encode them.
//!
//! A follower subscribes to the delivery feed before it reads the environment, so no change
//! falls between what it sends first and what it follows. Each update is judged in one
//! order:
//!
//! 1. The environment's deletion is told first, and ends the stream: deleting an environment
//!    revokes its keys, and the client should learn the cause, not the consequence.
//! 2. Then the key: a key revoked since the last event ends the stream on the next update or
//!    heartbeat, even one that brings nothing new, so a revoked key is told nothing more.
//! 3. Then the revision: an update the client already has (one that came in while the
//!    stream opened) is skipped, so a client that reconnects at a known revision gets only
//!    the deltas it missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::environment::Environment;
use crate::feed::{Delta, Update};
use crate::reach::Instance;
use crate::service::Service;
use crate::shutdown::Signal;

/// What a stream's client authenticated with, checked again before every event.
pub enum Credential {
    /// An API key.
    Key(String),
    /// An OFREP event channel, which names a key without being it.
    Channel(String),
    /// An anonymous flagd stream, allowed by the operator's configuration.
    Anonymous,
}

impl Credential {
    /// Whether the credential still names a valid key of `environment`.
    fn valid(&self, service: &Service, environment: &str) -> bool {
        let principal = match self {
            Credential::Key(token) => service.authenticate(token),
            Credential::Channel(channel) => service.channel_principal(channel),
            Credential::Anonymous => return true,
        };
        principal.is_some_and(|principal| principal.environment.as_deref() == Some(environment))
    }
}

/// What a client gets on connecting.
pub enum Opening {
    /// The whole ruleset: the client named no revision, or one whose deltas are not kept.
    Ruleset,
    /// The deltas from the client's revision to the current one, in order: none when the
    /// client is up to date.
    Deltas(Vec<Arc<Delta>>),
}

/// What happened since the last event.
pub enum Event {
    /// The environment moved on from `previous`, the revision the client was last brought
    /// to. `delta` is there when the feed's delta applies to `previous`; without it, send
    /// the whole of `current`.
    Changed {
        previous: Arc<Environment>,
        current: Arc<Environment>,
        delta: Option<Arc<Delta>>,
    },
    /// Nothing happened for a while; the client is at this revision.
    Heartbeat(u64),
    /// The environment was deleted. The last event.
    Deleted,
    /// The key was revoked. The last event.
    Revoked,
    /// The server is stopping. The last event.
    Stopping,
}

/// What the follower is given to judge.
enum Input<'a> {
    Update(&'a Update),
    /// Updates were missed: the environment as it is now.
    Lagged(Option<Arc<Environment>>),
    /// A heartbeat's worth of silence.
    Quiet,
}

pub struct Follower {
    service: Arc<Service>,
    credential: Credential,
    environment: String,
    updates: broadcast::Receiver<Arc<Update>>,
    stop: Signal,
    heartbeat: Duration,
    /// When a heartbeat is due unless something else is sent first.
    quiet_until: Instant,
    /// The environment as the client was last brought to it.
    sent: Arc<Environment>,
    finished: bool,
    /// Records every revision sent, heartbeats included, for a kill's reach.
    instance: Option<Instance>,
}

/// Where the stream starts.
pub struct Start {
    pub follower: Follower,
    pub environment: Arc<Environment>,
    pub opening: Opening,
}

/// How to follow.
pub struct Follow {
    pub service: Arc<Service>,
    pub credential: Credential,
    pub environment: String,
    /// The revision the client has, when it names one.
    pub known_revision: Option<u64>,
    pub heartbeat: Duration,
    pub stop: Signal,
    pub instance: Option<Instance>,
}

impl Follow {
    /// Subscribes, then reads the environment; `None` when it does not exist.
    pub fn start(self) -> Option<Start> {
        let updates = self.service.subscribe();
        let environment = self.service.environment(&self.environment)?;
        let opening = match self.known_revision.and_then(|revision| {
            self.service
                .deltas_since(&environment.name, revision, environment.revision)
        }) {
            Some(deltas) => Opening::Deltas(deltas),
            None => Opening::Ruleset,
        };
        if let Some(instance) = &self.instance {
            instance.record(environment.revision);
        }
        let follower = Follower {
            service: self.service,
            credential: self.credential,
            environment: self.environment,
            updates,
            stop: self.stop,
            heartbeat: self.heartbeat,
            quiet_until: Instant::now() + self.heartbeat,
            sent: Arc::clone(&environment),
            finished: false,
            instance: self.instance,
        };
        Some(Start {
            follower,
            environment,
            opening,
        })
    }
}

impl Follower {
    /// The next event; `None` once a last event was given, or when the feed is gone.
    pub async fn next(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        let event = loop {
            let received = tokio::select! {
                biased;
                () = self.stop.stopped() => break Event::Stopping,
                received = tokio::time::timeout_at(self.quiet_until, self.updates.recv()) => received,
            };
            let update;
            let input = match received {
                Err(_) => Input::Quiet,
                Ok(Ok(received)) => {
                    update = received;
                    Input::Update(&update)
                }
                // Missed updates cannot be replayed: start over from where the environment
                // is now.
                Ok(Err(RecvError::Lagged(_))) => {
                    Input::Lagged(self.service.environment(&self.environment))
                }
                Ok(Err(RecvError::Closed)) => return None,
            };
            let valid = || self.credential.valid(&self.service, &self.environment);
            if let Some(event) = judge(&self.environment, &self.sent, input, valid) {
                break event;
            }
        };
        match &event {
            Event::Changed { current, .. } => self.sent = Arc::clone(current),
            Event::Heartbeat(_) => {}
            Event::Deleted | Event::Revoked | Event::Stopping => self.finished = true,
        }
        if let (Some(instance), Event::Changed { .. } | Event::Heartbeat(_)) =
            (&self.instance, &event)
        {
            instance.record(self.sent.revision);
        }
        self.quiet_until = Instant::now() + self.heartbeat;
        Some(event)
    }
}

/// What one input means for a client brought to `sent` of `environment`: the order of the
/// module's documentation. `None`: nothing to tell.
fn judge(
    environment: &str,
    sent: &Arc<Environment>,
    input: Input<'_>,
    valid: impl Fn() -> bool,
) -> Option<Event> {
    let (current, delta) = match input {
        Input::Update(update) if update.environment_name() != environment => return None,
        Input::Update(Update::Deleted { .. }) | Input::Lagged(None) => return Some(Event::Deleted),
        Input::Update(Update::Changed { environment, delta }) => {
            (Arc::clone(environment), delta.clone())
        }
        Input::Lagged(Some(current)) => (current, None),
        Input::Quiet => {
            return Some(if valid() {
                Event::Heartbeat(sent.revision)
            } else {
                Event::Revoked
            })
        }
    };
    if !valid() {
        return Some(Event::Revoked);
    }
    if current.revision <= sent.revision {
        return None;
    }
    Some(Event::Changed {
        previous: Arc::clone(sent),
        delta: delta.filter(|delta| delta.from_revision == sent.revision),
        current,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use ripcord_engine::{Document, Snapshot};

    use super::*;

    fn at(revision: u64) -> Arc<Environment> {
        Arc::new(Environment::new(
            "prod",
            revision,
            Snapshot::empty(revision),
            Document::default(),
            BTreeMap::new(),
        ))
    }

    fn changed(revision: u64, from: u64) -> Update {
        Update::Changed {
            environment: at(revision),
            delta: Some(Arc::new(Delta::new(
                from,
                revision,
                Bytes::new(),
                Vec::new(),
            ))),
        }
    }

    fn deleted() -> Update {
        Update::Deleted {
            name: "prod".to_string(),
        }
    }

    fn describe(event: Option<Event>) -> String {
        match event {
            None => "nothing".to_string(),
            Some(Event::Changed {
                previous,
                current,
                delta,
            }) => format!(
                "{} to {} by {}",
                previous.revision,
                current.revision,
                if delta.is_some() { "delta" } else { "ruleset" }
            ),
            Some(Event::Heartbeat(revision)) => format!("heartbeat at {revision}"),
            Some(Event::Deleted) => "deleted".to_string(),
            Some(Event::Revoked) => "revoked".to_string(),
            Some(Event::Stopping) => "stopping".to_string(),
        }
    }

    #[test]
    fn a_change_goes_out_as_a_delta_when_it_applies_and_as_the_ruleset_otherwise() {
        let sent = at(5);
        let valid = || true;
        let judged = |update: &Update| describe(judge("prod", &sent, Input::Update(update), valid));
        assert_eq!(judged(&changed(6, 5)), "5 to 6 by delta");
        assert_eq!(judged(&changed(7, 6)), "5 to 7 by ruleset");
        assert_eq!(
            describe(judge("prod", &sent, Input::Lagged(Some(at(9))), valid)),
            "5 to 9 by ruleset"
        );
        assert_eq!(
            describe(judge("prod", &sent, Input::Lagged(Some(at(5))), valid)),
            "nothing"
        );
        // Another environment's change is not this stream's business.
        let other = Update::Deleted {
            name: "staging".to_string(),
        };
        assert_eq!(judged(&other), "nothing");
        assert_eq!(
            describe(judge("prod", &sent, Input::Quiet, valid)),
            "heartbeat at 5"
        );
    }

    /// A change the client already has, which came in while the stream opened, is skipped:
    /// a client that reconnected with its revision gets only what it missed.
    #[test]
    fn what_the_client_has_is_not_sent_again() {
        let sent = at(5);
        for update in [changed(5, 4), changed(4, 3)] {
            assert_eq!(
                describe(judge("prod", &sent, Input::Update(&update), || true)),
                "nothing"
            );
        }
    }

    /// The server-sent events compared the revision before they checked the key, and so kept
    /// a revoked key's stream open over an update it already had; gRPC checked the key
    /// before it looked for the environment after missing updates, and so told a client
    /// whose environment was deleted that its key was revoked.
    #[test]
    fn a_deletion_is_told_before_a_revoked_key_and_a_revoked_key_hears_nothing_more() {
        let sent = at(5);
        let revoked = || false;
        assert_eq!(
            describe(judge("prod", &sent, Input::Update(&deleted()), revoked)),
            "deleted"
        );
        assert_eq!(
            describe(judge("prod", &sent, Input::Lagged(None), revoked)),
            "deleted"
        );
        for input in [
            Input::Update(&changed(6, 5)),
            Input::Update(&changed(5, 4)),
            Input::Lagged(Some(at(5))),
            Input::Lagged(Some(at(8))),
            Input::Quiet,
        ] {
            assert_eq!(describe(judge("prod", &sent, input, revoked)), "revoked");
        }
    }
}
