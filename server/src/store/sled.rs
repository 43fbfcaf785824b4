//! The embedded default store: one sled database in the data directory.
//!
//! Everything lives in sled's default tree under prefixed keys, so that one sled
//! transaction covers a whole commit (the environment record, its flags and segments, and
//! the audit entries), and a flush before returning makes the commit durable.
//!
//! | key | value (JSON) |
//! |---|---|
//! | `env/{name}` | [`EnvironmentRecord`] |
//! | `flag/{env}\0{key}` | [`StoredItem`] of a flag |
//! | `segment/{env}\0{key}` | [`StoredItem`] of a segment |
//! | `key/{id}` | [`KeyRecord`] |
//! | `audit/{id as 8 big-endian bytes}` | [`AuditRecord`] |
//! | `ramp/{env}\0{flag}` | [`RampRecord`] |
//! | `incident/{id as 8 big-endian bytes}` | [`IncidentRecord`] |
//!
//! Metric aggregates live in a tree of their own, `aggregates`, described with their code
//! at the end of this file.

use std::path::Path;

use async_trait::async_trait;
use ripcord_engine::Stage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use tokio::sync::broadcast;

use super::{Aggregate, AggregateCounts, AggregateKey};
use super::{
    AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState, IncidentQuery,
    IncidentRecord, KeyRecord, LookRecord, Mutation, RampRecord, Store, StoreError, StoreResult,
};

pub struct SledStore {
    db: sled::Db,
    changes: broadcast::Sender<ChangeEvent>,
    /// Held while an environment's items are scanned or changed. sled cannot scan inside a
    /// transaction, so without it a load could interleave with a commit and see a mix of
    /// two revisions, and a deletion could miss the items of a commit that came in between.
    /// sled locks its directory to one process, so a process-wide lock covers every writer.
    items: std::sync::Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct StoredItem<T> {
    revision: u64,
    item: T,
}

const ENV: &str = "env/";
const FLAG: &str = "flag/";
const SEGMENT: &str = "segment/";
const KEY: &str = "key/";
const AUDIT: &[u8] = b"audit/";
const RAMP: &str = "ramp/";
const INCIDENT: &[u8] = b"incident/";

fn env_key(name: &str) -> Vec<u8> {
    format!("{ENV}{name}").into_bytes()
}

/// Flags and segments of one environment sort together under `{prefix}{env}\0`.
fn item_prefix(prefix: &str, environment: &str) -> Vec<u8> {
    format!("{prefix}{environment}\0").into_bytes()
}

fn item_key(prefix: &str, environment: &str, key: &str) -> Vec<u8> {
    format!("{prefix}{environment}\0{key}").into_bytes()
}

fn audit_key(id: u64) -> Vec<u8> {
    let mut key = AUDIT.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn incident_key(id: u64) -> Vec<u8> {
    let mut key = INCIDENT.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: error.to_string(),
    })
}

/// Runs a sled transaction whose closure can fail with a [`StoreError`].
fn transact<T>(
    db: &sled::Db,
    body: impl Fn(&TransactionalTree) -> Result<T, ConflictableTransactionError<StoreError>>,
) -> StoreResult<T> {
    db.transaction(body).map_err(|error| match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => backend(error),
    })
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

fn append_audit(
    tree: &TransactionalTree,
    mut record: AuditRecord,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    // sled's ids start at 0 and only grow; +1 keeps 0 free to mean "no entry".
    record.id = tree.generate_id()? + 1;
    tree.insert(audit_key(record.id), encode(&record))?;
    Ok(())
}

