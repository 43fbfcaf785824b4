//! API keys of the three scopes: client, server, admin.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::http::errors::ErrorBody;
use crate::http::request::{parse_json, read_body, require_admin};
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::service::KeyInfo;
use crate::store::Scope;

/// The body of `POST /api/v1/keys`; [`CreateKeySchema`] describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub scope: Scope,
    /// Required for client and server keys; absent for admin keys.
    #[serde(default)]
    pub environment: Option<String>,
}

/// What [`CreateKey`] accepts, as a schema: an admin key belongs to no environment, a client
/// or server key to one. Written by hand, as a derived schema cannot tie the scope to
/// whether `environment` is there.
pub struct CreateKeySchema;

impl utoipa::PartialSchema for CreateKeySchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let name = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(256))
                .pattern(Some(r"\S"))
                .description(Some(
                    "What the key is for: not blank; at most 256 characters by default \
                     (`RIPCORD_MAX_KEY_LENGTH`)",
                ))
        };
        let scope = |scopes: &[&str]| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(scopes.to_vec()))
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .description(Some("An admin key: it works in every environment"))
                    .property("name", name())
                    .required("name")
                    .property("scope", scope(&["admin"]))
                    .required("scope")
                    .property(
                        "environment",
                        ObjectBuilder::new()
                            .schema_type(Type::Null)
                            .description(Some("Absent, or `null`")),
                    )
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .item(
                ObjectBuilder::new()
                    .description(Some("A client or a server key, of one environment"))
                    .property("name", name())
                    .required("name")
                    .property("scope", scope(&["client", "server"]))
                    .required("scope")
                    .property(
                        "environment",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[a-z0-9_-]{1,64}$"))
                            .description(Some("The environment the key belongs to")),
                    )
                    .required("environment")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .into()
    }
}

impl utoipa::ToSchema for CreateKeySchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "CreateKey".into()
    }
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
    responses((status = 200, description = "Every key", body = [KeyInfo]), StoreUnavailable, KeyRefusals),
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
    request_body = CreateKeySchema,
    responses(
        (status = 201, description = "Created, with the token", body = CreatedKey),
        (status = 400, description = "Not a valid key request", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 500, description = "The server could not draw the key's randomness; no key was made, and the cause is in the server's log", body = ErrorBody),
        StoreUnavailable,
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
        StoreUnavailable,
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
