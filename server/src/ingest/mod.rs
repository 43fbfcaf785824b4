//! Metric ingestion: observations tagged with flag, metric, cohort and stage, checked against
//! the flag's running ramp and added to mergeable aggregates in the store, for the ramp
//! controller to judge. HTTP (`POST /api/v1/metrics`) and gRPC (`Report`) parse and
//! authenticate, then call [`Ingest::report`]; nothing here knows either protocol.
//!
//! # Layout
//!
//! - [`bins`]: the one bin layout of every `value` metric.
//! - [`aggregate`]: what the controller reads back: [`Aggregates`], and from it the
//!   `ramp::Observations` that `ramp::step` takes.
//!
//! # The active table
//!
//! The controller tells [`Ingest::set_active`] which stage of which generation each flag's
//! ramp is at, from when its observations count (the stage's start plus the warm-up), and
//! which metrics it guards. Observations are checked against that table only: a flag
//! without an entry has no running ramp, and its observations are rejected. Batches read the
//! table through an atomic pointer; only `set_active` copies it.
//!
//! # Durability: group commit
//!
//! An acknowledged batch survives a crash: [`Ingest::accept`] returns only once its counts
//! are merged into the store and flushed. Batches that arrive together share that write.
//! Each adds its counts to the pending delta and waits; one flusher task takes the whole
//! pending delta, merges it into the store (one transaction, one flush) and wakes every
//! batch that was in it, while the batches that arrive meanwhile gather into the next
//! delta. Under load the cost is one fsync per flush, not one per batch.

pub mod aggregate;
pub mod bins;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use ripcord_engine::document::MetricKind;
use ripcord_engine::Stage;
use ripcord_engine::{Cohort, Snapshot};
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::{watch, Notify};

pub use aggregate::{AggregateData, Aggregates, StageAggregate};

use crate::clock::rfc3339;
use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::service::Service;
use crate::store::{
    unit_hash, Aggregate, AggregateCounts, AggregateKey, CountsKind, Scope, Store, StoreError,
};

/// How far ahead of the server's clock an observation's timestamp may be: apps' clocks
/// drift, but an observation from the future is a bug or a forgery.
pub const MAX_SECONDS_AHEAD: u64 = 300;

/// The setting that bounds a batch, named in the refusal of a larger one.
pub const BATCH_LIMIT_SETTING: &str = "RIPCORD_MAX_OBSERVATIONS_PER_BATCH";

/// User input quoted in a rejection is cut to this many characters, so that a batch of
/// long names cannot make the answer many times larger than the request.
const QUOTED_CHARACTERS: usize = 64;

/// An unknown metric's rejection names at most this many of the ramp's guards.
const NAMED_GUARDS: usize = 5;

/// The stage of a flag's ramp that observations count for, as the controller sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveStage {
    /// The ramp's generation: aggregates are kept per generation.
    pub generation: u64,
    /// As evaluations report it.
    pub stage: Stage,
    /// Unix seconds: the stage's start plus the warm-up. Observations made before it do not
    /// count.
    pub counts_from: u64,
    /// The ramp's guard metrics.
    pub metrics: Vec<(String, MetricKind)>,
}

/// When an observation was made, as the caller sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Timestamp {
    UnixMillis(i64),
    /// Checked here, so that a bad one rejects its observation, not the batch.
    Rfc3339(String),
}

/// One observation as a client reported it, before any check.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationIn {
    pub flag: String,
    pub metric: String,
    pub value: f64,
    /// `treatment` or `control`, from the evaluation's metadata.
    pub cohort: String,
    /// The ramp stage, from the evaluation's metadata. Kept as the widest number a client
    /// may send, so that a stage no ramp has is rejected with this observation, not with
    /// the batch.
    pub stage: u64,
    /// The randomization unit, if the client sent it: the sample-ratio check counts the
    /// distinct units of each cohort at each stage, whatever metrics they report, instead
    /// of their observations, which a unit active over many reporting windows sends many
    /// of. Empty counts as absent.
    pub unit: Option<String>,
    /// `None`: when the server receives it.
    pub timestamp: Option<Timestamp>,
}

