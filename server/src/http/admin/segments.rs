//! Segments: named sets of conditions that rules refer to.

use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::Segment;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::{change, parse_item, parse_value};
use crate::error::Result;
use crate::http::errors::ErrorBody;
use crate::http::flag_schema::SegmentSchema;
use crate::http::request::{parse_json, read_body, require_admin};
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentEntry {
    pub key: String,
    #[schema(value_type = SegmentSchema)]
    pub segment: Segment,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegment {
    /// No whitespace, control character or `/`; at most 256 characters by default
    /// (`RIPCORD_MAX_KEY_LENGTH`).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$"
    )]
    pub key: String,
    /// The segment.
    // Kept as a value until the key is known, as for flags.
    #[schema(value_type = SegmentSchema)]
    pub segment: Value,
}

/// Lists an environment's segments, ordered by key.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/segments",
    tag = "segments",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
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
    require_admin(&request, &state)?;
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
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = CreateSegment,
    responses(
        (status = 201, description = "Created", body = SegmentEntry),
        (status = 400, description = "The segment is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "The segment exists", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
    let body: CreateSegment = parse_json(&read_body(&state, payload).await?)?;
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The segment's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
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
    require_admin(&request, &state)?;
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The segment's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    request_body(content = SegmentSchema, description = "The segment"),
    responses(
        (status = 200, description = "Replaced", body = SegmentEntry),
        (status = 400, description = "The segment is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment or segment", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
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
                *segment = replacement.clone();
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The segment's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A flag uses the segment; nothing was changed", body = ErrorBody),
        (status = 404, description = "No such environment or segment", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_segment(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    state
        .service
        .delete_item::<Segment>(change(&environment, &actor, "delete_segment"), &key)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
