//! The one bin layout of every `value` metric: log-spaced bins of at most 0.5% relative
//! width from 10⁻⁶ to 10⁹ (6,927 bins).
//!
//! One fixed layout for every metric, flag, stage, cohort and node is what makes the
//! aggregates mergeable by adding counts (docs/statistics.md, "Histograms"): no node has to
//! agree with another on a metric's range, and a histogram is stored as bin indices, not
//! edges. The range covers any latency from nanoseconds (as milliseconds) to days, sizes up
//! to a gigabyte, and counts; the first bin (edge 10⁻⁶) also takes zero and everything
//! below it, the last everything above 10⁹. The width keeps the test's ties between values
//! that differ by less than 0.5%, 10 times finer than a 5% tolerance and 2.5 times finer
//! than a 1.25% one (bins must be ≥ 4× finer than the tolerance: docs/statistics.md, "Bin
//! resolution"). Changing the layout would make stored indices mean other values: it is
//! part of the storage format.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ripcord_engine::stats::{Histogram, StatsError};

/// The upper edge of the first bin, which takes zero and everything below.
pub const MIN: f64 = 1e-6;
/// The upper edge of the last bin, which takes everything above too.
pub const MAX: f64 = 1e9;
/// No bin is wider than this, relative to its lower edge.
pub const RELATIVE_WIDTH: f64 = 0.005;

static LAYOUT: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::log_spaced(MIN, MAX, RELATIVE_WIDTH).expect("the layout's constants are valid")
});

/// An empty histogram over the layout.
pub fn empty() -> Histogram {
    LAYOUT.clone()
}

/// The bins' upper edges, the values they stand for.
pub fn edges() -> &'static [f64] {
    LAYOUT.bins()
}

/// The index of the bin `value` falls in; NaN (which validation refuses) lands in the first.
pub fn bin_of(value: f64) -> u32 {
    let edges = edges();
    let index = edges.partition_point(|edge| *edge < value);
    // At most 6,927 bins: the index always fits.
    index.min(edges.len() - 1) as u32
}

/// A histogram over the layout from sparse counts by bin index.
pub fn histogram(counts: &BTreeMap<u32, u64>) -> Result<Histogram, StatsError> {
    let edges = edges();
    let mut dense = vec![0u64; edges.len()];
    for (bin, count) in counts {
        let slot = dense.get_mut(*bin as usize).ok_or_else(|| {
            StatsError::Invalid(format!(
                "bin {bin} is outside the layout's {} bins",
                edges.len()
            ))
        })?;
        *slot = slot.saturating_add(*count);
    }
    Histogram::from_parts(edges.to_vec(), dense)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_fixed() {
        // Stored histograms are bin indices into this layout: these numbers are part of the
        // storage format and must not change.
        let edges = edges();
        assert_eq!(edges.len(), 6927);
        assert_eq!(edges[0], MIN);
        assert_eq!(edges[edges.len() - 1], MAX);
        for pair in edges.windows(2) {
            assert!(
                pair[1] / pair[0] <= 1.0 + RELATIVE_WIDTH + 1e-12,
                "{pair:?}"
            );
        }
    }

    #[test]
    fn values_land_in_the_bin_whose_upper_edge_they_reach() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(MIN / 10.0), 0);
        assert_eq!(bin_of(MIN), 0);
        assert_eq!(bin_of(MAX * 10.0), edges().len() as u32 - 1);
        for value in [0.37, 1.0, 99.9, 100.0, 123.4, 5_000.0, 7.7e8] {
            let bin = bin_of(value) as usize;
            assert!(edges()[bin] >= value, "{value}");
            assert!(edges()[bin - 1] < value, "{value}");
            assert!(
                edges()[bin] / value <= 1.0 + RELATIVE_WIDTH + 1e-12,
                "{value} is stood for by {}",
                edges()[bin]
            );
        }
    }

    #[test]
    fn sparse_counts_become_the_histogram_of_the_values() {
        let values = [0.0, 0.5, 12.0, 12.01, 250.0, 250.0, 3e9];
        let mut expected = empty();
        let mut sparse = BTreeMap::new();
        for value in values {
            assert!(expected.record(value));
            *sparse.entry(bin_of(value)).or_insert(0) += 1;
        }
        assert_eq!(histogram(&sparse).unwrap(), expected);
        let outside = BTreeMap::from([(edges().len() as u32, 1)]);
        assert!(histogram(&outside).is_err());
    }
}
