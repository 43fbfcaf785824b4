//! Mergeable histograms (docs/statistics.md, "Histograms"). Each bin is one tie group,
//! represented by its bin value.

use serde::{Deserialize, Serialize};

use super::StatsError;

/// At most 2^53 observations per histogram (and per sample): every count then stays exact
/// in f64, and the rank sums over bins stay exact in u128.
pub const MAX_TOTAL_COUNT: u64 = 1 << 53;

/// Counts over fixed, strictly increasing bin values shared by every node, arm and stage of
/// a metric. Bin b holds the observations in (bins[b−1], bins[b]] and stands for the
/// value bins[b] (the upper edge); the first bin also takes everything below it and
/// the last everything above it, so no observation is lost.
///
/// Serializes as `{"bins": [...], "counts": [...]}`, the judge's histogram form;
/// deserializing validates, so a stored or received histogram is always well-formed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawHistogram")]
pub struct Histogram {
    bins: Vec<f64>,
    counts: Vec<u64>,
    /// Kept so that recording stays O(log B).
    #[serde(skip)]
    total: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistogram {
    bins: Vec<f64>,
    counts: Vec<u64>,
}

impl TryFrom<RawHistogram> for Histogram {
    type Error = StatsError;

    fn try_from(raw: RawHistogram) -> Result<Histogram, StatsError> {
        Histogram::from_parts(raw.bins, raw.counts)
    }
}

impl Histogram {
    /// An empty histogram over `bins`, which must be finite and strictly increasing.
    pub fn new(bins: Vec<f64>) -> Result<Histogram, StatsError> {
        let counts = vec![0; bins.len()];
        Histogram::from_parts(bins, counts)
    }

    pub fn from_parts(bins: Vec<f64>, counts: Vec<u64>) -> Result<Histogram, StatsError> {
        if bins.is_empty() {
            return Err(StatsError::NoBins);
        }
        check_bins(&bins)?;
        if bins.len() != counts.len() {
            return Err(StatsError::CountsLength {
                bins: bins.len(),
                counts: counts.len(),
            });
        }
        let mut total = 0u64;
        for count in &counts {
            total = total.saturating_add(*count);
        }
        if total > MAX_TOTAL_COUNT {
            return Err(StatsError::TooManyObservations);
        }
        Ok(Histogram {
            bins,
            counts,
            total,
        })
    }

    /// Log-spaced bins from `min` to `max` (both > 0) with relative width at most
    /// `relative_width` (e.g. 0.05 = 5%). Power asks for ≥ 50 bins over the metric's range,
    /// and for the tolerance gate ≥ 4× finer than the tolerance. Bins below `min` are not
    /// needed: the first bin takes everything ≤ `min`, including zero and negatives.
    pub fn log_spaced(min: f64, max: f64, relative_width: f64) -> Result<Histogram, StatsError> {
        let valid = min.is_finite()
            && max.is_finite()
            && min > 0.0
            && max > min
            && relative_width.is_finite()
            && relative_width > 0.0;
        if !valid {
            return Err(StatsError::Invalid(
                "log-spaced bins need 0 < min < max and a relative width > 0".to_string(),
            ));
        }
        let steps = ((max / min).ln() / relative_width.ln_1p()).ceil();
        if steps.is_nan() || steps >= 1_000_000.0 {
            return Err(StatsError::Invalid(
                "log-spaced bins: more than 1,000,000 bins".to_string(),
            ));
        }
        let steps = steps as usize;
        let ratio = (max / min).ln() / steps as f64;
        let mut bins: Vec<f64> = (0..=steps)
            .map(|i| min * (ratio * i as f64).exp())
            .collect();
        if let Some(last) = bins.last_mut() {
            *last = max;
        }
        bins.dedup();
        Histogram::new(bins)
    }

