//! The OpenAPI document of the admin API and OFREP, generated from the handlers' own
//! annotations so that it cannot drift from the routes. Served without a key at
//! `/api/v1/openapi.json`: it describes the API, it grants nothing.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::ErrorBody;
use super::{admin, judge, metrics, ofrep, ramps, sdk};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ripcord",
        description = "A feature-flag server for progressive delivery: the admin API and the \
            OpenFeature Remote Evaluation Protocol (OFREP). Flag, segment and document bodies \
            follow the flag document of DESIGN.md (contract 2); they are shown as objects here."
    ),
    paths(
        admin::list_environments,
        admin::create_environment,
        admin::get_environment,
        admin::delete_environment,
        admin::list_flags,
        admin::create_flag,
        admin::get_flag,
        admin::replace_flag,
        admin::delete_flag,
        admin::set_enabled,
        admin::set_percentage,
        admin::list_segments,
        admin::create_segment,
        admin::get_segment,
        admin::replace_segment,
        admin::delete_segment,
        admin::import_document,
        admin::export_document,
        admin::list_keys,
        admin::create_key,
        admin::revoke_key,
        admin::audit,
        ramps::status,
        ramps::operate,
        ramps::incidents,
        ramps::incident,
        judge::judge,
        ofrep::evaluate_one,
        ofrep::evaluate_all,
        ofrep::events,
        sdk::ruleset,
        sdk::stream,
        metrics::report,
        document,
    ),
    components(schemas(
        ErrorBody,
        OfrepEvaluationRequest,
        OfrepFailure,
        judge::JudgeRequestSchema,
        judge::JudgeResponseSchema
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "environments", description = "Environments: each has its own flags, segments and keys"),
        (name = "flags", description = "Flags, one at a time; the kill switch and the rollout percentage"),
        (name = "segments", description = "Segments: named sets of conditions that rules refer to"),
        (name = "documents", description = "An environment's whole document: import and export"),
        (name = "keys", description = "API keys of the three scopes: client, server, admin"),
        (name = "audit", description = "Who changed what, when, from what to what"),
        (name = "ramps", description = "Ramps: status, manual controls, and the incidents the guard recorded"),
        (name = "judge", description = "The guard's statistics on two samples sent in the request"),
        (name = "ofrep", description = "The OpenFeature Remote Evaluation Protocol, with its event stream"),
        (name = "sdk", description = "Delivery to SDKs that evaluate locally: the ruleset and its stream"),
        (name = "metrics", description = "Metric observations for the guards of running ramps"),
        (name = "openapi", description = "This document; no key needed"),
    )
)]
pub struct ApiDoc;

/// Every key goes in either header; the document offers both schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The refusals every keyed route can answer.
#[derive(utoipa::IntoResponses)]
pub enum KeyRefusals {
    /// No API key, or one that is unknown or revoked.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key's scope does not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// An OFREP evaluation request.
#[derive(utoipa::ToSchema)]
pub struct OfrepEvaluationRequest {
    /// The evaluation context: `targetingKey` and any other attributes.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

/// An OFREP failure: the flag is not found or the request is not valid.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OfrepFailure {
    /// The flag, for single evaluations.
    pub key: Option<String>,
    /// `FLAG_NOT_FOUND`, `PARSE_ERROR`, `INVALID_CONTEXT`, ...
    pub error_code: String,
    pub error_details: String,
}

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "openapi",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}
