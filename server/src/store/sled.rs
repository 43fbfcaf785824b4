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
//! | `webhook/{id}` | a [`PendingWebhook`](super::PendingWebhook) not yet delivered |
//!
//! Metric aggregates live in a tree of their own, `aggregates`, described with their code
//! at the end of this file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use ripcord_engine::Stage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use tokio::sync::broadcast;

use super::copy::Dump;
use super::{Aggregate, AggregateCounts, AggregateKey, StoredItem};
use super::{
    AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState, IncidentQuery,
    IncidentRecord, KeyRecord, LookRecord, Mutation, RampRecord, RampWrite, Store, StoreError,
    StoreResult,
};

pub struct SledStore {
    path: PathBuf,
    /// `None` between dropping a database that failed and opening it again.
    db: std::sync::RwLock<Option<sled::Db>>,
    /// Set by any error sled returns. After an I/O error (a full disk, say) sled refuses
    /// every later write, even once the cause is gone, until the database is opened again:
    /// the next call does that, so that writes work again when space returns.
    broken: AtomicBool,
    /// Bytes that must stay free on the data directory's filesystem for a write to start.
    reserve: u64,
    changes: broadcast::Sender<ChangeEvent>,
    /// Held while an environment's items are scanned or changed. sled cannot scan inside a
    /// transaction, so without it a load could interleave with a commit and see a mix of
    /// two revisions, and a deletion could miss the items of a commit that came in between.
    /// sled locks its directory to one process, so a process-wide lock covers every writer.
    items: std::sync::Mutex<()>,
    /// The ramp controller's lease (see [`Store::lease`]).
    lease: std::sync::Mutex<Option<Lease>>,
    /// When old batch ids were last forgotten (Unix seconds).
    batches_forgotten: std::sync::atomic::AtomicU64,
}

struct Lease {
    holder: String,
    token: u64,
    expires: std::time::Instant,
}

const ENV: &str = "env/";
const FLAG: &str = "flag/";
const SEGMENT: &str = "segment/";
const KEY: &str = "key/";
const AUDIT: &[u8] = b"audit/";
const RAMP: &str = "ramp/";
const INCIDENT: &[u8] = b"incident/";
const WEBHOOK: &str = "webhook/";
/// The least free space at which a database that failed is opened again.
const REOPEN_ROOM: u64 = 8 * 1024 * 1024;

/// A write this small (a kill switch, a percentage, a ramp's decision, an incident, a key
/// revoked) may still use the upper half of the reserve: what people and the ramp
/// controller do during an incident goes through while the disk fills, and the lower half
/// still keeps sled clear of running out of space. Metric batches and aggregate clean-ups
/// never do: they are what fills it.
const SMALL_WRITE: usize = 64 * 1024;

/// How long a reopen waits for the failed database to close before it tries to open it.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Read, or written after a failure, to tell whether the database works.
const READY_PROBE: &[u8] = b"ready-probe";

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