    pub fn bins(&self) -> &[f64] {
        &self.bins
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bin an observation falls in; `None` for NaN, which is dropped.
    pub fn bin_of(&self, value: f64) -> Option<usize> {
        if value.is_nan() {
            return None;
        }
        let index = self.bins.partition_point(|edge| *edge < value);
        Some(index.min(self.bins.len() - 1))
    }

    /// Adds `count` observations of `value`; returns false (and changes nothing) for NaN or
    /// when the histogram would exceed [`MAX_TOTAL_COUNT`].
    pub fn record_n(&mut self, value: f64, count: u64) -> bool {
        let Some(bin) = self.bin_of(value) else {
            return false;
        };
        if self.total.saturating_add(count) > MAX_TOTAL_COUNT {
            return false;
        }
        self.counts[bin] += count;
        self.total += count;
        true
    }

    pub fn record(&mut self, value: f64) -> bool {
        self.record_n(value, 1)
    }

    /// Adds `other`'s counts bin by bin: exact, associative, order-independent.
    pub fn merge(&mut self, other: &Histogram) -> Result<(), StatsError> {
        if self.bins != other.bins {
            return Err(StatsError::BinsMismatch);
        }
        if self.total().saturating_add(other.total()) > MAX_TOTAL_COUNT {
            return Err(StatsError::TooManyObservations);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        Ok(())
    }

    pub fn same_bins(&self, other: &Histogram) -> bool {
        self.bins == other.bins
    }

    /// numpy's median of the expanded sample; `None` when empty.
    pub fn median(&self) -> Option<f64> {
        super::rank::Arm::from_histogram(self).median()
    }
}

/// Bins must be finite and strictly increasing; the error names the first bad index.
pub(crate) fn check_bins(bins: &[f64]) -> Result<(), StatsError> {
    for (index, value) in bins.iter().enumerate() {
        if !value.is_finite() || (index > 0 && bins[index - 1] >= *value) {
            return Err(StatsError::BinsNotIncreasing(index));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bin_of_their_upper_edge() {
        let mut histogram = Histogram::new(vec![1.0, 2.0, 4.0]).unwrap();
        for value in [-5.0, 1.0, 1.5, 2.0, 3.0, 100.0] {
            assert!(histogram.record(value));
        }
        assert!(!histogram.record(f64::NAN));
        assert_eq!(histogram.counts(), &[2, 2, 2]);
    }

    #[test]
    fn log_spaced_bins_are_fine_enough() {
        let histogram = Histogram::log_spaced(1.0, 5000.0, 0.05).unwrap();
        let bins = histogram.bins();
        assert!(bins.len() >= 175, "{}", bins.len());
        for pair in bins.windows(2) {
            assert!(pair[1] / pair[0] <= 1.05 + 1e-12);
        }
        assert_eq!(bins[0], 1.0);
        assert_eq!(*bins.last().unwrap(), 5000.0);
    }

    #[test]
    fn deserializing_validates() {
        let bad = serde_json::from_str::<Histogram>(r#"{"bins":[1,1],"counts":[1,2]}"#);
        assert!(bad.is_err());
        let short = serde_json::from_str::<Histogram>(r#"{"bins":[1,2],"counts":[1]}"#);
        assert!(short.is_err());
        let good: Histogram = serde_json::from_str(r#"{"bins":[1,2],"counts":[1,2]}"#).unwrap();
        assert_eq!(good.total(), 3);
        assert_eq!(
            serde_json::to_string(&good).unwrap(),
            r#"{"bins":[1.0,2.0],"counts":[1,2]}"#
        );
    }

    #[test]
    fn merging_requires_the_same_bins() {
        let mut a = Histogram::new(vec![1.0, 2.0]).unwrap();
        let b = Histogram::new(vec![1.0, 3.0]).unwrap();
        assert_eq!(a.merge(&b), Err(StatsError::BinsMismatch));
    }

    #[test]
    fn merging_is_order_independent() {
        let bins = Histogram::log_spaced(1.0, 1000.0, 0.1).unwrap();
        let parts: Vec<Histogram> = (0..5u64)
            .map(|node| {
                let mut histogram = bins.clone();
                for i in 0..(50 + node * 37) {
                    histogram.record(((i * 7919 + node * 104_729) % 1000) as f64 + 0.5);
                }
                histogram
            })
            .collect();
        let mut forward = bins.clone();
        for part in &parts {
            forward.merge(part).unwrap();
        }
        let mut backward = bins.clone();
        for part in parts.iter().rev() {
            backward.merge(part).unwrap();
        }
        // ((p0 + p1) + (p2 + p3)) + p4: associativity.
        let mut left = parts[0].clone();
        left.merge(&parts[1]).unwrap();
        let mut right = parts[2].clone();
        right.merge(&parts[3]).unwrap();
        left.merge(&right).unwrap();
        left.merge(&parts[4]).unwrap();
        assert_eq!(forward, backward);
        assert_eq!(forward, left);
        assert_eq!(
            forward.total(),
            parts.iter().map(Histogram::total).sum::<u64>()
        );
    }
}
