//! The ramp simulation behind docs/ramps.md, "Simulation", and the targets of
//! docs/statistics.md, "Targets": the real `ramp::step` (and through it `stats::look`) on
//! generated streams, with a virtual clock and fixed seeds.
//!
//! A 1% → 5% → 25% → 50% ramp, `min_stage_duration: 45m`, checked every minute for 180
//! minutes, one guard per simulated ramp (M = 1, alpha = 0.05). Traffic is the flag's whole
//! stream of observations per minute; each one's unit lands in the treatment, the control or
//! neither with the shares the ramp's bands give at the stage (`ramp::arm_shares`), so the
//! cohorts' counts vary as real ones do and the sample-ratio check sees honest noise. The
//! control is the ramp block's own `control` (`rest`, `equal` or a multiple), so the bands,
//! V* and the sample-ratio check are the ones a user of that design gets. Each observation
//! is one unit's (observations are per randomization unit), so "treated units exposed" is
//! the treatment's count at the kill.
//!
//! Beside the real code, [`ideal`] runs the same sequential rule on exactly normal data
//! (a Gaussian random walk in the information V with the same looks, burn-in and tuning):
//! what the method itself gives, free of ranks, ties, bins and the normal approximation.
//!
//! `cargo run --release -p ripcord-engine --example simulate -- --help` for the options.
//! `engine/tests/ramp_simulation.rs` includes this file and runs a small variant in CI.

#![allow(dead_code)]

use std::time::Instant;

