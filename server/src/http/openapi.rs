//! The OpenAPI document of the admin API and OFREP, generated from the handlers' own
//! annotations so that it cannot drift from the routes. Served without a key at
//! `/api/v1/openapi.json`: it describes the API, it grants nothing.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::ErrorBody;
use super::schemas::{OfrepEvaluationRequest, OfrepFailure};
use super::{
    admin, admin_events, explain, judge, observations, ofrep, ramp_history, ramp_summaries, ramps,
    sdk,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ripcord",
        description = "A feature-flag server for progressive delivery: the admin API and the \
            OpenFeature Remote Evaluation Protocol (OFREP). Flag, segment and document bodies \
            follow the flag document (docs/flags.md in the repository). Limits that a setting \
            changes (`RIPCORD_MAX_*`) are given at their defaults; what JSON Schema cannot say \
            (a default variant that names a variant, a segment that exists) the server checks, \
            and answers 400 with the path of every problem."
    ),
    paths(
        admin::environments::list_environments,
        admin::environments::create_environment,
        admin::environments::get_environment,
        admin::environments::delete_environment,
        admin::flags::list_flags,
        admin::flags::create_flag,
        admin::flags::get_flag,
        admin::flags::replace_flag,
        admin::flags::delete_flag,
        admin::flags::set_enabled,
        admin::flags::set_percentage,
        explain::explain,
        admin::segments::list_segments,
        admin::segments::create_segment,
        admin::segments::get_segment,
        admin::segments::replace_segment,
        admin::segments::delete_segment,
        admin::document::import_document,
        admin::document::export_document,
        admin::keys::list_keys,
        admin::keys::create_key,
        admin::keys::revoke_key,
        admin::audit::audit,
        admin::store::restore,
        ramps::status,
        ramps::operate,
        ramps::advance,
        ramp_history::history,
        ramp_summaries::summaries,
        ramps::incidents,
        ramps::incident,
        ramps::postmortem,
        admin_events::events,
        judge::judge,
        ofrep::evaluate_one,
        ofrep::evaluate_all,
        ofrep::events,
        sdk::ruleset,
        sdk::stream,
        observations::report,
        document,
    ),
    components(schemas(
        ErrorBody,
        crate::ramp::events::AdminEvent,
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
        (name = "store", description = "The store: putting back what a shared store lost"),
        (name = "ramps", description = "Ramps: status, manual controls, and the incidents the guard recorded"),
        (name = "events", description = "Live events of changes, ramp decisions and incidents, for operators' screens"),
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

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/api/v1/openapi.json").route(web::get().to(document)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_admin_route() {
        let document = ApiDoc::openapi();
        for path in [
            "/api/v1/environments/{environment}/flags/{key}/rollout/percentage",
            "/api/v1/environments/{environment}/document",
            "/api/v1/keys/{id}",
            "/api/v1/audit",
            "/api/v1/environments/{environment}/explain",
            "/api/v1/events",
            "/api/v1/environments/{environment}/flags/{key}/ramp/history",
            "/api/v1/environments/{environment}/ramps",
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
}
