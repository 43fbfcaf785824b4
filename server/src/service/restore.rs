//! Putting what this node serves back into a store that lost it.

use serde::Serialize;

use super::audit::audit_record;
use super::Service;
use crate::clock;
use crate::error::Result;
use crate::principal::Principal;
use crate::store::copy::Dump;
use crate::store::{EnvironmentRecord, EnvironmentState};

/// What a restore wrote into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Restored {
    pub environments: usize,
    pub flags: usize,
    pub segments: usize,
    pub keys: usize,
}

impl Service {
    /// Writes the environments this node serves, at their revisions, and every key it last
    /// read into the store, which must be empty; with one audit entry saying so. Creation
    /// times are not kept in memory: the restored environments are created now.
    pub async fn restore_store(&self, actor: &Principal) -> Result<Restored> {
        let _writer = self.writer.lock().await;
        let time = clock::now_rfc3339();
        let mut dump = Dump::default();
        for environment in self.environments.load().values() {
            dump.environments.push((
                EnvironmentRecord {
                    name: environment.name.clone(),
                    revision: environment.revision,
                    created_at: time.clone(),
                },
                EnvironmentState {
                    revision: environment.revision,
                    document: environment.document.clone(),
                    flag_revisions: environment.flag_revisions.clone(),
                },
            ));
        }
        dump.environments
            .sort_by(|(first, _), (second, _)| first.name.cmp(&second.name));
        dump.keys = self.keys.records().to_vec();
        let restored = Restored {
            environments: dump.environments.len(),
            flags: dump
                .environments
                .iter()
                .map(|(_, state)| state.document.flags.len())
                .sum(),
            segments: dump
                .environments
                .iter()
                .map(|(_, state)| state.document.segments.len())
                .sum(),
            keys: dump.keys.len(),
        };
        let mut entry = audit_record(
            &time,
            actor,
            None,
            "store.restore",
            "store",
            "restore",
            None,
            serde_json::to_value(&restored).ok(),
        );
        entry.id = 1;
        dump.audit.push(entry);
        self.store.import(dump).await?;
        tracing::warn!(?restored, actor = %actor.name, "restored the store from this node's snapshot");
        Ok(restored)
    }
}
