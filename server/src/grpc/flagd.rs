//! flagd's evaluation services (`flagd.evaluation.v1` and `v2`), so that OpenFeature's flagd
//! providers can evaluate against Ripcord.
//!
//! They serve one environment, RIPCORD_FLAGD_ENVIRONMENT. Stock providers send no key: such
//! calls are allowed only with RIPCORD_FLAGD_ALLOW_ANONYMOUS, and then see every flag. A
//! call with a key needs a client or server key of that environment. Errors are flagd's:
//! a missing flag is NOT_FOUND, a flag of another type INVALID_ARGUMENT (integer and float
//! flags answer either numeric call, as flagd's do), a value that cannot be read DATA_LOSS.

use std::sync::Arc;

use ripcord_engine::{ErrorCode, Evaluation, FlagType, RulesetDelta};
use ripcord_proto::pb::flagd::evaluation::{v1, v2};
use serde_json::{Map, Value};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::follow::{self, Messages};
use super::shared::Shared;
use super::status::{Refusal, Result};
use super::{auth, convert};
use crate::delivery::Opening;
use crate::environment::Environment;
use crate::evaluation::{self, Evaluator};
use crate::feed::Delta;
use crate::store::Scope;

pub struct Flagd {
    pub shared: Arc<Shared>,
}

/// `flagd.evaluation.v1.Service`.
pub struct V1(pub Flagd);

/// `flagd.evaluation.v2.Service`.
pub struct V2(pub Flagd);

/// Who is calling, and what they may see.
pub struct Caller {
    /// `None` for an anonymous call, which sees every flag.
    scope: Option<Scope>,
    token: Option<String>,
    environment: String,
}

/// One typed resolution.
struct Resolved<T> {
    value: T,
    reason: String,
    variant: String,
    metadata: prost_types::Struct,
}

/// Who calls flagd's services, from the call's `authorization` header: the gRPC gate asks
/// this before the request body is read, and every call again.
pub fn caller(shared: &Shared, authorization: Option<&http::HeaderValue>) -> Result<Caller> {
    let Some(environment) = shared.flagd_environment.clone() else {
        return Err(Refusal::FailedPrecondition(
            "flagd's services serve no environment here: set RIPCORD_FLAGD_ENVIRONMENT".to_string(),
        ));
    };
    let Some(token) = auth::token_of(authorization)? else {
        if shared.flagd_allow_anonymous {
            return Ok(Caller {
                scope: None,
                token: None,
                environment,
            });
        }
        return Err(Refusal::Unauthenticated(format!(
            "no key: send a client or server key of environment `{environment}` as \
             `authorization: Bearer <key>`"
        )));
    };
    let (principal, own) = auth::evaluating(&shared.service, &token)?;
    if own != environment {
        return Err(Refusal::PermissionDenied(format!(
            "this key belongs to environment `{own}`; flagd's services serve `{environment}`"
        )));
    }
    Ok(Caller {
        scope: Some(principal.scope),
        token: Some(token),
        environment,
    })
}

impl Flagd {
    fn caller(&self, metadata: &MetadataMap) -> Result<Caller> {
        let headers: &http::HeaderMap = metadata.as_ref();
        caller(&self.shared, headers.get(http::header::AUTHORIZATION))
    }
    /// The caller's environment, opened for evaluation.
    fn open(&self, metadata: &MetadataMap, caller: &Caller) -> Result<Evaluator> {
        let opening = evaluation::Caller {
            scope: caller.scope,
            environment: &caller.environment,
            instance: metadata.get(crate::reach::HEADER).map(|id| id.as_bytes()),
        };
        Evaluator::open(&self.shared.service, &opening)
            .ok_or_else(|| follow::gone(&caller.environment))
    }

