//! Flags, one at a time; the kill switch and the rollout percentage.

use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::Flag;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::{change, parse_item, parse_value};
use crate::error::{Error, Result};
use crate::http::errors::ErrorBody;
use crate::http::flag_schema::FlagSchema;
use crate::http::request::{parse_json, read_body, require_admin};
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::principal::Principal;
use crate::service::Change;

/// A flag with the revision at which it last changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagEntry {
    pub key: String,
    pub revision: u64,
    /// The flag, with its variants, rules and rollout, as docs/flags.md describes it.
    #[schema(value_type = FlagSchema)]
    pub flag: Flag,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlag {
    /// No whitespace, control character or `/`; at most 256 characters by default
    /// (`RIPCORD_MAX_KEY_LENGTH`).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$"
    )]
    pub key: String,
    /// The flag.
    // Kept as a value until the key is known, so that its problems are reported at
    // `flags.<key>...`.
    #[schema(value_type = FlagSchema)]
    pub flag: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEnabled {
    /// `false` serves the default variant to everyone.
    pub enabled: bool,
    /// Why, for the audit log; at most 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPercentage {
    /// 0 to 100, with at most three decimals.
    #[schema(minimum = 0.0, maximum = 100.0, multiple_of = 0.001)]
    pub percentage: f64,
}

/// Lists an environment's flags, ordered by key.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/flags",
    tag = "flags",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
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
    require_admin(&request, &state)?;
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
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = CreateFlag,
    responses(
        (status = 201, description = "Created", body = FlagEntry),
        (status = 400, description = "The flag is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "The flag exists", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
    let body: CreateFlag = parse_json(&read_body(&state, payload).await?)?;
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
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
    require_admin(&request, &state)?;
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    request_body(content = FlagSchema, description = "The flag"),
    responses(
        (status = 200, description = "Replaced", body = FlagEntry),
        (status = 400, description = "The flag is invalid; the path names where", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let replacement: Flag =
        parse_item(&read_body(&state, payload).await?, &format!("flags.{key}"))?;
    edit_flag(&state, &actor, &environment, key, "update_flag", |flag| {
        *flag = replacement.clone();
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_flag(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    request_body = SetEnabled,
    responses(
        (status = 200, description = "The flag as it is now", body = FlagEntry),
        (status = 400, description = "The body is not `{\"enabled\": true|false}` with an optional `reason`, or the reason is too long", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let body: SetEnabled = parse_json(&read_body(&state, payload).await?)?;
    let reason = crate::http::request::reason(body.reason.as_deref())?;
    let change = Change {
        reason,
        ..change(&environment, &actor, "kill_switch")
    };
    edit_with(&state, change, key, |flag| {
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
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")
    ),
    request_body = SetPercentage,
    responses(
        (status = 200, description = "The flag as it is now", body = FlagEntry),
        (status = 400, description = "Not a valid percentage", body = ErrorBody),
        (status = 409, description = "The flag has no rollout", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
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
    let actor = require_admin(&request, &state)?;
    let (environment, key) = path.into_inner();
    let body: SetPercentage = parse_json(&read_body(&state, payload).await?)?;
    let flag_key = key.clone();
    edit_flag(&state, &actor, &environment, key, "set_percentage", move |flag| {
        // Without a rollout there is no split to serve: adding one is a flag edit, not a ramp.
        // The request is valid; the flag's state refuses it, as a ramp operation on a flag
        // without a ramp is refused: a conflict.
        let rollout = flag.rollout.as_mut().ok_or_else(|| {
            Error::Conflict(format!(
                "flag `{flag_key}` has no rollout: add one to the flag before setting its percentage"
            ))
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
    edit: impl FnMut(&mut Flag) -> Result<()>,
) -> Result<HttpResponse> {
    edit_with(state, change(environment, actor, operation), key, edit).await
}

/// [`edit_flag`] for a change that carries more than its operation, such as a reason.
async fn edit_with(
    state: &State,
    change: Change<'_>,
    key: String,
    edit: impl FnMut(&mut Flag) -> Result<()>,
) -> Result<HttpResponse> {
    let environment = change.environment;
    state.service.edit_item(change, &key, edit).await?;
    // Read back rather than taken from the change: an edit that changed nothing commits
    // nothing, and the flag keeps the revision at which it last changed.
    let (flag, revision) = state.service.flag(environment, &key)?;
    Ok(HttpResponse::Ok().json(FlagEntry {
        key,
        revision,
        flag,
    }))
}
