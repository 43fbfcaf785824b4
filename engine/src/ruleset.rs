//! The ruleset: what the server sends to an SDK that evaluates locally, and the deltas that
//! keep it current.
//!
//! A ruleset is an environment's flag document with the revision of the environment and of
//! every flag, so that an SDK compiles exactly the snapshot the server serves and reports the
//! same evaluation metadata. A delta carries the flags and segments that changed between two
//! revisions (`null` for one removed); applying the deltas of every revision in order gives
//! the same ruleset as fetching it whole. The JSON of both is the wire format of the HTTP
//! delivery endpoints and of the gRPC `Watch` stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::document::{Document, Flag, Segment};
use crate::error::DocumentError;
use crate::snapshot::{Limits, Snapshot};

/// An environment's document at one revision, with the revision each flag last changed at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    pub environment: String,
    pub revision: u64,
    /// Every flag of `document`, by key.
    pub flag_revisions: BTreeMap<String, u64>,
    pub document: Document,
}

/// A ruleset by reference, for the server to serialize or diff without copying a document.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RulesetRef<'a> {
    pub environment: &'a str,
    pub revision: u64,
    pub flag_revisions: &'a BTreeMap<String, u64>,
    pub document: &'a Document,
}

/// What changed from `from_revision` to `revision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesetDelta {
    pub environment: String,
    pub from_revision: u64,
    pub revision: u64,
    /// Flags added or changed, and `None` for flags removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, Option<Flag>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, Option<Segment>>,
    /// The new revision of every flag whose revision changed (a segment change moves the
    /// revision of the flags that use it without changing the flags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flag_revisions: BTreeMap<String, u64>,
}

/// Why a delta does not apply to a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta is for environment `{delta}`, the ruleset is of `{ruleset}`")]
    Environment { ruleset: String, delta: String },
    #[error("the delta goes from revision {delta} but the ruleset is at revision {ruleset}")]
    Revision { ruleset: u64, delta: u64 },
}

impl Ruleset {
    pub fn as_ref(&self) -> RulesetRef<'_> {
        RulesetRef {
            environment: &self.environment,
            revision: self.revision,
            flag_revisions: &self.flag_revisions,
            document: &self.document,
        }
    }

    /// A ruleset at revision 0 of a document read from a file (the SDK's bootstrap): every
    /// flag is at revision 0.
    pub fn from_document(environment: impl Into<String>, document: Document) -> Ruleset {
        Ruleset {
            environment: environment.into(),
            revision: 0,
            flag_revisions: document.flags.keys().map(|key| (key.clone(), 0)).collect(),
            document,
        }
    }

    /// Parses a ruleset from its JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Ruleset, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Validates and compiles the ruleset for evaluation. A ruleset comes from a server that
    /// validated it under its own limits, so only the document's own rules apply here.
    pub fn compile(&self) -> Result<Snapshot, DocumentError> {
        self.as_ref().compile()
    }

    /// Applies a delta: the ruleset is then at the delta's revision. A delta that does not
    /// start at this ruleset's revision changes nothing.
    pub fn apply(&mut self, delta: &RulesetDelta) -> Result<(), DeltaError> {
        if delta.environment != self.environment {
            return Err(DeltaError::Environment {
                ruleset: self.environment.clone(),
                delta: delta.environment.clone(),
            });
        }
        if delta.from_revision != self.revision {
            return Err(DeltaError::Revision {
                ruleset: self.revision,
                delta: delta.from_revision,
            });
        }
        for (key, flag) in &delta.flags {
            match flag {
                Some(flag) => {
                    self.document.flags.insert(key.clone(), flag.clone());
                }
                None => {
                    self.document.flags.remove(key);
                    self.flag_revisions.remove(key);
                }
            }
        }
        for (key, segment) in &delta.segments {
            match segment {
                Some(segment) => {
                    self.document.segments.insert(key.clone(), segment.clone());
                }
                None => {
                    self.document.segments.remove(key);
                }
            }
        }
        for (key, revision) in &delta.flag_revisions {
            self.flag_revisions.insert(key.clone(), *revision);
        }
        self.revision = delta.revision;
        Ok(())
    }
}

impl RulesetRef<'_> {
    /// The revision a flag last changed at; the environment's for a flag not listed.
    pub fn flag_revision(&self, key: &str) -> u64 {
        self.flag_revisions
            .get(key)
            .copied()
            .unwrap_or(self.revision)
    }

    pub fn compile(&self) -> Result<Snapshot, DocumentError> {
        Snapshot::compile(
            self.document,
            self.revision,
            |key| self.flag_revision(key),
            &Limits::unbounded(),
        )
    }

    /// The JSON of the ruleset, with every flag's revision listed.
    pub fn to_json(&self) -> Vec<u8> {
        // Every flag listed, even where the server's map leaves one to default to the
        // environment's revision: an SDK must not have to know that rule.
        let complete;
        let flag_revisions = if self
            .document
            .flags
            .keys()
            .all(|key| self.flag_revisions.contains_key(key))
            && self.flag_revisions.len() == self.document.flags.len()
        {
            self.flag_revisions
        } else {
            complete = self
                .document
                .flags
                .keys()
                .map(|key| (key.clone(), self.flag_revision(key)))
                .collect::<BTreeMap<_, _>>();
            &complete
        };
        let listed = RulesetRef {
            flag_revisions,
            ..*self
        };
        // A document is strings, numbers, maps and lists: serializing it cannot fail.
        serde_json::to_vec(&listed).unwrap_or_default()
    }
}

