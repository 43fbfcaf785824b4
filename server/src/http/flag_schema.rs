//! The flag document (docs/flags.md) as OpenAPI schemas, for the bodies of the admin API.
//!
//! The engine's types carry no OpenAPI, so their shape is restated here, with the limits the
//! server enforces: required fields, enums, ranges, key patterns and the default limits of
//! `RIPCORD_MAX_*` settings. A schema here must never forbid what the server accepts, or a client
//! that trusts it would refuse itself valid documents; the conformance test checks that
//! every body the schema forbids is refused. What JSON Schema cannot say — a default
//! variant that names a variant, a rule's segment that exists, variant values of the flag's
//! type, stages that rise — the server checks and answers 400 with the path of each problem.

#![allow(dead_code)] // These types are only ever described, never built.

use std::collections::BTreeMap;

use serde_json::Value;

/// A whole environment's document: its segments and its flags, by key.
#[derive(utoipa::ToSchema)]
#[schema(as = FlagDocument)]
#[serde(deny_unknown_fields)]
pub struct DocumentSchema {
    /// At most 5,000.
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentSchema>,
    /// At most 20,000 by default (`RIPCORD_MAX_FLAGS`).
    #[serde(default)]
    pub flags: BTreeMap<String, FlagSchema>,
}

/// A named set of conditions that rules refer to, such as a release track.
#[derive(utoipa::ToSchema)]
#[schema(as = Segment)]
#[serde(deny_unknown_fields)]
pub struct SegmentSchema {
    pub description: Option<String>,
    /// Every condition must hold for a context to be in the segment; at most 50.
    #[schema(max_items = 50)]
    pub when: Vec<ConditionSchema>,
}

/// A flag: its type, its variants, who gets which, and how it rolls out.
#[derive(utoipa::ToSchema)]
#[schema(as = Flag)]
#[serde(deny_unknown_fields)]
pub struct FlagSchema {
    pub description: Option<String>,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub flag_type: FlagTypeSchema,
    /// Each variant's value, by name; every value of the flag's type. 1 to 100 of them.
    #[schema(value_type = Object)]
    pub variants: BTreeMap<String, Value>,
    /// The variant served when no rule matches and outside the rollout, and to everyone
    /// when the flag is disabled: one of `variants`.
    #[schema(min_length = 1, max_length = 256)]
    pub default_variant: String,
    /// The kill switch: `false` serves `default_variant` to everyone. Absent means `true`.
    pub enabled: Option<bool>,
    /// Whether client keys (shipped inside apps) may evaluate the flag. Absent means
    /// `false`.
    pub client_visible: Option<bool>,
    /// Tried in order; the first that matches serves. At most 200 by default
    /// (`RIPCORD_MAX_RULES_PER_FLAG`).
    #[serde(default)]
    #[schema(max_items = 200)]
    pub rules: Vec<RuleSchema>,
    pub rollout: Option<RolloutSchema>,
    /// A ramp drives the rollout's percentage, so it needs a `rollout`.
    pub ramp: Option<RampSchema>,
}

/// The type of every variant's value.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagTypeSchema {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

/// A targeting rule: when its conditions (and its segment, if named) hold, it serves. It
/// needs `when`, `segment` or both.
#[derive(utoipa::ToSchema)]
#[schema(as = Rule)]
#[serde(deny_unknown_fields)]
pub struct RuleSchema {
    pub name: Option<String>,
    /// At most 50.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub when: Vec<ConditionSchema>,
    /// A segment of the same environment.
    pub segment: Option<String>,
    pub serve: ServeSchema,
}

/// What a rule serves.
#[derive(utoipa::ToSchema)]
#[schema(as = Serve)]
#[serde(deny_unknown_fields)]
pub struct ServeSchema {
    /// One of the flag's variants.
    pub variant: String,
}

