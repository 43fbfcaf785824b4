//! Each flag's OFREP answer, as far as it depends only on the flag and the variant served,
//! encoded once per snapshot.
//!
//! An OFREP success item is `{"key":…,"value":…,"reason":…,"variant":…,"metadata":{…}}`.
//! Of that, only the reason and a few metadata fields (cohort, stage, rule, missing unit)
//! depend on the context; the key, the value, the variant's name and the revision depend
//! on the flag and the variant alone. Encoded here once per snapshot, a bulk evaluation of
//! fifty flags copies two runs of bytes per flag instead of escaping keys, names and values
//! and formatting revisions again on every request. The bytes are exactly what serializing
//! the item with serde gives; `http::ofrep` tests that they are.

use ripcord_engine::{CompiledFlag, FlagType, Snapshot};
use serde_json::Value;

/// The pieces of every flag of a snapshot, by the flag's position in [`Snapshot::flags`].
#[derive(Debug)]
pub struct OfrepPieces {
    flags: Vec<FlagPieces>,
}

/// One flag's pieces, by variant.
#[derive(Debug)]
struct FlagPieces {
    variants: Vec<AroundReason>,
}

/// `{"key":K,"value":V,"reason":"` before the reason, and
/// `","variant":N,"metadata":{"revision":R,"cacheToken":T` after it.
#[derive(Debug)]
struct AroundReason {
    before: Box<[u8]>,
    after: Box<[u8]>,
}

impl OfrepPieces {
    pub fn new(snapshot: &Snapshot) -> OfrepPieces {
        OfrepPieces {
            flags: snapshot.flags().map(FlagPieces::new).collect(),
        }
    }

    /// The pieces around the reason of the flag at `position` serving `variant`; `None` if
    /// the snapshot has no such flag or variant.
    pub fn around_reason(&self, position: usize, variant: usize) -> Option<(&[u8], &[u8])> {
        let pieces = self.flags.get(position)?.variants.get(variant)?;
        Some((&pieces.before, &pieces.after))
    }
}

impl FlagPieces {
    fn new(flag: &CompiledFlag) -> FlagPieces {
        let key = json(&flag.key());
        let revision = flag.revision().to_string();
        let variants = flag
            .variants()
            .enumerate()
            .map(|(position, (name, value))| {
                let mut before = Vec::with_capacity(32 + key.len());
                before.extend_from_slice(br#"{"key":"#);
                before.extend_from_slice(&key);
                before.extend_from_slice(br#","value":"#);
                before.extend_from_slice(&json(&answered_value(flag.flag_type(), value)));
                before.extend_from_slice(br#","reason":""#);
                let mut after = Vec::with_capacity(48 + name.len());
                after.extend_from_slice(br#"","variant":"#);
                after.extend_from_slice(&json(&name));
                after.extend_from_slice(br#","metadata":{"revision":"#);
                after.extend_from_slice(revision.as_bytes());
                after.extend_from_slice(br#","cacheToken":"#);
                after.extend_from_slice(&json(flag.cache_token(position).unwrap_or_default()));
                AroundReason {
                    before: before.into_boxed_slice(),
                    after: after.into_boxed_slice(),
                }
            })
            .collect();
        FlagPieces { variants }
    }
}

/// A variant's value as OFREP answers it: float flags are written with a decimal point, so
/// that typed clients never read an integer.
pub fn answered_value(flag_type: FlagType, value: &Value) -> std::borrow::Cow<'_, Value> {
    match (flag_type, value.as_f64()) {
        (FlagType::Float, Some(number)) if !value.is_f64() => {
            std::borrow::Cow::Owned(Value::from(number))
        }
        _ => std::borrow::Cow::Borrowed(value),
    }
}

/// JSON text of a string or a [`Value`]. Neither can fail to serialize: their map keys are
/// strings and their numbers finite; should that change, `null` is written, which a client
/// reads as a missing value rather than as a wrong one.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}
