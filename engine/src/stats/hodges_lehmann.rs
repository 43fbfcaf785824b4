//! The Hodges–Lehmann shift and its interval, on samples and histograms alike
//! (docs/statistics.md, "Hodges–Lehmann shift and interval").
//!
//! Both forms are weighted: a sample is its distinct values with multiplicities, a histogram
//! its non-empty bins with counts, and the pair (i, j) stands for weight c_x[i]·c_y[j]. An
//! order statistic of the m = n1·n2 differences is found by selection over the implicit
//! sorted matrix d(i, j) = x_i + (−y)_j (rows and columns both increasing), never by
//! materializing it:
//!
//! 1. candidates are kept as one column range per row, and only rows that still hold some
//!    are visited; a pass with two pointers counts the pairs ≤ v (and < v) for any v in
//!    O(rows + columns), and in far less once the candidates are few;
//! 2. each round draws a weighted random sample of candidates and takes two pivots that
//!    bracket the wanted rank (Floyd–Rivest), which leaves ~5% of the candidates;
//! 3. once ≤ [`EXPLICIT_CELLS`] candidates remain, they are listed, sorted and walked by
//!    weight: the explicit sorted differences of the definition on what is left.
//!
//! The result is the exact order statistic (the same number sorting all n1·n2 differences
//! gives; tested against that), in O((n1 + n2) log m) expected time. `x − y` equals
//! `x + (−y)` bit for bit, and IEEE subtraction is monotone, so the counting passes see
//! exactly the values the explicit list would.

use serde::{Deserialize, Serialize};

use super::normal::normal_quantile;
use super::rank::Arm;

/// Candidates are listed explicitly once at most this many remain (or, for a small matrix,
/// half its rows + columns: a round costs about that much).
const EXPLICIT_CELLS: usize = 4096;
/// Weighted random draws per round, at most (a quarter of rows + columns for small ones,
/// so that drawing never costs more than counting).
const SAMPLE: usize = 4096;

/// The shift of treatment relative to control (not the difference of medians).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HodgesLehmann {
    /// The median of all pairwise differences treatment − control.
    pub estimate: f64,
    /// [d_(k), d_(m−k+1)] with k = max(1, floor(m/2 − z_{1−a/2}·sigma_U)).
    pub ci: [f64; 2],
    pub confidence: f64,
}

/// The estimate and interval with sigma_U the tie-corrected standard deviation of U. `None`
/// when an arm is empty or holds ±∞ (whose differences have no order).
///
/// With `bound = Some((confidence, upper))` it also returns the one-sided bound:
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
    let low_middle = found[0];
    let estimate = if m % 2 == 1 || low_middle.at_most > m / 2 {
        low_middle.value
    } else {
        let high_middle = low_middle
            .next
            .unwrap_or_else(|| matrix.next_above(low_middle.value));
        super::rank::midpoint(low_middle.value, high_middle)
    };
    let hl = HodgesLehmann {
        estimate,
        ci: [found[1].value, found[2].value],
        confidence,
    };
    Some((hl, found.get(3).map(|found| found.value)))
}

fn ci_rank(m: u128, z: f64, sigma_u: f64) -> u128 {
    let k = ((m as f64) / 2.0 - z * sigma_u).floor();
    if k.is_finite() && k >= 1.0 {
        (k as u128).min(m.div_ceil(2)).max(1)
    } else {
        1
    }
}

/// An order statistic, with the weight of the differences ≤ it, and the smallest
/// difference above it when the selection happened to see it.
#[derive(Debug, Clone, Copy)]
struct Found {
    value: f64,
    at_most: u128,
    next: Option<f64>,
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

