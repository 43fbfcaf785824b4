//! Criterion benchmarks of the flag engine. Results and targets: docs/benchmarks.md.
//!
//! Run with
//! `cargo bench -p ripcord-engine --bench evaluate -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ripcord_engine::{
    evaluate, evaluate_flag, evaluate_flag_with, Context, Document, Limits, Memo, Reason, Snapshot,
};
use serde_json::{json, Value};

/// Launch markets: the size of set a real `in` condition holds (the single flag spells the
/// same list out in its YAML).
const COUNTRIES: [&str; 20] = [
    "US", "CA", "MX", "BR", "AR", "GB", "IE", "FR", "DE", "NL", "BE", "ES", "PT", "IT", "CH", "AT",
    "SE", "NO", "JP", "AU",
];

/// The flag of the single-flag benchmarks. The failing condition comes last on purpose: a
/// rule that fails early would measure one condition, not five.
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

/// A typical mobile context: about a dozen attributes, as an app sends them.
fn context(user: &str, mailbox: &str, domain: &str) -> Context {
    let email = format!("{mailbox}@{domain}");
    let value = json!({
        "targetingKey": user,
        "userId": user,
        "email": email,
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

/// The first `user-N` that the flag's rollout takes in, so that the benchmark also pays for
/// the split, the more expensive side of the rollout.
fn user_in_rollout(snapshot: &Snapshot, flag: &str) -> String {
    (0..)
        .map(|n| format!("user-{n}"))
        .find(|user| {
            evaluate(snapshot, flag, &context(user, "ana", "mail.example.net")).reason
                == Reason::Split
        })
        .expect("a 25% rollout takes some user in")
}

fn single_flag(c: &mut Criterion) {
    let document = Document::from_yaml(SINGLE_FLAG).expect("the benchmark's document parses");
    let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default())
        .expect("the benchmark's document is valid");
    let user = user_in_rollout(&snapshot, "new-checkout");
    let fall_through = context(&user, "ana", "mail.example.net");
    let matching = context(&user, "ana", "example.com");
    assert_eq!(
        evaluate(&snapshot, "new-checkout", &fall_through).reason,
        Reason::Split
    );
    assert_eq!(
        evaluate(&snapshot, "new-checkout", &matching).reason,
        Reason::TargetingMatch
    );

    let mut group = c.benchmark_group("single_flag");
    // By key, as the server and the SDK call it: the lookup is part of every evaluation.
    group.bench_function("rule_miss_then_rollout", |b| {
        b.iter(|| {
            evaluate(
                black_box(&snapshot),
                black_box("new-checkout"),
                black_box(&fall_through),
            )
        })
    });
    group.bench_function("rule_match", |b| {
        b.iter(|| {
            evaluate(
                black_box(&snapshot),
                black_box("new-checkout"),
                black_box(&matching),
            )
        })
    });
    group.finish();
}

fn string_values(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|value| json!(value)).collect())
}

