//! The service: what the admin API and the evaluation endpoints do, without knowing HTTP.
//!
//! Reads come from immutable per-environment snapshots swapped whole on every change, so
//! evaluation never takes a lock and never touches storage. Writes are serialized by one
//! writer lock per process, go to the store as one commit, and install the new snapshot
//! before they return, so the very next evaluation sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ripcord_engine::{Document, Flag, Limits, RulesetRef, Segment, Snapshot};
use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::feed::{Delta, Feed, Update};
use crate::store::{
    AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState, KeyRecord, Mutation,
    Scope, Store,
};

/// One environment, ready to serve: its compiled snapshot and the document it came from.
#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub revision: u64,
    pub snapshot: Snapshot,
    pub document: Document,
    pub flag_revisions: BTreeMap<String, u64>,
    /// The ruleset as SDKs receive it, serialized on first request and shared by every
    /// request and stream after it.
    delivered: OnceLock<Delivered>,
}

/// An environment's ruleset as JSON, with an `ETag` that is the hash of that JSON.
#[derive(Debug)]
pub struct Delivered {
    pub json: Bytes,
    pub etag: String,
}

impl Environment {
    pub fn new(
        name: &str,
        revision: u64,
        snapshot: Snapshot,
        document: Document,
        flag_revisions: BTreeMap<String, u64>,
    ) -> Environment {
        Environment {
            name: name.to_string(),
            revision,
            snapshot,
            document,
            flag_revisions,
            delivered: OnceLock::new(),
        }
    }

    pub fn ruleset(&self) -> RulesetRef<'_> {
        RulesetRef {
            environment: &self.name,
            revision: self.revision,
            flag_revisions: &self.flag_revisions,
            document: &self.document,
        }
    }

    /// The ruleset's JSON and `ETag`.
    pub fn delivered(&self) -> &Delivered {
        self.delivered.get_or_init(|| {
            let json = self.ruleset().to_json();
            let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&json));
            Delivered {
                json: Bytes::from(json),
                etag,
            }
        })
    }

    /// The revision at which a flag last changed.
    pub fn flag_revision(&self, key: &str) -> u64 {
        self.flag_revisions
            .get(key)
            .copied()
            .unwrap_or(self.revision)
    }
}

/// The key a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    pub environment: Option<String>,
}

/// A key as the API shows it: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub environment: Option<String>,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(record: &KeyRecord) -> KeyInfo {
        KeyInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            scope: record.scope,
            environment: record.environment.clone(),
            prefix: record.prefix.clone(),
            created_at: record.created_at.clone(),
            revoked_at: record.revoked_at.clone(),
        }
    }
}

type Environments = FxHashMap<String, Arc<Environment>>;
/// Keys by the raw SHA-256 of the token: authenticating a request hashes the token and
/// looks it up, with no hex encoding on the way.
type KeysByHash = FxHashMap<[u8; 32], Arc<Principal>>;
/// Evaluating keys by their OFREP event-stream channel, in hex.
type KeysByChannel = FxHashMap<String, Arc<Principal>>;

/// Sets channels apart from any other use of a key's hash.
const CHANNEL_LABEL: &[u8] = b"ripcord ofrep event-stream channel v1\0";

/// The OFREP event-stream channel of the key whose token hashes to `hash`. Browsers'
/// `EventSource` cannot send headers, so the stream's URL must identify the key by itself:
/// derived from the hash, the channel names one key without being a token for any API.
fn channel_of(hash: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CHANNEL_LABEL);
    hasher.update(hash);
    hex::encode(hasher.finalize())
}

pub struct Service {
    store: Arc<dyn Store>,
    limits: Limits,
    environments: ArcSwap<Environments>,
    keys: ArcSwap<KeysByHash>,
    channels: ArcSwap<KeysByChannel>,
    /// The hash of the bootstrap admin key from the configuration, if one was given.
    bootstrap_admin: Option<[u8; 32]>,
    writer: Mutex<()>,
    feed: Feed,
    reach: Arc<crate::reach::ReachTracker>,
}

