//! U from mid-ranks, for raw samples and for histograms alike (docs/statistics.md, "Mid-ranks
//! and U" and "U from histograms").
//!
//! Both forms are reduced to an [`Arm`]: the distinct values in increasing order, each with
//! its count. A tie group is then one value with its count in each arm, so the sample path
//! and the histogram path are the same code and give the same numbers.

use serde::{Deserialize, Serialize};

use super::{Histogram, StatsError, MAX_TOTAL_COUNT};

/// One sample as distinct, strictly increasing values with positive counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Arm {
    pub values: Vec<f64>,
    pub counts: Vec<u64>,
    pub total: u64,
}

impl Arm {
    /// Drops NaN (as Kayenta's `nanStrategy=remove` does) and returns how many were dropped.
    pub fn from_samples(samples: &[f64]) -> (Arm, usize) {
        // `+ 0.0` turns −0.0 into +0.0, so the total order below ties them as `==` does.
        let mut sorted: Vec<f64> = samples
            .iter()
            .filter(|value| !value.is_nan())
            .map(|value| value + 0.0)
            .collect();
        let dropped = samples.len() - sorted.len();
        sort_total(&mut sorted);
        let mut arm = Arm {
            values: Vec::with_capacity(sorted.len()),
            counts: Vec::with_capacity(sorted.len()),
            total: sorted.len() as u64,
        };
        for value in sorted {
            match arm.values.last() {
                Some(last) if *last == value => {
                    if let Some(count) = arm.counts.last_mut() {
                        *count += 1;
                    }
                }
                _ => {
                    arm.values.push(value);
                    arm.counts.push(1);
                }
            }
        }
        (arm, dropped)
    }

    /// Empty bins are left out: they are no tie group and no pair of differences.
    pub fn from_histogram(histogram: &Histogram) -> Arm {
        let mut arm = Arm::default();
        for (value, count) in histogram.bins().iter().zip(histogram.counts()) {
            if *count > 0 {
                arm.values.push(*value);
                arm.counts.push(*count);
                arm.total += count;
            }
        }
        arm
    }

    pub fn is_finite(&self) -> bool {
        self.values.iter().all(|value| value.is_finite())
    }

    /// The k-th smallest value, 1-based; `k` is clamped into the sample.
    pub fn kth(&self, k: u64) -> f64 {
        let mut seen = 0u64;
        for (value, count) in self.values.iter().zip(&self.counts) {
            seen += count;
            if seen >= k {
                return *value;
            }
        }
        self.values.last().copied().unwrap_or(f64::NAN)
    }

    /// numpy's median of the expanded sample: the mean of the two middle values when even.
    pub fn median(&self) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let half = self.total / 2;
        if self.total % 2 == 1 {
            Some(self.kth(half + 1))
        } else {
            let (low, high) = (self.kth(half), self.kth(half + 1));
            Some(midpoint(low, high))
        }
    }
}

/// Sorts in IEEE total order (NaN never reaches here), as `sort_unstable_by(f64::total_cmp)`
/// does. Large samples go through a radix sort of the bits: sorting the judge's two
/// samples of 100,000 values was a tenth of its time with comparisons.
fn sort_total(values: &mut [f64]) {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    const PASSES: usize = 6;
    if values.len() < 1 << 12 {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // The order of `f64::total_cmp` as unsigned integers: negative values have all their
    // bits flipped, positive ones only the sign. The map is its own inverse but for the sign.
    let to_key = |value: f64| {
        let bits = value.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        }
    };
    let from_key = |key: u64| {
        f64::from_bits(if key >> 63 == 1 {
            key & !(1 << 63)
        } else {
            !key
        })
    };
    let digit = |key: u64, pass: usize| ((key >> (pass as u32 * DIGIT)) as usize) & (BUCKETS - 1);
    let mut keys: Vec<u64> = values.iter().map(|value| to_key(*value)).collect();
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    for key in &keys {
        for (pass, count) in counts.iter_mut().enumerate() {
            count[digit(*key, pass)] += 1;
        }
    }
    let mut buffer = vec![0u64; keys.len()];
    for (pass, count) in counts.iter_mut().enumerate() {
        // A digit every key shares does not reorder anything.
        if count.contains(&keys.len()) {
            continue;
        }
        let mut start = 0;
        for bucket in count.iter_mut() {
            let size = *bucket;
            *bucket = start;
            start += size;
        }
        for key in &keys {
            let bucket = &mut count[digit(*key, pass)];
            buffer[*bucket] = *key;
            *bucket += 1;
        }
        std::mem::swap(&mut keys, &mut buffer);
    }
    for (value, key) in values.iter_mut().zip(&keys) {
        *value = from_key(*key);
    }
}

