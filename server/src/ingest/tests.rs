//! Ingestion against a running ramp: every rejection, the aggregates against the raw
//! values, the group commit and its durability, and the controller's view of the data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ripcord_engine::document::{MetricKind, Ramp};
use ripcord_engine::ramp::{self, Decision, StageUnits};
use ripcord_engine::stats::Proportion;
use ripcord_engine::{Document, Limits, Snapshot};
use tokio::sync::{broadcast, Semaphore};

use super::*;
use crate::store::sled::SledStore;
use crate::store::{
    AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState, IncidentQuery,
    IncidentRecord, KeyRecord, Mutation, RampRecord, StoreResult,
};

const ENV: &str = "prod";
const FLAG: &str = "new-checkout";
const LATENCY: &str = "checkout_latency_ms";
const CRASHES: &str = "crash_rate";
/// The stage's warm-up ended here (Unix seconds).
const COUNTS_FROM: u64 = 1_800_000_000;
const NOW: u64 = COUNTS_FROM + 600;

fn active(generation: u64, stage: u32) -> ActiveStage {
    ActiveStage {
        generation,
        stage: Stage::new(stage),
        counts_from: COUNTS_FROM,
        metrics: vec![
            (LATENCY.to_string(), MetricKind::Value),
            (CRASHES.to_string(), MetricKind::Rate),
        ],
    }
}

fn observation(metric: &str, value: f64, cohort: &str, stage: u64) -> ObservationIn {
    ObservationIn {
        flag: FLAG.to_string(),
        metric: metric.to_string(),
        value,
        cohort: cohort.to_string(),
        stage,
        unit: None,
        timestamp: None,
    }
}

fn at(mut observation: ObservationIn, timestamp: Timestamp) -> ObservationIn {
    observation.timestamp = Some(timestamp);
    observation
}

fn millis(unix_seconds: u64) -> Timestamp {
    Timestamp::UnixMillis(unix_seconds as i64 * 1000)
}

struct Fixture {
    ingest: Arc<Ingest>,
    _directory: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let directory = tempfile::tempdir().unwrap();
    let store = SledStore::open(directory.path()).unwrap();
    let ingest = Ingest::start(Arc::new(store), 10_000);
    ingest.set_active(ENV, FLAG, Some(active(3, 1)));
    Fixture {
        ingest,
        _directory: directory,
    }
}

fn rejections(answer: &Accepted) -> Vec<(usize, &str)> {
    answer
        .rejected
        .iter()
        .map(|rejection| (rejection.index, rejection.reason.as_str()))
        .collect()
}