/// What an environment's document holds by key: flags and segments. The admin API edits
/// both the same way.
pub trait Item: Clone {
    /// `flag` or `segment`, for messages.
    const KIND: &'static str;

    fn items(document: &mut Document) -> &mut BTreeMap<String, Self>;
}

impl Item for Flag {
    const KIND: &'static str = "flag";

    fn items(document: &mut Document) -> &mut BTreeMap<String, Flag> {
        &mut document.flags
    }
}

impl Item for Segment {
    const KIND: &'static str = "segment";

    fn items(document: &mut Document) -> &mut BTreeMap<String, Segment> {
        &mut document.segments
    }
}

fn no_such<T: Item>(key: &str) -> Error {
    Error::NotFound {
        what: T::KIND,
        key: key.to_string(),
    }
}

/// A change to an environment's document, for the audit log.
pub struct Change<'a> {
    pub environment: &'a str,
    pub actor: &'a Principal,
    /// What caused the change, such as `kill_switch` or `import`.
    pub operation: &'static str,
    /// Why, when the caller knows: the ramp controller's reason for a decision.
    pub reason: Option<&'a str>,
}

/// The hash a key is stored as, in hex.
pub fn hash_key(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Environment names become part of URLs and store keys: keep them plain.
pub fn check_environment_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        });
    if valid {
        Ok(())
    } else {
        Err(Error::bad_request(
            format!("`{name}` is not an environment name: use 1 to 64 of a-z, 0-9, '-' and '_'"),
            Some("name".to_string()),
        ))
    }
}

fn new_token(scope: Scope) -> Result<String> {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|error| {
        Error::Store(crate::store::StoreError::Backend(format!(
            "no randomness: {error}"
        )))
    })?;
    Ok(format!(
        "ripcord-{}-{}",
        scope.as_str(),
        hex::encode(random)
    ))
}

impl Service {
    /// Loads every environment from the store and compiles its snapshot.
    pub async fn open(
        store: Arc<dyn Store>,
        limits: Limits,
        bootstrap_admin_key: Option<&str>,
    ) -> anyhow::Result<Arc<Service>> {
        let service = Arc::new(Service {
            store,
            limits,
            environments: ArcSwap::default(),
            keys: ArcSwap::default(),
            channels: ArcSwap::default(),
            bootstrap_admin: bootstrap_admin_key.map(digest),
            writer: Mutex::new(()),
            feed: Feed::default(),
            reach: Arc::default(),
        });
        let mut environments = Environments::default();
        for record in service.store.environments().await? {
            if let Some(environment) = service.load(&record.name).await? {
                environments.insert(record.name.clone(), Arc::new(environment));
            }
        }
        service.environments.store(Arc::new(environments));
        service.reload_keys().await?;
        Ok(service)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store behind the service, for the parts of the server that keep state of their
    /// own beside the environments (ramps, incidents, metric aggregates).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Which instances have fetched which revision: a kill's reach.
    pub fn reach(&self) -> &Arc<crate::reach::ReachTracker> {
        &self.reach
    }

    async fn load(&self, name: &str) -> Result<Option<Environment>> {
        let Some(state) = self.store.load_environment(name).await? else {
            return Ok(None);
        };
        // A stored document was valid when written; with lowered limits it may not be any
        // more, and refusing to start would be worse than serving it.
        let limits = Limits::unbounded();
        Ok(Some(build(name, state, &limits)?))
    }

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

    async fn reload_all(&self) -> Result<()> {
        for record in self.store.environments().await? {
            self.reload_environment(&record.name).await?;
        }
        self.reload_keys().await
    }

    async fn reload_environment(&self, name: &str) -> Result<()> {
        let _writer = self.writer.lock().await;
        let loaded = self.load(name).await?;
        self.install(name, loaded.map(Arc::new));
        Ok(())
    }

    async fn reload_keys(&self) -> Result<()> {
        let mut keys = KeysByHash::default();
        let mut channels = KeysByChannel::default();
        for record in self.store.keys().await? {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&record.hash, &mut hash).is_err() {
                tracing::warn!(key = %record.id, "a stored key's hash is not 32 hex bytes: the key is ignored");
                continue;
            }
            if record.revoked_at.is_none() {
                let principal = Arc::new(Principal {
                    name: record.name,
                    scope: record.scope,
                    environment: record.environment,
                });
                // Only keys that evaluate have something to be told about.
                if principal.scope != Scope::Admin && principal.environment.is_some() {
                    channels.insert(channel_of(&hash), Arc::clone(&principal));
                }
                keys.insert(hash, principal);
            }
        }
        if let Some(hash) = self.bootstrap_admin {
            keys.insert(
                hash,
                Arc::new(Principal {
                    name: "bootstrap-admin".to_string(),
                    scope: Scope::Admin,
                    environment: None,
                }),
            );
        }
        self.keys.store(Arc::new(keys));
        self.channels.store(Arc::new(channels));
        Ok(())
    }

