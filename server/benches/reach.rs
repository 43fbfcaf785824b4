//! Criterion benchmark of the kill-reach tracker: what recording an instance adds to every
//! evaluation, ruleset and stream message, alone and from two threads at once, and what a
//! ramp status pays to count a full environment.
//!
//! Run with
//! `cargo bench -p ripcord-server --bench reach -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ripcord_server::reach::{ReachTracker, MAX_INSTANCES_PER_ENVIRONMENT};

const NOW: u64 = 1_800_000_000;

fn ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("pod-{index:08x}-3f2a9c"))
        .collect()
}

fn record(c: &mut Criterion) {
    let tracker = ReachTracker::default();
    let known = ids(10_000);
    for id in &known {
        tracker.record("prod", id, 41, NOW);
    }
    let mut group = c.benchmark_group("reach");
    let mut next = 0;
    group.bench_function("record/known_instance", |b| {
        b.iter(|| {
            next = (next + 1) % known.len();
            tracker.record(black_box("prod"), black_box(&known[next]), 42, NOW)
        })
    });
    group.bench_function("record_header/known_instance", |b| {
        b.iter(|| {
            next = (next + 1) % known.len();
            tracker.record_header(black_box("prod"), Some(known[next].as_bytes()), 42)
        })
    });
    // Every id new, the environment full: each insert pays its share of eviction.
    let full = ReachTracker::default();
    let fresh = ids(4 * MAX_INSTANCES_PER_ENVIRONMENT);
    let mut position = 0;
    let mut clock = NOW;
    group.bench_function("record/new_instance_in_a_full_environment", |b| {
        b.iter(|| {
            position = (position + 1) % fresh.len();
            clock += 1;
            full.record(black_box("prod"), black_box(&fresh[position]), 42, clock)
        })
    });
    // Two threads recording at once (the server's runtime threads): what one record costs a
    // thread while the other records too.
    group.bench_function("record/known_instance_two_threads", |b| {
        b.iter_custom(|iterations| {
            let per_thread = iterations.div_ceil(2);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for thread in 0..2 {
                    let (tracker, known) = (&tracker, &known);
                    scope.spawn(move || {
                        for step in 0..per_thread {
                            let id = &known[(step as usize * 2 + thread) % known.len()];
                            tracker.record("prod", black_box(id), 42, NOW);
                        }
                    });
                }
            });
            // Each thread made half the records in this time: criterion divides by all of them.
            (started.elapsed() * 2).max(Duration::from_nanos(1))
        })
    });
    let counted = ReachTracker::default();
    for id in ids(MAX_INSTANCES_PER_ENVIRONMENT) {
        counted.record("prod", &id, 41, NOW);
    }
    group.bench_function("reach/100k_instances", |b| {
        b.iter(|| counted.reach(black_box("prod"), 42, NOW + 60))
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