#[tokio::test]
async fn every_bad_observation_is_rejected_with_its_reason_and_the_rest_counts() {
    let fixture = fixture();
    let mut other_flag = observation(LATENCY, 10.0, "treatment", 1);
    other_flag.flag = "old-checkout".to_string();
    let batch = vec![
        other_flag,
        observation("page_views", 1.0, "treatment", 1),
        observation(LATENCY, 10.0, "both", 1),
        observation(LATENCY, 10.0, "treatment", 0),
        observation(LATENCY, 10.0, "treatment", 2),
        observation(LATENCY, f64::NAN, "control", 1),
        observation(LATENCY, f64::INFINITY, "control", 1),
        observation(LATENCY, -1.0, "control", 1),
        observation(CRASHES, 0.5, "control", 1),
        at(
            observation(LATENCY, 10.0, "control", 1),
            millis(NOW + MAX_SECONDS_AHEAD + 1),
        ),
        at(
            observation(LATENCY, 10.0, "control", 1),
            Timestamp::Rfc3339("yesterday".to_string()),
        ),
        at(
            observation(LATENCY, 10.0, "control", 1),
            millis(COUNTS_FROM - 1),
        ),
        // Good ones, interleaved.
        observation(LATENCY, 0.0, "treatment", 1),
        observation(CRASHES, 1.0, "treatment", 1),
        observation(CRASHES, 0.0, "control", 1),
        at(
            observation(LATENCY, 250.5, "control", 1),
            millis(COUNTS_FROM),
        ),
        at(
            observation(LATENCY, 99.0, "control", 1),
            millis(NOW + MAX_SECONDS_AHEAD),
        ),
        at(
            observation(CRASHES, 0.0, "control", 1),
            Timestamp::Rfc3339("2027-01-15T08:05:00.250Z".to_string()),
        ),
    ];
    let answer = fixture.ingest.accept(ENV, batch, NOW).await.unwrap();
    assert_eq!(
        rejections(&answer),
        [
            (0, "unknown flag `old-checkout` or no running ramp"),
            (
                1,
                "unknown metric `page_views`: the ramp of `new-checkout` guards \
                 `checkout_latency_ms`, `crash_rate`"
            ),
            (2, "cohort must be `treatment` or `control`, not `both`"),
            (3, "stale stage 0, the ramp is at stage 1"),
            (4, "stage 2 is not running, the ramp is at stage 1"),
            (5, "value NaN is not a finite number"),
            (6, "value inf is not a finite number"),
            (
                7,
                "`checkout_latency_ms` is a value metric: its values are numbers ≥ 0, not -1"
            ),
            (
                8,
                "`crash_rate` is a rate metric: its values are 0 or 1, not 0.5"
            ),
            (
                9,
                "timestamp is 301 s ahead of the server's clock; at most 300 s is allowed"
            ),
            (
                10,
                "timestamp `yesterday` is not an RFC 3339 time such as 2026-11-28T10:00:00Z"
            ),
            (
                11,
                "observed before the stage counts (its start plus its warm-up): observations count \
                 from 2027-01-15T08:00:00Z"
            ),
        ]
    );
    assert_eq!(answer.accepted, 6);

    let aggregates = fixture.ingest.aggregates(ENV, FLAG, 3).await.unwrap();
    let Some(AggregateData::Values { treatment, control }) =
        aggregates.find(LATENCY, Stage::new(1), MetricKind::Value)
    else {
        panic!("no latency at stage 1: {aggregates:?}");
    };
    let mut expected_treatment = bins::empty();
    expected_treatment.record(0.0);
    let mut expected_control = bins::empty();
    expected_control.record(250.5);
    expected_control.record(99.0);
    assert_eq!(treatment, &expected_treatment);
    assert_eq!(control, &expected_control);
    assert_eq!(
        aggregates.find(CRASHES, Stage::new(1), MetricKind::Rate),
        Some(&AggregateData::Rate {
            treatment: Proportion {
                events: 1,
                trials: 1
            },
            control: Proportion {
                events: 0,
                trials: 2
            },
        })
    );
    assert_eq!(aggregates.totals(LATENCY, Stage::new(1)), (1, 2));
    assert_eq!(aggregates.totals(CRASHES, Stage::new(1)), (1, 2));
    assert_eq!(aggregates.stages.len(), 2, "nothing else was stored");
}

#[tokio::test]
async fn quoted_input_is_cut_short_in_reasons() {
    let fixture = fixture();
    let mut long = observation(LATENCY, 1.0, "treatment", 1);
    long.flag = "f".repeat(10_000);
    let answer = fixture.ingest.accept(ENV, vec![long], NOW).await.unwrap();
    let reason = &answer.rejected[0].reason;
    assert!(reason.len() < 120, "{reason}");
    assert!(
        reason.starts_with(&format!("unknown flag `{}…`", "f".repeat(64))),
        "{reason}"
    );
}

#[tokio::test]
async fn without_a_timestamp_the_server_clock_decides_the_warm_up() {
    let fixture = fixture();
    let batch = || vec![observation(LATENCY, 5.0, "treatment", 1)];
    let early = fixture
        .ingest
        .accept(ENV, batch(), COUNTS_FROM - 1)
        .await
        .unwrap();
    assert_eq!(early.accepted, 0);
    assert!(early.rejected[0].reason.contains("warm-up"), "{early:?}");
    let on_time = fixture
        .ingest
        .accept(ENV, batch(), COUNTS_FROM)
        .await
        .unwrap();
    assert_eq!(on_time.accepted, 1);
    assert!(on_time.rejected.is_empty());
}

