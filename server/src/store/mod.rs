//! Durable state: environments with their flags and segments, keys, and the audit log.
//!
//! The [`Store`] trait is the narrowest thing the service needs from a database, shaped so
//! that more than one backend can serve it: every write to an environment is one atomic
//! commit that checks and bumps the environment's revision, and every commit is announced
//! on a change feed so that every node can refresh its snapshot. [`sled`] is the embedded
//! default; every backend must pass the suite in [`conformance`]. The server reaches its
//! backend only through [`isolated`], which runs every call on threads of its own and bounds
//! how long it may take, so that a stuck disk cannot stall the threads that answer requests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ripcord_engine::ramp::{GuardReport, HoldReason, RampState};
use ripcord_engine::Stage;
use ripcord_engine::{Document, Flag, Segment};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

#[cfg(test)]
pub(crate) mod conformance;
pub mod copy;
#[cfg(test)]
pub(crate) mod faulty;
pub mod isolated;
pub mod redis;
#[cfg(test)]
pub(crate) mod redis_server;
pub mod sled;

/// An environment as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentRecord {
    pub name: String,
    /// Bumped by exactly one on every committed change to the environment.
    pub revision: u64,
    pub created_at: String,
}

/// Everything the service needs to rebuild an environment's snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvironmentState {
    pub revision: u64,
    pub document: Document,
    /// The revision at which each flag last changed.
    pub flag_revisions: BTreeMap<String, u64>,
}

/// One change inside a commit. The flags and segments a commit writes get the commit's new
/// revision.
// A commit holds a handful of mutations for the moment it takes to write them: boxing the
// flag would cost an allocation per write to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    PutFlag { key: String, flag: Flag },
    DeleteFlag { key: String },
    PutSegment { key: String, segment: Segment },
    DeleteSegment { key: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Ships inside apps: evaluates client-visible flags and reports metrics.
    Client,
    /// Backend services: evaluates every flag of its environment and reads its ruleset.
    Server,
    /// Changes things, in every environment.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::Server => "server",
            Scope::Admin => "admin",
        }
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The environment a client or server key belongs to; `None` for admin keys.
    pub environment: Option<String>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The key's first characters, so that people can tell their keys apart.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// One entry of the audit log: who changed what, when, from what to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Assigned by the store; increases with every entry.
    pub id: u64,
    /// RFC 3339.
    pub time: String,
    /// The name of the key that made the change.
    pub actor: String,
    pub environment: Option<String>,
    /// What happened, such as `flag.update` or `key.revoke`.
    pub action: String,
    /// The thing changed: a flag, segment or key name.
    pub target: String,
    /// The operation that caused the change, such as `kill_switch` or `import`.
    pub operation: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The environment revision the change produced.
    pub revision: Option<u64>,
    /// Why: the ramp controller's reason for a decision, or the one a person gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub environment: Option<String>,
    /// Entries about this flag only.
    pub flag: Option<String>,
    /// Only entries older than this id (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `record` is one this query asks for, apart from `before` and `limit`: of its
    /// environment, and about its flag (a flag's changes and its ramp's decisions).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let environment_matches = self
            .environment
            .as_ref()
            .is_none_or(|wanted| record.environment.as_ref() == Some(wanted));
        let flag_matches = self.flag.as_ref().is_none_or(|wanted| {
            (record.action.starts_with("flag.") || record.action.starts_with("ramp."))
                && &record.target == wanted
        });
        environment_matches && flag_matches
    }
}

/// A ramp as the server keeps it: the controller's state and what the server adds around
/// it. One per flag; a restarted ramp replaces it with the next generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampRecord {
    pub environment: String,
    pub flag: String,
    pub state: RampState,
    /// What the flag must become for the last decision, written before the flag is changed
    /// and cleared after: a crash in between is finished on the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<FlagEffect>,
    /// The last hold, so that the audit log gets an entry when it changes, not every tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldReason>,
    /// Set by a kill: the incident and the environment revision that carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillRecord>,
    /// Why the ramp waits for a person, while it does (a pause on an inconclusive stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Bumped by every write of the record: a write names the version it read, and is
    /// refused if another (on any node) came in between. 0 for a ramp not stored yet.
    #[serde(default)]
    pub version: u64,
}

