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
use ripcord_engine::{CompiledFlag, Context, ErrorCode, Evaluation};
use serde::Serialize;
use serde_json::Value;

use super::state::State;
use crate::access::{self, Action};
use crate::answers::OfrepPieces;
use crate::context::Read;
use crate::error::Error;
use crate::evaluation::{Caller, Evaluated, Evaluator};
use crate::principal::Principal;

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
pub(crate) struct Failure {
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

/// Authenticates an evaluating key, parses the context and opens the key's environment.
async fn prepare(
    request: &HttpRequest,
    state: &State,
    payload: web::Payload,
    flag_key: Option<&str>,
) -> Result<(Arc<Principal>, Evaluator, Context), Refusal> {
    let principal = super::request::principal(request, state)?;
    let environment_name =
        access::environment(&principal, Action::Evaluate).map_err(Error::from)?;
    let body = super::request::read_body(state, payload).await?;
    let context = parse_context(
        &body,
        flag_key,
        state.max_context_attributes,
        state.service.limits().max_key_length,
    )
    .map_err(Refusal::Ofrep)?;
    let caller = Caller {
        scope: Some(principal.scope),
        environment: environment_name,
        instance: request
            .headers()
            .get(crate::reach::HEADER)
            .map(|id| id.as_bytes()),
    };
    let evaluator = Evaluator::open(&state.service, &caller)
        .ok_or_else(|| Refusal::Ofrep(Failure::environment_missing(flag_key, environment_name)))?;
    Ok((principal, evaluator, context))
}

pub(crate) fn parse_context(
    body: &[u8],
    key: Option<&str>,
    max_attributes: usize,
    max_name: usize,
) -> Result<Context, Failure> {
    let parse_error = |error: serde_json::Error| Failure {
        status: StatusCode::BAD_REQUEST,
        key: key.map(str::to_string),
        code: ErrorCode::ParseError,
        details: format!("the request body is not a JSON evaluation request: {error}"),
    };
    let mut builder = crate::context::Builder::new(max_attributes, max_name);
    let read = crate::context::read_request(body, &mut builder).map_err(parse_error)?;
    if read == Read::NotAnObject {
        return Err(Failure::invalid_context(
            key,
            "`context` must be a JSON object".to_string(),
        ));
    }
    builder
        .finish()
        .map_err(|details| Failure::invalid_context(key, details))
}

/// OFREP's success item: `{key, value, reason, variant, metadata}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OfrepEvaluationSuccess)]
// Written by `write_item`: outside tests only its schema is used, for the OpenAPI document.
#[cfg_attr(not(test), allow(dead_code))]
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
// As `Success`: the schema of what `write_item` writes.
#[cfg_attr(not(test), allow(dead_code))]
struct Metadata<'a> {
    revision: u64,
    /// The same for everyone served this value of the flag, and different when the value
    /// changes: add it to the keys of what the app caches about the flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_token: Option<&'a str>,
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

/// The value of a success item.
fn success_value<'a>(flag: &CompiledFlag, evaluation: &Evaluation<'a>) -> Cow<'a, Value> {
    match evaluation.value {
        Some(value) => crate::answers::answered_value(flag.flag_type(), value),
        None => Cow::Owned(Value::Null),
    }
}

/// The item [`write_item`] writes, as serde would write it: the reference it is tested
/// against, and the schema of the OpenAPI document.
#[cfg(test)]
fn success<'a>(flag: &'a CompiledFlag, evaluation: &Evaluation<'a>) -> Success<'a> {
    Success {
        key: flag.key(),
        value: success_value(flag, evaluation),
        reason: evaluation.reason.as_str(),
        variant: evaluation.variant.unwrap_or_default(),
        metadata: Metadata {
            revision: evaluation.metadata.revision,
            cache_token: evaluation.metadata.cache_token,
            cohort: evaluation.metadata.cohort.map(|cohort| cohort.as_str()),
            stage: evaluation.metadata.stage.map(u32::from),
            rule: evaluation.metadata.rule,
            unit_missing: evaluation.metadata.unit_missing,
        },
    }
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
        (status = 500, description = "The server failed", body = GeneralError),
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
    let (_, evaluator, context) = match prepare(&request, &state, payload, Some(&key)).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.respond(),
    };
    match evaluator.one(&state.metrics.evaluations, &key, &context, None) {
        Some(evaluated) => {
            let mut body = Vec::with_capacity(192);
            match write_item(&mut body, evaluator.ofrep_pieces(), &evaluated) {
                Ok(()) => HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body),
                Err(error) => general_error(error),
            }
        }
        None => Failure {
            status: StatusCode::NOT_FOUND,
            key: Some(key.clone()),
            code: ErrorCode::FlagNotFound,
            details: format!("flag `{key}` was not found"),
        }
        .respond(),
    }
}

