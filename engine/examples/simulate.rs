//! The ramp simulation behind docs/ramps.md, "Simulation", and the targets of
//! docs/statistics.md, "Targets": the real `ramp::step` (and through it `stats::look`) on
//! generated streams, with a virtual clock and fixed seeds.
//!
//! A 1% → 5% → 25% → 50% ramp, `min_stage_duration: 45m`, checked every minute for 180
//! minutes, one guard per simulated ramp (M = 1, alpha = 0.05). Traffic is the flag's whole
//! stream of observations per minute; at p% the treatment gets p% of it. The control is
//! either as many units (`Control::Equal`, the cohorts of docs/bucketing.md) or every unit
//! not in the treatment (`Control::Rest`, the reference design the target figures assume).
//! Each observation is one unit's (observations are per randomization unit), so "treated
//! units exposed" is the treatment's count at the kill.
//!
//! Beside the real code, [`ideal`] runs the same sequential rule on exactly normal data
//! (a Gaussian random walk in the information V with the same looks, burn-in and tuning):
//! what the method itself gives, free of ranks, ties, bins and the normal approximation.
//!
//! `cargo run --release -p ripcord-engine --example simulate -- --help` for the options.
//! `engine/tests/ramp_simulation.rs` includes this file and runs a small variant in CI.

#![allow(dead_code)]

use std::time::Instant;

use ripcord_engine::bucketing::ControlBand;
use ripcord_engine::document::Ramp;
use ripcord_engine::ramp::{self, GuardObservations, Observations, Settings, Status};
use ripcord_engine::stats::{
    mixture_log_lambda, mixture_tau2, Histogram, Proportion, StageData, MIN_BURN_IN,
};
use statrs::distribution::{ContinuousCDF, Normal};

pub const STAGES: [f64; 4] = [1.0, 5.0, 25.0, 50.0];
pub const MINUTES: u64 = 180;
pub const STAGE_MINUTES: u64 = 45;
pub const ALPHA: f64 = 0.05;
pub const LATENCY_MEDIAN_MS: f64 = 100.0;
/// The lognormal's σ on the log scale.
pub const LATENCY_SIGMA: f64 = 0.5;

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

    /// A standard normal (Box–Muller; one of the pair is enough here).
    pub fn normal(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
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

impl Metric {
    fn is_null(self) -> bool {
        match self {
            Metric::Latency { slowdown } => slowdown == 1.0,
            Metric::Errors { control, treatment } => control == treatment,
        }
    }
}

/// Who the treatment is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// As many units as the treatment, from the band `[50000, 50000 + t)`
    /// (docs/bucketing.md, "Cohorts"): what Ripcord does.
    Equal,
    /// Every unit not in the treatment: the reference design of the target figures.
    Rest,
}