impl SledStore {
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|error| backend(format!("opening {}: {error}", path.display())))?;
        let (changes, _) = broadcast::channel(1024);
        Ok(SledStore {
            db,
            changes,
            items: std::sync::Mutex::new(()),
        })
    }

    fn lock_items(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while it was held left nothing half-done
        // that sled's own transactions did not already undo.
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn flush(&self) -> StoreResult<()> {
        self.db.flush_async().await.map(drop).map_err(backend)
    }

    fn announce(&self, event: ChangeEvent) {
        // Nobody listening is not an error: the feed is for whoever cares.
        let _ = self.changes.send(event);
    }

    /// The flags and segments of an environment, as they are now.
    fn read_items(&self, name: &str, revision: u64) -> StoreResult<EnvironmentState> {
        let mut state = EnvironmentState {
            revision,
            ..EnvironmentState::default()
        };
        for (key, stored) in
            self.scan::<StoredItem<ripcord_engine::Flag>>(&item_prefix(FLAG, name))?
        {
            let key = String::from_utf8_lossy(&key).into_owned();
            state.flag_revisions.insert(key.clone(), stored.revision);
            state.document.flags.insert(key, stored.item);
        }
        for (key, stored) in
            self.scan::<StoredItem<ripcord_engine::Segment>>(&item_prefix(SEGMENT, name))?
        {
            state
                .document
                .segments
                .insert(String::from_utf8_lossy(&key).into_owned(), stored.item);
        }
        Ok(state)
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> StoreResult<Vec<(Vec<u8>, T)>> {
        self.db
            .scan_prefix(prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(backend)?;
                let item = decode(&key, &value)?;
                Ok((key[prefix.len()..].to_vec(), item))
            })
            .collect()
    }
}

