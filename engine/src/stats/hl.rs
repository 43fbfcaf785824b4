//! §6 and §7.3: the Hodges–Lehmann shift and its interval, on samples and histograms alike.
//!
//! Both forms are weighted: a sample is its distinct values with multiplicities, a histogram
//! its non-empty bins with counts, and the pair (i, j) stands for weight c_x[i]·c_y[j]. An
//! order statistic of the m = n1·n2 differences is found by selection over the implicit
//! sorted matrix d(i, j) = x_i + (−y)_j (rows and columns both increasing), never by
//! materializing it:
//!
//! 1. candidates are kept as one column range per row; a pass with two pointers counts the
//!    pairs ≤ v (and < v) for any v in O(rows + columns);
//! 2. each round draws a weighted random sample of candidates and takes two pivots that
//!    bracket the wanted rank (Floyd–Rivest), which leaves ~10% of the candidates;
//! 3. once ≤ [`EXPLICIT_CELLS`] distinct candidates remain, they are listed, sorted and
//!    walked by weight: the explicit sorted differences of §6 on what is left.
//!
//! The result is the exact order statistic (the same number sorting all n1·n2 differences
//! gives; tested against that), in O((n1 + n2) log m) expected time: 100,000 values per arm
//! take a few ms, 1,000 bins well under 1 ms. `x − y` equals `x + (−y)` bit for bit, and
//! IEEE subtraction is monotone, so the counting passes see exactly the values the explicit
//! list would.

use serde::{Deserialize, Serialize};

use super::normal::normal_quantile;
use super::rank::Arm;

/// Candidates are listed explicitly once at most this many remain (or, for a small matrix,
/// half its rows + columns: a round costs about that much).
const EXPLICIT_CELLS: usize = 4096;
/// Weighted random draws per round, at most (a quarter of rows + columns for small ones,
/// so that drawing never costs more than counting).
const SAMPLE: usize = 4096;

/// The shift of treatment relative to control (not the difference of medians), §6.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HodgesLehmann {
    /// The median of all pairwise differences treatment − control.
    pub estimate: f64,
    /// [d_(k), d_(m−k+1)] with k = max(1, floor(m/2 − z_{1−a/2}·sigma_U)).
    pub ci: [f64; 2],
    pub confidence: f64,
}

/// §6 with sigma_U the tie-corrected standard deviation of U (§2). `None` when an arm is
/// empty or holds ±∞ (whose differences have no order).
///
/// With `bound = Some((confidence, upper))` it also returns the one-sided bound of §6:
/// z_{1−a} and only one end, d_(m−k+1) when `upper`, else d_(k) — found in the same
/// selection, which is why it is computed here.
pub(crate) fn hodges_lehmann(
    x: &Arm,
    y: &Arm,
    sigma_u: f64,
    confidence: f64,
    bound: Option<(f64, bool)>,
) -> Option<(HodgesLehmann, Option<f64>)> {
    let matrix = PairMatrix::new(x, y)?;
    let m = matrix.total;
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let k = ci_rank(m, z, sigma_u);
    let middle = if m % 2 == 1 { m.div_ceil(2) } else { m / 2 };
    let mut ranks = vec![middle, k, m - k + 1];
    if let Some((level, upper)) = bound {
        let k = ci_rank(m, normal_quantile(level), sigma_u);
        ranks.push(if upper { m - k + 1 } else { k });
    }
    let found = matrix.select_many(&ranks);
    let (low_middle, at_most) = found[0];
    let estimate = if m % 2 == 1 || at_most > m / 2 {
        low_middle
    } else {
        super::rank::midpoint(low_middle, matrix.next_above(low_middle))
    };
    let hl = HodgesLehmann {
        estimate,
        ci: [found[1].0, found[2].0],
        confidence,
    };
    Some((hl, found.get(3).map(|found| found.0)))
}

fn ci_rank(m: u128, z: f64, sigma_u: f64) -> u128 {
    let k = ((m as f64) / 2.0 - z * sigma_u).floor();
    if k.is_finite() && k >= 1.0 {
        (k as u128).min(m.div_ceil(2)).max(1)
    } else {
        1
    }
}

pub(crate) struct PairMatrix<'a> {
    xs: &'a [f64],
    wx: &'a [u64],
    /// −y in increasing order.
    ws: Vec<f64>,
    ww: Vec<u64>,
    /// prefix[j] = Σ_{j' < j} ww[j'].
    prefix: Vec<u128>,
    total: u128,
}

