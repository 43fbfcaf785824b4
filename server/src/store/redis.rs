//! The shared store: every node of a deployment reads and writes one Redis.
//!
//! Each write is one Lua script, which Redis runs atomically: the revision check, the
//! items, the audit entries and the change announcement land together or not at all, so
//! two nodes committing on the same revision never both win. A commit is acknowledged once
//! Redis has answered the script; how durable that is depends on Redis's own settings
//! (`appendonly yes` with `appendfsync always` makes it survive a crash of Redis too; see
//! docs/scale-out.md).
//!
//! Every key shares the hash tag `{ripcord}`, so the whole deployment lives in one hash
//! slot: the scripts may touch any of its keys, also on a Redis Cluster. A flag server's
//! state is small (megabytes), so one slot costs nothing that matters.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{ripcord}:environments` | hash | name → creation time |
//! | `{ripcord}:revisions` | hash | name → revision |
//! | `{ripcord}:flags:{env}` | hash | flag key → JSON `{revision, item}` |
//! | `{ripcord}:segments:{env}` | hash | segment key → JSON `{revision, item}` |
//! | `{ripcord}:keys` | hash | key id → [`KeyRecord`] JSON |
//! | `{ripcord}:keys:version` | string | bumped by every key write |
//! | `{ripcord}:audit` | hash | id → [`AuditRecord`] JSON |
//! | `{ripcord}:audit:last` | string | the last audit id given out |
//! | `{ripcord}:ramps` | hash | `{env}\0{flag}` → [`RampRecord`] JSON |
//! | `{ripcord}:ramps:versions` | hash | `{env}\0{flag}` → the record's version |
//! | `{ripcord}:lease` | string | `{token} {holder}`: the ramp controller's lease, expiring |
//! | `{ripcord}:lease:token` | string | the last fencing token given out |
//! | `{ripcord}:incidents` | hash | id → [`IncidentRecord`] JSON |
//! | `{ripcord}:incidents:last` | string | the last incident id given out |
//! | `{ripcord}:aggregates:{env}\0{flag}` | hash | one counter per field (see [`aggregate_field`]) |
//! | `{ripcord}:units:{env}\0{flag}` | set | a marker per unit counted (see [`unit_marker`]) |
//! | `{ripcord}:looks:{env}\0{flag}` | hash | `{generation}:{minute}` → [`LookRecord`] JSON |
//! | `{ripcord}:changes` | stream | one entry per change, for every node's follower |
//! | `{ripcord}:reach:{env}` | hash | instance → `{revision} {last seen}`, from every node |
//! | `{ripcord}:batches` | sorted set | ids of metric batches merged, scored by time: a batch sent again counts once |
//! | `{ripcord}:webhooks` | hash | id → a [`PendingWebhook`](super::PendingWebhook) not yet delivered |
//! | `{ripcord}:marker` | string | a random value the deployment's first node wrote |
//!
//! Audit entries and incidents are stored without their id (it is the field), and get it
//! back when read.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncConnectionConfig, Client, Script};
use ripcord_engine::{Cohort, Stage};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::copy::Dump;
use super::{from_json, to_json, StoredItem};
use super::{
    Aggregate, AggregateCounts, AggregateKey, AuditQuery, AuditRecord, ChangeEvent, CountsKind,
    EnvironmentRecord, EnvironmentState, IncidentQuery, IncidentRecord, KeyRecord, LookRecord,
    Mutation, RampRecord, RampWrite, Reach, SeenInstance, Store, StoreError, StoreResult,
};

/// Every key starts with this: its braces make it the hash tag.
const PREFIX: &str = "{ripcord}";

/// A random value the first node writes: every call checks that Redis still holds it. A
/// Redis restarted without persistence comes back without it, and the nodes then refuse
/// reads and writes alike rather than take an empty store for the truth, keeping their
/// snapshots until it is restored (an [import](Store::import) puts the mark back).
const MARKER: &str = "marker";

/// Whether [`RedisStore::open_with`] may mark a Redis that holds no deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marking {
    /// The deployment must be there already: what a server opens.
    Existing,
    /// A Redis without one becomes a new deployment: `ripcord store init` and the target of
    /// `ripcord store copy`.
    New,
}

/// The oldest Redis whose streams report what the change follower counts on
/// (`entries-added`).
const MIN_REDIS_MAJOR: u32 = 7;

/// Refuses a Redis older than [`MIN_REDIS_MAJOR`].
async fn check_version(connection: &mut ConnectionManager) -> StoreResult<()> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await
        .map_err(backend)?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let major: Option<u32> = version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok());
    match major {
        Some(major) if major >= MIN_REDIS_MAJOR => Ok(()),
        _ => Err(StoreError::Backend(format!(
            "Redis {version} is too old: Ripcord needs Redis {MIN_REDIS_MAJOR}.0 or later"
        ))),
    }
}

/// How many change entries Redis keeps (approximately). A node that falls further behind
/// than this, disconnected, reloads everything instead.
const CHANGES_KEPT: u64 = 10_000;

/// How long one attempt to connect, and one answer, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the follower's blocking read waits for news before it reads again.
const FOLLOW_BLOCK_MS: usize = 5_000;

/// Audit entries and incidents read per round trip when paging back through them.
const PAGE_READ: u64 = 256;

pub struct RedisStore {
    connection: ConnectionManager,
    /// The deployment's mark in Redis, written by its first node (see [`MARKER`]).
    marker: String,
    changes: broadcast::Sender<ChangeEvent>,
    /// Runs the connection's own tasks and the change follower, whatever runtime the
    /// callers use; `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

/// A Redis URL as it may be logged: without the user and password it may hold.
pub fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{host}")
}

fn key(suffix: &str) -> String {
    format!("{PREFIX}:{suffix}")
}

fn pair_key(kind: &str, environment: &str, flag: &str) -> String {
    format!("{PREFIX}:{kind}:{environment}\0{flag}")
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis: {error}"))
}

/// An audit entry as stored: its id is the hash field, given out by the script.
fn stored_audit(entry: &AuditRecord) -> String {
    to_json(&AuditRecord {
        id: 0,
        ..entry.clone()
    })
}

/// The Lua that appends audit entries: `append_audit(json)` takes the next id and stores
/// the entry under it. `AUDIT` and `AUDIT_LAST` are the positions of the two keys.
fn with_audit(audit: usize, audit_last: usize, body: &str) -> Script {
    Script::new(&format!(
        "local function append_audit(entry)
           local id = redis.call('INCR', KEYS[{audit_last}])
           redis.call('HSET', KEYS[{audit}], id, entry)
         end
         {body}"
    ))
}

// KEYS: revisions, flags, segments, audit, audit:last, changes.
// ARGV: environment, base revision, number of writes, per write (`f`|`s`, key, JSON or ''
// to delete), the audit entries, the stream length kept.
// Returns {0, revision}, {1, found revision} on a conflict, {2, 0} without the environment.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    with_audit(
        4,
        5,
        "local current = redis.call('HGET', KEYS[1], ARGV[1])
         if not current then return {2, 0} end
         current = tonumber(current)
         if current ~= tonumber(ARGV[2]) then return {1, current} end
         local revision = current + 1
         redis.call('HSET', KEYS[1], ARGV[1], revision)
         local at = 4
         for _ = 1, tonumber(ARGV[3]) do
           local target = KEYS[2]
           if ARGV[at] == 's' then target = KEYS[3] end
           if ARGV[at + 2] == '' then
             redis.call('HDEL', target, ARGV[at + 1])
           else
             redis.call('HSET', target, ARGV[at + 1], ARGV[at + 2])
           end
           at = at + 3
         end
         for i = at, #ARGV - 1 do append_audit(ARGV[i]) end
         redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[#ARGV], '*', 'kind', 'environment',
           'name', ARGV[1], 'revision', revision, 'deleted', '0')
         return {0, revision}",
    )
});

