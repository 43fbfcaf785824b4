//! Evaluation: what one context gets from one flag. A plain function of a snapshot and a
//! context; it reads no clock, and allocates only for rare inputs (a salt and unit over 96
//! bytes, a pre-release version in the context).

use serde_json::Value;

use crate::bucketing::{self, Cohort, Unit};
use crate::document::FlagType;
use crate::snapshot::{CompiledFlag, Conditions, Snapshot};
use crate::stage::Stage;

pub use crate::context::Context;

/// Why a context got its value (OpenFeature's resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no rules and no rollout: everyone gets the same value.
    Static,
    /// A targeting rule matched.
    TargetingMatch,
    /// The context is in the rollout and got a variant of the split.
    Split,
    /// No rule matched and the context is outside the rollout (or there is none).
    Default,
    /// The kill switch is off.
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    TypeMismatch,
    ParseError,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The result of evaluating one flag for one context. It borrows from the snapshot, so
/// producing it copies nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'a> {
    /// `None` exactly when `error` is set.
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    pub flag_type: Option<FlagType>,
    pub metadata: Metadata<'a>,
}

/// What an SDK needs to tag its metrics, and what a person needs to see why.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metadata<'a> {
    /// The environment revision at which the flag last changed.
    pub revision: u64,
    /// The metric cohort, while a rollout below 100% applies to the context.
    pub cohort: Option<Cohort>,
    /// With a cohort, when the flag has a ramp: the index of the ramp stage the rollout is
    /// at. Observations carry it so that the guard never mixes stages.
    pub stage: Option<Stage>,
    /// The name of the rule that matched, if it has one.
    pub rule: Option<&'a str>,
    /// The position of the rule that matched among the flag's rules, from 0: a rule need
    /// not have a name, and a person looking for why needs to find it all the same.
    pub rule_index: Option<usize>,
    /// Where the context's unit fell in the rollout, when the rollout was reached and the
    /// unit had a value: its bucket against the threshold below which units are in.
    pub bucket: Option<RolloutBucket>,
    /// Set when the context was outside the rollout because it has no usable value for the
    /// rollout's stickiness attribute: the attribute's name.
    pub unit_missing: Option<&'a str>,
    /// With a variant served: the same for everyone served this value of the flag, and
    /// different when the value changes (see [`crate::snapshot::cache_token`]).
    pub cache_token: Option<&'a str>,
}

/// A unit's place in a rollout, out of [`BUCKETS`](crate::bucketing::BUCKETS) buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutBucket {
    /// The unit's rollout bucket, from 0.
    pub bucket: u32,
    /// Units whose bucket is below this are in the rollout: the percentage, in buckets.
    pub threshold: u32,
}

impl<'a> Evaluation<'a> {
    fn error(error: ErrorCode) -> Evaluation<'a> {
        Evaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some(error),
            flag_type: None,
            metadata: Metadata::default(),
        }
    }

    fn served(
        flag: &'a CompiledFlag,
        variant: usize,
        reason: Reason,
        metadata: Metadata<'a>,
    ) -> Evaluation<'a> {
        let (name, value) = &flag.variants[variant];
        Evaluation {
            value: Some(value),
            variant: Some(name),
            reason,
            error: None,
            flag_type: Some(flag.flag_type),
            metadata: Metadata {
                cache_token: flag.cache_tokens.get(variant).map(|token| &**token),
                ..metadata
            },
        }
    }
}

/// Evaluates the flag `flag_key` of `snapshot` for `context`.
pub fn evaluate<'a>(snapshot: &'a Snapshot, flag_key: &str, context: &Context) -> Evaluation<'a> {
    match snapshot.flag(flag_key) {
        Some(flag) => evaluate_flag(flag, context),
        None => Evaluation::error(ErrorCode::FlagNotFound),
    }
}

