//! Tracking: what an app observes for the guards of ramps, from `track` until it is handed
//! to the reporter (`report`): tagged with the cohort and stage of the unit's last evaluation of
//! the flag, aggregated per unit per flush window, and held in bounded memory.
//!
//! The guard's statistics assume one observation per randomization unit: a unit's requests
//! are not independent of each other, and counting each as an observation makes the test
//! overconfident and kills healthy changes. So a window holds one aggregate per unit and
//! metric: a value metric's mean, a rate metric's "did it happen at all".
//!
//! Nothing here reads a clock or does I/O: callers pass the time.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

pub(crate) use ripcord_engine::document::MetricKind;
use ripcord_engine::{Cohort, Stage};

use crate::error::Error;

/// The cohort and stage an evaluation put a unit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Tag {
    pub(crate) cohort: Cohort,
    pub(crate) stage: Stage,
}

impl Tag {
    /// Only evaluations of a ramping flag that put the unit in a cohort tag it: without a
    /// stage, the guard could not tell which part of the ramp an observation belongs to.
    pub(crate) fn of(cohort: Option<Cohort>, stage: Option<Stage>) -> Option<Tag> {
        Some(Tag {
            cohort: cohort?,
            stage: stage?,
        })
    }
}

/// What `track` did with an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tracked {
    /// Added to the unit's aggregate of the current flush window.
    Recorded,
    /// Not reported, and counted as untagged: the unit's last evaluation of the flag put it
    /// in no cohort of a ramp, or the unit has not evaluated the flag (lately).
    Untagged,
    /// Not reported, and counted as dropped, for the reason given.
    Dropped(String),
}

/// What happened to the observations tracked; part of the clients' status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackingStatus {
    /// Observations (unit aggregates) delivered to the server.
    pub sent: u64,
    /// Of those, the ones the server accepted.
    pub accepted: u64,
    /// Of those, the ones the server refused, and why the last one was.
    pub rejected: u64,
    pub last_rejection: Option<String>,
    /// Observations the SDK gave up on: over its memory bounds, refused whole by the server
    /// (a wrong key, a server without metric ingestion), or not valid for the metric (those
    /// count one per `track` call). `last_drop` says why the last one went.
    pub dropped: u64,
    pub last_drop: Option<String>,
    /// `track` calls for units that were in no cohort: not reported.
    pub untagged: u64,
    /// Observations waiting: aggregates of the current window and batches not yet sent.
    pub pending: u64,
    /// The last send's failure, cleared by a send that works.
    pub last_error: Option<Error>,
}

/// Bounds on the memory tracking may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Unit aggregates in the current window; beyond it, new units are dropped.
    pub(crate) max_units: usize,
    /// Batches waiting to be sent; beyond it, the oldest batch is dropped.
    pub(crate) max_batches: usize,
    /// Observations per batch, which is one request.
    pub(crate) batch_size: usize,
    /// Units whose last evaluation is remembered, per generation (see `TagMemory`).
    pub(crate) max_tags: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        // About 15 MB each for the window and the queue at their fullest; a batch of 500
        // stays far below the server's default request size limit (256 KiB).
        Bounds {
            max_units: 100_000,
            max_batches: 200,
            batch_size: 500,
            max_tags: 100_000,
        }
    }
}

/// One observation, as sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) flag: Box<str>,
    pub(crate) metric: Box<str>,
    pub(crate) value: f64,
    pub(crate) cohort: Cohort,
    pub(crate) stage: Stage,
    pub(crate) unit: Option<Box<str>>,
    /// The first event of the aggregate, Unix milliseconds: an aggregate that began in a
    /// stage's warm-up holds warm-up data.
    pub(crate) timestamp_ms: i64,
}

/// The last evaluation's tag of each (flag, unit), in bounded memory.
///
/// Backends evaluate for more units than they could remember, so the memory keeps two
/// generations: entries go into the current one, and when it is full it becomes the
/// previous one (dropping the one before). A unit evaluated or tracked within the last
/// `max_tags` remembered units is always found. Sharded, because evaluations of a ramping
/// flag write here on every thread at once.
pub(crate) struct TagMemory {
    hasher: RandomState,
    shards: Box<[Mutex<Generations>]>,
}

const SHARDS: usize = 16;

/// Maps keyed by a hash already computed: hashing it again would cost without spreading it
/// any better.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type TagMap = HashMap<u64, Tag, BuildHasherDefault<Prehashed>>;

struct Generations {
    current: TagMap,
    previous: TagMap,
    capacity: usize,
}