impl<'a> PairMatrix<'a> {
    pub fn new(x: &'a Arm, y: &Arm) -> Option<PairMatrix<'a>> {
        if x.total == 0 || y.total == 0 || !x.is_finite() || !y.is_finite() {
            return None;
        }
        let ws: Vec<f64> = y.values.iter().rev().map(|value| -value).collect();
        let ww: Vec<u64> = y.counts.iter().rev().copied().collect();
        let mut prefix = Vec::with_capacity(ww.len() + 1);
        let mut running = 0u128;
        prefix.push(0);
        for weight in &ww {
            running += u128::from(*weight);
            prefix.push(running);
        }
        Some(PairMatrix {
            xs: &x.values,
            wx: &x.counts,
            total: u128::from(x.total) * u128::from(y.total),
            ws,
            ww,
            prefix,
        })
    }

    fn cell(&self, row: usize, column: usize) -> f64 {
        self.xs[row] + self.ws[column]
    }

    /// Per row, how many columns hold a difference ≤ `pivot` and < `pivot`, with the
    /// weighted totals, in one pass.
    fn count(&self, pivot: f64, at_most: &mut [usize], less: &mut [usize]) -> (u128, u128) {
        let columns = self.ws.len();
        let (mut le, mut lt) = (columns, columns);
        let (mut total_le, mut total_lt) = (0u128, 0u128);
        for row in 0..self.xs.len() {
            // Rows increase, so both boundaries only move left.
            while le > 0 && self.cell(row, le - 1) > pivot {
                le -= 1;
            }
            lt = lt.min(le);
            while lt > 0 && self.cell(row, lt - 1) >= pivot {
                lt -= 1;
            }
            at_most[row] = le;
            less[row] = lt;
            let weight = u128::from(self.wx[row]);
            total_le += weight * self.prefix[le];
            total_lt += weight * self.prefix[lt];
        }
        (total_le, total_lt)
    }

    /// [`count`](Self::count) for two pivots at once.
    fn count_two(&self, pivots: [f64; 2], out: [&mut [usize]; 4]) -> [(u128, u128); 2] {
        let columns = self.ws.len();
        let [le_a_out, lt_a_out, le_b_out, lt_b_out] = out;
        let (mut le_a, mut lt_a, mut le_b, mut lt_b) = (columns, columns, columns, columns);
        let mut totals = [0u128; 4];
        for row in 0..self.xs.len() {
            let x = self.xs[row];
            while le_a > 0 && x + self.ws[le_a - 1] > pivots[0] {
                le_a -= 1;
            }
            lt_a = lt_a.min(le_a);
            while lt_a > 0 && x + self.ws[lt_a - 1] >= pivots[0] {
                lt_a -= 1;
            }
            while le_b > 0 && x + self.ws[le_b - 1] > pivots[1] {
                le_b -= 1;
            }
            lt_b = lt_b.min(le_b);
            while lt_b > 0 && x + self.ws[lt_b - 1] >= pivots[1] {
                lt_b -= 1;
            }
            le_a_out[row] = le_a;
            lt_a_out[row] = lt_a;
            le_b_out[row] = le_b;
            lt_b_out[row] = lt_b;
            let weight = u128::from(self.wx[row]);
            totals[0] += weight * self.prefix[le_a];
            totals[1] += weight * self.prefix[lt_a];
            totals[2] += weight * self.prefix[le_b];
            totals[3] += weight * self.prefix[lt_b];
        }
        [(totals[0], totals[1]), (totals[2], totals[3])]
    }

    /// The smallest difference above `value`, or `value` itself when none is.
    fn next_above(&self, value: f64) -> f64 {
        let mut le = vec![0usize; self.xs.len()];
        let mut lt = vec![0usize; self.xs.len()];
        self.count(value, &mut le, &mut lt);
        le.iter()
            .enumerate()
            .filter(|(_, column)| **column < self.ws.len())
            .map(|(row, column)| self.cell(row, *column))
            .min_by(f64::total_cmp)
            .unwrap_or(value)
    }

    /// The k-th smallest difference by weight, 1-based; k is clamped into [1, m].
    #[cfg(test)]
    pub fn select(&self, k: u128) -> f64 {
        self.select_many(&[k])[0].0
    }

    /// Several order statistics, each with the number of differences ≤ it. The wanted
    /// ranks of HL and its interval lie close together, so the first rounds bracket them
    /// all at once and only the last rounds run per rank.
    fn select_many(&self, ks: &[u128]) -> Vec<(f64, u128)> {
        let ks: Vec<u128> = ks
            .iter()
            .map(|k| (*k).clamp(1, self.total.max(1)))
            .collect();
        let (Some(first), Some(last)) = (ks.iter().min(), ks.iter().max()) else {
            return Vec::new();
        };
        let mut shared = Bracket::new(self.xs.len(), self.ws.len());
        let mut rng = SplitMix(0x9e37_79b9_7f4a_7c15);
        let mut scratch = Scratch::new(self.xs.len());
        while shared.cells() > self.explicit_cells() {
            let weight = shared.weight(self);
            // Stop sharing once the ranks span a good part of what is left.
            if (last - first).saturating_mul(4) >= weight {
                break;
            }
            let sample = self.sample(&shared, weight, &mut rng);
            let pivots = [
                quantile(&sample, (first - shared.below) as f64 / weight as f64, -1.0),
                quantile(&sample, (last - shared.below) as f64 / weight as f64, 1.0),
            ];
            let counts = self.count_two(pivots, scratch.all());
            let before = shared.cells();
            for (index, (at_most, less)) in counts.into_iter().enumerate() {
                if at_most < *first {
                    shared.raise(scratch.at_most(index), at_most);
                } else if less >= *last {
                    shared.lower(scratch.less(index));
                }
            }
            if shared.cells() == before {
                break;
            }
        }
        ks.iter()
            .map(|k| self.select_from(shared.clone(), *k, &mut rng, &mut scratch))
            .collect()
    }

    fn explicit_cells(&self) -> usize {
        ((self.xs.len() + self.ws.len()) / 2).clamp(256, EXPLICIT_CELLS)
    }

    fn select_from(
        &self,
        mut bracket: Bracket,
        k: u128,
        rng: &mut SplitMix,
        scratch: &mut Scratch,
    ) -> (f64, u128) {
        loop {
            if bracket.cells() <= self.explicit_cells() {
                let value = self.explicit(&bracket.low, &bracket.high, k - bracket.below);
                let [(at_most, _), _] = self.count_two([value, value], scratch.all());
                return (value, at_most);
            }
            let weight = bracket.weight(self);
            let sample = self.sample(&bracket, weight, rng);
            let share = (k - bracket.below) as f64 / weight as f64;
            let pivots = [
                quantile(&sample, share, -1.0),
                quantile(&sample, share, 1.0),
            ];
            let counts = self.count_two(pivots, scratch.all());
            for (index, (at_most, less)) in counts.into_iter().enumerate() {
                if less < k && k <= at_most {
                    return (pivots[index], at_most);
                }
                if at_most < k {
                    bracket.raise(scratch.at_most(index), at_most);
                } else {
                    bracket.lower(scratch.less(index));
                }
            }
        }
    }

    /// A weighted random sample of the candidates, sorted.
    fn sample(&self, bracket: &Bracket, weight: u128, rng: &mut SplitMix) -> Vec<f64> {
        let rows = self.xs.len();
        let size = ((rows + self.ws.len()) / 4).clamp(256, SAMPLE);
        let mut cumulative = Vec::with_capacity(rows);
        let mut running = 0u128;
        for row in 0..rows {
            running += u128::from(self.wx[row])
                * (self.prefix[bracket.high[row]] - self.prefix[bracket.low[row]]);
            cumulative.push(running);
        }
        // Sorted targets let one forward walk over the rows find them all. A float draw is
        // uniform enough for a pivot and avoids u128 division.
        let mut targets: Vec<u128> = (0..size)
            .map(|_| ((rng.unit() * weight as f64) as u128).min(weight.saturating_sub(1)))
            .collect();
        targets.sort_unstable();
        let mut row = 0usize;
        let mut sample: Vec<f64> = targets
            .iter()
            .map(|target| {
                while row + 1 < rows && cumulative[row] <= *target {
                    row += 1;
                }
                let before = if row == 0 { 0 } else { cumulative[row - 1] };
                let within = (target - before.min(*target)) / u128::from(self.wx[row]).max(1);
                let (low, high) = (bracket.low[row], bracket.high[row]);
                let wanted = self.prefix[low] + within;
                // Within the row's candidates only: a short search.
                let column = (low
                    + self.prefix[low..=high].partition_point(|prefix| *prefix <= wanted))
                .saturating_sub(1)
                .clamp(low, high.saturating_sub(1).max(low));
                self.cell(row, column)
            })
            .collect();
        sample.sort_unstable_by(f64::total_cmp);
        sample
    }

    fn explicit(&self, low: &[usize], high: &[usize], rank: u128) -> f64 {
        let mut cells: Vec<(f64, u128)> = Vec::new();
        for row in 0..self.xs.len() {
            for column in low[row]..high[row] {
                cells.push((
                    self.cell(row, column),
                    u128::from(self.wx[row]) * u128::from(self.ww[column]),
                ));
            }
        }
        cells.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut seen = 0u128;
        for (value, weight) in &cells {
            seen += weight;
            if seen >= rank {
                return *value;
            }
        }
        cells.last().map_or(f64::NAN, |cell| cell.0)
    }
}

/// The candidates: per row, the columns [low, high); `below` is the weight of the pairs
/// left of `low`, all smaller than every candidate.
#[derive(Clone)]
struct Bracket {
    low: Vec<usize>,
    high: Vec<usize>,
    below: u128,
}

impl Bracket {
    fn new(rows: usize, columns: usize) -> Bracket {
        Bracket {
            low: vec![0; rows],
            high: vec![columns; rows],
            below: 0,
        }
    }