#[async_trait]
impl Store for SledStore {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        Ok(self
            .scan::<EnvironmentRecord>(ENV.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        let key = env_key(name);
        let _items = self.lock_items();
        let Some(bytes) = self.db.get(&key).map_err(backend)? else {
            return Ok(None);
        };
        let record: EnvironmentRecord = decode(&key, &bytes)?;
        self.read_items(name, record.revision).map(Some)
    }

    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord> {
        let record = EnvironmentRecord {
            name: name.to_string(),
            revision: 0,
            created_at: created_at.to_string(),
        };
        transact(&self.db, |tree| {
            let key = env_key(name);
            if tree.get(&key)?.is_some() {
                return abort(StoreError::EnvironmentExists(name.to_string()));
            }
            tree.insert(key, encode(&record))?;
            append_audit(tree, audit.clone())
        })?;
        self.flush().await?;
        self.announce(ChangeEvent::Environment {
            name: name.to_string(),
            revision: 0,
            deleted: false,
        });
        Ok(record)
    }

    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        let key = env_key(name);
        {
            let _items = self.lock_items();
            let mut items: Vec<Vec<u8>> = Vec::new();
            for prefix in [FLAG, SEGMENT, RAMP] {
                let prefix = item_prefix(prefix, name);
                for entry in self.db.scan_prefix(&prefix).keys() {
                    items.push(entry.map_err(backend)?.to_vec());
                }
            }
            // The environment's keys are revoked in the same transaction: were it to stop
            // half-way, a key could outlive its environment and work again for a new one
            // of the same name.
            let revoked: Vec<(Vec<u8>, Vec<u8>, AuditRecord)> = self
                .scan::<KeyRecord>(KEY.as_bytes())?
                .into_iter()
                .filter(|(_, record)| {
                    record.environment.as_deref() == Some(name) && record.revoked_at.is_none()
                })
                .map(|(id, mut record)| {
                    record.revoked_at = Some(audit.time.clone());
                    let entry = AuditRecord {
                        action: "key.revoke".to_string(),
                        target: record.name.clone(),
                        before: None,
                        after: None,
                        ..audit.clone()
                    };
                    let mut stored_key = KEY.as_bytes().to_vec();
                    stored_key.extend_from_slice(&id);
                    (stored_key, encode(&record), entry)
                })
                .collect();
            transact(&self.db, |tree| {
                if tree.get(&key)?.is_none() {
                    return abort(StoreError::NoSuchEnvironment(name.to_string()));
                }
                tree.remove(key.as_slice())?;
                for item in &items {
                    tree.remove(item.as_slice())?;
                }
                append_audit(tree, audit.clone())?;
                for (stored_key, record, entry) in &revoked {
                    tree.insert(stored_key.as_slice(), record.as_slice())?;
                    append_audit(tree, entry.clone())?;
                }
                Ok(())
            })?;
        }
        // The counts of its ramps go too. Only to reclaim the space: a ramp of an
        // environment created anew under the name clears its flag's counts when it starts.
        remove_prefix(&self.aggregate_tree()?, &environment_aggregate_prefix(name))?;
        self.flush().await?;
        self.announce(ChangeEvent::Environment {
            name: name.to_string(),
            revision: 0,
            deleted: true,
        });
        Ok(())
    }

    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64> {
        // Encode outside the transaction: sled may run the closure more than once.
        let revision = base_revision + 1;
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = mutations
            .iter()
            .map(|mutation| match mutation {
                Mutation::PutFlag { key, flag } => (
                    item_key(FLAG, environment, key),
                    Some(encode(&StoredItem {
                        revision,
                        item: flag,
                    })),
                ),
                Mutation::DeleteFlag { key } => (item_key(FLAG, environment, key), None),
                Mutation::PutSegment { key, segment } => (
                    item_key(SEGMENT, environment, key),
                    Some(encode(&StoredItem {
                        revision,
                        item: segment,
                    })),
                ),
                Mutation::DeleteSegment { key } => (item_key(SEGMENT, environment, key), None),
            })
            .collect();
        let items = self.lock_items();
        transact(&self.db, |tree| {
            let key = env_key(environment);
            let Some(bytes) = tree.get(&key)? else {
                return abort(StoreError::NoSuchEnvironment(environment.to_string()));
            };
            let mut record: EnvironmentRecord = match decode(&key, &bytes) {
                Ok(record) => record,
                Err(error) => return abort(error),
            };
            if record.revision != base_revision {
                return abort(StoreError::RevisionConflict {
                    environment: environment.to_string(),
                    expected: base_revision,
                    found: record.revision,
                });
            }
            record.revision = revision;
            tree.insert(key, encode(&record))?;
            for (key, value) in &writes {
                match value {
                    Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                    None => tree.remove(key.as_slice())?,
                };
            }
            for entry in &audit {
                append_audit(
                    tree,
                    AuditRecord {
                        revision: Some(revision),
                        ..entry.clone()
                    },
                )?;
            }
            Ok(())
        })?;
        drop(items);
        self.flush().await?;
        self.announce(ChangeEvent::Environment {
            name: environment.to_string(),
            revision,
            deleted: false,
        });
        Ok(revision)
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        Ok(self
            .scan::<KeyRecord>(KEY.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        let encoded = encode(&key);
        {
            // With the environment deletions, which revoke keys from a scan.
            let _items = self.lock_items();
            transact(&self.db, |tree| {
                tree.insert(format!("{KEY}{}", key.id).into_bytes(), encoded.as_slice())?;
                append_audit(tree, audit.clone())
            })?;
        }
        self.flush().await?;
        self.announce(ChangeEvent::KeysChanged);
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let end = audit_key(query.before.unwrap_or(u64::MAX));
        let mut found = Vec::new();
        for entry in self.db.range(AUDIT.to_vec()..end).rev() {
            if found.len() >= query.limit {
                break;
            }
            let (key, value) = entry.map_err(backend)?;
            let record: AuditRecord = decode(&key, &value)?;
            let environment_matches = query
                .environment
                .as_ref()
                .is_none_or(|wanted| record.environment.as_ref() == Some(wanted));
            let flag_matches = query.flag.as_ref().is_none_or(|wanted| {
                (record.action.starts_with("flag.") || record.action.starts_with("ramp."))
                    && &record.target == wanted
            });
            if environment_matches && flag_matches {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        Ok(self
            .scan::<RampRecord>(RAMP.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        let key = item_key(RAMP, environment, flag);
        match self.db.get(&key).map_err(backend)? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn put_ramp(&self, record: RampRecord, audit: Vec<AuditRecord>) -> StoreResult<()> {
        let key = item_key(RAMP, &record.environment, &record.flag);
        let encoded = encode(&record);
        transact(&self.db, |tree| {
            tree.insert(key.as_slice(), encoded.as_slice())?;
            for entry in &audit {
                append_audit(tree, entry.clone())?;
            }
            Ok(())
        })?;
        self.flush().await
    }

    async fn add_incident(&self, mut incident: IncidentRecord) -> StoreResult<u64> {
        // Ids come from the same generator as the audit log's: they only grow.
        incident.id = self.db.generate_id().map_err(backend)? + 1;
        self.db
            .insert(incident_key(incident.id), encode(&incident))
            .map_err(backend)?;
        self.flush().await?;
        Ok(incident.id)
    }

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        let end = incident_key(query.before.unwrap_or(u64::MAX));
        let mut found = Vec::new();
        for entry in self.db.range(INCIDENT.to_vec()..end).rev() {
            if found.len() >= query.limit {
                break;
            }
            let (key, value) = entry.map_err(backend)?;
            let record: IncidentRecord = decode(&key, &value)?;
            let wanted = query
                .environment
                .as_ref()
                .is_none_or(|environment| &record.environment == environment)
                && query.flag.as_ref().is_none_or(|flag| &record.flag == flag);
            if wanted {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        let key = incident_key(id);
        match self.db.get(&key).map_err(backend)? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()> {
        let tree = self.look_tree()?;
        let prefix = aggregate_prefix(&look.environment, &look.flag, look.generation);
        let mut key = prefix.clone();
        key.extend_from_slice(&look.minute().to_be_bytes());
        tree.insert(key, encode(&look)).map_err(backend)?;
        let keys = tree
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let removed = super::thinned(keys.len(), keep);
        if !removed.is_empty() {
            let mut batch = sled::Batch::default();
            for index in removed {
                batch.remove(keys[index].clone());
            }
            tree.apply_batch(batch).map_err(backend)?;
        }
        self.flush().await
    }

    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>> {
        let tree = self.look_tree()?;
        let prefix = aggregate_prefix(environment, flag, generation);
        tree.scan_prefix(&prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }

    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let tree = self.look_tree()?;
        remove_prefix(&tree, &flag_aggregate_prefix(environment, flag))?;
        self.flush().await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ready(&self) -> bool {
        self.db.get(b"ready-probe").is_ok()
    }

    // ---- Metric aggregates ----

    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        // One entry per stored key, so that the transaction reads and writes each once.
        let mut sums: Vec<(Vec<u8>, AggregateCounts)> = Vec::with_capacity(deltas.len());
        let mut positions: std::collections::HashMap<Vec<u8>, usize> =
            std::collections::HashMap::with_capacity(deltas.len());
        for delta in deltas {
            let key = aggregate_key(&delta.key, &delta.counts);
            match positions.get(&key) {
                Some(position) => {
                    sums[*position].1.add(&delta.counts);
                }
                None => {
                    positions.insert(key.clone(), sums.len());
                    sums.push((key, delta.counts));
                }
            }
        }
        let tree = self.aggregate_tree()?;
        tree.transaction(|tree| {
            for (key, delta) in &sums {
                let mut sum = match tree.get(key)? {
                    Some(bytes) => match decode_counts(key, &bytes) {
                        Ok(counts) => counts,
                        Err(error) => return abort(error),
                    },
                    None => empty_like(delta),
                };
                if !sum.add(delta) {
                    return abort(StoreError::Corrupt {
                        key: String::from_utf8_lossy(key).into_owned(),
                        message: "the stored counts are of another kind than the key says"
                            .to_string(),
                    });
                }
                tree.insert(key.as_slice(), encode(&StoredCounts::from(&sum)))?;
            }
            Ok(())
        })
        .map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => backend(error),
        })?;
        // The counts are in: failing now would have the reporters send them again and count
        // them twice, so a flush that fails is tried again before the batch is failed.
        let mut wait = std::time::Duration::from_millis(50);
        for _ in 0..FLUSH_RETRIES {
            match self.flush().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "flushing metric aggregates failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        self.flush().await
    }

    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let tree = self.aggregate_tree()?;
        remove_prefix(&tree, &flag_aggregate_prefix(environment, flag))?;
        self.flush().await
    }

    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let prefix = aggregate_prefix(environment, flag, generation);
        let tree = self.aggregate_tree()?;
        let mut found = Vec::new();
        for entry in tree.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(backend)?;
            let corrupt = |message: &str| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                message: message.to_string(),
            };
            let rest = &key[prefix.len()..];
            if rest.len() < 6 {
                return Err(corrupt("the key is too short"));
            }
            let stage = Stage::new(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
            let cohort = match rest[4] {
                b't' => ripcord_engine::Cohort::Treatment,
                b'c' => ripcord_engine::Cohort::Control,
                _ => return Err(corrupt("the key names no cohort")),
            };
            let metric = std::str::from_utf8(&rest[6..])
                .map_err(|_| corrupt("the metric name is not UTF-8"))?
                .to_string();
            let counts = decode_counts(&key, &value)?;
            if kind_byte(&counts) != rest[5] {
                return Err(corrupt(
                    "the stored counts are of another kind than the key says",
                ));
            }
            found.push(Aggregate {
                key: AggregateKey {
                    environment: environment.to_string(),
                    flag: flag.to_string(),
                    generation,
                    stage,
                    cohort,
                    metric,
                },
                counts,
            });
        }
        Ok(found)
    }
}

// ---- Metric aggregates ----
//
// A tree of their own, `aggregates`: they are written far more often than anything else and
// never in the same transaction as the rest. The key is
// `{env}\0{flag}\0{generation: 8 bytes BE}{stage: 4 bytes BE}{cohort: t|c}{kind: v|r}{metric}`,
// so that one generation of a flag is one prefix scan (names hold no control characters).
// The value is the JSON of [`StoredCounts`]; histograms list only their non-empty bins.

const AGGREGATES_TREE: &str = "aggregates";

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum StoredCounts {
    Value { bins: Vec<u32>, counts: Vec<u64> },
    Rate { events: u64, trials: u64 },
}

impl From<&AggregateCounts> for StoredCounts {
    fn from(counts: &AggregateCounts) -> StoredCounts {
        match counts {
            AggregateCounts::Values(bins) => StoredCounts::Value {
                bins: bins.keys().copied().collect(),
                counts: bins.values().copied().collect(),
            },
            AggregateCounts::Rate { events, trials } => StoredCounts::Rate {
                events: *events,
                trials: *trials,
            },
        }
    }
}

// ---- Ramp look history ----
//
// A tree of its own, `looks`, keyed as aggregates are up to the generation, then the look's
// minute (8 bytes BE): one generation is one prefix scan, oldest first. The value is the
// JSON of the [`LookRecord`].

const LOOKS_TREE: &str = "looks";

impl SledStore {
    fn look_tree(&self) -> StoreResult<sled::Tree> {
        self.db.open_tree(LOOKS_TREE).map_err(backend)
    }

    fn aggregate_tree(&self) -> StoreResult<sled::Tree> {
        // sled hands out the same tree each time; opening it is a map lookup.
        self.db.open_tree(AGGREGATES_TREE).map_err(backend)
    }
}

/// `{environment}\0`: every aggregate of an environment. Names hold no NUL byte.
fn environment_aggregate_prefix(environment: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(environment.len() + 1);
    key.extend_from_slice(environment.as_bytes());
    key.push(0);
    key
}

/// `{environment}\0{flag}\0`: every generation of a flag.
fn flag_aggregate_prefix(environment: &str, flag: &str) -> Vec<u8> {
    let mut key = environment_aggregate_prefix(environment);
    key.extend_from_slice(flag.as_bytes());
    key.push(0);
    key
}

/// Flushes of merged aggregates tried again (50 ms, then twice as long each time) before a
/// batch is failed.
const FLUSH_RETRIES: usize = 4;

fn aggregate_prefix(environment: &str, flag: &str, generation: u64) -> Vec<u8> {
    let mut key = flag_aggregate_prefix(environment, flag);
    key.extend_from_slice(&generation.to_be_bytes());
    key
}

/// Removes every key under `prefix` in one batch (atomic in sled).
fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> StoreResult<()> {
    let mut batch = sled::Batch::default();
    for key in tree.scan_prefix(prefix).keys() {
        batch.remove(key.map_err(backend)?);
    }
    tree.apply_batch(batch).map_err(backend)
}

fn aggregate_key(key: &AggregateKey, counts: &AggregateCounts) -> Vec<u8> {
    let mut stored = aggregate_prefix(&key.environment, &key.flag, key.generation);
    stored.extend_from_slice(&key.stage.get().to_be_bytes());
    stored.push(match key.cohort {
        ripcord_engine::Cohort::Treatment => b't',
        ripcord_engine::Cohort::Control => b'c',
    });
    stored.push(kind_byte(counts));
    stored.extend_from_slice(key.metric.as_bytes());
    stored
}

fn kind_byte(counts: &AggregateCounts) -> u8 {
    match counts {
        AggregateCounts::Values(_) => b'v',
        AggregateCounts::Rate { .. } => b'r',
    }
}

fn empty_like(counts: &AggregateCounts) -> AggregateCounts {
    match counts {
        AggregateCounts::Values(_) => AggregateCounts::Values(Default::default()),
        AggregateCounts::Rate { .. } => AggregateCounts::Rate {
            events: 0,
            trials: 0,
        },
    }
}

fn decode_counts(key: &[u8], bytes: &[u8]) -> StoreResult<AggregateCounts> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    };
    match decode::<StoredCounts>(key, bytes)? {
        StoredCounts::Value { bins, counts } => {
            if bins.len() != counts.len() {
                return Err(corrupt(format!(
                    "{} bins but {} counts",
                    bins.len(),
                    counts.len()
                )));
            }
            if bins.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(corrupt("the bins are not strictly increasing".to_string()));
            }
            Ok(AggregateCounts::Values(
                bins.into_iter().zip(counts).collect(),
            ))
        }
        StoredCounts::Rate { events, trials } => {
            if events > trials {
                return Err(corrupt(format!("{events} events out of {trials} trials")));
            }
            Ok(AggregateCounts::Rate { events, trials })
        }
    }
}

#[cfg(test)]
mod tests {
    /// Opens the store again in this process. sled's background threads can hold the
    /// dropped store's file lock for a moment after the drop (a new process, as on a
    /// restart, never meets them), so a refusal is retried for up to two seconds.
    async fn reopen(path: &std::path::Path) -> super::SledStore {
        let mut tries = 0;
        loop {
            match super::SledStore::open(path) {
                Ok(store) => return store,
                Err(error) if tries < 40 => {
                    tries += 1;
                    tracing::debug!("reopening: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => panic!("reopening {}: {error}", path.display()),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sled_passes_the_store_conformance_suite() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(directory.path()).unwrap();
        crate::store::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn commits_survive_reopening() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = super::SledStore::open(directory.path()).unwrap();
            crate::store::conformance::write_one_flag(&store).await;
        }
        let store = reopen(directory.path()).await;
        crate::store::conformance::check_one_flag(&store).await;
    }

    #[tokio::test]
    async fn aggregates_survive_reopening() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = super::SledStore::open(directory.path()).unwrap();
            crate::store::conformance::write_aggregates(&store).await;
        }
        let store = reopen(directory.path()).await;
        crate::store::conformance::check_aggregates(&store).await;
    }

    #[tokio::test]
    async fn corrupt_aggregates_are_reported_not_trusted() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(directory.path()).unwrap();
        crate::store::conformance::write_aggregates(&store).await;
        let tree = store.aggregate_tree().unwrap();
        let (key, _) = tree.first().unwrap().unwrap();
        tree.insert(
            &key,
            br#"{"kind":"value","bins":[5,3],"counts":[1,1]}"#.as_slice(),
        )
        .unwrap();
        let error = crate::store::Store::aggregates(&store, "durable", "checkout", 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, super::StoreError::Corrupt { message, .. } if message.contains("not strictly increasing")),
            "{error:?}"
        );
    }
}