/// A write of a ramp's record ([`Store::put_ramp`]), made only if the stored record is
/// still at `record.version`.
#[derive(Debug, Clone, PartialEq)]
pub struct RampWrite {
    pub record: RampRecord,
    pub audit: Vec<AuditRecord>,
    /// An incident recorded in the same step, under an id from
    /// [`Store::reserve_incident_id`]: a decision and its incident land together or not at
    /// all.
    pub incident: Option<IncidentRecord>,
    /// The ramp controller's fencing token ([`Store::lease`]) on the decisions it takes on
    /// its own: refused once another node has taken the lease.
    pub fence: Option<u64>,
    /// The decision's webhook deliveries, kept until they are delivered or given up.
    pub webhooks: Vec<PendingWebhook>,
}

/// A webhook delivery of a ramp decision, stored with the decision and removed once it is
/// delivered (or given up), so that a crash between the two does not lose it: a restarted
/// server sends what is left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWebhook {
    /// The delivery's id, the same on every try and after a restart: receivers deduplicate
    /// on it (`X-Ripcord-Delivery`).
    pub id: String,
    /// `ramp.kill`, `ramp.start`, ...
    pub event: String,
    /// The JSON body.
    pub body: Value,
}

/// The rollout percentage, and the kill switch when it changes, that a decision gives the
/// flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlagEffect {
    pub percentage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The flag's revision when the decision was taken. Once the flag has moved past it,
    /// the effect was carried out already, or a person has changed the flag since: either
    /// way it is not applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_revision: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillRecord {
    pub incident: u64,
    /// The environment revision at which the flag was killed; `None` until committed.
    pub revision: Option<u64>,
    /// RFC 3339.
    pub time: String,
}

/// What the guard saw when it pulled the ripcord (or paused on a regression): the evidence
/// of every guard, for the postmortem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentRecord {
    /// Assigned by the store; increases with every incident.
    pub id: u64,
    /// RFC 3339.
    pub time: String,
    pub environment: String,
    pub flag: String,
    pub generation: u64,
    /// `kill`, or `pause` for a regression with `on_regression: pause`.
    pub action: String,
    /// The stage (index into the ramp's `stages`) and the percentage it was at.
    #[schema(value_type = u32)]
    pub stage: Stage,
    pub percentage: f64,
    pub reason: String,
    /// Every guard: verdict, samples per cohort, medians or rates, U and z, the sequential
    /// p-value and its threshold, the effect with its interval, the tolerance.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Vec<GuardReport>,
    /// The look's sample-ratio check: whether the cohorts reported in the ratio their bands
    /// imply, which says how far the evidence can be trusted.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<ripcord_engine::ramp::SrmReport>,
}

/// One look of the ramp controller at a ramp, kept for the charts of its evidence over time:
/// every guard's evidence as that look left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LookRecord {
    pub environment: String,
    pub flag: String,
    pub generation: u64,
    /// Unix seconds. One look is kept per minute: a later look of the same minute replaces it.
    pub time: u64,
    /// The stage (index into the ramp's `stages`) and the percentage at the look.
    #[schema(value_type = u32)]
    pub stage: Stage,
    pub percentage: f64,
    /// `running`, `paused`, or where the look took the ramp: `killed`, `completed`.
    pub status: String,
    /// Every guard, in the ramp block's order.
    pub guards: Vec<LookGuard>,
}

/// One guard at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LookGuard {
    pub metric: String,
    /// The verdict, samples per cohort, the statistic (`z`, `log_lambda`) against its
    /// boundary (`p_value` against `threshold`), the effect with its interval, the tolerance;
    /// absent before the guard's first look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<ripcord_engine::stats::GuardEvidence>,
    /// Why the look could not judge, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LookRecord {
    /// The minute of the look: the one point kept for it.
    pub fn minute(&self) -> u64 {
        self.time / 60
    }
}

// ---- Records as backends write them -----------------------------------------------------

/// A flag or segment as a backend stores it: with the revision at which it last changed.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredItem<T> {
    pub(crate) revision: u64,
    pub(crate) item: T,
}

/// A record as backends store it: JSON.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Records hold strings, numbers and maps keyed by strings: serializing cannot fail.
    serde_json::to_string(value).expect("store records always serialize")
}

