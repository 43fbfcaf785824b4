//! What a typed getter answers: the value with why it was served, in OpenFeature's terms.

use ripcord_engine::Stage;
use serde_json::Value;

/// The result of one typed evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    /// The flag's value, or the caller's default when `error_code` is set.
    pub value: T,
    /// The name of the variant served; `None` on error.
    pub variant: Option<String>,
    pub reason: Reason,
    /// Set exactly when `value` is the caller's default because of an error.
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub metadata: FlagMetadata,
}

/// What tracked observations are tagged with, and what a person needs to see why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagMetadata {
    /// The environment revision at which the flag last changed (0 for a bootstrap document).
    pub revision: u64,
    /// `treatment` or `control` while a rollout below 100% applies to the context.
    pub cohort: Option<String>,
    /// With a cohort, on a flag with a ramp: the ramp stage (index into the ramp's
    /// `stages`) the rollout is at. Metric observations are tagged with it.
    pub stage: Option<Stage>,
    /// The name of the rule that matched, if it has one.
    pub rule: Option<String>,
    /// The stickiness attribute the context lacked, which kept it out of the rollout.
    pub unit_missing: Option<String>,
    /// The same for everyone served this value of the flag, and different when the value
    /// changes: add it to the keys of what the app caches about the flag, so that
    /// treatment and control never read each other's entries ([`cache_key`] combines the
    /// tokens of several flags). `None` when no value was served (an error).
    pub cache_token: Option<String>,
}

/// One cache-key part for everything that depends on several flags: their cache tokens
/// (from each evaluation's [`FlagMetadata::cache_token`]) combined, in the order given. Two
/// apps get the same part exactly when they were served the same value of every flag.
pub fn cache_key<'a>(tokens: impl IntoIterator<Item = &'a str>) -> String {
    tokens.into_iter().collect::<Vec<_>>().join(".")
}

/// Why a context got its value (OpenFeature's resolution reasons).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The flag has no rules and no rollout.
    Static,
    /// A targeting rule matched.
    TargetingMatch,
    /// The context is in the rollout and got a variant of the split.
    Split,
    /// No rule matched and the context is outside the rollout.
    Default,
    /// The kill switch is off.
    Disabled,
    /// The caller's default was served; see the error code.
    Error,
    /// A reason a newer server sent that this SDK does not know, passed through.
    Other(String),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
            Reason::Other(reason) => reason,
        }
    }

    pub fn parse(text: &str) -> Reason {
        match text {
            "STATIC" => Reason::Static,
            "TARGETING_MATCH" => Reason::TargetingMatch,
            "SPLIT" => Reason::Split,
            "DEFAULT" => Reason::Default,
            "DISABLED" => Reason::Disabled,
            "ERROR" => Reason::Error,
            other => Reason::Other(other.to_string()),
        }
    }
}

impl From<ripcord_engine::Reason> for Reason {
    fn from(reason: ripcord_engine::Reason) -> Reason {
        match reason {
            ripcord_engine::Reason::Static => Reason::Static,
            ripcord_engine::Reason::TargetingMatch => Reason::TargetingMatch,
            ripcord_engine::Reason::Split => Reason::Split,
            ripcord_engine::Reason::Default => Reason::Default,
            ripcord_engine::Reason::Disabled => Reason::Disabled,
            ripcord_engine::Reason::Error => Reason::Error,
        }
    }
}

/// Why the caller's default was served (OpenFeature's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The client has no flags yet: no ruleset, no bootstrap, no cached evaluations.
    ProviderNotReady,
    FlagNotFound,
    /// The flag is of another type than the getter's.
    TypeMismatch,
    ParseError,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }

    /// Reads a code a server sent; one this SDK does not know is `General`.
    pub fn parse(text: &str) -> ErrorCode {
        match text {
            "PROVIDER_NOT_READY" => ErrorCode::ProviderNotReady,
            "FLAG_NOT_FOUND" => ErrorCode::FlagNotFound,
            "TYPE_MISMATCH" => ErrorCode::TypeMismatch,
            "PARSE_ERROR" => ErrorCode::ParseError,
            "TARGETING_KEY_MISSING" => ErrorCode::TargetingKeyMissing,
            "INVALID_CONTEXT" => ErrorCode::InvalidContext,
            _ => ErrorCode::General,
        }
    }
}

impl From<ripcord_engine::ErrorCode> for ErrorCode {
    fn from(code: ripcord_engine::ErrorCode) -> ErrorCode {
        match code {
            ripcord_engine::ErrorCode::FlagNotFound => ErrorCode::FlagNotFound,
            ripcord_engine::ErrorCode::TypeMismatch => ErrorCode::TypeMismatch,
            ripcord_engine::ErrorCode::ParseError => ErrorCode::ParseError,
            ripcord_engine::ErrorCode::TargetingKeyMissing => ErrorCode::TargetingKeyMissing,
            ripcord_engine::ErrorCode::InvalidContext => ErrorCode::InvalidContext,
            ripcord_engine::ErrorCode::General => ErrorCode::General,
        }
    }
}

/// A Rust type a flag's value can be read as. Implemented for `bool`, `String`, `i64`,
/// `f64` and `serde_json::Value` (object flags).
pub trait FlagValue: Sized {
    /// The flag type the getter asks the engine for.
    const FLAG_TYPE: ripcord_engine::FlagType;

    /// The value as this type, or `None` when it is of another.
    fn from_json(value: &Value) -> Option<Self>;
}

impl FlagValue for bool {
    const FLAG_TYPE: ripcord_engine::FlagType = ripcord_engine::FlagType::Boolean;
    fn from_json(value: &Value) -> Option<bool> {
        value.as_bool()
    }
}

impl FlagValue for String {
    const FLAG_TYPE: ripcord_engine::FlagType = ripcord_engine::FlagType::String;
    fn from_json(value: &Value) -> Option<String> {
        value.as_str().map(str::to_string)
    }
}

impl FlagValue for i64 {
    const FLAG_TYPE: ripcord_engine::FlagType = ripcord_engine::FlagType::Integer;
    fn from_json(value: &Value) -> Option<i64> {
        value.as_i64()
    }
}

impl FlagValue for f64 {
    const FLAG_TYPE: ripcord_engine::FlagType = ripcord_engine::FlagType::Float;
    // An integer satisfies a float, as in the engine's typed evaluation.
    fn from_json(value: &Value) -> Option<f64> {
        value.as_f64()
    }
}

impl FlagValue for Value {
    const FLAG_TYPE: ripcord_engine::FlagType = ripcord_engine::FlagType::Object;
    fn from_json(value: &Value) -> Option<Value> {
        value.is_object().then(|| value.clone())
    }
}

impl<T> Details<T> {
    pub(crate) fn error(default: T, code: ErrorCode, message: impl Into<String>) -> Details<T> {
        Details {
            value: default,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message.into()),
            metadata: FlagMetadata::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cache_key;

    #[test]
    fn a_cache_key_part_combines_the_tokens_in_order() {
        assert_eq!(cache_key(["a1b2", "c3d4"]), "a1b2.c3d4");
        assert_ne!(cache_key(["a1b2", "c3d4"]), cache_key(["c3d4", "a1b2"]));
        assert_eq!(cache_key([]), "");
    }
}
