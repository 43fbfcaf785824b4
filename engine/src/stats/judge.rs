//! The guard's statistics on two given samples, one code path for the HTTP endpoint and
//! `ripcord judge` (docs/statistics.md, "The judge"). The request and response serialize
//! as the JSON that docs/judge.md documents.

use serde::{Deserialize, Serialize};

use super::binary::{two_proportion, TwoProportion};
use super::exact::exact_p;
use super::histogram::check_bins;
use super::hodges_lehmann::HodgesLehmann;
use super::mann_whitney::{choose_method, run};
use super::normal::{asymptotic, normal_quantile};
use super::rank::{Arm, RankSums};
use super::sequential::Verdict;
use super::{Alternative, Better, Method, StatsError, Tolerance, MAX_TOTAL_COUNT};

/// At most this many values per sample (a larger sample is a 413).
pub const MAX_JUDGE_VALUES: usize = 1_000_000;
/// At most this many bins per histogram.
pub const MAX_JUDGE_BINS: usize = 100_000;
/// The largest magnitude of a value the judge takes. The shift is the median of differences
/// between the samples, and a difference of two values near `f64::MAX` overflows to
/// infinity, which would leave the estimate without a number beside a verdict. Every
/// difference of values within this bound, and their mean, is finite.
pub const MAX_JUDGE_MAGNITUDE: f64 = 1e300;

/// A sample: an array of numbers, or a histogram `{"bins": [...], "counts": [...]}` whose
/// bins are each one tie group. Validated by [`judge`], which names the bad field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SampleInput {
    Values(Vec<f64>),
    Histogram { bins: Vec<f64>, counts: Vec<u64> },
}

impl<'de> Deserialize<'de> for SampleInput {
    // By hand rather than `untagged`: that buffers every number before trying each form,
    // and its error, "data did not match any variant", neither says what to write nor
    // which element is wrong.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SampleInput, D::Error> {
        use serde::de::{Error, MapAccess, SeqAccess};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Bins,
            Counts,
        }

        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SampleInput;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str(
                    "an array of numbers or a histogram {\"bins\": [...], \"counts\": [...]}",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SampleInput, A::Error> {
                // The hint comes from the client: it sizes nothing beyond the limit.
                let hint = seq.size_hint().unwrap_or(0).min(MAX_JUDGE_VALUES);
                let mut values = Vec::with_capacity(hint);
                while let Some(value) = seq.next_element::<f64>()? {
                    values.push(value);
                }
                Ok(SampleInput::Values(values))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SampleInput, A::Error> {
                let (mut bins, mut counts) = (None, None);
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Bins if bins.is_some() => {
                            return Err(A::Error::duplicate_field("bins"))
                        }
                        Field::Counts if counts.is_some() => {
                            return Err(A::Error::duplicate_field("counts"))
                        }
                        Field::Bins => bins = Some(map.next_value()?),
                        Field::Counts => counts = Some(map.next_value()?),
                    }
                }
                Ok(SampleInput::Histogram {
                    bins: bins.ok_or_else(|| A::Error::missing_field("bins"))?,
                    counts: counts.ok_or_else(|| A::Error::missing_field("counts"))?,
                })
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    pub treatment: SampleInput,
    pub control: SampleInput,
    /// Default `lower`: the usual guard metric is a latency or an error rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub better: Option<Better>,
    /// Default: the one-sided "treatment is worse" that `better` implies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<Alternative>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Continuity correction of the asymptotic method; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuity: Option<bool>,
    /// Of the Hodges–Lehmann interval (and 1 − alpha of the verdict); default 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<crate::document::Tolerance>,
}