// KEYS: environments, revisions, audit, audit:last, changes.
// ARGV: name, creation time, audit entry, stream length kept. Returns 0, or 1 if it exists.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    with_audit(
        3,
        4,
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
         redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
         redis.call('HSET', KEYS[2], ARGV[1], 0)
         append_audit(ARGV[3])
         redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'environment',
           'name', ARGV[1], 'revision', 0, 'deleted', '0')
         return 0",
    )
});

// KEYS: environments, revisions, flags, segments, ramps, keys, keys:version, audit,
// audit:last, changes, ramp versions, reach.
// ARGV: name, the keys' version the revocations were computed from, the ramps' field
// prefix, the deletion's audit entry, number of revocations, per revocation (key id, key
// JSON, audit entry), the stream length kept.
// Returns 0, 1 without the environment, 2 if the keys changed meanwhile.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    with_audit(
        8,
        9,
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 1 end
         if tonumber(redis.call('GET', KEYS[7]) or '0') ~= tonumber(ARGV[2]) then return 2 end
         redis.call('HDEL', KEYS[1], ARGV[1])
         redis.call('HDEL', KEYS[2], ARGV[1])
         redis.call('DEL', KEYS[3], KEYS[4], KEYS[12])
         local prefix = ARGV[3]
         for _, field in ipairs(redis.call('HKEYS', KEYS[5])) do
           if string.sub(field, 1, #prefix) == prefix then
             redis.call('HDEL', KEYS[5], field)
             redis.call('HDEL', KEYS[11], field)
           end
         end
         append_audit(ARGV[4])
         local revoked = tonumber(ARGV[5])
         local at = 6
         for _ = 1, revoked do
           redis.call('HSET', KEYS[6], ARGV[at], ARGV[at + 1])
           append_audit(ARGV[at + 2])
           at = at + 3
         end
         redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[at], '*', 'kind', 'environment',
           'name', ARGV[1], 'revision', 0, 'deleted', '1')
         if revoked > 0 then
           redis.call('INCR', KEYS[7])
           redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[at], '*', 'kind', 'keys')
         end
         return 0",
    )
});

// KEYS: keys, keys:version, audit, audit:last, changes.
// ARGV: key id, key JSON, audit entry, stream length kept.
static PUT_KEY: LazyLock<Script> = LazyLock::new(|| {
    with_audit(
        3,
        4,
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
         redis.call('INCR', KEYS[2])
         append_audit(ARGV[3])
         redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'keys')
         return 0",
    )
});

// KEYS: ramps, ramp versions, audit, audit:last, incidents, lease, webhooks.
// ARGV: field, the version read, ramp JSON, fencing token or '', incident id or '', incident
// JSON or '', the number of webhooks, per webhook (id, JSON), audit entries.
// Returns the version written, -1 if the record changed meanwhile, -2 without the lease.
static PUT_RAMP: LazyLock<Script> = LazyLock::new(|| {
    with_audit(
        3,
        4,
        "if ARGV[4] ~= '' then
           local lease = redis.call('GET', KEYS[6])
           if not lease or string.match(lease, '^(%d+) ') ~= ARGV[4] then return -2 end
         end
         local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
         if stored ~= tonumber(ARGV[2]) then return -1 end
         redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
         redis.call('HSET', KEYS[2], ARGV[1], stored + 1)
         if ARGV[5] ~= '' then redis.call('HSET', KEYS[5], ARGV[5], ARGV[6]) end
         local at = 8
         for _ = 1, tonumber(ARGV[7]) do
           redis.call('HSET', KEYS[7], ARGV[at], ARGV[at + 1])
           at = at + 2
         end
         for i = at, #ARGV do append_audit(ARGV[i]) end
         return stored + 1",
    )
});

// KEYS: lease, lease token counter. ARGV: holder, time to live in milliseconds.
// The lease's value is `{token} {holder}`. Returns the token, or nil while another holds it.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local current = redis.call('GET', KEYS[1])
         if current then
           local token, holder = string.match(current, '^(%d+) (.*)$')
           if holder ~= ARGV[1] then return false end
           redis.call('PEXPIRE', KEYS[1], ARGV[2])
           return tonumber(token)
         end
         local token = redis.call('INCR', KEYS[2])
         redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
         return token",
    )
});

/// The Lua both merges end with, reading ARGV from position `first`: the number of
/// counters; per counter, the position of its hash in KEYS, its field and the amount; then
/// per unit seen, the position of its marker set in KEYS, its marker, and the position and
/// field of its count. A unit's count grows by one only where SADD added its marker, so a
/// unit counts once however many merges name it. Returns 1.
fn merge_body(first: usize) -> String {
    format!(
        "local i = {first} + 1
         local counters_end = i + 3 * tonumber(ARGV[{first}])
         while i < counters_end do
           redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
           i = i + 3
         end
         while i <= #ARGV do
           if redis.call('SADD', KEYS[tonumber(ARGV[i])], ARGV[i + 1]) == 1 then
             redis.call('HINCRBY', KEYS[tonumber(ARGV[i + 2])], ARGV[i + 3], 1)
           end
           i = i + 4
         end
         return 1"
    )
}

// KEYS: every aggregate hash and marker set the merge touches. ARGV: see `merge_body`.
static MERGE: LazyLock<Script> = LazyLock::new(|| Script::new(&merge_body(1)));

// KEYS: the batch ids (a sorted set, scored by time), then every aggregate hash and marker
// set the batch touches. ARGV: the id, now, the time before which ids are forgotten, the
// most ids kept, then as `merge_body` says.
// Returns 1, or 0 for an id remembered already (and nothing changes).
static MERGE_BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
         if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
         redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
         local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
         if excess > 0 then redis.call('ZPOPMIN', KEYS[1], excess) end
         {}",
        merge_body(5)
    ))
});

// KEYS: the environment's reach hash. ARGV: how long the hash lives without news (seconds),
// then triples of instance id, revision, last seen. Each field is `{revision} {last seen}`,
// the highest of each from any node.
static MERGE_REACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for i = 2, #ARGV, 3 do
           local revision, seen = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
           local current = redis.call('HGET', KEYS[1], ARGV[i])
           if current then
             local stored_revision, stored_seen = string.match(current, '^(%d+) (%d+)$')
             revision = math.max(revision, tonumber(stored_revision) or 0)
             seen = math.max(seen, tonumber(stored_seen) or 0)
           end
           redis.call('HSET', KEYS[1], ARGV[i], string.format('%d %d', revision, seen))
         end
         redis.call('EXPIRE', KEYS[1], ARGV[1])
         return 0",
    )
});

/// How long an environment's reach hash outlives the last news of any of its instances:
/// past the active window, nothing in it counts any more.
const REACH_KEPT_SECONDS: u64 = 2 * crate::reach::ACTIVE_SECONDS;

