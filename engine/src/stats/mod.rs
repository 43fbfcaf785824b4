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
//! - [`judge`]: the fixed-sample judge, one code path for the API and the CLI.
//!
//! Everything here is pure: no I/O, no clock, no global state, and no panics on any input
//! (the judge endpoint feeds it network input).

mod binary;
mod exact;
mod histogram;
mod hl;
mod judge;
mod normal;
mod rank;
mod sequential;
mod test;

use serde::{Deserialize, Serialize};

pub use crate::document::{Better, MetricKind};
pub use binary::{two_proportion, TwoProportion};
pub use histogram::{Histogram, MAX_TOTAL_COUNT};
pub use hl::HodgesLehmann;
pub use judge::{
    judge, EffectMeasure, JudgeEffect, JudgeError, JudgeErrorKind, JudgeRequest, JudgeResponse,
    Medians, SampleInput, MAX_JUDGE_BINS, MAX_JUDGE_VALUES,
};
pub use normal::{ln_normal_cdf, normal_upper_tail};
pub use rank::RankSums;
pub use sequential::{
    look, mixture_log_lambda, mixture_tau2, Effect, GuardConfig, GuardEvidence, Proportion,
    SequentialState, StageData, Verdict, MIN_BURN_IN,
};
pub use test::{mann_whitney, mann_whitney_histograms, MannWhitney};

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
    pub fn parse(tolerance: &crate::document::Tolerance) -> Result<Tolerance, String> {
        let resolved = match tolerance {
            crate::document::Tolerance::Absolute(value) => Tolerance::Absolute(*value),
            crate::document::Tolerance::Relative(text) => {
                let number = text.trim().strip_suffix('%').ok_or_else(|| {
                    format!("{text:?} is not a percentage such as \"5%\" or a number")
                })?;
                let value: f64 = number
                    .trim()
                    .parse()
                    .map_err(|_| format!("{text:?} is not a percentage such as \"5%\""))?;
                Tolerance::Relative(value / 100.0)
            }
        };
        let value = resolved.value();
        if !value.is_finite() || value < 0.0 {
            return Err("a tolerance must be a finite number ≥ 0".to_string());
        }
        Ok(resolved)
    }

    pub fn value(self) -> f64 {
        match self {
            Tolerance::Absolute(value) | Tolerance::Relative(value) => value,
        }
    }
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