/// A record read back from `key`, or what is wrong with it there.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: impl AsRef<[u8]>,
) -> StoreResult<T> {
    serde_json::from_slice(bytes.as_ref()).map_err(|error| StoreError::Corrupt {
        key: key.to_string(),
        message: error.to_string(),
    })
}

/// Which of `count` points of a history, oldest first, to remove so that at most `keep`
/// stay: every other point of the older half, so that old history keeps its shape at half
/// the resolution and recent history keeps all of it. Empty while `count <= keep`.
pub fn thinned(count: usize, keep: usize) -> Vec<usize> {
    if count <= keep {
        return Vec::new();
    }
    // Thinning the older half removes a quarter; a `keep` far below `count` needs more
    // rounds, each over what the last one left.
    let mut alive: Vec<usize> = (0..count).collect();
    let mut removed = Vec::new();
    while alive.len() > keep.max(1) {
        let half = alive.len() / 2;
        let before = alive.len();
        let mut index = 0;
        alive.retain(|position| {
            let keep_it = index >= half || index % 2 == 0;
            if !keep_it {
                removed.push(*position);
            }
            index += 1;
            keep_it
        });
        if alive.len() == before {
            // Two points or fewer in the older half: the oldest goes.
            removed.push(alive.remove(0));
        }
    }
    removed.sort_unstable();
    removed
}

/// Which incidents to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    pub environment: Option<String>,
    pub flag: Option<String>,
    /// Only incidents older than this id (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

/// How far a kill has reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reach {
    /// Instances seen in the last hour.
    pub active: u64,
    /// Of those, the ones whose last fetched revision is at least the one asked about.
    pub fetched: u64,
}

/// What one node saw of one instance: the highest revision it fetched, and when it was last
/// seen (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenInstance {
    pub id: String,
    pub revision: u64,
    pub last_seen: u64,
}

impl IncidentQuery {
    /// Whether `record` is one this query asks for, apart from `before` and `limit`.
    pub fn matches(&self, record: &IncidentRecord) -> bool {
        self.environment
            .as_ref()
            .is_none_or(|environment| &record.environment == environment)
            && self.flag.as_ref().is_none_or(|flag| &record.flag == flag)
    }
}