    /// For two pivots, per candidate row, how many columns hold a difference ≤ and < the
    /// pivot, with the weighted totals over the whole matrix.
    ///
    /// Every pivot lies among the bracket's candidates, so in each row the answer is within
    /// [low, high): rows without candidates are not visited, and the pointers never walk
    /// outside a row's candidates. Rows increase, so both pointers only move left.
    fn count_two(
        &self,
        bracket: &Bracket,
        pivots: [f64; 2],
        scratch: &mut Scratch,
    ) -> [(u128, u128); 2] {
        let active = bracket.rows.len();
        let [le_a_out, lt_a_out, le_b_out, lt_b_out] = scratch.all(active);
        let (mut le_a, mut le_b) = (self.ws.len(), self.ws.len());
        let mut above_low = [0u128; 4];
        let candidates = bracket.rows.iter().zip(&bracket.low).zip(&bracket.high);
        let outputs = le_a_out
            .iter_mut()
            .zip(lt_a_out.iter_mut())
            .zip(le_b_out.iter_mut().zip(lt_b_out.iter_mut()));
        for (((row, low), high), ((le_a_at, lt_a_at), (le_b_at, lt_b_at))) in
            candidates.zip(outputs)
        {
            let (x, low) = (self.xs[*row], *low);
            le_a = boundary(&self.ws, x, pivots[0], le_a.min(*high), low);
            le_b = boundary(&self.ws, x, pivots[1], le_b.min(*high), low);
            let lt_a = below_equal(&self.ws, x, pivots[0], le_a, low);
            let lt_b = below_equal(&self.ws, x, pivots[1], le_b, low);
            (*le_a_at, *lt_a_at, *le_b_at, *lt_b_at) = (le_a, lt_a, le_b, lt_b);
            let weight = u128::from(self.wx[*row]);
            let base = self.prefix[low];
            above_low[0] += weight * (self.prefix[le_a] - base);
            above_low[1] += weight * (self.prefix[lt_a] - base);
            above_low[2] += weight * (self.prefix[le_b] - base);
            above_low[3] += weight * (self.prefix[lt_b] - base);
        }
        let below = bracket.below;
        [
            (below + above_low[0], below + above_low[1]),
            (below + above_low[2], below + above_low[3]),
        ]
    }

    /// The smallest difference above `value`, or `value` itself when none is.
    fn next_above(&self, value: f64) -> f64 {
        let everything = Bracket::new(self.xs.len(), self.ws.len());
        let mut scratch = Scratch::new(self.xs.len());
        self.count_two(&everything, [value, value], &mut scratch);
        scratch
            .at_most(0)
            .iter()
            .enumerate()
            .filter(|(_, column)| **column < self.ws.len())
            .map(|(row, column)| self.cell(row, *column))
            .min_by(f64::total_cmp)
            .unwrap_or(value)
    }

    /// The k-th smallest difference by weight, 1-based; k is clamped into [1, m].
    #[cfg(test)]
    pub fn select(&self, k: u128) -> f64 {
        self.select_many(&[k])[0].value
    }

