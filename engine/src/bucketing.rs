//! Bucketing: which units are in a rollout, which variant they get, and which metric cohort
//! they belong to. SDKs in other languages must match this exactly, so every step here is
//! specified in docs/bucketing.md and checked against the test vectors in
//! spec/bucketing.json.

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The number of buckets: a percentage has three decimals, so 100% is 100,000 buckets.
pub const BUCKETS: u64 = 100_000;

const ROLLOUT_SEED: u64 = 0;
const VARIANT_SEED: u64 = 1;

/// The unit's identity as hashed: the text of its stickiness attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit<'a> {
    Text(&'a str),
    Integer(i64),
    Unsigned(u64),
}

impl<'a> Unit<'a> {
    /// The unit named by an attribute's value, or `None` when the unit is unknown: a
    /// missing attribute, an empty string, or any other type (floats, booleans, objects).
    pub fn from_value(value: Option<&'a Value>) -> Option<Unit<'a>> {
        match value? {
            Value::String(text) if !text.is_empty() => Some(Unit::Text(text)),
            Value::Number(number) => {
                if let Some(integer) = number.as_i64() {
                    Some(Unit::Integer(integer))
                } else {
                    number.as_u64().map(Unit::Unsigned)
                }
            }
            _ => None,
        }
    }
}

/// The two buckets of one unit under one salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub rollout: u32,
    pub variant: u32,
}

/// Hashes `salt ++ ":" ++ unit` with both seeds. `salt_prefix` is the salt with the colon
/// already appended, computed once per flag.
pub fn buckets(salt_prefix: &[u8], unit: Unit<'_>) -> Buckets {
    with_hash_input(salt_prefix, unit, |data| Buckets {
        rollout: rollout_bucket(data),
        variant: variant_bucket(data),
    })
}

/// Calls `use_input` with the bytes a unit's buckets are hashed from,
/// `salt ++ ":" ++ unit`, so that evaluation can take the rollout bucket and, only when it
/// needs it, the variant one, from one assembly of the input.
#[inline]
pub fn with_hash_input<R>(
    salt_prefix: &[u8],
    unit: Unit<'_>,
    use_input: impl FnOnce(&[u8]) -> R,
) -> R {
    let mut integer_text = itoa::Buffer::new();
    let unit_bytes: &[u8] = match unit {
        Unit::Text(text) => text.as_bytes(),
        Unit::Integer(integer) => integer_text.format(integer).as_bytes(),
        Unit::Unsigned(integer) => integer_text.format(integer).as_bytes(),
    };
    // Most salts and units are short: they are joined on the stack, and only the rare long
    // pair allocates. The buffer stays small because it is zeroed on every evaluation.
    let length = salt_prefix.len() + unit_bytes.len();
    let mut stack = [0u8; 64];
    if length <= stack.len() {
        stack[..salt_prefix.len()].copy_from_slice(salt_prefix);
        stack[salt_prefix.len()..length].copy_from_slice(unit_bytes);
        use_input(&stack[..length])
    } else {
        use_input(&[salt_prefix, unit_bytes].concat())
    }
}

#[inline]
pub fn rollout_bucket(data: &[u8]) -> u32 {
    (xxh3_64_with_seed(data, ROLLOUT_SEED) % BUCKETS) as u32
}

#[inline]
pub fn variant_bucket(data: &[u8]) -> u32 {
    (xxh3_64_with_seed(data, VARIANT_SEED) % BUCKETS) as u32
}

/// The salt with its separator, as [`buckets`] takes it.
pub fn salt_prefix(salt: &str) -> Box<[u8]> {
    let mut prefix = Vec::with_capacity(salt.len() + 1);
    prefix.extend_from_slice(salt.as_bytes());
    prefix.push(b':');
    prefix.into_boxed_slice()
}

/// The rollout threshold of a percentage: units with a rollout bucket below it are in.
/// Percentages are clamped to 0..=100; validation refuses anything outside before this.
pub fn threshold(percentage: f64) -> u32 {
    (percentage.clamp(0.0, 100.0) * 1000.0).round() as u32
}