/// Instances per script call when merging reach: bounds how long Redis is busy with one.
const REACH_BATCH: usize = 500;

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://host:port/db`, or `rediss://` for TLS) and
    /// starts following its change feed from now on.
    pub async fn open(url: &str) -> StoreResult<RedisStore> {
        RedisStore::open_with(url, None, Marking::Existing).await
    }

    /// Opens the store at `url`, trusting for `rediss://` the CA certificate in the PEM file
    /// `ca` instead of the system's roots (for a Redis whose certificate a private CA signed),
    /// and, with [`Marking::New`], marking a Redis that holds no deployment as a new one.
    pub async fn open_with(
        url: &str,
        ca: Option<&std::path::Path>,
        marking: Marking,
    ) -> StoreResult<RedisStore> {
        let ca = match ca {
            Some(path) => Some(std::fs::read(path).map_err(|error| {
                StoreError::Backend(format!(
                    "reading the CA certificate {}: {error}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let client = match ca {
            Some(ca) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca),
                },
            ),
            None => Client::open(url),
        }
        .map_err(|error| StoreError::Backend(format!("the Redis URL: {error}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ripcord-redis")
            .enable_all()
            .build()
            .map_err(|error| backend(format!("starting its thread: {error}")))?;
        let (changes, _) = broadcast::channel(1024);
        let connect = {
            let client = client.clone();
            async move {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2);
                let mut connection = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(backend)?;
                // Followed from the last change before anything is loaded: a change made
                // between this read and the loads is seen twice, which is harmless,
                // rather than missed.
                let (start, _) = stream_end(&mut connection).await.map_err(backend)?;
                check_version(&mut connection).await?;
                if marking == Marking::New {
                    let mut fresh = [0u8; 16];
                    getrandom::fill(&mut fresh).map_err(backend)?;
                    // Only if absent: marking a deployment again would cut off its nodes.
                    redis::cmd("SET")
                        .arg(key(MARKER))
                        .arg(hex::encode(fresh))
                        .arg("NX")
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(backend)?;
                }
                let marker: Option<String> = redis::cmd("GET")
                    .arg(key(MARKER))
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
                // A node never marks a Redis by itself: one that came back empty would
                // look new, and this node would serve an empty deployment while the others
                // refuse it.
                let marker = marker.ok_or(StoreError::Unmarked)?;
                Ok::<_, StoreError>((connection, start, marker))
            }
        };
        let connected = match runtime.spawn(connect).await {
            Ok(result) => result,
            Err(error) => Err(backend(error)),
        };
        let (connection, start, marker) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                // Dropped from async code, a runtime may not block on its own shutdown.
                runtime.shutdown_background();
                return Err(error);
            }
        };
        runtime.spawn(follow(client, start, marker.clone(), changes.clone()));
        Ok(RedisStore {
            connection,
            marker,
            changes,
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the store's own runtime, with a connection, once it has checked that
    /// Redis still holds the deployment's data.
    async fn run<T, F, Fut>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.run_checked(true, work).await
    }

    async fn run_checked<T, F, Fut>(&self, check: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(backend("the store is closed"));
        };
        let mut connection = self.connection.clone();
        let marker = self.marker.clone();
        let work = work(self.connection.clone());
        let checked = async move {
            if check {
                let found: Option<String> = redis::cmd("GET")
                    .arg(key(MARKER))
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
                if found.as_deref() != Some(marker.as_str()) {
                    return Err(StoreError::Lost);
                }
            }
            work.await
        };
        match runtime.spawn(checked).await {
            Ok(result) => result,
            Err(error) => Err(backend(error)),
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropped from async code too, where a runtime may not block on its own shutdown.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where a node is in the change stream: the last entry it read, and how many entries the
/// stream had been given up to it. Redis counts the entries ever added (`entries-added`);
/// with the stream's length, that tells how many were trimmed from its front, and a node
/// that read fewer than that missed some.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    last: String,
    read: u64,
}

/// The stream's end: where a node that has just loaded everything stands.
async fn stream_end(
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<(Position, u64)> {
    let info: redis::RedisResult<BTreeMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key("changes"))
        .query_async(connection)
        .await;
    let info = match info {
        Ok(info) => info,
        // No stream yet: nothing was ever written.
        Err(error) if error.code() == Some("ERR") => {
            let start = Position {
                last: "0-0".to_string(),
                read: 0,
            };
            return Ok((start, 0));
        }
        Err(error) => return Err(error),
    };
    let number = |name: &str| -> redis::RedisResult<u64> {
        match info.get(name) {
            Some(value) => Ok(redis::from_redis_value(value.clone())?),
            None => Ok(0),
        }
    };
    let last = match info.get("last-generated-id") {
        Some(value) => redis::from_redis_value(value.clone())?,
        None => "0-0".to_string(),
    };
    let added = number("entries-added")?;
    let trimmed = added.saturating_sub(number("length")?);
    Ok((Position { last, read: added }, trimmed))
}

/// Whether entries were trimmed from the stream that a node at `position` never read, or
/// the stream is not the one it was reading (Redis came back without it).
async fn missed_changes(
    connection: &mut impl redis::aio::ConnectionLike,
    position: &Position,
) -> redis::RedisResult<Option<Position>> {
    let (end, trimmed) = stream_end(connection).await?;
    if trimmed > position.read || end.read < position.read {
        Ok(Some(end))
    } else {
        Ok(None)
    }
}

/// Reads the change stream from `position` on, for as long as the store is open, and
/// announces each entry. After a disconnection it goes on from where it was; when it
/// missed entries, it announces [`ChangeEvent::Resync`] and goes on from the end.
async fn follow(
    client: Client,
    mut position: Position,
    marker: String,
    changes: broadcast::Sender<ChangeEvent>,
) {
    let stream = key("changes");
    let mut wait = Duration::from_millis(100);
    loop {
        // A connection of its own: a blocking read would hold up every command queued
        // behind it on a shared one.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(
                Duration::from_millis(FOLLOW_BLOCK_MS as u64) + RESPONSE_TIMEOUT,
            ));
        let mut connection = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "the change feed cannot reach Redis; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        wait = Duration::from_millis(100);
        let mut lost_said = false;
        loop {
            // While Redis has lost the data, there is nothing to follow and nothing to
            // reload: the node keeps what it serves until the data is restored, and then
            // reloads it, since the stream restarted.
            let found: redis::RedisResult<Option<String>> = redis::cmd("GET")
                .arg(key(MARKER))
                .query_async(&mut connection)
                .await;
            match found {
                Ok(found) if found.as_deref() == Some(marker.as_str()) => lost_said = false,
                Ok(_) => {
                    if !lost_said {
                        tracing::error!("{}", StoreError::Lost);
                        lost_said = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "the change feed lost Redis; reconnecting");
                    break;
                }
            }
            match missed_changes(&mut connection, &position).await {
                Ok(None) => {}
                Ok(Some(end)) => {
                    tracing::warn!(
                        "this node missed changes that Redis no longer holds: reloading everything"
                    );
                    position = end;
                    let _ = changes.send(ChangeEvent::Resync);
                }
                Err(error) => {
                    tracing::warn!(%error, "the change feed lost Redis; reconnecting");
                    break;
                }
            }
            let options = redis::streams::StreamReadOptions::default()
                .block(FOLLOW_BLOCK_MS)
                .count(256);
            let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                redis::cmd("XREAD")
                    .arg(&options)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(&position.last)
                    .query_async(&mut connection)
                    .await;
            let reply = match read {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(%error, "the change feed lost Redis; reconnecting");
                    break;
                }
            };
            for entry in reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
            {
                if let Some(event) = change_event(&entry) {
                    // Nobody listening is not an error: the feed is for whoever cares.
                    let _ = changes.send(event);
                }
                position.last = entry.id;
                position.read += 1;
            }
        }
        tokio::time::sleep(wait).await;
    }
}

fn change_event(entry: &redis::streams::StreamId) -> Option<ChangeEvent> {
    let text = |field: &str| -> Option<String> { entry.get(field) };
    match text("kind")?.as_str() {
        "keys" => Some(ChangeEvent::KeysChanged),
        "environment" => Some(ChangeEvent::Environment {
            name: text("name")?,
            revision: text("revision")?.parse().ok()?,
            deleted: text("deleted")? == "1",
        }),
        _ => None,
    }
}

/// The hash field of one counter of an aggregate:
/// `{generation}\0{stage}\0{t|c}\0{v|r}\0{bin|e|t}\0{metric}`, the metric last because it
/// is the one part that is free text (names hold no NUL byte).
fn aggregate_field(key: &AggregateKey, kind: char, counter: &str) -> String {
    let cohort = char::from(super::cohort_letter(key.cohort));
    format!(
        "{}\0{}\0{cohort}\0{kind}\0{counter}\0{}",
        key.generation,
        key.stage.get(),
        key.metric
    )
}

/// A unit's marker in its flag's set: `{generation}:{stage}:{t|c}:{unit hash, 16 hex}`,
/// about 30 bytes.
fn unit_marker(key: &AggregateKey, unit: u64) -> String {
    let cohort = char::from(super::cohort_letter(key.cohort));
    format!(
        "{}:{}:{cohort}:{unit:016x}",
        key.generation,
        key.stage.get()
    )
}

/// The cohort a field's or marker's one-letter part names.
fn cohort_named(letter: &str) -> Option<Cohort> {
    match letter.as_bytes() {
        [letter] => super::cohort_of_letter(*letter),
        _ => None,
    }
}

