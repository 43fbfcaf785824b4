//! A ramp's look history: every guard's evidence at each look of the controller, for
//! charts of the evidence over time that survive a restart. Admin keys only.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::errors::ErrorBody;
use super::schemas::{KeyRefusals, StoreUnavailable};
use super::state::State;
use crate::error::{Error, Result};
use crate::store::LookRecord;

// Registered before the ramp's `{operation}` routes, which would otherwise take the path
// and answer a GET with 405.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/api/v1/environments/{environment}/flags/{key}/ramp/history")
            .route(web::get().to(history)),
    );
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Another generation than the current one; only the current one is kept once a ramp
    /// starts again, so an earlier one is empty.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9223372036854775807_i64)]
    pub generation: Option<String>,
}

/// One generation's look history, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RampHistory {
    pub environment: String,
    pub flag: String,
    /// The generation the looks are of; 0 for a ramp never started.
    pub generation: u64,
    /// At most one look a minute, at most 1,440 per generation: past that, the older half
    /// is thinned to every other look.
    pub looks: Vec<LookRecord>,
}

/// Every guard's evidence at each look of the ramp controller — the verdict, samples per
/// cohort, the statistic against its boundary, the effect with its interval — at most one
/// look a minute (a look that decides is always kept), at most 1,440 per generation with
/// the older half thinned past that. Kept in the store: the history survives a restart.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/flags/{key}/ramp/history",
    tag = "ramps",
    params(
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$"),
        HistoryParams
    ),
    responses(
        (status = 200, description = "The look history", body = RampHistory),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn history(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let (environment, flag) = path.into_inner();
    let params = web::Query::<HistoryParams>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| {
            Error::bad_request(format!("the query string is not valid: {error}"), None)
        })?;
    let generation = params
        .generation
        .as_deref()
        .map(|text| {
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|generation| *generation >= 1)
                .ok_or_else(|| {
                    Error::bad_request(
                        format!("`generation` must be a whole number from 1, not `{text}`"),
                        Some("generation".to_string()),
                    )
                })
        })
        .transpose()?;
    let (generation, looks) = state.ramps.history(&environment, &flag, generation).await?;
    Ok(HttpResponse::Ok().json(RampHistory {
        environment,
        flag,
        generation,
        looks,
    }))
}
