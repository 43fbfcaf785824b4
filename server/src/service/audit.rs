//! What a change to an environment's document writes: the difference between the document
//! before and after, as store mutations, the flags' new revisions, and one audit record per
//! flag or segment that changed.

use std::collections::{BTreeMap, BTreeSet};

use ripcord_engine::{Document, Flag};
use serde::Serialize;

use crate::environment::Environment;
use crate::principal::Principal;
use crate::store::{AuditRecord, Mutation};

/// A change to an environment's document, for the audit log.
pub struct Change<'a> {
    pub environment: &'a str,
    pub actor: &'a Principal,
    /// What caused the change, such as `kill_switch` or `import`.
    pub operation: &'static str,
    /// Why, when the caller knows: the ramp controller's reason for a decision.
    pub reason: Option<&'a str>,
}

/// What committing a new document writes. No mutations: the document did not change.
pub struct Diff {
    pub mutations: Vec<Mutation>,
    pub audit: Vec<AuditRecord>,
    /// Every flag of the new document, with the revision at which it last changed.
    pub flag_revisions: BTreeMap<String, u64>,
}

/// The difference from `current` to `document`, committed as `revision` at `time`.
pub fn diff(
    current: &Environment,
    document: &Document,
    change: &Change<'_>,
    revision: u64,
    time: &str,
) -> Diff {
    let mut mutations = Vec::new();
    let mut audit = Vec::new();
    let mut flag_revisions = BTreeMap::new();
    // A flag whose segment changed serves differently from now on, so it gets the new
    // revision too: apps tag metrics with it, and one revision must mean one behaviour.
    let changed_segments: BTreeSet<&String> = current
        .document
        .segments
        .keys()
        .chain(document.segments.keys())
        .filter(|key| current.document.segments.get(*key) != document.segments.get(*key))
        .collect();
    let uses_changed_segment = |flag: &Flag| {
        flag.rules.iter().any(|rule| {
            rule.segment
                .as_ref()
                .is_some_and(|segment| changed_segments.contains(segment))
        })
    };
    let flag_keys: BTreeSet<&String> = current
        .document
        .flags
        .keys()
        .chain(document.flags.keys())
        .collect();
    for key in flag_keys {
        let before = current.document.flags.get(key);
        let after = document.flags.get(key);
        let operation = if before != after {
            change.operation
        } else if after.is_some_and(uses_changed_segment) {
            "segment_change"
        } else {
            if let Some(&kept) = current.flag_revisions.get(key) {
                flag_revisions.insert(key.clone(), kept);
            }
            continue;
        };
        let action = match (before, after) {
            (None, _) => "flag.create",
            (_, None) => "flag.delete",
            _ => "flag.update",
        };
        audit.push(audit_record(
            time,
            change.actor,
            Some(change.environment),
            action,
            key,
            operation,
            before.map(to_value),
            after.map(to_value),
        ));
        match after {
            Some(flag) => {
                flag_revisions.insert(key.clone(), revision);
                mutations.push(Mutation::PutFlag {
                    key: key.clone(),
                    flag: flag.clone(),
                });
            }
            None => mutations.push(Mutation::DeleteFlag { key: key.clone() }),
        }
    }
    for key in changed_segments {
        let before = current.document.segments.get(key);
        let after = document.segments.get(key);
        let action = match (before, after) {
            (None, _) => "segment.create",
            (_, None) => "segment.delete",
            _ => "segment.update",
        };
        audit.push(audit_record(
            time,
            change.actor,
            Some(change.environment),
            action,
            key,
            change.operation,
            before.map(to_value),
            after.map(to_value),
        ));
        mutations.push(match after {
            Some(segment) => Mutation::PutSegment {
                key: key.clone(),
                segment: segment.clone(),
            },
            None => Mutation::DeleteSegment { key: key.clone() },
        });
    }
    if let Some(reason) = change.reason {
        for entry in &mut audit {
            entry.reason = Some(reason.to_string());
        }
    }
    Diff {
        mutations,
        audit,
        flag_revisions,
    }
}

/// A value as the audit log keeps it.
pub fn to_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[allow(clippy::too_many_arguments)]
pub fn audit_record(
    time: &str,
    actor: &Principal,
    environment: Option<&str>,
    action: &str,
    target: &str,
    operation: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        time: time.to_string(),
        actor: actor.name.clone(),
        environment: environment.map(str::to_string),
        action: action.to_string(),
        target: target.to_string(),
        operation: operation.to_string(),
        before,
        after,
        revision: None,
        reason: None,
    }
}