/// Counts are `u64` here and signed 64-bit in Redis: no real count comes near the limit,
/// and one that did is held at it rather than wrapped.
fn increment(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Reads the counters of one generation back into aggregates.
fn read_aggregates(
    hash: &str,
    environment: &str,
    flag: &str,
    generation: u64,
    fields: Vec<(String, i64)>,
) -> StoreResult<Vec<Aggregate>> {
    let corrupt = |field: &str, message: &str| StoreError::Corrupt {
        key: format!("{hash} {}", field.replace('\0', "/")),
        message: message.to_string(),
    };
    let wanted = format!("{generation}\0");
    let mut found: BTreeMap<(Stage, Cohort, CountsKind, String), AggregateCounts> = BTreeMap::new();
    for (field, count) in fields {
        let Some(rest) = field.strip_prefix(&wanted) else {
            continue;
        };
        let parts: Vec<&str> = rest.splitn(5, '\0').collect();
        let [stage, cohort, kind, counter, metric] = parts[..] else {
            return Err(corrupt(&field, "the field has too few parts"));
        };
        let stage = Stage::new(
            stage
                .parse()
                .map_err(|_| corrupt(&field, "the stage is not a number"))?,
        );
        let cohort =
            cohort_named(cohort).ok_or_else(|| corrupt(&field, "the field names no cohort"))?;
        let count = u64::try_from(count).map_err(|_| corrupt(&field, "the count is negative"))?;
        let kind = match kind {
            "v" => CountsKind::Values,
            "r" => CountsKind::Rate,
            "u" => CountsKind::Units,
            _ => return Err(corrupt(&field, "the field names no kind of counts")),
        };
        let counts = found
            .entry((stage, cohort, kind, metric.to_string()))
            .or_insert_with(|| match kind {
                CountsKind::Values => AggregateCounts::Values(BTreeMap::new()),
                CountsKind::Rate => AggregateCounts::Rate {
                    events: 0,
                    trials: 0,
                },
                CountsKind::Units => AggregateCounts::Units(0),
            });
        match (counts, counter) {
            (AggregateCounts::Units(units), "n") => *units = count,
            (AggregateCounts::Values(bins), bin) => {
                let bin = bin
                    .parse()
                    .map_err(|_| corrupt(&field, "the bin is not a number"))?;
                bins.insert(bin, count);
            }
            (AggregateCounts::Rate { events, .. }, "e") => *events = count,
            (AggregateCounts::Rate { trials, .. }, "t") => *trials = count,
            _ => return Err(corrupt(&field, "the field names no rate counter")),
        }
    }
    found
        .into_iter()
        .map(|((stage, cohort, _, metric), counts)| {
            if let AggregateCounts::Rate { events, trials } = counts {
                if events > trials {
                    return Err(StoreError::Corrupt {
                        key: hash.replace('\0', "/"),
                        message: format!("{events} events out of {trials} trials"),
                    });
                }
            }
            Ok(Aggregate {
                key: AggregateKey {
                    environment: environment.to_string(),
                    flag: flag.to_string(),
                    generation,
                    stage,
                    cohort,
                    metric,
                },
                counts,
            })
        })
        .collect()
}

/// The hash field of a look: generation and minute, zero-padded so that fields sort as
/// the numbers do.
fn look_field(generation: u64, minute: u64) -> String {
    format!("{generation:020}:{minute:020}")
}

/// Pages back through a hash of numbered records (audit entries, incidents), newest
/// first, from below `before`, keeping those `wanted` accepts, up to `limit`.
async fn page_back<T: DeserializeOwned>(
    connection: &mut ConnectionManager,
    hash: &str,
    last: &str,
    before: Option<u64>,
    limit: usize,
    mut wanted: impl FnMut(&mut T, u64) -> bool,
) -> StoreResult<Vec<T>> {
    let newest: Option<u64> = redis::cmd("GET")
        .arg(last)
        .query_async(connection)
        .await
        .map_err(backend)?;
    let mut next = newest
        .unwrap_or(0)
        .min(before.unwrap_or(u64::MAX).saturating_sub(1));
    let mut found = Vec::new();
    while found.len() < limit && next > 0 {
        let low = next.saturating_sub(PAGE_READ - 1).max(1);
        let ids: Vec<u64> = (low..=next).rev().collect();
        let texts: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(hash)
            .arg(&ids)
            .query_async(connection)
            .await
            .map_err(backend)?;
        for (id, text) in ids.into_iter().zip(texts) {
            let Some(text) = text else { continue };
            let mut record: T = from_json(&format!("{hash} {id}"), &text)?;
            if found.len() < limit && wanted(&mut record, id) {
                found.push(record);
            }
        }
        next = low - 1;
    }
    Ok(found)
}

#[async_trait]
impl Store for RedisStore {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        self.run(|mut connection| async move {
            let (created, revisions): (BTreeMap<String, String>, BTreeMap<String, u64>) =
                redis::pipe()
                    .atomic()
                    .hgetall(key("environments"))
                    .hgetall(key("revisions"))
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
            Ok(created
                .into_iter()
                .map(|(name, created_at)| EnvironmentRecord {
                    revision: revisions.get(&name).copied().unwrap_or(0),
                    name,
                    created_at,
                })
                .collect())
        })
        .await
    }

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        let name = name.to_string();
        self.run(|mut connection| async move {
            let flags_key = key(&format!("flags:{name}"));
            let segments_key = key(&format!("segments:{name}"));
            // One transaction: a commit lands wholly before or after it.
            let (revision, flags, segments): (
                Option<u64>,
                BTreeMap<String, String>,
                BTreeMap<String, String>,
            ) = redis::pipe()
                .atomic()
                .hget(key("revisions"), &name)
                .hgetall(&flags_key)
                .hgetall(&segments_key)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            let Some(revision) = revision else {
                return Ok(None);
            };
            let mut state = EnvironmentState {
                revision,
                ..EnvironmentState::default()
            };
            for (flag, text) in flags {
                let stored: StoredItem<ripcord_engine::Flag> =
                    from_json(&format!("{flags_key} {flag}"), &text)?;
                state.flag_revisions.insert(flag.clone(), stored.revision);
                state.document.flags.insert(flag, stored.item);
            }
            for (segment, text) in segments {
                let stored: StoredItem<ripcord_engine::Segment> =
                    from_json(&format!("{segments_key} {segment}"), &text)?;
                state.document.segments.insert(segment, stored.item);
            }
            Ok(Some(state))
        })
        .await
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
        let (name, created_at) = (name.to_string(), created_at.to_string());
        let outcome: i64 = self
            .run(|mut connection| async move {
                CREATE
                    .key(key("environments"))
                    .key(key("revisions"))
                    .key(key("audit"))
                    .key(key("audit:last"))
                    .key(key("changes"))
                    .arg(&name)
                    .arg(&created_at)
                    .arg(stored_audit(&audit))
                    .arg(CHANGES_KEPT)
                    .invoke_async(&mut connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        if outcome == 1 {
            return Err(StoreError::EnvironmentExists(record.name));
        }
        Ok(record)
    }

    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        let name = name.to_string();
        self.run(|mut connection| async move {
            // The environment's keys are revoked in the same script. Which ones is decided
            // from a read before it; the script refuses if any key changed since, and the
            // whole thing is tried again.
            loop {
                let (version, keys): (Option<u64>, BTreeMap<String, String>) = redis::pipe()
                    .atomic()
                    .get(key("keys:version"))
                    .hgetall(key("keys"))
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
                let mut revocations: Vec<(String, String, String)> = Vec::new();
                for (id, text) in keys {
                    let mut record: KeyRecord = from_json(&format!("{} {id}", key("keys")), &text)?;
                    if record.environment.as_deref() != Some(name.as_str())
                        || record.revoked_at.is_some()
                    {
                        continue;
                    }
                    record.revoked_at = Some(audit.time.clone());
                    let entry = AuditRecord {
                        action: "key.revoke".to_string(),
                        target: record.name.clone(),
                        before: None,
                        after: None,
                        ..audit.clone()
                    };
                    revocations.push((id, to_json(&record), stored_audit(&entry)));
                }
                let mut invocation = DELETE.prepare_invoke();
                for suffix in [
                    "environments".to_string(),
                    "revisions".to_string(),
                    format!("flags:{name}"),
                    format!("segments:{name}"),
                    "ramps".to_string(),
                    "keys".to_string(),
                    "keys:version".to_string(),
                    "audit".to_string(),
                    "audit:last".to_string(),
                    "changes".to_string(),
                    "ramps:versions".to_string(),
                    format!("reach:{name}"),
                ] {
                    invocation.key(key(&suffix));
                }
                invocation
                    .arg(&name)
                    .arg(version.unwrap_or(0))
                    .arg(format!("{name}\0"))
                    .arg(stored_audit(&audit))
                    .arg(revocations.len());
                for (id, record, entry) in &revocations {
                    invocation.arg(id).arg(record).arg(entry);
                }
                invocation.arg(CHANGES_KEPT);
                let outcome: i64 = invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(backend)?;
                match outcome {
                    0 => break,
                    1 => return Err(StoreError::NoSuchEnvironment(name)),
                    _ => continue,
                }
            }
            // The counts of its ramps go too, only to reclaim the space: a ramp of an
            // environment created anew under the name clears its flag's counts when it
            // starts.
            // Their unit markers too.
            for kind in ["aggregates", "units"] {
                let pattern = format!("{}*", glob_escape(&pair_key(kind, &name, "")));
                let mut cursor = 0u64;
                loop {
                    let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut connection)
                        .await
                        .map_err(backend)?;
                    if !found.is_empty() {
                        redis::cmd("UNLINK")
                            .arg(&found)
                            .query_async::<()>(&mut connection)
                            .await
                            .map_err(backend)?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Ok(())
        })
        .await
    }

    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64> {
        let revision = base_revision + 1;
        let environment = environment.to_string();
        let writes: Vec<(&str, String, String)> = mutations
            .into_iter()
            .map(|mutation| match mutation {
                Mutation::PutFlag { key, flag } => (
                    "f",
                    key,
                    to_json(&StoredItem {
                        revision,
                        item: flag,
                    }),
                ),
                Mutation::DeleteFlag { key } => ("f", key, String::new()),
                Mutation::PutSegment { key, segment } => (
                    "s",
                    key,
                    to_json(&StoredItem {
                        revision,
                        item: segment,
                    }),
                ),
                Mutation::DeleteSegment { key } => ("s", key, String::new()),
            })
            .collect();
        let audit: Vec<String> = audit
            .iter()
            .map(|entry| {
                stored_audit(&AuditRecord {
                    revision: Some(revision),
                    ..entry.clone()
                })
            })
            .collect();
        let name = environment.clone();
        let (outcome, found): (i64, u64) = self
            .run(|mut connection| async move {
                let mut invocation = COMMIT.prepare_invoke();
                invocation
                    .key(key("revisions"))
                    .key(key(&format!("flags:{name}")))
                    .key(key(&format!("segments:{name}")))
                    .key(key("audit"))
                    .key(key("audit:last"))
                    .key(key("changes"))
                    .arg(&name)
                    .arg(base_revision)
                    .arg(writes.len());
                for (kind, item, value) in &writes {
                    invocation.arg(*kind).arg(item).arg(value);
                }
                for entry in &audit {
                    invocation.arg(entry);
                }
                invocation.arg(CHANGES_KEPT);
                invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        match outcome {
            0 => Ok(found),
            1 => Err(StoreError::RevisionConflict {
                environment,
                expected: base_revision,
                found,
            }),
            _ => Err(StoreError::NoSuchEnvironment(environment)),
        }
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.run(|mut connection| async move {
            let keys: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key("keys"))
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            keys.iter()
                .map(|(id, text)| from_json(&format!("{} {id}", key("keys")), text))
                .collect()
        })
        .await
    }

    async fn put_key(&self, record: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        self.run(|mut connection| async move {
            PUT_KEY
                .key(key("keys"))
                .key(key("keys:version"))
                .key(key("audit"))
                .key(key("audit:last"))
                .key(key("changes"))
                .arg(&record.id)
                .arg(to_json(&record))
                .arg(stored_audit(&audit))
                .arg(CHANGES_KEPT)
                .invoke_async::<i64>(&mut connection)
                .await
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let query = query.clone();
        self.run(|mut connection| async move {
            page_back(
                &mut connection,
                &key("audit"),
                &key("audit:last"),
                query.before,
                query.limit,
                |record: &mut AuditRecord, id| {
                    record.id = id;
                    query.matches(record)
                },
            )
            .await
        })
        .await
    }

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        self.run(|mut connection| async move {
            let ramps: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key("ramps"))
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            ramps
                .iter()
                .map(|(field, text)| from_json(&field.replace('\0', "/"), text))
                .collect()
        })
        .await
    }

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        let field = format!("{environment}\0{flag}");
        self.run(|mut connection| async move {
            let text: Option<String> = redis::cmd("HGET")
                .arg(key("ramps"))
                .arg(&field)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            text.map(|text| from_json(&field.replace('\0', "/"), &text))
                .transpose()
        })
        .await
    }

    async fn put_ramp(&self, write: RampWrite) -> StoreResult<u64> {
        let RampWrite {
            mut record,
            audit,
            incident,
            fence,
            webhooks,
        } = write;
        let read = record.version;
        record.version = read + 1;
        let (environment, flag) = (record.environment.clone(), record.flag.clone());
        let version: i64 = self
            .run(|mut connection| async move {
                let mut invocation = PUT_RAMP.prepare_invoke();
                invocation
                    .key(key("ramps"))
                    .key(key("ramps:versions"))
                    .key(key("audit"))
                    .key(key("audit:last"))
                    .key(key("incidents"))
                    .key(key("lease"))
                    .key(key("webhooks"))
                    .arg(format!("{}\0{}", record.environment, record.flag))
                    .arg(read)
                    .arg(to_json(&record))
                    .arg(fence.map(|fence| fence.to_string()).unwrap_or_default());
                match &incident {
                    Some(incident) => invocation.arg(incident.id).arg(to_json(&IncidentRecord {
                        id: 0,
                        ..incident.clone()
                    })),
                    None => invocation.arg("").arg(""),
                };
                invocation.arg(webhooks.len());
                for webhook in &webhooks {
                    invocation.arg(&webhook.id).arg(to_json(webhook));
                }
                for entry in &audit {
                    invocation.arg(stored_audit(entry));
                }
                invocation
                    .invoke_async(&mut connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        match version {
            -1 => Err(StoreError::RampChanged { environment, flag }),
            -2 => Err(StoreError::LeaseLost),
            version => Ok(version.unsigned_abs()),
        }
    }

    async fn pending_webhooks(&self) -> StoreResult<Vec<super::PendingWebhook>> {
        self.run(|mut connection| async move {
            let webhooks: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key("webhooks"))
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            webhooks
                .iter()
                .map(|(id, text)| from_json(&format!("{} {id}", key("webhooks")), text))
                .collect()
        })
        .await
    }

    async fn webhook_done(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.run(|mut connection| async move {
            redis::cmd("HDEL")
                .arg(key("webhooks"))
                .arg(&id)
                .query_async::<()>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    async fn reserve_incident_id(&self) -> StoreResult<u64> {
        self.run(|mut connection| async move {
            redis::cmd("INCR")
                .arg(key("incidents:last"))
                .query_async(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let holder = holder.to_string();
        let milliseconds = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(|mut connection| async move {
            LEASE
                .key(key("lease"))
                .key(key("lease:token"))
                .arg(&holder)
                .arg(milliseconds)
                .invoke_async(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        let query = query.clone();
        self.run(|mut connection| async move {
            page_back(
                &mut connection,
                &key("incidents"),
                &key("incidents:last"),
                query.before,
                query.limit,
                |record: &mut IncidentRecord, id| {
                    record.id = id;
                    query.matches(record)
                },
            )
            .await
        })
        .await
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        self.run(|mut connection| async move {
            let text: Option<String> = redis::cmd("HGET")
                .arg(key("incidents"))
                .arg(id)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            text.map(|text| {
                from_json::<IncidentRecord>(&format!("{} {id}", key("incidents")), &text)
                    .map(|record| IncidentRecord { id, ..record })
            })
            .transpose()
        })
        .await
    }

    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()> {
        self.run(|mut connection| async move {
            let hash = pair_key("looks", &look.environment, &look.flag);
            redis::cmd("HSET")
                .arg(&hash)
                .arg(look_field(look.generation, look.minute()))
                .arg(to_json(&look))
                .query_async::<()>(&mut connection)
                .await
                .map_err(backend)?;
            let prefix = format!("{:020}:", look.generation);
            let mut fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&hash)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            fields.retain(|field| field.starts_with(&prefix));
            fields.sort_unstable();
            let removed = super::thinned(fields.len(), keep);
            if !removed.is_empty() {
                let removed: Vec<&String> = removed.iter().map(|index| &fields[*index]).collect();
                redis::cmd("HDEL")
                    .arg(&hash)
                    .arg(removed)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>> {
        let hash = pair_key("looks", environment, flag);
        self.run(|mut connection| async move {
            let looks: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&hash)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            let prefix = format!("{generation:020}:");
            looks
                .iter()
                .filter(|(field, _)| field.starts_with(&prefix))
                .map(|(field, text)| {
                    from_json(&format!("{} {field}", hash.replace('\0', "/")), text)
                })
                .collect()
        })
        .await
    }

    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let hash = pair_key("looks", environment, flag);
        self.run(|mut connection| async move {
            redis::cmd("DEL")
                .arg(&hash)
                .query_async::<()>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    async fn import(&self, dump: Dump) -> StoreResult<()> {
        let marker = self.marker.clone();
        // Not checked for the mark: importing into a Redis that lost it is what puts it back.
        self.run_checked(false, |mut connection| async move {
            let (environments, keys, audit): (u64, u64, bool) = redis::pipe()
                .hlen(key("environments"))
                .hlen(key("keys"))
                .exists(key("audit:last"))
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            if environments > 0 || keys > 0 || audit {
                return Err(StoreError::NotEmpty(format!(
                    "{environments} environments, {keys} keys{}",
                    if audit { " and an audit log" } else { "" }
                )));
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (record, state) in &dump.environments {
                let name = &record.name;
                pipe.hset(key("environments"), name, &record.created_at)
                    .ignore()
                    .hset(key("revisions"), name, state.revision)
                    .ignore();
                for (flag, item) in &state.document.flags {
                    let revision = state
                        .flag_revisions
                        .get(flag)
                        .copied()
                        .unwrap_or(state.revision);
                    pipe.hset(
                        key(&format!("flags:{name}")),
                        flag,
                        to_json(&StoredItem { revision, item }),
                    )
                    .ignore();
                }
                for (segment, item) in &state.document.segments {
                    let revision = state.revision;
                    pipe.hset(
                        key(&format!("segments:{name}")),
                        segment,
                        to_json(&StoredItem { revision, item }),
                    )
                    .ignore();
                }
            }
            for record in &dump.keys {
                pipe.hset(key("keys"), &record.id, to_json(record)).ignore();
            }
            pipe.incr(key("keys:version"), 1).ignore();
            for entry in &dump.audit {
                pipe.hset(key("audit"), entry.id, stored_audit(entry))
                    .ignore();
            }
            let last_audit = dump.audit.iter().map(|entry| entry.id).max().unwrap_or(0);
            pipe.set(key("audit:last"), last_audit).ignore();
            for record in &dump.ramps {
                let field = format!("{}\0{}", record.environment, record.flag);
                pipe.hset(key("ramps"), &field, to_json(record))
                    .ignore()
                    .hset(key("ramps:versions"), &field, record.version)
                    .ignore();
            }
            for incident in &dump.incidents {
                pipe.hset(
                    key("incidents"),
                    incident.id,
                    to_json(&IncidentRecord {
                        id: 0,
                        ..incident.clone()
                    }),
                )
                .ignore();
            }
            let last_incident = dump.incidents.iter().map(|found| found.id).max();
            if let Some(last) = last_incident {
                pipe.set(key("incidents:last"), last).ignore();
            }
            for look in &dump.looks {
                pipe.hset(
                    pair_key("looks", &look.environment, &look.flag),
                    look_field(look.generation, look.minute()),
                    to_json(look),
                )
                .ignore();
            }
            add_increments(&mut pipe, &dump.aggregates);
            for markers in &dump.unit_markers {
                if let AggregateCounts::UnitsSeen(units) = &markers.counts {
                    let set = pair_key("units", &markers.key.environment, &markers.key.flag);
                    for chunk in units.iter().collect::<Vec<_>>().chunks(1000) {
                        let members: Vec<String> = chunk
                            .iter()
                            .map(|unit| unit_marker(&markers.key, **unit))
                            .collect();
                        pipe.sadd(&set, members).ignore();
                    }
                }
            }
            for (id, time) in &dump.batch_ids {
                pipe.zadd(key("batches"), id, *time).ignore();
            }
            for webhook in &dump.webhooks {
                pipe.hset(key("webhooks"), &webhook.id, to_json(webhook))
                    .ignore();
            }
            pipe.set(key(MARKER), &marker).ignore();
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    fn shared(&self) -> bool {
        true
    }

    async fn merge_reach(&self, environment: &str, seen: Vec<SeenInstance>) -> StoreResult<()> {
        let hash = key(&format!("reach:{environment}"));
        self.run(|mut connection| async move {
            for batch in seen.chunks(REACH_BATCH) {
                let mut invocation = MERGE_REACH.key(&hash);
                invocation.arg(REACH_KEPT_SECONDS);
                for instance in batch {
                    invocation
                        .arg(&instance.id)
                        .arg(instance.revision)
                        .arg(instance.last_seen);
                }
                invocation
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn reach(
        &self,
        environment: &str,
        since_revision: u64,
        active_after: u64,
    ) -> StoreResult<Reach> {
        let hash = key(&format!("reach:{environment}"));
        self.run(|mut connection| async move {
            let mut reach = Reach::default();
            let mut cursor = 0u64;
            loop {
                let (next, fields): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(&hash)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
                // Instances gone quiet are dropped as they are met: the hash holds about
                // an hour of instances, not every one ever seen.
                let mut stale = Vec::new();
                for (id, value) in fields {
                    let parsed = value.split_once(' ').and_then(|(revision, seen)| {
                        Some((revision.parse::<u64>().ok()?, seen.parse::<u64>().ok()?))
                    });
                    match parsed {
                        Some((revision, seen)) if seen > active_after => {
                            reach.active += 1;
                            reach.fetched += u64::from(revision >= since_revision);
                        }
                        _ => stale.push(id),
                    }
                }
                if !stale.is_empty() {
                    redis::cmd("HDEL")
                        .arg(&hash)
                        .arg(&stale)
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(backend)?;
                }
                if next == 0 {
                    return Ok(reach);
                }
                cursor = next;
            }
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ready(&self) -> bool {
        self.run(|mut connection| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
        .is_ok()
    }

    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.run(|mut connection| async move {
            // One script: every increment or none, and a unit's marker with its count.
            // Increments add, so deltas may come in any order and from any number of nodes.
            let merge = MergeArguments::of(&deltas, 1);
            let mut invocation = MERGE.prepare_invoke();
            merge.add_to(&mut invocation);
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool> {
        let batch_id = batch_id.to_string();
        self.run(|mut connection| async move {
            // KEYS[1] is the set of ids: the merge's keys are numbered from 2.
            let merge = MergeArguments::of(&deltas, 2);
            let mut invocation = MERGE_BATCH.key(key("batches"));
            invocation
                .arg(&batch_id)
                .arg(now)
                .arg(now.saturating_sub(super::BATCH_IDS_KEPT_SECONDS))
                .arg(super::MAX_BATCH_IDS);
            merge.add_to(&mut invocation);
            let merged: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(backend)?;
            Ok(merged == 1)
        })
        .await
    }

    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let hash = pair_key("aggregates", environment, flag);
        let markers = pair_key("units", environment, flag);
        self.run(|mut connection| async move {
            // UNLINK: a set of a million markers is freed in the background, not while
            // every other node waits.
            redis::cmd("UNLINK")
                .arg(&hash)
                .arg(&markers)
                .query_async::<()>(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let hash = pair_key("aggregates", environment, flag);
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.run(|mut connection| async move {
            let fields: Vec<(String, i64)> = redis::cmd("HGETALL")
                .arg(&hash)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            read_aggregates(&hash, &environment, &flag, generation, fields)
        })
        .await
    }

    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>> {
        self.run(|mut connection| async move {
            let found: Vec<(String, u64)> = redis::cmd("ZRANGE")
                .arg(key("batches"))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            Ok(found)
        })
        .await
    }

    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let set = pair_key("units", environment, flag);
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.run(|mut connection| async move {
            let mut found: BTreeMap<(Stage, Cohort), std::collections::BTreeSet<u64>> =
                BTreeMap::new();
            let pattern = format!("{generation}:*");
            let mut cursor = 0u64;
            loop {
                // SSCAN, a page at a time: Redis answers other nodes in between.
                let (next, markers): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&set)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection)
                    .await
                    .map_err(backend)?;
                for marker in markers {
                    let corrupt = || StoreError::Corrupt {
                        key: format!("{} {marker}", set.replace('\0', "/")),
                        message: "not a unit marker".to_string(),
                    };
                    let parts: Vec<&str> = marker.split(':').collect();
                    let [_, stage, cohort, unit] = parts[..] else {
                        return Err(corrupt());
                    };
                    let stage = Stage::new(stage.parse().map_err(|_| corrupt())?);
                    let cohort = cohort_named(cohort).ok_or_else(corrupt)?;
                    let unit = u64::from_str_radix(unit, 16).map_err(|_| corrupt())?;
                    found.entry((stage, cohort)).or_default().insert(unit);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(found
                .into_iter()
                .map(|(place, units)| {
                    Aggregate::units_seen(&environment, &flag, generation, place, units)
                })
                .collect())
        })
        .await
    }
}

/// The keys and arguments of a merge script (see `merge_body`).
struct MergeArguments {
    /// Every hash and marker set the merge touches, in the order of their positions.
    keys: Vec<String>,
    counters: Vec<(usize, String, i64)>,
    /// Per unit seen: its set's position, its marker, its count's hash's position and field.
    units: Vec<(usize, String, usize, String)>,
}

impl MergeArguments {
    /// `first_key` is the position in KEYS of the first key of the merge's own.
    fn of(deltas: &[Aggregate], first_key: usize) -> MergeArguments {
        let mut merge = MergeArguments {
            keys: Vec::new(),
            counters: Vec::new(),
            units: Vec::new(),
        };
        let position = |keys: &mut Vec<String>, wanted: String| match keys
            .iter()
            .position(|known| *known == wanted)
        {
            Some(position) => position + first_key,
            None => {
                keys.push(wanted);
                keys.len() - 1 + first_key
            }
        };
        for delta in deltas {
            let (environment, flag) = (&delta.key.environment, &delta.key.flag);
            let hash = position(&mut merge.keys, pair_key("aggregates", environment, flag));
            if let AggregateCounts::UnitsSeen(units) = &delta.counts {
                let set = position(&mut merge.keys, pair_key("units", environment, flag));
                let field = aggregate_field(&delta.key, 'u', "n");
                for unit in units {
                    merge
                        .units
                        .push((set, unit_marker(&delta.key, *unit), hash, field.clone()));
                }
                continue;
            }
            for (field, amount) in increments(delta) {
                merge.counters.push((hash, field, amount));
            }
        }
        merge
    }

    /// Adds the keys, then the arguments after whatever the script reads first.
    fn add_to(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(self.counters.len());
        for (position, field, amount) in &self.counters {
            invocation.arg(*position).arg(field).arg(*amount);
        }
        for (set, marker, hash, field) in &self.units {
            invocation.arg(*set).arg(marker).arg(*hash).arg(field);
        }
    }
}

/// The counters a delta adds to, with the amounts: a field per histogram bin of a `value`
/// metric, events and trials of a `rate` one.
fn increments(delta: &Aggregate) -> Vec<(String, i64)> {
    match &delta.counts {
        AggregateCounts::Values(bins) => bins
            .iter()
            .map(|(bin, count)| {
                (
                    aggregate_field(&delta.key, 'v', &bin.to_string()),
                    increment(*count),
                )
            })
            .collect(),
        AggregateCounts::Rate { events, trials } => vec![
            (aggregate_field(&delta.key, 'r', "e"), increment(*events)),
            (aggregate_field(&delta.key, 'r', "t"), increment(*trials)),
        ],
        AggregateCounts::Units(units) => {
            vec![(aggregate_field(&delta.key, 'u', "n"), increment(*units))]
        }
        // Not an amount: what it adds depends on the markers (see `MergeArguments`).
        AggregateCounts::UnitsSeen(_) => Vec::new(),
    }
}

/// Adds the increments of `deltas` to `pipe`.
fn add_increments(pipe: &mut redis::Pipeline, deltas: &[Aggregate]) {
    for delta in deltas {
        let hash = pair_key("aggregates", &delta.key.environment, &delta.key.flag);
        for (field, amount) in increments(delta) {
            pipe.hincr(&hash, field, amount).ignore();
        }
    }
}

/// `text` with Redis's glob characters escaped, for a `SCAN ... MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RedisStore;
    use crate::store::redis_server::RedisServer;
    use crate::store::{conformance, ChangeEvent, Store, StoreError};

    /// A node's service on `server`'s Redis, not following the feed unless told to.
    async fn service_on(server: &RedisServer) -> std::sync::Arc<crate::service::Service> {
        let store = RedisStore::open(&server.url()).await.unwrap();
        crate::service::Service::open(
            std::sync::Arc::new(store),
            ripcord_engine::Limits::default(),
            None,
        )
        .await
        .unwrap()
    }

    fn person() -> crate::principal::Principal {
        crate::principal::Principal {
            name: "release-engineer".to_string(),
            scope: crate::store::Scope::Admin,
            environment: None,
            event_channel: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redis_passes_the_store_conformance_suite() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::open(&server.url()).await.unwrap();
        conformance::run(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redis_speaking_tls_is_reached_with_its_ca_and_refused_without() {
        let Some(server) = RedisServer::start_tls() else {
            return;
        };
        let ca = server.certificate_file().unwrap();
        let store = RedisStore::open_with(&server.url(), Some(&ca), super::Marking::Existing)
            .await
            .unwrap();
        conformance::write_one_flag(&store).await;
        conformance::check_one_flag(&store).await;
        let untrusted = RedisStore::open(&server.url()).await;
        assert!(
            untrusted.is_err(),
            "a certificate no trusted root signed is refused"
        );
        let plain = RedisStore::open(&server.url().replace("rediss://", "redis://")).await;
        assert!(plain.is_err(), "a TLS port does not speak plain Redis");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redis_is_made_a_deployment_only_when_asked() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let refused = RedisStore::open(&server.url()).await;
        assert!(
            matches!(refused, Err(StoreError::Unmarked)),
            "a server does not take an empty Redis for a new deployment"
        );
        let marked = RedisStore::open_with(&server.url(), None, super::Marking::New)
            .await
            .unwrap();
        let again = RedisStore::open_with(&server.url(), None, super::Marking::New)
            .await
            .unwrap();
        assert_eq!(marked.marker, again.marker, "marked once");
        let opened = RedisStore::open(&server.url()).await.unwrap();
        assert_eq!(opened.marker, marked.marker);
        assert!(opened.ready().await);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_on_a_node_behind_another_is_made_again_on_top_of_it() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let open = || service_on(&server);
        let person = person();
        let first = open().await;
        first.create_environment("prod", &person).await.unwrap();
        // Neither follows the feed: the second stays where it loaded, behind the first.
        let second = open().await;
        let change = |operation| crate::service::Change {
            environment: "prod",
            actor: &person,
            operation,
            reason: None,
        };
        let flag = |key: &str| {
            ripcord_engine::Document::from_text(&format!(
                "flags:\n  {key}:\n    type: boolean\n    variants: {{on: true, off: false}}\n    default_variant: \"on\"\n"
            ))
            .unwrap()
            .flags
            .into_values()
            .next()
            .unwrap()
        };
        first
            .create_item(change("create_flag"), "checkout", flag("checkout"))
            .await
            .unwrap();
        let revision = second
            .create_item(change("create_flag"), "search", flag("search"))
            .await
            .expect("made again on the first node's change, not refused");
        assert_eq!(revision, 2);
        let environment = second.environment("prod").unwrap();
        let keys: Vec<&String> = environment.document.flags.keys().collect();
        assert_eq!(
            keys,
            ["checkout", "search"],
            "nothing the first node wrote is lost"
        );
        // A change that expected the revision it read is refused, not made again.
        let refused = first
            .change_at(change("kill_switch"), Some(1), |document| {
                if let Some(flag) = document.flags.get_mut("checkout") {
                    flag.enabled = Some(false);
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(refused, crate::error::Error::Conflict(_)),
            "{refused}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_change_made_while_a_node_starts_reaches_it() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let open = || service_on(&server);
        let person = person();
        let writer = open().await;
        writer.create_environment("durable", &person).await.unwrap();
        let service = open().await;
        // Made after the node loaded and before it follows the feed, as while a node is
        // still preparing.
        let imported = ripcord_engine::Document::from_text(
            "segments:\n  beta:\n    when: [{attribute: track, op: in, values: [beta]}]\n",
        )
        .unwrap();
        writer
            .change(
                crate::service::Change {
                    environment: "durable",
                    actor: &person,
                    operation: "import",
                    reason: None,
                },
                |document| {
                    *document = imported.clone();
                    Ok(())
                },
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _follower = service.follow_changes();
        let started = std::time::Instant::now();
        while service
            .environment("durable")
            .is_none_or(|environment| environment.revision != 1)
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the change made while the node started never reached it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(service
            .environment("durable")
            .unwrap()
            .document
            .segments
            .contains_key("beta"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn commits_survive_reconnecting_and_a_restart_of_redis() {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        {
            let store = RedisStore::open(&server.url()).await.unwrap();
            conformance::write_one_flag(&store).await;
            conformance::write_aggregates(&store).await;
            conformance::write_batch(&store).await;
        }
        // Killed, not shut down: only what the append-only file holds comes back.
        server.restart();
        let store = RedisStore::open(&server.url()).await.unwrap();
        conformance::check_one_flag(&store).await;
        conformance::check_aggregates(&store).await;
        conformance::check_batch(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sled_store_copies_into_redis_and_back() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let directory = tempfile::tempdir().unwrap();
        let sled = crate::store::sled::SledStore::open(directory.path()).unwrap();
        let redis = RedisStore::open(&server.url()).await.unwrap();
        conformance::copy_everything(&sled, &redis).await;
        let back = tempfile::tempdir().unwrap();
        let sled_again = crate::store::sled::SledStore::open(back.path()).unwrap();
        let empty = RedisServer::start().unwrap();
        let redis_again = RedisStore::open(&empty.url()).await.unwrap();
        conformance::copy_everything(&redis_again, &sled_again).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redis_that_lost_its_data_is_refused_until_restored() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::open(&server.url()).await.unwrap();
        let other = RedisStore::open(&server.url()).await.unwrap();
        conformance::write_one_flag(&store).await;
        let saved = crate::store::copy::export(&store).await.unwrap();

        // Restarted without persistence, say: everything is gone.
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let refused = store.load_environment("durable").await.unwrap_err();
        assert!(matches!(refused, StoreError::Lost), "{refused}");
        assert!(
            !store.ready().await,
            "a store that lost its data is not ready"
        );
        let refused = store
            .commit("durable", 1, Vec::new(), Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Lost), "{refused}");
        // Not even an environment list: a node must not take the empty store for the truth.
        assert!(other.environments().await.is_err());

        let mut feed = other.subscribe();
        store.import(saved).await.unwrap();
        assert!(store.ready().await);
        conformance::check_one_flag(&store).await;
        // A read that was waiting through the loss may deliver the next change first.
        let resync = async { while feed.recv().await.unwrap() != ChangeEvent::Resync {} };
        tokio::time::timeout(Duration::from_secs(5), resync)
            .await
            .expect("the other node is told to read everything again within 5 s");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn kill_reach_counts_the_instances_every_node_saw() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let first = RedisStore::open(&server.url()).await.unwrap();
        let second = RedisStore::open(&server.url()).await.unwrap();
        let seen = |id: &str, revision: u64, last_seen: u64| crate::store::SeenInstance {
            id: id.to_string(),
            revision,
            last_seen,
        };
        first
            .merge_reach(
                "prod",
                vec![seen("phone-1", 7, 5_000), seen("phone-2", 6, 5_000)],
            )
            .await
            .unwrap();
        // The same phone through another node, at an older revision but later: it keeps
        // the kill it fetched and counts as seen at the later time.
        second
            .merge_reach(
                "prod",
                vec![seen("phone-1", 5, 5_100), seen("tablet", 7, 10)],
            )
            .await
            .unwrap();
        let reach = second.reach("prod", 7, 4_000).await.unwrap();
        assert_eq!(
            reach,
            crate::store::Reach {
                active: 2,
                fetched: 1
            },
            "the tablet was not seen in the window; phone-1 fetched the kill"
        );
        // Read, the shared hash lets go of what has gone quiet, and it expires unless nodes
        // keep handing it news.
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let (kept, lives): (u64, i64) = redis::pipe()
            .hlen(super::key("reach:prod"))
            .ttl(super::key("reach:prod"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(kept, 2, "the tablet is gone from Redis");
        assert!(lives > 0, "the hash expires: {lives}");
        assert_eq!(
            first.reach("prod", 6, 5_050).await.unwrap(),
            crate::store::Reach {
                active: 1,
                fetched: 1
            },
            "only phone-1 was seen after 5 050"
        );
        assert_eq!(
            first.reach("test", 1, 0).await.unwrap(),
            crate::store::Reach::default()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_commit_on_one_node_is_announced_on_another() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let first = RedisStore::open(&server.url()).await.unwrap();
        let second = RedisStore::open(&server.url()).await.unwrap();
        let mut feed = second.subscribe();
        conformance::write_one_flag(&first).await;
        let mut events = Vec::new();
        while events.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
                .await
                .expect("the other node hears of the change within 5 s")
                .unwrap();
            events.push(event);
        }
        assert_eq!(
            events,
            [
                ChangeEvent::Environment {
                    name: "durable".to_string(),
                    revision: 0,
                    deleted: false
                },
                ChangeEvent::Environment {
                    name: "durable".to_string(),
                    revision: 1,
                    deleted: false
                }
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_node_that_missed_trimmed_changes_is_told_to_reload() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::open(&server.url()).await.unwrap();
        conformance::write_one_flag(&store).await;
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let stream = super::key("changes");
        // A node that read nothing yet, and a stream trimmed to nothing since.
        redis::cmd("XTRIM")
            .arg(&stream)
            .arg("MAXLEN")
            .arg(0)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let (sender, mut feed) = tokio::sync::broadcast::channel(16);
        let behind = super::Position {
            last: "0-1".to_string(),
            read: 0,
        };
        let follower = tokio::spawn(super::follow(client, behind, store.marker.clone(), sender));
        let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("told within 5 s")
            .unwrap();
        assert_eq!(event, ChangeEvent::Resync);
        // Told once: it goes on from the end, and hears of the next change as usual.
        store.commit("durable", 1, vec![], vec![]).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("the next change within 5 s")
            .unwrap();
        assert_eq!(
            event,
            ChangeEvent::Environment {
                name: "durable".to_string(),
                revision: 2,
                deleted: false
            }
        );
        // A node that had read everything before the trim missed nothing.
        let (end, _) = super::stream_end(&mut connection).await.unwrap();
        assert_eq!(
            super::missed_changes(&mut connection, &end).await.unwrap(),
            None
        );
        follower.abort();
    }
}
