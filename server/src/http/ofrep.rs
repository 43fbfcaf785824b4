//! OpenFeature Remote Evaluation Protocol (OFREP): single and bulk evaluation.
//!
//! Response shapes, error codes and statuses follow `ofrep-openapi.yaml`. Client keys see
//! only client-visible flags: any other flag is answered as not found, so an app's key does
//! not reveal which server-side flags exist. Bulk answers carry an `ETag` computed from the
//! body itself, so it changes exactly when what this key sees for this context changes.

use std::borrow::Cow;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::{evaluate_flag, CompiledFlag, Context, ErrorCode, Evaluation, FlagType};
use serde::Serialize;
use serde_json::Value;

use super::state::State;
use crate::environment::Environment;
use crate::error::Error;
use crate::service::Principal;
use crate::store::Scope;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/ofrep/v1")
            .wrap(
                Cors::default()
                    .allow_any_origin()
                    .allowed_methods(["GET", "POST", "OPTIONS"])
                    .allowed_headers([
                        header::AUTHORIZATION,
                        header::CONTENT_TYPE,
                        header::IF_NONE_MATCH,
                        header::HeaderName::from_static("last-event-id"),
                        header::HeaderName::from_static("x-api-key"),
                        header::HeaderName::from_static(crate::reach::HEADER),
                    ])
                    .expose_headers([header::ETAG])
                    .max_age(3600),
            )
            // Resources rather than `.route`: a wrong method then gets 405, not 404.
            .service(web::resource("/evaluate/flags/{key}").route(web::post().to(evaluate_one)))
            .service(web::resource("/evaluate/flags").route(web::post().to(evaluate_all)))
            .service(web::resource("/events").route(web::get().to(events))),
    );
}

/// An OFREP failure: answered with its status and `{key?, errorCode, errorDetails}`.
struct Failure {
    status: StatusCode,
    key: Option<String>,
    code: ErrorCode,
    details: String,
}

impl Failure {
    fn invalid_context(key: Option<&str>, details: String) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            key: key.map(str::to_string),
            code: ErrorCode::InvalidContext,
            details,
        }
    }

    /// The key's environment is not here: deleted while the request was read (the deletion
    /// revoked the key, so the next request gets 401), or, with a shared store, not arrived
    /// at this node yet. Neither the caller's mistake nor a server failure: nothing can be
    /// evaluated, as if the flag did not exist. A single evaluation says so as OFREP's
    /// not-found; a bulk one has no flag to name and answers OFREP's bulk failure.
    fn environment_missing(key: Option<&str>, environment: &str) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            key: key.map(str::to_string),
            code: if key.is_some() {
                ErrorCode::FlagNotFound
            } else {
                ErrorCode::General
            },
            details: format!("environment `{environment}` does not exist"),
        }
    }

    fn respond(self) -> HttpResponse {
        let mut body = serde_json::Map::new();
        if let Some(key) = self.key {
            body.insert("key".to_string(), Value::String(key));
        }
        body.insert("errorCode".to_string(), Value::from(self.code.as_str()));
        body.insert("errorDetails".to_string(), Value::String(self.details));
        HttpResponse::build(self.status).json(body)
    }
}

enum Refusal {
    /// Authentication, authorization or limits: the server's own error shape.
    Error(Error),
    /// The evaluation request itself: OFREP's shape.
    Ofrep(Failure),
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal::Error(error)
    }
}

impl Refusal {
    fn respond(self) -> HttpResponse {
        match self {
            Refusal::Error(error) => actix_web::ResponseError::error_response(&error),
            Refusal::Ofrep(failure) => failure.respond(),
        }
    }
}

/// Authenticates an evaluating key, parses the context and finds the key's environment.
async fn prepare(
    request: &HttpRequest,
    state: &State,
    payload: web::Payload,
    flag_key: Option<&str>,
) -> Result<(Arc<Principal>, Arc<Environment>, Context), Refusal> {
    let principal = super::request::principal(request, state)?;
    let Some(environment_name) = principal
        .environment
        .as_deref()
        .filter(|_| principal.scope != Scope::Admin)
    else {
        return Err(Error::Forbidden(
            "admin keys do not evaluate flags: use a client or server key of the environment"
                .to_string(),
        )
        .into());
    };
    let body =
        super::request::read_body(payload, state.max_body_bytes, "RIPCORD_MAX_BODY_BYTES").await?;
    let context = parse_context(
        &body,
        flag_key,
        state.max_context_attributes,
        state.service.limits().max_key_length,
    )
    .map_err(Refusal::Ofrep)?;
    // The snapshot only now that the body is in: taken before, a slow upload would be
    // evaluated against flags older than writes acknowledged while it was sent, and would
    // keep that old snapshot alive for as long as the client cares to take.
    let environment = state
        .service
        .environment(environment_name)
        .ok_or_else(|| Refusal::Ofrep(Failure::environment_missing(flag_key, environment_name)))?;
    let instance = request.headers().get(crate::reach::HEADER);
    let instance = instance.map(|id| id.as_bytes());
    state
        .service
        .reach()
        .record_header(&environment.name, instance, environment.revision);
    Ok((principal, environment, context))
}