impl TagMemory {
    pub(crate) fn new(max_tags: usize) -> TagMemory {
        let capacity = max_tags.div_ceil(SHARDS).max(1);
        TagMemory {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: TagMap::default(),
                        previous: TagMap::default(),
                        capacity,
                    })
                })
                .collect(),
        }
    }

    /// The key of a unit of a flag. Keyed by a hash rather than the texts, so that
    /// remembering costs no allocation; with 64 bits, two units of 100,000 collide about
    /// once in 10⁹ clients.
    pub(crate) fn key(&self, flag: &str, unit: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(flag.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(unit.as_bytes());
        hasher.finish()
    }

    fn shard(&self, key: u64) -> &Mutex<Generations> {
        // Bits the maps do not use at any size they reach: their slot comes from the low
        // bits and their control byte from the top seven.
        &self.shards[(key >> 40) as usize % SHARDS]
    }

    /// Remembers the tag of an evaluation; `None` (no cohort) forgets the unit's last one.
    pub(crate) fn remember(&self, key: u64, tag: Option<Tag>) {
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        match tag {
            Some(tag) => shard.insert(key, tag),
            None => {
                shard.current.remove(&key);
                shard.previous.remove(&key);
            }
        }
    }

    pub(crate) fn recall(&self, key: u64) -> Option<Tag> {
        let mut shard = self.shard(key).lock().ok()?;
        if let Some(tag) = shard.current.get(&key) {
            return Some(*tag);
        }
        // Found in the old generation: still in use, so it moves to the current one.
        let tag = shard.previous.remove(&key)?;
        shard.insert(key, tag);
        Some(tag)
    }
}

impl Generations {
    fn insert(&mut self, key: u64, tag: Tag) {
        if let Some(held) = self.current.get_mut(&key) {
            *held = tag;
            return;
        }
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.previous.remove(&key);
        self.current.insert(key, tag);
    }
}

/// What an aggregate is of.
#[derive(Debug, PartialEq, Eq)]
struct AggregateKey {
    flag: Box<str>,
    metric: Box<str>,
    unit: Option<Box<str>>,
    tag: Tag,
}

impl AggregateKey {
    fn is(&self, flag: &str, metric: &str, unit: Option<&str>, tag: Tag) -> bool {
        *self.flag == *flag
            && *self.metric == *metric
            && self.unit.as_deref() == unit
            && self.tag == tag
    }
}

struct Aggregate {
    kind: MetricKind,
    /// A value metric's sum; a rate metric's number of events.
    sum: f64,
    count: u64,
    first_ms: i64,
}

impl Aggregate {
    fn value(&self) -> f64 {
        match self.kind {
            MetricKind::Rate => f64::from(u8::from(self.sum > 0.0)),
            MetricKind::Value => self.sum / self.count as f64,
        }
    }
}

/// Observations from `track` to the batches the reporter sends.
pub(crate) struct Recorder {
    bounds: Bounds,
    pub(crate) tags: TagMemory,
    /// Keys the window, outside the lock.
    seed: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By a hash of the key, computed before the lock is taken; the key itself is only
    /// allocated for a unit's first event of the window.
    window: HashMap<u64, (AggregateKey, Aggregate), BuildHasherDefault<Prehashed>>,
    queue: VecDeque<Batch>,
    queued: usize,
    status: TrackingStatus,
}

/// Observations sent together, under an id of their own: a batch sent again after its
/// answer was lost names itself the same, and the server counts it once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    pub(crate) id: String,
    pub(crate) observations: Vec<Observation>,
}

impl Batch {
    /// A batch of `observations` under a new id.
    pub(crate) fn new(observations: Vec<Observation>) -> Batch {
        Batch {
            id: batch_id(),
            observations,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.observations.len()
    }
}

/// 128 random bits in hex: no two batches of any instance share one.
fn batch_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and a count keep this process's ids apart, which is what
        // a retry needs.
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        return format!("{nanos:x}-{:x}-{count:x}", std::process::id());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The server's answer to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) accepted: u64,
    /// `(index in the batch, reason)`.
    pub(crate) rejected: Vec<(u32, String)>,
}

/// Why a value does not fit its metric, if it does not.
fn invalid(kind: MetricKind, value: f64) -> Option<&'static str> {
    match kind {
        MetricKind::Rate if value != 0.0 && value != 1.0 => {
            Some("a rate metric takes 0 (did not happen) or 1 (happened)")
        }
        MetricKind::Value if !value.is_finite() || value < 0.0 => {
            Some("a value metric takes a finite number >= 0")
        }
        _ => None,
    }
}

