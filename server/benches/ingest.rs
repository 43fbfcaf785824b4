//! Metric ingestion on one core: batches of 1,000 observations in the JSON shape of
//! `POST /api/v1/metrics`, parsed, checked against a running ramp and group-committed into
//! sled (one transaction and one fsync per flush). The target is 200,000 observations a
//! second. Run pinned to one core: `taskset -c 0 cargo bench -p ripcord-server --bench ingest`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ripcord_engine::document::{MetricKind, Ramp};
use ripcord_engine::{ramp, Stage};
use ripcord_server::clock::unix_now;
use ripcord_server::http::observations::parse_batch;
use ripcord_server::ingest::{ActiveStage, Ingest};
use ripcord_server::store::sled::SledStore;

const BATCH: usize = 1_000;
const ENVIRONMENT: &str = "default";
const FLAG: &str = "new-checkout";

/// A batch as an SDK sends it: 70% latencies, 30% crash flags, both cohorts, each with its
/// unit and an RFC 3339 timestamp.
fn body(seed: u64, timestamp: &str) -> Vec<u8> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let observations: Vec<serde_json::Value> = (0..BATCH)
        .map(|index| {
            let cohort = if uniform() < 0.5 {
                "treatment"
            } else {
                "control"
            };
            let (metric, value) = if uniform() < 0.7 {
                let normal: f64 = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
                let latency = 100.0 * (0.5 * normal).exp();
                ("checkout_latency_ms", (latency * 10.0).round() / 10.0)
            } else {
                ("crash_rate", f64::from(u8::from(uniform() < 0.02)))
            };
            serde_json::json!({
                "flag": FLAG,
                "metric": metric,
                "value": value,
                "cohort": cohort,
                "stage": 0,
                "unit": format!("user-{}", seed * 1_000_000 + index as u64),
                "timestamp": timestamp,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "observations": observations })).unwrap()
}

fn bench(c: &mut Criterion) {
    let now = unix_now();
    let timestamp = time::OffsetDateTime::from_unix_timestamp(now as i64 - 60)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..16).map(|seed| body(seed, &timestamp)).collect();
    println!(
        "a batch of {BATCH} observations is {} bytes of JSON",
        bodies[0].len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let ingest = runtime.block_on(async {
        let store = SledStore::open(directory.path()).unwrap();
        Ingest::start(Arc::new(store), 10_000)
    });
    ingest.set_active(
        ENVIRONMENT,
        FLAG,
        Some(ActiveStage {
            generation: 1,
            stage: Stage::FIRST,
            counts_from: now - 3_600,
            metrics: vec![
                ("checkout_latency_ms".to_string(), MetricKind::Value),
                ("crash_rate".to_string(), MetricKind::Rate),
            ],
        }),
    );

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("parse a 1,000-observation body", |b| {
        b.iter(|| parse_batch(black_box(&bodies[0])).unwrap())
    });

    // One batch at a time: each waits for its own flush, so this is bound by fsync.
    group.bench_function("parse + accept, 1 batch in flight", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for iteration in 0..iterations {
                    let body = &bodies[iteration as usize % bodies.len()];
                    let observations = parse_batch(body).unwrap();
                    let answer = ingest
                        .accept(ENVIRONMENT, observations, unix_now())
                        .await
                        .unwrap();
                    assert_eq!(answer.accepted, BATCH as u64, "{:?}", answer.rejected);
                }
                started.elapsed()
            })
        })
    });

    // Many clients at once, as a server sees them: their batches share flushes.
    for in_flight in [4usize, 16] {
        group.throughput(Throughput::Elements((BATCH * in_flight) as u64));
        let name = format!("parse + accept, {in_flight} batches in flight");
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let tasks: Vec<_> = bodies[..in_flight]
                            .iter()
                            .map(|body| {
                                let ingest = Arc::clone(&ingest);
                                let body = body.clone();
                                tokio::spawn(async move {
                                    let observations = parse_batch(&body).unwrap();
                                    ingest
                                        .accept(ENVIRONMENT, observations, unix_now())
                                        .await
                                        .unwrap()
                                })
                            })
                            .collect();
                        for task in tasks {
                            assert_eq!(task.await.unwrap().accepted, BATCH as u64);
                        }
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    // What the controller does on every tick of a running ramp, on what the runs above
    // stored (millions of observations): read the aggregates and take one step, which
    // looks at both guards.
    let ramp: Ramp = serde_yaml_ng::from_str(RAMP).unwrap();
    let state = ramp::new(&ramp, &ramp::Settings::default(), 1);
    let state = ramp::start(&ramp, &state, now - 3_600).unwrap().state;
    let stored = runtime
        .block_on(ingest.aggregates(ENVIRONMENT, FLAG, 1))
        .unwrap();
    println!(
        "the controller's step reads {:?} latency observations (treatment, control)",
        stored.totals("checkout_latency_ms", Stage::FIRST)
    );
    c.bench_function("controller tick: read aggregates + ramp::step", |b| {
        b.iter(|| {
            let aggregates = runtime
                .block_on(ingest.aggregates(ENVIRONMENT, FLAG, 1))
                .unwrap();
            let observations = aggregates.observations(&ramp, state.stage);
            ramp::step(&ramp, &state, &observations, unix_now())
        })
    });
    runtime.block_on(ingest.close());
}

const RAMP: &str = r#"
stages: [1, 5, 25, 50, 100]
min_stage_duration: 10m
guards:
  - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
  - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.002, min_samples: 2000}
"#;

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
