//! The admin REST API under `/api/v1`: environments, flags, segments, whole documents, keys
//! and the audit log.
//!
//! Every route needs an admin key, checked before the body is read. Every change to flags and
//! segments goes through [`Service::change`](crate::service::Service::change), which
//! validates the whole resulting document and commits it all or nothing, so a handler never
//! validates anything itself.

use std::fmt::Display;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::{Document, DocumentError, Flag, Problem, Segment};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ErrorBody;
use super::openapi::KeyRefusals;
use super::State;
use crate::error::{Error, Result};
use crate::service::{Change, KeyInfo, Principal};
use crate::store::{AuditQuery, AuditRecord, EnvironmentRecord, Scope};

/// The audit page size when the request names none.
pub const DEFAULT_AUDIT_LIMIT: usize = 50;
/// The largest audit page: bounds the work and the response of one request.
pub const MAX_AUDIT_LIMIT: usize = 500;

// Routes are registered with their full paths rather than inside a `/api/v1` scope: a scope
// would swallow every other `/api/v1` route (SDK ruleset, metrics) registered after it.
// Each path is a resource, so a wrong method gets 405 rather than "no such route".
pub fn routes(config: &mut web::ServiceConfig) {
    use web::{delete, get, post, put, resource};
    config
        .service(resource("/api/v1/openapi.json").route(get().to(super::openapi::document)))
        .service(
            resource("/api/v1/environments")
                .route(get().to(list_environments))
                .route(post().to(create_environment)),
        )
        .service(
            resource("/api/v1/environments/{environment}")
                .route(get().to(get_environment))
                .route(delete().to(delete_environment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags")
                .route(get().to(list_flags))
                .route(post().to(create_flag)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}")
                .route(get().to(get_flag))
                .route(put().to(replace_flag))
                .route(delete().to(delete_flag)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/enabled")
                .route(put().to(set_enabled)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/rollout/percentage")
                .route(put().to(set_percentage)),
        )
        .service(
            resource("/api/v1/environments/{environment}/segments")
                .route(get().to(list_segments))
                .route(post().to(create_segment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/segments/{key}")
                .route(get().to(get_segment))
                .route(put().to(replace_segment))
                .route(delete().to(delete_segment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/document")
                .route(get().to(export_document))
                .route(put().to(import_document)),
        )
        .service(
            resource("/api/v1/keys")
                .route(get().to(list_keys))
                .route(post().to(create_key)),
        )
        .service(resource("/api/v1/keys/{id}").route(delete().to(revoke_key)))
        .service(resource("/api/v1/audit").route(get().to(audit)));
}

// ---- request and response bodies -------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1 to 64 of `a-z`, `0-9`, `-` and `_`.
    pub name: String,
}

/// A flag with the revision at which it last changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagEntry {
    pub key: String,
    pub revision: u64,
    /// The flag document (DESIGN.md, contract 2).
    #[schema(value_type = Object)]
    pub flag: Flag,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlag {
    pub key: String,
    /// The flag document. Kept as a value until the key is known, so that its problems are
    /// reported at `flags.<key>...`.
    #[schema(value_type = Object)]
    pub flag: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEnabled {
    /// `false` serves the default variant to everyone.
    pub enabled: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPercentage {
    /// 0 to 100, with at most three decimals.
    pub percentage: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentEntry {
    pub key: String,
    #[schema(value_type = Object)]
    pub segment: Segment,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegment {
    pub key: String,
    /// The segment document; kept as a value until the key is known, as for flags.
    #[schema(value_type = Object)]
    pub segment: Value,
}

/// What an import left in the environment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// The environment's revision after the import.
    pub revision: u64,
    /// How many flags the environment now has.
    pub flags: usize,
    /// How many segments the environment now has.
    pub segments: usize,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub scope: Scope,
    /// Required for client and server keys; absent for admin keys.
    #[serde(default)]
    pub environment: Option<String>,
}

/// A new key with its token, which is shown this once only: it is stored hashed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyInfo,
    pub token: String,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// The `before` of the next page; `null` on the last page.
    pub next: Option<u64>,
}

/// Query parameters are read as text and converted here, so that a bad one is reported with
/// its name in our error shape.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries about this environment.
    pub environment: Option<String>,
    /// Only entries about this flag.
    pub flag: Option<String>,
    /// Entries per page: 1 to 500, 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Only entries older than this id: the `next` of the previous page.
    #[param(value_type = Option<u64>)]
    pub before: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `json` (the default) or `yaml`; without it, `Accept: application/yaml` asks for YAML.
    pub format: Option<String>,
}

// ---- environments ------------------------------------------------------------------------

/// Lists every environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    tag = "environments",
    responses((status = 200, description = "Every environment", body = [EnvironmentRecord]), KeyRefusals),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_environments(
    request: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(state.service.environments().await?))
}

/// Creates an empty environment.
#[utoipa::path(
    post,
    path = "/api/v1/environments",
    tag = "environments",
    request_body = CreateEnvironment,
    responses(
        (status = 201, description = "Created", body = EnvironmentRecord),
        (status = 400, description = "Not a valid environment name", body = ErrorBody),
        (status = 409, description = "The environment exists", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_environment(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let body: CreateEnvironment = super::parse_json(&read_body(&state, payload).await?)?;
    let record = state.service.create_environment(&body.name, &actor).await?;
    Ok(HttpResponse::Created().json(record))
}

/// Shows one environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}",
    tag = "environments",
    params(("environment" = String, Path, description = "The environment's name")),
    responses(
        (status = 200, description = "The environment", body = EnvironmentRecord),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_environment(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let record = state
        .service
        .environments()
        .await?
        .into_iter()
        .find(|record| record.name == *environment)
        .ok_or_else(|| not_found("environment", &environment))?;
    Ok(HttpResponse::Ok().json(record))
}

/// Deletes an environment with its flags and segments, and revokes its keys.
#[utoipa::path(
    delete,
    path = "/api/v1/environments/{environment}",
    tag = "environments",
    params(("environment" = String, Path, description = "The environment's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_environment(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    state
        .service
        .delete_environment(&environment, &actor)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- flags -------------------------------------------------------------------------------

/// Lists an environment's flags, ordered by key.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/flags",
    tag = "flags",
    params(("environment" = String, Path, description = "The environment's name")),
    responses(
        (status = 200, description = "Every flag", body = [FlagEntry]),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_flags(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let flags: Vec<FlagEntry> = state
        .service
        .flags(&environment)?
        .into_iter()
        .map(|(key, flag, revision)| FlagEntry {
            key,
            revision,
            flag,
        })
        .collect();
    Ok(HttpResponse::Ok().json(flags))
}

/// Creates a flag.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{environment}/flags",
    tag = "flags",
    params(("environment" = String, Path, description = "The environment's name")),
    request_body = CreateFlag,
    responses(
        (status = 201, description = "Created", body = FlagEntry),
        (status = 400, description = "The flag is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "The flag exists", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_flag(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let body: CreateFlag = super::parse_json(&read_body(&state, payload).await?)?;
    let flag: Flag = parse_value(body.flag, &format!("flags.{}", body.key))?;
    let key = body.key;
    let revision = state
        .service
        .create_item(
            change(&environment, &actor, "create_flag"),
            &key,
            flag.clone(),
        )
        .await?;
    Ok(HttpResponse::Created().json(FlagEntry {
        key,
        revision,
        flag,
    }))
}

/// Shows one flag.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/flags/{key}",
    tag = "flags",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The flag's key")
    ),
    responses(
        (status = 200, description = "The flag", body = FlagEntry),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_flag(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let (flag, revision) = state.service.flag(&environment, &key)?;
    Ok(HttpResponse::Ok().json(FlagEntry {
        key,
        revision,
        flag,
    }))
}

/// Replaces a flag with the flag document in the body.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/flags/{key}",
    tag = "flags",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The flag's key")
    ),
    request_body(content = Object, description = "The flag document"),
    responses(
        (status = 200, description = "Replaced", body = FlagEntry),
        (status = 400, description = "The flag is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn replace_flag(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let replacement: Flag =
        parse_item(&read_body(&state, payload).await?, &format!("flags.{key}"))?;
    edit_flag(&state, &actor, &environment, key, "update_flag", |flag| {
        *flag = replacement;
        Ok(())
    })
    .await
}

/// Deletes a flag.
#[utoipa::path(
    delete,
    path = "/api/v1/environments/{environment}/flags/{key}",
    tag = "flags",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The flag's key")
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_flag(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    state
        .service
        .delete_item::<Flag>(change(&environment, &actor, "delete_flag"), &key)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The kill switch: `false` serves the default variant to everyone.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/flags/{key}/enabled",
    tag = "flags",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The flag's key")
    ),
    request_body = SetEnabled,
    responses(
        (status = 200, description = "The flag as it is now", body = FlagEntry),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn set_enabled(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let body: SetEnabled = super::parse_json(&read_body(&state, payload).await?)?;
    edit_flag(&state, &actor, &environment, key, "kill_switch", |flag| {
        // Flipping to the state the flag is already in changes nothing, so a repeated kill
        // makes neither a revision nor an audit entry.
        if flag.is_enabled() != body.enabled {
            flag.enabled = Some(body.enabled);
        }
        Ok(())
    })
    .await
}

/// Sets the share of units in the flag's rollout.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/flags/{key}/rollout/percentage",
    tag = "flags",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The flag's key")
    ),
    request_body = SetPercentage,
    responses(
        (status = 200, description = "The flag as it is now", body = FlagEntry),
        (status = 400, description = "Not a valid percentage, or the flag has no rollout", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn set_percentage(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let body: SetPercentage = super::parse_json(&read_body(&state, payload).await?)?;
    let flag_key = key.clone();
    edit_flag(&state, &actor, &environment, key, "set_percentage", move |flag| {
        // Without a rollout there is no split to serve: adding one is a flag edit, not a ramp.
        let rollout = flag.rollout.as_mut().ok_or_else(|| {
            Error::bad_request(
                format!("flag `{flag_key}` has no rollout: add one to the flag before setting its percentage"),
                Some("rollout".to_string()),
            )
        })?;
        rollout.percentage = body.percentage;
        Ok(())
    })
    .await
}

/// Applies `edit` to an existing flag and answers with the flag as committed.
async fn edit_flag(
    state: &State,
    actor: &Principal,
    environment: &str,
    key: String,
    operation: &'static str,
    edit: impl FnOnce(&mut Flag) -> Result<()>,
) -> Result<HttpResponse> {
    state
        .service
        .edit_item(change(environment, actor, operation), &key, edit)
        .await?;
    // Read back rather than taken from the change: an edit that changed nothing commits
    // nothing, and the flag keeps the revision at which it last changed.
    let (flag, revision) = state.service.flag(environment, &key)?;
    Ok(HttpResponse::Ok().json(FlagEntry {
        key,
        revision,
        flag,
    }))
}

// ---- segments ----------------------------------------------------------------------------

/// Lists an environment's segments, ordered by key.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/segments",
    tag = "segments",
    params(("environment" = String, Path, description = "The environment's name")),
    responses(
        (status = 200, description = "Every segment", body = [SegmentEntry]),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_segments(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let segments: Vec<SegmentEntry> = state
        .service
        .segments(&environment)?
        .into_iter()
        .map(|(key, segment)| SegmentEntry { key, segment })
        .collect();
    Ok(HttpResponse::Ok().json(segments))
}

/// Creates a segment.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{environment}/segments",
    tag = "segments",
    params(("environment" = String, Path, description = "The environment's name")),
    request_body = CreateSegment,
    responses(
        (status = 201, description = "Created", body = SegmentEntry),
        (status = 400, description = "The segment is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "The segment exists", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_segment(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let body: CreateSegment = super::parse_json(&read_body(&state, payload).await?)?;
    let segment: Segment = parse_value(body.segment, &format!("segments.{}", body.key))?;
    let key = body.key;
    state
        .service
        .create_item(
            change(&environment, &actor, "create_segment"),
            &key,
            segment.clone(),
        )
        .await?;
    Ok(HttpResponse::Created().json(SegmentEntry { key, segment }))
}

/// Shows one segment.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/segments/{key}",
    tag = "segments",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The segment's key")
    ),
    responses(
        (status = 200, description = "The segment", body = SegmentEntry),
        (status = 404, description = "No such environment or segment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_segment(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let segment = state.service.segment(&environment, &key)?;
    Ok(HttpResponse::Ok().json(SegmentEntry { key, segment }))
}

/// Replaces a segment with the segment document in the body.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/segments/{key}",
    tag = "segments",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The segment's key")
    ),
    request_body(content = Object, description = "The segment document"),
    responses(
        (status = 200, description = "Replaced", body = SegmentEntry),
        (status = 400, description = "The segment is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment or segment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn replace_segment(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let replacement: Segment = parse_item(
        &read_body(&state, payload).await?,
        &format!("segments.{key}"),
    )?;
    let segment = state
        .service
        .edit_item(
            change(&environment, &actor, "update_segment"),
            &key,
            |segment| {
                *segment = replacement;
                Ok(())
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(SegmentEntry { key, segment }))
}

/// Deletes a segment. A segment that a flag's rule names cannot be deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/environments/{environment}/segments/{key}",
    tag = "segments",
    params(
        ("environment" = String, Path, description = "The environment's name"),
        ("key" = String, Path, description = "The segment's key")
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A flag uses the segment; nothing was changed", body = ErrorBody),
        (status = 404, description = "No such environment or segment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_segment(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    state
        .service
        .delete_item::<Segment>(change(&environment, &actor, "delete_segment"), &key)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- whole documents ---------------------------------------------------------------------

/// Replaces the environment's whole document (flags and segments) with the body, YAML or
/// JSON. All or nothing: an invalid document changes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/document",
    tag = "documents",
    params(("environment" = String, Path, description = "The environment's name")),
    request_body(
        description = "The flag document (DESIGN.md, contract 2)",
        content((Object = "application/json"), (String = "application/yaml"))
    ),
    responses(
        (status = 200, description = "Imported", body = ImportSummary),
        (status = 400, description = "The document is invalid; `problems` lists every problem", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 413, description = "Over RIPCORD_MAX_IMPORT_BYTES", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn import_document(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let body =
        super::read_body(payload, state.max_import_bytes, "RIPCORD_MAX_IMPORT_BYTES").await?;
    let text = std::str::from_utf8(&body)
        .map_err(|error| Error::bad_request(format!("the document is not UTF-8: {error}"), None))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // An empty YAML text reads as the empty document, which would delete every flag: far
    // more likely a broken upload than an intent, which `{}` says plainly.
    if text.trim().is_empty() {
        return Err(Error::bad_request(
            "the document is empty; to remove every flag and segment, send `{}`",
            None,
        ));
    }
    let imported = match declared_format(&request) {
        Some(Format::Json) => Document::from_json(text)?,
        Some(Format::Yaml) => Document::from_yaml(text)?,
        None => Document::from_text(text)?,
    };
    let (flags, segments) = (imported.flags.len(), imported.segments.len());
    let revision = state
        .service
        .change(change(&environment, &actor, "import"), |document| {
            *document = imported;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(ImportSummary {
        revision,
        flags,
        segments,
    }))
}

/// The environment's whole document: JSON, or YAML when asked for.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/document",
    tag = "documents",
    params(("environment" = String, Path, description = "The environment's name"), ExportParams),
    responses(
        (status = 200, description = "The flag document (DESIGN.md, contract 2)",
            content((Object = "application/json"), (String = "application/yaml"))),
        (status = 400, description = "Not a known format", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn export_document(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let params: ExportParams = parse_query(&request)?;
    let format = export_format(&request, params.format.as_deref())?;
    let document = state.service.export(&environment)?;
    Ok(match format {
        Format::Json => HttpResponse::Ok()
            .content_type("application/json")
            .body(document.to_json()),
        Format::Yaml => HttpResponse::Ok()
            .content_type("application/yaml")
            .body(document.to_yaml()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn yaml_media_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
    )
}

/// The format the content type declares, if it names one; without it the body decides
/// (`Document::from_text`).
fn declared_format(request: &HttpRequest) -> Option<Format> {
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(media_type);
    match declared.as_deref() {
        Some("application/json") => Some(Format::Json),
        Some(declared) if yaml_media_type(declared) => Some(Format::Yaml),
        _ => None,
    }
}

/// `?format=` wins; otherwise the first of JSON or YAML that `Accept` lists; JSON by default.
fn export_format(request: &HttpRequest, format: Option<&str>) -> Result<Format> {
    match format.map(str::to_ascii_lowercase).as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("yaml" | "yml") => return Ok(Format::Yaml),
        Some(other) => {
            return Err(Error::bad_request(
                format!("`{other}` is not an export format: use `json` or `yaml`"),
                Some("format".to_string()),
            ))
        }
        None => {}
    }
    let accepted = request
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(media_type)
        .find_map(|media_type| match media_type.as_str() {
            "application/json" => Some(Format::Json),
            yaml if yaml_media_type(yaml) => Some(Format::Yaml),
            _ => None,
        });
    Ok(accepted.unwrap_or(Format::Json))
}

// ---- keys --------------------------------------------------------------------------------

/// Lists every key, revoked ones too; never their tokens.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    responses((status = 200, description = "Every key", body = [KeyInfo]), KeyRefusals),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_keys(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(state.service.keys().await?))
}

/// Creates a key. The token is in this response only.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created, with the token", body = CreatedKey),
        (status = 400, description = "Not a valid key request", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_key(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    let body: CreateKey = super::parse_json(&read_body(&state, payload).await?)?;
    let (key, token) = state
        .service
        .create_key(&body.name, body.scope, body.environment.as_deref(), &actor)
        .await?;
    Ok(HttpResponse::Created().json(CreatedKey { key, token }))
}

/// Revokes a key. Revoking a revoked key changes nothing.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = KeyInfo),
        (status = 404, description = "No such key", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn revoke_key(
    request: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let actor = super::admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(state.service.revoke_key(&id, &actor).await?))
}

// ---- audit -------------------------------------------------------------------------------

/// Reads the audit log, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn audit(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    super::admin(&request, &state)?;
    let query = audit_query(parse_query(&request)?)?;
    let limit = query.limit;
    let entries = state.service.audit(&query).await?;
    // A short page is the last one; a full one may be, and the next request finds out.
    let next = if entries.len() >= limit {
        entries.last().map(|entry| entry.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage { entries, next }))
}

fn audit_query(params: AuditParams) -> Result<AuditQuery> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_AUDIT_LIMIT,
        Some(limit) => {
            let limit: usize = limit.trim().parse().map_err(|_| {
                Error::bad_request(
                    format!(
                        "`limit` must be a whole number from 1 to {MAX_AUDIT_LIMIT}, not `{limit}`"
                    ),
                    Some("limit".to_string()),
                )
            })?;
            if limit == 0 || limit > MAX_AUDIT_LIMIT {
                return Err(Error::bad_request(
                    format!(
                        "`limit` is {limit}; the limit is 1 to {MAX_AUDIT_LIMIT} entries per page"
                    ),
                    Some("limit".to_string()),
                ));
            }
            limit
        }
    };
    let before = params
        .before
        .as_deref()
        .map(|before| {
            before.trim().parse::<u64>().map_err(|_| {
                Error::bad_request(
                    format!("`before` must be an audit entry id (a whole number), not `{before}`"),
                    Some("before".to_string()),
                )
            })
        })
        .transpose()?;
    let non_empty = |value: Option<String>| value.filter(|value| !value.is_empty());
    Ok(AuditQuery {
        environment: non_empty(params.environment),
        flag: non_empty(params.flag),
        before,
        limit,
    })
}

// ---- helpers -----------------------------------------------------------------------------

fn change<'a>(environment: &'a str, actor: &'a Principal, operation: &'static str) -> Change<'a> {
    Change {
        environment,
        actor,
        operation,
        reason: None,
    }
}

fn not_found(what: &'static str, key: &str) -> Error {
    Error::NotFound {
        what,
        key: key.to_string(),
    }
}

async fn read_body(state: &State, payload: web::Payload) -> Result<web::Bytes> {
    super::read_body(payload, state.max_body_bytes, "RIPCORD_MAX_BODY_BYTES").await
}

/// Query strings go through our error shape, not actix's.
fn parse_query<T: DeserializeOwned>(request: &HttpRequest) -> Result<T> {
    web::Query::<T>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| {
            Error::bad_request(format!("the query string is not valid: {error}"), None)
        })
}

/// Parses a flag or segment sent on its own. Its problems are reported at their path in the
/// environment's document (`flags.<key>.rollout`), the path an import or a validation of the
/// same flag would name.
fn parse_item<T: DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let item = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| item_problem(prefix, &error.path().to_string(), error.inner()))?;
    deserializer
        .end()
        .map_err(|error| item_problem(prefix, ".", &error))?;
    Ok(item)
}

/// [`parse_item`] for a flag or segment nested in a request body.
fn parse_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| item_problem(prefix, &error.path().to_string(), error.inner()))
}

fn item_problem(prefix: &str, path: &str, error: &impl Display) -> Error {
    // serde_path_to_error writes "." for the root, `[0]` for sequence indexes, and "?" for
    // where a syntax error cut the input short: that place has no name worth reporting.
    let path = path.strip_suffix(".?").unwrap_or(path);
    let path = match path {
        "?" | "." | "" => prefix.to_string(),
        index if index.starts_with('[') => format!("{prefix}{index}"),
        path => format!("{prefix}.{path}"),
    };
    Error::Invalid(DocumentError::Parse(Problem::new(path, error.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(error: Error) -> String {
        error
            .problems()
            .first()
            .map(|problem| problem.path.clone())
            .unwrap_or_default()
    }

    #[test]
    fn problems_in_a_lone_flag_are_reported_at_their_document_path() {
        let error = parse_item::<Flag>(
            br#"{"type":"boolean","variants":{},"default_variant":"on","colour":1}"#,
            "flags.f",
        )
        .unwrap_err();
        assert_eq!(path_of(error), "flags.f.colour");
        let error = parse_item::<Flag>(b"[]", "flags.f").unwrap_err();
        assert_eq!(path_of(error), "flags.f");
        let error = parse_item::<Flag>(br#"{"type":"boolean","#, "flags.f").unwrap_err();
        assert_eq!(path_of(error), "flags.f");
        let error = parse_value::<Segment>(
            serde_json::json!({"when": [{"attribute": "a", "op": "nope"}]}),
            "segments.s",
        )
        .unwrap_err();
        assert_eq!(path_of(error), "segments.s.when[0].op");
    }

    #[test]
    fn the_openapi_document_names_every_admin_route() {
        use utoipa::OpenApi as _;
        let document = super::super::openapi::ApiDoc::openapi();
        for path in [
            "/api/v1/environments/{environment}/flags/{key}/rollout/percentage",
            "/api/v1/environments/{environment}/document",
            "/api/v1/keys/{id}",
            "/api/v1/audit",
            "/ofrep/v1/evaluate/flags",
        ] {
            assert!(
                document.paths.paths.contains_key(path),
                "{path} is not documented"
            );
        }
        let schemes = document
            .components
            .map(|components| components.security_schemes)
            .unwrap_or_default();
        assert!(schemes.contains_key("bearer") && schemes.contains_key("api_key"));
    }

    #[test]
    fn audit_limits_are_checked() {
        let params = |limit: &str| AuditParams {
            limit: Some(limit.to_string()),
            ..AuditParams::default()
        };
        assert_eq!(
            audit_query(AuditParams::default()).unwrap().limit,
            DEFAULT_AUDIT_LIMIT
        );
        assert_eq!(audit_query(params("500")).unwrap().limit, 500);
        for bad in ["501", "0", "-1", "many"] {
            match audit_query(params(bad)) {
                Err(Error::BadRequest { path, .. }) => assert_eq!(path.as_deref(), Some("limit")),
                other => panic!("limit={bad} gave {other:?}"),
            }
        }
    }
}
