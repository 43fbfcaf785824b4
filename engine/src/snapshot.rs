//! A snapshot: one environment's document, validated and compiled for evaluation.
//!
//! Validation and compilation are one pass: a document that compiles is valid, and every
//! problem found on the way is reported with its path. A snapshot is immutable; a change
//! to the environment builds a new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::bucketing;
use crate::condition::CompiledCondition;
use crate::document::{Document, Flag, FlagType, Ramp};
use crate::error::{DocumentError, Problem};
use crate::stage::Stage;

/// Bounds on a document, so that one environment cannot exhaust a server. Going over any of
/// them is a validation problem that names the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_flags: usize,
    pub max_segments: usize,
    pub max_variants_per_flag: usize,
    pub max_rules_per_flag: usize,
    pub max_conditions_per_rule: usize,
    pub max_values_per_condition: usize,
    /// Flag, segment and variant keys, and attribute names, in characters.
    pub max_key_length: usize,
    /// Entries of a split, stages and guards of a ramp.
    pub max_list_length: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_flags: 20_000,
            max_segments: 5_000,
            max_variants_per_flag: 100,
            max_rules_per_flag: 200,
            max_conditions_per_rule: 50,
            max_values_per_condition: 10_000,
            max_key_length: 256,
            max_list_length: 100,
        }
    }
}

impl Limits {
    /// No bounds: for documents validated already under some server's limits, such as a
    /// stored document after the limits were lowered, or a ruleset an SDK receives.
    pub fn unbounded() -> Limits {
        Limits {
            max_flags: usize::MAX,
            max_segments: usize::MAX,
            max_variants_per_flag: usize::MAX,
            max_rules_per_flag: usize::MAX,
            max_conditions_per_rule: usize::MAX,
            max_values_per_condition: usize::MAX,
            max_key_length: usize::MAX,
            max_list_length: usize::MAX,
        }
    }
}

/// An environment's flags, ready to evaluate.
#[derive(Debug)]
pub struct Snapshot {
    revision: u64,
    /// Every flag, ordered by key: bulk evaluation walks this.
    flags: Vec<CompiledFlag>,
    /// Positions in `flags` by key.
    index: crate::context::KeyIndex,
}

#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) key: Box<str>,
    pub(crate) flag_type: FlagType,
    pub(crate) revision: u64,
    pub(crate) enabled: bool,
    pub(crate) client_visible: bool,
    pub(crate) variants: Vec<(Box<str>, Value)>,
    /// Each variant's cache token (see [`cache_token`]), by position.
    pub(crate) cache_tokens: Vec<Box<str>>,
    pub(crate) default_variant: usize,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) rollout: Option<CompiledRollout>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) name: Option<Box<str>>,
    /// `None` for a rule with no `when` of its own (a segment alone).
    pub(crate) conditions: Option<Arc<Conditions>>,
    pub(crate) segment: Option<Arc<Conditions>>,
    pub(crate) variant: usize,
}

/// A list of conditions, compiled once for every rule and segment of a snapshot that has
/// the same conditions. Environments repeat them (the same country and app-version check
/// on many flags, a segment named by many rules), and a bulk evaluation checks each list
/// once per context through a [`Memo`](crate::evaluate::Memo) instead of once per rule.
#[derive(Debug)]
pub(crate) struct Conditions {
    /// The list's place among the lists of its snapshot, from 0.
    pub(crate) id: u32,
    /// Which snapshot compiled the list: a memo kept across snapshots starts afresh rather
    /// than answer for a list of another snapshot with the same id.
    pub(crate) snapshot: u64,
    pub(crate) list: Box<[CompiledCondition]>,
}

impl Conditions {
    pub(crate) fn hold(&self, context: &crate::Context) -> bool {
        self.list.iter().all(|condition| condition.holds(context))
    }
}

/// Gives every distinct list of conditions of one snapshot one shared [`Conditions`].
struct Lists {
    snapshot: u64,
    /// By the conditions as the document writes them.
    known: std::collections::HashMap<String, Arc<Conditions>>,
    next: u32,
}

impl Lists {
    fn new() -> Lists {
        static SNAPSHOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Lists {
            snapshot: SNAPSHOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            known: std::collections::HashMap::new(),
            next: 0,
        }
    }