/// What the change feed announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// The environment now has this revision (or was deleted, with `deleted`).
    Environment {
        name: String,
        revision: u64,
        deleted: bool,
    },
    KeysChanged,
    /// The feed missed changes (a shared backend trimmed its log past a node that was away):
    /// everything is to be read again.
    Resync,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("environment `{0}` does not exist")]
    NoSuchEnvironment(String),
    #[error("environment `{0}` already exists")]
    EnvironmentExists(String),
    /// Someone else committed first; the caller reloads and tries again.
    #[error("environment `{environment}` is at revision {found}, not {expected}")]
    RevisionConflict {
        environment: String,
        expected: u64,
        found: u64,
    },
    #[error("storage failed: {0}")]
    Backend(String),
    /// The ramp's record changed since the writer read it (on this node or another).
    #[error("the ramp of flag `{flag}` in environment `{environment}` changed meanwhile")]
    RampChanged { environment: String, flag: String },
    /// A shared store that no longer holds the deployment's data (a Redis restarted without
    /// persistence): refused, so that no node takes an empty store for the truth.
    #[error(
        "the store has lost this deployment's data (a Redis restarted without persistence, \
         or emptied): reads and writes are refused and every node keeps serving what it \
         has; put it back with `POST /api/v1/store/restore` on a node, or `ripcord store copy`"
    )]
    Lost,
    /// A shared store that holds no deployment: a new Redis, or one that lost its data.
    #[error(
        "Redis holds no Ripcord deployment: `ripcord store init --to URL` makes it a new, \
         empty one; `ripcord store copy` fills it from another store; if it lost its data \
         under running nodes, `POST /api/v1/store/restore` on one of them puts it back"
    )]
    Unmarked,
    /// An import into a store that already holds something.
    #[error("the store already holds {0}: importing is only into an empty store")]
    NotEmpty(String),
    /// The ramp controller's lease has passed to another node.
    #[error("the ramp controller's lease is held by another node")]
    LeaseLost,
    #[error("stored data is corrupt at `{key}`: {message}")]
    Corrupt { key: String, message: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>>;

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>>;

    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord>;

    /// Removes the environment with its flags and segments, and revokes its keys
    /// (`revoked_at` is the audit record's time; each revocation gets an audit entry of
    /// its own), in one atomic step.
    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()>;

    /// Applies `mutations` and appends `audit` in one atomic, durable step, if and only if
    /// the environment is still at `base_revision`. Returns the new revision,
    /// `base_revision + 1`. When this returns, the commit survives a crash.
    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64>;

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>>;

    /// Creates or replaces a key (revoking is replacing with `revoked_at` set), durably.
    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()>;

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    // Ramps and incidents: the controller's durable memory.

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>>;

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>>;

    /// Creates or replaces the ramp of `record.environment`/`record.flag`, appends `audit`
    /// and stores the incident, in one atomic, durable step, if the stored record is still
    /// at `record.version` (0: none is stored) and, with a fence, the lease is still held
    /// under it. Returns the version written. Does not change the environment's revision: a
    /// ramp's state changes on every look, its flag only through [`Store::commit`].
    async fn put_ramp(&self, write: RampWrite) -> StoreResult<u64>;

    /// Webhook deliveries stored with decisions and not yet delivered or given up.
    async fn pending_webhooks(&self) -> StoreResult<Vec<PendingWebhook>>;

    /// Forgets a pending webhook delivery: it was delivered, or given up.
    async fn webhook_done(&self, id: &str) -> StoreResult<()>;

    /// An incident id nobody else is given, for a [`RampWrite`]'s incident. Ids grow; one
    /// whose write is refused is never used.
    async fn reserve_incident_id(&self) -> StoreResult<u64>;

    /// Takes the ramp controller's lease for `holder`, or renews it if `holder` has it, for
    /// `ttl`; returns its fencing token, which grows with every new holder, or `None` while
    /// another holder's lease runs. One controller decides at a time, whatever the number
    /// of nodes.
    async fn lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>>;

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>>;

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>>;

    // Ramp look history: what the charts of a ramp's evidence are drawn from.

    /// Keeps `look` in its generation's history, durably: a look of a minute already kept
    /// replaces it; past `keep` points, the history is thinned as [`thinned`] says.
    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()>;

    /// One generation's history of a flag's ramp, oldest first.
    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>>;

    /// Removes every generation's history of a flag, durably. The controller calls it when a
    /// ramp starts, so that a flag keeps the history of one generation at most.
    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()>;

    /// Writes a copy of a store ([`copy::export`]) into this one, which must hold nothing
    /// yet: no environment, key or audit entry (refused with [`StoreError::NotEmpty`]).
    /// Ids, revisions and versions are kept, and later ones carry on from them.
    async fn import(&self, dump: copy::Dump) -> StoreResult<()>;

    // Kill reach over every node of a shared store. A store of one node leaves it to the
    // node's own tracker (`crate::reach`), and these do nothing.

    /// Whether other nodes share this store.
    fn shared(&self) -> bool {
        false
    }

    /// Adds what this node saw of an environment's instances to what every node saw: per
    /// instance, the highest revision and the latest time.
    async fn merge_reach(&self, _environment: &str, _seen: Vec<SeenInstance>) -> StoreResult<()> {
        Ok(())
    }

    /// The reach of `since_revision` over the instances any node saw after `active_after`.
    async fn reach(
        &self,
        _environment: &str,
        _since_revision: u64,
        _active_after: u64,
    ) -> StoreResult<Reach> {
        Ok(Reach::default())
    }

    /// Every commit, from this node or (for shared backends) any other.
    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent>;

    /// Whether the backend can serve reads and writes now.
    async fn ready(&self) -> bool;

    // ---- Metric aggregates (see [`Aggregate`]) ----

    /// Adds every delta's counts to the stored sums (absent ones start at zero), all of
    /// them or none, durably: when this returns, the sums survive a crash. Adding is all it
    /// does, so deltas may arrive in any order, repeat a key, and come from any number of
    /// nodes at once. Units seen ([`AggregateCounts::UnitsSeen`]) leave a marker each and
    /// add to their key's count only where there was no marker yet, in the same step.
    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()>;

    /// [`merge_aggregates`](Store::merge_aggregates) for one batch that names itself: adds
    /// its counts and remembers `batch_id` (at `now`, Unix seconds) in one atomic, durable
    /// step, and answers true; or, for an id remembered already, changes nothing and
    /// answers false, so that a batch sent again counts once. Ids are remembered for
    /// [`BATCH_IDS_KEPT_SECONDS`], and at most [`MAX_BATCH_IDS`] of them.
    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool>;

    /// Removes every aggregate of `flag`, of every generation, with its unit markers,
    /// durably. The controller calls it when a ramp starts, so that no generation ever reads
    /// another's counts.
    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()>;

    /// Every stored aggregate of one ramp generation of a flag, in no particular order:
    /// the counts, units as [`AggregateCounts::Units`], never their markers.
    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>>;

    /// The batch ids remembered, each with the time (Unix seconds) it was first merged: for
    /// copying a store ([`copy::export`]), so that a batch sent again after a move still
    /// counts once.
    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>>;

    /// The unit markers of one ramp generation of a flag, as one
    /// [`AggregateCounts::UnitsSeen`] per stage and cohort, in no particular order. It reads
    /// every marker: for copying a store ([`copy::export`]), not for the controller's looks.
    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>>;
}