pub use ripcord_engine::document::Control;
use ripcord_engine::document::Ramp;
use ripcord_engine::ramp::{self, GuardObservations, Observations, PauseReason, Settings, Status};
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

    /// Events in `n` Bernoulli(p) trials, by geometric gaps: O(n·min(p, 1 − p)), exact,
    /// while the rarer outcome is expected fewer than 500 times. Past that (only the 5% and
    /// later stages at 20,000 a minute) a rounded normal: its skew is at most 0.07 there, and
    /// a stage sums 45 or more such minutes, so the counts' distribution is the binomial's
    /// to well within what a few thousand ramps can resolve, at a fraction of the cost.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let mean = n as f64 * p;
        if mean >= 500.0 {
            let sd = (mean * (1.0 - p)).sqrt();
            return (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64;
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

/// The multiple of the `k` design the tables show.
pub const K: f64 = 3.0;

/// The shares of all units in treatment and control at a percentage, as the design's bands
/// give them.
pub fn shares(control: Control, percentage: f64) -> (f64, f64) {
    ramp::arm_shares(percentage, control.band())
}

/// The design as the ramp block writes it: `rest`, `equal` or the multiple.
pub fn control_name(control: Control) -> String {
    match control {
        Control::Rest => "rest".to_string(),
        Control::Equal => "equal".to_string(),
        Control::Times(times) => format!("{times}"),
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
    /// The chance that a treatment unit's report never arrives (a crash before it reports,
    /// a lost batch): the treatment's counts fall short of what its bands imply, which the
    /// sample-ratio check is there to see. The metric's values are unaffected.
    pub treatment_loss: f64,
}

impl Case {
    /// A case whose reports all arrive.
    pub fn new(metric: Metric, per_minute: f64, schedule: Schedule, control: Control) -> Case {
        Case {
            metric,
            per_minute,
            schedule,
            control,
            treatment_loss: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub killed: bool,
    /// The minute of the kill.
    pub minute: u64,
    /// Treatment units exposed up to the kill (whether or not their reports arrived).
    pub treated: u64,
    pub last_stage: usize,
    pub completed: bool,
    /// The first pause on a sample-ratio mismatch: its minute and the stage it judged.
    pub srm_pause: Option<(u64, usize)>,
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

pub fn ramp_block(metric: Metric, schedule: Schedule, control: Control) -> Ramp {
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
    let control = control_name(control);
    let text = format!(
        "{{stages: [1, 5, 25, 50], min_stage_duration: {STAGE_MINUTES}m, max_stage_duration: {MINUTES}m, control: {control}, guards: [{guard}]}}"
    );
    serde_yaml_ng::from_str(&text).expect("a valid ramp block")
}

/// V*: the information n1·n2/(n1+n2) at the end of the first stage, as the product
/// computes it from the ramp block (and so from its control).
pub fn design_information(ramp: &Ramp, per_minute: f64) -> f64 {
    ramp::design_information(ramp, per_minute).unwrap_or(100.0)
}

/// This minute's units per arm at `percentage`: each of the minute's units lands in the
/// treatment, the control or neither with the bands' shares (a multinomial draw). `carry`
/// keeps the fraction of a traffic that is not a whole number a minute.
fn minute_counts(rng: &mut Rng, case: &Case, percentage: f64, carry: &mut f64) -> (u64, u64) {
    let (treatment_share, control_share) = shares(case.control, percentage);
    let exact = case.per_minute + *carry;
    let units = exact.floor() as u64;
    *carry = exact - units as f64;
    let n1 = rng.binomial(units, treatment_share);
    let rest = 1.0 - treatment_share;
    let n0 = if rest > 0.0 {
        rng.binomial(units - n1, (control_share / rest).min(1.0))
    } else {
        0
    };
    (n1, n0)
}

/// The expected units per arm in a minute, for the ideal data: `carry` keeps the treatment's
/// fraction so 2.5 a minute is 2, 3, 2, 3, ...
fn expected_counts(case: &Case, percentage: f64, carry: &mut f64) -> (u64, u64) {
    let (treatment_share, control_share) = shares(case.control, percentage);
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
        let ramp = ramp_block(case.metric, case.schedule, case.control);
        let metric = ramp.guards[0].metric.clone();
        let information = design_information(&ramp, case.per_minute);
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
        let mut srm_pause = None;
        for minute in 1..=MINUTES {
            let stage = state.stage.index();
            let (exposed, n0) = minute_counts(&mut rng, &self.case, state.percentage, &mut carry);
            treated += exposed;
            let n1 = exposed - rng.binomial(exposed, self.case.treatment_loss);
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
                    srm_pause,
                };
            }
            // The ramp stays paused, as it would until a person looks; its guards keep
            // watching, so a regression still kills it.
            if srm_pause.is_none() && state.pause_reason == Some(PauseReason::SampleRatioMismatch) {
                srm_pause = Some((minute, stage));
            }
            if state.status == Status::Completed {
                break;
            }
            // The controller may have advanced on PASS at the same minute: force only what
            // is missing, so a forced ramp is always where the schedule says. The hand that
            // forces also moves a paused ramp on, so every forced ramp sees every stage.
            if self.case.schedule != Schedule::Controller {
                while matches!(state.status, Status::Running | Status::Paused)
                    && state.stage.index() < forced_stage(minute)
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
            srm_pause,
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
    /// Ramps paused on a sample-ratio mismatch at some point.
    pub srm_pauses: usize,
    /// Of those, paused at the first stage (before the first advance).
    pub srm_in_first_stage: usize,
    /// The median minute of the first such pause, over the ramps that had one.
    pub srm_median_minute: Option<f64>,
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
    let srm: Vec<(u64, usize)> = outcomes.iter().filter_map(|o| o.srm_pause).collect();
    let mut srm_minutes: Vec<u64> = srm.iter().map(|(minute, _)| *minute).collect();
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
        srm_pauses: srm.len(),
        srm_in_first_stage: srm.iter().filter(|(_, stage)| *stage == 0).count(),
        srm_median_minute: median(&mut srm_minutes),
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
    let ramp = ramp_block(case.metric, Schedule::ForcedZero, case.control);
    let tau2 = mixture_tau2(ALPHA, design_information(&ramp, case.per_minute));
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
        let (a, b) = expected_counts(&case, STAGES[stage], &mut carry);
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
    srm_ramps: usize,
    per_minute: Vec<f64>,
    controls: Vec<Control>,
    losses: Vec<f64>,
    null_only: bool,
    ideal_only: bool,
    srm_only: bool,
    no_srm: bool,
    ideal_paths: usize,
    threads: usize,
    seed: u64,
}

const USAGE: &str = "simulate [--ramps N] [--per-minute 200,2000,20000] \
[--control all|rest,equal,3] [--aa-only] [--ideal-only] [--ideal-paths N] \
[--srm-only | --no-srm] [--srm-ramps N] [--loss 0,0.1,0.2] [--threads N] [--seed N]";

/// All three designs: the default first, then the two a ramp may choose.
pub const DESIGNS: [Control; 3] = [Control::Rest, Control::Equal, Control::Times(K)];

fn parse_control(text: &str) -> Result<Control, String> {
    match text.trim() {
        "rest" => Ok(Control::Rest),
        "equal" => Ok(Control::Equal),
        other => other
            .parse::<f64>()
            .ok()
            .filter(|k| k.is_finite() && *k > 0.0 && *k <= 1000.0)
            .map(Control::Times)
            .ok_or_else(|| {
                format!("--control: {other:?} is not rest, equal, all or a multiple in (0, 1000]")
            }),
    }
}

fn parse_list(flag: &str, value: &str, low: f64, high: f64) -> Result<Vec<f64>, String> {
    value
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= low && *n <= high)
                .ok_or_else(|| format!("{flag}: {part:?} is not a number in [{low}, {high}]"))
        })
        .collect()
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        ramps: 1000,
        srm_ramps: 1000,
        per_minute: vec![200.0, 2_000.0, 20_000.0],
        controls: DESIGNS.to_vec(),
        losses: vec![0.0, 0.1, 0.2],
        null_only: false,
        ideal_only: false,
        srm_only: false,
        no_srm: false,
        ideal_paths: 100_000,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 0x5eed,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let switch = match flag.as_str() {
            "--aa-only" => &mut options.null_only,
            "--ideal-only" => &mut options.ideal_only,
            "--srm-only" => &mut options.srm_only,
            "--no-srm" => &mut options.no_srm,
            "--help" | "-h" => return Err(USAGE.to_string()),
            _ => {
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
                    "--srm-ramps" => options.srm_ramps = number("--srm-ramps")?,
                    "--ideal-paths" => options.ideal_paths = number("--ideal-paths")?,
                    "--threads" => options.threads = number("--threads")?,
                    "--seed" => options.seed = number("--seed")? as u64,
                    "--per-minute" => {
                        options.per_minute = parse_list("--per-minute", &value, 1.0, 1e9)?
                    }
                    "--loss" => options.losses = parse_list("--loss", &value, 0.0, 1.0)?,
                    "--control" => {
                        options.controls = if value == "all" {
                            DESIGNS.to_vec()
                        } else {
                            value
                                .split(',')
                                .map(parse_control)
                                .collect::<Result<_, _>>()?
                        }
                    }
                    _ => return Err(format!("unknown option {flag:?}\n{USAGE}")),
                }
                continue;
            }
        };
        *switch = true;
    }
    Ok(options)
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |value| format!("{value:.0}"))
}

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn describe_control(control: Control) -> String {
    match control {
        Control::Rest => {
            "`control: rest`, every unit not in the treatment (the default)".to_string()
        }
        Control::Equal => "`control: equal`, as many units as the treatment".to_string(),
        Control::Times(k) => format!(
            "`control: {k}`, {k} times as many units as the treatment, at most every unit not in it"
        ),
    }
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
    for &control in &options.controls {
        for &per_minute in &options.per_minute {
            for (index, &metric) in METRICS.iter().enumerate() {
                if options.null_only && !metric.is_null() {
                    continue;
                }
                let case = Case::new(metric, per_minute, Schedule::ForcedZero, control);
                let seed = row_seed(options.seed, per_minute, index);
                let ideal = ideal(case, options.ideal_paths, seed ^ 0x1dea);
                println!(
                    "| {per_minute:.0} | {} | {} | {:.2}% | {} | {} | {:.1}% |",
                    describe(metric),
                    control_name(control),
                    percent(ideal.kills, ideal.paths),
                    show(ideal.median_minute),
                    show(ideal.median_treated),
                    percent(ideal.plain_kills, ideal.paths),
                );
            }
        }
    }
}

