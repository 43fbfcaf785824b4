//! Binary metrics from four counts (docs/statistics.md, "Binary metrics").

use serde::{Deserialize, Serialize};

use super::normal::normal_upper_tail;

/// The pooled two-proportion z-test. On 0/1 data the tie-corrected MWU z without continuity
/// correction is this z times sqrt((N − 1)/N): often called equal, they are equal up to that
/// factor (the rank variance divides by N − 1, the pooled one by N). The guard computes the
/// MWU form (two tie groups), so the binary path and the histogram path agree exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwoProportion {
    /// p̂1, the treatment's rate.
    pub rate_treatment: f64,
    /// p̂0, the control's rate.
    pub rate_control: f64,
    /// p̂1 − p̂0: the effect for binary metrics (HL is always 0 on 0/1 data).
    pub difference: f64,
    /// (p̂1 − p̂0) / sqrt(p̄(1 − p̄)(1/n1 + 1/n0)); `None` when p̄ is 0 or 1 (no variance).
    pub z: Option<f64>,
    /// One-sided p for "treatment rate is greater": Φc(z); 1 without variance.
    pub p_greater: f64,
    /// sqrt(p̂1(1−p̂1)/n1 + p̂0(1−p̂0)/n0): the unpooled standard error of the difference.
    pub standard_error: f64,
}

/// `events` out of `trials` in each arm. `None` when an arm has no trials or more events
/// than trials.
pub fn two_proportion(
    events_treatment: u64,
    trials_treatment: u64,
    events_control: u64,
    trials_control: u64,
) -> Option<TwoProportion> {
    if trials_treatment == 0
        || trials_control == 0
        || events_treatment > trials_treatment
        || events_control > trials_control
    {
        return None;
    }
    let (n1, n0) = (trials_treatment as f64, trials_control as f64);
    let p1 = events_treatment as f64 / n1;
    let p0 = events_control as f64 / n0;
    let pooled = (events_treatment as f64 + events_control as f64) / (n1 + n0);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0);
    let z = (variance > 0.0).then(|| (p1 - p0) / variance.sqrt());
    Some(TwoProportion {
        rate_treatment: p1,
        rate_control: p0,
        difference: p1 - p0,
        z,
        p_greater: z.map_or(1.0, normal_upper_tail),
        standard_error: (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::rank::RankSums;
    use super::*;

    #[test]
    fn equals_the_tie_corrected_u_up_to_the_finite_sample_factor() {
        // 30 of 1,000 treatment units fail against 10 of 1,000 control units.
        let direct = two_proportion(30, 1000, 10, 1000).unwrap();
        let sums = RankSums::from_groups([(970, 990), (30, 10)]).unwrap();
        let from_u = sums.u1_minus_mu / sums.sigma;
        let z = direct.z.unwrap();
        let factor = (1999.0f64 / 2000.0).sqrt();
        assert!(
            (z * factor - from_u).abs() < 1e-12 * z.abs(),
            "{z} {from_u}"
        );
        assert!((z - 3.1943828249996993).abs() < 1e-9, "{z}");
        assert_eq!(two_proportion(0, 10, 0, 10).unwrap().z, None);
        assert_eq!(two_proportion(11, 10, 0, 10), None);
    }
}
