//! The OpenFeature provider: either client behind OpenFeature's evaluation API.

use std::time::Duration;

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value as OpenFeatureValue,
};
use ripcord_engine::Context;
use serde_json::Value;

use crate::details::{Details, ErrorCode, FlagValue, Reason};
use crate::error::Error;
use crate::local::LocalClient;
use crate::remote::RemoteClient;
use crate::tracking::Tracked;

/// An OpenFeature provider over a [`LocalClient`] or a [`RemoteClient`].
///
/// With a local client, each call's evaluation context is converted into a Ripcord
/// [`Context`] and evaluated in-process. A remote client's evaluations were made by the
/// server for the context the client was built with (OpenFeature's static-context
/// paradigm), so the call's context is not used.
///
/// OpenFeature's Rust API (0.3) has no tracking call, so guard metrics are reported with
/// [`track_rate`](Self::track_rate) and [`track_value`](Self::track_value) here. The
/// provider is cheap to clone: keep a clone to report with, and give OpenFeature the other.
#[derive(Clone)]
pub struct RipcordProvider {
    client: Client,
    metadata: ProviderMetadata,
    ready_timeout: Duration,
}

#[derive(Clone)]
enum Client {
    Local(LocalClient),
    Remote(RemoteClient),
}

impl RipcordProvider {
    pub fn local(client: LocalClient) -> RipcordProvider {
        RipcordProvider::new(Client::Local(client))
    }

    pub fn remote(client: RemoteClient) -> RipcordProvider {
        RipcordProvider::new(Client::Remote(client))
    }

    fn new(client: Client) -> RipcordProvider {
        RipcordProvider {
            client,
            metadata: ProviderMetadata::new("ripcord"),
            ready_timeout: Duration::from_secs(5),
        }
    }

    /// How long `initialize` (which OpenFeature runs when the provider is set) waits for
    /// the client to be ready. 5 s by default.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> RipcordProvider {
        self.ready_timeout = timeout;
        self
    }

    /// Reports whether an event of a `rate` guard metric happened to the unit of `context`
    /// (a local client: the unit of the flag's stickiness attribute; a remote client: the
    /// app), tagged with the cohort and stage of the unit's last evaluation of the flag.
    /// See [`LocalClient::track`] and [`RemoteClient::track_rate`].
    pub fn track_rate(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        metric: &str,
        happened: bool,
    ) -> Tracked {
        match &self.client {
            Client::Local(client) => client.track(
                flag_key,
                &context_from_openfeature(context),
                metric,
                f64::from(u8::from(happened)),
            ),
            Client::Remote(client) => client.track_rate(flag_key, metric, happened),
        }
    }

    /// Reports a measurement of a `value` guard metric (a latency, a size) for the unit of
    /// `context`; see [`track_rate`](Self::track_rate).
    pub fn track_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        metric: &str,
        value: f64,
    ) -> Tracked {
        match &self.client {
            Client::Local(client) => {
                client.track(flag_key, &context_from_openfeature(context), metric, value)
            }
            Client::Remote(client) => client.track_value(flag_key, metric, value),
        }
    }

    /// Sends what was tracked now; see [`LocalClient::flush`].
    pub async fn flush(&self) -> Result<(), Error> {
        match &self.client {
            Client::Local(client) => client.flush().await,
            Client::Remote(client) => client.flush().await,
        }
    }

    fn resolve<T: FlagValue, U>(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        default: T,
        convert: impl FnOnce(T) -> Option<U>,
    ) -> EvaluationResult<ResolutionDetails<U>> {
        let details: Details<T> = match &self.client {
            Client::Local(client) => {
                client.details(flag_key, &context_from_openfeature(context), default)
            }
            Client::Remote(client) => client.details(flag_key, default),
        };
        if let Some(code) = details.error_code {
            return Err(EvaluationError {
                code: error_code(code),
                message: details.error_message,
            });
        }
        let Some(value) = convert(details.value) else {
            return Err(EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!("flag `{flag_key}`'s value has no OpenFeature form")),
            });
        };
        let mut metadata = FlagMetadata::default().with_value(
            "revision",
            i64::try_from(details.metadata.revision).unwrap_or(i64::MAX),
        );
        for (name, field) in [
            ("cohort", details.metadata.cohort),
            ("rule", details.metadata.rule),
            ("unitMissing", details.metadata.unit_missing),
            ("cacheToken", details.metadata.cache_token),
        ] {
            if let Some(field) = field {
                metadata.add_value(name, field);
            }
        }
        if let Some(stage) = details.metadata.stage {
            metadata.add_value("stage", i64::from(stage.get()));
        }
        Ok(ResolutionDetails {
            value,
            variant: details.variant,
            reason: Some(reason(details.reason)),
            flag_metadata: Some(metadata),
        })
    }

    fn is_ready(&self) -> bool {
        match &self.client {
            Client::Local(client) => client.is_ready(),
            Client::Remote(client) => client.is_ready(),
        }
    }
}

