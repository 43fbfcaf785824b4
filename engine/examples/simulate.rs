//! The ramp simulation of issue 4 and STATS.md §10: the real `ramp::step` (and through it
//! `stats::look`) on generated streams, with a virtual clock and fixed seeds.
//!
//! A 1% → 5% → 25% → 50% ramp, `min_stage_duration: 45m`, checked every minute for 180
//! minutes, one guard per simulated ramp (M = 1, alpha = 0.05). Traffic is the flag's whole
//! stream of observations per minute; at p% the treatment gets p% of it and the control as
//! many (the bucketing contract). Each observation is one unit's (STATS.md: per
//! randomization unit), so "treated units exposed" is the treatment's count at the kill.
//!
//! `cargo run --release -p ripcord-engine --example simulate [ramps]` (default 1000).
//! `engine/tests/ramp_simulation.rs` includes this file and runs a small variant in CI.

#![allow(dead_code)]

use std::time::Instant;

use ripcord_engine::document::Ramp;
use ripcord_engine::ramp::{self, GuardObservations, Observations, Settings, Status};
use ripcord_engine::stats::{Histogram, Proportion, StageData};

pub const STAGES: [f64; 4] = [1.0, 5.0, 25.0, 50.0];
pub const MINUTES: u64 = 180;
pub const STAGE_MINUTES: u64 = 45;

/// splitmix64: small, seeded, good enough for simulation, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Events in `n` Bernoulli(p) trials, by geometric gaps: O(n·p), exact.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let log_q = (-p).ln_1p();
        let mut events = 0;
        let mut position = 0u64;
        loop {
            let gap = (self.uniform().ln() / log_q).floor() as u64 + 1;
            position = position.saturating_add(gap);
            if position > n {
                return events;
            }
            events += 1;
        }
    }
}

/// Walker's alias table over histogram bins: one draw lands in a bin in O(1), so a minute of
/// 10,000 observations costs microseconds.
pub struct Alias {
    probability: Vec<f64>,
    alias: Vec<usize>,
}

impl Alias {
    pub fn new(weights: &[f64]) -> Alias {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0; n];
        let mut probability = vec![1.0; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            probability[s] = scaled[s];
            alias[s] = l;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Alias { probability, alias }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let n = self.probability.len();
        let u = rng.uniform() * n as f64;
        let column = (u as usize).min(n - 1);
        if u - (column as f64) < self.probability[column] {
            column
        } else {
            self.alias[column]
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Lognormal latency, median 100 ms, σ = 0.5 (log scale); treatment × `slowdown`.
    Latency { slowdown: f64 },
    /// Error rate per unit: control `control`, treatment `treatment`.
    Errors { control: f64, treatment: f64 },
}

#[derive(Clone, Copy, Debug)]
pub enum Schedule {
    /// The controller decides: advance on PASS after 45 minutes, with the guard's tolerance.
    Controller,
    /// Tolerance 0 (significance alone, which can never PASS) and a manual advance every 45
    /// minutes: the whole ramp's exposure, the worst case for false kills, as §10's
    /// reference walks it.
    Forced,
}

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub metric: Metric,
    pub per_minute: f64,
    pub schedule: Schedule,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub killed: bool,
    /// The minute of the kill.
    pub minute: u64,
    /// Treatment observations (= units) counted up to the kill.
    pub treated: u64,
    pub last_stage: usize,
    pub completed: bool,
}

/// The shared latency bins: 1.25% wide (§7.3: ≥ 4× finer than the 5% tolerance).
pub fn latency_bins() -> Histogram {
    Histogram::log_spaced(10.0, 3000.0, 0.0125).expect("valid bins")
}

fn lognormal_bin_weights(bins: &Histogram, median: f64, sigma: f64) -> Vec<f64> {
    use statrs::distribution::{ContinuousCDF, Normal};
    let normal = Normal::new(median.ln(), sigma).expect("valid normal");
    let edges = bins.bins();
    let mut previous = 0.0;
    edges
        .iter()
        .enumerate()
        .map(|(index, edge)| {
            let cdf = if index + 1 == edges.len() {
                1.0
            } else {
                normal.cdf(edge.ln())
            };
            let weight = cdf - previous;
            previous = cdf;
            weight.max(0.0)
        })
        .collect()
}

pub fn ramp_block(metric: Metric, schedule: Schedule) -> Ramp {
    let guard = match (metric, schedule) {
        (Metric::Latency { .. }, Schedule::Controller) => {
            "{metric: latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 100}"
        }
        (Metric::Latency { .. }, Schedule::Forced) => {
            "{metric: latency_ms, category: performance, kind: value, better: lower, tolerance: 0, min_samples: 100}"
        }
        (Metric::Errors { .. }, Schedule::Controller) => {
            "{metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.005, min_samples: 100}"
        }
        (Metric::Errors { .. }, Schedule::Forced) => {
            "{metric: errors, category: stability, kind: rate, better: lower, tolerance: 0, min_samples: 100}"
        }
    };
    let text = format!(
        "{{stages: [1, 5, 25, 50], min_stage_duration: {STAGE_MINUTES}m, max_stage_duration: {MINUTES}m, guards: [{guard}]}}"
    );
    serde_yaml_ng::from_str(&text).expect("a valid ramp block")
}

/// Per-case setup shared by all its ramps.
pub struct Setup {
    case: Case,
    ramp: Ramp,
    settings: Settings,
    bins: Histogram,
    control: Option<Alias>,
    treatment: Option<Alias>,
}

impl Setup {
    pub fn new(case: Case) -> Setup {
        let ramp = ramp_block(case.metric, case.schedule);
        let metric = ramp.guards[0].metric.clone();
        let information = ramp::design_information(&ramp, case.per_minute).unwrap_or(100.0);
        let settings = Settings {
            alpha: 0.05,
            design_information: vec![(metric, information)],
        };
        let bins = latency_bins();
        let (control, treatment) = match case.metric {
            Metric::Latency { slowdown } => (
                Some(Alias::new(&lognormal_bin_weights(&bins, 100.0, 0.5))),
                Some(Alias::new(&lognormal_bin_weights(
                    &bins,
                    100.0 * slowdown,
                    0.5,
                ))),
            ),
            Metric::Errors { .. } => (None, None),
        };
        Setup {
            case,
            ramp,
            settings,
            bins,
            control,
            treatment,
        }
    }