/// Like [`evaluate`], for callers that asked for a value of a given type (typed SDK calls).
/// An integer flag satisfies a request for a float.
pub fn evaluate_typed<'a>(
    snapshot: &'a Snapshot,
    flag_key: &str,
    context: &Context,
    expected: FlagType,
) -> Evaluation<'a> {
    let evaluation = evaluate(snapshot, flag_key, context);
    match evaluation.flag_type {
        Some(found)
            if found != expected
                && !(expected == FlagType::Float && found == FlagType::Integer) =>
        {
            Evaluation {
                metadata: evaluation.metadata,
                flag_type: evaluation.flag_type,
                ..Evaluation::error(ErrorCode::TypeMismatch)
            }
        }
        _ => evaluation,
    }
}

/// Evaluates one compiled flag: the kill switch, then the rules in order, then the rollout.
pub fn evaluate_flag<'a>(flag: &'a CompiledFlag, context: &Context) -> Evaluation<'a> {
    evaluate_compiled(flag, context, None)
}

/// Which lists of conditions one context satisfies, found out once for all the flags of a
/// snapshot that one call evaluates for it. A segment (a release track, staff, a region) is
/// typically named by the rules of many flags, and flags repeat the same conditions (the
/// same country and app-version check); a bulk evaluation that checked them again for each
/// rule would spend most of its time doing so. Valid for one context: a memo used for flags
/// of another snapshot starts afresh.
#[derive(Debug, Default)]
pub struct Memo {
    /// The snapshot whose lists `known` is about.
    snapshot: u64,
    /// By list id: [`UNKNOWN`](Memo::UNKNOWN), [`HOLDS`](Memo::HOLDS) or
    /// [`FAILS`](Memo::FAILS).
    known: Vec<u8>,
}

impl Memo {
    const UNKNOWN: u8 = 0;
    const HOLDS: u8 = 1;
    const FAILS: u8 = 2;
    /// Lists beyond this many are checked each time: a snapshot of many thousand distinct
    /// lists must not make every bulk request allocate a memo of that size.
    const KEPT: usize = 4096;

    fn holds(&mut self, conditions: &Conditions, context: &Context) -> bool {
        if self.snapshot != conditions.snapshot {
            self.snapshot = conditions.snapshot;
            self.known.clear();
        }
        let id = conditions.id as usize;
        match self.known.get(id) {
            Some(&Memo::HOLDS) => return true,
            Some(&Memo::FAILS) => return false,
            _ => {}
        }
        let holds = conditions.hold(context);
        if id < Memo::KEPT {
            if self.known.len() <= id {
                self.known.resize(id + 1, Memo::UNKNOWN);
            }
            if let Some(known) = self.known.get_mut(id) {
                *known = if holds { Memo::HOLDS } else { Memo::FAILS };
            }
        }
        holds
    }
}

/// [`evaluate_flag`], with what `memo` knows of the context. Evaluating every flag of a
/// snapshot for one context, pass the same `memo` to each.
pub fn evaluate_flag_with<'a>(
    flag: &'a CompiledFlag,
    context: &Context,
    memo: &mut Memo,
) -> Evaluation<'a> {
    evaluate_compiled(flag, context, Some(memo))
}

