//! One look of a ramp guard on cumulative data, and the evidence it leaves
//! (docs/statistics.md, "The sequential look").
//!
//! The server keeps, per guard, one [`StageData`] per stage (cumulative counts) and
//! the [`SequentialState`] of the previous look, and calls [`look`] on every tick. The time
//! never enters: the caller decides when a look happens and when a stage may advance.

use serde::{Deserialize, Serialize};

use super::binary::two_proportion;
use super::hodges_lehmann::hodges_lehmann;
use super::normal::{ln_normal_cdf, normal_quantile};
use super::rank::Arm;
use super::{Better, Histogram, MetricKind, RankSums, StatsError, Tolerance};

/// Nothing is evaluated before both arms have this many observations ("Burn-in").
pub const MIN_BURN_IN: u64 = 100;
/// A binary metric also needs min(n1, n2)·p̄ ≥ this many expected events.
const MIN_EXPECTED_EVENTS: f64 = 5.0;
/// The fixed confidence of the effect interval reported in the evidence.
const EFFECT_CONFIDENCE: f64 = 0.95;

/// How a guard judges; the server builds it from the ramp's guard and the flag's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardConfig {
    pub kind: MetricKind,
    pub better: Better,
    pub tolerance: Tolerance,
    /// The ramp's family-wise error rate over all its guards, e.g. 0.05.
    pub alpha: f64,
    /// M, the number of guard metrics of the ramp: each gets alpha/M (Bonferroni).
    pub metrics: u32,
    /// V*: the effective sample n1·n2/(n1+n2) expected at the end of the first stage, where
    /// power matters most. Sets the mixture's tau² = g/V*.
    pub design_information: f64,
    /// The guard's `min_samples`; the burn-in is the larger of this and [`MIN_BURN_IN`].
    pub min_samples: u64,
}

/// `events` out of `trials` for one arm of a rate metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proportion {
    pub events: u64,
    pub trials: u64,
}

/// One stage's cumulative data for one guard: kept per stage, combined stratified.
#[derive(Debug, Clone, Copy)]
pub enum StageData<'a> {
    /// A `value` metric: histograms over the metric's shared bins.
    Values {
        treatment: &'a Histogram,
        control: &'a Histogram,
    },
    /// A `rate` metric: events and trials per arm.
    Rate {
        treatment: Proportion,
        control: Proportion,
    },
}

/// What a guard remembers between looks: the running maximum of ln Λ that makes the
/// sequential p-value monotone. Persist it with the ramp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// max_j ln Λ_j over the looks after the burn-in; `None` before the first.
    pub max_log_lambda: Option<f64>,
    /// Looks counted after the burn-in.
    pub looks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Regression,
    Pass,
    Inconclusive,
}

/// The effect of the treatment, treatment − control, on the scale of the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// HL (value) or p̂1 − p̂0 (rate); divided by the control's median or rate when
    /// `relative` (rel = HL / |median(y)|).
    pub estimate: f64,
    /// The fixed-sample interval at `confidence` (HL's interval, or Wald for rates).
    pub ci: [f64; 2],
    pub confidence: f64,
    pub relative: bool,
    /// The standard error behind the always-valid bound: the unpooled one for rates, the
    /// HL interval's width / (2·z_{0.975}) for values.
    pub standard_error: f64,
    /// The always-valid one-sided upper bound on how much *worse* the treatment is, in the
    /// tolerance's terms (what PASS needs); `None` before there is any information.
    pub worse_upper_bound: Option<f64>,
}

/// Everything an incident or the status API shows about one guard at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardEvidence {
    pub verdict: Verdict,
    pub burn_in_met: bool,
    pub n_treatment: u64,
    pub n_control: u64,
    /// Value metrics: the medians of all stages' observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_treatment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_control: Option<f64>,
    /// Rate metrics: events / trials over all stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_treatment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_control: Option<f64>,
    /// Σ over stages of U1 (the treatment's U).
    pub u: f64,
    /// The stratified z (van Elteren), no continuity correction, positive = treatment worse.
    pub z: f64,
    /// V = Σ_s n1·n2/(n1+n2).
    pub information: f64,
    /// ln Λ at this look.
    pub log_lambda: f64,
    /// The always-valid p-value min(1, 1/max Λ), monotone over looks.
    pub p_value: f64,
    /// alpha/M: REGRESSION needs `p_value` ≤ this.
    pub threshold: f64,
    pub effect: Option<Effect>,
    pub tolerance: Tolerance,
    /// Additional observations (both arms together, at the current split) the stage needs
    /// before it can decide; 0 when decided, `None` when the data point nowhere yet. See
    /// [`look`] for the formula.
    pub more_observations: Option<u64>,
    pub stages: usize,
    /// Pass it to the next look.
    pub state: SequentialState,
}