#[tokio::test]
async fn the_active_table_decides_which_flags_and_stages_count() {
    let fixture = fixture();
    let ingest = &fixture.ingest;
    let one = || vec![observation(LATENCY, 5.0, "treatment", 1)];

    // Another environment's ramp of a flag with the same key does not let it in.
    ingest.set_active("staging", FLAG, Some(active(1, 0)));
    assert_eq!(
        ingest.accept("staging", one(), NOW).await.unwrap().accepted,
        0
    );
    assert_eq!(ingest.accept(ENV, one(), NOW).await.unwrap().accepted, 1);

    // The ramp advanced: stage 1 is stale now.
    ingest.set_active(ENV, FLAG, Some(active(3, 2)));
    let stale = ingest.accept(ENV, one(), NOW).await.unwrap();
    assert_eq!(
        rejections(&stale),
        [(0, "stale stage 1, the ramp is at stage 2")]
    );

    // The ramp ended.
    ingest.set_active(ENV, FLAG, None);
    assert_eq!(ingest.active(ENV, FLAG), None);
    let ended = ingest.accept(ENV, one(), NOW).await.unwrap();
    assert_eq!(
        rejections(&ended),
        [(0, "unknown flag `new-checkout` or no running ramp")]
    );
    assert_eq!(
        ingest.active("staging", FLAG).as_deref(),
        Some(&active(1, 0)),
        "clearing one environment's flag leaves the others"
    );
}

#[tokio::test]
async fn client_keys_report_only_on_client_visible_flags() {
    let fixture = fixture();
    fixture
        .ingest
        .set_active(ENV, "server-side", Some(active(1, 1)));
    let document = Document::from_yaml(
        r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    client_visible: true
  server-side:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
"#,
    )
    .unwrap();
    let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default()).unwrap();
    let mut hidden = observation(LATENCY, 5.0, "treatment", 1);
    hidden.flag = "server-side".to_string();
    let batch = vec![observation(LATENCY, 5.0, "treatment", 1), hidden.clone()];
    let client = fixture
        .ingest
        .accept_from(ENV, Reporter::Client(&snapshot), batch.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(client.accepted, 1);
    assert_eq!(
        rejections(&client),
        [(1, "unknown flag `server-side` or no running ramp")],
        "a client key cannot tell a server-side flag from a missing one"
    );
    let server = fixture.ingest.accept(ENV, batch, NOW).await.unwrap();
    assert_eq!(server.accepted, 2);
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let directory = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(Arc::new(SledStore::open(directory.path()).unwrap()), 3);
    ingest.set_active(ENV, FLAG, Some(active(3, 1)));
    let batch = vec![observation(LATENCY, 5.0, "treatment", 1); 4];
    let error = ingest.accept(ENV, batch, NOW).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::LimitExceeded { limit, message }
                if *limit == BATCH_LIMIT_SETTING
                    && message.contains("4 observations is over the limit of 3 per batch")
        ),
        "{error:?}"
    );
    let answer = ingest
        .accept(ENV, vec![observation(LATENCY, 5.0, "treatment", 1); 3], NOW)
        .await
        .unwrap();
    assert_eq!(answer.accepted, 3);
    let aggregates = ingest.aggregates(ENV, FLAG, 3).await.unwrap();
    assert_eq!(
        aggregates.totals(LATENCY, Stage::new(1)),
        (3, 0),
        "the refused batch added nothing"
    );
}

