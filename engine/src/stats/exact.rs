//! The exact null distribution of U, without enumerating subsets (docs/statistics.md, "Exact
//! distribution").
//!
//! The distribution is the same for (n1, n2) and (n2, n1) and symmetric around m·n/2, so
//! only the lower half is built and every tail is read from it: P(U ≥ k) = P(U ≤ m·n − k).
//! Two constructions, both in probabilities so nothing overflows:
//!
//! - m = min(n1, n2) ≤ 8 (every `auto` case): the generating function
//!   Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i), truncated at degree m·n/2, in O(m · m·n). The
//!   subtraction only matters above degree n, where for m ≤ 8 the tail is still ≥ ~1e-7,
//!   so cancellation costs at most ~1e-9 relative.
//! - m > 8 (only when the caller forces `exact`): the recurrence
//!   f(u; m, n) = f(u − n; m − 1, n) + f(u; m, n − 1), divided by C(m+n, m), which only
//!   adds non-negative terms and so keeps every tail's relative precision. It costs
//!   O(m²n²), so it is refused beyond [`MAX_RECURRENCE_WORK`].

use super::{Alternative, RankSums, StatsError};

/// Work (cells updated) allowed for the recurrence: ~0.2 s.
pub(crate) const MAX_RECURRENCE_WORK: f64 = 2.0e8;
/// Degree allowed for the generating function: 8 factors × 8·10⁶ cells, ~50 ms.
pub(crate) const MAX_GENERATING_DEGREE: u64 = 8_000_000;

/// The exact p-value. With ties (only when forced) U is truncated to an integer, as
/// scipy does.
pub(crate) fn exact_p(sums: &RankSums, alternative: Alternative) -> Result<f64, StatsError> {
    let (n1, n2) = (sums.n1, sums.n2);
    let cdf = LowerCdf::new(n1, n2)?;
    let u = match alternative {
        Alternative::Greater => sums.u1,
        Alternative::Less => sums.u2(),
        Alternative::TwoSided => sums.u1.max(sums.u2()),
    };
    let factor = if alternative == Alternative::TwoSided {
        2.0
    } else {
        1.0
    };
    Ok((factor * cdf.sf(u.floor() as u64)).clamp(0.0, 1.0))
}

/// P(U ≤ d) for d ≤ m·n/2.
struct LowerCdf {
    total_pairs: u64,
    cumulative: Vec<f64>,
}

impl LowerCdf {
    fn new(n1: u64, n2: u64) -> Result<LowerCdf, StatsError> {
        let (m, n) = (n1.min(n2), n1.max(n2));
        let total_pairs = m.saturating_mul(n);
        let half = total_pairs / 2;
        let pmf = if m <= 8 {
            if half > MAX_GENERATING_DEGREE {
                return Err(StatsError::ExactTooLarge(n1, n2));
            }
            generating_function(m, n, half as usize)
        } else {
            let work = (m as f64) * (m as f64) * (n as f64) * (n as f64) / 8.0;
            if work > MAX_RECURRENCE_WORK {
                return Err(StatsError::ExactTooLarge(n1, n2));
            }
            recurrence(m as usize, n as usize, half as usize)
        };
        let mut cumulative = pmf;
        let mut running = 0.0;
        for value in cumulative.iter_mut() {
            running += *value;
            *value = running;
        }
        Ok(LowerCdf {
            total_pairs,
            cumulative,
        })
    }

    fn cdf(&self, d: u64) -> f64 {
        self.cumulative
            .get(d as usize)
            .copied()
            .unwrap_or(1.0)
            .min(1.0)
    }

    /// P(U ≥ k).
    fn sf(&self, k: u64) -> f64 {
        if k == 0 {
            return 1.0;
        }
        if k > self.total_pairs {
            return 0.0;
        }
        let mirrored = self.total_pairs - k;
        if mirrored <= self.total_pairs / 2 {
            self.cdf(mirrored)
        } else {
            // k − 1 < m·n/2 here: the tail is large, so the subtraction loses nothing.
            1.0 - self.cdf(k - 1)
        }
    }
}

fn generating_function(m: u64, n: u64, degree: usize) -> Vec<f64> {
    // Start at 1/C(m+n, m) so that the coefficients come out as probabilities.
    let mut binomial = 1.0f64;
    for i in 1..=m {
        binomial = binomial * ((n + i) as f64) / (i as f64);
    }
    let mut poly = vec![0.0f64; degree + 1];
    poly[0] = 1.0 / binomial;
    for i in 1..=m as usize {
        let shift = n as usize + i;
        if shift <= degree {
            for u in (shift..=degree).rev() {
                poly[u] -= poly[u - shift];
            }
        }
        for u in i..=degree {
            poly[u] += poly[u - i];
        }
    }
    poly
}

fn recurrence(m: usize, n: usize, degree: usize) -> Vec<f64> {
    // dist[a] = pmf of U for (a, b) at the current b, truncated at `degree`.
    let mut dist: Vec<Vec<f64>> = vec![vec![1.0]; m + 1];
    for b in 1..=n {
        for a in 1..=m {
            let len = (a * b).min(degree) + 1;
            let total = (a + b) as f64;
            let (keep, take) = (b as f64 / total, a as f64 / total);
            let (lower, upper) = dist.split_at_mut(a);
            let previous_a = &lower[a - 1];
            let current = &mut upper[0];
            current.resize(len, 0.0);
            for value in current.iter_mut() {
                *value *= keep;
            }
            // The largest observation is one of the a: U loses b from the rest.
            for (u, value) in current.iter_mut().enumerate().skip(b) {
                if let Some(source) = previous_a.get(u - b) {
                    *value += take * source;
                }
            }
        }
    }
    let mut pmf = dist.pop().unwrap_or_default();
    pmf.resize(degree + 1, 0.0);
    pmf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(n1: u64, n2: u64, u1: f64) -> RankSums {
        RankSums {
            n1,
            n2,
            u1,
            u1_minus_mu: u1 - (n1 * n2) as f64 / 2.0,
            tie_term: 0.0,
            sigma: 1.0,
            ties: false,
        }
    }

    #[test]
    fn both_constructions_agree() {
        let gf = generating_function(7, 9, 31);
        let rec = recurrence(7, 9, 31);
        for (a, b) in gf.iter().zip(&rec) {
            assert!((a - b).abs() <= 1e-15 + 1e-12 * a.abs(), "{a} {b}");
        }
    }

    #[test]
    fn matches_scipy_for_a_small_case() {
        // scipy: mannwhitneyu([5, 6, 9], [1, 2, 4.5, 8], method="exact"): U1 = 10,
        // P(U ≥ 10) = 4/35 (U = 12, 11, 10, 10 of 35 subsets).
        let p = exact_p(&sums(3, 4, 10.0), Alternative::Greater).unwrap();
        assert!((p - 4.0 / 35.0).abs() < 1e-15, "{p}");
        let two = exact_p(&sums(3, 4, 10.0), Alternative::TwoSided).unwrap();
        assert!((two - 8.0 / 35.0).abs() < 1e-15, "{two}");
    }

    #[test]
    fn refuses_work_beyond_its_budget() {
        assert_eq!(
            exact_p(&sums(1000, 1000, 10.0), Alternative::Greater),
            Err(StatsError::ExactTooLarge(1000, 1000))
        );
    }
}