    fn cells(&self) -> usize {
        self.low.iter().zip(&self.high).map(|(l, h)| h - l).sum()
    }

    fn weight(&self, matrix: &PairMatrix<'_>) -> u128 {
        let mut total = 0u128;
        for row in 0..self.low.len() {
            total += u128::from(matrix.wx[row])
                * (matrix.prefix[self.high[row]] - matrix.prefix[self.low[row]]);
        }
        total
    }

    /// Everything ≤ a pivot whose count is `at_most` lies below the answer.
    fn raise(&mut self, at_most_rows: &[usize], at_most: u128) {
        for (low, bound) in self.low.iter_mut().zip(at_most_rows) {
            *low = (*low).max(*bound);
        }
        self.below = self.below.max(at_most);
    }

    /// Everything ≥ a pivot lies above the answer.
    fn lower(&mut self, less_rows: &[usize]) {
        for (high, bound) in self.high.iter_mut().zip(less_rows) {
            *high = (*high).min(*bound);
        }
    }
}

/// Per-row counts of the two pivots of a round: ≤ and < each.
struct Scratch([Vec<usize>; 4]);

impl Scratch {
    fn new(rows: usize) -> Scratch {
        Scratch([vec![0; rows], vec![0; rows], vec![0; rows], vec![0; rows]])
    }

