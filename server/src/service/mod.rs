//! The service: what the admin API and the evaluation endpoints do, without knowing HTTP.
//!
//! Reads come from immutable per-environment snapshots swapped whole on every change, so
//! evaluation never takes a lock and never touches storage. Writes are serialized by one
//! writer lock per process, go to the store as one commit, and install the new snapshot
//! before they return, so the very next evaluation sees them.
//!
//! Here: the [`Service`], its environments and how a new snapshot is installed. Beside it:
//! `audit` (the difference between two documents, as mutations and audit records), `keys`
//! (keys, tokens, [`Principal`], authentication) and `store_changes` (following the store's
//! change events, for commits made by other nodes).

mod audit;
mod keys;
mod restore;
mod store_changes;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ripcord_engine::{Document, Flag, Limits, Segment, Snapshot};
use rustc_hash::FxHashMap;
use tokio::sync::Mutex;

use crate::clock;
use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::feed::{Delta, Feed, Update};
use crate::principal::Principal;
use crate::store::{
    AuditQuery, AuditRecord, EnvironmentRecord, EnvironmentState, KeyRecord, Scope, Store,
    StoreError,
};
use audit::{audit_record, to_value, Diff};
use keys::Keys;

pub use audit::Change;
pub use keys::{hash_key, KeyInfo};
pub use restore::Restored;

type Environments = FxHashMap<String, Arc<Environment>>;

/// How long a failed write waits to read its environment back before it answers. A store
/// read takes microseconds when the store works; one that hangs is read again before the
/// next write in any case.
const READ_BACK: std::time::Duration = std::time::Duration::from_millis(500);

/// How many times a write whose revision another node took first is made again on what that
/// node wrote, before the caller gets a conflict.
const CONFLICT_RETRIES: usize = 3;