    fn share(
        &mut self,
        source: &[crate::document::Condition],
        compiled: Vec<CompiledCondition>,
    ) -> Arc<Conditions> {
        let fresh = |lists: &mut Lists| {
            let id = lists.next;
            lists.next = lists.next.saturating_add(1);
            Arc::new(Conditions {
                id,
                snapshot: lists.snapshot,
                list: compiled.into_boxed_slice(),
            })
        };
        // Conditions always serialize; were one not to, its list would simply not be shared.
        let Ok(written) = serde_json::to_string(source) else {
            return fresh(self);
        };
        if let Some(known) = self.known.get(&written) {
            return Arc::clone(known);
        }
        let shared = fresh(self);
        self.known.insert(written, Arc::clone(&shared));
        shared
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRollout {
    pub(crate) stickiness: crate::context::AttributeName,
    pub(crate) salt_prefix: Box<[u8]>,
    pub(crate) threshold: u32,
    /// The ramp's control; a rollout without a ramp compares with every other unit.
    pub(crate) control: bucketing::ControlBand,
    pub(crate) weights: Vec<u32>,
    pub(crate) split_variants: Vec<usize>,
    /// The ramp stage whose percentage the rollout is at: the controller sets the rollout to
    /// `stages[i]`, and evaluations carry `i` so that observations can be tagged with it.
    pub(crate) ramp_stage: Option<Stage>,
}

impl CompiledFlag {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn flag_type(&self) -> FlagType {
        self.flag_type
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn is_client_visible(&self) -> bool {
        self.client_visible
    }

    /// The variants' names and values, in the order [`variant_position`] counts.
    ///
    /// [`variant_position`]: CompiledFlag::variant_position
    pub fn variants(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.variants.iter().map(|(name, value)| (&**name, value))
    }

    /// The position of the variant `name`. An evaluation's variant borrows the flag's own
    /// name, so it is found by address first, without comparing text.
    /// The cache token of the variant at `position` (see [`cache_token`]).
    pub fn cache_token(&self, position: usize) -> Option<&str> {
        self.cache_tokens.get(position).map(|token| &**token)
    }

    pub fn variant_position(&self, name: &str) -> Option<usize> {
        let same_name = |(known, _): &(Box<str>, Value)| {
            std::ptr::eq(known.as_ptr(), name.as_ptr()) && known.len() == name.len()
        };
        self.variants
            .iter()
            .position(same_name)
            .or_else(|| self.variants.iter().position(|(known, _)| **known == *name))
    }
}

impl Snapshot {
    /// Validates `document` and compiles it. `revision` is the environment's revision;
    /// `flag_revision` gives the revision at which each flag last changed (callers without
    /// one pass `|_| revision`).
    pub fn compile(
        document: &Document,
        revision: u64,
        flag_revision: impl Fn(&str) -> u64,
        limits: &Limits,
    ) -> Result<Snapshot, DocumentError> {
        let mut problems = Vec::new();
        if document.flags.len() > limits.max_flags {
            problems.push(Problem::new(
                "flags",
                format!(
                    "{} flags is over the limit of {} flags per environment",
                    document.flags.len(),
                    limits.max_flags
                ),
            ));
        }
        if document.segments.len() > limits.max_segments {
            problems.push(Problem::new(
                "segments",
                format!(
                    "{} segments is over the limit of {} segments per environment",
                    document.segments.len(),
                    limits.max_segments
                ),
            ));
        }
        if !problems.is_empty() {
            return Err(DocumentError::Invalid(problems));
        }

        let mut lists = Lists::new();
        let mut segments: BTreeMap<&str, Arc<Conditions>> = BTreeMap::new();
        for (key, segment) in &document.segments {
            let path = format!("segments.{key}");
            check_key(key, &path, "segment key", limits, &mut problems);
            if segment.when.is_empty() {
                problems.push(Problem::new(
                    format!("{path}.when"),
                    "a segment needs at least one condition",
                ));
            }
            let conditions = compile_conditions(
                &segment.when,
                &format!("{path}.when"),
                limits,
                &mut problems,
            );
            segments.insert(key, lists.share(&segment.when, conditions));
        }

        let mut flags = Vec::with_capacity(document.flags.len());
        for (key, flag) in &document.flags {
            if let Some(compiled) = compile_flag(
                key,
                flag,
                flag_revision(key),
                &segments,
                &mut lists,
                limits,
                &mut problems,
            ) {
                flags.push(compiled);
            }
        }
        if !problems.is_empty() {
            return Err(DocumentError::Invalid(problems));
        }
        // The document's map is ordered by key, so `flags` is too.
        let mut index = crate::context::KeyIndex::default();
        for (position, flag) in flags.iter().enumerate() {
            index.insert(&flag.key, position);
        }
        Ok(Snapshot {
            revision,
            flags,
            index,
        })
    }

    /// The snapshot of an environment with no flags.
    pub fn empty(revision: u64) -> Snapshot {
        Snapshot {
            revision,
            flags: Vec::new(),
            index: crate::context::KeyIndex::default(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.find(key).map(|(_, flag)| flag)
    }

    /// The flag `key` with its position in [`flags`](Snapshot::flags).
    pub fn find(&self, key: &str) -> Option<(usize, &CompiledFlag)> {
        let position = self.index.get(key)?;
        Some((position, self.flags.get(position)?))
    }

    /// The flag at `position` in [`flags`](Snapshot::flags).
    pub fn flag_at(&self, position: usize) -> Option<&CompiledFlag> {
        self.flags.get(position)
    }

    /// Every flag, ordered by key.
    pub fn flags(&self) -> impl Iterator<Item = &CompiledFlag> {
        self.flags.iter()
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}

/// Validates a document without keeping the compiled result.
pub fn validate(document: &Document, limits: &Limits) -> Result<(), DocumentError> {
    Snapshot::compile(document, 0, |_| 0, limits).map(drop)
}

fn check_key(key: &str, path: &str, what: &str, limits: &Limits, problems: &mut Vec<Problem>) {
    let length = key.chars().count();
    if length == 0 {
        problems.push(Problem::new(path, format!("the {what} is empty")));
    } else if length > limits.max_key_length {
        problems.push(Problem::new(
            path,
            format!(
                "the {what} is {length} characters, over the limit of {}",
                limits.max_key_length
            ),
        ));
    } else if key
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        problems.push(Problem::new(
            path,
            format!("the {what} `{key}` has whitespace, a control character or '/'"),
        ));
    }
}

fn compile_conditions(
    conditions: &[crate::document::Condition],
    path: &str,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) -> Vec<CompiledCondition> {
    if conditions.len() > limits.max_conditions_per_rule {
        problems.push(Problem::new(
            path,
            format!(
                "{} conditions is over the limit of {} conditions per rule",
                conditions.len(),
                limits.max_conditions_per_rule
            ),
        ));
        return Vec::new();
    }
    conditions
        .iter()
        .enumerate()
        .filter_map(|(index, condition)| {
            let path = format!("{path}[{index}]");
            let length = condition.attribute.chars().count();
            if length > limits.max_key_length {
                problems.push(Problem::new(
                    format!("{path}.attribute"),
                    format!(
                        "the attribute name is {length} characters, over the limit of {}",
                        limits.max_key_length
                    ),
                ));
            }
            CompiledCondition::compile(condition, &path, limits.max_values_per_condition, problems)
        })
        .collect()
}

fn compile_flag(
    key: &str,
    flag: &Flag,
    revision: u64,
    segments: &BTreeMap<&str, Arc<Conditions>>,
    lists: &mut Lists,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) -> Option<CompiledFlag> {
    let before = problems.len();
    let path = format!("flags.{key}");
    check_key(key, &path, "flag key", limits, problems);

    if flag.variants.is_empty() {
        problems.push(Problem::new(
            format!("{path}.variants"),
            "a flag needs at least one variant",
        ));
    }
    if flag.variants.len() > limits.max_variants_per_flag {
        problems.push(Problem::new(
            format!("{path}.variants"),
            format!(
                "{} variants is over the limit of {} variants per flag",
                flag.variants.len(),
                limits.max_variants_per_flag
            ),
        ));
    }
    let variants: Vec<(Box<str>, Value)> = flag
        .variants
        .iter()
        .map(|(name, value)| (name.as_str().into(), value.clone()))
        .collect();
    for (name, value) in &flag.variants {
        let variant_path = format!("{path}.variants.{name}");
        check_key(name, &variant_path, "variant name", limits, problems);
        if !flag.flag_type.admits(value) {
            problems.push(Problem::new(
                variant_path,
                format!(
                    "the flag is of type {}, but this variant's value is not",
                    flag.flag_type.as_str()
                ),
            ));
        }
    }
    let variant_index = |name: &str, path: String, problems: &mut Vec<Problem>| -> usize {
        match flag.variants.keys().position(|known| known == name) {
            Some(index) => index,
            None => {
                problems.push(Problem::new(path, format!("no variant is named `{name}`")));
                0
            }
        }
    };
    let default_variant = variant_index(
        &flag.default_variant,
        format!("{path}.default_variant"),
        problems,
    );

    if flag.rules.len() > limits.max_rules_per_flag {
        problems.push(Problem::new(
            format!("{path}.rules"),
            format!(
                "{} rules is over the limit of {} rules per flag",
                flag.rules.len(),
                limits.max_rules_per_flag
            ),
        ));
    }
    let mut rules = Vec::with_capacity(flag.rules.len());
    for (index, rule) in flag.rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{index}]");
        if rule.when.is_empty() && rule.segment.is_none() {
            problems.push(Problem::new(
                &rule_path,
                "a rule needs conditions (`when`), a `segment`, or both",
            ));
        }
        let conditions =
            compile_conditions(&rule.when, &format!("{rule_path}.when"), limits, problems);
        let conditions = (!rule.when.is_empty()).then(|| lists.share(&rule.when, conditions));
        let segment = rule.segment.as_deref().and_then(|name| {
            let found = segments.get(name).cloned();
            if found.is_none() {
                problems.push(Problem::new(
                    format!("{rule_path}.segment"),
                    format!("no segment is named `{name}`"),
                ));
            }
            found
        });
        let variant = variant_index(
            &rule.serve.variant,
            format!("{rule_path}.serve.variant"),
            problems,
        );
        rules.push(CompiledRule {
            name: rule.name.as_deref().map(Into::into),
            conditions,
            segment,
            variant,
        });
    }

    let rollout = flag.rollout.as_ref().map(|rollout| {
        let rollout_path = format!("{path}.rollout");
        check_percentage(
            rollout.percentage,
            &format!("{rollout_path}.percentage"),
            problems,
        );
        if let Some(stickiness) = &rollout.stickiness {
            check_key(
                stickiness,
                &format!("{rollout_path}.stickiness"),
                "stickiness attribute",
                limits,
                problems,
            );
        }
        check_list_length(
            rollout.split.len(),
            &format!("{rollout_path}.split"),
            "split entries",
            limits,
            problems,
        );
        if rollout.split.is_empty() {
            problems.push(Problem::new(
                format!("{rollout_path}.split"),
                "a rollout needs at least one variant in its split",
            ));
        } else if rollout.split.iter().all(|entry| entry.weight == 0) {
            problems.push(Problem::new(
                format!("{rollout_path}.split"),
                "the split's weights add up to zero",
            ));
        }
        let split_variants = rollout
            .split
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                variant_index(
                    &entry.variant,
                    format!("{rollout_path}.split[{index}].variant"),
                    problems,
                )
            })
            .collect();
        CompiledRollout {
            stickiness: crate::context::AttributeName::new(rollout.stickiness()),
            salt_prefix: bucketing::salt_prefix(rollout.salt.as_deref().unwrap_or(key)),
            threshold: bucketing::threshold(rollout.percentage),
            control: flag
                .ramp
                .as_ref()
                .map_or(bucketing::ControlBand::Rest, |ramp| ramp.control().band()),
            weights: rollout.split.iter().map(|entry| entry.weight).collect(),
            split_variants,
            ramp_stage: flag.ramp.as_ref().and_then(|ramp| {
                // Compared at the bucketing resolution, the only precision a percentage has.
                let threshold = bucketing::threshold(rollout.percentage);
                ramp.stages
                    .iter()
                    .position(|stage| bucketing::threshold(*stage) == threshold)
                    .and_then(Stage::at)
            }),
        }
    });

    if let Some(ramp) = &flag.ramp {
        check_ramp(
            ramp,
            &format!("{path}.ramp"),
            flag.rollout.is_some(),
            limits,
            problems,
        );
    }

    let cache_tokens = variants
        .iter()
        .map(|(_, value)| cache_token(key, value))
        .collect();
    (problems.len() == before).then(|| CompiledFlag {
        cache_tokens,
        key: key.into(),
        flag_type: flag.flag_type,
        revision,
        enabled: flag.is_enabled(),
        client_visible: flag.is_client_visible(),
        variants,
        default_variant,
        rules,
        rollout,
    })
}

/// The cache token of `flag` serving `value`: 16 hex digits of xxh3 over the flag's key and
/// the value's JSON. Everyone served the same value of the flag gets the same token, and
/// the token changes when the value does; an app that adds it to its cache keys keeps the
/// entries of treatment and control apart while both versions run. The key is part of it,
/// so that tokens of different flags combine without colliding.
pub fn cache_token(flag: &str, value: &Value) -> Box<str> {
    let mut bytes = flag.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(value.to_string().as_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)).into_boxed_str()
}

