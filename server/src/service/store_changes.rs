//! Following the store's change events, so that commits made elsewhere (other nodes of a
//! shared store) reach this node's snapshots and keys.

use std::sync::Arc;

use super::Service;
use crate::error::Result;
use crate::store::ChangeEvent;
use tokio::sync::broadcast::error::RecvError;

impl Service {
    /// Follows the store's change feed, so that commits made elsewhere (other nodes of a
    /// shared store) reach this node's snapshots. Commits made here are installed before
    /// they are acknowledged and are skipped.
    pub fn follow_changes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        let taken = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut changes = taken.unwrap_or_else(|| service.store.subscribe());
        tokio::spawn(async move {
            loop {
                let event = match changes.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => ChangeEvent::Resync,
                    Err(RecvError::Closed) => break,
                };
                let result = match event {
                    ChangeEvent::KeysChanged => service.reload_keys().await,
                    ChangeEvent::Resync => service.reload_all().await,
                    ChangeEvent::Environment {
                        name,
                        revision,
                        deleted,
                    } => service.apply_change(&name, revision, deleted).await,
                };
                if let Err(error) = result {
                    // The feed has moved past this change: read everything again until it
                    // works, or a flag killed elsewhere would stay on here until the next
                    // change to its environment, and a revoked key would go on working.
                    tracing::warn!(%error, "applying a change from the feed failed; reading everything again");
                    let mut wait = std::time::Duration::from_millis(100);
                    while let Err(error) = service.reload_all().await {
                        tracing::warn!(%error, "reading everything again failed; trying again");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            }
        })
    }

    /// Brings one environment up to a revision announced on the feed, unless this node is
    /// there already (the usual case: it made the commit itself).
    async fn apply_change(&self, name: &str, revision: u64, deleted: bool) -> Result<()> {
        let _writer = self.writer.lock().await;
        let current = self
            .environment(name)
            .map(|environment| environment.revision);
        let up_to_date = if deleted {
            current.is_none()
        } else {
            current.is_some_and(|current| current >= revision)
        };
        if up_to_date {
            return Ok(());
        }
        let loaded = self.load(name).await?;
        self.install(name, loaded.map(Arc::new));
        Ok(())
    }

    /// Reads every environment and the keys again; an environment served here that the
    /// store no longer has was deleted while the changes were missed, and goes.
    async fn reload_all(&self) -> Result<()> {
        let stored = self.store.environments().await?;
        let served: Vec<String> = self.environments.load().keys().cloned().collect();
        for name in served {
            if !stored.iter().any(|record| record.name == name) {
                self.refresh(&name).await?;
            }
        }
        for record in stored {
            self.refresh(&record.name).await?;
        }
        self.reload_keys().await
    }

    /// Reads one environment from the store again and serves it as it is there.
    pub async fn refresh(&self, name: &str) -> Result<()> {
        let _writer = self.writer.lock().await;
        let loaded = self.load(name).await?;
        self.install(name, loaded.map(Arc::new));
        Ok(())
    }
}