/// Deterministic pseudo-random numbers in [0, 1).
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly lognormal around `median`, with a heavy right tail.
    fn latency(&mut self, median: f64) -> f64 {
        let normal: f64 = (0..12).map(|_| self.next()).sum::<f64>() - 6.0;
        median * (0.5 * normal).exp()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregates_are_the_histograms_of_the_raw_values_however_batches_interleave() {
    let fixture = fixture();
    let mut numbers = Numbers(0x9e37_79b9_7f4a_7c15);
    let mut expected_treatment = bins::empty();
    let mut expected_control = bins::empty();
    let (mut events, mut trials) = ([0u64; 2], [0u64; 2]);
    let mut batches = Vec::new();
    for _ in 0..40 {
        let mut batch = Vec::new();
        for _ in 0..250 {
            let treated = numbers.next() < 0.5;
            let cohort = if treated { "treatment" } else { "control" };
            if numbers.next() < 0.7 {
                let value = if numbers.next() < 0.02 {
                    0.0
                } else {
                    numbers.latency(100.0)
                };
                let histogram = if treated {
                    &mut expected_treatment
                } else {
                    &mut expected_control
                };
                histogram.record(value);
                batch.push(observation(LATENCY, value, cohort, 1));
            } else {
                let crashed = numbers.next() < 0.05;
                let arm = usize::from(!treated);
                trials[arm] += 1;
                events[arm] += u64::from(crashed);
                batch.push(observation(
                    CRASHES,
                    f64::from(u8::from(crashed)),
                    cohort,
                    1,
                ));
            }
        }
        batches.push(batch);
    }
    // Concurrent batches: several land in each flush.
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let ingest = Arc::clone(&fixture.ingest);
            tokio::spawn(async move { ingest.accept(ENV, batch, NOW).await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.unwrap().unwrap();
        assert_eq!(answer.accepted, 250, "{:?}", answer.rejected);
    }
    let aggregates = fixture.ingest.aggregates(ENV, FLAG, 3).await.unwrap();
    assert_eq!(
        aggregates.find(LATENCY, Stage::new(1), MetricKind::Value),
        Some(&AggregateData::Values {
            treatment: expected_treatment,
            control: expected_control,
        })
    );
    assert_eq!(
        aggregates.find(CRASHES, Stage::new(1), MetricKind::Rate),
        Some(&AggregateData::Rate {
            treatment: Proportion {
                events: events[0],
                trials: trials[0]
            },
            control: Proportion {
                events: events[1],
                trials: trials[1]
            },
        })
    );
}

#[tokio::test]
async fn generations_and_stages_are_kept_apart() {
    let fixture = fixture();
    let ingest = &fixture.ingest;
    ingest.set_active(ENV, FLAG, Some(active(1, 0)));
    ingest
        .accept(ENV, vec![observation(LATENCY, 1.0, "treatment", 0)], NOW)
        .await
        .unwrap();
    ingest.set_active(ENV, FLAG, Some(active(1, 1)));
    ingest
        .accept(ENV, vec![observation(LATENCY, 2.0, "treatment", 1); 2], NOW)
        .await
        .unwrap();
    ingest.set_active(ENV, FLAG, Some(active(2, 0)));
    ingest
        .accept(ENV, vec![observation(LATENCY, 3.0, "control", 0); 3], NOW)
        .await
        .unwrap();

    let first = ingest.aggregates(ENV, FLAG, 1).await.unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(first.totals(LATENCY, Stage::new(0)), (1, 0));
    assert_eq!(first.totals(LATENCY, Stage::new(1)), (2, 0));
    let second = ingest.aggregates(ENV, FLAG, 2).await.unwrap();
    assert_eq!(second.totals(LATENCY, Stage::new(0)), (0, 3));
    assert_eq!(second.stages.len(), 1);
    assert!(ingest
        .aggregates(ENV, FLAG, 3)
        .await
        .unwrap()
        .stages
        .is_empty());
}

fn from_unit(mut observation: ObservationIn, unit: &str) -> ObservationIn {
    observation.unit = Some(unit.to_string());
    observation
}

#[tokio::test]
async fn a_unit_counts_once_per_stage_and_cohort_whatever_it_reports() {
    let fixture = fixture();
    let ingest = &fixture.ingest;
    let ramp: Ramp = serde_yaml_ng::from_str(RAMP).unwrap();
    ingest.set_active(ENV, FLAG, Some(active(1, 0)));
    // Without units, nothing is counted and the check falls back to observations.
    ingest
        .accept(ENV, vec![observation(LATENCY, 1.0, "treatment", 0)], NOW)
        .await
        .unwrap();
    let aggregates = ingest.aggregates(ENV, FLAG, 1).await.unwrap();
    assert!(aggregates.units.is_empty());
    assert!(aggregates
        .observations(&ramp, Stage::new(0))
        .units
        .is_empty());

    // `alice` reports both metrics, twice, in two batches (one sent again under its id);
    // an empty unit is no unit.
    let first = vec![
        from_unit(observation(LATENCY, 1.0, "treatment", 0), "alice"),
        from_unit(observation(CRASHES, 0.0, "treatment", 0), "alice"),
        from_unit(observation(LATENCY, 2.0, "control", 0), "bob"),
        from_unit(observation(LATENCY, 2.0, "control", 0), ""),
    ];
    ingest.accept(ENV, first, NOW).await.unwrap();
    let second = vec![
        from_unit(observation(CRASHES, 1.0, "treatment", 0), "alice"),
        from_unit(observation(LATENCY, 3.0, "treatment", 0), "carol"),
    ];
    for _ in 0..2 {
        ingest
            .accept_batch(ENV, Reporter::Server, Some("units-2"), second.clone(), NOW)
            .await
            .unwrap();
    }
    // The next stage counts its own units.
    ingest.set_active(ENV, FLAG, Some(active(1, 1)));
    ingest
        .accept(
            ENV,
            vec![from_unit(
                observation(LATENCY, 1.0, "treatment", 1),
                "alice",
            )],
            NOW,
        )
        .await
        .unwrap();

    let aggregates = ingest.aggregates(ENV, FLAG, 1).await.unwrap();
    assert_eq!(aggregates.totals(LATENCY, Stage::new(0)), (3, 2));
    let units = aggregates.observations(&ramp, Stage::new(2)).units;
    assert_eq!(
        units,
        [
            StageUnits {
                treatment: 2,
                control: 1
            },
            StageUnits {
                treatment: 1,
                control: 0
            },
            StageUnits::default(),
        ]
    );
}

#[tokio::test]
async fn accepted_observations_survive_reopening_the_store() {
    let directory = tempfile::tempdir().unwrap();
    let batch = vec![
        observation(LATENCY, 12.5, "treatment", 1),
        observation(LATENCY, 80.0, "control", 1),
        observation(CRASHES, 1.0, "control", 1),
    ];
    let before = {
        let ingest = Ingest::start(Arc::new(SledStore::open(directory.path()).unwrap()), 10_000);
        ingest.set_active(ENV, FLAG, Some(active(3, 1)));
        assert_eq!(ingest.accept(ENV, batch, NOW).await.unwrap().accepted, 3);
        let before = ingest.aggregates(ENV, FLAG, 3).await.unwrap();
        ingest.close().await;
        before
    };
    let store = SledStore::open(directory.path()).unwrap();
    let ingest = Ingest::start(Arc::new(store), 10_000);
    let after = ingest.aggregates(ENV, FLAG, 3).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.totals(LATENCY, Stage::new(1)), (1, 1));
    assert_eq!(after.totals(CRASHES, Stage::new(1)), (0, 1));
}

/// A sled store whose aggregate merges wait for a permit and can be made to fail; it
/// counts the merges.
struct GatedStore {
    inner: SledStore,
    gate: Semaphore,
    merges: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

impl GatedStore {
    fn new(directory: &tempfile::TempDir) -> GatedStore {
        GatedStore {
            inner: SledStore::open(directory.path()).unwrap(),
            gate: Semaphore::new(0),
            merges: AtomicUsize::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        self.inner.environments().await
    }
    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        self.inner.load_environment(name).await
    }
    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord> {
        self.inner.create_environment(name, created_at, audit).await
    }
    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        self.inner.delete_environment(name, audit).await
    }
    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64> {
        self.inner
            .commit(environment, base_revision, mutations, audit)
            .await
    }
    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.inner.keys().await
    }
    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        self.inner.put_key(key, audit).await
    }
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.inner.audit(query).await
    }
    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        self.inner.ramps().await
    }
    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        self.inner.ramp(environment, flag).await
    }
    async fn put_ramp(&self, write: crate::store::RampWrite) -> StoreResult<u64> {
        self.inner.put_ramp(write).await
    }
    async fn pending_webhooks(&self) -> StoreResult<Vec<crate::store::PendingWebhook>> {
        self.inner.pending_webhooks().await
    }

    async fn webhook_done(&self, id: &str) -> StoreResult<()> {
        self.inner.webhook_done(id).await
    }

    async fn reserve_incident_id(&self) -> StoreResult<u64> {
        self.inner.reserve_incident_id().await
    }
    async fn lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        self.inner.lease(holder, ttl).await
    }
    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        self.inner.incidents(query).await
    }
    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        self.inner.incident(id).await
    }
    async fn add_look(&self, look: crate::store::LookRecord, keep: usize) -> StoreResult<()> {
        self.inner.add_look(look, keep).await
    }
    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<crate::store::LookRecord>> {
        self.inner.looks(environment, flag, generation).await
    }
    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        self.inner.clear_looks(environment, flag).await
    }
    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool> {
        self.inner.merge_batch(batch_id, deltas, now).await
    }

    async fn import(&self, dump: crate::store::copy::Dump) -> StoreResult<()> {
        self.inner.import(dump).await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.subscribe()
    }
    async fn ready(&self) -> bool {
        self.inner.ready().await
    }
    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        self.merges.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the disk is full".to_string()));
        }
        self.inner.merge_aggregates(deltas).await
    }
    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        self.inner.clear_aggregates(environment, flag).await
    }
    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        self.inner.aggregates(environment, flag, generation).await
    }
    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        self.inner.unit_markers(environment, flag, generation).await
    }

    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>> {
        self.inner.batch_ids().await
    }
}