#[async_trait]
impl FeatureProvider for RipcordProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        // Not ready in time is not fatal: the client keeps trying, `status` tells, and
        // evaluations answer PROVIDER_NOT_READY meanwhile.
        let _ = match &self.client {
            Client::Local(client) => client.wait_ready(self.ready_timeout).await,
            Client::Remote(client) => client.wait_ready(self.ready_timeout).await,
        };
    }

    fn status(&self) -> ProviderStatus {
        if self.is_ready() {
            ProviderStatus::Ready
        } else {
            ProviderStatus::NotReady
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, context, false, Some)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, context, 0i64, Some)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, context, 0f64, Some)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, context, String::new(), Some)
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(
            flag_key,
            context,
            Value::Null,
            |value| match openfeature_value(&value) {
                Some(OpenFeatureValue::Struct(value)) => Some(value),
                _ => None,
            },
        )
    }
}

/// OpenFeature's evaluation context as a Ripcord context: the targeting key becomes
/// `targetingKey`, the default unit of rollouts; custom fields keep their names. Times
/// become RFC 3339 text, which time conditions read. A structure is kept if it is a
/// `serde_json::Value` (OpenFeature's structures are opaque otherwise) and left out if not.
pub fn context_from_openfeature(context: &EvaluationContext) -> Context {
    let mut converted: Context = context
        .custom_fields
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), field_value(value)?)))
        .collect();
    if let Some(targeting_key) = &context.targeting_key {
        converted.insert("targetingKey", Value::String(targeting_key.clone()));
    }
    converted
}

fn field_value(value: &EvaluationContextFieldValue) -> Option<Value> {
    Some(match value {
        EvaluationContextFieldValue::Bool(value) => Value::Bool(*value),
        EvaluationContextFieldValue::Int(value) => Value::from(*value),
        EvaluationContextFieldValue::Float(value) => Value::from(*value),
        EvaluationContextFieldValue::String(value) => Value::String(value.clone()),
        EvaluationContextFieldValue::DateTime(value) => Value::String(
            value
                .format(&time::format_description::well_known::Rfc3339)
                .ok()?,
        ),
        EvaluationContextFieldValue::Struct(value) => value.downcast_ref::<Value>()?.clone(),
    })
}

/// A JSON value in OpenFeature's terms; `null`s are left out of objects and arrays, as
/// OpenFeature has no null.
fn openfeature_value(value: &Value) -> Option<OpenFeatureValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(value) => OpenFeatureValue::Bool(*value),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => OpenFeatureValue::Int(integer),
            None => OpenFeatureValue::Float(number.as_f64()?),
        },
        Value::String(text) => OpenFeatureValue::String(text.clone()),
        Value::Array(items) => {
            OpenFeatureValue::Array(items.iter().filter_map(openfeature_value).collect())
        }
        Value::Object(fields) => OpenFeatureValue::Struct(StructValue {
            fields: fields
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), openfeature_value(value)?)))
                .collect(),
        }),
    })
}

fn reason(reason: Reason) -> EvaluationReason {
    match reason {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Default => EvaluationReason::Default,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Error => EvaluationReason::Error,
        Reason::Other(other) => EvaluationReason::Other(other),
    }
}

fn error_code(code: ErrorCode) -> EvaluationErrorCode {
    match code {
        ErrorCode::ProviderNotReady => EvaluationErrorCode::ProviderNotReady,
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorCode::General => EvaluationErrorCode::General("GENERAL".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn openfeature_contexts_become_ripcord_contexts() {
        let moment = time::macros::datetime!(2026-03-01 12:00 UTC);
        let context = EvaluationContext::default()
            .with_targeting_key("user-7")
            .with_custom_field("plan", "pro")
            .with_custom_field("sessions", 42)
            .with_custom_field("score", 0.5)
            .with_custom_field("beta", true)
            .with_custom_field("signup", moment)
            .with_custom_field(
                "device",
                EvaluationContextFieldValue::Struct(Arc::new(json!({"os": "ios"}))),
            )
            .with_custom_field(
                "opaque",
                EvaluationContextFieldValue::Struct(Arc::new(17u8)),
            );
        let converted = context_from_openfeature(&context);
        assert_eq!(converted.get("targetingKey"), Some(&json!("user-7")));
        assert_eq!(converted.get("plan"), Some(&json!("pro")));
        assert_eq!(converted.get("sessions"), Some(&json!(42)));
        assert_eq!(converted.get("score"), Some(&json!(0.5)));
        assert_eq!(converted.get("beta"), Some(&json!(true)));
        assert_eq!(
            converted.get("signup"),
            Some(&json!("2026-03-01T12:00:00Z"))
        );
        assert_eq!(converted.get("device"), Some(&json!({"os": "ios"})));
        assert_eq!(converted.get("opaque"), None);
        assert_eq!(converted.len(), 7);
    }

    #[test]
    fn json_objects_become_structures_without_nulls() {
        let value = openfeature_value(&json!({"a": 1, "b": [true, null, 1.5], "c": null}));
        let Some(OpenFeatureValue::Struct(structure)) = value else {
            panic!("{value:?}")
        };
        assert_eq!(structure.fields.len(), 2);
        assert_eq!(structure.fields["a"], OpenFeatureValue::Int(1));
        assert_eq!(
            structure.fields["b"],
            OpenFeatureValue::Array(vec![
                OpenFeatureValue::Bool(true),
                OpenFeatureValue::Float(1.5)
            ])
        );
    }
}
