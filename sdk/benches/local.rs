//! Criterion benchmark of the local client's typed getter: the engine's evaluation plus
//! what the SDK adds (the snapshot load, the type check, the value conversion); and, for a
//! flag with a ramp, what tracking adds: remembering the unit's cohort on each
//! evaluation, and `track`.
//!
//! Run with
//! `cargo bench -p ripcord-sdk --bench local -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ripcord_sdk::{Context, LocalClient, Reason};
use serde_json::{json, Value};

/// The engine benchmark's single flag: a five-condition rule whose failing condition comes
/// last, then a 25% rollout.
const SINGLE_FLAG: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - name: staff in launch markets
        when:
          - {attribute: country, op: in, values: [US, CA, MX, BR, AR, GB, IE, FR, DE, NL, BE, ES, PT, IT, CH, AT, SE, NO, JP, AU]}
          - {attribute: platform, op: eq, values: [ios]}
          - {attribute: appVersion, op: semver_gte, values: ["4.2.0"]}
          - {attribute: sessions, op: gt, values: [10]}
          - {attribute: email, op: ends_with, values: ["@example.com"]}
        serve: {variant: "on"}
    rollout:
      stickiness: userId
      percentage: 25
      split: [{variant: "on", weight: 1}]
"#;

fn context(user: &str, domain: &str) -> Context {
    let value = json!({
        "targetingKey": user,
        "userId": user,
        "email": format!("ana@{domain}"),
        "country": "DE",
        "locale": "de-DE",
        "platform": "ios",
        "appVersion": "4.3.1",
        "osVersion": "17.4",
        "plan": "pro",
        "sessions": 42,
        "releaseTrack": "beta",
        "signupDate": "2025-11-03T10:00:00Z",
    });
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => unreachable!("json! of an object literal is an object"),
    }
}

fn typed_getter(c: &mut Criterion) {
    let client = LocalClient::builder()
        .bootstrap_text(SINGLE_FLAG)
        .build()
        .expect("a bootstrap-only client");
    // A user the rollout takes in, so that the benchmark pays for the split too.
    let user = (0..)
        .map(|n| format!("user-{n}"))
        .find(|user| {
            client
                .get_bool_details("new-checkout", &context(user, "mail.example.net"), false)
                .reason
                == Reason::Split
        })
        .expect("a 25% rollout takes some user in");
    let fall_through = context(&user, "mail.example.net");
    let matching = context(&user, "example.com");
    assert!(client.get_bool("new-checkout", &matching, false));

    let mut group = c.benchmark_group("local_client");
    group.bench_function("get_bool/rule_miss_then_rollout", |b| {
        b.iter(|| {
            client.get_bool(
                black_box("new-checkout"),
                black_box(&fall_through),
                black_box(false),
            )
        })
    });
    group.bench_function("get_bool/rule_match", |b| {
        b.iter(|| {
            client.get_bool(
                black_box("new-checkout"),
                black_box(&matching),
                black_box(false),
            )
        })
    });
    group.bench_function("get_bool_details/rule_miss_then_rollout", |b| {
        b.iter(|| {
            client.get_bool_details(
                black_box("new-checkout"),
                black_box(&fall_through),
                black_box(false),
            )
        })
    });
    group.finish();
}

/// The same flag at the second stage of a ramp, for a client that tracks observations for its guards.
const RAMPING_FLAG: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout: {stickiness: userId, percentage: 25, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [5, 25, 50, 100]
      min_stage_duration: 1h
      guards:
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
"#;

fn ramping(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    // Nothing listens there: the client serves its bootstrap and keeps what it tracks pending.
    let reporting = LocalClient::builder()
        .server("http://127.0.0.1:9", "ripcord-server-bench")
        .bootstrap_text(RAMPING_FLAG)
        .flush_interval(std::time::Duration::from_secs(3600))
        .build()
        .expect("a reporting client");
    let silent = LocalClient::builder()
        .bootstrap_text(RAMPING_FLAG)
        .build()
        .expect("a bootstrap-only client");
    let user = (0..)
        .map(|n| context(&format!("user-{n}"), "mail.example.net"))
        .find(|user| {
            reporting
                .get_bool_details("new-checkout", user, false)
                .metadata
                .cohort
                .is_some()
        })
        .expect("a 25% stage has a treatment");
    assert_eq!(
        reporting.track("new-checkout", &user, "checkout_latency_ms", 1.0),
        ripcord_sdk::Tracked::Recorded
    );

    let mut group = c.benchmark_group("ramping_flag");
    group.bench_function("get_bool/not_reporting", |b| {
        b.iter(|| silent.get_bool(black_box("new-checkout"), black_box(&user), false))
    });
    group.bench_function("get_bool/reporting", |b| {
        b.iter(|| reporting.get_bool(black_box("new-checkout"), black_box(&user), false))
    });
    group.bench_function("track/value", |b| {
        b.iter(|| {
            reporting.track(
                black_box("new-checkout"),
                black_box(&user),
                black_box("checkout_latency_ms"),
                black_box(120.0),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, typed_getter, ramping);
criterion_main!(benches);