/// Batches that added their counts to the pending delta and wait for it to be flushed.
fn waiting_for_the_next_flush(ingest: &Ingest) -> usize {
    ingest.shared.pending().round.receiver_count()
}

async fn until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition never held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_acknowledged_only_once_stored_and_concurrent_batches_share_a_flush() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore::new(&directory));
    let ingest = Ingest::start(Arc::clone(&store) as Arc<dyn Store>, 10_000);
    ingest.set_active(ENV, FLAG, Some(active(3, 1)));
    let send = |value: f64| {
        let ingest = Arc::clone(&ingest);
        tokio::spawn(async move {
            ingest
                .accept(ENV, vec![observation(LATENCY, value, "treatment", 1)], NOW)
                .await
        })
    };

    let first = send(1.0);
    until(|| store.merges.load(Ordering::SeqCst) == 1).await;
    // The first flush is under way and held: later batches gather for the next one.
    let later: Vec<_> = (0..20).map(|i| send(f64::from(i) + 2.0)).collect();
    until(|| waiting_for_the_next_flush(&ingest) == 20).await;
    assert!(!first.is_finished(), "acknowledged before it was stored");
    assert!(later.iter().all(|task| !task.is_finished()));
    assert_eq!(
        ingest
            .aggregates(ENV, FLAG, 3)
            .await
            .unwrap()
            .totals(LATENCY, Stage::new(1)),
        (0, 0)
    );

    store.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().accepted, 1);
    until(|| store.merges.load(Ordering::SeqCst) == 2).await;
    store.gate.add_permits(1);
    for task in later {
        assert_eq!(task.await.unwrap().unwrap().accepted, 1);
    }
    assert_eq!(
        store.merges.load(Ordering::SeqCst),
        2,
        "21 batches, two flushes"
    );
    assert_eq!(
        ingest
            .aggregates(ENV, FLAG, 3)
            .await
            .unwrap()
            .totals(LATENCY, Stage::new(1)),
        (21, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_fails_its_batches_and_ingestion_carries_on() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore::new(&directory));
    let ingest = Ingest::start(Arc::clone(&store) as Arc<dyn Store>, 10_000);
    ingest.set_active(ENV, FLAG, Some(active(3, 1)));
    store.failing.store(true, Ordering::SeqCst);
    store.gate.add_permits(1);
    let error = ingest
        .accept(ENV, vec![observation(LATENCY, 1.0, "treatment", 1)], NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Store(StoreError::Backend(message)) if message.contains("the disk is full")),
        "{error:?}"
    );

    store.failing.store(false, Ordering::SeqCst);
    store.gate.add_permits(1);
    let answer = ingest
        .accept(ENV, vec![observation(LATENCY, 1.0, "control", 1)], NOW)
        .await
        .unwrap();
    assert_eq!(answer.accepted, 1);
    assert_eq!(
        ingest
            .aggregates(ENV, FLAG, 3)
            .await
            .unwrap()
            .totals(LATENCY, Stage::new(1)),
        (0, 1),
        "the failed batch was not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_flushes_what_is_pending_and_refuses_later_batches() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore::new(&directory));
    let ingest = Ingest::start(Arc::clone(&store) as Arc<dyn Store>, 10_000);
    ingest.set_active(ENV, FLAG, Some(active(3, 1)));
    let send = || {
        let ingest = Arc::clone(&ingest);
        tokio::spawn(async move {
            ingest
                .accept(ENV, vec![observation(LATENCY, 1.0, "treatment", 1)], NOW)
                .await
        })
    };
    let first = send();
    until(|| store.merges.load(Ordering::SeqCst) == 1).await;
    let second = send();
    until(|| waiting_for_the_next_flush(&ingest) == 1).await;
    let closing = {
        let ingest = Arc::clone(&ingest);
        tokio::spawn(async move { ingest.close().await })
    };
    store.gate.add_permits(2);
    closing.await.unwrap();
    assert!(first.await.unwrap().is_ok());
    assert!(
        second.await.unwrap().is_ok(),
        "a batch pending at the close is written"
    );
    let refused = ingest
        .accept(ENV, vec![observation(LATENCY, 1.0, "treatment", 1)], NOW)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("shutting down"), "{refused}");
    assert_eq!(
        ingest
            .aggregates(ENV, FLAG, 3)
            .await
            .unwrap()
            .totals(LATENCY, Stage::new(1)),
        (2, 0)
    );
}

