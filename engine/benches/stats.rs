//! The guard's statistics against the targets of docs/statistics.md, "Benchmarks": 100,000
//! values per arm judged in ≤ 100 ms, a 1,000-bin histogram in ≤ 1 ms, both also through
//! `judge` from a JSON body as the endpoint runs it, and one guard look in ≤ 1 ms at any
//! sample size.

use criterion::{criterion_group, criterion_main, Criterion};
use ripcord_engine::stats::{
    judge, look, mann_whitney_histograms, Alternative, Better, GuardConfig, Histogram,
    JudgeRequest, Method, MetricKind, SampleInput, SequentialState, StageData, Tolerance,
};
use std::hint::black_box;

/// Deterministic lognormal-ish latencies (Box–Muller on SplitMix64).
fn latencies(seed: u64, n: usize, median: f64) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (a, b) = (uniform().max(1e-300), uniform());
            let normal = (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos();
            median * (0.6 * normal).exp()
        })
        .collect()
}

/// 1,000 log bins over 0.1 ms – 60 s, each filled with millions of observations.
fn histograms() -> (Histogram, Histogram) {
    let bins = Histogram::log_spaced(0.1, 60_000.0, 0.0133).unwrap();
    assert!(bins.bins().len() >= 1000, "{}", bins.bins().len());
    let (mut x, mut y) = (bins.clone(), bins);
    for value in latencies(1, 200_000, 120.0) {
        x.record_n(value, 37);
    }
    for value in latencies(2, 200_000, 118.0) {
        y.record_n(value, 41);
    }
    (x, y)
}

fn bench(c: &mut Criterion) {
    let treatment = latencies(3, 100_000, 121.0);
    let control = latencies(4, 100_000, 120.0);
    let request = JudgeRequest {
        tolerance: Some(ripcord_engine::document::Tolerance::Relative("5%".into())),
        ..JudgeRequest::new(SampleInput::Values(treatment), SampleInput::Values(control))
    };
    c.bench_function("judge 100k values per arm", |b| {
        b.iter(|| judge(black_box(&request)).unwrap())
    });
    // What `POST /api/v1/judge` does in process: parse the JSON body, then judge.
    let body = serde_json::to_vec(&request).unwrap();
    c.bench_function("judge 100k values per arm, from the JSON body", |b| {
        b.iter(|| {
            let parsed: JudgeRequest = serde_json::from_slice(black_box(&body)).unwrap();
            judge(&parsed).unwrap()
        })
    });

    let (x, y) = histograms();
    c.bench_function("histogram 1000 bins: U, p, HL", |b| {
        b.iter(|| {
            mann_whitney_histograms(
                black_box(&x),
                black_box(&y),
                Alternative::Greater,
                Method::Auto,
                true,
                0.95,
            )
            .unwrap()
        })
    });

    let histogram_request = JudgeRequest {
        tolerance: Some(ripcord_engine::document::Tolerance::Relative("5%".into())),
        ..JudgeRequest::new(
            SampleInput::Histogram {
                bins: x.bins().to_vec(),
                counts: x.counts().to_vec(),
            },
            SampleInput::Histogram {
                bins: y.bins().to_vec(),
                counts: y.counts().to_vec(),
            },
        )
    };
    c.bench_function("judge 1000-bin histograms", |b| {
        b.iter(|| judge(black_box(&histogram_request)).unwrap())
    });

    let config = GuardConfig {
        kind: MetricKind::Value,
        better: Better::Lower,
        tolerance: Tolerance::Relative(0.05),
        alpha: 0.05,
        metrics: 3,
        design_information: 5_000.0,
        min_samples: 100,
    };
    let stages = [StageData::Values {
        treatment: &x,
        control: &y,
    }];
    c.bench_function("guard look, 1000 bins", |b| {
        b.iter(|| {
            look(
                black_box(&config),
                black_box(&stages),
                SequentialState::default(),
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