/// A percentage is 0 to 100 with at most three decimals: the bucketing resolution.
fn check_percentage(percentage: f64, path: &str, problems: &mut Vec<Problem>) {
    if !percentage.is_finite() || !(0.0..=100.0).contains(&percentage) {
        problems.push(Problem::new(
            path,
            format!("{percentage} is not a percentage from 0 to 100"),
        ));
    } else {
        let scaled = percentage * 1000.0;
        if (scaled - scaled.round()).abs() > 1e-6 {
            problems.push(Problem::new(
                path,
                format!("{percentage} has more than three decimals"),
            ));
        }
    }
}

/// The largest control multiple: at a stage of 0.1% it is already every other unit.
const MAX_CONTROL_MULTIPLE: f64 = 1000.0;

/// A control of `k` times the treatment: above 0, at most [`MAX_CONTROL_MULTIPLE`], with
/// at most three decimals, the resolution the bands are computed at.
fn check_control_multiple(times: f64, path: &str, problems: &mut Vec<Problem>) {
    if !times.is_finite() || times <= 0.0 || times > MAX_CONTROL_MULTIPLE {
        problems.push(Problem::new(
            path,
            format!(
                "{times} is not `rest`, `equal` or a multiple of the treatment above 0 and at \
                 most {MAX_CONTROL_MULTIPLE}"
            ),
        ));
    } else {
        let scaled = times * 1000.0;
        if (scaled - scaled.round()).abs() > 1e-6 {
            problems.push(Problem::new(
                path,
                format!("{times} has more than three decimals"),
            ));
        }
    }
}

