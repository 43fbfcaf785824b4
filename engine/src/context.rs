//! The evaluation context: attributes by name, built for the lookups evaluation makes.
//!
//! Finding attributes is most of the cost of an evaluation. A condition knows its
//! attribute's name when its snapshot is compiled, so the name's hash is computed then, once,
//! and a lookup neither hashes nor calls out to compare names (they are short, and compared
//! inline).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An attribute name with its hash.
#[derive(Debug, Clone)]
pub struct AttributeName {
    hash: u64,
    text: Box<str>,
}

/// The hash of a short string: attribute names, flag keys, the strings of an `in`.
#[inline]
pub(crate) fn hash_text(text: &str) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// A set of strings compared inline: the values of `eq` and `in`. A few strings are
/// compared one by one, which beats hashing the value. More are found by hash; those of at
/// most seven bytes (country codes, plans, platforms: most of what `in` lists hold) are
/// packed into a word with their length, so that finding one is a word compare, not a
/// string compare.
#[derive(Debug, Default)]
pub(crate) struct StringSet {
    few: Vec<Box<str>>,
    short: hashbrown::HashTable<u64>,
    long: hashbrown::HashTable<Box<str>>,
}

/// Up to this many strings, comparing each costs less than hashing once.
const FEW: usize = 4;

/// A string of at most seven bytes as one word: its bytes, then its length in the last byte.
#[inline]
fn pack(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() > 7 {
        return None;
    }
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    word[7] = bytes.len() as u8;
    Some(u64::from_ne_bytes(word))
}

#[inline]
fn hash_word(word: u64) -> u64 {
    // The high half of the product mixes every input bit into the low bits, which pick the
    // bucket; the low half keeps the high bits, which pick the tag.
    let product = u128::from(word) * 0x9e37_79b9_7f4a_7c15;
    (product as u64) ^ ((product >> 64) as u64)
}

impl StringSet {
    pub(crate) fn insert(&mut self, text: &str) {
        if self.contains(text) {
            return;
        }
        let hashed = !self.short.is_empty() || !self.long.is_empty();
        if !hashed && self.few.len() < FEW {
            self.few.push(text.into());
            return;
        }
        let moved: Vec<Box<str>> = self.few.drain(..).collect();
        for known in moved.iter().map(|known| &**known).chain([text]) {
            match pack(known) {
                Some(word) => {
                    self.short
                        .insert_unique(hash_word(word), word, |&word| hash_word(word));
                }
                None => {
                    self.long
                        .insert_unique(hash_text(known), known.into(), |known| hash_text(known));
                }
            }
        }
    }

    #[inline]
    pub(crate) fn contains(&self, text: &str) -> bool {
        if !self.few.is_empty() {
            return self.few.iter().any(|known| same_text(known, text));
        }
        match pack(text) {
            Some(word) => self
                .short
                .find(hash_word(word), |&known| known == word)
                .is_some(),
            None => self
                .long
                .find(hash_text(text), |known| same_text(known, text))
                .is_some(),
        }
    }
}

/// Positions by key, found by hash and compared inline: the flags of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    table: hashbrown::HashTable<(Box<str>, usize)>,
}

impl KeyIndex {
    pub(crate) fn insert(&mut self, key: &str, position: usize) {
        self.table
            .insert_unique(hash_text(key), (key.into(), position), |(known, _)| {
                hash_text(known)
            });
    }

    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<usize> {
        self.table
            .find(hash_text(key), |(known, _)| same_text(known, key))
            .map(|&(_, position)| position)
    }
}

#[inline]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