impl RulesetDelta {
    /// What changed from `old` to `new`, two revisions of the same environment.
    pub fn between(old: &RulesetRef<'_>, new: &RulesetRef<'_>) -> RulesetDelta {
        RulesetDelta {
            environment: new.environment.to_string(),
            from_revision: old.revision,
            revision: new.revision,
            flags: diff(&old.document.flags, &new.document.flags),
            segments: diff(&old.document.segments, &new.document.segments),
            flag_revisions: new
                .document
                .flags
                .keys()
                .filter_map(|key| {
                    let revision = new.flag_revision(key);
                    let unchanged =
                        old.document.flags.contains_key(key) && old.flag_revision(key) == revision;
                    (!unchanged).then(|| (key.clone(), revision))
                })
                .collect(),
        }
    }

    /// Whether the delta changes nothing but the revision.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.segments.is_empty() && self.flag_revisions.is_empty()
    }

    /// The keys of the flags whose evaluation may have changed: flags added, changed or
    /// removed, and flags whose segments changed.
    pub fn changed_flags(&self) -> impl Iterator<Item = &str> {
        let mut keys: Vec<&str> = self
            .flags
            .keys()
            .chain(self.flag_revisions.keys())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<RulesetDelta, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn diff<T: Clone + PartialEq>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
) -> BTreeMap<String, Option<T>> {
    let mut changes = BTreeMap::new();
    for (key, item) in new {
        if old.get(key) != Some(item) {
            changes.insert(key.clone(), Some(item.clone()));
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            changes.insert(key.clone(), None);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(yaml: &str) -> Document {
        Document::from_yaml(yaml).expect("test document")
    }

    const BEFORE: &str = r#"
segments:
  beta: { when: [{ attribute: track, op: eq, values: [beta] }] }
  staff: { when: [{ attribute: email, op: ends_with, values: ["@example.com"] }] }
flags:
  a: { type: boolean, variants: { "on": true, "off": false }, default_variant: "off" }
  b:
    type: string
    variants: { x: "x", y: "y" }
    default_variant: x
    rules: [{ segment: beta, serve: { variant: y } }]
  c: { type: integer, variants: { one: 1 }, default_variant: one }
"#;

    const AFTER: &str = r#"
segments:
  beta: { when: [{ attribute: track, op: in, values: [beta, canary] }] }
flags:
  a: { type: boolean, variants: { "on": true, "off": false }, default_variant: "on" }
  b:
    type: string
    variants: { x: "x", y: "y" }
    default_variant: x
    rules: [{ segment: beta, serve: { variant: y } }]
  d: { type: float, variants: { half: 0.5 }, default_variant: half }
"#;

    fn rulesets() -> (Ruleset, Ruleset) {
        let old = Ruleset {
            environment: "prod".into(),
            revision: 7,
            flag_revisions: [("a", 3), ("b", 5), ("c", 7)]
                .map(|(key, revision)| (key.to_string(), revision))
                .into(),
            document: document(BEFORE),
        };
        let new = Ruleset {
            environment: "prod".into(),
            revision: 9,
            flag_revisions: [("a", 9), ("b", 9), ("d", 8)]
                .map(|(key, revision)| (key.to_string(), revision))
                .into(),
            document: document(AFTER),
        };
        (old, new)
    }

    #[test]
    fn applying_the_delta_between_two_rulesets_gives_the_newer() {
        let (mut old, new) = rulesets();
        let delta = RulesetDelta::between(&old.as_ref(), &new.as_ref());
        assert_eq!(
            delta.flags.keys().collect::<Vec<_>>(),
            ["a", "c", "d"],
            "b is unchanged and not sent"
        );
        assert_eq!(delta.flags["c"], None);
        assert_eq!(delta.segments.keys().collect::<Vec<_>>(), ["beta", "staff"]);
        assert_eq!(delta.segments["staff"], None);
        assert_eq!(
            delta.changed_flags().collect::<Vec<_>>(),
            ["a", "b", "c", "d"],
            "b's segment changed, so its evaluation may have"
        );
        old.apply(&delta).unwrap();
        assert_eq!(old, new);
    }

    #[test]
    fn a_delta_from_another_revision_or_environment_changes_nothing() {
        let (old, new) = rulesets();
        let delta = RulesetDelta::between(&old.as_ref(), &new.as_ref());
        let mut stale = new.clone();
        assert_eq!(
            stale.apply(&delta),
            Err(DeltaError::Revision {
                ruleset: 9,
                delta: 7
            })
        );
        assert_eq!(stale, new);
        let mut other = Ruleset {
            environment: "staging".into(),
            ..old.clone()
        };
        assert!(matches!(
            other.apply(&delta),
            Err(DeltaError::Environment { .. })
        ));
        assert_eq!(other.document, old.document);
    }

    #[test]
    fn json_lists_every_flag_revision_and_round_trips_with_deltas() {
        let (old, new) = rulesets();
        let sparse = BTreeMap::from([("a".to_string(), 3)]);
        let json = RulesetRef {
            flag_revisions: &sparse,
            ..old.as_ref()
        }
        .to_json();
        let parsed = Ruleset::from_json(&json).unwrap();
        assert_eq!(
            parsed.flag_revisions,
            BTreeMap::from([("a".into(), 3), ("b".into(), 7), ("c".into(), 7)])
        );
        let delta = RulesetDelta::between(&old.as_ref(), &new.as_ref());
        assert_eq!(
            RulesetDelta::from_json(&delta.to_json()).unwrap(),
            delta,
            "a removed flag stays `null`, not absent"
        );
    }

    #[test]
    fn the_compiled_ruleset_reports_each_flags_revision() {
        let (_, new) = rulesets();
        let snapshot = new.compile().unwrap();
        assert_eq!(snapshot.revision(), 9);
        assert_eq!(snapshot.flag("d").unwrap().revision(), 8);
        assert_eq!(snapshot.flag("a").unwrap().revision(), 9);
    }
}
