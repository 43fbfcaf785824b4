//! Environments: each has its own flags, segments and keys.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::errors::ErrorBody;
use crate::http::request::{parse_json, read_body, require_admin};
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::store::EnvironmentRecord;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1 to 64 of `a-z`, `0-9`, `-` and `_`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
}

/// Lists every environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    tag = "environments",
    responses((status = 200, description = "Every environment", body = [EnvironmentRecord]), StoreUnavailable, KeyRefusals),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_environments(
    request: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse> {
    require_admin(&request, &state)?;
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
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_environment(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
    let body: CreateEnvironment = parse_json(&read_body(&state, payload).await?)?;
    let record = state.service.create_environment(&body.name, &actor).await?;
    Ok(HttpResponse::Created().json(record))
}

/// Shows one environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}",
    tag = "environments",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The environment", body = EnvironmentRecord),
        (status = 404, description = "No such environment", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_environment(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&request, &state)?;
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
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such environment", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_environment(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
    state
        .service
        .delete_environment(&environment, &actor)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found(what: &'static str, key: &str) -> Error {
    Error::NotFound {
        what,
        key: key.to_string(),
    }
}