impl AttributeName {
    pub fn new(text: impl Into<Box<str>>) -> AttributeName {
        let text = text.into();
        AttributeName {
            hash: hash_text(&text),
            text,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for AttributeName {
    #[inline]
    fn eq(&self, other: &AttributeName) -> bool {
        self.hash == other.hash && same_bytes(self.text.as_bytes(), other.text.as_bytes())
    }
}

impl Eq for AttributeName {}

impl Hash for AttributeName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Compares two names inline: attribute names are a few bytes long, and a call into the
/// C library's `memcmp` costs more than comparing them. Two loads that may overlap cover
/// any length from 4 to 16 bytes.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let length = a.len();
    if length != b.len() {
        return false;
    }
    match length {
        0 => true,
        // The first, middle and last bytes are every byte of a name this short.
        1..=3 => a[0] == b[0] && a[length / 2] == b[length / 2] && a[length - 1] == b[length - 1],
        4..=8 => word32(a, 0) == word32(b, 0) && word32(a, length - 4) == word32(b, length - 4),
        9..=16 => word64(a, 0) == word64(b, 0) && word64(a, length - 8) == word64(b, length - 8),
        _ => a == b,
    }
}

#[inline]
fn word32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[inline]
fn word64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(word)
}

/// Passes an [`AttributeName`]'s precomputed hash through.
#[derive(Default)]
pub struct PrecomputedHasher(u64);

impl Hasher for PrecomputedHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `AttributeName`s are hashed here, and they write one u64; anything else
        // still gets a hash rather than a panic.
        for &byte in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Attributes = HashMap<AttributeName, Value, BuildHasherDefault<PrecomputedHasher>>;

/// The evaluation context: attributes by name. `targetingKey` is an attribute like another.
///
/// The hash of a name is not keyed, so a caller who chooses the names can make them
/// collide; callers that take contexts from the network bound the number of attributes
/// before building one, which bounds the damage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    attributes: Attributes,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// A context with room for `attributes` attributes before it grows.
    pub fn with_capacity(attributes: usize) -> Context {
        Context {
            attributes: Attributes::with_capacity_and_hasher(attributes, Default::default()),
        }
    }

    pub fn insert(&mut self, name: impl Into<Box<str>>, value: Value) {
        self.attributes.insert(AttributeName::new(name), value);
    }

    /// The attribute's value, by a name whose hash is already known.
    pub fn attribute(&self, name: &AttributeName) -> Option<&Value> {
        self.attributes.get(name)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attribute(&AttributeName::new(name))
    }

    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }
}

impl<N: Into<Box<str>>> FromIterator<(N, Value)> for Context {
    fn from_iter<I: IntoIterator<Item = (N, Value)>>(attributes: I) -> Context {
        let attributes = attributes.into_iter();
        let mut context = Context {
            attributes: Attributes::with_capacity_and_hasher(
                attributes.size_hint().0,
                BuildHasherDefault::default(),
            ),
        };
        for (name, value) in attributes {
            context.insert(name, value);
        }
        context
    }
}

impl From<serde_json::Map<String, Value>> for Context {
    fn from(attributes: serde_json::Map<String, Value>) -> Context {
        attributes.into_iter().collect()
    }
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Context, D::Error> {
        serde_json::Map::<String, Value>::deserialize(deserializer).map(Context::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_by_every_byte() {
        let names = [
            "",
            "a",
            "b",
            "email",
            "emaik",
            "targetingKey",
            "targetingKez",
            "userId",
            "userid",
            "a-rather-long-attribute-name",
            "a-rather-long-attribute-namf",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    AttributeName::new(a) == AttributeName::new(b),
                    a == b,
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn string_sets_of_every_size_hold_what_was_inserted() {
        for size in 0..12 {
            let mut set = StringSet::default();
            // Short and long strings, and strings that differ only in length or in a byte
            // the packing could confuse (a zero byte).
            let value = |index: usize| match index % 3 {
                0 => format!("v{index}"),
                1 => format!("a-longer-value-{index}"),
                _ => format!("{index}\0"),
            };
            for index in 0..size {
                set.insert(&value(index));
                set.insert(&value(index));
            }
            for index in 0..size {
                assert!(set.contains(&value(index)), "{index} of {size}");
            }
            assert!(!set.contains(&value(size)), "{size}");
            assert!(!set.contains(""), "{size}");
            assert!(!set.contains("v"), "{size}");
        }
    }

    #[test]
    fn lookups_find_what_was_inserted() {
        let context: Context = (0..100)
            .map(|index| (format!("attribute-{index}"), Value::from(index)))
            .collect();
        for index in 0..100 {
            assert_eq!(
                context.get(&format!("attribute-{index}")),
                Some(&Value::from(index))
            );
        }
        assert_eq!(context.get("attribute-100"), None);
        assert_eq!(context.len(), 100);
    }
}