/// The answer to a batch: how many observations count, and why each of the others does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: u64,
    pub rejected: Vec<Rejection>,
    /// The batch's `batch_id` was seen already: it counted then, and does not count again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// The observation's position in the batch, from 0.
    pub index: usize,
    pub reason: String,
}

/// Whose batch it is: a client key may report only on flags it may evaluate.
#[derive(Clone, Copy)]
pub enum Reporter<'a> {
    Server,
    /// A client key, with its environment's snapshot to tell which flags are
    /// client-visible.
    Client(&'a Snapshot),
}

/// Active stages by environment, then by flag.
type ActiveTable = FxHashMap<String, FxHashMap<String, Arc<ActiveStage>>>;

/// Ingestion: the active table, validation, and the group commit into the store.
pub struct Ingest {
    active: ArcSwap<ActiveTable>,
    /// Serializes `set_active`'s copy-and-swap of the table.
    active_writer: Mutex<()>,
    max_batch: usize,
    shared: Arc<Shared>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What batches and the flusher share.
struct Shared {
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
    /// Wakes the flusher when a batch added counts, or when ingestion closes.
    work: Notify,
}

/// The next flush: counts added since the last one, and the channel on which the flusher
/// tells the batches in it how their write went.
struct Pending {
    delta: FxHashMap<(AggregateKey, CountsKind), AggregateCounts>,
    round: watch::Sender<Option<Flushed>>,
    closed: bool,
}

/// How a flush went; the error as text, because every batch of the round gets a copy.
type Flushed = std::result::Result<(), String>;

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The delta is only ever changed whole under the lock: a panic elsewhere cannot
        // leave it half-merged.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ingest {
    /// Starts ingestion into `store`, with its flusher task on the current tokio runtime.
    /// Batches of more than `max_batch` observations are refused whole.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> Arc<Ingest> {
        let shared = Arc::new(Shared {
            store,
            pending: Mutex::new(Pending {
                delta: FxHashMap::default(),
                round: watch::channel(None).0,
                closed: false,
            }),
            work: Notify::new(),
        });
        let flusher = tokio::spawn(flush(Arc::clone(&shared)));
        Arc::new(Ingest {
            active: ArcSwap::default(),
            active_writer: Mutex::new(()),
            max_batch,
            shared,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// Sets (or, with `None`, clears) the stage that `flag`'s observations count for. The
    /// controller calls it whenever a ramp starts, advances, pauses, resumes or ends, and
    /// on every look.
    pub fn set_active(&self, environment: &str, flag: &str, stage: Option<ActiveStage>) {
        let _writer = self
            .active_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.active.load();
        let unchanged = match (&stage, current.get(environment).and_then(|f| f.get(flag))) {
            (Some(stage), Some(active)) => **active == *stage,
            (None, None) => true,
            _ => false,
        };
        // The controller confirms every ramp's stage on each look: most calls change nothing
        // and should not copy the table.
        if unchanged {
            return;
        }
        let mut table = ActiveTable::clone(&current);
        match stage {
            Some(stage) => {
                table
                    .entry(environment.to_string())
                    .or_default()
                    .insert(flag.to_string(), Arc::new(stage));
            }
            None => {
                if let Some(flags) = table.get_mut(environment) {
                    flags.remove(flag);
                    if flags.is_empty() {
                        table.remove(environment);
                    }
                }
            }
        }
        self.active.store(Arc::new(table));
    }

    /// Every (environment, flag) whose observations count now.
    pub fn active_flags(&self) -> Vec<(String, String)> {
        self.active
            .load()
            .iter()
            .flat_map(|(environment, flags)| {
                flags
                    .keys()
                    .map(move |flag| (environment.clone(), flag.clone()))
            })
            .collect()
    }

    /// The stage `flag`'s observations count for now, if its ramp runs.
    pub fn active(&self, environment: &str, flag: &str) -> Option<Arc<ActiveStage>> {
        self.active
            .load()
            .get(environment)
            .and_then(|flags| flags.get(flag))
            .cloned()
    }

    /// A batch reported with `principal`'s key: client and server keys report for their
    /// own environment (client keys on client-visible flags only); admin keys do not
    /// report. `now` is Unix seconds.
    pub async fn report(
        &self,
        service: &Service,
        principal: &Principal,
        observations: Vec<ObservationIn>,
        now: u64,
    ) -> Result<Accepted> {
        self.report_batch(service, principal, None, observations, now)
            .await
    }

    /// [`report`](Ingest::report) for a batch that may name itself: a batch sent again
    /// with the same `batch_id` (a retry whose answer was lost) counts once, and its answer
    /// says `duplicate`.
    pub async fn report_batch(
        &self,
        service: &Service,
        principal: &Principal,
        batch_id: Option<&str>,
        observations: Vec<ObservationIn>,
        now: u64,
    ) -> Result<Accepted> {
        let environment = reporting_environment(principal)?;
        if crate::access::sees_all(Some(principal.scope)) {
            return self
                .accept_batch(environment, Reporter::Server, batch_id, observations, now)
                .await;
        }
        // The key's environment was deleted while the request came in: the deletion
        // revoked the key, and nothing it could see is left.
        let current = service
            .environment(environment)
            .ok_or_else(|| Error::NotFound {
                what: "environment",
                key: environment.to_string(),
            })?;
        self.accept_batch(
            environment,
            Reporter::Client(&current.snapshot),
            batch_id,
            observations,
            now,
        )
        .await
    }

    /// The most observations a batch may hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Checks a batch for `environment` from a server key (every flag) and adds the
    /// observations that pass to the aggregates; returns once they are durably stored.
    /// `now` is Unix seconds.
    pub async fn accept(
        &self,
        environment: &str,
        observations: Vec<ObservationIn>,
        now: u64,
    ) -> Result<Accepted> {
        self.accept_from(environment, Reporter::Server, observations, now)
            .await
    }

    /// [`accept`](Ingest::accept) for any reporter.
    pub async fn accept_from(
        &self,
        environment: &str,
        reporter: Reporter<'_>,
        observations: Vec<ObservationIn>,
        now: u64,
    ) -> Result<Accepted> {
        self.accept_batch(environment, reporter, None, observations, now)
            .await
    }

    /// [`accept_from`](Ingest::accept_from) for a batch that may name itself.
    async fn accept_batch(
        &self,
        environment: &str,
        reporter: Reporter<'_>,
        batch_id: Option<&str>,
        observations: Vec<ObservationIn>,
        now: u64,
    ) -> Result<Accepted> {
        if observations.len() > self.max_batch {
            return Err(Error::LimitExceeded {
                limit: BATCH_LIMIT_SETTING,
                message: format!(
                    "{} observations is over the limit of {} per batch ({BATCH_LIMIT_SETTING})",
                    observations.len(),
                    self.max_batch
                ),
            });
        }
        let (batch, mut answer) = self.check(environment, reporter, &observations, now);
        drop(observations);
        if batch.is_empty() {
            return Ok(answer);
        }
        match batch_id {
            // Written on its own, the id with the counts: a group commit could not tell
            // which of its batches had been seen.
            Some(batch_id) => {
                if self.shared.pending().closed {
                    return Err(stopped());
                }
                let merged = self.shared.store.merge_batch(batch_id, batch, now).await?;
                answer.duplicate = !merged;
            }
            None => self.commit(batch).await?,
        }
        Ok(answer)
    }

    /// Every aggregate of one generation of `flag`'s ramp, as the controller judges them.
    pub async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> Result<Aggregates> {
        let stored = self
            .shared
            .store
            .aggregates(environment, flag, generation)
            .await?;
        Ok(Aggregates::from_stored(generation, stored)?)
    }

    /// Flushes what is pending and stops the flusher. Batches that come after it are
    /// refused as the store being unavailable. Call it once HTTP and gRPC have stopped.
    pub async fn close(&self) {
        self.shared.pending().closed = true;
        self.shared.work.notify_one();
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(flusher) = flusher {
            if let Err(error) = flusher.await {
                tracing::error!(%error, "the metric flusher failed");
            }
        }
    }

    /// Validates every observation and sums the good ones per aggregate.
    fn check(
        &self,
        environment: &str,
        reporter: Reporter<'_>,
        observations: &[ObservationIn],
        now: u64,
    ) -> (Vec<Aggregate>, Accepted) {
        let table = self.active.load();
        let flags = table.get(environment);
        let now_ms = i64::try_from(now.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut sums: FxHashMap<(&str, &str, Cohort), (&ActiveStage, Sum)> = FxHashMap::default();
        // Per flag and cohort, over every metric: a unit counts once at a stage.
        let mut units: FxHashMap<(&str, Cohort), (&ActiveStage, BTreeSet<u64>)> =
            FxHashMap::default();
        let mut answer = Accepted {
            accepted: 0,
            rejected: Vec::new(),
            duplicate: false,
        };
        for (index, observation) in observations.iter().enumerate() {
            match check_one(flags, reporter, observation, now_ms) {
                Ok((active, kind, cohort)) => {
                    answer.accepted += 1;
                    let (_, sum) = sums
                        .entry((&observation.flag, &observation.metric, cohort))
                        .or_insert_with(|| (active, Sum::new(kind)));
                    sum.add(observation.value);
                    if let Some(unit) = observation.unit.as_deref().filter(|u| !u.is_empty()) {
                        units
                            .entry((&observation.flag, cohort))
                            .or_insert_with(|| (active, BTreeSet::new()))
                            .1
                            .insert(unit_hash(unit));
                    }
                }
                Err(reason) => answer.rejected.push(Rejection { index, reason }),
            }
        }
        let batch = sums
            .into_iter()
            .map(|((flag, metric, cohort), (active, sum))| Aggregate {
                key: AggregateKey {
                    environment: environment.to_string(),
                    flag: flag.to_string(),
                    generation: active.generation,
                    stage: active.stage,
                    cohort,
                    metric: metric.to_string(),
                },
                counts: sum.into_counts(),
            })
            .chain(units.into_iter().map(|((flag, cohort), (active, seen))| {
                Aggregate::units_seen(
                    environment,
                    flag,
                    active.generation,
                    (active.stage, cohort),
                    seen,
                )
            }))
            .collect();
        (batch, answer)
    }

    /// Adds a checked batch to the pending delta and waits until the flush that carries it
    /// is durable.
    async fn commit(&self, batch: Vec<Aggregate>) -> Result<()> {
        let mut round = {
            let mut pending = self.shared.pending();
            if pending.closed {
                return Err(stopped());
            }
            for aggregate in batch {
                let kind = aggregate.counts.kind();
                match pending.delta.entry((aggregate.key, kind)) {
                    Entry::Occupied(mut sum) => {
                        // Same key, same kind: adding cannot fail.
                        sum.get_mut().add(&aggregate.counts);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(aggregate.counts);
                    }
                }
            }
            pending.round.subscribe()
        };
        self.shared.work.notify_one();
        let flushed = match round.wait_for(Option::is_some).await {
            Ok(flushed) => flushed.clone(),
            Err(_) => None,
        };
        match flushed {
            Some(Ok(())) => Ok(()),
            Some(Err(message)) => Err(Error::Store(StoreError::Backend(message))),
            // The flusher is gone without a word: the process is stopping.
            None => Err(stopped()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // The flusher writes what is pending, then ends.
        self.shared.pending().closed = true;
        self.shared.work.notify_one();
    }
}

/// Longer batch ids are refused.
pub const MAX_BATCH_ID_BYTES: usize = 128;

/// Whether `id` may name a batch: 1 to [`MAX_BATCH_ID_BYTES`] printable ASCII characters.
pub fn check_batch_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_BATCH_ID_BYTES
        || !id.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
    {
        return Err(format!(
            "`batch_id` must be 1 to {MAX_BATCH_ID_BYTES} printable ASCII characters"
        ));
    }
    Ok(())
}

/// The environment a key reports for: its own, for client and server keys. Admin keys do
/// not report; handlers ask before they read a body.
pub fn reporting_environment(principal: &Principal) -> Result<&str> {
    Ok(crate::access::environment(
        principal,
        crate::access::Action::Report,
    )?)
}

fn stopped() -> Error {
    Error::Store(StoreError::Backend(
        "metric ingestion has stopped: the server is shutting down".to_string(),
    ))
}

/// The flusher: one round at a time, every pending delta into the store.
async fn flush(shared: Arc<Shared>) {
    loop {
        let (delta, round, closed) = {
            let mut pending = shared.pending();
            let next = watch::channel(None).0;
            (
                std::mem::take(&mut pending.delta),
                std::mem::replace(&mut pending.round, next),
                pending.closed,
            )
        };
        if delta.is_empty() {
            // Nobody subscribed to an empty round: batches subscribe as they add counts.
            if closed {
                break;
            }
            shared.work.notified().await;
            continue;
        }
        let deltas: Vec<Aggregate> = delta
            .into_iter()
            .map(|((key, _), counts)| Aggregate { key, counts })
            .collect();
        let store = Arc::clone(&shared.store);
        // A task of its own, so that a panic in the store fails this round's batches
        // instead of leaving them (and every later one) waiting for a flusher that is gone.
        let written = tokio::spawn(async move { store.merge_aggregates(deltas).await }).await;
        let flushed = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::error!(%error, "writing metric aggregates failed");
                Err(error.to_string())
            }
            Err(error) => {
                tracing::error!(%error, "writing metric aggregates panicked");
                Err("writing metric aggregates failed".to_string())
            }
        };
        round.send_replace(Some(flushed));
    }
}

/// One aggregate's counts within a batch, before they join the pending delta.
enum Sum {
    /// Bin indices, one per observation: pushing is cheaper than counting per value.
    Values(Vec<u32>),
    Rate {
        events: u64,
        trials: u64,
    },
}

impl Sum {
    fn new(kind: MetricKind) -> Sum {
        match kind {
            MetricKind::Value => Sum::Values(Vec::new()),
            MetricKind::Rate => Sum::Rate {
                events: 0,
                trials: 0,
            },
        }
    }

    fn add(&mut self, value: f64) {
        match self {
            Sum::Values(bins) => bins.push(bins::bin_of(value)),
            Sum::Rate { events, trials } => {
                *trials += 1;
                if value == 1.0 {
                    *events += 1;
                }
            }
        }
    }

    fn into_counts(self) -> AggregateCounts {
        match self {
            Sum::Values(mut bins) => {
                bins.sort_unstable();
                let mut counts = BTreeMap::new();
                for bin in bins {
                    *counts.entry(bin).or_insert(0u64) += 1;
                }
                AggregateCounts::Values(counts)
            }
            Sum::Rate { events, trials } => AggregateCounts::Rate { events, trials },
        }
    }
}

/// Checks one observation against the flag's active stage: the flag, the metric, the
/// cohort, the stage, the value, and when it was made. The first problem is the reason.
fn check_one<'t>(
    flags: Option<&'t FxHashMap<String, Arc<ActiveStage>>>,
    reporter: Reporter<'_>,
    observation: &ObservationIn,
    now_ms: i64,
) -> std::result::Result<(&'t ActiveStage, MetricKind, Cohort), String> {
    let unknown_flag = || {
        format!(
            "unknown flag {} or no running ramp",
            quoted(&observation.flag)
        )
    };
    let active = flags
        .and_then(|flags| flags.get(observation.flag.as_str()))
        .ok_or_else(unknown_flag)?;
    if let Reporter::Client(snapshot) = reporter {
        // A client key cannot tell a server-side flag from one that does not exist.
        let visible = snapshot
            .flag(&observation.flag)
            .is_some_and(|flag| crate::access::sees(Some(Scope::Client), flag));
        if !visible {
            return Err(unknown_flag());
        }
    }
    let kind = active
        .metrics
        .iter()
        .find(|(name, _)| *name == observation.metric)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| {
            // Every rejection of a batch may say this: it names a few guards, cut like any
            // quoted name, so that the answer stays about as large as the request.
            let mut guarded: Vec<String> = active
                .metrics
                .iter()
                .take(NAMED_GUARDS)
                .map(|(name, _)| quoted(name))
                .collect();
            if active.metrics.len() > NAMED_GUARDS {
                guarded.push(format!("and {} more", active.metrics.len() - NAMED_GUARDS));
            }
            format!(
                "unknown metric {}: the ramp of {} guards {}",
                quoted(&observation.metric),
                quoted(&observation.flag),
                if guarded.is_empty() {
                    "no metric".to_string()
                } else {
                    guarded.join(", ")
                }
            )
        })?;
    let cohort = match observation.cohort.as_str() {
        "treatment" => Cohort::Treatment,
        "control" => Cohort::Control,
        other => {
            return Err(format!(
                "cohort must be `treatment` or `control`, not {}",
                quoted(other)
            ))
        }
    };
    let running = u64::from(active.stage);
    if observation.stage < running {
        return Err(format!(
            "stale stage {}, the ramp is at stage {running}",
            observation.stage
        ));
    }
    if observation.stage > running {
        return Err(format!(
            "stage {} is not running, the ramp is at stage {running}",
            observation.stage
        ));
    }
    let value = observation.value;
    if !value.is_finite() {
        return Err(format!("value {value} is not a finite number"));
    }
    match kind {
        MetricKind::Rate if value != 0.0 && value != 1.0 => {
            return Err(format!(
                "{} is a rate metric: its values are 0 or 1, not {value}",
                quoted(&observation.metric)
            ));
        }
        MetricKind::Value if value < 0.0 => {
            return Err(format!(
                "{} is a value metric: its values are numbers ≥ 0, not {value}",
                quoted(&observation.metric)
            ));
        }
        _ => {}
    }
    let observed_ms = match &observation.timestamp {
        None => now_ms,
        Some(Timestamp::UnixMillis(ms)) => *ms,
        Some(Timestamp::Rfc3339(text)) => parse_rfc3339_ms(text).ok_or_else(|| {
            format!(
                "timestamp {} is not an RFC 3339 time such as 2026-11-28T10:00:00Z",
                quoted(text)
            )
        })?,
    };
    let ahead_ms = i128::from(observed_ms) - i128::from(now_ms);
    if ahead_ms > i128::from(MAX_SECONDS_AHEAD) * 1000 {
        return Err(format!(
            "timestamp is {} s ahead of the server's clock; at most {MAX_SECONDS_AHEAD} s is \
             allowed",
            ahead_ms / 1000
        ));
    }
    // Nothing arrives before it is made: a clock running ahead must not carry an
    // observation made in the warm-up past it.
    let observed_ms = observed_ms.min(now_ms);
    if i128::from(observed_ms) < i128::from(active.counts_from) * 1000 {
        return Err(format!(
            "observed before the stage counts (its start plus its warm-up): observations \
             count from {}",
            rfc3339(active.counts_from)
        ));
    }
    Ok((active, kind, cohort))
}

fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `text` in backticks, cut to [`QUOTED_CHARACTERS`].
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARACTERS) {
        Some((end, _)) => format!("`{}…`", &text[..end]),
        None => format!("`{text}`"),
    }
}

#[cfg(test)]
mod tests;