/// One table per design: every case, schedule and traffic.
fn design_table(options: &Options, control: Control) {
    let began = Instant::now();
    println!("\ncontrol = {}\n", describe_control(control));
    println!("| obs/min | case | schedule | kills | 95% interval | median min to kill | median treated at kill | killed at 1% | reached 50% | completed | SRM pauses | ideal: kills, median min, treated |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
                let case = Case::new(metric, per_minute, schedule, control);
                let summary = simulate(case, options.ramps, seed, options.threads);
                let ideal = (schedule == Schedule::ForcedZero).then(|| {
                    let ideal = ideal(case, options.ideal_paths, seed ^ 0x1dea);
                    format!(
                        "{:.2}%, {}, {}",
                        percent(ideal.kills, ideal.paths),
                        show(ideal.median_minute),
                        show(ideal.median_treated)
                    )
                });
                let (low, high) = wilson(summary.kills, summary.ramps);
                println!(
                    "| {per_minute:.0} | {} | {} | {:.1}% ({}/{}) | {low:.1}–{high:.1}% | {} | {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% ({}) | {} |",
                    describe(metric),
                    schedule.name(),
                    percent(summary.kills, summary.ramps),
                    summary.kills,
                    summary.ramps,
                    show(summary.median_minute),
                    show(summary.median_treated),
                    percent(summary.killed_in_first_stage, summary.ramps),
                    percent(summary.reached_last, summary.ramps),
                    percent(summary.completed, summary.ramps),
                    percent(summary.srm_pauses, summary.ramps),
                    summary.srm_pauses,
                    ideal.unwrap_or_default(),
                );
            }
        }
    }
    eprintln!(
        "control = {}: {:.1} s",
        control_name(control),
        began.elapsed().as_secs_f64()
    );
}