const RAMP: &str = r#"
stages: [1, 5, 25]
min_stage_duration: 10m
warmup: 2m
# The observations below come in cohorts of equal size.
control: equal
guards:
  - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 200}
  - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.01, min_samples: 200}
"#;

/// A ramp started at `started`, its active stage as the controller would set it, and the
/// controller's decisions after `treatment_median` vs a control median of 100 ms.
async fn judge(treatment_median: f64) -> Vec<Decision> {
    let ramp: Ramp = serde_yaml_ng::from_str(RAMP).unwrap();
    let started = COUNTS_FROM - 120;
    let state = ramp::new(&ramp, &ramp::Settings::default(), 4);
    let state = ramp::start(&ramp, &state, started).unwrap().state;
    let fixture = fixture();
    fixture.ingest.set_active(
        ENV,
        FLAG,
        Some(ActiveStage {
            generation: state.generation,
            stage: state.stage,
            counts_from: started + 120,
            metrics: ramp
                .guards
                .iter()
                .map(|guard| (guard.metric.clone(), guard.kind))
                .collect(),
        }),
    );
    let mut numbers = Numbers(42);
    for _ in 0..4 {
        let mut batch = Vec::new();
        for _ in 0..500 {
            batch.push(observation(
                LATENCY,
                numbers.latency(treatment_median),
                "treatment",
                0,
            ));
            batch.push(observation(LATENCY, numbers.latency(100.0), "control", 0));
            for cohort in ["treatment", "control"] {
                let crashed = numbers.next() < 0.02;
                batch.push(observation(
                    CRASHES,
                    f64::from(u8::from(crashed)),
                    cohort,
                    0,
                ));
            }
        }
        let answer = fixture.ingest.accept(ENV, batch, NOW).await.unwrap();
        assert!(answer.rejected.is_empty(), "{:?}", answer.rejected);
    }
    let aggregates = fixture
        .ingest
        .aggregates(ENV, FLAG, state.generation)
        .await
        .unwrap();
    let observations = aggregates.observations(&ramp, state.stage);
    assert_eq!(observations.guards.len(), 2);
    assert!(observations
        .guards
        .iter()
        .all(|guard| guard.stages.len() == 1));
    ramp::step(&ramp, &state, &observations, NOW).decisions
}

