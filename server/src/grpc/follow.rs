//! The streams that follow an environment (`Watch`, flagd's `EventStream`): the events of
//! `crate::delivery`'s follower, told by a [`Messages`] how to say each.
//!
//! A stream ends when the client goes, the environment is deleted, the key is revoked or
//! the server stops; the last three with a status that says which.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::auth;
use super::status::Refusal;
use crate::delivery::{Event, Follow, Follower, Opening};
use crate::environment::Environment;
use crate::feed::Delta;
use crate::shutdown::Signal;

/// Messages a stream may have in flight before it waits for its client.
const BUFFER: usize = 16;

/// What one kind of stream sends.
pub trait Messages: Send + 'static {
    type Message: Send + 'static;

    /// What a client gets on connecting to `environment`.
    fn opening(&mut self, environment: &Environment, opening: &Opening) -> Vec<Self::Message>;

    /// The environment moved from `previous` (the last revision sent) to `current`; `delta`
    /// applies to `previous` when there is one. `None`: nothing this client should hear of.
    fn changed(
        &mut self,
        previous: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<Self::Message>;

    fn heartbeat(&mut self, revision: u64) -> Self::Message;
}

pub type Stream<M> = ReceiverStream<Result<M, Status>>;

/// Starts following: the opening, then the follower's events.
pub fn start<T: Messages>(follow: Follow, mut messages: T) -> Result<Stream<T::Message>, Refusal> {
    let name = follow.environment.clone();
    let stop = follow.stop.clone();
    let start = follow.start().ok_or_else(|| gone(&name))?;
    let opening = messages.opening(&start.environment, &start.opening);
    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(run(start.follower, messages, opening, name, stop, sender));
    Ok(ReceiverStream::new(receiver))
}

async fn run<T: Messages>(
    mut follower: Follower,
    mut messages: T,
    opening: Vec<T::Message>,
    name: String,
    mut stop: Signal,
    sender: mpsc::Sender<Result<T::Message, Status>>,
) {
    for message in opening {
        if !send(&sender, Ok(message), &mut stop).await {
            return;
        }
    }
    loop {
        let event = tokio::select! {
            _ = sender.closed() => return,
            event = follower.next() => event,
        };
        let Some(event) = event else { return };
        let message = match event {
            Event::Changed {
                previous,
                current,
                delta,
            } => match messages.changed(&previous, &current, delta.as_deref()) {
                Some(message) => Ok(message),
                None => continue,
            },
            Event::Heartbeat(revision) => Ok(messages.heartbeat(revision)),
            Event::Deleted => Err(gone(&name)),
            Event::Revoked => Err(auth::unknown_key()),
            Event::Stopping => Err(Refusal::Unavailable(
                "the server is stopping: connect again".to_string(),
            )),
        };
        let last = message.is_err();
        if !send(&sender, message.map_err(Status::from), &mut stop).await || last {
            return;
        }
    }
}

/// Sends one message, unless the client is gone or the server stops while the client is
/// not reading. Whether the stream goes on.
async fn send<M>(
    sender: &mpsc::Sender<Result<M, Status>>,
    message: Result<M, Status>,
    stop: &mut Signal,
) -> bool {
    tokio::select! {
        // A message ready to go goes, even when the stop comes at the same moment: the last
        // one says why the stream ends.
        biased;
        sent = sender.send(message) => sent.is_ok(),
        _ = stop.stopped() => false,
    }
}

pub fn gone(environment: &str) -> Refusal {
    Refusal::NotFound(format!("environment `{environment}` does not exist"))
}