    fn all(&mut self) -> [&mut [usize]; 4] {
        let [a, b, c, d] = &mut self.0;
        [a, b, c, d]
    }

    fn at_most(&self, pivot: usize) -> &[usize] {
        &self.0[2 * pivot]
    }

    fn less(&self, pivot: usize) -> &[usize] {
        &self.0[2 * pivot + 1]
    }
}

/// The sample value at `share` of the way, moved `direction` × 3 standard deviations of a
/// sample quantile (Floyd–Rivest), so the two pivots bracket the rank with high probability.
fn quantile(sample: &[f64], share: f64, direction: f64) -> f64 {
    let size = sample.len() as f64;
    let spread = 1.5 * size.sqrt() + 1.0;
    let at = (share * size + direction * spread).max(0.0) as usize;
    sample[at.min(sample.len() - 1)]
}

/// A tiny deterministic generator: selection needs random pivots, not secrecy, and the
/// engine must give the same answer every time.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_sorted(x: &[f64], y: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = x
            .iter()
            .flat_map(|a| y.iter().map(move |b| a - b))
            .collect();
        d.sort_unstable_by(f64::total_cmp);
        d
    }

    fn values(seed: u64, n: usize, levels: u64) -> Vec<f64> {
        let mut rng = SplitMix(seed);
        (0..n)
            .map(|_| (rng.next() % levels) as f64 * 0.37 - 3.0)
            .collect()
    }

    #[test]
    fn selection_equals_sorting_every_difference() {
        for (seed, n1, n2, levels) in [
            (1, 300, 170, 1_000_000),
            (2, 90, 400, 7),
            (3, 1, 5000, 100),
            (4, 2000, 3, 3),
            (5, 120, 120, 2),
        ] {
            let x = values(seed, n1, levels);
            let y = values(seed + 100, n2, levels);
            let sorted = explicit_sorted(&x, &y);
            let (ax, _) = Arm::from_samples(&x);
            let (ay, _) = Arm::from_samples(&y);
            let matrix = PairMatrix::new(&ax, &ay).unwrap();
            let m = sorted.len() as u128;
            for k in [1, 2, m / 3, m / 2, m / 2 + 1, m - 7, m] {
                let k = k.clamp(1, m);
                assert_eq!(
                    matrix.select(k),
                    sorted[k as usize - 1],
                    "seed {seed} k {k}"
                );
            }
        }
    }

    #[test]
    fn interval_uses_the_tie_corrected_rank() {
        // x − y for x = [1, 2, 3], y = [0]: differences 1, 2, 3; m/2 − 1.96·σ < 1 → k = 1.
        let (x, _) = Arm::from_samples(&[1.0, 2.0, 3.0]);
        let (y, _) = Arm::from_samples(&[0.0]);
        let (hl, bound) = hodges_lehmann(&x, &y, 1.0, 0.95, Some((0.95, true))).unwrap();
        assert_eq!(bound, Some(3.0));
        assert_eq!(hl.estimate, 2.0);
        assert_eq!(hl.ci, [1.0, 3.0]);
    }
}