#[tokio::test]
async fn the_controller_kills_a_slower_treatment_from_the_ingested_data() {
    let decisions = judge(150.0).await;
    assert!(
        matches!(decisions.as_slice(), [Decision::Kill { reason, .. }] if reason.contains("checkout_latency_ms")),
        "{decisions:?}"
    );
}

#[tokio::test]
async fn the_controller_holds_when_treatment_and_control_are_alike() {
    let decisions = judge(100.0).await;
    assert!(
        decisions
            .iter()
            .all(|decision| !matches!(decision, Decision::Kill { .. } | Decision::Pause { .. })),
        "{decisions:?}"
    );
    assert!(!decisions.is_empty(), "a look always says something");
}

#[test]
fn observations_lend_an_empty_pair_where_a_stage_has_no_data() {
    let ramp: Ramp = serde_yaml_ng::from_str(RAMP).unwrap();
    let mut treatment = bins::empty();
    treatment.record(10.0);
    let aggregates = Aggregates::from_stored(
        7,
        vec![Aggregate {
            key: AggregateKey {
                environment: ENV.to_string(),
                flag: FLAG.to_string(),
                generation: 7,
                stage: Stage::new(1),
                cohort: Cohort::Treatment,
                metric: LATENCY.to_string(),
            },
            counts: AggregateCounts::Values(BTreeMap::from([(bins::bin_of(10.0), 1)])),
        }],
    )
    .unwrap();
    let observations = aggregates.observations(&ramp, Stage::new(2));
    assert_eq!(observations.generation, 7);
    let totals = |guard: usize| -> Vec<(u64, u64)> {
        observations.guards[guard]
            .stages
            .iter()
            .map(|stage| match stage {
                ripcord_engine::stats::StageData::Values { treatment, control } => {
                    (treatment.total(), control.total())
                }
                ripcord_engine::stats::StageData::Rate { treatment, control } => {
                    (treatment.trials, control.trials)
                }
            })
            .collect()
    };
    assert_eq!(observations.guards[0].metric, LATENCY);
    assert_eq!(totals(0), [(0, 0), (1, 0), (0, 0)]);
    assert_eq!(observations.guards[1].metric, CRASHES);
    assert_eq!(totals(1), [(0, 0), (0, 0), (0, 0)]);
    assert!(matches!(
        observations.guards[0].stages[1],
        ripcord_engine::stats::StageData::Values { treatment: t, .. } if *t == treatment
    ));
}