/// How long a batch id is remembered: a batch sent again within it counts once.
pub const BATCH_IDS_KEPT_SECONDS: u64 = 3600;

/// The most batch ids remembered; past it the oldest are forgotten first.
pub const MAX_BATCH_IDS: usize = 1_000_000;

// ---- Metric aggregates ------------------------------------------------------------------
//
// Written by `crate::ingest` (group commits of accepted observations), read by the ramp
// controller. Every stored number is a plain counter that only ever grows by addition, so a
// shared backend can merge with an atomic increment per counter (Redis: HINCRBY) and any
// number of nodes can add to the same aggregate in any order. A count of distinct units
// grows by one per marker its merge adds (Redis: SADD answering 1, then HINCRBY), which is
// as indifferent to order and to the number of nodes.

/// Which aggregate: one guard metric's counts for one cohort at one stage of one ramp
/// generation of a flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateKey {
    pub environment: String,
    pub flag: String,
    /// The ramp's generation: a restarted ramp starts from no data.
    pub generation: u64,
    pub stage: Stage,
    pub cohort: ripcord_engine::Cohort,
    pub metric: String,
}

/// Counts of one aggregate: the amounts to add, or the sums stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateCounts {
    /// A `value` metric: observations per bin of the one fixed layout
    /// (`crate::ingest::bins`), by bin index, listing only bins with observations.
    Values(BTreeMap<u32, u64>),
    /// A `rate` metric: observations that were 1 (`events`) out of all (`trials`).
    Rate { events: u64, trials: u64 },
    /// In a delta: the reporting units that sent observations of the key's cohort at its
    /// stage, by a 64-bit hash of their names ([`unit_hash`]), whatever metric they
    /// reported (the key's `metric` is empty). The store keeps a marker of every unit it
    /// has counted, and adds to the key's [`Units`](AggregateCounts::Units) count only the
    /// units it had no marker of, in the same atomic step as the rest of the delta: a unit
    /// counts once per stage and cohort, however often it reports.
    UnitsSeen(std::collections::BTreeSet<u64>),
    /// Stored: how many distinct units reported in the key's cohort at its stage (the key's
    /// `metric` is empty). What [`Store::aggregates`] reads back; in a delta (an import),
    /// an amount to add as is.
    Units(u64),
}

impl Aggregate {
    /// The markers of the units counted at one stage and cohort of a flag's generation, as
    /// [`Store::unit_markers`] answers them (a units aggregate has no metric).
    pub(crate) fn units_seen(
        environment: &str,
        flag: &str,
        generation: u64,
        (stage, cohort): (Stage, ripcord_engine::Cohort),
        units: std::collections::BTreeSet<u64>,
    ) -> Aggregate {
        Aggregate {
            key: AggregateKey {
                environment: environment.to_string(),
                flag: flag.to_string(),
                generation,
                stage,
                cohort,
                metric: String::new(),
            },
            counts: AggregateCounts::UnitsSeen(units),
        }
    }
}