fn check_ramp(
    ramp: &Ramp,
    path: &str,
    has_rollout: bool,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) {
    if !has_rollout {
        problems.push(Problem::new(
            path,
            "a ramp drives the flag's rollout, so the flag needs a `rollout`",
        ));
    }
    if ramp.stages.is_empty() {
        problems.push(Problem::new(
            format!("{path}.stages"),
            "a ramp needs at least one stage",
        ));
    }
    check_list_length(
        ramp.stages.len(),
        &format!("{path}.stages"),
        "stages",
        limits,
        problems,
    );
    for (index, stage) in ramp.stages.iter().enumerate() {
        let stage_path = format!("{path}.stages[{index}]");
        check_percentage(*stage, &stage_path, problems);
        if *stage <= 0.0 {
            problems.push(Problem::new(&stage_path, "a stage must be above 0%"));
        }
        if index > 0 && *stage <= ramp.stages[index - 1] {
            problems.push(Problem::new(
                &stage_path,
                "stages must rise: each above the one before",
            ));
        }
    }
    let min = check_duration(
        &ramp.min_stage_duration,
        &format!("{path}.min_stage_duration"),
        problems,
    );
    let max = ramp
        .max_stage_duration
        .as_deref()
        .and_then(|text| check_duration(text, &format!("{path}.max_stage_duration"), problems));
    let warmup = ramp
        .warmup
        .as_deref()
        .and_then(|text| check_duration(text, &format!("{path}.warmup"), problems));
    if let Some(crate::document::Control::Times(times)) = ramp.control {
        check_control_multiple(times, &format!("{path}.control"), problems);
    }
    if let Some(text) = ramp.max_silence.as_deref() {
        if let Some(silence) = check_duration(text, &format!("{path}.max_silence"), problems) {
            if silence.is_zero() {
                problems.push(Problem::new(
                    format!("{path}.max_silence"),
                    "must be longer than 0s",
                ));
            }
        }
    }
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            problems.push(Problem::new(
                format!("{path}.max_stage_duration"),
                "is shorter than min_stage_duration",
            ));
        }
    }
    if let (Some(min), Some(warmup)) = (min, warmup) {
        if warmup >= min {
            problems.push(Problem::new(
                format!("{path}.warmup"),
                "must be shorter than min_stage_duration, or no observation would count",
            ));
        }
    }
    // Guards are compared pairwise here: refuse a long list before that.
    if !check_list_length(
        ramp.guards.len(),
        &format!("{path}.guards"),
        "guards",
        limits,
        problems,
    ) {
        return;
    }
    for (index, guard) in ramp.guards.iter().enumerate() {
        let guard_path = format!("{path}.guards[{index}]");
        check_key(
            &guard.metric,
            &format!("{guard_path}.metric"),
            "metric name",
            limits,
            problems,
        );
        if ramp.guards[..index]
            .iter()
            .any(|other| other.metric == guard.metric)
        {
            problems.push(Problem::new(
                format!("{guard_path}.metric"),
                format!("metric `{}` is guarded twice", guard.metric),
            ));
        }
        if guard.min_samples == 0 {
            problems.push(Problem::new(
                format!("{guard_path}.min_samples"),
                "must be at least 1",
            ));
        }
        if let Err(error) = crate::stats::Tolerance::parse(&guard.tolerance) {
            problems.push(Problem::new(
                format!("{guard_path}.tolerance"),
                error.to_string(),
            ));
        }
    }
}

