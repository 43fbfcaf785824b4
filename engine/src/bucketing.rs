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

/// Which metric cohort a rollout bucket falls in for a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// In the rollout: served the split.
    Treatment,
    /// As many units (or all the rest), from the same dimension, served the default variant.
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

/// Treatment is `[0, t)`; control is `[50000, 50000 + t)` while `t ≤ 50000`, else
/// `[t, 100000)`. Every other bucket is in no cohort.
pub fn cohort(rollout_bucket: u32, threshold: u32) -> Option<Cohort> {
    const HALF: u32 = (BUCKETS / 2) as u32;
    if rollout_bucket < threshold {
        Some(Cohort::Treatment)
    } else if threshold <= HALF {
        (rollout_bucket >= HALF && rollout_bucket < HALF + threshold).then_some(Cohort::Control)
    } else {
        Some(Cohort::Control)
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
    fn control_band_mirrors_treatment() {
        assert_eq!(cohort(0, 5000), Some(Cohort::Treatment));
        assert_eq!(cohort(4999, 5000), Some(Cohort::Treatment));
        assert_eq!(cohort(5000, 5000), None);
        assert_eq!(cohort(50000, 5000), Some(Cohort::Control));
        assert_eq!(cohort(54999, 5000), Some(Cohort::Control));
        assert_eq!(cohort(55000, 5000), None);
        assert_eq!(cohort(60000, 60000), Some(Cohort::Control));
        assert_eq!(cohort(59999, 60000), Some(Cohort::Treatment));
        assert_eq!(cohort(99999, 100000), Some(Cohort::Treatment));
        assert_eq!(cohort(0, 0), None);
    }

    #[test]
    fn thresholds_round_to_thousandths() {
        assert_eq!(threshold(5.0), 5000);
        assert_eq!(threshold(0.001), 1);
        assert_eq!(threshold(33.3335), 33334);
        assert_eq!(threshold(100.0), 100000);
    }
}