/// One flag alone keeps no memo: it would cost an allocation to save nothing.
fn evaluate_compiled<'a>(
    flag: &'a CompiledFlag,
    context: &Context,
    mut memo: Option<&mut Memo>,
) -> Evaluation<'a> {
    let mut metadata = Metadata {
        revision: flag.revision,
        ..Metadata::default()
    };
    if !flag.enabled {
        return Evaluation::served(flag, flag.default_variant, Reason::Disabled, metadata);
    }
    for (index, rule) in flag.rules.iter().enumerate() {
        let mut hold = |conditions: &Option<std::sync::Arc<Conditions>>| {
            conditions
                .as_deref()
                .is_none_or(|conditions| match memo.as_deref_mut() {
                    Some(memo) => memo.holds(conditions, context),
                    None => conditions.hold(context),
                })
        };
        if hold(&rule.segment) && hold(&rule.conditions) {
            metadata.rule = rule.name.as_deref();
            metadata.rule_index = Some(index);
            return Evaluation::served(flag, rule.variant, Reason::TargetingMatch, metadata);
        }
    }
    let Some(rollout) = &flag.rollout else {
        let reason = if flag.rules.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        return Evaluation::served(flag, flag.default_variant, reason, metadata);
    };
    let Some(unit) = Unit::from_value(context.attribute(&rollout.stickiness)) else {
        metadata.unit_missing = Some(rollout.stickiness.as_str());
        return Evaluation::served(flag, flag.default_variant, Reason::Default, metadata);
    };
    bucketing::with_hash_input(&rollout.salt_prefix, unit, |data| {
        let rollout_bucket = bucketing::rollout_bucket(data);
        metadata.bucket = Some(RolloutBucket {
            bucket: rollout_bucket,
            threshold: rollout.threshold,
        });
        if rollout.threshold < bucketing::BUCKETS as u32 {
            metadata.cohort = bucketing::cohort(rollout_bucket, rollout.threshold, rollout.control);
            if metadata.cohort.is_some() {
                metadata.stage = rollout.ramp_stage;
            }
        }
        if rollout_bucket >= rollout.threshold {
            return Evaluation::served(flag, flag.default_variant, Reason::Default, metadata);
        }
        // A split of one variant needs no variant bucket: most rollouts are of one variant,
        // and this saves them a second hash.
        let variant = match rollout.split_variants.as_slice() {
            [only] => *only,
            // Validation guarantees a positive total weight; fall back to the default all
            // the same rather than index out of bounds.
            variants => bucketing::split_index(bucketing::variant_bucket(data), &rollout.weights)
                .map_or(flag.default_variant, |index| variants[index]),
        };
        Evaluation::served(flag, variant, Reason::Split, metadata)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::document::Document;
    use crate::snapshot::Limits;

    const DOCUMENT: &str = r#"
flags:
  f:
    type: boolean
    variants: {"on": true, "off": false}
    default_variant: "off"
    rules:
      - {when: [{attribute: plan, op: in, values: [free]}], serve: {variant: "off"}}
      - {name: staff, when: [{attribute: staff, op: in, values: [true]}], serve: {variant: "on"}}
    rollout: {percentage: 30, split: [{variant: "on", weight: 1}]}
"#;

    fn context(attributes: serde_json::Value) -> Context {
        let mut context = Context::new();
        if let serde_json::Value::Object(attributes) = attributes {
            for (name, value) in attributes {
                context.insert(name, value);
            }
        }
        context
    }

    #[test]
    fn the_matched_rule_is_given_by_position_named_or_not() {
        let document = Document::from_yaml(DOCUMENT).unwrap();
        let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default()).unwrap();
        let unnamed = evaluate(&snapshot, "f", &context(json!({"plan": "free"})));
        assert_eq!(unnamed.metadata.rule_index, Some(0));
        assert_eq!(unnamed.metadata.rule, None);
        let named = evaluate(&snapshot, "f", &context(json!({"staff": true})));
        assert_eq!(named.metadata.rule_index, Some(1));
        assert_eq!(named.metadata.rule, Some("staff"));
        assert_eq!(named.metadata.bucket, None);
    }

    #[test]
    fn the_bucket_against_the_threshold_is_what_decided_the_rollout() {
        let document = Document::from_yaml(DOCUMENT).unwrap();
        let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default()).unwrap();
        let (mut inside, mut outside) = (0, 0);
        for unit in 0..200 {
            let evaluation = evaluate(
                &snapshot,
                "f",
                &context(json!({"targetingKey": format!("user-{unit}")})),
            );
            let bucket = evaluation.metadata.bucket.expect("the rollout was reached");
            assert_eq!(bucket.threshold, 30_000);
            assert!(u64::from(bucket.bucket) < crate::bucketing::BUCKETS);
            assert_eq!(
                evaluation.reason == Reason::Split,
                bucket.bucket < bucket.threshold,
                "{evaluation:?}"
            );
            if evaluation.reason == Reason::Split {
                inside += 1;
            } else {
                outside += 1;
            }
        }
        assert!(inside > 0 && outside > 0);
        let missing = evaluate(&snapshot, "f", &context(json!({})));
        assert_eq!(missing.metadata.bucket, None);
        assert_eq!(missing.metadata.unit_missing, Some("targetingKey"));
    }
}