/// An environment of `count` flags in a fixed mix, so that 200 of them look like a real
/// environment and 10,000 like a large one. Per twenty flags: 8 static, 1 killed, 3 with
/// rules only, 3 boolean rollouts, 2 multi-variant splits, 1 segment rule before a
/// rollout, 1 rule before a rollout, 1 typed configuration value. One flag in a hundred
/// uses a regex, as they are rare in practice and costly to compile.
fn environment(count: usize) -> Document {
    let boolean = json!({"on": true, "off": false});
    let mut flags = serde_json::Map::new();
    for index in 0..count {
        let percentage = [1.0, 5.0, 10.0, 25.0, 50.0, 100.0][index % 6];
        let stickiness = if index % 2 == 0 {
            "userId"
        } else {
            "targetingKey"
        };
        let flag = match index % 20 {
            0..=7 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": if index % 3 == 0 { "on" } else { "off" },
                "client_visible": index % 2 == 0,
            }),
            8 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": "off",
                "enabled": false,
                "rollout": {"percentage": 50, "split": [{"variant": "on", "weight": 1}]},
            }),
            9..=11 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": "off",
                "rules": [
                    {"name": "staff", "segment": "internal-staff", "serve": {"variant": "on"}},
                    {
                        "name": "paying users in launch markets",
                        "when": [
                            {"attribute": "country", "op": "in",
                             "values": string_values(&COUNTRIES[index % 3..index % 3 + 8])},
                            {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
                        ],
                        "serve": {"variant": "on"},
                    },
                ],
            }),
            12..=14 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": "off",
                "rollout": {
                    "stickiness": stickiness,
                    "percentage": percentage,
                    "split": [{"variant": "on", "weight": 1}],
                },
            }),
            15 | 16 => json!({
                "type": "string",
                "variants": {"control": "classic", "compact": "compact", "cards": "cards"},
                "default_variant": "control",
                "rollout": {
                    "stickiness": stickiness,
                    "percentage": if index % 20 == 15 { 100.0 } else { percentage },
                    "split": [
                        {"variant": "control", "weight": 34},
                        {"variant": "compact", "weight": 33},
                        {"variant": "cards", "weight": 33},
                    ],
                },
            }),
            17 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": "off",
                "rules": [{"segment": "beta-track", "when": [
                    {"attribute": "platform", "op": "eq", "values": ["android"]},
                ], "serve": {"variant": "on"}}],
                "rollout": {"percentage": 10, "split": [{"variant": "on", "weight": 1}]},
            }),
            18 => json!({
                "type": "boolean",
                "variants": boolean,
                "default_variant": "off",
                "rules": [{"name": "old apps stay off", "when": [
                    {"attribute": "appVersion", "op": "semver_lt", "values": ["4.0.0"]},
                ], "serve": {"variant": "off"}}],
                "rollout": {
                    "stickiness": "userId",
                    "percentage": percentage,
                    "split": [{"variant": "on", "weight": 1}],
                },
            }),
            _ if index % 100 == 19 => json!({
                "type": "object",
                "variants": {
                    "eu": {"currency": "EUR", "vat": true},
                    "default": {"currency": "USD", "vat": false},
                },
                "default_variant": "default",
                "rules": [{"when": [
                    {"attribute": "locale", "op": "matches", "values": ["^(de|fr|it|es|nl)-"]},
                ], "serve": {"variant": "eu"}}],
            }),
            _ => json!({
                "type": "integer",
                "variants": {"small": 20, "large": 50},
                "default_variant": "small",
                "rules": [{"when": [
                    {"attribute": "sessions", "op": "gte", "values": [100]},
                ], "serve": {"variant": "large"}}],
            }),
        };
        flags.insert(format!("flag-{index:05}"), flag);
    }
    let document = json!({
        "segments": {
            "beta-track": {"when": [
                {"attribute": "releaseTrack", "op": "in", "values": ["beta", "canary"]},
            ]},
            "internal-staff": {"when": [
                {"attribute": "email", "op": "ends_with", "values": ["@example.com", "@example.org"]},
            ]},
        },
        "flags": flags,
    });
    Document::from_json(&document.to_string()).expect("the generated document parses")
}

fn all_flags(c: &mut Criterion) {
    let document = environment(200);
    let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default())
        .expect("the generated document is valid");
    let user = context("user-4821", "ana", "mail.example.net");
    // Guards against a generator change that silently stops exercising a path.
    let reasons: Vec<Reason> = snapshot
        .flags()
        .map(|flag| evaluate_flag(flag, &user).reason)
        .collect();
    for reason in [
        Reason::Static,
        Reason::Disabled,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Default,
    ] {
        assert!(reasons.contains(&reason), "no flag evaluates to {reason:?}");
    }

    let mut group = c.benchmark_group("environment");
    group.throughput(Throughput::Elements(snapshot.len() as u64));
    group.bench_function("all_200_flags", |b| {
        b.iter(|| {
            let snapshot = black_box(&snapshot);
            let user = black_box(&user);
            for flag in snapshot.flags() {
                black_box(evaluate_flag(flag, user));
            }
        })
    });
    // As the server's bulk evaluation does it: each segment checked once for the context.
    group.bench_function("all_200_flags_with_memo", |b| {
        b.iter(|| {
            let snapshot = black_box(&snapshot);
            let user = black_box(&user);
            let mut memo = Memo::default();
            for flag in snapshot.flags() {
                black_box(evaluate_flag_with(flag, user, &mut memo));
            }
        })
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    let document = environment(10_000);
    let json = document.to_json();
    let yaml = document.to_yaml();
    let limits = Limits::default();

    let mut group = c.benchmark_group("start_up_10k_flags");
    // Each iteration takes tens of milliseconds; the default 100 samples would not fit in a
    // short run.
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    // Dropping a snapshot is the swap's cost, not the compile's: keep it out of the timing.
    group.bench_function("compile", |b| {
        b.iter_with_large_drop(|| Snapshot::compile(black_box(&document), 1, |_| 1, &limits))
    });
    // Start-up parses the bootstrap file before compiling it; for comparison.
    group.bench_function("parse_json", |b| {
        b.iter_with_large_drop(|| Document::from_json(black_box(&json)))
    });
    group.bench_function("parse_yaml", |b| {
        b.iter_with_large_drop(|| Document::from_yaml(black_box(&yaml)))
    });
    group.finish();
}

criterion_group!(benches, single_flag, all_flags, compile);
criterion_main!(benches);