    /// Makes `environment` the one served under `name` (or removes it) and announces it on
    /// the delivery feed. Called with the writer lock held.
    fn install(&self, name: &str, environment: Option<Arc<Environment>>) {
        let previous = self.environment(name);
        self.environments.rcu(|current| {
            let mut next = Environments::clone(current);
            match &environment {
                Some(environment) => next.insert(name.to_string(), Arc::clone(environment)),
                None => next.remove(name),
            };
            next
        });
        if environment.is_none() {
            self.reach.forget(name);
        }
        self.feed.publish(previous.as_ref(), environment.as_ref());
    }

    /// The delivery feed: every environment installed from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Update>> {
        self.feed.subscribe()
    }

    /// The deltas from `revision` to the environment's `current` revision, if all are kept.
    pub fn deltas_since(
        &self,
        environment: &str,
        revision: u64,
        current: u64,
    ) -> Option<Vec<Arc<Delta>>> {
        self.feed.deltas_since(environment, revision, current)
    }

    // ---- reads -------------------------------------------------------------------------

    /// The environment's current snapshot. Lock-free.
    pub fn environment(&self, name: &str) -> Option<Arc<Environment>> {
        self.environments.load().get(name).cloned()
    }

    pub fn environment_names(&self) -> Vec<(String, u64)> {
        let mut names: Vec<_> = self
            .environments
            .load()
            .values()
            .map(|environment| (environment.name.clone(), environment.revision))
            .collect();
        names.sort();
        names
    }

    fn require(&self, name: &str) -> Result<Arc<Environment>> {
        self.environment(name).ok_or_else(|| Error::NotFound {
            what: "environment",
            key: name.to_string(),
        })
    }

    /// The key with this token, if it is valid. Lock-free.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        self.keys.load().get(&digest(token)).cloned()
    }

    /// The OFREP event-stream channel of a key's token (valid or not).
    pub fn event_channel(&self, token: &str) -> String {
        channel_of(&digest(token))
    }

    /// The key whose channel this is, while the key is valid. Lock-free.
    pub fn channel_principal(&self, channel: &str) -> Option<Arc<Principal>> {
        self.channels.load().get(channel).cloned()
    }

    pub async fn ready(&self) -> bool {
        self.store.ready().await
    }

    pub async fn environments(&self) -> Result<Vec<EnvironmentRecord>> {
        Ok(self.store.environments().await?)
    }

    pub fn export(&self, environment: &str) -> Result<Document> {
        Ok(self.require(environment)?.document.clone())
    }

    pub fn flags(&self, environment: &str) -> Result<Vec<(String, Flag, u64)>> {
        let environment = self.require(environment)?;
        Ok(environment
            .document
            .flags
            .iter()
            .map(|(key, flag)| {
                let revision = environment.flag_revision(key);
                (key.clone(), flag.clone(), revision)
            })
            .collect())
    }

    pub fn flag(&self, environment: &str, key: &str) -> Result<(Flag, u64)> {
        let environment = self.require(environment)?;
        let flag = environment
            .document
            .flags
            .get(key)
            .ok_or_else(|| Error::NotFound {
                what: "flag",
                key: key.to_string(),
            })?;
        let revision = environment.flag_revision(key);
        Ok((flag.clone(), revision))
    }

    pub fn segments(&self, environment: &str) -> Result<BTreeMap<String, Segment>> {
        Ok(self.require(environment)?.document.segments.clone())
    }

    pub fn segment(&self, environment: &str, key: &str) -> Result<Segment> {
        self.require(environment)?
            .document
            .segments
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "segment",
                key: key.to_string(),
            })
    }

    pub async fn keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(self.store.keys().await?.iter().map(KeyInfo::from).collect())
    }

    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        Ok(self.store.audit(query).await?)
    }

    // ---- writes ------------------------------------------------------------------------

    pub async fn create_environment(
        &self,
        name: &str,
        actor: &Principal,
    ) -> Result<EnvironmentRecord> {
        check_environment_name(name)?;
        let _writer = self.writer.lock().await;
        let time = now();
        let record = self
            .store
            .create_environment(
                name,
                &time,
                audit_record(
                    &time,
                    actor,
                    Some(name),
                    "environment.create",
                    name,
                    "create_environment",
                    None,
                    None,
                ),
            )
            .await?;
        self.install(
            name,
            Some(Arc::new(Environment::new(
                name,
                0,
                Snapshot::empty(0),
                Document::default(),
                BTreeMap::new(),
            ))),
        );
        Ok(record)
    }

    /// Deletes an environment with its flags and segments, and revokes its keys.
    pub async fn delete_environment(&self, name: &str, actor: &Principal) -> Result<()> {
        let _writer = self.writer.lock().await;
        let time = now();
        self.store
            .delete_environment(
                name,
                audit_record(
                    &time,
                    actor,
                    Some(name),
                    "environment.delete",
                    name,
                    "delete_environment",
                    None,
                    None,
                ),
            )
            .await?;
        self.install(name, None);
        self.reload_keys().await
    }

    /// Applies `edit` to the environment's document, validates the result, and commits the
    /// difference as one revision. Invalid results change nothing. Returns the new revision
    /// (the current one when `edit` changed nothing).
    pub async fn change(
        &self,
        change: Change<'_>,
        edit: impl FnOnce(&mut Document) -> Result<()>,
    ) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let current = self.require(change.environment)?;
        let mut document = current.document.clone();
        edit(&mut document)?;

        let revision = current.revision + 1;
        let time = now();
        let mut mutations = Vec::new();
        let mut audit = Vec::new();
        let mut flag_revisions = BTreeMap::new();
        // A flag whose segment changed serves differently from now on, so it gets the new
        // revision too: apps tag metrics with it, and one revision must mean one behaviour.
        let changed_segments: BTreeSet<&String> = current
            .document
            .segments
            .keys()
            .chain(document.segments.keys())
            .filter(|key| current.document.segments.get(*key) != document.segments.get(*key))
            .collect();
        let uses_changed_segment = |flag: &Flag| {
            flag.rules.iter().any(|rule| {
                rule.segment
                    .as_ref()
                    .is_some_and(|segment| changed_segments.contains(segment))
            })
        };
        let flag_keys: BTreeSet<&String> = current
            .document
            .flags
            .keys()
            .chain(document.flags.keys())
            .collect();
        for key in flag_keys {
            let before = current.document.flags.get(key);
            let after = document.flags.get(key);
            let operation = if before != after {
                change.operation
            } else if after.is_some_and(uses_changed_segment) {
                "segment_change"
            } else {
                if let Some(&kept) = current.flag_revisions.get(key) {
                    flag_revisions.insert(key.clone(), kept);
                }
                continue;
            };
            let action = match (before, after) {
                (None, _) => "flag.create",
                (_, None) => "flag.delete",
                _ => "flag.update",
            };
            audit.push(audit_record(
                &time,
                change.actor,
                Some(change.environment),
                action,
                key,
                operation,
                before.map(to_value),
                after.map(to_value),
            ));
            match after {
                Some(flag) => {
                    flag_revisions.insert(key.clone(), revision);
                    mutations.push(Mutation::PutFlag {
                        key: key.clone(),
                        flag: flag.clone(),
                    });
                }
                None => mutations.push(Mutation::DeleteFlag { key: key.clone() }),
            }
        }
        for key in changed_segments {
            let before = current.document.segments.get(key);
            let after = document.segments.get(key);
            let action = match (before, after) {
                (None, _) => "segment.create",
                (_, None) => "segment.delete",
                _ => "segment.update",
            };
            audit.push(audit_record(
                &time,
                change.actor,
                Some(change.environment),
                action,
                key,
                change.operation,
                before.map(to_value),
                after.map(to_value),
            ));
            mutations.push(match after {
                Some(segment) => Mutation::PutSegment {
                    key: key.clone(),
                    segment: segment.clone(),
                },
                None => Mutation::DeleteSegment { key: key.clone() },
            });
        }
        if mutations.is_empty() {
            return Ok(current.revision);
        }
        if let Some(reason) = change.reason {
            for entry in &mut audit {
                entry.reason = Some(reason.to_string());
            }
        }

        let state = EnvironmentState {
            revision,
            document,
            flag_revisions,
        };
        // Compiling a large environment takes milliseconds of CPU: off the HTTP worker, so
        // that the evaluations it serves do not wait behind an import.
        let (name, limits) = (change.environment.to_string(), self.limits);
        let environment = tokio::task::spawn_blocking(move || build(&name, state, &limits))
            .await
            .map_err(|error| {
                Error::Store(crate::store::StoreError::Backend(format!(
                    "compiling: {error}"
                )))
            })??;
        let committed = self
            .store
            .commit(change.environment, current.revision, mutations, audit)
            .await;
        if let Err(error) = committed {
            // The commit may have landed even though the call failed (a failed flush, say):
            // reload, or every later write would conflict with a revision this node never saw.
            let loaded = self.load(change.environment).await;
            if let Ok(loaded) = loaded {
                self.install(change.environment, loaded.map(Arc::new));
            }
            return Err(error.into());
        }
        self.install(change.environment, Some(Arc::new(environment)));
        Ok(revision)
    }

    /// Adds a flag or segment under a key that is not taken yet. Returns the new revision.
    pub async fn create_item<T: Item>(
        &self,
        change: Change<'_>,
        key: &str,
        item: T,
    ) -> Result<u64> {
        self.change(change, |document| {
            let items = T::items(document);
            if items.contains_key(key) {
                return Err(Error::Conflict(format!(
                    "{} `{key}` already exists",
                    T::KIND
                )));
            }
            items.insert(key.to_string(), item);
            Ok(())
        })
        .await
    }

    /// Applies `edit` to an existing flag or segment. Returns it as it is now.
    pub async fn edit_item<T: Item>(
        &self,
        change: Change<'_>,
        key: &str,
        edit: impl FnOnce(&mut T) -> Result<()>,
    ) -> Result<T> {
        let mut edited = None;
        self.change(change, |document| {
            let item = T::items(document)
                .get_mut(key)
                .ok_or_else(|| no_such::<T>(key))?;
            edit(item)?;
            edited = Some(item.clone());
            Ok(())
        })
        .await?;
        edited.ok_or_else(|| no_such::<T>(key))
    }

    pub async fn delete_item<T: Item>(&self, change: Change<'_>, key: &str) -> Result<()> {
        self.change(change, |document| {
            T::items(document)
                .remove(key)
                .map(drop)
                .ok_or_else(|| no_such::<T>(key))
        })
        .await
        .map(drop)
    }

    /// Creates a key and returns it with the token, which is shown this once only.
    pub async fn create_key(
        &self,
        name: &str,
        scope: Scope,
        environment: Option<&str>,
        actor: &Principal,
    ) -> Result<(KeyInfo, String)> {
        if name.trim().is_empty() || name.chars().count() > self.limits.max_key_length {
            return Err(Error::bad_request(
                format!(
                    "a key name is 1 to {} characters",
                    self.limits.max_key_length
                ),
                Some("name".to_string()),
            ));
        }
        let environment = match (scope, environment) {
            (Scope::Admin, None) => None,
            (Scope::Admin, Some(_)) => {
                return Err(Error::bad_request(
                    "admin keys work in every environment: leave `environment` out",
                    Some("environment".to_string()),
                ))
            }
            (_, None) => {
                return Err(Error::bad_request(
                    "client and server keys belong to one environment: name it",
                    Some("environment".to_string()),
                ))
            }
            (_, Some(environment)) => {
                self.require(environment)?;
                Some(environment.to_string())
            }
        };
        let token = new_token(scope)?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|error| Error::Store(crate::store::StoreError::Backend(error.to_string())))?;
        let time = now();
        let record = KeyRecord {
            id: hex::encode(id),
            name: name.to_string(),
            scope,
            environment,
            hash: hash_key(&token),
            prefix: token.chars().take(token.len() - 40).collect(),
            created_at: time.clone(),
            revoked_at: None,
        };
        let info = KeyInfo::from(&record);
        let audit = audit_record(
            &time,
            actor,
            record.environment.as_deref(),
            "key.create",
            &record.name,
            "create_key",
            None,
            Some(to_value(&info)),
        );
        {
            let _writer = self.writer.lock().await;
            // Checked again under the lock: the environment may have been deleted (and its
            // keys revoked) since the check above.
            if let Some(environment) = &record.environment {
                self.require(environment)?;
            }
            self.store.put_key(record, audit).await?;
        }
        self.reload_keys().await?;
        Ok((info, token))
    }

    pub async fn revoke_key(&self, id: &str, actor: &Principal) -> Result<KeyInfo> {
        let record = self
            .store
            .keys()
            .await?
            .into_iter()
            .find(|key| key.id == id)
            .ok_or_else(|| Error::NotFound {
                what: "key",
                key: id.to_string(),
            })?;
        if record.revoked_at.is_some() {
            return Ok(KeyInfo::from(&record));
        }
        let info = {
            let _writer = self.writer.lock().await;
            self.revoke_record(record, actor, &now()).await?
        };
        self.reload_keys().await?;
        Ok(info)
    }

    async fn revoke_record(
        &self,
        mut record: KeyRecord,
        actor: &Principal,
        time: &str,
    ) -> Result<KeyInfo> {
        let before = to_value(&KeyInfo::from(&record));
        record.revoked_at = Some(time.to_string());
        let info = KeyInfo::from(&record);
        let audit = audit_record(
            time,
            actor,
            record.environment.as_deref(),
            "key.revoke",
            &record.name,
            "revoke_key",
            Some(before),
            Some(to_value(&info)),
        );
        self.store.put_key(record, audit).await?;
        Ok(info)
    }

    /// Whether a non-revoked admin key is stored (the bootstrap key from the configuration
    /// does not count).
    pub async fn has_stored_admin_key(&self) -> Result<bool> {
        Ok(self
            .store
            .keys()
            .await?
            .iter()
            .any(|key| key.scope == Scope::Admin && key.revoked_at.is_none()))
    }
}

fn build(name: &str, state: EnvironmentState, limits: &Limits) -> Result<Environment> {
    let snapshot = Snapshot::compile(
        &state.document,
        state.revision,
        |key| {
            state
                .flag_revisions
                .get(key)
                .copied()
                .unwrap_or(state.revision)
        },
        limits,
    )?;
    Ok(Environment::new(
        name,
        state.revision,
        snapshot,
        state.document,
        state.flag_revisions,
    ))
}

fn to_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[allow(clippy::too_many_arguments)]
fn audit_record(
    time: &str,
    actor: &Principal,
    environment: Option<&str>,
    action: &str,
    target: &str,
    operation: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        time: time.to_string(),
        actor: actor.name.clone(),
        environment: environment.map(str::to_string),
        action: action.to_string(),
        target: target.to_string(),
        operation: operation.to_string(),
        before,
        after,
        revision: None,
        reason: None,
    }
}
