//! Every ramp of an environment in one answer: where each stands (state, stage, percentage,
//! why it is paused or holding), without the evidence. A list of thousands of flags shows a
//! badge per flag from this, instead of one status request per flag. Admin keys only.

use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::ramp::{HoldReason, PauseReason, Status};
use ripcord_engine::Stage;
use serde::Serialize;

use super::errors::ErrorBody;
use super::schemas::{KeyRefusals, StoreUnavailable};
use super::state::State;
use crate::error::Result;
use crate::store::RampRecord;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/api/v1/environments/{environment}/ramps").route(web::get().to(summaries)),
    );
}

/// Where one flag's ramp stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RampSummary {
    pub flag: String,
    /// Starts at 1; each restart after a kill, abort or completion is the next one.
    pub generation: u64,
    /// pending, running, paused, completed, killed or aborted.
    #[schema(value_type = String)]
    pub status: Status,
    /// inconclusive, regression, manual or invalid_config, while paused.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// Index into `stages`.
    #[schema(value_type = u32)]
    pub stage: Stage,
    pub stages: Vec<f64>,
    /// The rollout percentage the ramp has the flag at.
    pub percentage: f64,
    /// Why the running ramp is not moving: warm_up, min_duration, stage_samples,
    /// sample_ratio, inconclusive, no_guards, data_error, no_data.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldReason>,
    /// Set while the ramp waits for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// Every flag of the environment that has a ramp block, with where its ramp stands, in the
/// order of the flag list. A ramp never started is `pending` at its first stage.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/ramps",
    tag = "ramps",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Every ramp of the environment", body = [RampSummary]),
        (status = 404, description = "No such environment", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn summaries(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let environment = environment.into_inner();
    let flags = state.service.flags(&environment)?;
    let records = state.service.store().ramps().await?;
    Ok(HttpResponse::Ok().json(summarize(&environment, flags, records)))
}

fn summarize(
    environment: &str,
    flags: Vec<(String, ripcord_engine::document::Flag, u64)>,
    records: Vec<RampRecord>,
) -> Vec<RampSummary> {
    let mut records: std::collections::HashMap<String, RampRecord> = records
        .into_iter()
        .filter(|record| record.environment == environment)
        .map(|record| (record.flag.clone(), record))
        .collect();
    flags
        .into_iter()
        .filter_map(|(key, flag, _)| {
            // A record left by a ramp block since removed is not a ramp any more: the flag's
            // own status answers 409 for it, and the list shows no badge.
            let ramp = flag.ramp?;
            let record = records.remove(&key);
            let state = crate::ramp::stored_or_pending(record.as_ref(), &ramp);
            Some(RampSummary {
                flag: key,
                generation: state.generation,
                status: state.status,
                pause_reason: state.pause_reason,
                stage: state.stage,
                stages: ramp.stages.clone(),
                percentage: state.percentage,
                hold: record.as_ref().and_then(|record| record.hold),
                alert: record.and_then(|record| record.alert),
            })
        })
        .collect()
}