/// Which metric cohort a rollout bucket falls in for a threshold. Ordered treatment first,
/// so that stores can key maps by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// In the rollout: served the split.
    Treatment,
    /// Units from the same dimension outside the rollout, served the default variant; how
    /// many is the ramp's [`ControlBand`].
    Control,
}

impl Cohort {
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Treatment => "treatment",
            Cohort::Control => "control",
        }
    }
}

/// How many buckets the control cohort takes, given the treatment's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlBand {
    /// Every bucket not in the treatment.
    Rest,
    /// `thousandths / 1000` times the treatment's buckets, rounded down, and at most every
    /// bucket not in the treatment. 1000 is a control as large as the treatment.
    Times { thousandths: u32 },
}

impl ControlBand {
    /// A control as large as the treatment.
    pub const EQUAL: ControlBand = ControlBand::Times { thousandths: 1000 };

    /// The number of buckets in the control at `threshold`.
    pub fn size(self, threshold: u32) -> u32 {
        let threshold = threshold.min(BUCKETS as u32);
        let left = BUCKETS as u32 - threshold;
        match self {
            ControlBand::Rest => left,
            ControlBand::Times { thousandths } => {
                let wanted = u64::from(threshold) * u64::from(thousandths) / 1000;
                u32::try_from(wanted).unwrap_or(u32::MAX).min(left)
            }
        }
    }

    /// The control's buckets at `threshold`, `[start, end)`. The band grows from the middle
    /// bucket upwards (or from the threshold, once that is past the middle), and once the top
    /// is reached, from the top downwards. So as the threshold rises the control only grows
    /// or gives buckets to the treatment: a unit never leaves the control for no cohort, and
    /// never goes from the treatment back to the control.
    pub fn range(self, threshold: u32) -> std::ops::Range<u32> {
        const TOP: u32 = BUCKETS as u32;
        let size = self.size(threshold);
        let low = threshold.clamp(TOP / 2, TOP);
        if size <= TOP - low {
            low..low + size
        } else {
            TOP - size..TOP
        }
    }
}

/// Treatment is `[0, t)`; control is [`ControlBand::range`]. Every other bucket is in no
/// cohort, and so is every bucket at 0% and at 100%, where one side would be empty.
pub fn cohort(rollout_bucket: u32, threshold: u32, control: ControlBand) -> Option<Cohort> {
    if threshold == 0 || threshold >= BUCKETS as u32 {
        None
    } else if rollout_bucket < threshold {
        Some(Cohort::Treatment)
    } else {
        control
            .range(threshold)
            .contains(&rollout_bucket)
            .then_some(Cohort::Control)
    }
}