    fn resolve<T>(
        &self,
        metadata: &MetadataMap,
        flag_key: &str,
        context: Option<prost_types::Struct>,
        expected: FlagType,
        read: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Resolved<T>> {
        let caller = self.caller(metadata)?;
        let context = self.shared.context(context)?;
        let evaluator = self.open(metadata, &caller)?;
        let not_found = || Refusal::NotFound(format!("flag `{flag_key}` was not found"));
        // flagd's numbers are all doubles, so its providers ask for either kind of number
        // from either kind of flag: an integer request reads a float flag truncated, as flagd
        // does, and a float request reads an integer flag (which the engine allows).
        let accepted = match (expected, evaluator.environment().snapshot.flag(flag_key)) {
            (FlagType::Integer, Some(flag)) if flag.flag_type() == FlagType::Float => {
                FlagType::Float
            }
            _ => expected,
        };
        let evaluated = evaluator
            .one(
                &self.shared.metrics.evaluations,
                flag_key,
                &context,
                Some(accepted),
            )
            .ok_or_else(not_found)?;
        let (flag, evaluation) = (evaluated.flag, evaluated.evaluation);
        if let Some(code) = evaluation.error {
            return Err(match code {
                ErrorCode::FlagNotFound => not_found(),
                ErrorCode::TypeMismatch => Refusal::InvalidArgument(format!(
                    "flag `{flag_key}` is of type {}, not {}",
                    flag.flag_type().as_str(),
                    expected.as_str()
                )),
                ErrorCode::ParseError => {
                    Refusal::DataLoss(format!("flag `{flag_key}` could not be read"))
                }
                ErrorCode::TargetingKeyMissing | ErrorCode::InvalidContext => {
                    Refusal::InvalidArgument(format!("invalid context for flag `{flag_key}`"))
                }
                ErrorCode::General => {
                    Refusal::Internal(format!("evaluating flag `{flag_key}` failed"))
                }
            });
        }
        let value = evaluation.value.and_then(read).ok_or_else(|| {
            Refusal::DataLoss(format!(
                "the value of flag `{flag_key}` cannot be read as {}",
                expected.as_str()
            ))
        })?;
        Ok(Resolved {
            value,
            reason: evaluation.reason.as_str().to_string(),
            variant: evaluation.variant.unwrap_or_default().to_string(),
            metadata: evaluation_metadata(&evaluation),
        })
    }

    fn resolve_all(
        &self,
        metadata: &MetadataMap,
        context: Option<prost_types::Struct>,
    ) -> Result<v1::ResolveAllResponse> {
        use v1::any_flag::Value as Any;
        let caller = self.caller(metadata)?;
        let context = self.shared.context(context)?;
        let evaluator = self.open(metadata, &caller)?;
        let mut flags = std::collections::HashMap::with_capacity(evaluator.flag_count());
        evaluator.all(&self.shared.metrics.evaluations, &context, |evaluated| {
            let (flag, evaluation) = (evaluated.flag, evaluated.evaluation);
            // flagd's numbers are doubles, integers included.
            let value = match (flag.flag_type(), evaluation.value) {
                (FlagType::Boolean, Some(Value::Bool(value))) => Any::BoolValue(*value),
                (FlagType::String, Some(Value::String(value))) => Any::StringValue(value.clone()),
                (FlagType::Integer | FlagType::Float, Some(Value::Number(number))) => {
                    Any::DoubleValue(number.as_f64().unwrap_or_default())
                }
                (FlagType::Object, Some(Value::Object(fields))) => {
                    Any::ObjectValue(convert::json_to_struct(fields))
                }
                // As flagd does: what cannot be given in AnyFlag is left out.
                _ => return,
            };
            flags.insert(
                flag.key().to_string(),
                v1::AnyFlag {
                    reason: evaluation.reason.as_str().to_string(),
                    variant: evaluation.variant.unwrap_or_default().to_string(),
                    metadata: Some(evaluation_metadata(&evaluation)),
                    value: Some(value),
                },
            );
        });
        let mut metadata = Map::new();
        metadata.insert(
            "revision".to_string(),
            Value::from(evaluator.environment().revision),
        );
        Ok(v1::ResolveAllResponse {
            flags,
            metadata: Some(convert::json_to_struct(&metadata)),
        })
    }

    fn event_stream<M: Send + 'static>(
        &self,
        metadata: &MetadataMap,
        build: fn(&'static str, Option<prost_types::Struct>) -> M,
    ) -> Result<follow::Stream<M>> {
        let caller = self.caller(metadata)?;
        let follow = self
            .shared
            .follow(caller.token, caller.environment, None, None);
        follow::start(
            follow,
            Events {
                scope: caller.scope,
                build,
            },
        )
    }
}

/// What flagd providers read from an evaluation's metadata: the revision, and the cohort,
/// ramp stage, rule and missing stickiness attribute when there are.
fn evaluation_metadata(evaluation: &Evaluation<'_>) -> prost_types::Struct {
    let metadata = &evaluation.metadata;
    let mut fields = Map::new();
    fields.insert("revision".to_string(), Value::from(metadata.revision));
    if let Some(cohort) = metadata.cohort {
        fields.insert("cohort".to_string(), Value::from(cohort.as_str()));
    }
    if let Some(stage) = metadata.stage {
        fields.insert("stage".to_string(), Value::from(stage.get()));
    }
    if let Some(rule) = metadata.rule {
        fields.insert("rule".to_string(), Value::from(rule));
    }
    if let Some(unit_missing) = metadata.unit_missing {
        fields.insert("unitMissing".to_string(), Value::from(unit_missing));
    }
    if let Some(cache_token) = metadata.cache_token {
        fields.insert("cacheToken".to_string(), Value::from(cache_token));
    }
    convert::json_to_struct(&fields)
}

/// flagd's `EventStream`: `provider_ready`, then `configuration_change` naming the flags
/// that changed, and `keep_alive` when nothing else was sent for a while.
struct Events<M> {
    scope: Option<Scope>,
    build: fn(&'static str, Option<prost_types::Struct>) -> M,
}

impl<M: Send + 'static> Messages for Events<M> {
    type Message = M;