/// One condition on a context attribute (docs/flags.md lists what each operator does).
#[derive(utoipa::ToSchema)]
#[schema(as = Condition)]
#[serde(deny_unknown_fields)]
pub struct ConditionSchema {
    /// The attribute's name; at most 256 characters by default (`RIPCORD_MAX_KEY_LENGTH`).
    #[schema(max_length = 256)]
    pub attribute: String,
    #[schema(inline)]
    pub op: OperatorSchema,
    /// The operands; `exists` and `not_exists` take none. At most 10,000 by default
    /// (`RIPCORD_MAX_VALUES_PER_CONDITION`).
    #[serde(default)]
    #[schema(max_items = 10_000)]
    pub values: Vec<Value>,
}

/// A condition's operator.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorSchema {
    Eq,
    Neq,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    SemverEq,
    Before,
    After,
    Exists,
    NotExists,
}

/// Everyone who matched no rule: a percentage of units, split between variants.
#[derive(utoipa::ToSchema)]
#[schema(as = Rollout)]
#[serde(deny_unknown_fields)]
pub struct RolloutSchema {
    /// The context attribute that names the unit. Absent means `targetingKey`.
    #[schema(max_length = 256)]
    pub stickiness: Option<String>,
    /// 0 to 100, with at most three decimals.
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub percentage: f64,
    /// 1 to 100 entries, not every weight 0.
    #[schema(min_items = 1, max_items = 100)]
    pub split: Vec<SplitEntrySchema>,
    /// Absent means the flag's key.
    pub salt: Option<String>,
}

/// One variant of a rollout's split and its share.
#[derive(utoipa::ToSchema)]
#[schema(as = SplitEntry)]
#[serde(deny_unknown_fields)]
pub struct SplitEntrySchema {
    /// One of the flag's variants.
    pub variant: String,
    pub weight: u32,
}

/// A gradual rollout guarded by metrics (docs/ramps.md).
#[derive(utoipa::ToSchema)]
#[schema(as = Ramp)]
#[serde(deny_unknown_fields)]
pub struct RampSchema {
    /// Percentages above 0 and up to 100, each above the one before: 1 to 100 of them.
    #[schema(min_items = 1, max_items = 100)]
    pub stages: Vec<f64>,
    /// A duration such as `30s`, `10m`, `24h` or `1h30m`.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    pub min_stage_duration: String,
    /// A duration, no shorter than `min_stage_duration`.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    pub max_stage_duration: Option<String>,
    /// A duration, shorter than `min_stage_duration`.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    pub warmup: Option<String>,
    #[schema(inline)]
    pub on_regression: Option<OnRegressionSchema>,
    /// docs/bucketing.md, "The control band".
    pub control: Option<crate::ramp::ControlSchema>,
    /// What a sample-ratio mismatch does: `pause` (the default), `kill` or `warn`.
    #[schema(inline)]
    pub on_srm: Option<OnSrmSchema>,
    /// A duration: how long a running stage may go without an observation before the ramp
    /// raises a `no_data` alert; 30m when absent.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    pub max_silence: Option<String>,
    /// At most 100, each metric once.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub guards: Vec<GuardSchema>,
}

/// What a regression does to the ramp: `kill` (the default) or `pause`.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnRegressionSchema {
    Kill,
    Pause,
}

/// What a sample-ratio mismatch does to the ramp.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnSrmSchema {
    Pause,
    Kill,
    Warn,
}

/// A metric a ramp watches, and how much worse the treatment may be on it.
#[derive(utoipa::ToSchema)]
#[schema(as = Guard)]
#[serde(deny_unknown_fields)]
pub struct GuardSchema {
    #[schema(max_length = 256)]
    pub metric: String,
    #[schema(inline)]
    pub category: MetricCategorySchema,
    #[schema(inline)]
    pub kind: MetricKindSchema,
    #[schema(inline)]
    pub better: super::judge::BetterSchema,
    #[schema(inline)]
    pub tolerance: super::judge::ToleranceSchema,
    pub min_samples: u64,
    pub critical: Option<bool>,
}

#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricCategorySchema {
    Stability,
    Performance,
    Business,
}

/// `rate` (each observation 0 or 1) or `value` (a number ≥ 0).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricKindSchema {
    Rate,
    Value,
}
