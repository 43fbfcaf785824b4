//! Following the store's change events, so that commits made elsewhere (other nodes of a
//! shared store) reach this node's snapshots and keys.

use std::sync::Arc;

use super::Service;
use crate::error::Result;
use crate::store::ChangeEvent;

impl Service {
    /// Follows the store's change feed, so that commits made elsewhere (other nodes of a
    /// shared store) reach this node's snapshots. Commits made here are installed before
    /// they are acknowledged and are skipped.
    pub fn follow_changes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        let mut changes = service.store.subscribe();
        tokio::spawn(async move {
            loop {
                let event = match changes.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(error) = service.reload_all().await {
                            tracing::warn!(%error, "reloading after a lagged change feed failed");
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
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
                    tracing::warn!(%error, "applying a change from the feed failed");
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