    /// Several order statistics. The wanted ranks of HL and its interval lie close
    /// together, so the first rounds bracket them all at once and only the last rounds run
    /// per rank.
    fn select_many(&self, ks: &[u128]) -> Vec<Found> {
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
            let weight = shared.cumulative(self, &mut scratch.cumulative);
            // Stop sharing once the ranks span a good part of what is left.
            if (last - first).saturating_mul(4) >= weight {
                break;
            }
            let sample = self.sample(&shared, &scratch.cumulative, &mut rng);
            let pivots = [
                quantile(&sample, (first - shared.below) as f64 / weight as f64, -1.0),
                quantile(&sample, (last - shared.below) as f64 / weight as f64, 1.0),
            ];
            let counts = self.count_two(&shared, pivots, &mut scratch);
            let before = shared.cells();
            for (index, (at_most, less)) in counts.into_iter().enumerate() {
                if at_most < *first {
                    shared.raise(scratch.at_most(index), at_most);
                } else if less >= *last {
                    shared.lower(scratch.less(index));
                }
            }
            shared.compact();
            if shared.cells() == before {
                break;
            }
        }
        let mut bracket = shared.clone();
        ks.iter()
            .map(|k| {
                bracket.copy_from(&shared);
                self.select_from(&mut bracket, *k, &mut rng, &mut scratch)
            })
            .collect()
    }

    fn explicit_cells(&self) -> usize {
        ((self.xs.len() + self.ws.len()) / 2).clamp(256, EXPLICIT_CELLS)
    }

    fn select_from(
        &self,
        bracket: &mut Bracket,
        k: u128,
        rng: &mut SplitMix,
        scratch: &mut Scratch,
    ) -> Found {
        loop {
            if bracket.cells() <= self.explicit_cells() {
                return self.explicit(bracket, k);
            }
            let weight = bracket.cumulative(self, &mut scratch.cumulative);
            let sample = self.sample(bracket, &scratch.cumulative, rng);
            let share = (k - bracket.below) as f64 / weight as f64;
            let pivots = [
                quantile(&sample, share, -1.0),
                quantile(&sample, share, 1.0),
            ];
            let counts = self.count_two(bracket, pivots, scratch);
            for (index, (at_most, less)) in counts.into_iter().enumerate() {
                if less < k && k <= at_most {
                    return Found {
                        value: pivots[index],
                        at_most,
                        next: None,
                    };
                }
                if at_most < k {
                    bracket.raise(scratch.at_most(index), at_most);
                } else {
                    bracket.lower(scratch.less(index));
                }
            }
            bracket.compact();
        }
    }

    /// A weighted random sample of the candidates, sorted. `cumulative` is the bracket's
    /// [`cumulative`](Bracket::cumulative) weight.
    fn sample(&self, bracket: &Bracket, cumulative: &[u128], rng: &mut SplitMix) -> Vec<f64> {
        let active = bracket.rows.len();
        let weight = cumulative.last().copied().unwrap_or(0);
        let size = ((self.xs.len() + self.ws.len()) / 4).clamp(256, SAMPLE);
        // Sorted targets let one forward walk over the rows find them all. A float draw is
        // uniform enough for a pivot and avoids u128 division.
        let mut targets: Vec<u128> = (0..size)
            .map(|_| ((rng.unit() * weight as f64) as u128).min(weight.saturating_sub(1)))
            .collect();
        targets.sort_unstable();
        let mut index = 0usize;
        let mut sample: Vec<f64> = targets
            .iter()
            .map(|target| {
                while index + 1 < active && cumulative[index] <= *target {
                    index += 1;
                }
                let row = bracket.rows[index];
                let before = if index == 0 { 0 } else { cumulative[index - 1] };
                let within = (target - before.min(*target)) / u128::from(self.wx[row]).max(1);
                let (low, high) = (bracket.low[index], bracket.high[index]);
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

    /// The candidate of rank `k` (over the whole matrix), from the sorted list of the
    /// candidates. Everything left of them is smaller and everything right of them larger,
    /// so the list also gives the weight ≤ the answer and the next larger difference.
    fn explicit(&self, bracket: &Bracket, k: u128) -> Found {
        let mut cells: Vec<(f64, u128)> = Vec::with_capacity(bracket.cells());
        for (index, row) in bracket.rows.iter().enumerate() {
            for column in bracket.low[index]..bracket.high[index] {
                cells.push((
                    self.cell(*row, column),
                    u128::from(self.wx[*row]) * u128::from(self.ww[column]),
                ));
            }
        }
        cells.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let rank = k.saturating_sub(bracket.below);
        let mut seen = bracket.below;
        let mut found: Option<Found> = None;
        for (value, weight) in &cells {
            match found.as_mut() {
                None => {
                    seen += weight;
                    if seen - bracket.below >= rank {
                        found = Some(Found {
                            value: *value,
                            at_most: seen,
                            next: None,
                        });
                    }
                }
                Some(found) if *value == found.value => found.at_most += weight,
                Some(found) => {
                    found.next = Some(*value);
                    break;
                }
            }
        }
        found.unwrap_or_else(|| Found {
            value: cells.last().map_or(f64::NAN, |cell| cell.0),
            at_most: seen,
            next: None,
        })
    }
}

/// The number of columns of row `x` whose difference is ≤ `pivot`, given that it lies in
/// [`low`, `le`] (`le`: the previous row's, or the end of this row's candidates).
#[inline(always)]
fn boundary(ws: &[f64], x: f64, pivot: f64, mut le: usize, low: usize) -> usize {
    while le > low && x + ws[le - 1] > pivot {
        le -= 1;
    }
    le
}

/// The columns < `pivot` from the columns ≤ it: the cells equal to the pivot are just left
/// of `le` (rarely more than one: values are distinct, but a sum can round).
#[inline(always)]
fn below_equal(ws: &[f64], x: f64, pivot: f64, mut le: usize, low: usize) -> usize {
    while le > low && x + ws[le - 1] == pivot {
        le -= 1;
    }
    le
}

/// The candidates: for each row that still holds some, the columns [low, high). `below` is
/// the weight of the pairs left of the candidates, all smaller than every candidate; pairs
/// right of them are all larger.
#[derive(Clone)]
struct Bracket {
    rows: Vec<usize>,
    low: Vec<usize>,
    high: Vec<usize>,
    below: u128,
}

impl Bracket {
    fn new(rows: usize, columns: usize) -> Bracket {
        Bracket {
            rows: (0..rows).collect(),
            low: vec![0; rows],
            high: vec![columns; rows],
            below: 0,
        }
    }

    fn cells(&self) -> usize {
        self.low.iter().zip(&self.high).map(|(l, h)| h - l).sum()
    }

    /// Fills `cumulative` with the weight of the candidates up to each candidate row, and
    /// returns the total.
    fn cumulative(&self, matrix: &PairMatrix<'_>, cumulative: &mut Vec<u128>) -> u128 {
        let mut running = 0u128;
        cumulative.clear();
        cumulative.extend(self.rows.iter().zip(&self.low).zip(&self.high).map(
            |((row, low), high)| {
                running +=
                    u128::from(matrix.wx[*row]) * (matrix.prefix[*high] - matrix.prefix[*low]);
                running
            },
        ));
        running
    }

    /// `clone_from` that keeps the allocations: a round's buffers are the size of the
    /// samples, and fresh ones each time cost more in page faults than the round itself.
    fn copy_from(&mut self, other: &Bracket) {
        self.rows.clone_from(&other.rows);
        self.low.clone_from(&other.low);
        self.high.clone_from(&other.high);
        self.below = other.below;
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

    /// Forgets the rows left without candidates.
    fn compact(&mut self) {
        let mut kept = 0;
        for index in 0..self.rows.len() {
            if self.low[index] < self.high[index] {
                self.rows[kept] = self.rows[index];
                self.low[kept] = self.low[index];
                self.high[kept] = self.high[index];
                kept += 1;
            }
        }
        self.rows.truncate(kept);
        self.low.truncate(kept);
        self.high.truncate(kept);
    }
}

/// The buffers of a round, kept from one round to the next: per candidate row, the counts
/// of the two pivots (≤ and < each), and the cumulative weight the sample is drawn from.
struct Scratch {
    counts: [Vec<usize>; 4],
    cumulative: Vec<u128>,
}

impl Scratch {
    fn new(rows: usize) -> Scratch {
        Scratch {
            counts: [vec![0; rows], vec![0; rows], vec![0; rows], vec![0; rows]],
            cumulative: Vec::with_capacity(rows),
        }
    }

    fn all(&mut self, active: usize) -> [&mut [usize]; 4] {
        let [a, b, c, d] = &mut self.counts;
        [
            &mut a[..active],
            &mut b[..active],
            &mut c[..active],
            &mut d[..active],
        ]
    }

    fn at_most(&self, pivot: usize) -> &[usize] {
        &self.counts[2 * pivot]
    }

    fn less(&self, pivot: usize) -> &[usize] {
        &self.counts[2 * pivot + 1]
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

    /// Every output of `hodges_lehmann` against the definition on the explicit sorted
    /// differences, for shapes that end the selection in each way: listed candidates, a
    /// pivot of exactly the wanted rank, and (ties, even m) a middle pair split across two
    /// values.
    #[test]
    fn estimate_interval_and_bound_equal_the_explicit_definition() {
        for (seed, n1, n2, levels) in [
            (11, 2000, 1500, 1_000_000_000),
            (12, 1500, 1500, 40),
            (13, 2, 3, 1000),
            (14, 640, 10, 5),
            (15, 1001, 999, 3),
        ] {
            let x = values(seed, n1, levels);
            let y = values(seed + 100, n2, levels);
            let sorted = explicit_sorted(&x, &y);
            let (ax, _) = Arm::from_samples(&x);
            let (ay, _) = Arm::from_samples(&y);
            let sigma = super::super::RankSums::from_arms(&ax, &ay).unwrap().sigma;
            let m = sorted.len();
            let at = |rank: u128| sorted[rank as usize - 1];
            let (hl, bound) = hodges_lehmann(&ax, &ay, sigma, 0.9, Some((0.95, true))).unwrap();
            let estimate = if m % 2 == 1 {
                sorted[m / 2]
            } else {
                super::super::rank::midpoint(sorted[m / 2 - 1], sorted[m / 2])
            };
            assert_eq!(hl.estimate, estimate, "seed {seed}");
            let k = ci_rank(m as u128, normal_quantile(0.95), sigma);
            assert_eq!(hl.ci, [at(k), at(m as u128 - k + 1)], "seed {seed}");
            let k = ci_rank(m as u128, normal_quantile(0.95), sigma);
            assert_eq!(bound, Some(at(m as u128 - k + 1)), "seed {seed}");
            let (_, lower) = hodges_lehmann(&ax, &ay, sigma, 0.9, Some((0.99, false))).unwrap();
            let k = ci_rank(m as u128, normal_quantile(0.99), sigma);
            assert_eq!(lower, Some(at(k)), "seed {seed}");
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