    fn opening(&mut self, _: &Environment, _: &Opening) -> Vec<M> {
        vec![(self.build)("provider_ready", None)]
    }

    fn changed(
        &mut self,
        previous: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<M> {
        let computed;
        let changed: Vec<&str> = match delta {
            Some(delta) => delta.changed_flags.iter().map(String::as_str).collect(),
            None => {
                computed = RulesetDelta::between(&previous.ruleset(), &current.ruleset());
                computed.changed_flags().collect()
            }
        };
        let mut flags = Map::new();
        for key in changed {
            let before = previous.snapshot.flag(key);
            let after = current.snapshot.flag(key);
            // A client key must not learn of flags it cannot see, even by name.
            let seen = |flag: Option<&ripcord_engine::CompiledFlag>| {
                flag.is_some_and(|flag| crate::access::sees(self.scope, flag))
            };
            if !seen(before) && !seen(after) {
                continue;
            }
            let kind = match (before, after) {
                (None, Some(_)) => "write",
                (Some(_), None) => "delete",
                _ => "update",
            };
            // flagd names the source of each change; here it is the environment.
            flags.insert(
                key.to_string(),
                serde_json::json!({ "type": kind, "source": current.name }),
            );
        }
        if flags.is_empty() {
            return None;
        }
        let mut data = Map::new();
        data.insert("flags".to_string(), Value::Object(flags));
        Some((self.build)(
            "configuration_change",
            Some(convert::json_to_struct(&data)),
        ))
    }

    fn heartbeat(&mut self, _: u64) -> M {
        (self.build)("keep_alive", None)
    }
}

fn read_bool(value: &Value) -> Option<bool> {
    value.as_bool()
}

fn read_string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn read_float(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn read_int(value: &Value) -> Option<i64> {
    // Truncated toward zero, as flagd converts its doubles; out of range saturates.
    value
        .as_i64()
        .or_else(|| value.as_f64().map(|number| number as i64))
}

fn read_object(value: &Value) -> Option<prost_types::Struct> {
    value.as_object().map(convert::json_to_struct)
}

/// One typed resolution's response. v1 and v2 differ only in that v2's value and variant
/// are `optional`, which `$wrap` and `$wrap_variant` make them (and v1's object value is
/// a message, optional in both).
macro_rules! resolve {
    ($flagd:expr, $request:expr, $version:ident :: $response:ident, $wrap:ident, $wrap_variant:ident, $type:expr, $read:ident) => {{
        let (metadata, _, request) = $request.into_parts();
        let resolved =
            $flagd.resolve(&metadata, &request.flag_key, request.context, $type, $read)?;
        Ok(Response::new($version::$response {
            value: $wrap(resolved.value),
            reason: resolved.reason,
            variant: $wrap_variant(resolved.variant),
            metadata: Some(resolved.metadata),
        }))
    }};
}

fn plain<T>(value: T) -> T {
    value
}

#[tonic::async_trait]
impl v1::service_server::Service for V1 {
    async fn resolve_all(
        &self,
        request: Request<v1::ResolveAllRequest>,
    ) -> std::result::Result<Response<v1::ResolveAllResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        Ok(Response::new(
            self.0.resolve_all(&metadata, request.context)?,
        ))
    }

    async fn resolve_boolean(
        &self,
        request: Request<v1::ResolveBooleanRequest>,
    ) -> std::result::Result<Response<v1::ResolveBooleanResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v1::ResolveBooleanResponse,
            plain,
            plain,
            FlagType::Boolean,
            read_bool
        )
    }