/// Reports a list longer than `max_list_length`; returns whether it is within the limit.
fn check_list_length(
    length: usize,
    path: &str,
    what: &str,
    limits: &Limits,
    problems: &mut Vec<Problem>,
) -> bool {
    let within = length <= limits.max_list_length;
    if !within {
        problems.push(Problem::new(
            path,
            format!(
                "{length} {what} is over the limit of {} {what}",
                limits.max_list_length
            ),
        ));
    }
    within
}

/// The longest duration a ramp may name: a year. Longer is a typo, and a number of seconds
/// past what a timestamp can hold would make every time computed from it wrong.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

fn check_duration(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
    let Some(parsed) = parse_duration(text) else {
        problems.push(Problem::new(
            path,
            format!("`{text}` is not a duration such as `30s`, `10m`, `2h` or `1h30m`"),
        ));
        return None;
    };
    if parsed > MAX_DURATION {
        problems.push(Problem::new(
            path,
            format!("`{text}` is longer than the longest duration, 365d"),
        ));
        return None;
    }
    Some(parsed)
}

/// Parses durations written as numbers with units, `s`, `m`, `h` or `d`: `30s`, `10m`,
/// `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let amount: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(amount.checked_mul(seconds)?)?;
        rest = &rest[digits + 1..];
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod cache_token_tests {
    use super::cache_token;

    #[test]
    fn a_cache_token_is_the_same_for_the_same_value_of_a_flag_only() {
        let value = serde_json::json!({"model": "vector", "k": 10});
        let token = cache_token("search-v2", &value);
        assert_eq!(token.len(), 16);
        assert_eq!(token, cache_token("search-v2", &value.clone()));
        assert_ne!(
            token,
            cache_token(
                "search-v2",
                &serde_json::json!({"model": "vector", "k": 11})
            )
        );
        assert_ne!(
            token,
            cache_token("ranking", &value),
            "another flag, another token"
        );
    }
}
