//! The streams that follow an environment (`Watch`, flagd's `EventStream`): one loop, told
//! by a [`Messages`] what to send.
//!
//! A stream subscribes to the delivery feed before it reads the environment, so no change
//! falls between what it sends first and what it follows. It ends when the client goes, the
//! environment is deleted, the key is revoked or the server stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::auth;
use super::status::Refusal;
use crate::environment::Environment;
use crate::feed::{Delta, Update};
use crate::service::Service;
use crate::shutdown::Signal;

/// Messages a stream may have in flight before it waits for its client.
const BUFFER: usize = 16;

/// What one kind of stream sends.
pub trait Messages: Send + 'static {
    type Message: Send + 'static;

    /// What a client gets on connecting to `environment`.
    fn opening(&mut self, service: &Service, environment: &Environment) -> Vec<Self::Message>;

    /// The environment moved from `previous` (the last revision sent) to `current`. `delta`
    /// is the feed's, when it has one; it may start elsewhere than `previous`.
    fn changed(
        &mut self,
        previous: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<Self::Message>;

    fn heartbeat(&mut self, revision: u64) -> Self::Message;
}

pub struct Follow {
    pub service: Arc<Service>,
    /// Checked again on every change and heartbeat: a revoked key ends its streams. `None`
    /// for anonymous flagd streams.
    pub token: Option<String>,
    pub environment: String,
    pub heartbeat: Duration,
    pub stop: Signal,
}

pub type Stream<M> = ReceiverStream<Result<M, Status>>;

impl Follow {
    /// Subscribes, reads the environment and starts the stream.
    pub fn start<T: Messages>(self, mut messages: T) -> Result<Stream<T::Message>, Refusal> {
        let updates = self.service.subscribe();
        let environment = self
            .service
            .environment(&self.environment)
            .ok_or_else(|| gone(&self.environment))?;
        let opening = messages.opening(&self.service, &environment);
        let (sender, receiver) = mpsc::channel(BUFFER);
        tokio::spawn(self.run(messages, opening, environment, updates, sender));
        Ok(ReceiverStream::new(receiver))
    }

    async fn run<T: Messages>(
        mut self,
        mut messages: T,
        opening: Vec<T::Message>,
        mut sent: Arc<Environment>,
        mut updates: broadcast::Receiver<Arc<Update>>,
        sender: mpsc::Sender<Result<T::Message, Status>>,
    ) {
        for message in opening {
            if !self.send(&sender, Ok(message)).await {
                return;
            }
        }
        let heartbeat = tokio::time::sleep(self.heartbeat);
        tokio::pin!(heartbeat);
        loop {
            let next = tokio::select! {
                _ = self.stop.stopped() => Err(Refusal::Unavailable(
                    "the server is stopping: connect again".to_string(),
                )),
                _ = sender.closed() => return,
                _ = &mut heartbeat => self
                    .check_key()
                    .map(|()| Some(messages.heartbeat(sent.revision))),
                received = updates.recv() => match received {
                    Ok(update) => self.update(&mut messages, &mut sent, &update),
                    // Missed updates cannot be replayed: start over from where the
                    // environment is now.
                    Err(RecvError::Lagged(_)) => self.catch_up(&mut messages, &mut sent),
                    Err(RecvError::Closed) => return,
                },
            };
            let message = match next {
                Ok(Some(message)) => Ok(message),
                Ok(None) => continue,
                Err(refusal) => Err(Status::from(refusal)),
            };
            let last = message.is_err();
            if !self.send(&sender, message).await || last {
                return;
            }
            heartbeat.as_mut().reset(Instant::now() + self.heartbeat);
        }
    }

    fn update<T: Messages>(
        &self,
        messages: &mut T,
        sent: &mut Arc<Environment>,
        update: &Update,
    ) -> Result<Option<T::Message>, Refusal> {
        if update.environment_name() != self.environment {
            return Ok(None);
        }
        match update {
            // Before the key check: deleting an environment revokes its keys, and the client
            // should learn the cause, not the consequence.
            Update::Deleted { name } => Err(gone(name)),
            Update::Changed { environment, delta } => {
                self.check_key()?;
                if environment.revision <= sent.revision {
                    return Ok(None);
                }
                let message = messages.changed(sent, environment, delta.as_deref());
                *sent = Arc::clone(environment);
                Ok(message)
            }
        }
    }

    fn catch_up<T: Messages>(
        &self,
        messages: &mut T,
        sent: &mut Arc<Environment>,
    ) -> Result<Option<T::Message>, Refusal> {
        self.check_key()?;
        let current = self
            .service
            .environment(&self.environment)
            .ok_or_else(|| gone(&self.environment))?;
        if Arc::ptr_eq(&current, sent) {
            return Ok(None);
        }
        let message = messages.changed(sent, &current, None);
        *sent = current;
        Ok(message)
    }

    fn check_key(&self) -> Result<(), Refusal> {
        match &self.token {
            Some(token) if self.service.authenticate(token).is_none() => Err(auth::unknown_key()),
            _ => Ok(()),
        }
    }

    /// Sends one message, unless the client is gone or the server stops while the client
    /// is not reading. Whether the stream goes on.
    async fn send<M>(
        &mut self,
        sender: &mpsc::Sender<Result<M, Status>>,
        message: Result<M, Status>,
    ) -> bool {
        tokio::select! {
            // A message ready to go goes, even when the stop comes at the same moment: the
            // last one says why the stream ends.
            biased;
            sent = sender.send(message) => sent.is_ok(),
            _ = self.stop.stopped() => false,
        }
    }
}

pub fn gone(environment: &str) -> Refusal {
    Refusal::NotFound(format!("environment `{environment}` does not exist"))
}