fn parse_context(
    body: &[u8],
    key: Option<&str>,
    max_attributes: usize,
    max_name: usize,
) -> Result<Context, Failure> {
    #[derive(serde::Deserialize)]
    struct Request {
        context: Option<Value>,
    }
    let request: Request = serde_json::from_slice(body).map_err(|error| Failure {
        status: StatusCode::BAD_REQUEST,
        key: key.map(str::to_string),
        code: ErrorCode::ParseError,
        details: format!("the request body is not a JSON evaluation request: {error}"),
    })?;
    let attributes = match request.context {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(attributes)) => attributes,
        Some(_) => {
            return Err(Failure::invalid_context(
                key,
                "`context` must be a JSON object".to_string(),
            ))
        }
    };
    crate::context::build(attributes, max_attributes, max_name)
        .map_err(|details| Failure::invalid_context(key, details))
}

/// OFREP's success item: `{key, value, reason, variant, metadata}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OfrepEvaluationSuccess)]
struct Success<'a> {
    key: &'a str,
    #[schema(value_type = Value)]
    value: Cow<'a, Value>,
    reason: &'static str,
    variant: &'a str,
    metadata: Metadata<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepMetadata)]
struct Metadata<'a> {
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cohort: Option<&'static str>,
    /// With a cohort on a flag with a ramp: the ramp stage (index into `stages`) to tag
    /// metric observations with.
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// The stickiness attribute the context lacked, which kept it out of the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_missing: Option<&'a str>,
}

fn success<'a>(flag: &'a CompiledFlag, evaluation: &Evaluation<'a>) -> Success<'a> {
    let value = evaluation.value.unwrap_or(&Value::Null);
    // Float flags are written with a decimal point, so typed clients never read an integer.
    let value = match (flag.flag_type(), value.as_f64()) {
        (FlagType::Float, Some(number)) if !value.is_f64() => Cow::Owned(Value::from(number)),
        _ => Cow::Borrowed(value),
    };
    Success {
        key: flag.key(),
        value,
        reason: evaluation.reason.as_str(),
        variant: evaluation.variant.unwrap_or_default(),
        metadata: Metadata {
            revision: evaluation.metadata.revision,
            cohort: evaluation.metadata.cohort.map(|cohort| cohort.as_str()),
            stage: evaluation.metadata.stage.map(u32::from),
            rule: evaluation.metadata.rule,
            unit_missing: evaluation.metadata.unit_missing,
        },
    }
}

fn visible(principal: &Principal, flag: &CompiledFlag) -> bool {
    principal.scope != Scope::Client || flag.is_client_visible()
}

/// Evaluates one flag for the context.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "ofrep",
    params(("key" = String, Path, description = "The flag's key")),
    request_body = crate::http::schemas::OfrepEvaluationRequest,
    responses(
        (status = 200, description = "The evaluation", body = Success),
        (status = 400, description = "The context is not valid", body = crate::http::schemas::OfrepFailure),
        (status = 404, description = "No such flag, or not visible to this key, or the key's environment was deleted meanwhile", body = crate::http::schemas::OfrepFailure),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = crate::http::errors::ErrorBody),
        crate::http::schemas::KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn evaluate_one(
    request: HttpRequest,
    state: web::Data<State>,
    key: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let key = key.into_inner();
    let (principal, environment, context) =
        match prepare(&request, &state, payload, Some(&key)).await {
            Ok(prepared) => prepared,
            Err(refusal) => return refusal.respond(),
        };
    let Some(flag) = environment
        .snapshot
        .flag(&key)
        .filter(|flag| visible(&principal, flag))
    else {
        return Failure {
            status: StatusCode::NOT_FOUND,
            key: Some(key.clone()),
            code: ErrorCode::FlagNotFound,
            details: format!("flag `{key}` was not found"),
        }
        .respond();
    };
    let evaluation = evaluate_flag(flag, &context);
    state
        .metrics
        .evaluations
        .recorder(&environment.name)
        .record(flag.key(), evaluation.reason);
    HttpResponse::Ok().json(success(flag, &evaluation))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepBulkEvaluationSuccess)]
struct Bulk<'a> {
    flags: Vec<Success<'a>>,
    /// Where to hear of changes instead of polling.
    event_streams: [EventStream; 1],
}

/// OFREP's `eventStream`, as `endpoint` rather than `url`: behind a proxy the server does
/// not know the origin its clients reach it at, and the provider's own is the right one.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepEventStream)]
struct EventStream {
    /// Always `sse`.
    r#type: &'static str,
    endpoint: EventStreamEndpoint,
    /// Seconds a hidden tab or backgrounded app keeps the stream open.
    inactivity_delay_sec: u32,
}

/// OFREP's default, said out loud so that providers need not know it.
const INACTIVITY_DELAY_SECONDS: u32 = 120;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepEventStreamEndpoint)]
struct EventStreamEndpoint {
    /// `/ofrep/v1/events?channel=...`, to be appended to the provider's OFREP origin.
    request_uri: String,
}