pub struct Service {
    store: Arc<dyn Store>,
    /// The store's change feed from before the first load, until `follow_changes` takes it.
    changes: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<crate::store::ChangeEvent>>>,
    limits: Limits,
    environments: ArcSwap<Environments>,
    keys: Keys,
    writer: Mutex<()>,
    feed: Feed,
    reach: Arc<crate::reach::ReachTracker>,
    /// Environments whose last write failed, and so may have landed or may still land (a
    /// write that timed out finishes when the store comes back): read again before the next
    /// write, which would otherwise be refused as stale until the change follower caught up.
    unsure: std::sync::Mutex<std::collections::HashSet<String>>,
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

/// A compile task that did not finish (it panicked, or the runtime is shutting down): the
/// server's failure, answered 500, not the store's (503, which says to retry a write that
/// may have been applied).
fn compile_failed(error: tokio::task::JoinError) -> Error {
    Error::Internal(format!("compiling did not finish: {error}"))
}

/// The refusal of a change that expected the environment at a revision it has left.
pub fn stale_revision(environment: &str, expected: u64, current: u64) -> Error {
    Error::Conflict(format!(
        "environment `{environment}` is now at revision {current}, not {expected}: read it again"
    ))
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

impl Service {
    /// Loads every environment from the store and compiles its snapshot.
    pub async fn open(
        store: Arc<dyn Store>,
        limits: Limits,
        bootstrap_admin_key: Option<&str>,
    ) -> anyhow::Result<Arc<Service>> {
        // Subscribed before anything is loaded: a change another node makes while this one
        // loads waits in the receiver for `follow_changes`, rather than being missed.
        let changes = store.subscribe();
        let service = Arc::new(Service {
            changes: std::sync::Mutex::new(Some(changes)),
            store,
            limits,
            environments: ArcSwap::default(),
            unsure: std::sync::Mutex::default(),
            keys: Keys::new(bootstrap_admin_key),
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

    /// How many instances seen in the last hour have fetched `revision` of `environment`:
    /// over every node when the store is shared, else over this one.
    pub async fn kill_reach(
        &self,
        environment: &str,
        revision: u64,
        now: u64,
    ) -> crate::reach::Reach {
        let local = self.reach.reach(environment, revision, now);
        if !self.store.shared() {
            return local;
        }
        let active_after = now.saturating_sub(crate::reach::ACTIVE_SECONDS);
        match self.store.reach(environment, revision, active_after).await {
            // What this node saw in the last seconds may not be shared yet: the larger of
            // each count is the nearer to the truth.
            Ok(shared) => crate::reach::Reach {
                active: shared.active.max(local.active),
                fetched: shared.fetched.max(local.fetched),
            },
            Err(error) => {
                tracing::warn!(environment, %error, "reading the shared kill reach failed: counting this node's instances");
                local
            }
        }
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
        // Compiling takes milliseconds of CPU for a large environment: off the request
        // threads, as a change's is.
        let name = name.to_string();
        let built = tokio::task::spawn_blocking(move || build(&name, state, &limits))
            .await
            .map_err(compile_failed)?;
        Ok(Some(built?))
    }

    async fn reload_keys(&self) -> Result<()> {
        self.keys.install(self.store.keys().await?);
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
        self.keys.authenticate(token)
    }

    /// The OFREP event-stream channel of a key's token (valid or not).
    pub fn event_channel(&self, token: &str) -> String {
        Keys::event_channel(token)
    }

    /// The key whose channel this is, while the key is valid. Lock-free.
    pub fn channel_principal(&self, channel: &str) -> Option<Arc<Principal>> {
        self.keys.channel_principal(channel)
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
        let time = clock::now_rfc3339();
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
        let time = clock::now_rfc3339();
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
        edit: impl FnMut(&mut Document) -> Result<()>,
    ) -> Result<u64> {
        self.change_at(change, None, edit).await
    }

    /// `change`, made only if the environment is still at `expected` (when given): a
    /// caller that read the document at that revision does not overwrite a change it has
    /// not seen. Otherwise a conflict, and nothing changes.
    pub async fn change_at(
        &self,
        change: Change<'_>,
        expected: Option<u64>,
        mut edit: impl FnMut(&mut Document) -> Result<()>,
    ) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let unsure = self.unsure().contains(change.environment);
        if unsure {
            // A store that cannot be read cannot take the write either: refused now, not
            // after a commit on a revision this node is unsure of has waited out its own
            // timeout too.
            let loaded = self.load(change.environment).await?;
            self.install(change.environment, loaded.map(Arc::new));
            self.unsure().remove(change.environment);
        }
        let mut conflicts = 0;
        loop {
            let current = self.require(change.environment)?;
            if let Some(expected) = expected {
                if current.revision != expected {
                    return Err(stale_revision(
                        change.environment,
                        expected,
                        current.revision,
                    ));
                }
            }
            let mut document = current.document.clone();
            edit(&mut document)?;

            let revision = current.revision + 1;
            let time = clock::now_rfc3339();
            let Diff {
                mutations,
                audit,
                flag_revisions,
            } = audit::diff(&current, &document, &change, revision, &time);
            if mutations.is_empty() {
                return Ok(current.revision);
            }

            let state = EnvironmentState {
                revision,
                document,
                flag_revisions,
            };
            // Compiling a large environment takes milliseconds of CPU: off the HTTP worker,
            // so that the evaluations it serves do not wait behind an import.
            let (name, limits) = (change.environment.to_string(), self.limits);
            let environment = tokio::task::spawn_blocking(move || build(&name, state, &limits))
                .await
                .map_err(compile_failed)??;
            let committed = self
                .store
                .commit(change.environment, current.revision, mutations, audit)
                .await;
            match committed {
                Ok(_) => {
                    self.install(change.environment, Some(Arc::new(environment)));
                    return Ok(revision);
                }
                // Another node of a shared store committed first, and its change has not
                // reached this one yet: read it, and make this change again on top of it.
                Err(StoreError::RevisionConflict { .. }) if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    let loaded = self.load(change.environment).await?;
                    self.install(change.environment, loaded.map(Arc::new));
                }
                Err(error @ StoreError::RevisionConflict { .. }) => return Err(error.into()),
                Err(error) => {
                    // The commit may have landed even though the call failed (a failed
                    // flush, say): reload, or every later write would conflict with a
                    // revision this node never saw. Briefly: a store that hangs would make
                    // the read wait out the store's timeout again before the refusal is
                    // answered, and the next write reads again anyway.
                    let reload =
                        tokio::time::timeout(READ_BACK, self.load(change.environment)).await;
                    if let Ok(Ok(loaded)) = reload {
                        self.install(change.environment, loaded.map(Arc::new));
                    }
                    // A write that timed out may land after this read as well: read again
                    // before the next write.
                    self.unsure().insert(change.environment.to_string());
                    return Err(error.into());
                }
            }
        }
    }

    /// The list of environments to read again before their next write.
    fn unsure(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unsure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            items.insert(key.to_string(), item.clone());
            Ok(())
        })
        .await
    }

    /// Applies `edit` to an existing flag or segment. Returns it as it is now.
    pub async fn edit_item<T: Item>(
        &self,
        change: Change<'_>,
        key: &str,
        mut edit: impl FnMut(&mut T) -> Result<()>,
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
        let time = clock::now_rfc3339();
        let (record, token) = keys::new_key(name, scope, environment, &time)?;
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
            self.revoke_record(record, actor, &clock::now_rfc3339())
                .await?
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
    let environment = Environment::new(
        name,
        state.revision,
        snapshot,
        state.document,
        state.flag_revisions,
    );
    // Built here, off the request threads, rather than by the first evaluation after the
    // environment is installed: for a large environment that is tens of milliseconds.
    environment.ofrep_pieces();
    environment.client_visible();
    Ok(environment)
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError as _;

    /// A compile task that panicked is answered as the server's failure, not the store's.
    #[tokio::test]
    async fn a_compile_task_that_panicked_is_an_internal_error() {
        let joined = tokio::task::spawn_blocking(|| -> () { panic!("compiler bug") }).await;
        let Err(error) = joined else {
            panic!("the task panicked");
        };
        let error = super::compile_failed(error);
        assert!(matches!(error, super::Error::Internal(_)), "{error:?}");
        assert_eq!(error.error_response().status(), 500);
    }
}