/// The index of the split entry a variant bucket selects, given the entries' weights.
/// Returns `None` only when the weights sum to zero, which validation refuses.
pub fn split_index(variant_bucket: u32, weights: &[u32]) -> Option<usize> {
    let total: u64 = weights.iter().map(|&weight| u64::from(weight)).sum();
    if total == 0 {
        return None;
    }
    let point = u64::from(variant_bucket) * total / BUCKETS;
    let mut running = 0u64;
    weights.iter().position(|&weight| {
        running += u64::from(weight);
        running > point
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_units_hash_as_their_decimal_text() {
        let prefix = salt_prefix("pricing");
        assert_eq!(
            buckets(&prefix, Unit::Integer(-42)),
            buckets(&prefix, Unit::Text("-42"))
        );
    }

    #[test]
    fn long_inputs_hash_like_short_ones() {
        let salt = "s".repeat(300);
        let prefix = salt_prefix(&salt);
        let data = format!("{salt}:user-1");
        assert_eq!(
            buckets(&prefix, Unit::Text("user-1")).rollout as u64,
            xxh3_64_with_seed(data.as_bytes(), 0) % BUCKETS
        );
    }

    #[test]
    fn unknown_units() {
        assert_eq!(Unit::from_value(None), None);
        assert_eq!(Unit::from_value(Some(&Value::from(""))), None);
        assert_eq!(Unit::from_value(Some(&Value::from(1.5))), None);
        assert_eq!(Unit::from_value(Some(&Value::Bool(true))), None);
        assert_eq!(
            Unit::from_value(Some(&Value::from(7))),
            Some(Unit::Integer(7))
        );
    }

    #[test]
    fn the_equal_control_mirrors_the_treatment() {
        let equal = ControlBand::EQUAL;
        assert_eq!(cohort(0, 5000, equal), Some(Cohort::Treatment));
        assert_eq!(cohort(4999, 5000, equal), Some(Cohort::Treatment));
        assert_eq!(cohort(5000, 5000, equal), None);
        assert_eq!(cohort(50000, 5000, equal), Some(Cohort::Control));
        assert_eq!(cohort(54999, 5000, equal), Some(Cohort::Control));
        assert_eq!(cohort(55000, 5000, equal), None);
        assert_eq!(cohort(60000, 60000, equal), Some(Cohort::Control));
        assert_eq!(cohort(59999, 60000, equal), Some(Cohort::Treatment));
        assert_eq!(cohort(99999, 100000, equal), None);
        assert_eq!(cohort(0, 0, equal), None);
    }

    #[test]
    fn the_rest_is_every_unit_outside_the_treatment() {
        let rest = ControlBand::Rest;
        assert_eq!(rest.range(1000), 1000..100000);
        assert_eq!(rest.range(60000), 60000..100000);
        assert_eq!(cohort(999, 1000, rest), Some(Cohort::Treatment));
        assert_eq!(cohort(1000, 1000, rest), Some(Cohort::Control));
        assert_eq!(cohort(49999, 1000, rest), Some(Cohort::Control));
        assert_eq!(cohort(0, 0, rest), None);
        assert_eq!(cohort(99999, 100000, rest), None);
    }

    #[test]
    fn a_multiple_grows_from_the_middle_then_from_the_top() {
        let three = ControlBand::Times { thousandths: 3000 };
        assert_eq!(three.range(1000), 50000..53000);
        // 3 × 20% is more than the upper half holds: the band reaches down from the top.
        assert_eq!(three.range(20000), 40000..100000);
        // Capped by what is left.
        assert_eq!(three.range(40000), 40000..100000);
        assert_eq!(three.range(70000), 70000..100000);
        let half = ControlBand::Times { thousandths: 500 };
        assert_eq!(half.range(1000), 50000..50500);
        assert_eq!(half.range(60000), 60000..90000);
        // Rounded down: 1.5 × 1 bucket is 1 bucket.
        assert_eq!(ControlBand::Times { thousandths: 1500 }.size(1), 1);
    }

    #[test]
    fn as_the_threshold_rises_no_unit_leaves_a_cohort_for_none_or_goes_back_to_control() {
        for band in [
            ControlBand::Rest,
            ControlBand::EQUAL,
            ControlBand::Times { thousandths: 500 },
            ControlBand::Times { thousandths: 2500 },
            ControlBand::Times { thousandths: 9000 },
        ] {
            let thresholds = [
                1, 1000, 5000, 17000, 25000, 33333, 50000, 50001, 75000, 99999,
            ];
            for pair in thresholds.windows(2) {
                for bucket in (0..100000).step_by(97).chain([49999, 50000, 99999]) {
                    let before = cohort(bucket, pair[0], band);
                    let after = cohort(bucket, pair[1], band);
                    let allowed = match before {
                        None => true,
                        Some(Cohort::Control) => after.is_some(),
                        Some(Cohort::Treatment) => after == Some(Cohort::Treatment),
                    };
                    assert!(
                        allowed,
                        "{band:?}: bucket {bucket} went from {before:?} at {} to {after:?} at {}",
                        pair[0], pair[1]
                    );
                }
            }
        }
    }

    #[test]
    fn thresholds_round_to_thousandths() {
        assert_eq!(threshold(5.0), 5000);
        assert_eq!(threshold(0.001), 1);
        assert_eq!(threshold(33.3335), 33334);
        assert_eq!(threshold(100.0), 100000);
    }
}