impl Recorder {
    pub(crate) fn new(bounds: Bounds) -> Recorder {
        Recorder {
            bounds,
            tags: TagMemory::new(bounds.max_tags),
            seed: RandomState::new(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere while it was held
        // does not make it unusable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one event to its unit's aggregate. `tag` is the unit's last evaluation's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        flag: &str,
        unit: Option<&str>,
        tag: Option<Tag>,
        metric: &str,
        kind: MetricKind,
        value: f64,
        now_ms: i64,
    ) -> Tracked {
        if let Some(problem) = invalid(kind, value) {
            let reason = format!("`{metric}` of flag `{flag}`: {value} is not valid: {problem}");
            self.state().give_up(1, &reason);
            return Tracked::Dropped(reason);
        }
        let Some(tag) = tag else {
            self.state().status.untagged += 1;
            return Tracked::Untagged;
        };
        let hash = {
            let mut hasher = self.seed.build_hasher();
            for part in [flag, metric, unit.unwrap_or_default()] {
                hasher.write(part.as_bytes());
                hasher.write_u8(0xff);
            }
            hasher.write_u8(u8::from(unit.is_some()));
            hasher.write_u8(u8::from(tag.cohort == Cohort::Treatment));
            hasher.write_u32(tag.stage.get());
            hasher.finish()
        };
        let mut state = self.state();
        let units = state.window.len();
        let outcome = match state.window.entry(hash) {
            Entry::Occupied(mut entry) => {
                let (key, aggregate) = entry.get_mut();
                if !key.is(flag, metric, unit, tag) {
                    // Two keys of one 64-bit keyed hash: about once in 10⁹ clients.
                    Err(format!("`{metric}` of flag `{flag}`: a hash collision in the window"))
                } else if aggregate.kind == kind {
                    aggregate.sum += value;
                    aggregate.count += 1;
                    Ok(())
                } else {
                    Err(format!(
                        "`{metric}` of flag `{flag}` was tracked both as a rate and as a value"
                    ))
                }
            }
            Entry::Vacant(_) if units >= self.bounds.max_units => Err(format!(
                "more than {} units in one flush window: flush more often or raise max_pending_units",
                self.bounds.max_units
            )),
            Entry::Vacant(entry) => {
                let key = AggregateKey {
                    flag: flag.into(),
                    metric: metric.into(),
                    unit: unit.map(Into::into),
                    tag,
                };
                let aggregate = Aggregate {
                    kind,
                    sum: value,
                    count: 1,
                    first_ms: now_ms,
                };
                entry.insert((key, aggregate));
                Ok(())
            }
        };
        match outcome {
            Ok(()) => Tracked::Recorded,
            Err(reason) => {
                state.give_up(1, &reason);
                Tracked::Dropped(reason)
            }
        }
    }

    /// Ends the window: its aggregates become observations, queued in batches.
    pub(crate) fn close_window(&self) {
        let mut state = self.state();
        if state.window.is_empty() {
            return;
        }
        let observations: Vec<Observation> = state
            .window
            .drain()
            .map(|(_, (key, aggregate))| Observation {
                value: aggregate.value(),
                flag: key.flag,
                metric: key.metric,
                cohort: key.tag.cohort,
                stage: key.tag.stage,
                unit: key.unit,
                timestamp_ms: aggregate.first_ms,
            })
            .collect();
        let mut rest = observations.as_slice();
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(rest.len().min(self.bounds.batch_size.max(1)));
            state.queued += batch.len();
            state.queue.push_back(Batch::new(batch.to_vec()));
            rest = after;
        }
        self.enforce_queue_bound(&mut state);
    }

    fn enforce_queue_bound(&self, state: &mut State) {
        while state.queue.len() > self.bounds.max_batches {
            let Some(oldest) = state.queue.pop_front() else {
                break;
            };
            state.queued -= oldest.len();
            let reason = format!(
                "more than {} batches waiting to be sent: the oldest was dropped",
                self.bounds.max_batches
            );
            state.give_up(oldest.len() as u64, &reason);
        }
    }

    /// The oldest batch waiting, taken out of the queue.
    pub(crate) fn take_batch(&self) -> Option<Batch> {
        let mut state = self.state();
        let batch = state.queue.pop_front()?;
        state.queued -= batch.len();
        Some(batch)
    }

    /// Puts a batch that could not be sent back at the head of the queue, to be tried
    /// again first.
    pub(crate) fn requeue(&self, batch: Batch) {
        let mut state = self.state();
        state.queued += batch.len();
        state.queue.push_front(batch);
        self.enforce_queue_bound(&mut state);
    }

    pub(crate) fn delivered(&self, sent: usize, answer: &Answer) {
        let mut state = self.state();
        state.status.sent += sent as u64;
        state.status.accepted += answer.accepted;
        state.status.rejected += answer.rejected.len() as u64;
        if let Some((_, reason)) = answer.rejected.last() {
            state.status.last_rejection = Some(reason.clone());
        }
        state.status.last_error = None;
    }

    pub(crate) fn untagged(&self) {
        self.state().status.untagged += 1;
    }

    pub(crate) fn dropped(&self, count: usize, reason: &str) {
        self.state().give_up(count as u64, reason);
    }

    pub(crate) fn set_error(&self, error: Error) {
        self.state().status.last_error = Some(error);
    }

    pub(crate) fn status(&self) -> TrackingStatus {
        let state = self.state();
        TrackingStatus {
            pending: (state.window.len() + state.queued) as u64,
            ..state.status.clone()
        }
    }
}

impl State {
    fn give_up(&mut self, count: u64, reason: &str) {
        self.status.dropped += count;
        self.status.last_drop = Some(reason.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREATMENT: Option<Tag> = Some(Tag {
        cohort: Cohort::Treatment,
        stage: Stage::new(1),
    });
    const CONTROL: Option<Tag> = Some(Tag {
        cohort: Cohort::Control,
        stage: Stage::new(1),
    });

    fn recorder(bounds: Bounds) -> Recorder {
        Recorder::new(bounds)
    }

    fn drain(recorder: &Recorder) -> Vec<Observation> {
        let mut all = Vec::new();
        while let Some(batch) = recorder.take_batch() {
            all.extend(batch.observations);
        }
        all.sort_by(|a, b| (&a.metric, &a.unit).cmp(&(&b.metric, &b.unit)));
        all
    }

    #[test]
    fn a_window_holds_one_observation_per_unit_a_mean_or_whether_it_happened() {
        let recorder = recorder(Bounds::default());
        let value = MetricKind::Value;
        let rate = MetricKind::Rate;
        for (unit, latency, at) in [("u1", 100.0, 5), ("u1", 300.0, 7), ("u2", 50.0, 6)] {
            let tracked = recorder.record(
                "checkout",
                Some(unit),
                TREATMENT,
                "latency",
                value,
                latency,
                at,
            );
            assert_eq!(tracked, Tracked::Recorded);
        }
        for happened in [0.0, 1.0, 0.0] {
            recorder.record(
                "checkout",
                Some("u1"),
                TREATMENT,
                "error",
                rate,
                happened,
                9,
            );
        }
        recorder.record("checkout", Some("u2"), CONTROL, "error", rate, 0.0, 9);
        recorder.record("checkout", Some("u2"), CONTROL, "error", rate, 0.0, 10);
        assert_eq!(recorder.status().pending, 4);
        recorder.close_window();

        let sent = drain(&recorder);
        let summary: Vec<(&str, &str, f64, Cohort, i64)> = sent
            .iter()
            .map(|observation| {
                (
                    &*observation.metric,
                    observation.unit.as_deref().unwrap(),
                    observation.value,
                    observation.cohort,
                    observation.timestamp_ms,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("error", "u1", 1.0, Cohort::Treatment, 9),
                ("error", "u2", 0.0, Cohort::Control, 9),
                ("latency", "u1", 200.0, Cohort::Treatment, 5),
                ("latency", "u2", 50.0, Cohort::Treatment, 6),
            ]
        );
        assert!(sent
            .iter()
            .all(|observation| observation.stage == Stage::new(1)));

        recorder.record(
            "checkout",
            Some("u1"),
            TREATMENT,
            "latency",
            value,
            10.0,
            20,
        );
        recorder.close_window();
        let next = drain(&recorder);
        assert_eq!(next.len(), 1, "a new window starts afresh");
        assert_eq!(next[0].value, 10.0);
    }

    #[test]
    fn a_stage_change_starts_a_new_aggregate() {
        let recorder = recorder(Bounds::default());
        let later = Some(Tag {
            cohort: Cohort::Treatment,
            stage: Stage::new(2),
        });
        for tag in [TREATMENT, later] {
            recorder.record("f", Some("u1"), tag, "m", MetricKind::Value, 1.0, 0);
        }
        recorder.close_window();
        let mut stages: Vec<u32> = drain(&recorder).iter().map(|o| o.stage.get()).collect();
        stages.sort_unstable();
        assert_eq!(stages, [1, 2]);
    }

    #[test]
    fn untagged_and_invalid_observations_are_counted_not_recorded() {
        let recorder = recorder(Bounds::default());
        assert_eq!(
            recorder.record("f", Some("u"), None, "m", MetricKind::Value, 1.0, 0),
            Tracked::Untagged
        );
        for (kind, value) in [
            (MetricKind::Rate, 0.5),
            (MetricKind::Rate, 2.0),
            (MetricKind::Value, -1.0),
            (MetricKind::Value, f64::NAN),
            (MetricKind::Value, f64::INFINITY),
        ] {
            let tracked = recorder.record("f", Some("u"), TREATMENT, "m", kind, value, 0);
            assert!(matches!(tracked, Tracked::Dropped(_)), "{kind:?} {value}");
        }
        recorder.record("f", Some("u"), TREATMENT, "m", MetricKind::Value, 3.0, 0);
        let mixed = recorder.record("f", Some("u"), TREATMENT, "m", MetricKind::Rate, 1.0, 0);
        assert!(matches!(mixed, Tracked::Dropped(reason) if reason.contains("both")));
        let status = recorder.status();
        assert_eq!(status.untagged, 1);
        assert_eq!(status.dropped, 6);
        assert_eq!(status.pending, 1);
        assert!(status.last_drop.unwrap().contains("both"));
    }

    #[test]
    fn memory_is_bounded_and_what_goes_over_is_counted() {
        let recorder = recorder(Bounds {
            max_units: 3,
            max_batches: 2,
            batch_size: 2,
            max_tags: 10,
        });
        for unit in ["a", "b", "c", "d", "e"] {
            recorder.record("f", Some(unit), TREATMENT, "m", MetricKind::Value, 1.0, 0);
        }
        // A unit already in the window still aggregates.
        assert_eq!(
            recorder.record("f", Some("a"), TREATMENT, "m", MetricKind::Value, 1.0, 0),
            Tracked::Recorded
        );
        let status = recorder.status();
        assert_eq!((status.pending, status.dropped), (3, 2));
        assert!(status.last_drop.unwrap().contains("max_pending_units"));

        recorder.close_window(); // batches of 2 and 1
        for unit in ["x", "y"] {
            recorder.record("f", Some(unit), TREATMENT, "m", MetricKind::Value, 1.0, 0);
        }
        recorder.close_window(); // one more batch: the oldest goes
        let status = recorder.status();
        assert_eq!((status.pending, status.dropped), (3, 4));
        assert!(status.last_drop.unwrap().contains("oldest"));
        let batch = recorder.take_batch().unwrap();
        assert_eq!(batch.len(), 1, "the batch of one is now the oldest");
        recorder.requeue(batch);
        assert_eq!(recorder.status().pending, 3, "a requeued batch waits again");
        assert_eq!(drain(&recorder).len(), 3);
    }

    #[test]
    fn answers_are_counted_with_the_last_reason() {
        let recorder = recorder(Bounds::default());
        recorder.set_error(Error::Connection("down".into()));
        recorder.delivered(
            5,
            &Answer {
                accepted: 3,
                rejected: vec![(1, "unknown metric".into()), (4, "stale stage".into())],
            },
        );
        let status = recorder.status();
        assert_eq!((status.sent, status.accepted, status.rejected), (5, 3, 2));
        assert_eq!(status.last_rejection.as_deref(), Some("stale stage"));
        assert_eq!(status.last_error, None, "a delivery clears the error");
    }

    #[test]
    fn the_tag_memory_keeps_recent_units_and_forgets_on_a_cohortless_evaluation() {
        let memory = TagMemory::new(SHARDS * 4);
        let key = |unit: usize| memory.key("flag", &format!("unit-{unit}"));
        assert_ne!(memory.key("a", "bc"), memory.key("ab", "c"));
        memory.remember(key(0), TREATMENT);
        assert_eq!(memory.recall(key(0)), TREATMENT);
        memory.remember(key(0), CONTROL);
        assert_eq!(memory.recall(key(0)), CONTROL, "the last evaluation wins");
        memory.remember(key(0), None);
        assert_eq!(memory.recall(key(0)), None);

        // Far more units than the memory holds: the most recent are all there, and the
        // memory does not grow past two generations.
        for unit in 0..10_000 {
            memory.remember(key(unit), TREATMENT);
        }
        for unit in 9_990..10_000 {
            assert_eq!(memory.recall(key(unit)), TREATMENT, "{unit}");
        }
        let held: usize = memory
            .shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap();
                shard.current.len() + shard.previous.len()
            })
            .sum();
        assert!(held <= 2 * SHARDS * 4, "{held}");
        let forgotten = (0..100).filter(|unit| memory.recall(key(*unit)).is_none());
        assert_eq!(forgotten.count(), 100, "the oldest are gone");
    }
}