/// A cohort's one-letter name in stored keys and fields, `t` or `c`, in every store.
pub(crate) fn cohort_letter(cohort: ripcord_engine::Cohort) -> u8 {
    match cohort {
        ripcord_engine::Cohort::Treatment => b't',
        ripcord_engine::Cohort::Control => b'c',
    }
}

/// The cohort a stored letter names, if it names one.
pub(crate) fn cohort_of_letter(letter: u8) -> Option<ripcord_engine::Cohort> {
    match letter {
        b't' => Some(ripcord_engine::Cohort::Treatment),
        b'c' => Some(ripcord_engine::Cohort::Control),
        _ => None,
    }
}

/// The marker of one reporting unit's name, as [`AggregateCounts::UnitsSeen`] holds it.
/// 64 bits: two of a stage's units share one with odds of about n²/2⁶⁵, one in 37 million at
/// a million units, and then count once.
pub fn unit_hash(unit: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(unit.as_bytes())
}

/// An aggregate with its counts. The kind of counts is part of what the aggregate is: a
/// `Values` and a `Rate` under the same key (a guard whose kind changed mid-ramp) are kept
/// apart, never added together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub key: AggregateKey,
    pub counts: AggregateCounts,
}

/// What kind of counts an aggregate holds, as backends mark it in their keys. The units a
/// delta names and the count they are kept as are one kind: the first become the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CountsKind {
    Values,
    Rate,
    Units,
}

impl AggregateCounts {
    pub fn kind(&self) -> CountsKind {
        match self {
            AggregateCounts::Values(_) => CountsKind::Values,
            AggregateCounts::Rate { .. } => CountsKind::Rate,
            AggregateCounts::UnitsSeen(_) | AggregateCounts::Units(_) => CountsKind::Units,
        }
    }

    /// Adds `other` to these counts, saturating (units seen are joined, not added); false
    /// (and nothing changed) when the two are not of the same kind.
    pub fn add(&mut self, other: &AggregateCounts) -> bool {
        match (self, other) {
            (AggregateCounts::Values(mine), AggregateCounts::Values(theirs)) => {
                for (bin, count) in theirs {
                    let sum = mine.entry(*bin).or_insert(0);
                    *sum = sum.saturating_add(*count);
                }
                true
            }
            (
                AggregateCounts::Rate { events, trials },
                AggregateCounts::Rate {
                    events: more_events,
                    trials: more_trials,
                },
            ) => {
                *events = events.saturating_add(*more_events);
                *trials = trials.saturating_add(*more_trials);
                true
            }
            (AggregateCounts::UnitsSeen(mine), AggregateCounts::UnitsSeen(theirs)) => {
                mine.extend(theirs.iter().copied());
                true
            }
            (AggregateCounts::Units(mine), AggregateCounts::Units(more)) => {
                *mine = mine.saturating_add(*more);
                true
            }
            _ => false,
        }
    }

    /// How many observations the counts hold; units are not observations, and hold none.
    pub fn total(&self) -> u64 {
        match self {
            AggregateCounts::Values(bins) => bins
                .values()
                .fold(0u64, |total, count| total.saturating_add(*count)),
            AggregateCounts::Rate { trials, .. } => *trials,
            AggregateCounts::UnitsSeen(_) | AggregateCounts::Units(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::thinned;

    #[test]
    fn thinning_halves_the_resolution_of_the_older_half() {
        assert!(thinned(1440, 1440).is_empty());
        let removed = thinned(1441, 1440);
        // Every other point of the older 720: 360 go, the oldest stays.
        assert_eq!(removed.len(), 360);
        assert_eq!(removed[..3], [1, 3, 5]);
        assert!(removed.iter().all(|index| *index < 720));
        // However far over, the result is within the bound and the newest point stays.
        for (count, keep) in [(10, 3), (100, 1), (5, 4), (3, 2), (2, 1)] {
            let removed = thinned(count, keep);
            assert!(count - removed.len() <= keep, "{count} {keep} {removed:?}");
            assert!(!removed.contains(&(count - 1)), "{count} {keep}");
        }
    }
}
