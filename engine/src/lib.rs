//! Ripcord's flag engine: the flag document, its validation, bucketing and evaluation.
//!
//! # Layout
//!
//! - [`document`]: the types of the flag document people write (docs/flags.md).
//! - [`snapshot`]: a document validated and compiled for evaluation, with its limits.
//! - [`context`]: the evaluation context, built for fast attribute lookups.
//! - [`bucketing`]: the public bucketing algorithm (docs/bucketing.md) — units, buckets,
//!   cohorts, splits.
//! - [`evaluate`](mod@evaluate): what a context gets from a flag.
//! - [`ruleset`]: a document with its revisions, as SDKs receive it, and deltas between two.
//! - [`ramp`]: the ramp controller's decisions as pure functions of a virtual clock.
//! - [`stats`]: the guard's statistics (docs/statistics.md): U test, Hodges–Lehmann,
//!   histograms, sequential verdicts.
//!
//! The engine is pure: it does no I/O, starts no task and reads no clock. The server and
//! the SDK both call it; neither evaluates flags any other way.

pub mod bucketing;
mod condition;
pub mod context;
pub mod document;
pub mod error;
pub mod evaluate;
mod nesting;
pub mod ramp;
pub mod ruleset;
pub mod snapshot;
mod stage;
pub mod stats;

pub use bucketing::Cohort;
pub use document::{Document, Flag, FlagType, Segment};
pub use error::{DocumentError, Problem};
pub use evaluate::{
    evaluate, evaluate_flag, evaluate_flag_with, evaluate_typed, Context, ErrorCode, Evaluation,
    Memo, Metadata, Reason, RolloutBucket,
};
pub use ruleset::{DeltaError, Ruleset, RulesetDelta, RulesetRef};
pub use snapshot::{validate, CompiledFlag, Limits, Snapshot};
pub use stage::Stage;