/// numpy's mean of two middle values, (a + b)/2, without overflowing to ±∞.
pub(crate) fn midpoint(low: f64, high: f64) -> f64 {
    let sum = low + high;
    if sum.is_finite() {
        sum / 2.0
    } else {
        low / 2.0 + high / 2.0
    }
}

/// The rank statistics of two samples, from which every p-value here follows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankSums {
    /// Treatment observations.
    pub n1: u64,
    /// Control observations.
    pub n2: u64,
    /// U1 = R1 − n1(n1+1)/2, the treatment's statistic (scipy's `statistic`).
    pub u1: f64,
    /// U1 − n1·n2/2, computed exactly before rounding: the numerator of z.
    pub u1_minus_mu: f64,
    /// Σ(t³ − t) over tie groups.
    pub tie_term: f64,
    /// The tie-corrected standard deviation of U under H0; 0 when every value is tied.
    pub sigma: f64,
    /// Whether any value occurs more than once (`auto` then never picks exact).
    pub ties: bool,
}

impl RankSums {
    pub fn u2(&self) -> f64 {
        (self.n1 as f64) * (self.n2 as f64) - self.u1
    }

    pub(crate) fn from_arms(x: &Arm, y: &Arm) -> Result<RankSums, StatsError> {
        let (mut i, mut j) = (0, 0);
        let groups = std::iter::from_fn(|| {
            let next_x = x.values.get(i);
            let next_y = y.values.get(j);
            match (next_x, next_y) {
                (None, None) => None,
                (Some(_), None) => {
                    i += 1;
                    Some((x.counts[i - 1], 0))
                }
                (None, Some(_)) => {
                    j += 1;
                    Some((0, y.counts[j - 1]))
                }
                (Some(a), Some(b)) => {
                    if a < b {
                        i += 1;
                        Some((x.counts[i - 1], 0))
                    } else if b < a {
                        j += 1;
                        Some((0, y.counts[j - 1]))
                    } else {
                        i += 1;
                        j += 1;
                        Some((x.counts[i - 1], y.counts[j - 1]))
                    }
                }
            }
        });
        RankSums::from_groups(groups)
    }