    async fn resolve_string(
        &self,
        request: Request<v1::ResolveStringRequest>,
    ) -> std::result::Result<Response<v1::ResolveStringResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v1::ResolveStringResponse,
            plain,
            plain,
            FlagType::String,
            read_string
        )
    }

    async fn resolve_float(
        &self,
        request: Request<v1::ResolveFloatRequest>,
    ) -> std::result::Result<Response<v1::ResolveFloatResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v1::ResolveFloatResponse,
            plain,
            plain,
            FlagType::Float,
            read_float
        )
    }

    async fn resolve_int(
        &self,
        request: Request<v1::ResolveIntRequest>,
    ) -> std::result::Result<Response<v1::ResolveIntResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v1::ResolveIntResponse,
            plain,
            plain,
            FlagType::Integer,
            read_int
        )
    }

    async fn resolve_object(
        &self,
        request: Request<v1::ResolveObjectRequest>,
    ) -> std::result::Result<Response<v1::ResolveObjectResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v1::ResolveObjectResponse,
            Some,
            plain,
            FlagType::Object,
            read_object
        )
    }

    type EventStreamStream = follow::Stream<v1::EventStreamResponse>;

    async fn event_stream(
        &self,
        request: Request<v1::EventStreamRequest>,
    ) -> std::result::Result<Response<Self::EventStreamStream>, Status> {
        let stream =
            self.0
                .event_stream(request.metadata(), |kind, data| v1::EventStreamResponse {
                    r#type: kind.to_string(),
                    data,
                })?;
        Ok(Response::new(stream))
    }
}

#[tonic::async_trait]
impl v2::service_server::Service for V2 {
    async fn resolve_boolean(
        &self,
        request: Request<v2::ResolveBooleanRequest>,
    ) -> std::result::Result<Response<v2::ResolveBooleanResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v2::ResolveBooleanResponse,
            Some,
            Some,
            FlagType::Boolean,
            read_bool
        )
    }

    async fn resolve_string(
        &self,
        request: Request<v2::ResolveStringRequest>,
    ) -> std::result::Result<Response<v2::ResolveStringResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v2::ResolveStringResponse,
            Some,
            Some,
            FlagType::String,
            read_string
        )
    }

    async fn resolve_float(
        &self,
        request: Request<v2::ResolveFloatRequest>,
    ) -> std::result::Result<Response<v2::ResolveFloatResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v2::ResolveFloatResponse,
            Some,
            Some,
            FlagType::Float,
            read_float
        )
    }

    async fn resolve_int(
        &self,
        request: Request<v2::ResolveIntRequest>,
    ) -> std::result::Result<Response<v2::ResolveIntResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v2::ResolveIntResponse,
            Some,
            Some,
            FlagType::Integer,
            read_int
        )
    }

    async fn resolve_object(
        &self,
        request: Request<v2::ResolveObjectRequest>,
    ) -> std::result::Result<Response<v2::ResolveObjectResponse>, Status> {
        let flagd = &self.0;
        resolve!(
            flagd,
            request,
            v2::ResolveObjectResponse,
            Some,
            Some,
            FlagType::Object,
            read_object
        )
    }

    type EventStreamStream = follow::Stream<v2::EventStreamResponse>;

    async fn event_stream(
        &self,
        request: Request<v2::EventStreamRequest>,
    ) -> std::result::Result<Response<Self::EventStreamStream>, Status> {
        let stream =
            self.0
                .event_stream(request.metadata(), |kind, data| v2::EventStreamResponse {
                    r#type: kind.to_string(),
                    data,
                })?;
        Ok(Response::new(stream))
    }
}