/// g = −2·ln(a) + ln(1 − 2·ln(a)), tau² = g / V*, with a the per-metric level.
pub fn mixture_tau2(alpha_per_metric: f64, design_information: f64) -> f64 {
    let log_alpha = alpha_per_metric.ln();
    let g = -2.0 * log_alpha + (1.0 - 2.0 * log_alpha).ln();
    g / design_information
}

/// ln Λ = ln 2 − ½·ln(1+r) + r·z²/(2(1+r)) + ln Φ(z·sqrt(r/(1+r))), r = tau²·V, in
/// log space so neither a huge z nor a very negative one overflows.
pub fn mixture_log_lambda(z: f64, r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 || !z.is_finite() {
        return 0.0;
    }
    std::f64::consts::LN_2 - 0.5 * r.ln_1p()
        + r * z * z / (2.0 * (1.0 + r))
        + ln_normal_cdf(z * (r / (1.0 + r)).sqrt())
}

/// The always-valid radius of the mixture confidence sequence, in standard errors.
fn mixture_radius(r: f64, metrics: f64, alpha: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return f64::INFINITY;
    }
    ((1.0 + r) / r * 2.0 * ((1.0 + r).sqrt() * metrics / alpha).ln()).sqrt()
}

/// One look. `stages` are the ramp's stages so far, each with its cumulative data;
/// `previous` is the state the last look returned.
///
/// The verdict (docs/statistics.md, "Verdicts"), with a = alpha/M:
/// - REGRESSION: burn-in met, p_seq ≤ a, and the worse-oriented effect ≥ tol (any effect
///   when tol = 0);
/// - PASS: burn-in met and the always-valid upper bound on the worse-oriented effect < tol.
///   The controller acts on it only when the stage may advance;
/// - INCONCLUSIVE otherwise.
///
/// `more_observations` plugs the current estimates in and asks how far the information V
/// must grow: if the effect is at or beyond the tolerance, the smallest V' ≥ V with
/// ln Λ(θ̂·√V', tau²·V') ≥ ln(M/alpha), θ̂ = z/√V (the drift seen so far); otherwise the
/// smallest V' with est + radius(tau²·V')·se·√(V/V') < tol (the standard error shrinks as
/// 1/√V). V' − V converts to observations at the current stage's split π as
/// (V' − V)/(π(1 − π)), and the result is at least what the burn-in still needs. It is an
/// estimate, not a promise: the data will move θ̂.
pub fn look(
    config: &GuardConfig,
    stages: &[StageData<'_>],
    previous: SequentialState,
) -> Result<GuardEvidence, StatsError> {
    let valid = config.alpha > 0.0
        && config.alpha < 1.0
        && config.metrics >= 1
        && config.design_information.is_finite()
        && config.design_information > 0.0;
    if !valid {
        return Err(StatsError::Invalid(
            "a guard needs 0 < alpha < 1, at least one metric and a design information > 0"
                .to_string(),
        ));
    }
    let per_metric = config.alpha / f64::from(config.metrics);
    let tau2 = mixture_tau2(per_metric, config.design_information);
    let orientation = match config.better {
        Better::Lower => 1.0,
        Better::Higher => -1.0,
    };

    let mut combined = Combined::default();
    let mut merged: Option<(Histogram, Histogram)> = None;
    let (mut events1, mut events0) = (0u64, 0u64);
    for stage in stages {
        let sums = match stage {
            StageData::Values { treatment, control } => {
                if !treatment.same_bins(control) {
                    return Err(StatsError::BinsMismatch);
                }
                match &mut merged {
                    None => merged = Some(((*treatment).clone(), (*control).clone())),
                    Some((x, y)) => {
                        x.merge(treatment)?;
                        y.merge(control)?;
                    }
                }
                RankSums::from_arms(
                    &Arm::from_histogram(treatment),
                    &Arm::from_histogram(control),
                )?
            }
            StageData::Rate { treatment, control } => {
                if treatment.events > treatment.trials || control.events > control.trials {
                    return Err(StatsError::Invalid(
                        "a rate has more events than trials".to_string(),
                    ));
                }
                events1 = events1.saturating_add(treatment.events);
                events0 = events0.saturating_add(control.events);
                RankSums::from_groups([
                    (
                        treatment.trials - treatment.events,
                        control.trials - control.events,
                    ),
                    (treatment.events, control.events),
                ])?
            }
        };
        combined.add(&sums);
    }
    let (n1, n2) = (combined.n1, combined.n2);
    let z = orientation * combined.z_greater();
    let information = combined.information;
    let r = tau2 * information;
    let log_lambda = mixture_log_lambda(z, r);

    let pooled_rate = (events1 as f64 + events0 as f64) / ((n1 + n2).max(1) as f64);
    let burn_in = MIN_BURN_IN.max(config.min_samples);
    let mut burn_in_met = n1 >= burn_in && n2 >= burn_in;
    if config.kind == MetricKind::Rate {
        burn_in_met &= (n1.min(n2) as f64) * pooled_rate >= MIN_EXPECTED_EVENTS;
    }

    let mut state = previous;
    if burn_in_met {
        state.max_log_lambda = Some(
            state
                .max_log_lambda
                .map_or(log_lambda, |m| m.max(log_lambda)),
        );
        state.looks += 1;
    }
    let p_value = state.max_log_lambda.map_or(1.0, |m| (-m).exp().min(1.0));

    let mut evidence = GuardEvidence {
        verdict: Verdict::Inconclusive,
        burn_in_met,
        n_treatment: n1,
        n_control: n2,
        median_treatment: None,
        median_control: None,
        rate_treatment: None,
        rate_control: None,
        u: combined.u,
        z,
        information,
        log_lambda,
        p_value,
        threshold: per_metric,
        effect: None,
        tolerance: config.tolerance,
        more_observations: None,
        stages: stages.len(),
        state,
    };
    let effect = match config.kind {
        MetricKind::Value => merged.as_ref().and_then(|(x, y)| {
            let (x, y) = (Arm::from_histogram(x), Arm::from_histogram(y));
            evidence.median_treatment = x.median();
            evidence.median_control = y.median();
            value_effect(&x, &y, config.tolerance)
        }),
        MetricKind::Rate => two_proportion(events1, n1, events0, n2).and_then(|rates| {
            evidence.rate_treatment = Some(rates.rate_treatment);
            evidence.rate_control = Some(rates.rate_control);
            let (scale, relative) = scale_for(config.tolerance, rates.rate_control)?;
            let half =
                normal_quantile(1.0 - (1.0 - EFFECT_CONFIDENCE) / 2.0) * rates.standard_error;
            Some(Effect {
                estimate: rates.difference / scale,
                ci: [
                    (rates.difference - half) / scale,
                    (rates.difference + half) / scale,
                ],
                confidence: EFFECT_CONFIDENCE,
                relative,
                standard_error: rates.standard_error / scale,
                worse_upper_bound: None,
            })
        }),
    };
    let tolerance = config.tolerance.value();
    let radius = mixture_radius(r, f64::from(config.metrics), config.alpha);
    let effect = effect.map(|mut effect| {
        let bound = orientation * effect.estimate + radius * effect.standard_error;
        effect.worse_upper_bound = bound.is_finite().then_some(bound);
        effect
    });
    let worse = effect.map(|effect| orientation * effect.estimate);
    let effect_gate = tolerance == 0.0 || worse.is_some_and(|worse| worse >= tolerance);
    evidence.verdict = if burn_in_met && p_value <= per_metric && effect_gate {
        Verdict::Regression
    } else if burn_in_met
        && effect
            .and_then(|effect| effect.worse_upper_bound)
            .is_some_and(|bound| bound < tolerance)
    {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    evidence.effect = effect;

    evidence.more_observations = if evidence.verdict != Verdict::Inconclusive {
        Some(0)
    } else {
        let mut needed_n = burn_in as f64;
        if config.kind == MetricKind::Rate {
            needed_n = needed_n.max(if pooled_rate > 0.0 {
                MIN_EXPECTED_EVENTS / pooled_rate
            } else {
                f64::INFINITY
            });
        }
        let share = combined.last_share;
        let projection = Projection {
            z,
            information,
            tau2,
            log_threshold: (f64::from(config.metrics) / config.alpha).ln(),
            metrics: f64::from(config.metrics),
            alpha: config.alpha,
            worse,
            standard_error: effect.map(|effect| effect.standard_error),
            tolerance,
        };
        projection.more_information().and_then(|extra| {
            if !(share > 0.0 && share < 1.0 && needed_n.is_finite()) {
                return None;
            }
            let for_decision = extra / (share * (1.0 - share));
            let for_burn_in = ((needed_n - n1 as f64) / share)
                .max((needed_n - n2 as f64) / (1.0 - share))
                .max(0.0);
            let total = for_decision.max(for_burn_in).ceil();
            (total < 1e18).then_some(total as u64)
        })
    };
    Ok(evidence)
}

/// The relative scale (divide by the control's level) or 1 for absolute tolerances.
/// A relative effect needs a control level ≠ 0; without one there is no effect to report.
fn scale_for(tolerance: Tolerance, control_level: f64) -> Option<(f64, bool)> {
    match tolerance {
        Tolerance::Absolute(_) => Some((1.0, false)),
        Tolerance::Relative(_) => {
            (control_level != 0.0 && control_level.is_finite()).then(|| (control_level.abs(), true))
        }
    }
}

fn value_effect(x: &Arm, y: &Arm, tolerance: Tolerance) -> Option<Effect> {
    let sums = RankSums::from_arms(x, y).ok()?;
    let (hl, _) = hodges_lehmann(x, y, sums.sigma, EFFECT_CONFIDENCE, None)?;
    let (scale, relative) = scale_for(tolerance, y.median()?)?;
    let z = normal_quantile(1.0 - (1.0 - EFFECT_CONFIDENCE) / 2.0);
    Some(Effect {
        estimate: hl.estimate / scale,
        ci: [hl.ci[0] / scale, hl.ci[1] / scale],
        confidence: EFFECT_CONFIDENCE,
        relative,
        standard_error: (hl.ci[1] - hl.ci[0]) / (2.0 * z) / scale,
        worse_upper_bound: None,
    })
}

/// The van Elteren combination over stages, w_s = 1/(N_s + 1).
#[derive(Default)]
struct Combined {
    n1: u64,
    n2: u64,
    u: f64,
    numerator: f64,
    variance: f64,
    information: f64,
    /// The treatment's share of the last stage with data in both arms.
    last_share: f64,
}

impl Combined {
    fn add(&mut self, sums: &RankSums) {
        self.n1 = self.n1.saturating_add(sums.n1);
        self.n2 = self.n2.saturating_add(sums.n2);
        self.u += sums.u1;
        if sums.n1 == 0 || sums.n2 == 0 {
            return;
        }
        let (n1, n2) = (sums.n1 as f64, sums.n2 as f64);
        let weight = 1.0 / (n1 + n2 + 1.0);
        self.numerator += weight * sums.u1_minus_mu;
        self.variance += weight * weight * sums.sigma * sums.sigma;
        self.information += n1 * n2 / (n1 + n2);
        self.last_share = n1 / (n1 + n2);
    }

    fn z_greater(&self) -> f64 {
        if self.variance > 0.0 {
            self.numerator / self.variance.sqrt()
        } else {
            0.0
        }
    }
}

struct Projection {
    z: f64,
    information: f64,
    tau2: f64,
    log_threshold: f64,
    metrics: f64,
    alpha: f64,
    worse: Option<f64>,
    standard_error: Option<f64>,
    tolerance: f64,
}

impl Projection {
    /// V' − V, or `None` when the current estimates never reach a decision.
    fn more_information(&self) -> Option<f64> {
        let v = self.information;
        if v.is_nan() || v <= 0.0 {
            return None;
        }
        let worse = self.worse?;
        let drift = self.z / v.sqrt();
        let regression_side = worse >= self.tolerance && (self.tolerance > 0.0 || drift > 0.0);
        let decided = |candidate: f64| -> bool {
            if regression_side {
                mixture_log_lambda(drift * candidate.sqrt(), self.tau2 * candidate)
                    >= self.log_threshold
            } else {
                let Some(se) = self.standard_error else {
                    return false;
                };
                let radius = mixture_radius(self.tau2 * candidate, self.metrics, self.alpha);
                worse + radius * se * (v / candidate).sqrt() < self.tolerance
            }
        };
        if regression_side && (drift.is_nan() || drift <= 0.0) {
            return None;
        }
        if decided(v) {
            return Some(0.0);
        }
        // Double until decided (up to 2^40·V), then bisect in between.
        let mut low = v;
        let mut high = v;
        let mut found = false;
        for _ in 0..40 {
            high *= 2.0;
            if decided(high) {
                found = true;
                break;
            }
            low = high;
        }
        if !found {
            return None;
        }
        for _ in 0..60 {
            let middle = 0.5 * (low + high);
            if decided(middle) {
                high = middle;
            } else {
                low = middle;
            }
            if high - low <= 1e-6 * high {
                break;
            }
        }
        Some(high - v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator for the simulations below.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Lognormal latency around `median` ms (Box–Muller).
        fn latency(&mut self, median: f64) -> f64 {
            let (a, b) = (self.uniform().max(1e-300), self.uniform());
            let normal = (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos();
            median * (0.5 * normal).exp()
        }
    }

    fn config(kind: MetricKind, tolerance: Tolerance) -> GuardConfig {
        GuardConfig {
            kind,
            better: Better::Lower,
            tolerance,
            alpha: 0.05,
            metrics: 1,
            design_information: 500.0,
            min_samples: 100,
        }
    }

    /// Runs `looks` looks adding `per_look` units per arm; returns the evidence of each.
    fn ramp(seed: u64, looks: usize, per_look: usize, slowdown: f64) -> Vec<GuardEvidence> {
        ramp_with_bins(seed, looks, per_look, slowdown, 0.03)
    }

    fn ramp_with_bins(
        seed: u64,
        looks: usize,
        per_look: usize,
        slowdown: f64,
        bin_width: f64,
    ) -> Vec<GuardEvidence> {
        let mut rng = Rng(seed);
        let bins = Histogram::log_spaced(1.0, 5000.0, bin_width).unwrap();
        let (mut x, mut y) = (bins.clone(), bins);
        let guard = config(MetricKind::Value, Tolerance::Relative(0.0));
        let mut state = SequentialState::default();
        let mut out = Vec::new();
        for _ in 0..looks {
            for _ in 0..per_look {
                x.record(rng.latency(100.0) * slowdown);
                y.record(rng.latency(100.0));
            }
            let stage = StageData::Values {
                treatment: &x,
                control: &y,
            };
            let evidence = look(&guard, &[stage], state).unwrap();
            state = evidence.state;
            out.push(evidence);
        }
        out
    }

    #[test]
    fn the_sequential_p_value_never_increases() {
        for seed in 0..5 {
            let looks = ramp(seed, 40, 20, 1.0);
            for pair in looks.windows(2) {
                assert!(pair[1].p_value <= pair[0].p_value, "seed {seed}");
            }
            assert!(looks
                .iter()
                .take(4)
                .all(|look| !look.burn_in_met && look.p_value == 1.0));
        }
    }

    #[test]
    fn a_slower_treatment_is_killed_with_its_evidence() {
        let looks = ramp(3, 30, 60, 1.10);
        let killed = looks
            .iter()
            .position(|look| look.verdict == Verdict::Regression)
            .unwrap_or_else(|| panic!("a +10% latency must be caught: {:?}", looks.last()));
        let evidence = &looks[killed];
        assert!(evidence.p_value <= 0.05 && evidence.z > 2.0);
        let effect = evidence.effect.unwrap();
        assert!(
            effect.relative && effect.estimate > 0.03 && effect.estimate < 0.2,
            "{effect:?}"
        );
        assert!(effect.ci[0] < effect.estimate && effect.estimate < effect.ci[1]);
        assert_eq!(evidence.more_observations, Some(0));
        // Before the kill, the estimate of what is still needed was finite once burned in.
        assert!(looks[..killed]
            .iter()
            .filter(|look| look.burn_in_met)
            .all(|look| look.more_observations.is_some()));
        let json = serde_json::to_value(evidence).unwrap();
        assert_eq!(json["verdict"], "REGRESSION");
    }

    #[test]
    fn a_a_runs_rarely_kill() {
        // 200 ramps of 20 looks each, no real difference: Ville's inequality bounds the
        // false kills by alpha = 5% (plain p < 0.05 every look would kill far more).
        let runs = 200u64;
        let killed = (0..runs)
            .filter(|seed| {
                // 10% bins keep this test fast in debug builds.
                ramp_with_bins(1000 + seed, 20, 25, 1.0, 0.1)
                    .iter()
                    .any(|look| look.verdict == Verdict::Regression)
            })
            .count();
        assert!(
            killed as u64 <= runs * 6 / 100,
            "{killed} false kills in {runs} A/A ramps"
        );
    }

    #[test]
    fn rates_pass_when_equal_and_kill_when_tripled() {
        let guard = config(MetricKind::Rate, Tolerance::Absolute(0.005));
        let same = StageData::Rate {
            treatment: Proportion {
                events: 100,
                trials: 10_000,
            },
            control: Proportion {
                events: 1000,
                trials: 100_000,
            },
        };
        let evidence = look(&guard, &[same], SequentialState::default()).unwrap();
        assert_eq!(evidence.verdict, Verdict::Pass, "{evidence:?}");
        assert_eq!(evidence.rate_treatment, Some(0.01));
        let worse = StageData::Rate {
            treatment: Proportion {
                events: 90,
                trials: 3000,
            },
            control: Proportion {
                events: 30,
                trials: 3000,
            },
        };
        let evidence = look(&guard, &[worse], SequentialState::default()).unwrap();
        assert_eq!(evidence.verdict, Verdict::Regression, "{evidence:?}");
        assert!((evidence.effect.unwrap().estimate - 0.02).abs() < 1e-12);
        // Burn-in for rare events: 2 expected events is not enough.
        let rare = StageData::Rate {
            treatment: Proportion {
                events: 3,
                trials: 200,
            },
            control: Proportion {
                events: 0,
                trials: 200,
            },
        };
        let evidence = look(&guard, &[rare], SequentialState::default()).unwrap();
        assert!(!evidence.burn_in_met);
        assert_eq!(evidence.verdict, Verdict::Inconclusive);
        assert!(evidence.more_observations.unwrap() > 0);
    }

    #[test]
    fn stages_are_stratified_not_pooled() {
        // The same 30% shift in two stages with different splits keeps its sign and size.
        let bins = Histogram::new((1..=100).map(f64::from).collect()).unwrap();
        let fill = |histogram: &mut Histogram, n: u64, shift: f64| {
            for i in 0..n {
                histogram.record(20.0 + (i % 50) as f64 * shift);
            }
        };
        let (mut x1, mut y1, mut x2, mut y2) = (bins.clone(), bins.clone(), bins.clone(), bins);
        fill(&mut x1, 100, 1.3);
        fill(&mut y1, 900, 1.0);
        fill(&mut x2, 500, 1.3);
        fill(&mut y2, 500, 1.0);
        let guard = config(MetricKind::Value, Tolerance::Relative(0.05));
        let stages = [
            StageData::Values {
                treatment: &x1,
                control: &y1,
            },
            StageData::Values {
                treatment: &x2,
                control: &y2,
            },
        ];
        let evidence = look(&guard, &stages, SequentialState::default()).unwrap();
        assert_eq!(evidence.stages, 2);
        assert_eq!(evidence.n_treatment, 600);
        let expected_information = 100.0 * 900.0 / 1000.0 + 500.0 * 500.0 / 1000.0;
        assert!((evidence.information - expected_information).abs() < 1e-9);
        assert!(evidence.z > 5.0);
        assert_eq!(evidence.verdict, Verdict::Regression);
    }

    #[test]
    fn tuning_follows_the_formula() {
        // a = 0.05: g = −2 ln 0.05 + ln(1 − 2 ln 0.05) = 5.9915 + 1.9447.
        let tau2 = mixture_tau2(0.05, 1.0);
        assert!((tau2 - 7.936_154_6).abs() < 1e-6, "{tau2}");
        // With r → 0 the mixture is 1: no evidence.
        assert_eq!(mixture_log_lambda(3.0, 0.0), 0.0);
        // A very negative z (treatment much better) gives tiny Λ, not NaN.
        let very_better = mixture_log_lambda(-60.0, 50.0);
        assert!(
            very_better.is_finite() && very_better < -3.0,
            "{very_better}"
        );
    }
}