/// The traffic of the lost-reports rows: the sample-ratio target's.
pub const SRM_PER_MINUTE: f64 = 2_000.0;

/// A/A latency under the controller, the treatment losing a share of its reports: how often
/// and how soon the sample-ratio check pauses the ramp.
fn loss_table(options: &Options) {
    let began = Instant::now();
    println!(
        "\nA/A latency, controller, {SRM_PER_MINUTE:.0} obs/min, each treatment report lost with the given chance; {} ramps per row\n",
        options.srm_ramps
    );
    println!("| control | treatment loses | paused on SRM | 95% interval | paused at 1% | median minute of the pause | kills | reached 50% | completed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let metric = Metric::Latency { slowdown: 1.0 };
    for &control in &options.controls {
        for &loss in &options.losses {
            let case = Case {
                treatment_loss: loss,
                ..Case::new(metric, SRM_PER_MINUTE, Schedule::Controller, control)
            };
            // The healthy row shares its seed with the A/A controller row of the design
            // tables, so the two agree; each loss gets streams of its own.
            let seed = row_seed(options.seed, SRM_PER_MINUTE, 0) ^ (((loss * 1000.0) as u64) << 32);
            let summary = simulate(case, options.srm_ramps, seed, options.threads);
            let (low, high) = wilson(summary.srm_pauses, summary.ramps);
            println!(
                "| {} | {:.0}% | {:.1}% ({}/{}) | {low:.1}–{high:.1}% | {:.1}% | {} | {:.1}% | {:.1}% | {:.1}% |",
                control_name(control),
                100.0 * loss,
                percent(summary.srm_pauses, summary.ramps),
                summary.srm_pauses,
                summary.ramps,
                percent(summary.srm_in_first_stage, summary.ramps),
                show(summary.srm_median_minute),
                percent(summary.kills, summary.ramps),
                percent(summary.reached_last, summary.ramps),
                percent(summary.completed, summary.ramps),
            );
        }
    }
    eprintln!("lost reports: {:.1} s", began.elapsed().as_secs_f64());
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
        "{} ramps per row, base seed {:#x}; 1% → 5% → 25% → 50%, 45 min stages, 180 min, a look a minute, alpha 0.05, M = 1, SRM alpha 0.01, on_srm: pause; ideal: {} paths",
        options.ramps, options.seed, options.ideal_paths
    );
    if !options.srm_only {
        for &control in &options.controls {
            design_table(&options, control);
        }
    }
    if !options.no_srm {
        loss_table(&options);
    }
    eprintln!("done in {:.1} s", began.elapsed().as_secs_f64());
}