#[tokio::test]
async fn an_unknown_metric_s_rejection_stays_short_whatever_the_guards() {
    let fixture = fixture();
    let long = "m".repeat(256);
    let mut many = active(3, 1);
    many.metrics = (0..100)
        .map(|index| (format!("{long}{index}"), MetricKind::Rate))
        .collect();
    fixture.ingest.set_active(ENV, FLAG, Some(many));
    let answer = fixture
        .ingest
        .accept(ENV, vec![observation("x", 1.0, "treatment", 1)], NOW)
        .await
        .unwrap();
    let reason = &answer.rejected[0].reason;
    assert!(reason.ends_with("and 95 more"), "{reason}");
    assert!(reason.chars().count() < 600, "{} characters", reason.len());
}

#[tokio::test]
async fn a_clock_running_ahead_does_not_carry_observations_out_of_the_warm_up() {
    let fixture = fixture();
    let in_warm_up = COUNTS_FROM - 60;
    let batch = vec![
        // Stamped after the warm-up by a clock two minutes fast, but sent during it.
        at(
            observation(LATENCY, 10.0, "treatment", 1),
            millis(in_warm_up + 120),
        ),
        observation(LATENCY, 10.0, "treatment", 1),
    ];
    let answer = fixture.ingest.accept(ENV, batch, in_warm_up).await.unwrap();
    assert_eq!(answer.accepted, 0);
    assert_eq!(answer.rejected.len(), 2, "{answer:?}");
    assert!(
        answer.rejected[0]
            .reason
            .starts_with("observed before the stage counts"),
        "{answer:?}"
    );
}