impl Control {
    /// The shares of all units in treatment and control at a percentage.
    pub fn shares(self, percentage: f64) -> (f64, f64) {
        match self {
            Control::Equal => ramp::arm_shares(percentage, ControlBand::EQUAL),
            Control::Rest => ramp::arm_shares(percentage, ControlBand::Rest),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Control::Equal => "equal",
            Control::Rest => "rest",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The controller decides: advance on PASS after 45 minutes, with the guard's tolerance
    /// (5% for latency, 0.5 pp for errors).
    Controller,
    /// The guard's tolerance, and an advance by hand every 45 minutes when the controller
    /// has not advanced: every ramp is exposed to the whole 1% → 50% schedule.
    Forced,
    /// Tolerance 0 (significance alone, which can never PASS) and the forced schedule: the
    /// sequential test alone over all 180 looks.
    ForcedZero,
}

impl Schedule {
    fn name(self) -> &'static str {
        match self {
            Schedule::Controller => "controller",
            Schedule::Forced => "forced",
            Schedule::ForcedZero => "forced, tol 0",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub metric: Metric,
    pub per_minute: f64,
    pub schedule: Schedule,
    pub control: Control,
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

/// The latency bins of every simulated ramp: 1.25% wide, 4× finer than the 5% tolerance
/// (docs/statistics.md, "Bin resolution").
pub fn latency_bins() -> Histogram {
    Histogram::log_spaced(10.0, 3000.0, 0.0125).expect("valid bins")
}

fn lognormal_bin_weights(bins: &Histogram, median: f64, sigma: f64) -> Vec<f64> {
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
    let zero = schedule == Schedule::ForcedZero;
    let guard = match metric {
        Metric::Latency { .. } => format!(
            "{{metric: latency_ms, category: performance, kind: value, better: lower, tolerance: {}, min_samples: 100}}",
            if zero { "0" } else { "5%" }
        ),
        Metric::Errors { .. } => format!(
            "{{metric: errors, category: stability, kind: rate, better: lower, tolerance: {}, min_samples: 100}}",
            if zero { "0" } else { "0.005" }
        ),
    };
    let text = format!(
        "{{stages: [1, 5, 25, 50], min_stage_duration: {STAGE_MINUTES}m, max_stage_duration: {MINUTES}m, guards: [{guard}]}}"
    );
    serde_yaml_ng::from_str(&text).expect("a valid ramp block")
}

/// V*: the information n1·n2/(n1+n2) at the end of the first stage. For Ripcord's
/// equal control it is the product's own `ramp::design_information`; for the
/// reference design the same formula with the control = the rest.
pub fn design_information(ramp: &Ramp, per_minute: f64, control: Control) -> f64 {
    match control {
        Control::Equal => ramp::design_information(ramp, per_minute).unwrap_or(100.0),
        Control::Rest => {
            let minutes = STAGE_MINUTES as f64;
            let (treatment, control) = control.shares(STAGES[0]);
            let (n1, n2) = (
                per_minute * treatment * minutes,
                per_minute * control * minutes,
            );
            n1 * n2 / (n1 + n2)
        }
    }
}

/// This minute's observations per arm at `percentage`; `carry` keeps the treatment's
/// fraction so 2.5 a minute is 2, 3, 2, 3, ...
fn minute_counts(case: &Case, percentage: f64, carry: &mut f64) -> (u64, u64) {
    let (treatment_share, control_share) = case.control.shares(percentage);
    let exact = case.per_minute * treatment_share + *carry;
    let n1 = exact.floor() as u64;
    *carry = exact - n1 as f64;
    let n0 = if control_share == treatment_share {
        n1
    } else {
        (case.per_minute * control_share).round() as u64
    };
    (n1, n0)
}

/// The stage the forced schedule is at after `minute`.
fn forced_stage(minute: u64) -> usize {
    ((minute / STAGE_MINUTES) as usize).min(STAGES.len() - 1)
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
        let information = design_information(&ramp, case.per_minute, case.control);
        let settings = Settings {
            alpha: ALPHA,
            design_information: vec![(metric, information)],
        };
        let bins = latency_bins();
        let (control, treatment) = match case.metric {
            Metric::Latency { slowdown } => (
                Some(Alias::new(&lognormal_bin_weights(
                    &bins,
                    LATENCY_MEDIAN_MS,
                    LATENCY_SIGMA,
                ))),
                Some(Alias::new(&lognormal_bin_weights(
                    &bins,
                    LATENCY_MEDIAN_MS * slowdown,
                    LATENCY_SIGMA,
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
            let stage = state.stage.index();
            let (n1, n0) = minute_counts(&self.case, state.percentage, &mut carry);
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
                units: Vec::new(),
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
            // The controller may have advanced on PASS at the same minute: force only what
            // is missing, so a forced ramp is always where the schedule says.
            if self.case.schedule != Schedule::Controller {
                while state.status == Status::Running && state.stage.index() < forced_stage(minute)
                {
                    state = ramp::advance(&self.ramp, &state, "simulated schedule", now)
                        .expect("a running ramp advances")
                        .state;
                }
            }
        }
        Outcome {
            killed: false,
            minute: MINUTES,
            treated,
            last_stage: state.stage.index(),
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

/// The seed of ramp `index` of a row: depends only on the row's seed and the index, so the
/// result does not depend on the thread count.
fn ramp_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(index as u64)
}

/// Runs `ramps` seeded ramps of a case on `threads` threads.
pub fn simulate(case: Case, ramps: usize, seed: u64, threads: usize) -> Summary {
    let setup = Setup::new(case);
    let chunk = ramps.div_ceil(threads.max(1)).max(1);
    let mut outcomes = vec![Outcome::default(); ramps];
    std::thread::scope(|scope| {
        for (chunk_index, slice) in outcomes.chunks_mut(chunk).enumerate() {
            let setup = &setup;
            scope.spawn(move || {
                for (i, outcome) in slice.iter_mut().enumerate() {
                    *outcome = setup.run(ramp_seed(seed, chunk_index * chunk + i));
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

/// The sequential rule of `stats::look` on exactly normal data, on the forced schedule.
pub struct Ideal {
    pub paths: usize,
    pub kills: usize,
    pub median_minute: Option<f64>,
    pub median_treated: Option<f64>,
    /// Paths (of as many again, drawn apart) that a plain one-sided p < alpha at any look
    /// would have killed: what testing every minute without the sequential rule costs.
    pub plain_kills: usize,
}

/// One minute of the forced schedule, the same for every path.
struct IdealMinute {
    /// Information added this minute (Σ over stages of n1·n2/(n1+n2) grows by this).
    information: f64,
    /// The drift of S = z·√V per unit of information: √12·(AUC − ½) for latency, the
    /// standardized difference of rates for errors.
    drift: f64,
    burn_in_met: bool,
    treated: u64,
}

/// What the method gives on ideal data with the forced schedule's looks: S is a Brownian
/// motion in V with the case's drift, z = S/√V, the guard's burn-in (expected events for
/// rates), the guard's mixture with the same V*, and a kill at the first look with
/// Λ ≥ 1/alpha. Only the schedule matters, not the tolerance: with a tolerance the real
/// guard kills less (the effect gate), so compare it with `Schedule::ForcedZero`.
pub fn ideal(case: Case, paths: usize, seed: u64) -> Ideal {
    let ramp = ramp_block(case.metric, Schedule::ForcedZero);
    let tau2 = mixture_tau2(
        ALPHA,
        design_information(&ramp, case.per_minute, case.control),
    );
    let log_threshold = (1.0 / ALPHA).ln();
    let mut plan = Vec::with_capacity(MINUTES as usize);
    let mut carry = 0.0;
    let (mut stage_n1, mut stage_n0, mut stage_information) = (0.0, 0.0, 0.0);
    let (mut n1, mut n0, mut events) = (0u64, 0u64, 0.0);
    for minute in 1..=MINUTES {
        let stage = forced_stage(minute - 1);
        if minute > 1 && stage != forced_stage(minute - 2) {
            (stage_n1, stage_n0, stage_information) = (0.0, 0.0, 0.0);
        }
        let (a, b) = minute_counts(&case, STAGES[stage], &mut carry);
        stage_n1 += a as f64;
        stage_n0 += b as f64;
        n1 += a;
        n0 += b;
        let information = if stage_n1 > 0.0 && stage_n0 > 0.0 {
            stage_n1 * stage_n0 / (stage_n1 + stage_n0)
        } else {
            0.0
        };
        let added = information - stage_information;
        stage_information = information;
        let (drift, burn_in_events) = match case.metric {
            Metric::Latency { slowdown } => {
                let auc = Normal::standard()
                    .cdf(slowdown.ln() / (LATENCY_SIGMA * std::f64::consts::SQRT_2));
                (12f64.sqrt() * (auc - 0.5), true)
            }
            Metric::Errors { control, treatment } => {
                events += a as f64 * treatment + b as f64 * control;
                let share = a as f64 / (a + b).max(1) as f64;
                let pooled = share * treatment + (1.0 - share) * control;
                let drift = (treatment - control) / (pooled * (1.0 - pooled)).sqrt();
                let rate = events / (n1 + n0).max(1) as f64;
                (drift, n1.min(n0) as f64 * rate >= 5.0)
            }
        };
        plan.push(IdealMinute {
            information: added,
            drift,
            burn_in_met: n1 >= MIN_BURN_IN && n0 >= MIN_BURN_IN && burn_in_events,
            treated: n1,
        });
    }
    let mut rng = Rng::new(seed);
    let mut minutes = Vec::new();
    let mut treated = Vec::new();
    for _ in 0..paths {
        let (mut s, mut v) = (0.0f64, 0.0f64);
        for (index, step) in plan.iter().enumerate() {
            s += step.drift * step.information + step.information.sqrt() * rng.normal();
            v += step.information;
            if step.burn_in_met && v > 0.0 {
                let z = s / v.sqrt();
                if mixture_log_lambda(z, tau2 * v) >= log_threshold {
                    minutes.push(index as u64 + 1);
                    treated.push(step.treated);
                    break;
                }
            }
        }
    }
    let critical = Normal::standard().inverse_cdf(1.0 - ALPHA);
    let mut rng = Rng::new(seed ^ 0x91a1);
    let mut plain_kills = 0;
    for _ in 0..paths {
        let (mut s, mut v) = (0.0f64, 0.0f64);
        for step in &plan {
            s += step.drift * step.information + step.information.sqrt() * rng.normal();
            v += step.information;
            if step.burn_in_met && v > 0.0 && s / v.sqrt() >= critical {
                plain_kills += 1;
                break;
            }
        }
    }
    Ideal {
        paths,
        kills: minutes.len(),
        median_minute: median(&mut minutes),
        median_treated: median(&mut treated),
        plain_kills,
    }
}

/// Wilson's 95% interval for `k` out of `n`, in percent.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 100.0);
    }
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_963_984_540_054f64;
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    (
        100.0 * (centre - half).max(0.0),
        100.0 * (centre + half).min(1.0),
    )
}

fn describe(metric: Metric) -> String {
    match metric {
        Metric::Latency { .. } if metric.is_null() => "A/A latency".to_string(),
        Metric::Errors { .. } if metric.is_null() => "A/A errors".to_string(),
        Metric::Latency { slowdown } => format!("latency +{:.0}%", (slowdown - 1.0) * 100.0),
        Metric::Errors { control, treatment } => {
            format!("errors {}% → {}%", control * 100.0, treatment * 100.0)
        }
    }
}

pub const METRICS: [Metric; 4] = [
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

/// The seed of a table row: the same for every schedule and control of one metric and
/// traffic, so the schedules of one design see the same streams.
pub fn row_seed(base: u64, per_minute: f64, metric_index: usize) -> u64 {
    base ^ ((per_minute as u64) << 8) ^ metric_index as u64
}

struct Options {
    ramps: usize,
    per_minute: Vec<f64>,
    controls: Vec<Control>,
    null_only: bool,
    ideal_only: bool,
    ideal_paths: usize,
    threads: usize,
    seed: u64,
}

const USAGE: &str =
    "simulate [--ramps N] [--per-minute 200,2000,20000] [--control equal|rest|both] \
[--aa-only] [--ideal-only] [--ideal-paths N] [--threads N] [--seed N]";

fn options() -> Result<Options, String> {
    let mut options = Options {
        ramps: 1000,
        per_minute: vec![200.0, 2_000.0, 20_000.0],
        controls: vec![Control::Equal, Control::Rest],
        null_only: false,
        ideal_only: false,
        ideal_paths: 100_000,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 0x5eed,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--aa-only" {
            options.null_only = true;
            continue;
        }
        if flag == "--ideal-only" {
            options.ideal_only = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> Result<usize, String> {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{what}: {value:?} is not a positive integer"))
        };
        match flag.as_str() {
            "--ramps" => options.ramps = number("--ramps")?,
            "--ideal-paths" => options.ideal_paths = number("--ideal-paths")?,
            "--threads" => options.threads = number("--threads")?,
            "--seed" => options.seed = number("--seed")? as u64,
            "--per-minute" => {
                options.per_minute = value
                    .split(',')
                    .map(|part| {
                        part.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite() && *n >= 1.0)
                            .ok_or_else(|| format!("--per-minute: {part:?} is not a rate ≥ 1"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--control" => {
                options.controls = match value.as_str() {
                    "equal" => vec![Control::Equal],
                    "rest" => vec![Control::Rest],
                    "both" => vec![Control::Equal, Control::Rest],
                    _ => return Err(format!("--control: {value:?} is not equal, rest or both")),
                }
            }
            _ => return Err(format!("unknown option {flag:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |value| format!("{value:.0}"))
}

/// The forced tol-0 schedule on ideal data only: the method's own rates, and what a plain
/// p < alpha every minute would give on the same looks.
fn ideal_table(options: &Options) {
    println!(
        "ideal normal data, forced schedule, tol 0; {} paths per row, base seed {:#x}\n",
        options.ideal_paths, options.seed
    );
    println!("| obs/min | case | control | sequential kills | median min to kill | median treated at kill | plain p < 0.05 every minute |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    for control in &options.controls {
        for &per_minute in &options.per_minute {
            for (index, &metric) in METRICS.iter().enumerate() {
                if options.null_only && !metric.is_null() {
                    continue;
                }
                let case = Case {
                    metric,
                    per_minute,
                    schedule: Schedule::ForcedZero,
                    control: *control,
                };
                let seed = row_seed(options.seed, per_minute, index);
                let ideal = ideal(case, options.ideal_paths, seed ^ 0x1dea);
                println!(
                    "| {per_minute:.0} | {} | {} | {:.2}% | {} | {} | {:.1}% |",
                    describe(metric),
                    control.name(),
                    100.0 * ideal.kills as f64 / ideal.paths as f64,
                    show(ideal.median_minute),
                    show(ideal.median_treated),
                    100.0 * ideal.plain_kills as f64 / ideal.paths as f64,
                );
            }
        }
    }
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let began = Instant::now();
    if options.ideal_only {
        ideal_table(&options);
        eprintln!("done in {:.1} s", began.elapsed().as_secs_f64());
        return;
    }
    println!(
        "{} ramps per row, base seed {:#x}; 1% → 5% → 25% → 50%, 45 min stages, 180 min, a look a minute, alpha 0.05, M = 1; ideal: {} paths",
        options.ramps, options.seed, options.ideal_paths
    );
    for control in &options.controls {
        let table_began = Instant::now();
        println!(
            "\ncontrol = {}\n",
            match control {
                Control::Equal => "as many units as the treatment (the bucketing contract)",
                Control::Rest => "every unit not in the treatment (the reference design)",
            }
        );
        println!("| obs/min | case | schedule | kills | 95% interval | median min to kill | median treated at kill | killed at 1% | reached 50% | completed | ideal: kills, median min, treated |");
        println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &per_minute in &options.per_minute {
            for (index, &metric) in METRICS.iter().enumerate() {
                if options.null_only && !metric.is_null() {
                    continue;
                }
                let schedules: &[Schedule] = if metric.is_null() {
                    &[Schedule::Controller, Schedule::Forced, Schedule::ForcedZero]
                } else {
                    &[Schedule::Controller, Schedule::ForcedZero]
                };
                let seed = row_seed(options.seed, per_minute, index);
                for &schedule in schedules {
                    let case = Case {
                        metric,
                        per_minute,
                        schedule,
                        control: *control,
                    };
                    let summary = simulate(case, options.ramps, seed, options.threads);
                    let ideal = (schedule == Schedule::ForcedZero).then(|| {
                        let ideal = ideal(case, options.ideal_paths, seed ^ 0x1dea);
                        format!(
                            "{:.2}%, {}, {}",
                            100.0 * ideal.kills as f64 / ideal.paths as f64,
                            show(ideal.median_minute),
                            show(ideal.median_treated)
                        )
                    });
                    let (low, high) = wilson(summary.kills, summary.ramps);
                    println!(
                        "| {per_minute:.0} | {} | {} | {:.1}% ({}/{}) | {low:.1}–{high:.1}% | {} | {} | {:.1}% | {:.1}% | {:.1}% | {} |",
                        describe(metric),
                        schedule.name(),
                        100.0 * summary.kills as f64 / summary.ramps as f64,
                        summary.kills,
                        summary.ramps,
                        show(summary.median_minute),
                        show(summary.median_treated),
                        100.0 * summary.killed_in_first_stage as f64 / summary.ramps as f64,
                        100.0 * summary.reached_last as f64 / summary.ramps as f64,
                        100.0 * summary.completed as f64 / summary.ramps as f64,
                        ideal.unwrap_or_default(),
                    );
                }
            }
        }
        eprintln!(
            "control = {}: {:.1} s",
            control.name(),
            table_began.elapsed().as_secs_f64()
        );
    }
    eprintln!("done in {:.1} s", began.elapsed().as_secs_f64());
}