impl JudgeRequest {
    pub fn new(treatment: SampleInput, control: SampleInput) -> JudgeRequest {
        JudgeRequest {
            treatment,
            control,
            better: None,
            alternative: None,
            method: None,
            continuity: None,
            confidence: None,
            tolerance: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    pub treatment: f64,
    pub control: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeResponse {
    pub n_treatment: u64,
    pub n_control: u64,
    /// U1 of the treatment, whatever the alternative.
    pub u: f64,
    pub u2: f64,
    /// Present for the asymptotic method (absent when every value is tied: z = −∞).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    pub p_value: f64,
    pub method: Method,
    pub alternative: Alternative,
    pub hodges_lehmann: HodgesLehmann,
    pub medians: Medians,
    /// With a tolerance, the fixed-sample verdict; INCONCLUSIVE without one.
    pub verdict: Verdict,
    /// With a tolerance, the effect the verdict weighed against it; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<JudgeEffect>,
}

/// What the verdict compares with the tolerance, all in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeEffect {
    pub measure: EffectMeasure,
    /// Treatment − control.
    pub estimate: f64,
    /// The one-sided bound at `confidence` on the worse side (the upper end when lower is
    /// better): PASS when it is inside the tolerance.
    pub worse_bound: f64,
    /// The control's median, or its rate of 1s for 0/1 data: what a relative tolerance is a
    /// share of.
    pub control_level: f64,
    /// The tolerance in the metric's unit (a relative one times |control_level|).
    pub tolerance: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectMeasure {
    /// The Hodges–Lehmann shift and its one-sided bound.
    Shift,
    /// For data that are all 0 or 1: p̂1 − p̂0 with the unpooled standard error.
    /// The shift of such data is always 0, which would let any regression pass.
    RateDifference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeErrorKind {
    /// The request is wrong: a 400.
    Invalid,
    /// The request is over a limit: a 413 (the message says which).
    TooLarge,
}

/// A bad request, with the field that is wrong (`treatment`, `control.bins`,
/// `treatment[3]`, `tolerance`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JudgeError {
    pub field: String,
    pub message: String,
    pub kind: JudgeErrorKind,
}

impl JudgeError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> JudgeError {
        JudgeError {
            field: field.into(),
            message: message.into(),
            kind: JudgeErrorKind::Invalid,
        }
    }

    fn too_large(field: impl Into<String>, message: impl Into<String>) -> JudgeError {
        JudgeError {
            field: field.into(),
            message: message.into(),
            kind: JudgeErrorKind::TooLarge,
        }
    }
}

/// Judges treatment against control.
///
/// The fixed-sample verdict (with a tolerance; a = 1 − confidence, "worse" from `better`):
/// - REGRESSION: the one-sided "worse" p-value (same method and continuity) ≤ a and the
///   worse-oriented HL estimate ≥ tol (any, when tol = 0);
/// - PASS: the one-sided HL bound at `confidence` (z_{1−a}, the "worse" end) is < tol;
/// - INCONCLUSIVE otherwise.
///
/// A relative tolerance compares HL / |median(control)|.
pub fn judge(request: &JudgeRequest) -> Result<JudgeResponse, JudgeError> {
    let confidence = request.confidence.unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(JudgeError::invalid(
            "confidence",
            "must be a number between 0 and 1 (exclusive)",
        ));
    }
    let tolerance = request
        .tolerance
        .as_ref()
        .map(Tolerance::parse)
        .transpose()
        .map_err(|error| JudgeError::invalid("tolerance", error.to_string()))?;
    let better = request.better.unwrap_or(Better::Lower);
    let alternative = request
        .alternative
        .unwrap_or_else(|| Alternative::worse(better));
    let method = request.method.unwrap_or_default();
    let continuity = request.continuity.unwrap_or(true);

    let (x, y) =
        match (&request.treatment, &request.control) {
            (SampleInput::Values(treatment), SampleInput::Values(control)) => (
                values_arm("treatment", treatment)?,
                values_arm("control", control)?,
            ),
            (
                SampleInput::Histogram {
                    bins: treatment_bins,
                    counts: treatment_counts,
                },
                SampleInput::Histogram {
                    bins: control_bins,
                    counts: control_counts,
                },
            ) => {
                let x = histogram_arm("treatment", treatment_bins, treatment_counts)?;
                let y = histogram_arm("control", control_bins, control_counts)?;
                if treatment_bins != control_bins {
                    return Err(JudgeError::invalid(
                        "control.bins",
                        "must be the same bins as treatment.bins",
                    ));
                }
                (x, y)
            }
            _ => return Err(JudgeError::invalid(
                "control",
                "must have the same form as treatment (both arrays of numbers or both histograms)",
            )),
        };

    let (sign, upper) = match better {
        Better::Lower => (1.0, true),
        Better::Higher => (-1.0, false),
    };
    let bound_request = tolerance.map(|_| (confidence, upper));
    let result = run(
        &x,
        &y,
        alternative,
        method,
        continuity,
        confidence,
        bound_request,
    )
    .map_err(|error| match error {
        StatsError::ExactTooLarge(..) => JudgeError::too_large("method", error.to_string()),
        StatsError::TooManyObservations => JudgeError::too_large("treatment", error.to_string()),
        other => JudgeError::invalid("treatment", other.to_string()),
    })?;
    let hodges_lehmann = result
        .hodges_lehmann
        .ok_or_else(|| JudgeError::invalid("treatment", "values must be finite numbers"))?;

    let (verdict, effect) = match tolerance {
        None => (Verdict::Inconclusive, None),
        Some(tolerance) => {
            let worse_alternative = Alternative::worse(better);
            let worse_p = if worse_alternative == alternative {
                result.p_value
            } else {
                p_value_only(&x, &y, worse_alternative, method, continuity)
                    .map_err(|error| JudgeError::too_large("method", error.to_string()))?
            };
            let mut effect = JudgeEffect {
                measure: EffectMeasure::Shift,
                estimate: hodges_lehmann.estimate,
                worse_bound: result.one_sided_bound.unwrap_or(f64::NAN),
                control_level: result.median_control,
                tolerance: 0.0,
            };
            // With too few events a rate's normal approximations mislead both ways.
            let mut enough_events = true;
            if let Some(rates) = binary_rates(&x, &y) {
                let z = normal_quantile(confidence);
                effect = JudgeEffect {
                    measure: EffectMeasure::RateDifference,
                    estimate: rates.difference,
                    worse_bound: rates.difference + sign * z * rates.standard_error,
                    control_level: rates.rate_control,
                    tolerance: 0.0,
                };
                let pooled = (rates.rate_treatment * x.total as f64
                    + rates.rate_control * y.total as f64)
                    / (x.total as f64 + y.total as f64);
                enough_events =
                    (x.total.min(y.total) as f64) * pooled.min(1.0 - pooled) >= MIN_EXPECTED_EVENTS;
            }
            let scale = match tolerance {
                Tolerance::Absolute(_) => 1.0,
                Tolerance::Relative(_) => {
                    let level = effect.control_level.abs();
                    if level.is_nan() || level <= 0.0 {
                        let level = match effect.measure {
                            EffectMeasure::Shift => "median",
                            EffectMeasure::RateDifference => "rate of 1s",
                        };
                        return Err(JudgeError::invalid(
                            "tolerance",
                            format!("a relative tolerance needs a control {level} other than 0"),
                        ));
                    }
                    level
                }
            };
            let tol = tolerance.value();
            effect.tolerance = tol * scale;
            let worse = sign * effect.estimate / scale;
            let bound = sign * effect.worse_bound / scale;
            let verdict = if !enough_events {
                Verdict::Inconclusive
            } else if worse_p <= 1.0 - confidence && (tol == 0.0 || worse >= tol) {
                Verdict::Regression
            } else if bound < tol {
                Verdict::Pass
            } else {
                Verdict::Inconclusive
            };
            (verdict, Some(effect))
        }
    };

    Ok(JudgeResponse {
        n_treatment: result.n_treatment,
        n_control: result.n_control,
        u: result.u,
        u2: result.u2,
        z: result.z,
        p_value: result.p_value,
        method: result.method,
        alternative,
        hodges_lehmann,
        medians: Medians {
            treatment: result.median_treatment,
            control: result.median_control,
        },
        verdict,
        effect,
    })
}

/// The guard's burn-in for rates: a rate needs min(n1, n2)·p̄ ≥ 5 expected events (here also
/// 5 expected non-events, for rates near 1).
const MIN_EXPECTED_EVENTS: f64 = 5.0;

/// The rates of 1s when every value of both arms is 0 or 1.
fn binary_rates(x: &Arm, y: &Arm) -> Option<TwoProportion> {
    let binary = |arm: &Arm| {
        arm.values
            .iter()
            .all(|value| *value == 0.0 || *value == 1.0)
    };
    if !(binary(x) && binary(y)) {
        return None;
    }
    let ones = |arm: &Arm| {
        arm.values
            .iter()
            .zip(&arm.counts)
            .filter(|(value, _)| **value == 1.0)
            .map(|(_, count)| *count)
            .sum::<u64>()
    };
    two_proportion(ones(x), x.total, ones(y), y.total)
}

/// The p-value of another alternative on the same data, without the Hodges–Lehmann work.
fn p_value_only(
    x: &Arm,
    y: &Arm,
    alternative: Alternative,
    method: Method,
    continuity: bool,
) -> Result<f64, StatsError> {
    let sums = RankSums::from_arms(x, y)?;
    Ok(match choose_method(method, &sums) {
        Method::Exact => exact_p(&sums, alternative)?,
        _ => asymptotic(&sums, alternative, continuity).1,
    })
}

fn check_magnitude(field: &str, values: &[f64]) -> Result<(), JudgeError> {
    match values
        .iter()
        .position(|value| value.abs() > MAX_JUDGE_MAGNITUDE)
    {
        Some(index) => Err(JudgeError::invalid(
            format!("{field}[{index}]"),
            "must be between -1e300 and 1e300: the differences of larger values overflow",
        )),
        None => Ok(()),
    }
}

fn values_arm(field: &str, values: &[f64]) -> Result<Arm, JudgeError> {
    if values.is_empty() {
        return Err(JudgeError::invalid(field, "must not be empty"));
    }
    if values.len() > MAX_JUDGE_VALUES {
        return Err(JudgeError::too_large(
            field,
            format!("at most {MAX_JUDGE_VALUES} values per sample"),
        ));
    }
    if let Some(index) = values.iter().position(|value| !value.is_finite()) {
        return Err(JudgeError::invalid(
            format!("{field}[{index}]"),
            "must be a finite number (no NaN or infinity)",
        ));
    }
    check_magnitude(field, values)?;
    Ok(Arm::from_samples(values).0)
}

fn histogram_arm(field: &str, bins: &[f64], counts: &[u64]) -> Result<Arm, JudgeError> {
    if bins.is_empty() {
        return Err(JudgeError::invalid(
            format!("{field}.bins"),
            "must not be empty",
        ));
    }
    if bins.len() > MAX_JUDGE_BINS {
        return Err(JudgeError::too_large(
            format!("{field}.bins"),
            format!("at most {MAX_JUDGE_BINS} bins"),
        ));
    }
    check_magnitude(&format!("{field}.bins"), bins)?;
    if let Err(StatsError::BinsNotIncreasing(index)) = check_bins(bins) {
        return Err(JudgeError::invalid(
            format!("{field}.bins[{index}]"),
            "must be finite and strictly increasing",
        ));
    }
    if counts.len() != bins.len() {
        return Err(JudgeError::invalid(
            format!("{field}.counts"),
            format!(
                "must have one count per bin ({} bins, {} counts)",
                bins.len(),
                counts.len()
            ),
        ));
    }
    let total = counts
        .iter()
        .fold(0u128, |sum, count| sum + u128::from(*count));
    if total == 0 {
        return Err(JudgeError::invalid(
            format!("{field}.counts"),
            "must not all be zero",
        ));
    }
    if total > u128::from(MAX_TOTAL_COUNT) {
        return Err(JudgeError::too_large(
            format!("{field}.counts"),
            "at most 2^53 observations per histogram",
        ));
    }
    let mut arm = Arm::default();
    for (value, count) in bins.iter().zip(counts) {
        if *count > 0 {
            arm.values.push(*value);
            arm.counts.push(*count);
            arm.total += count;
        }
    }
    Ok(arm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[f64]) -> SampleInput {
        SampleInput::Values(v.to_vec())
    }

    #[test]
    fn the_documented_example_round_trips() {
        let request: JudgeRequest = serde_json::from_str(
            r#"{"treatment": [12.1, 13.4, 11.9], "control": [11.8, 12.0, 12.2],
                "better": "lower", "alternative": "greater", "method": "auto",
                "continuity": true, "confidence": 0.95, "tolerance": "5%"}"#,
        )
        .unwrap();
        let response = judge(&request).unwrap();
        assert_eq!(response.u, 6.0);
        assert_eq!(response.u2, 3.0);
        assert_eq!(response.method, Method::Exact);
        assert!((response.p_value - 0.35).abs() < 1e-12);
        assert_eq!(response.medians.treatment, 12.1);
        assert_eq!(response.verdict, Verdict::Inconclusive);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["alternative"], "greater");
        assert_eq!(json["verdict"], "INCONCLUSIVE");
        assert!(json.get("z").is_none());
    }

    #[test]
    fn values_whose_differences_overflow_are_refused_at_their_index() {
        let body = r#"{"treatment": [1, 1.7e308, 2], "control": [-1.7e308, 0, 1], "tolerance": 1}"#;
        let request: JudgeRequest = serde_json::from_str(body).unwrap();
        let error = judge(&request).unwrap_err();
        assert_eq!(error.field, "treatment[1]", "{error}");
        assert!(error.message.contains("1e300"), "{error}");
        let mut request = JudgeRequest::new(
            values(&[1.0]),
            SampleInput::Histogram {
                bins: vec![-1e301, 1.0],
                counts: vec![1, 1],
            },
        );
        request.treatment = request.control.clone();
        assert_eq!(judge(&request).unwrap_err().field, "treatment.bins[0]");
        // At the bound every number the answer carries is still a number.
        let request = JudgeRequest::new(values(&[1e300, 2.0]), values(&[-1e300, 1.0]));
        let judged = serde_json::to_value(judge(&request).unwrap()).unwrap();
        assert!(judged["hodges_lehmann"]["estimate"].is_number(), "{judged}");
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let cases: Vec<(JudgeRequest, &str)> = vec![
            (JudgeRequest::new(values(&[]), values(&[1.0])), "treatment"),
            (
                JudgeRequest::new(values(&[1.0]), values(&[1.0, f64::NAN])),
                "control[1]",
            ),
            (
                JudgeRequest::new(values(&[f64::INFINITY]), values(&[1.0])),
                "treatment[0]",
            ),
            (
                JudgeRequest::new(
                    SampleInput::Histogram {
                        bins: vec![1.0, 1.0],
                        counts: vec![1, 1],
                    },
                    SampleInput::Histogram {
                        bins: vec![1.0, 1.0],
                        counts: vec![1, 1],
                    },
                ),
                "treatment.bins[1]",
            ),
            (
                JudgeRequest::new(
                    SampleInput::Histogram {
                        bins: vec![1.0, 2.0],
                        counts: vec![1, 1],
                    },
                    SampleInput::Histogram {
                        bins: vec![1.0, 2.0],
                        counts: vec![1],
                    },
                ),
                "control.counts",
            ),
            (
                JudgeRequest::new(
                    SampleInput::Histogram {
                        bins: vec![1.0, 2.0],
                        counts: vec![1, 1],
                    },
                    SampleInput::Histogram {
                        bins: vec![1.0, 3.0],
                        counts: vec![1, 1],
                    },
                ),
                "control.bins",
            ),
            (
                JudgeRequest::new(
                    values(&[1.0]),
                    SampleInput::Histogram {
                        bins: vec![1.0],
                        counts: vec![1],
                    },
                ),
                "control",
            ),
        ];
        for (request, field) in cases {
            let error = judge(&request).unwrap_err();
            assert_eq!(error.field, field, "{error}");
            assert_eq!(error.kind, JudgeErrorKind::Invalid);
        }
        let mut request = JudgeRequest::new(values(&[1.0]), values(&[2.0]));
        request.confidence = Some(1.0);
        assert_eq!(judge(&request).unwrap_err().field, "confidence");
        request.confidence = None;
        request.tolerance = Some(crate::document::Tolerance::Relative("five".into()));
        assert_eq!(judge(&request).unwrap_err().field, "tolerance");
        let unknown = serde_json::from_str::<JudgeRequest>(
            r#"{"treatment": [1], "control": [2], "alternative": "bigger"}"#,
        );
        assert!(unknown.unwrap_err().to_string().contains("bigger"));
    }

    #[test]
    fn a_refused_tolerance_reads_the_same_in_the_judge_as_in_a_document() {
        for written in ["-0.1", "\"five%\"", "\"-5%\"", "\"5\""] {
            let document = crate::Document::from_yaml(&format!(
                "flags:\n  f:\n    type: boolean\n    variants: {{\"on\": true}}\n    \
                 default_variant: \"on\"\n    rollout: {{percentage: 1, split: [{{variant: \"on\", \
                 weight: 1}}]}}\n    ramp:\n      stages: [1, 5]\n      min_stage_duration: 10m\n      \
                 guards:\n        - {{metric: m, category: stability, kind: rate, better: lower, \
                 tolerance: {written}, min_samples: 100}}\n"
            ))
            .unwrap();
            let refused = crate::validate(&document, &crate::Limits::default()).unwrap_err();
            let problem = &refused.problems()[0];
            assert_eq!(
                problem.path, "flags.f.ramp.guards[0].tolerance",
                "{problem}"
            );

            let mut request = JudgeRequest::new(values(&[1.0]), values(&[2.0]));
            request.tolerance = Some(serde_yaml_ng::from_str(written).unwrap());
            let error = judge(&request).unwrap_err();
            assert_eq!(error.field, "tolerance");
            assert_eq!(error.message, problem.message, "{written}");
            assert!(error.message.contains("a tolerance is a number"), "{error}");
        }
    }

    #[test]
    fn all_tied_gives_p_one_without_z() {
        let mut request = JudgeRequest::new(values(&[3.0; 20]), values(&[3.0; 30]));
        request.tolerance = Some(crate::document::Tolerance::Absolute(0.0));
        let response = judge(&request).unwrap();
        assert_eq!(response.p_value, 1.0);
        assert_eq!(response.z, None);
        assert_eq!(response.method, Method::Asymptotic);
        assert_eq!(response.hodges_lehmann.estimate, 0.0);
        assert_ne!(response.verdict, Verdict::Regression);
    }

    fn rates(treatment: [u64; 2], control: [u64; 2], tolerance: &str) -> JudgeRequest {
        let histogram = |counts: [u64; 2]| SampleInput::Histogram {
            bins: vec![0.0, 1.0],
            counts: counts.to_vec(),
        };
        JudgeRequest {
            tolerance: Some(crate::document::Tolerance::from_text(tolerance)),
            ..JudgeRequest::new(histogram(treatment), histogram(control))
        }
    }

    /// The shift of 0/1 data is always 0, so a verdict on it would pass any regression:
    /// 0/1 data are judged on the difference of rates, as the guard judges rate metrics.
    #[test]
    fn binary_data_are_judged_on_the_difference_of_rates() {
        let worse = judge(&rates([97_050, 2_950], [97_600, 2_400], "0.002")).unwrap();
        assert_eq!(worse.hodges_lehmann.estimate, 0.0);
        assert_eq!(worse.verdict, Verdict::Regression);
        let effect = worse.effect.unwrap();
        assert_eq!(effect.measure, EffectMeasure::RateDifference);
        assert!((effect.estimate - 0.0055).abs() < 1e-12, "{effect:?}");
        assert!((effect.control_level - 0.024).abs() < 1e-12);
        assert!(effect.worse_bound > effect.estimate);

        let same = judge(&rates([97_590, 2_410], [97_600, 2_400], "0.002")).unwrap();
        assert_eq!(same.verdict, Verdict::Pass);
        let relative = judge(&rates([97_590, 2_410], [97_600, 2_400], "10%")).unwrap();
        assert_eq!(relative.verdict, Verdict::Pass);
        assert!((relative.effect.unwrap().tolerance - 0.0024).abs() < 1e-12);
        let relative = judge(&rates([97_050, 2_950], [97_600, 2_400], "10%")).unwrap();
        assert_eq!(relative.verdict, Verdict::Regression);

        // The same data as raw 0/1 values.
        let values = |ones: usize, total: usize| {
            SampleInput::Values((0..total).map(|i| f64::from(u8::from(i < ones))).collect())
        };
        let raw = JudgeRequest {
            tolerance: Some(crate::document::Tolerance::Absolute(0.002)),
            ..JudgeRequest::new(values(295, 10_000), values(100, 10_000))
        };
        assert_eq!(judge(&raw).unwrap().verdict, Verdict::Regression);

        // Higher is better (a success rate): the lower treatment is the regression.
        let success = JudgeRequest {
            better: Some(Better::Higher),
            ..rates([2_950, 97_050], [2_400, 97_600], "0.002")
        };
        assert_eq!(judge(&success).unwrap().verdict, Verdict::Regression);

        // Two expected events are too few to decide either way.
        let rare = judge(&rates([1_000, 3], [1_000, 0], "0.001")).unwrap();
        assert_eq!(rare.verdict, Verdict::Inconclusive);
        let error = judge(&rates([1_000, 3], [1_000, 0], "5%")).unwrap_err();
        assert_eq!(error.field, "tolerance");
        assert!(error.message.contains("rate"), "{error}");
    }

    /// A two-sided test reports its own p-value, but the verdict weighs the one-sided
    /// "worse" one, so both give the same verdict.
    #[test]
    fn the_verdict_does_not_depend_on_the_reported_alternative() {
        let control: Vec<f64> = (0..300).map(|i| 100.0 + (i % 30) as f64).collect();
        let slower: Vec<f64> = control.iter().map(|v| v * 1.2).collect();
        let mut request = JudgeRequest::new(values(&slower), values(&control));
        request.tolerance = Some(crate::document::Tolerance::Relative("5%".into()));
        let one_sided = judge(&request).unwrap();
        request.alternative = Some(Alternative::TwoSided);
        let two_sided = judge(&request).unwrap();
        assert_eq!(one_sided.verdict, Verdict::Regression);
        assert_eq!(two_sided.verdict, Verdict::Regression);
        assert!((two_sided.p_value - 2.0 * one_sided.p_value).abs() <= 1e-12 * one_sided.p_value);
        request.alternative = Some(Alternative::Less);
        assert_eq!(judge(&request).unwrap().verdict, Verdict::Regression);
    }

    #[test]
    fn fixed_sample_verdicts() {
        let control: Vec<f64> = (0..400).map(|i| 100.0 + (i % 40) as f64).collect();
        let slower: Vec<f64> = control.iter().map(|v| v * 1.3).collect();
        let mut request = JudgeRequest::new(values(&slower), values(&control));
        request.tolerance = Some(crate::document::Tolerance::Relative("5%".into()));
        assert_eq!(judge(&request).unwrap().verdict, Verdict::Regression);
        let same = JudgeRequest {
            treatment: values(&control),
            ..request.clone()
        };
        assert_eq!(judge(&same).unwrap().verdict, Verdict::Pass);
        let higher = JudgeRequest {
            better: Some(Better::Higher),
            ..request
        };
        let response = judge(&higher).unwrap();
        assert_eq!(response.alternative, Alternative::Less);
        assert_eq!(response.verdict, Verdict::Pass);
    }
}
