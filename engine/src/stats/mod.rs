//! The guard's statistics, exactly as docs/statistics.md specifies them; the section names
//! cited here are that document's.
//!
//! Conventions: **x = treatment**, **y = control**; `u` is always U1 of the treatment, so the
//! numbers match `scipy.stats.mannwhitneyu(treatment, control, ...)`.
//!
//! - [`mann_whitney`] / [`mann_whitney_histograms`]: the U test on raw samples or on
//!   mergeable histograms, with the Hodges–Lehmann shift and its interval.
//! - [`Histogram`]: counts over fixed bin values common to every node, arm and stage;
//!   merges by adding counts ("Histograms").
//! - [`two_proportion`]: the binary metric's z from four counts ("Binary metrics").
//! - [`look`]: one sequential look of a ramp guard — mixture SPRT, Bonferroni, burn-in,
//!   stratification over stages, verdict and the evidence an incident records ("The
//!   sequential look").
//! - [`srm_look`]: the sample-ratio-mismatch check of a ramp's cohorts, a sequential
//!   Beta-binomial mixture test ("Sample-ratio mismatch").
//! - [`judge`]: the fixed-sample judge, one code path for the API and the CLI.
//!
//! Everything here is pure: no I/O, no clock, no global state, and no panics on any input
//! (the judge endpoint feeds it network input).

mod binary;
mod exact;
mod histogram;
mod hodges_lehmann;
mod judge;
mod mann_whitney;
mod normal;
mod rank;
mod sequential;
mod srm;

use serde::{Deserialize, Serialize};

pub use crate::document::{Better, MetricKind};
pub use binary::{two_proportion, TwoProportion};
pub use histogram::{Histogram, MAX_TOTAL_COUNT};
pub use hodges_lehmann::HodgesLehmann;
pub use judge::{
    judge, EffectMeasure, JudgeEffect, JudgeError, JudgeErrorKind, JudgeRequest, JudgeResponse,
    Medians, SampleInput, MAX_JUDGE_BINS, MAX_JUDGE_VALUES,
};
pub use mann_whitney::{mann_whitney, mann_whitney_histograms, MannWhitney};
pub use normal::{ln_normal_cdf, normal_upper_tail};
pub use rank::RankSums;
pub use sequential::{
    look, mixture_log_lambda, mixture_tau2, Effect, GuardConfig, GuardEvidence, Proportion,
    SequentialState, StageData, Verdict, MIN_BURN_IN,
};
pub use srm::{
    srm_concentration, srm_log_bayes_factor, srm_look, SrmConfig, SrmEvidence, SrmStage, SrmState,
    SrmVerdict, SRM_RELATIVE_SD,
};

/// Which way the test looks, with treatment as the first sample (scipy's `alternative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// Treatment tends to be larger.
    Greater,
    /// Treatment tends to be smaller.
    Less,
    TwoSided,
}

impl Alternative {
    /// The one-sided "treatment is worse": `greater` when lower is better, else `less`.
    pub fn worse(better: Better) -> Alternative {
        match better {
            Better::Lower => Alternative::Greater,
            Better::Higher => Alternative::Less,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alternative::Greater => "greater",
            Alternative::Less => "less",
            Alternative::TwoSided => "two-sided",
        }
    }
}

/// How the p-value is computed ("Choosing the method"). Results only ever report `Exact` or
/// `Asymptotic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Auto,
    Exact,
    Asymptotic,
}

/// A tolerance resolved to a number: how much worse the treatment may be ("Tolerances").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Tolerance {
    /// In the metric's unit (or, for rates, in rate points: 0.005 = 0.5 pp).
    Absolute(f64),
    /// A share of the control's level: 0.05 = 5%.
    Relative(f64),
}

impl Tolerance {
    /// Resolves the document's form (`0.002`, `"5%"`). The value must be finite and ≥ 0.
    /// Validation, the guard and the judge all read tolerances here, so a tolerance one of
    /// them accepts is never refused by another, and a refusal reads the same everywhere.
    pub fn parse(tolerance: &crate::document::Tolerance) -> Result<Tolerance, ToleranceError> {
        let refused = || ToleranceError {
            written: match tolerance {
                crate::document::Tolerance::Absolute(value) => format!("{value:?}"),
                crate::document::Tolerance::Relative(text) => text.clone(),
            },
        };
        let resolved = match tolerance {
            crate::document::Tolerance::Absolute(value) => Tolerance::Absolute(*value),
            crate::document::Tolerance::Relative(text) => {
                let value: f64 = text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|number| number.trim().parse().ok())
                    .ok_or_else(refused)?;
                Tolerance::Relative(value / 100.0)
            }
        };
        let value = resolved.value();
        if !value.is_finite() || value < 0.0 {
            return Err(refused());
        }
        Ok(resolved)
    }

    pub fn value(self) -> f64 {
        match self {
            Tolerance::Absolute(value) | Tolerance::Relative(value) => value,
        }
    }
}

/// A tolerance that cannot be applied: not a number, a negative or infinite one, or text
/// that is not a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{written}` is not a tolerance: a tolerance is a number of at least 0 (`0.002`) or a percentage (`\"5%\"`)")]
pub struct ToleranceError {
    /// The tolerance as it was written.
    pub written: String,
}

/// What can be wrong with the inputs of the library functions (the judge reports its own,
/// field-named [`JudgeError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("the {0} sample is empty")]
    Empty(&'static str),
    #[error("the histograms do not share the same bins")]
    BinsMismatch,
    #[error("bins must be finite and strictly increasing (at index {0})")]
    BinsNotIncreasing(usize),
    #[error("there must be one count per bin ({bins} bins, {counts} counts)")]
    CountsLength { bins: usize, counts: usize },
    #[error("a histogram needs at least one bin")]
    NoBins,
    #[error("too many observations: a sample may hold at most 2^53 of them")]
    TooManyObservations,
    #[error("the exact distribution for {0} × {1} observations is too expensive; use the asymptotic method")]
    ExactTooLarge(u64, u64),
    #[error("{0}")]
    Invalid(String),
}
