//! Ramps and incidents: a ramp's status and its manual controls, and the incidents the
//! guard recorded. Admin keys only.

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::errors::ErrorBody;
use super::schemas::{KeyRefusals, StoreUnavailable};
use super::state::State;
use crate::clock;
use crate::error::{Error, Result};
use crate::ramp::{Operation, RampStatus};
use crate::store::{AuditQuery, AuditRecord, IncidentQuery, IncidentRecord};

const DEFAULT_INCIDENT_LIMIT: usize = 50;
const MAX_INCIDENT_LIMIT: usize = 500;

pub fn routes(config: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    config
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/ramp").route(get().to(status)),
        )
        // Before `{operation}`, which would match it too: an advance is documented apart,
        // since only it needs a reason.
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/ramp/advance")
                .route(post().to(advance)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/ramp/{operation}")
                .route(post().to(operate)),
        )
        .service(resource("/api/v1/incidents").route(get().to(incidents)))
        .service(resource("/api/v1/incidents/{id}").route(get().to(incident)))
        .service(resource("/api/v1/incidents/{id}/postmortem").route(get().to(postmortem)));
}

/// A ramp's state, stage and percentage, and for each guard the verdict, the samples per
/// cohort, the statistic, p-value and effect, and how many more observations (and minutes
/// at the current rate) the stage needs; after a kill, what share of the instances active
/// in the last hour has fetched it.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/flags/{key}/ramp",
    tag = "ramps",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"), ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")),
    responses(
        (status = 200, description = "The ramp's status", body = RampStatus),
        (status = 404, description = "No such environment or flag, or the flag has no ramp", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn status(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let (environment, flag) = path.into_inner();
    let status = state
        .ramps
        .status(&environment, &flag, clock::unix_now())
        .await?;
    Ok(HttpResponse::Ok().json(status))
}

/// Why a person moves a ramp by hand; the audit log keeps it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationBody {
    /// Optional, except to advance; at most 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// The body of an advance, which must say why.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    /// Why the ramp skips the rest of its stage; not blank, at most 1,000 characters.
    #[schema(pattern = r"\S", max_length = 1000)]
    pub reason: String,
}

/// The operations of `POST .../ramp/{operation}`; `advance` has its own path.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationName {
    Start,
    Pause,
    Resume,
    Abort,
}