/// Writes one success item, byte for byte what serializing [`Success`] gives.
///
/// Items are the hot path's largest piece of work after the evaluations: fifty flags are
/// some 250 strings. What depends only on the flag and the variant comes encoded from
/// [`OfrepPieces`]; what depends on the context is written here, field names as constants
/// and names copied whole unless they hold something to escape, which they almost never do.
fn write_item(
    out: &mut Vec<u8>,
    pieces: &OfrepPieces,
    evaluated: &Evaluated<'_>,
) -> Result<(), serde_json::Error> {
    let Evaluated {
        position,
        flag,
        evaluation,
    } = evaluated;
    let encoded = evaluation
        .variant
        .and_then(|variant| flag.variant_position(variant))
        .and_then(|variant| pieces.around_reason(*position, variant));
    match encoded {
        Some((before, after)) => {
            out.extend_from_slice(before);
            out.extend_from_slice(evaluation.reason.as_str().as_bytes());
            out.extend_from_slice(after);
        }
        // An evaluation that served no variant of the flag: written field by field.
        None => write_item_head(out, flag, evaluation)?,
    }
    let metadata = &evaluation.metadata;
    if let Some(cohort) = metadata.cohort {
        out.extend_from_slice(br#","cohort":"#);
        write_plain(out, cohort.as_str());
    }
    if let Some(stage) = metadata.stage {
        out.extend_from_slice(br#","stage":"#);
        write_u64(out, u64::from(stage));
    }
    if let Some(rule) = metadata.rule {
        out.extend_from_slice(br#","rule":"#);
        write_str(out, rule);
    }
    if let Some(unit_missing) = metadata.unit_missing {
        out.extend_from_slice(br#","unitMissing":"#);
        write_str(out, unit_missing);
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

/// An item up to its metadata's revision, field by field.
fn write_item_head(
    out: &mut Vec<u8>,
    flag: &CompiledFlag,
    evaluation: &Evaluation<'_>,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(br#"{"key":"#);
    write_str(out, flag.key());
    out.extend_from_slice(br#","value":"#);
    serde_json::to_writer(&mut *out, &*success_value(flag, evaluation))?;
    out.extend_from_slice(br#","reason":"#);
    write_plain(out, evaluation.reason.as_str());
    out.extend_from_slice(br#","variant":"#);
    write_str(out, evaluation.variant.unwrap_or_default());
    out.extend_from_slice(br#","metadata":{"revision":"#);
    write_u64(out, evaluation.metadata.revision);
    if let Some(cache_token) = evaluation.metadata.cache_token {
        out.extend_from_slice(br#","cacheToken":"#);
        write_str(out, cache_token);
    }
    Ok(())
}

/// Writes a bulk answer as it is evaluated, byte for byte what serializing [`Bulk`] gives.
///
/// Public for the load benchmark's floor (`server/examples/ceiling.rs`), which writes its
/// answers with it so that the floor's cost is this writer's.
pub struct BulkWriter<'p> {
    out: Vec<u8>,
    pieces: &'p OfrepPieces,
    first: bool,
    /// The first error of a value's serialization, answered once the answer is finished.
    error: Option<serde_json::Error>,
}

impl<'p> BulkWriter<'p> {
    pub fn new(pieces: &'p OfrepPieces, flags: usize) -> BulkWriter<'p> {
        // About what a flag takes with its metadata; a little more is copied if not.
        let mut out = Vec::with_capacity(256 + flags * 160);
        out.extend_from_slice(br#"{"flags":["#);
        BulkWriter {
            out,
            pieces,
            first: true,
            error: None,
        }
    }

    pub fn flag(&mut self, evaluated: &Evaluated<'_>) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        if let Err(error) = write_item(&mut self.out, self.pieces, evaluated) {
            self.error.get_or_insert(error);
        }
    }

    /// Ends the answer with the [`EventStream`] of the key whose event-stream channel is
    /// `channel`.
    pub fn finish(mut self, channel: &str) -> Result<Vec<u8>, serde_json::Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let out = &mut self.out;
        out.extend_from_slice(br#"],"eventStreams":[{"type":"sse","endpoint":{"requestUri":"#);
        if needs_no_escape(channel) {
            out.push(b'"');
            out.extend_from_slice(EVENTS_PATH.as_bytes());
            out.extend_from_slice(channel.as_bytes());
            out.push(b'"');
        } else {
            write_str(out, &format!("{EVENTS_PATH}{channel}"));
        }
        out.extend_from_slice(br#"},"inactivityDelaySec":"#);
        write_u64(out, u64::from(INACTIVITY_DELAY_SECONDS));
        out.extend_from_slice(b"}]}");
        Ok(self.out)
    }
}

/// The `ETag` of a bulk answer: a hash of its bytes, so that it changes exactly when they do.
pub fn bulk_etag(answer: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(answer))
}

/// A JSON string. serde_json escapes only `"`, the backslash and control characters; a string with
/// none of them is written as it is, anything else as serde_json writes it.
fn write_str(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text) {
        write_plain(out, text);
    } else {
        // Writing a string into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether serde_json writes `text` between its quotes as it is.
fn needs_no_escape(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
}

/// A string known to need no escaping, such as the engine's reason and cohort names.
fn write_plain(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, number: u64) {
    // Writing a number into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, &number);
}

/// The bulk answer: described in the OpenAPI document, and the reference [`BulkWriter`] is
/// tested against.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepBulkEvaluationSuccess)]
#[cfg_attr(not(test), allow(dead_code))]
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
#[cfg_attr(not(test), allow(dead_code))]
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
#[cfg_attr(not(test), allow(dead_code))]
struct EventStreamEndpoint {
    /// `/ofrep/v1/events?channel=...`, to be appended to the provider's OFREP origin.
    request_uri: String,
}

/// Where a key's event stream is, before its channel. The channel names the key without
/// being it: the URL is seen by browsers, logs and proxies that must not learn the key.
const EVENTS_PATH: &str = "/ofrep/v1/events?channel=";

/// OFREP's `generalErrorResponse`, for a failure of the server's own.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OfrepGeneralError)]
struct GeneralError {
    error_details: String,
}

/// JSON values and strings always serialize; should that ever change, it is the server's
/// fault, answered as OFREP's general error rather than blamed on the input.
fn general_error(error: serde_json::Error) -> HttpResponse {
    tracing::error!(%error, "writing an evaluation failed");
    HttpResponse::InternalServerError().json(GeneralError {
        error_details: "the evaluation could not be written".to_string(),
    })
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
    let (principal, evaluator, context) = match prepare(&request, &state, payload, None).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.respond(),
    };
    let mut body = BulkWriter::new(evaluator.ofrep_pieces(), evaluator.flag_count());
    evaluator.all(&state.metrics.evaluations, &context, |evaluated| {
        body.flag(&evaluated);
    });
    let channel = match &principal.event_channel {
        Some(channel) => Cow::Borrowed(channel.as_str()),
        None => Cow::Owned(
            state
                .service
                .event_channel(super::request::api_key(&request).unwrap_or_default()),
        ),
    };
    let body = match body.finish(&channel) {
        Ok(body) => body,
        // JSON values and strings always serialize; should that ever change, it is the
        // server's fault, answered as OFREP's general error rather than blamed on the input.
        Err(error) => return general_error(error),
    };
    let etag = bulk_etag(&body);
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
        crate::delivery::Credential::Channel(channel),
        environment,
        super::sdk::last_event_id(&request),
        super::sdk::Encoding::Ofrep,
        None,
    )
}

#[cfg(test)]
mod tests {
    use ripcord_engine::{evaluate_flag, Document, FlagType, Limits, Snapshot};
    use serde_json::json;

    use super::*;

    /// Every kind of value, strings that need escaping in values and rule names, a float
    /// flag with a whole number, rollouts with cohorts and a missing unit.
    const DOCUMENT: &str = r#"
flags:
  plain:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
  quoted:
    type: string
    variants: {a: "say \"hi\"\\ then\nbreak\u0001", b: "café ✓"}
    default_variant: a
    rules:
      - name: "the \"staff\" rule"
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: b}
  factor:
    type: float
    variants: {whole: 1, part: 0.85}
    default_variant: whole
  size:
    type: integer
    variants: {small: 10, large: -50}
    default_variant: large
  theme:
    type: object
    variants: {light: {background: "white", sizes: [1, 2.5, null]}}
    default_variant: light
  rollout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout:
      stickiness: userId
      percentage: 50
      split: [{variant: "on", weight: 1}]
  killed:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: false
"#;

    #[test]
    fn the_bulk_writer_writes_what_serde_writes() {
        let document = Document::from_yaml(DOCUMENT).expect("a valid document");
        let snapshot =
            Snapshot::compile(&document, 7, |_| 3, &Limits::default()).expect("it compiles");
        for (context, channel) in [
            (json!({}), "0a1b2c"),
            (json!({"email": "ana@example.com", "userId": "u-1"}), "abc"),
            (json!({"userId": "u-2"}), "a\"b\\c"),
            (json!({"userId": 17}), ""),
        ] {
            let Value::Object(attributes) = context else {
                unreachable!()
            };
            let context = crate::context::build(attributes, 100, 100).expect("a context");
            let evaluations: Vec<_> = snapshot
                .flags()
                .enumerate()
                .map(|(position, flag)| Evaluated {
                    position,
                    flag,
                    evaluation: evaluate_flag(flag, &context),
                })
                .collect();
            let pieces = OfrepPieces::new(&snapshot);
            let mut writer = BulkWriter::new(&pieces, evaluations.len());
            for evaluated in &evaluations {
                writer.flag(evaluated);
                let mut item = Vec::new();
                write_item(&mut item, &pieces, evaluated).expect("it writes");
                let expected = serde_json::to_vec(&success(evaluated.flag, &evaluated.evaluation))
                    .expect("it serializes");
                assert_eq!(
                    String::from_utf8_lossy(&item),
                    String::from_utf8_lossy(&expected)
                );
            }
            let written = writer.finish(channel).expect("it writes");
            let expected = serde_json::to_vec(&Bulk {
                flags: evaluations
                    .iter()
                    .map(|evaluated| success(evaluated.flag, &evaluated.evaluation))
                    .collect(),
                event_streams: [EventStream {
                    r#type: "sse",
                    endpoint: EventStreamEndpoint {
                        request_uri: format!("/ofrep/v1/events?channel={channel}"),
                    },
                    inactivity_delay_sec: INACTIVITY_DELAY_SECONDS,
                }],
            })
            .expect("it serializes");
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&expected)
            );
        }
    }

    #[test]
    fn items_without_a_variant_of_their_flag_are_written_as_serde_writes_them() {
        let document = Document::from_yaml(DOCUMENT).expect("a valid document");
        let snapshot =
            Snapshot::compile(&document, 7, |_| 3, &Limits::default()).expect("it compiles");
        let pieces = OfrepPieces::new(&snapshot);
        let context = ripcord_engine::Context::new();
        for (position, flag) in snapshot.flags().enumerate() {
            // A type mismatch serves no variant; pieces of another flag's position must not
            // be used for it either.
            let mismatch = ripcord_engine::evaluate_typed(
                &snapshot,
                flag.key(),
                &context,
                if flag.flag_type() == FlagType::Boolean {
                    FlagType::String
                } else {
                    FlagType::Boolean
                },
            );
            for evaluated in [
                Evaluated {
                    position,
                    flag,
                    evaluation: mismatch.clone(),
                },
                Evaluated {
                    position: position + 1000,
                    flag,
                    evaluation: evaluate_flag(flag, &context),
                },
            ] {
                let mut item = Vec::new();
                write_item(&mut item, &pieces, &evaluated).expect("it writes");
                let expected = serde_json::to_vec(&success(flag, &evaluated.evaluation))
                    .expect("it serializes");
                assert_eq!(
                    String::from_utf8_lossy(&item),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_escapes_them() {
        for text in [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "line\nfeed",
            "\u{1}\u{1f}",
            "é ✓ \u{7f}",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).expect("a string"), "{text:?}");
        }
    }
}