    /// U over tie groups `(count in x, count in y)` in increasing order of value.
    ///
    /// Midranks are half-integers, so 2·R1 is summed exactly in u128 and U1 is rounded once;
    /// Σ(t³ − t) is exact in u128 while it fits (u64 overflows on binary metrics).
    pub(crate) fn from_groups(
        groups: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<RankSums, StatsError> {
        let (mut n1, mut n2, mut below) = (0u128, 0u128, 0u128);
        let mut twice_r1 = 0u128;
        let mut tie_exact: Option<u128> = Some(0);
        let mut tie_float = 0.0f64;
        let mut ties = false;
        for (cx, cy) in groups {
            let (cx, cy) = (u128::from(cx), u128::from(cy));
            let t = cx + cy;
            if t == 0 {
                continue;
            }
            n1 += cx;
            n2 += cy;
            if n1 > u128::from(MAX_TOTAL_COUNT) || n2 > u128::from(MAX_TOTAL_COUNT) {
                return Err(StatsError::TooManyObservations);
            }
            // Below 2^54 total, every product here stays below 2^110.
            twice_r1 += cx * (2 * below + t + 1);
            below += t;
            if t > 1 {
                ties = true;
                tie_exact = tie_exact.and_then(|sum| {
                    t.checked_mul(t)
                        .and_then(|t2| t2.checked_mul(t))
                        .and_then(|t3| sum.checked_add(t3 - t))
                });
                let tf = t as f64;
                tie_float += tf * tf * tf - tf;
            }
        }
        let n = n1 + n2;
        let twice_u1 = twice_r1 - n1 * (n1 + 1);
        let twice_dev = twice_u1 as i128 - (n1 * n2) as i128;
        let tie_term = tie_exact.map_or(tie_float, |exact| exact as f64);
        let sigma = if n1 == 0 || n2 == 0 {
            0.0
        } else {
            let pairs = (n1 as f64) * (n2 as f64);
            // sigma² = n1·n2/12 · [(N+1)N(N−1) − T] / (N(N−1)); the bracket is an exact
            // integer while it fits, which avoids the cancellation when one tie group holds
            // nearly everything (rare binary events).
            let bracket = n
                .checked_mul(n)
                .and_then(|n2| n2.checked_mul(n))
                .zip(tie_exact)
                .map(|(n3, ties)| (n3 - n - ties) as f64 / ((n * (n - 1)) as f64))
                .unwrap_or_else(|| {
                    let nf = n as f64;
                    (nf + 1.0) - tie_float / (nf * (nf - 1.0))
                });
            let variance = pairs / 12.0 * bracket;
            if variance > 0.0 {
                variance.sqrt()
            } else {
                0.0
            }
        };
        Ok(RankSums {
            n1: n1 as u64,
            n2: n2 as u64,
            u1: twice_u1 as f64 / 2.0,
            u1_minus_mu: twice_dev as f64 / 2.0,
            tie_term,
            sigma,
            ties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_match_the_definition() {
        // x = [1, 2, 2], y = [2, 3]: U1 = #{x > y} + ½#{x = y} = 0 + ½·2 = 1.
        let (x, _) = Arm::from_samples(&[1.0, 2.0, 2.0]);
        let (y, _) = Arm::from_samples(&[2.0, 3.0]);
        let sums = RankSums::from_arms(&x, &y).unwrap();
        assert_eq!(sums.u1, 1.0);
        assert_eq!(sums.u2(), 5.0);
        assert_eq!(sums.tie_term, 24.0);
        assert!(sums.ties);
    }

    #[test]
    fn nan_is_dropped_and_counted_and_negative_zero_ties_zero() {
        let (arm, dropped) = Arm::from_samples(&[f64::NAN, -0.0, 0.0, 1.0, f64::NAN]);
        assert_eq!(dropped, 2);
        assert_eq!(arm.values, vec![0.0, 1.0]);
        assert_eq!(arm.counts, vec![2, 1]);
    }

    #[test]
    fn the_radix_sort_orders_as_total_cmp() {
        let mut state = 7u64;
        let mut values: Vec<f64> = (0..20_000)
            .map(|index| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                match index % 7 {
                    0 => f64::from_bits(state >> 1) * if state & 1 == 0 { 1.0 } else { -1.0 },
                    1 => ((state >> 40) % 50) as f64 - 25.0,
                    2 => f64::INFINITY,
                    3 => f64::NEG_INFINITY,
                    4 => f64::MIN_POSITIVE * (state >> 60) as f64,
                    _ => (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5,
                }
            })
            .filter(|value| !value.is_nan())
            .map(|value| value + 0.0)
            .collect();
        let mut expected = values.clone();
        expected.sort_unstable_by(f64::total_cmp);
        sort_total(&mut values);
        assert_eq!(
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn tie_groups_beyond_u64_cubes_do_not_overflow() {
        // t = 6·10⁶: t³ ≈ 2.2·10²⁰ > u64::MAX.
        let sums = RankSums::from_groups([(3_000_000, 3_000_000), (10, 0)]).unwrap();
        assert!((sums.tie_term / 2.16e20 - 1.0).abs() < 1e-9);
        assert!(sums.sigma > 0.0 && sums.sigma.is_finite());
    }
}