/// Moves a ramp by hand: `start` (a completed, killed or aborted ramp starts again as a new
/// generation with no data), `pause`, `resume` or `abort`.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{environment}/flags/{key}/ramp/{operation}",
    tag = "ramps",
    params(
        ("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$"),
        ("operation" = inline(OperationName), Path, description = "start, pause, resume or abort")
    ),
    request_body(content = Option<OperationBody>, description = "Optional: why, for the audit log"),
    responses(
        (status = 200, description = "The ramp's status after the operation", body = RampStatus),
        (status = 400, description = "A body that is not valid, or a reason that is too long", body = ErrorBody),
        (status = 404, description = "No such environment, flag or operation", body = ErrorBody),
        (status = 409, description = "The operation is not allowed in the ramp's state, or the flag has no ramp", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn operate(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::request::require_admin(&request, &state)?;
    let (environment, flag, operation) = path.into_inner();
    let Some(operation) = Operation::parse(&operation) else {
        return Err(Error::NotFound {
            what: "ramp operation (start, pause, resume, advance, abort)",
            key: operation,
        });
    };
    carry_out(&state, &actor, environment, flag, operation, payload).await
}

/// Moves a running ramp to its next stage by hand, before its guards have decided; the
/// reason goes to the audit log.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{environment}/flags/{key}/ramp/advance",
    tag = "ramps",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"), ("key" = String, Path, description = "The flag's key", max_length = 256, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")),
    request_body(content = AdvanceBody),
    responses(
        (status = 200, description = "The ramp's status after the operation", body = RampStatus),
        (status = 400, description = "No reason, a reason that is too long, or a body that is not valid", body = ErrorBody),
        (status = 404, description = "No such environment or flag", body = ErrorBody),
        (status = 409, description = "The ramp is not running, or the flag has no ramp", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn advance(
    request: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = super::request::require_admin(&request, &state)?;
    let (environment, flag) = path.into_inner();
    carry_out(
        &state,
        &actor,
        environment,
        flag,
        Operation::Advance,
        payload,
    )
    .await
}

async fn carry_out(
    state: &State,
    actor: &crate::principal::Principal,
    environment: String,
    flag: String,
    operation: Operation,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = super::request::read_body(state, payload).await?;
    // No body, and `null`, are both no reason given.
    let body: OperationBody = if body.iter().all(u8::is_ascii_whitespace) {
        OperationBody::default()
    } else {
        super::request::parse_json::<Option<OperationBody>>(&body)?.unwrap_or_default()
    };
    let reason = super::request::reason(body.reason.as_deref())?;
    let now = clock::unix_now();
    state
        .ramps
        .operate(&environment, &flag, operation, reason, actor, now)
        .await?;
    Ok(HttpResponse::Ok().json(state.ramps.status(&environment, &flag, now).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentParams {
    /// Only this environment's incidents.
    pub environment: Option<String>,
    /// Only this flag's incidents.
    pub flag: Option<String>,
    /// Incidents older than this id: the `next` of the previous page.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_i64)]
    pub before: Option<String>,
    /// How many incidents, at most, on this page; default 50.
    // Read as text, so that a bad value is answered with the field named rather than the
    // query as a whole.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// One page of incidents, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<IncidentRecord>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The incidents the guard recorded (kills, and pauses on a regression), newest first, with
/// every guard's evidence.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "ramps",
    params(IncidentParams),
    responses(
        (status = 200, description = "One page of incidents", body = IncidentPage),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn incidents(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let params = web::Query::<IncidentParams>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| {
            Error::bad_request(format!("the query string is not valid: {error}"), None)
        })?;
    // Incident ids are the store's row ids, which are signed 64-bit: no id is above
    // `i64::MAX`, and the document says so.
    let number = |name: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|number| i64::try_from(*number).is_ok())
            .ok_or_else(|| {
                Error::bad_request(
                    format!(
                        "`{name}` must be a whole number from 0 to {}, not `{value}`",
                        i64::MAX
                    ),
                    Some(name.to_string()),
                )
            })
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_INCIDENT_LIMIT,
        Some(text) => {
            let limit = number("limit", text)?;
            if limit == 0 || limit > MAX_INCIDENT_LIMIT as u64 {
                return Err(Error::bad_request(
                    format!("`limit` is {limit}; it must be from 1 to {MAX_INCIDENT_LIMIT}"),
                    Some("limit".to_string()),
                ));
            }
            limit as usize
        }
    };
    let before = params
        .before
        .as_deref()
        .map(|text| number("before", text))
        .transpose()?;
    let non_empty = |value: Option<String>| value.filter(|value| !value.is_empty());
    let incidents = state
        .service
        .store()
        .incidents(&IncidentQuery {
            environment: non_empty(params.environment),
            flag: non_empty(params.flag),
            before,
            limit,
        })
        .await?;
    let next = (incidents.len() >= limit)
        .then(|| incidents.last().map(|incident| incident.id))
        .flatten();
    Ok(HttpResponse::Ok().json(IncidentPage { incidents, next }))
}

/// One incident.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    tag = "ramps",
    params(("id" = u64, Path)),
    responses(
        (status = 200, description = "The incident", body = IncidentRecord),
        (status = 404, description = "No such incident", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn incident(
    request: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let incident = find_incident(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(incident))
}

/// The incident `id` names: 404 for an id that is not a number or names none.
async fn find_incident(state: &State, id: String) -> Result<IncidentRecord> {
    let missing = || Error::NotFound {
        what: "incident",
        key: id.clone(),
    };
    let number: u64 = id.trim().parse().map_err(|_| missing())?;
    state
        .service
        .store()
        .incident(number)
        .await?
        .ok_or_else(missing)
}

/// Audit entries read back to find a ramp generation's timeline.
const TIMELINE_ENTRIES: usize = 500;

/// A blameless postmortem started from an incident, in Markdown: what was halted and when,
/// the ramp's timeline from the audit log, every guard's evidence as a table, the kill's
/// reach, and empty sections for impact, root cause and actions.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/postmortem",
    tag = "ramps",
    params(("id" = u64, Path)),
    responses(
        (status = 200, description = "The postmortem, in Markdown", content_type = "text/markdown", body = String),
        (status = 404, description = "No such incident", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn postmortem(
    request: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let incident = find_incident(&state, id.into_inner()).await?;
    let entries = state
        .service
        .audit(&AuditQuery {
            environment: Some(incident.environment.clone()),
            flag: Some(incident.flag.clone()),
            before: None,
            limit: TIMELINE_ENTRIES,
        })
        .await?;
    let mut timeline: Vec<AuditRecord> = entries
        .into_iter()
        .filter(|entry| {
            entry.action.starts_with("ramp.")
                && entry
                    .after
                    .as_ref()
                    .and_then(|after| after.get("generation"))
                    .and_then(serde_json::Value::as_u64)
                    == Some(incident.generation)
        })
        .collect();
    timeline.reverse();
    let kill_revision = state
        .service
        .store()
        .ramp(&incident.environment, &incident.flag)
        .await?
        .and_then(|record| record.kill)
        .filter(|kill| kill.incident == incident.id)
        .and_then(|kill| kill.revision);
    let reach = match kill_revision {
        Some(revision) => Some(
            state
                .service
                .kill_reach(&incident.environment, revision, clock::unix_now())
                .await,
        ),
        None => None,
    };
    let text = crate::postmortem::render(
        &incident,
        &crate::postmortem::Facts {
            timeline: &timeline,
            reach,
            kill_revision,
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .body(text))
}