impl EventStream {
    /// The stream of the key that made the request. The channel names the key without being
    /// it: the URL is seen by browsers, logs and proxies that must not learn the key.
    fn of(request: &HttpRequest, state: &State) -> EventStream {
        let token = super::request::api_key(request).unwrap_or_default();
        EventStream {
            r#type: "sse",
            endpoint: EventStreamEndpoint {
                request_uri: format!(
                    "/ofrep/v1/events?channel={}",
                    state.service.event_channel(token)
                ),
            },
            inactivity_delay_sec: INACTIVITY_DELAY_SECONDS,
        }
    }
}

/// OFREP's `generalErrorResponse`, for a failure of the server's own.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepGeneralError)]
struct GeneralError {
    error_details: String,
}

/// Evaluates every flag this key may see for the context. Answers `304` when `If-None-Match`
/// names the current `ETag`.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "ofrep",
    params(
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a previous answer"),
        ("flagConfigEtag" = Option<String>, Query, description = "Accepted from OFREP providers and ignored: every answer is computed afresh"),
        ("flagConfigLastModified" = Option<String>, Query, description = "Accepted from OFREP providers and ignored")
    ),
    request_body = crate::http::schemas::OfrepEvaluationRequest,
    responses(
        (status = 200, description = "Every evaluation", body = Bulk, headers(("ETag" = String))),
        (status = 304, description = "Nothing changed since the `ETag` sent"),
        (status = 400, description = "The context is not valid", body = crate::http::schemas::OfrepFailure),
        (status = 404, description = "The key's environment was deleted meanwhile (`GENERAL`)", body = crate::http::schemas::OfrepFailure),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = crate::http::errors::ErrorBody),
        (status = 500, description = "The server failed", body = GeneralError),
        crate::http::schemas::KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn evaluate_all(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> HttpResponse {
    let (principal, environment, context) = match prepare(&request, &state, payload, None).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.respond(),
    };
    let mut flags = Vec::with_capacity(environment.snapshot.len());
    let mut counts = state.metrics.evaluations.recorder(&environment.name);
    for flag in environment
        .snapshot
        .flags()
        .filter(|flag| visible(&principal, flag))
    {
        let evaluation = evaluate_flag(flag, &context);
        counts.record(flag.key(), evaluation.reason);
        flags.push(success(flag, &evaluation));
    }
    // Flags seen for the first time are counted now, before the answer is written.
    drop(counts);
    let bulk = Bulk {
        flags,
        event_streams: [EventStream::of(&request, &state)],
    };
    let body = match serde_json::to_vec(&bulk) {
        Ok(body) => body,
        // JSON values and strings always serialize; should that ever change, it is the
        // server's fault, answered as OFREP's general error rather than blamed on the input.
        Err(error) => {
            tracing::error!(%error, "serializing a bulk evaluation failed");
            return HttpResponse::InternalServerError().json(GeneralError {
                error_details: "the evaluation could not be written".to_string(),
            });
        }
    };
    let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body));
    if super::request::if_none_match(&request, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(body)
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    channel: Option<String>,
}

/// Server-sent events for OFREP providers: `data: {"type":"refetchEvaluation"}` whenever the
/// evaluations of the channel's key may have changed, with the revision as `id`. The URL
/// comes from `eventStreams` in a bulk answer; it carries a channel, not the API key, because
/// `EventSource` cannot send headers. Heartbeats are SSE comments.
#[utoipa::path(
    get,
    path = "/ofrep/v1/events",
    tag = "ofrep",
    params(
        ("channel" = String, Query, description = "The channel from the bulk answer's `eventStreams`"),
        ("Last-Event-ID" = Option<String>, Header, description = "The revision of the last event received")
    ),
    responses(
        (status = 200, description = "The event stream; each event as the schema says", content_type = "text/event-stream", body = super::sdk::OfrepStreamEvent),
        (status = 401, description = "No channel, or one whose key is unknown or revoked", body = crate::http::errors::ErrorBody),
        (status = 404, description = "The key's environment was deleted meanwhile", body = crate::http::errors::ErrorBody)
    )
)]
async fn events(
    request: HttpRequest,
    state: web::Data<State>,
) -> crate::error::Result<HttpResponse> {
    // The URL is opaque to providers, but one may still add parameters of its own: only
    // `channel` means anything here.
    let channel = web::Query::<EventsQuery>::from_query(request.query_string())
        .ok()
        .and_then(|query| query.into_inner().channel)
        .unwrap_or_default();
    let environment = state
        .service
        .channel_principal(&channel)
        .and_then(|principal| principal.environment.clone())
        .ok_or(Error::Unauthorized(
            "the channel is not valid: its key is unknown or revoked",
        ))?;
    super::sdk::follow(
        &state,
        super::sdk::Credential::Channel(channel),
        environment,
        super::sdk::last_event_id(&request),
        super::sdk::Encoding::Ofrep,
        None,
    )
}