/// What the readiness probe writes: anything will do, but a changing value is a real write.
fn clock_bytes() -> Vec<u8> {
    crate::clock::now_rfc3339().into_bytes()
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    super::to_json(value).into_bytes()
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    super::from_json(&String::from_utf8_lossy(key), bytes)
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

#[cfg(unix)]
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

fn open_db(path: &Path) -> StoreResult<sled::Db> {
    sled::Config::new()
        .path(path)
        .open()
        .map_err(|error| backend(format!("opening {}: {error}", path.display())))
}

impl SledStore {
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        let db = open_db(path)?;
        let (changes, _) = broadcast::channel(1024);
        Ok(SledStore {
            path: path.to_path_buf(),
            db: std::sync::RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
            reserve: 0,
            changes,
            items: std::sync::Mutex::new(()),
            lease: std::sync::Mutex::new(None),
            batches_forgotten: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Refuses writes while less than `bytes` are free on the data directory's filesystem;
    /// small commits, such as a kill switch, until less than half of it is.
    ///
    /// sled must never run out of space in the middle of a write: when the write of a large
    /// value fails that way, sled leaves its log waiting for that value forever, every later
    /// flush waits with it, and only a new process can open the database again. Refusing
    /// writes while there is room to spare keeps sled clear of that, and they resume as soon
    /// as space is freed.
    pub fn with_reserve(mut self, bytes: u64) -> SledStore {
        self.reserve = bytes;
        self
    }

    /// Whether the reserve is free: the check every write makes before touching sled.
    fn check_space(&self) -> StoreResult<()> {
        self.check_space_for(self.reserve)
    }

    /// The check of a write of about `footprint` bytes: a small one may use the upper half
    /// of the reserve (see [`SMALL_WRITE`]).
    fn check_space_sized(&self, footprint: usize) -> StoreResult<()> {
        if footprint <= SMALL_WRITE {
            self.check_space_for(self.reserve / 2)
        } else {
            self.check_space()
        }
    }

    /// Whether `needed` bytes are free.
    fn check_space_for(&self, needed: u64) -> StoreResult<()> {
        if needed == 0 {
            return Ok(());
        }
        let free = match free_bytes(&self.path) {
            Ok(free) => free,
            Err(error) => {
                // Not knowing is no reason to refuse: sled still reports a real failure.
                tracing::debug!(%error, "cannot tell the free space of the data directory");
                return Ok(());
            }
        };
        if free < needed {
            return Err(StoreError::Backend(format!(
                "{free} bytes are free on the data directory's filesystem, less than the \
                 {needed} this write needs kept in reserve; writes resume once space is freed"
            )));
        }
        Ok(())
    }

    /// The database, opened again first if it failed since it was last opened.
    fn db(&self) -> StoreResult<sled::Db> {
        if !self.broken.load(Ordering::SeqCst) {
            let slot = self
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(db) = slot.as_ref() {
                return Ok(db.clone());
            }
        }
        self.reopen()
    }

    fn reopen(&self) -> StoreResult<sled::Db> {
        let mut slot = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.broken.load(Ordering::SeqCst) {
            if let Some(db) = slot.as_ref() {
                // Another call opened it while this one waited for the lock.
                return Ok(db.clone());
            }
        }
        // Opening writes (sled rewrites its snapshot), and an open that runs out of space
        // can leave files that no later open reads: wait until there is room.
        let room = self.reserve.max(REOPEN_ROOM);
        if let Ok(free) = free_bytes(&self.path) {
            if free < room {
                return Err(StoreError::Backend(format!(
                    "the store failed; it is opened again once {room} bytes are free on the \
                     data directory's filesystem ({free} are now)"
                )));
            }
        }
        // Ours goes first: sled locks its directory for as long as any handle is alive.
        // Calls still running on the old handle hold it a moment longer; the open then
        // fails, and the next call tries again. The last handle's drop flushes, which a
        // stuck database never finishes: it happens on a thread of its own, so that it
        // cannot hold this lock (and every later call) with it.
        if let Some(old) = slot.take() {
            let (dropped, done) = std::sync::mpsc::channel();
            let dropper = std::thread::Builder::new()
                .name("ripcord-store-close".to_string())
                .spawn(move || {
                    drop(old);
                    let _ = dropped.send(());
                });
            if dropper.is_ok() {
                let _ = done.recv_timeout(CLOSE_WAIT);
            }
        }
        let db = open_db(&self.path)?;
        *slot = Some(db.clone());
        self.broken.store(false, Ordering::SeqCst);
        tracing::warn!(path = %self.path.display(), "reopened the store after a failure");
        Ok(db)
    }

    /// A sled error, noted so that the next call starts from a freshly opened database.
    fn fail(&self, error: impl std::fmt::Display) -> StoreError {
        self.broken.store(true, Ordering::SeqCst);
        backend(error)
    }

    /// Runs a sled transaction whose closure can fail with a [`StoreError`].
    fn transact<T>(
        &self,
        db: &sled::Db,
        body: impl Fn(&TransactionalTree) -> Result<T, ConflictableTransactionError<StoreError>>,
    ) -> StoreResult<T> {
        db.transaction(body).map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => self.fail(error),
        })
    }

    fn lease_slot(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        // Plain values, whole after any panic.
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token of the lease while it runs.
    fn lease_token(&self) -> Option<u64> {
        self.lease_slot()
            .as_ref()
            .filter(|lease| lease.expires > std::time::Instant::now())
            .map(|lease| lease.token)
    }

    fn lock_items(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while it was held left nothing half-done
        // that sled's own transactions did not already undo.
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn flush(&self, db: &sled::Db) -> StoreResult<()> {
        db.flush_async()
            .await
            .map(drop)
            .map_err(|error| self.fail(error))
    }

    fn announce(&self, event: ChangeEvent) {
        // Nobody listening is not an error: the feed is for whoever cares.
        let _ = self.changes.send(event);
    }

    /// The flags and segments of an environment, as they are now.
    fn read_items(
        &self,
        db: &sled::Db,
        name: &str,
        revision: u64,
    ) -> StoreResult<EnvironmentState> {
        let mut state = EnvironmentState {
            revision,
            ..EnvironmentState::default()
        };
        for (key, stored) in
            self.scan::<StoredItem<ripcord_engine::Flag>>(db, &item_prefix(FLAG, name))?
        {
            let key = String::from_utf8_lossy(&key).into_owned();
            state.flag_revisions.insert(key.clone(), stored.revision);
            state.document.flags.insert(key, stored.item);
        }
        for (key, stored) in
            self.scan::<StoredItem<ripcord_engine::Segment>>(db, &item_prefix(SEGMENT, name))?
        {
            state
                .document
                .segments
                .insert(String::from_utf8_lossy(&key).into_owned(), stored.item);
        }
        Ok(state)
    }

    fn scan<T: DeserializeOwned>(
        &self,
        db: &sled::Db,
        prefix: &[u8],
    ) -> StoreResult<Vec<(Vec<u8>, T)>> {
        db.scan_prefix(prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(|error| self.fail(error))?;
                let item = decode(&key, &value)?;
                Ok((key[prefix.len()..].to_vec(), item))
            })
            .collect()
    }
}

#[async_trait]
impl Store for SledStore {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        let db = self.db()?;
        Ok(self
            .scan::<EnvironmentRecord>(&db, ENV.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        let db = self.db()?;
        let key = env_key(name);
        let _items = self.lock_items();
        let Some(bytes) = db.get(&key).map_err(|error| self.fail(error))? else {
            return Ok(None);
        };
        let record: EnvironmentRecord = decode(&key, &bytes)?;
        self.read_items(&db, name, record.revision).map(Some)
    }

    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord> {
        self.check_space_sized(encode(&audit).len())?;
        let db = self.db()?;
        let record = EnvironmentRecord {
            name: name.to_string(),
            revision: 0,
            created_at: created_at.to_string(),
        };
        self.transact(&db, |tree| {
            let key = env_key(name);
            if tree.get(&key)?.is_some() {
                return abort(StoreError::EnvironmentExists(name.to_string()));
            }
            tree.insert(key, encode(&record))?;
            append_audit(tree, audit.clone())
        })?;
        self.flush(&db).await?;
        self.announce(ChangeEvent::Environment {
            name: name.to_string(),
            revision: 0,
            deleted: false,
        });
        Ok(record)
    }

    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        self.check_space_sized(encode(&audit).len())?;
        let db = self.db()?;
        let key = env_key(name);
        {
            let _items = self.lock_items();
            let mut items: Vec<Vec<u8>> = Vec::new();
            for prefix in [FLAG, SEGMENT, RAMP] {
                let prefix = item_prefix(prefix, name);
                for entry in db.scan_prefix(&prefix).keys() {
                    items.push(entry.map_err(|error| self.fail(error))?.to_vec());
                }
            }
            // The environment's keys are revoked in the same transaction: were it to stop
            // half-way, a key could outlive its environment and work again for a new one
            // of the same name.
            let revoked: Vec<(Vec<u8>, Vec<u8>, AuditRecord)> = self
                .scan::<KeyRecord>(&db, KEY.as_bytes())?
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
            self.transact(&db, |tree| {
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
        let tree = self.aggregate_tree(&db)?;
        let prefix = environment_aggregate_prefix(name);
        remove_prefix(&tree, &prefix).map_err(|error| self.fail(error))?;
        remove_markers(&tree, &unit_marker_prefix(&prefix)).map_err(|error| self.fail(error))?;
        self.flush(&db).await?;
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
        let db = self.db()?;
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
        // The audit entries carry each item before and after: about twice the items again.
        let footprint = writes
            .iter()
            .map(|(key, value)| key.len() + value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
            .saturating_mul(3);
        self.check_space_sized(footprint)?;
        let items = self.lock_items();
        self.transact(&db, |tree| {
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
        self.flush(&db).await?;
        self.announce(ChangeEvent::Environment {
            name: environment.to_string(),
            revision,
            deleted: false,
        });
        Ok(revision)
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let db = self.db()?;
        Ok(self
            .scan::<KeyRecord>(&db, KEY.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        let encoded = encode(&key);
        self.check_space_sized(encoded.len() + encode(&audit).len())?;
        let db = self.db()?;
        {
            // With the environment deletions, which revoke keys from a scan.
            let _items = self.lock_items();
            self.transact(&db, |tree| {
                tree.insert(format!("{KEY}{}", key.id).into_bytes(), encoded.as_slice())?;
                append_audit(tree, audit.clone())
            })?;
        }
        self.flush(&db).await?;
        self.announce(ChangeEvent::KeysChanged);
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let db = self.db()?;
        let end = audit_key(query.before.unwrap_or(u64::MAX));
        let mut found = Vec::new();
        for entry in db.range(AUDIT.to_vec()..end).rev() {
            if found.len() >= query.limit {
                break;
            }
            let (key, value) = entry.map_err(|error| self.fail(error))?;
            let record: AuditRecord = decode(&key, &value)?;
            if query.matches(&record) {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        let db = self.db()?;
        Ok(self
            .scan::<RampRecord>(&db, RAMP.as_bytes())?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        let db = self.db()?;
        let key = item_key(RAMP, environment, flag);
        match db.get(&key).map_err(|error| self.fail(error))? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn put_ramp(&self, write: RampWrite) -> StoreResult<u64> {
        let RampWrite {
            mut record,
            audit,
            incident,
            fence,
            webhooks,
        } = write;
        let webhooks: Vec<(Vec<u8>, Vec<u8>)> = webhooks
            .iter()
            .map(|webhook| {
                (
                    format!("{WEBHOOK}{}", webhook.id).into_bytes(),
                    encode(webhook),
                )
            })
            .collect();
        if let Some(fence) = fence {
            if self.lease_token() != Some(fence) {
                return Err(StoreError::LeaseLost);
            }
        }
        let key = item_key(RAMP, &record.environment, &record.flag);
        let read = record.version;
        record.version = read + 1;
        let encoded = encode(&record);
        let incident = incident.map(|incident| (incident_key(incident.id), encode(&incident)));
        let audit_bytes: usize = audit.iter().map(|entry| encode(entry).len()).sum();
        let incident_bytes = incident.as_ref().map_or(0, |(_, bytes)| bytes.len());
        self.check_space_sized(encoded.len() + audit_bytes + incident_bytes)?;
        let db = self.db()?;
        self.transact(&db, |tree| {
            let stored = match tree.get(&key)? {
                Some(bytes) => match decode::<RampRecord>(&key, &bytes) {
                    Ok(stored) => stored.version,
                    Err(error) => return abort(error),
                },
                None => 0,
            };
            if stored != read {
                return abort(StoreError::RampChanged {
                    environment: record.environment.clone(),
                    flag: record.flag.clone(),
                });
            }
            tree.insert(key.as_slice(), encoded.as_slice())?;
            if let Some((key, bytes)) = &incident {
                tree.insert(key.as_slice(), bytes.as_slice())?;
            }
            for (key, webhook) in &webhooks {
                tree.insert(key.as_slice(), webhook.as_slice())?;
            }
            for entry in &audit {
                append_audit(tree, entry.clone())?;
            }
            Ok(())
        })?;
        self.flush(&db).await?;
        Ok(record.version)
    }

    async fn pending_webhooks(&self) -> StoreResult<Vec<super::PendingWebhook>> {
        let db = self.db()?;
        Ok(self
            .scan::<super::PendingWebhook>(&db, WEBHOOK.as_bytes())?
            .into_iter()
            .map(|(_, webhook)| webhook)
            .collect())
    }

    async fn webhook_done(&self, id: &str) -> StoreResult<()> {
        let db = self.db()?;
        db.remove(format!("{WEBHOOK}{id}").into_bytes())
            .map_err(|error| self.fail(error))?;
        self.flush(&db).await
    }

    async fn reserve_incident_id(&self) -> StoreResult<u64> {
        let db = self.db()?;
        // From the same generator as the audit log's ids: they only grow.
        Ok(db.generate_id().map_err(|error| self.fail(error))? + 1)
    }

    async fn lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        // sled locks its directory to one process, so the lease only settles which of
        // this process's controllers decides (tests run two).
        let mut lease = self.lease_slot();
        let now = std::time::Instant::now();
        let token = match lease.as_ref() {
            Some(held) if held.holder == holder || held.expires <= now => {
                if held.holder == holder {
                    held.token
                } else {
                    held.token + 1
                }
            }
            Some(_) => return Ok(None),
            None => 1,
        };
        *lease = Some(Lease {
            holder: holder.to_string(),
            token,
            expires: now + ttl,
        });
        Ok(Some(token))
    }

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        let db = self.db()?;
        let end = incident_key(query.before.unwrap_or(u64::MAX));
        let mut found = Vec::new();
        for entry in db.range(INCIDENT.to_vec()..end).rev() {
            if found.len() >= query.limit {
                break;
            }
            let (key, value) = entry.map_err(|error| self.fail(error))?;
            let record: IncidentRecord = decode(&key, &value)?;
            if query.matches(&record) {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        let db = self.db()?;
        let key = incident_key(id);
        match db.get(&key).map_err(|error| self.fail(error))? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()> {
        let encoded = encode(&look);
        // A look is history, not a decision: it takes no part of the reserve that kills and
        // kill switches may use.
        self.check_space()?;
        let db = self.db()?;
        let tree = self.look_tree(&db)?;
        let prefix = aggregate_prefix(&look.environment, &look.flag, look.generation);
        let mut key = prefix.clone();
        key.extend_from_slice(&look.minute().to_be_bytes());
        tree.insert(key, encoded)
            .map_err(|error| self.fail(error))?;
        let keys = tree
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.fail(error))?;
        let removed = super::thinned(keys.len(), keep);
        if !removed.is_empty() {
            let mut batch = sled::Batch::default();
            for index in removed {
                batch.remove(keys[index].clone());
            }
            tree.apply_batch(batch).map_err(|error| self.fail(error))?;
        }
        self.flush(&db).await
    }

    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>> {
        let db = self.db()?;
        let tree = self.look_tree(&db)?;
        let prefix = aggregate_prefix(environment, flag, generation);
        tree.scan_prefix(&prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(|error| self.fail(error))?;
                decode(&key, &value)
            })
            .collect()
    }

    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let db = self.db()?;
        let tree = self.look_tree(&db)?;
        remove_prefix(&tree, &flag_aggregate_prefix(environment, flag))
            .map_err(|error| self.fail(error))?;
        self.flush(&db).await
    }

    async fn import(&self, dump: Dump) -> StoreResult<()> {
        self.check_space()?;
        let db = self.db()?;
        {
            let _items = self.lock_items();
            for (prefix, what) in [
                (ENV.as_bytes(), "environments"),
                (KEY.as_bytes(), "keys"),
                (AUDIT, "an audit log"),
            ] {
                if db.scan_prefix(prefix).next().is_some() {
                    return Err(StoreError::NotEmpty(what.to_string()));
                }
            }
            let mut batch = sled::Batch::default();
            for (record, state) in &dump.environments {
                let name = &record.name;
                batch.insert(
                    env_key(name),
                    encode(&EnvironmentRecord {
                        revision: state.revision,
                        ..record.clone()
                    }),
                );
                for (flag, item) in &state.document.flags {
                    let revision = state
                        .flag_revisions
                        .get(flag)
                        .copied()
                        .unwrap_or(state.revision);
                    batch.insert(
                        item_key(FLAG, name, flag),
                        encode(&StoredItem { revision, item }),
                    );
                }
                for (segment, item) in &state.document.segments {
                    batch.insert(
                        item_key(SEGMENT, name, segment),
                        encode(&StoredItem {
                            revision: state.revision,
                            item,
                        }),
                    );
                }
            }
            for record in &dump.keys {
                batch.insert(format!("{KEY}{}", record.id).into_bytes(), encode(record));
            }
            for entry in &dump.audit {
                batch.insert(audit_key(entry.id), encode(entry));
            }
            for record in &dump.ramps {
                batch.insert(
                    item_key(RAMP, &record.environment, &record.flag),
                    encode(record),
                );
            }
            for incident in &dump.incidents {
                batch.insert(incident_key(incident.id), encode(incident));
            }
            db.apply_batch(batch).map_err(|error| self.fail(error))?;
        }
        let mut looks = sled::Batch::default();
        for look in &dump.looks {
            let mut key = aggregate_prefix(&look.environment, &look.flag, look.generation);
            key.extend_from_slice(&look.minute().to_be_bytes());
            looks.insert(key, encode(look));
        }
        self.look_tree(&db)?
            .apply_batch(looks)
            .map_err(|error| self.fail(error))?;
        let mut aggregates = sled::Batch::default();
        for aggregate in &dump.aggregates {
            aggregates.insert(
                aggregate_key(&aggregate.key, &aggregate.counts),
                encode(&StoredCounts::from(&aggregate.counts)),
            );
        }
        for markers in &dump.unit_markers {
            if let AggregateCounts::UnitsSeen(units) = &markers.counts {
                let mut marker = unit_marker_prefix(&aggregate_key(&markers.key, &markers.counts));
                let base = marker.len();
                for unit in units {
                    marker.truncate(base);
                    marker.extend_from_slice(&unit.to_be_bytes());
                    aggregates.insert(marker.as_slice(), &[]);
                }
            }
        }
        for (id, time) in &dump.batch_ids {
            aggregates.insert(batch_key(id), &time.to_be_bytes());
            aggregates.insert(batch_time_key(*time, id), &[]);
        }
        self.aggregate_tree(&db)?
            .apply_batch(aggregates)
            .map_err(|error| self.fail(error))?;
        let mut webhooks = sled::Batch::default();
        for webhook in &dump.webhooks {
            webhooks.insert(
                format!("{WEBHOOK}{}", webhook.id).into_bytes(),
                encode(webhook),
            );
        }
        db.apply_batch(webhooks).map_err(|error| self.fail(error))?;
        // Audit entries and incidents take their ids from sled's generator, which only
        // grows: moved past the imported ids, new ones come after them.
        let last = dump
            .audit
            .iter()
            .map(|entry| entry.id)
            .chain(dump.incidents.iter().map(|incident| incident.id))
            .max()
            .unwrap_or(0);
        while db.generate_id().map_err(|error| self.fail(error))? + 1 < last {}
        self.flush(&db).await?;
        for (record, state) in &dump.environments {
            self.announce(ChangeEvent::Environment {
                name: record.name.clone(),
                revision: state.revision,
                deleted: false,
            });
        }
        self.announce(ChangeEvent::KeysChanged);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ready(&self) -> bool {
        // A database that failed is opened again and must take a write: opening alone
        // succeeds on a disk that is still full.
        if self.check_space().is_err() {
            return false;
        }
        let failed = self.broken.load(Ordering::SeqCst);
        let Ok(db) = self.db() else {
            return false;
        };
        if !failed {
            return db
                .get(READY_PROBE)
                .map_err(|error| self.fail(error))
                .is_ok();
        }
        let written = db
            .insert(READY_PROBE, clock_bytes())
            .map_err(|error| self.fail(error))
            .is_ok();
        written && self.flush(&db).await.is_ok()
    }

    // ---- Metric aggregates ----

    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        self.check_space()?;
        let db = self.db()?;
        if deltas.is_empty() {
            return Ok(());
        }
        let sums = sum_by_key(deltas);
        self.aggregate_tree(&db)?
            .transaction(|tree| add_sums(tree, &sums))
            .map_err(|error| match error {
                TransactionError::Abort(error) => error,
                TransactionError::Storage(error) => backend(error),
            })?;
        self.flush_counts(&db).await
    }

    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool> {
        self.check_space()?;
        let db = self.db()?;
        let sums = sum_by_key(deltas);
        let tree = self.aggregate_tree(&db)?;
        // First, so that an id past the window counts again.
        self.forget_old_batches(&tree, now);
        let (id_key, time_key) = (batch_key(batch_id), batch_time_key(now, batch_id));
        let merged = tree
            .transaction(|tree| {
                if tree.get(&id_key)?.is_some() {
                    return Ok(false);
                }
                tree.insert(id_key.as_slice(), &now.to_be_bytes())?;
                tree.insert(time_key.as_slice(), &[])?;
                add_sums(tree, &sums)?;
                Ok(true)
            })
            .map_err(|error| match error {
                TransactionError::Abort(error) => error,
                TransactionError::Storage(error) => backend(error),
            })?;
        if merged {
            self.flush_counts(&db).await?;
        }
        Ok(merged)
    }

    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        self.check_space()?;
        let db = self.db()?;
        let tree = self.aggregate_tree(&db)?;
        let prefix = flag_aggregate_prefix(environment, flag);
        remove_prefix(&tree, &prefix).map_err(|error| self.fail(error))?;
        remove_markers(&tree, &unit_marker_prefix(&prefix)).map_err(|error| self.fail(error))?;
        self.flush(&db).await
    }

    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let db = self.db()?;
        let prefix = aggregate_prefix(environment, flag, generation);
        let tree = self.aggregate_tree(&db)?;
        let mut found = Vec::new();
        for entry in tree.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(|error| self.fail(error))?;
            let corrupt = |message: &str| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                message: message.to_string(),
            };
            let rest = &key[prefix.len()..];
            if rest.len() < 6 {
                return Err(corrupt("the key is too short"));
            }
            let stage = Stage::new(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
            let cohort = super::cohort_of_letter(rest[4])
                .ok_or_else(|| corrupt("the key names no cohort"))?;
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

    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>> {
        let db = self.db()?;
        let tree = self.aggregate_tree(&db)?;
        let mut found = Vec::new();
        for entry in tree.scan_prefix(BATCH_PREFIX) {
            let (key, value) = entry.map_err(|error| self.fail(error))?;
            let corrupt = |message: &str| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                message: message.to_string(),
            };
            let id = std::str::from_utf8(&key[BATCH_PREFIX.len()..])
                .map_err(|_| corrupt("the batch id is not UTF-8"))?;
            let time = value
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("the batch time is not 8 bytes"))?;
            found.push((id.to_string(), time));
        }
        Ok(found)
    }

    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let db = self.db()?;
        let prefix = unit_marker_prefix(&aggregate_prefix(environment, flag, generation));
        let tree = self.aggregate_tree(&db)?;
        let mut found: std::collections::BTreeMap<
            (Stage, ripcord_engine::Cohort),
            std::collections::BTreeSet<u64>,
        > = std::collections::BTreeMap::new();
        for key in tree.scan_prefix(&prefix).keys() {
            let key = key.map_err(|error| self.fail(error))?;
            // {stage: 4}{cohort}u{unit: 8}
            let parsed = <[u8; 14]>::try_from(&key[prefix.len()..]).ok().and_then(
                |[s0, s1, s2, s3, cohort, _, unit @ ..]| {
                    Some((
                        Stage::new(u32::from_be_bytes([s0, s1, s2, s3])),
                        super::cohort_of_letter(cohort)?,
                        u64::from_be_bytes(unit),
                    ))
                },
            );
            let Some((stage, cohort, unit)) = parsed else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    message: "not a unit marker: the wrong length or no cohort".to_string(),
                });
            };
            found.entry((stage, cohort)).or_default().insert(unit);
        }
        Ok(found
            .into_iter()
            .map(|(place, units)| {
                Aggregate::units_seen(environment, flag, generation, place, units)
            })
            .collect())
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
    Value {
        bins: Vec<u32>,
        counts: Vec<u64>,
    },
    Rate {
        events: u64,
        trials: u64,
    },
    /// Distinct units counted; their markers are keys of their own (see `UNIT_PREFIX`).
    Units {
        units: u64,
    },
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
            AggregateCounts::Units(units) => StoredCounts::Units { units: *units },
            // Only a count is stored: `add_sums` turns the units of a delta into one.
            AggregateCounts::UnitsSeen(units) => StoredCounts::Units {
                units: units.len() as u64,
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
    fn look_tree(&self, db: &sled::Db) -> StoreResult<sled::Tree> {
        db.open_tree(LOOKS_TREE).map_err(|error| self.fail(error))
    }

    /// Flushes merged counts. They are in: failing now would have the reporters send them
    /// again and count them twice, so a flush that fails is tried again before the batch
    /// is failed.
    async fn flush_counts(&self, db: &sled::Db) -> StoreResult<()> {
        let mut wait = std::time::Duration::from_millis(50);
        for _ in 0..FLUSH_RETRIES {
            match self.flush(db).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "flushing metric aggregates failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        self.flush(db).await
    }

    /// Forgets batch ids older than [`super::BATCH_IDS_KEPT_SECONDS`], and the oldest past
    /// [`super::MAX_BATCH_IDS`]; at most once a minute, since it reads every id.
    fn forget_old_batches(&self, tree: &sled::Tree, now: u64) {
        let last = self.batches_forgotten.load(Ordering::Relaxed);
        if now < last.saturating_add(60) {
            return;
        }
        self.batches_forgotten.store(now, Ordering::Relaxed);
        let cutoff = now.saturating_sub(super::BATCH_IDS_KEPT_SECONDS);
        let times: Vec<Vec<u8>> = tree
            .scan_prefix(BATCH_TIME_PREFIX)
            .keys()
            .filter_map(std::result::Result::ok)
            .map(|key| key.to_vec())
            .collect();
        let excess = times.len().saturating_sub(super::MAX_BATCH_IDS);
        let mut batch = sled::Batch::default();
        for (index, key) in times.iter().enumerate() {
            let rest = &key[BATCH_TIME_PREFIX.len()..];
            let Some((time, id)) = rest.split_first_chunk::<8>() else {
                batch.remove(key.as_slice());
                continue;
            };
            if index >= excess && u64::from_be_bytes(*time) >= cutoff {
                break;
            }
            batch.remove(key.as_slice());
            let mut id_key = BATCH_PREFIX.to_vec();
            id_key.extend_from_slice(id);
            batch.remove(id_key);
        }
        if let Err(error) = tree.apply_batch(batch) {
            // Forgotten on the next try; until then the ids are only kept a little longer.
            tracing::warn!(%error, "forgetting old batch ids failed");
        }
    }

    fn aggregate_tree(&self, db: &sled::Db) -> StoreResult<sled::Tree> {
        // sled hands out the same tree each time; opening it is a map lookup.
        db.open_tree(AGGREGATES_TREE)
            .map_err(|error| self.fail(error))
    }
}

/// Sums deltas to one entry per stored key, so that a transaction reads and writes each once.
fn sum_by_key(deltas: Vec<Aggregate>) -> Vec<(Vec<u8>, AggregateCounts)> {
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
    sums
}

/// Adds `sums` to the stored counts, inside a transaction. Units seen count where they
/// have no marker yet, and get one.
fn add_sums(
    tree: &TransactionalTree,
    sums: &[(Vec<u8>, AggregateCounts)],
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for (key, delta) in sums {
        let new_units;
        let delta = match delta {
            AggregateCounts::UnitsSeen(units) => {
                let mut new = 0u64;
                let mut marker = unit_marker_prefix(key);
                let base = marker.len();
                for unit in units {
                    marker.truncate(base);
                    marker.extend_from_slice(&unit.to_be_bytes());
                    // Read first: most units of a flush reported before, and writing
                    // their markers again would only grow sled's log.
                    if tree.get(marker.as_slice())?.is_none() {
                        tree.insert(marker.as_slice(), &[])?;
                        new += 1;
                    }
                }
                new_units = AggregateCounts::Units(new);
                &new_units
            }
            other => other,
        };
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
                message: "the stored counts are of another kind than the key says".to_string(),
            });
        }
        tree.insert(key.as_slice(), encode(&StoredCounts::from(&sum)))?;
    }
    Ok(())
}

// Batch ids live in the aggregates tree, so that one transaction remembers an id with its
// counts. Their keys start with 0xFF, which no environment name (and so no aggregate key)
// does: `\xffbatch\0{id}` → the time it was merged, and `\xfftime\0{time: 8 bytes BE}{id}`,
// the same ids in the order they go.
const BATCH_PREFIX: &[u8] = b"\xffbatch\0";
const BATCH_TIME_PREFIX: &[u8] = b"\xfftime\0";

// Unit markers live in the aggregates tree too, for the same reason, but outside every
// flag's aggregate prefix, so that the controller's scan of a generation's counts never
// reads them: `\xffunit\0` + the key of the units' count + the unit's hash (8 bytes BE),
// with an empty value. A marker is about 60 bytes of key in sled's pages.
const UNIT_PREFIX: &[u8] = b"\xffunit\0";

/// The markers of the units counted under `count_key` (an aggregate key of units) start
/// with this.
fn unit_marker_prefix(count_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(UNIT_PREFIX.len() + count_key.len() + 8);
    key.extend_from_slice(UNIT_PREFIX);
    key.extend_from_slice(count_key);
    key
}

fn batch_key(id: &str) -> Vec<u8> {
    let mut key = BATCH_PREFIX.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn batch_time_key(time: u64, id: &str) -> Vec<u8> {
    let mut key = BATCH_TIME_PREFIX.to_vec();
    key.extend_from_slice(&time.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
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
fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    for key in tree.scan_prefix(prefix).keys() {
        batch.remove(key?);
    }
    tree.apply_batch(batch)
}

/// Unit markers removed per batch: a flag may hold millions, and one batch of them all
/// would be held in memory and written to the log at once.
const MARKERS_PER_BATCH: usize = 10_000;

/// Removes every unit marker under `prefix`, a bounded batch at a time. Markers need not go
/// at once: their counts are removed atomically beforehand, and markers a crash leaves
/// behind are removed by the flag's next clear, which every ramp start does.
fn remove_markers(tree: &sled::Tree, prefix: &[u8]) -> sled::Result<()> {
    loop {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in tree.scan_prefix(prefix).keys().take(MARKERS_PER_BATCH) {
            batch.remove(key?);
            removed += 1;
        }
        if removed == 0 {
            return Ok(());
        }
        tree.apply_batch(batch)?;
    }
}

fn aggregate_key(key: &AggregateKey, counts: &AggregateCounts) -> Vec<u8> {
    let mut stored = aggregate_prefix(&key.environment, &key.flag, key.generation);
    stored.extend_from_slice(&key.stage.get().to_be_bytes());
    stored.push(super::cohort_letter(key.cohort));
    stored.push(kind_byte(counts));
    stored.extend_from_slice(key.metric.as_bytes());
    stored
}

fn kind_byte(counts: &AggregateCounts) -> u8 {
    match counts {
        AggregateCounts::Values(_) => b'v',
        AggregateCounts::Rate { .. } => b'r',
        AggregateCounts::UnitsSeen(_) | AggregateCounts::Units(_) => b'u',
    }
}

fn empty_like(counts: &AggregateCounts) -> AggregateCounts {
    match counts {
        AggregateCounts::Values(_) => AggregateCounts::Values(Default::default()),
        AggregateCounts::Rate { .. } => AggregateCounts::Rate {
            events: 0,
            trials: 0,
        },
        AggregateCounts::UnitsSeen(_) | AggregateCounts::Units(_) => AggregateCounts::Units(0),
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
        StoredCounts::Units { units } => Ok(AggregateCounts::Units(units)),
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

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sled_store_copies_into_another() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        crate::store::conformance::copy_everything(
            &super::SledStore::open(from.path()).unwrap(),
            &super::SledStore::open(to.path()).unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn commits_survive_reopening() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = super::SledStore::open(directory.path()).unwrap();
            crate::store::conformance::write_one_flag(&store).await;
            crate::store::conformance::write_batch(&store).await;
        }
        let store = reopen(directory.path()).await;
        crate::store::conformance::check_one_flag(&store).await;
        crate::store::conformance::check_batch(&store).await;
    }

    #[tokio::test]
    async fn below_the_reserve_writes_are_refused_and_reads_go_on() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(directory.path()).unwrap();
        crate::store::conformance::write_one_flag(&store).await;
        // No filesystem has this much free.
        let store = store.with_reserve(u64::MAX);
        let refused = crate::store::Store::clear_aggregates(&store, "durable", "checkout").await;
        assert!(
            matches!(&refused, Err(super::StoreError::Backend(message)) if message.contains("reserve")),
            "{refused:?}"
        );
        assert!(!crate::store::Store::ready(&store).await);
        let state = crate::store::Store::load_environment(&store, "durable")
            .await
            .unwrap()
            .expect("the environment written before");
        assert!(state.document.flags.contains_key("checkout"));

        let store = store.with_reserve(1);
        crate::store::Store::clear_aggregates(&store, "durable", "checkout")
            .await
            .unwrap();
        assert!(crate::store::Store::ready(&store).await);
    }

    #[tokio::test]
    async fn a_small_commit_may_use_the_upper_half_of_the_reserve() {
        let directory = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(directory.path()).unwrap();
        crate::store::conformance::write_one_flag(&store).await;
        // Free space is then between half the reserve and the reserve.
        let free = super::free_bytes(directory.path()).unwrap();
        let store = store.with_reserve(free + free / 2);
        let flag = |description: String| super::Mutation::PutFlag {
            key: "checkout".to_string(),
            flag: serde_json::from_value(serde_json::json!({
                "description": description,
                "type": "boolean",
                "variants": {"on": true, "off": false},
                "default_variant": "off",
                "enabled": false
            }))
            .unwrap(),
        };
        let large = crate::store::Store::commit(
            &store,
            "durable",
            1,
            vec![flag("x".repeat(100_000))],
            vec![],
        )
        .await;
        assert!(
            matches!(&large, Err(super::StoreError::Backend(message)) if message.contains("reserve")),
            "{large:?}"
        );
        let killed =
            crate::store::Store::commit(&store, "durable", 1, vec![flag(String::new())], vec![])
                .await;
        assert_eq!(killed.unwrap(), 2);
        assert!(!crate::store::Store::ready(&store).await);
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
        let tree = store.aggregate_tree(&store.db().unwrap()).unwrap();
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