    /// One ramp from start to its end or minute 180.
    pub fn run(&self, seed: u64) -> Outcome {
        let mut rng = Rng::new(seed);
        let start = 1_700_000_000u64;
        let mut state = ramp::new(&self.ramp, &self.settings, 1);
        state = ramp::start(&self.ramp, &state, start)
            .expect("a pending ramp starts")
            .state;
        let metric = self.ramp.guards[0].metric.as_str();
        let mut values: Vec<(Histogram, Histogram)> = Vec::new();
        let mut rates: Vec<(Proportion, Proportion)> = Vec::new();
        let mut carry = 0.0;
        let mut treated = 0u64;
        for minute in 1..=MINUTES {
            let stage = state.stage;
            let (treatment_share, control_share) = ramp::arm_shares(state.percentage);
            // Expected counts with the fraction carried, so 2.5 a minute is 2, 3, 2, 3, ...
            let exact = self.case.per_minute * treatment_share + carry;
            let n1 = exact.floor() as u64;
            carry = exact - n1 as f64;
            let n0 = if control_share == treatment_share {
                n1
            } else {
                (self.case.per_minute * control_share).round() as u64
            };
            treated += n1;
            match self.case.metric {
                Metric::Latency { .. } => {
                    while values.len() <= stage {
                        values.push((self.bins.clone(), self.bins.clone()));
                    }
                    let (x, y) = &mut values[stage];
                    let (tx, cy) = (self.treatment.as_ref(), self.control.as_ref());
                    if let (Some(tx), Some(cy)) = (tx, cy) {
                        let edges = self.bins.bins();
                        for _ in 0..n1 {
                            x.record(edges[tx.sample(&mut rng)]);
                        }
                        for _ in 0..n0 {
                            y.record(edges[cy.sample(&mut rng)]);
                        }
                    }
                }
                Metric::Errors { control, treatment } => {
                    while rates.len() <= stage {
                        rates.push(Default::default());
                    }
                    let (x, y) = &mut rates[stage];
                    x.trials += n1;
                    x.events += rng.binomial(n1, treatment);
                    y.trials += n0;
                    y.events += rng.binomial(n0, control);
                }
            }
            let stages: Vec<StageData<'_>> = match self.case.metric {
                Metric::Latency { .. } => values
                    .iter()
                    .map(|(treatment, control)| StageData::Values { treatment, control })
                    .collect(),
                Metric::Errors { .. } => rates
                    .iter()
                    .map(|(treatment, control)| StageData::Rate {
                        treatment: *treatment,
                        control: *control,
                    })
                    .collect(),
            };
            let observations = Observations {
                generation: state.generation,
                guards: vec![GuardObservations { metric, stages }],
            };
            let now = start + minute * 60;
            state = ramp::step(&self.ramp, &state, &observations, now).state;
            if state.status == Status::Killed {
                return Outcome {
                    killed: true,
                    minute,
                    treated,
                    last_stage: stage,
                    completed: false,
                };
            }
            if state.status == Status::Completed {
                break;
            }
            if matches!(self.case.schedule, Schedule::Forced)
                && minute % STAGE_MINUTES == 0
                && state.stage + 1 < STAGES.len()
            {
                state = ramp::advance(&self.ramp, &state, "simulated schedule", now)
                    .expect("a running ramp advances")
                    .state;
            }
        }
        Outcome {
            killed: false,
            minute: MINUTES,
            treated,
            last_stage: state.stage,
            completed: state.status == Status::Completed,
        }
    }
}

