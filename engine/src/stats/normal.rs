//! The normal approximation, and the normal tails in the precision it and the sequential
//! look's mixture need (docs/statistics.md, "Normal approximation").

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

use super::{Alternative, RankSums};

/// Φc(z) = P(Z > z) = ½·erfc(z/√2): keeps its relative precision far below 1e-16, where
/// `1 − cdf` would be 0.
pub fn normal_upper_tail(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// ln Φ(x), finite far beyond where Φ(x) underflows: the mixture is computed in log space,
/// and for a treatment much *better* than control Φ of the scaled z is below 1e-308.
pub fn ln_normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x > 5.0 {
        (-normal_upper_tail(x)).ln_1p()
    } else if x > -30.0 {
        normal_upper_tail(-x).ln()
    } else {
        // Mills' ratio asymptotic series; at x ≤ −30 the next term is below 2e-14.
        let inv2 = 1.0 / (x * x);
        let series = 1.0
            - inv2
                * (1.0 - 3.0 * inv2 * (1.0 - 5.0 * inv2 * (1.0 - 7.0 * inv2 * (1.0 - 9.0 * inv2))));
        -0.5 * x * x - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + series.ln()
    }
}

/// z_{p}: the standard normal quantile. `p` must be in (0, 1).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

/// scipy's asymptotic p-value; `None` for z when every value is tied (sigma = 0), where
/// scipy gets p = 1 through z = −∞ (and NaN without continuity; here p = 1 either way).
pub(crate) fn asymptotic(
    sums: &RankSums,
    alternative: Alternative,
    continuity: bool,
) -> (Option<f64>, f64) {
    if sums.sigma <= 0.0 || !sums.sigma.is_finite() {
        return (None, 1.0);
    }
    let (deviation, factor) = match alternative {
        Alternative::Greater => (sums.u1_minus_mu, 1.0),
        Alternative::Less => (-sums.u1_minus_mu, 1.0),
        Alternative::TwoSided => (sums.u1_minus_mu.abs(), 2.0),
    };
    let correction = if continuity { 0.5 } else { 0.0 };
    let z = (deviation - correction) / sums.sigma;
    (Some(z), (factor * normal_upper_tail(z)).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_tail_keeps_precision_far_out() {
        // scipy.special.ndtr(-20) = 2.7536241186061556e-89
        let p = normal_upper_tail(20.0);
        assert!((p / 2.7536241186061556e-89 - 1.0).abs() < 1e-9, "{p}");
        assert_eq!(normal_upper_tail(f64::INFINITY), 0.0);
        assert_eq!(normal_upper_tail(f64::NEG_INFINITY), 1.0);
    }

    #[test]
    fn ln_cdf_is_continuous_across_its_branches() {
        // Values from scipy.special.log_ndtr.
        for x in [-30.0f64, 5.0] {
            let below = ln_normal_cdf(x - 1e-9);
            let above = ln_normal_cdf(x + 1e-9);
            assert!((below - above).abs() < 1e-6 * below.abs().max(1e-12), "{x}");
        }
        assert!((ln_normal_cdf(-40.0) - -804.6084420137539).abs() < 1e-9);
        assert!((ln_normal_cdf(-30.0) - -454.32124395634327).abs() < 1e-9);
        assert!((ln_normal_cdf(0.0) - 0.5f64.ln()).abs() < 1e-15);
        assert!((ln_normal_cdf(10.0) / -7.61985302416047e-24 - 1.0).abs() < 1e-9);
    }
}
