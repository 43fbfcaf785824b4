//! API keys of the three scopes: client, server, admin.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::input::read_body;
use crate::error::Result;
use crate::http::errors::ErrorBody;
use crate::http::request::{parse_json, require_admin};
use crate::http::schemas::KeyRefusals;
use crate::http::state::State;
use crate::service::KeyInfo;
use crate::store::Scope;

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

/// Lists every key, revoked ones too; never their tokens.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    responses((status = 200, description = "Every key", body = [KeyInfo]), KeyRefusals),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_keys(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    require_admin(&request, &state)?;
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
    let actor = require_admin(&request, &state)?;
    let body: CreateKey = parse_json(&read_body(&state, payload).await?)?;
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
    let actor = require_admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(state.service.revoke_key(&id, &actor).await?))
}