pub struct Summary {
    pub ramps: usize,
    pub kills: usize,
    pub median_minute: Option<f64>,
    pub median_treated: Option<f64>,
    pub killed_in_first_stage: usize,
    pub reached_last: usize,
    pub completed: usize,
}

fn median(values: &mut [u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
    })
}

/// Runs `ramps` seeded ramps of a case on `threads` threads; seeds depend only on the case's
/// `seed` and the ramp's index, so the result does not depend on the thread count.
pub fn simulate(case: Case, ramps: usize, seed: u64, threads: usize) -> Summary {
    let setup = Setup::new(case);
    let threads = threads.max(1);
    let mut outcomes = vec![Outcome::default(); ramps];
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in outcomes
            .chunks_mut(ramps.div_ceil(threads).max(1))
            .enumerate()
        {
            let setup = &setup;
            let offset = chunk_index * ramps.div_ceil(threads).max(1);
            scope.spawn(move || {
                for (i, outcome) in chunk.iter_mut().enumerate() {
                    let index = (offset + i) as u64;
                    *outcome = setup.run(seed.wrapping_mul(1_000_003).wrapping_add(index));
                }
            });
        }
    });
    let killed: Vec<&Outcome> = outcomes.iter().filter(|o| o.killed).collect();
    let mut minutes: Vec<u64> = killed.iter().map(|o| o.minute).collect();
    let mut treated: Vec<u64> = killed.iter().map(|o| o.treated).collect();
    Summary {
        ramps,
        kills: killed.len(),
        median_minute: median(&mut minutes),
        median_treated: median(&mut treated),
        killed_in_first_stage: killed.iter().filter(|o| o.last_stage == 0).count(),
        reached_last: outcomes
            .iter()
            .filter(|o| !o.killed && o.last_stage + 1 == STAGES.len())
            .count(),
        completed: outcomes.iter().filter(|o| o.completed).count(),
    }
}

fn describe(case: &Case) -> String {
    let what = match case.metric {
        Metric::Latency { slowdown } => {
            if slowdown == 1.0 {
                "A/A latency".to_string()
            } else {
                format!("latency +{:.0}%", (slowdown - 1.0) * 100.0)
            }
        }
        Metric::Errors { control, treatment } if control == treatment => "A/A errors".to_string(),
        Metric::Errors { control, treatment } => {
            format!("errors {}% → {}%", control * 100.0, treatment * 100.0)
        }
    };
    let how = match case.schedule {
        Schedule::Controller => "controller, tol 5% / 0.5 pp",
        Schedule::Forced => "forced schedule, tol 0",
    };
    format!("{what} ({how})")
}

fn main() {
    let ramps: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1000);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let metrics = [
        Metric::Latency { slowdown: 1.0 },
        Metric::Errors {
            control: 0.01,
            treatment: 0.01,
        },
        Metric::Latency { slowdown: 1.10 },
        Metric::Errors {
            control: 0.01,
            treatment: 0.03,
        },
    ];
    println!(
        "{ramps} ramps per row, seed fixed; 1% → 5% → 25% → 50%, 45 min stages, 180 min, a look a minute, alpha 0.05, M = 1\n"
    );
    println!("| obs/min | case | kills | median min to kill | median treated units at kill | kills in the 1% stage | reached 50% (not killed) | completed |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let began = Instant::now();
    for per_minute in [200.0, 2_000.0, 20_000.0] {
        for (index, metric) in metrics.iter().enumerate() {
            // The same seed for both schedules: they see the same streams.
            for schedule in &[Schedule::Controller, Schedule::Forced] {
                let case = Case {
                    metric: *metric,
                    per_minute,
                    schedule: *schedule,
                };
                let seed = 0x5eed ^ ((per_minute as u64) << 8) ^ index as u64;
                let summary = simulate(case, ramps, seed, threads);
                let show = |value: Option<f64>| {
                    value.map_or_else(|| "—".to_string(), |value| format!("{value:.0}"))
                };
                println!(
                    "| {per_minute:.0} | {} | {:.1}% ({}/{}) | {} | {} | {} | {:.1}% | {:.1}% |",
                    describe(&case),
                    100.0 * summary.kills as f64 / summary.ramps as f64,
                    summary.kills,
                    summary.ramps,
                    show(summary.median_minute),
                    show(summary.median_treated),
                    summary.killed_in_first_stage,
                    100.0 * summary.reached_last as f64 / summary.ramps as f64,
                    100.0 * summary.completed as f64 / summary.ramps as f64,
                );
            }
        }
    }
    eprintln!("done in {:.1} s", began.elapsed().as_secs_f64());
}
