//! One signal for the whole process to stop: HTTP, gRPC and the long-lived streams of both
//! (server-sent events and `Watch`), which would otherwise hold a graceful stop open.

use tokio::sync::watch;

/// Sends the stop signal; held by `run`.
pub struct Trigger(watch::Sender<bool>);

/// Waits for the stop signal; cheap to clone into every stream.
#[derive(Clone)]
pub struct Signal(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Signal) {
    let (sender, receiver) = watch::channel(false);
    (Trigger(sender), Signal(receiver))
}

impl Trigger {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Signal {
    /// Completes once the process is stopping (at once if it is already).
    pub async fn stopped(&mut self) {
        // An error means the trigger is gone, which also means stopping.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}
