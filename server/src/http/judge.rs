//! `POST /api/v1/judge`: the guard's statistics on two samples the caller sends, for
//! canaries, A/B deploys and load tests that do not go through a flag (docs/judge.md).
//!
//! The handler only authorizes, reads and maps: the numbers come from
//! [`ripcord_engine::stats::judge`], the function `ripcord judge` calls too.

use std::sync::{Arc, OnceLock};

use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::stats::{judge as judge_samples, JudgeError, JudgeErrorKind, JudgeRequest};

use super::errors::ErrorBody;
use super::schemas::KeyRefusals;
use super::state::State;
use crate::error::{Error, Result};

/// The largest judge request, in bytes. The engine's limit is 1,000,000 values per sample;
/// two such samples written as compact JSON by any client (at most 24 characters a number,
/// a separator) take about 50 MB, so they fit with room for indentation. The route does
/// not use `RIPCORD_MAX_BODY_BYTES`, which is sized for flags.
pub const MAX_JUDGE_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How many judge requests run at once: half the cores, at least one. Each request of two
/// samples of 1,000,000 values holds up to about 300 MB while it is judged and keeps a core
/// busy for seconds; unbounded, sixteen of them took 3 GB, and evaluation shared the cores
/// with every one. The rest of the cores stay with evaluation.
pub fn concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// Seconds a refused request is told to wait: about how long a large request takes.
const RETRY_AFTER_SECONDS: u32 = 2;

fn permits() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(concurrency())))
}

/// The answer when every permit is taken: `503 judge_busy` with `Retry-After`. Refused
/// before the body is read, so a refused request costs nothing.
fn busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", RETRY_AFTER_SECONDS.to_string()))
        .json(ErrorBody {
            error: "judge_busy",
            message: format!(
                "the judge is already running {} requests, its limit; try again in {} s",
                concurrency(),
                RETRY_AFTER_SECONDS
            ),
            path: None,
            problems: Vec::new(),
        })
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/api/v1/judge").route(web::post().to(judge)));
}

/// The request's key, which must be an admin or a server key: judging reads nothing of an
/// environment, but it costs CPU, which a client key shipped inside apps must not spend.
fn authorize(request: &HttpRequest, state: &State) -> Result<()> {
    let principal = super::request::principal(request, state)?;
    Ok(crate::access::check(
        &principal,
        crate::access::Action::Judge,
    )?)
}

/// The engine names the wrong field; so does the answer: `path` for a 400, the message
/// for a 413 (whose body has no `path`).
fn judge_error(error: JudgeError) -> Error {
    match error.kind {
        JudgeErrorKind::TooLarge => Error::LimitExceeded {
            limit: "judge",
            message: format!(
                "`{}` is over the judge's limit: {}",
                error.field, error.message
            ),
        },
        _ => Error::bad_request(
            format!("`{}`: {}", error.field, error.message),
            Some(error.field),
        ),
    }
}

/// Runs the guard's Mann–Whitney U test and Hodges–Lehmann shift on two samples; with a
/// tolerance, also gives a fixed-sample verdict.
#[utoipa::path(
    post,
    path = "/api/v1/judge",
    tag = "judge",
    request_body = JudgeRequestSchema,
    responses(
        (status = 200, description = "The test, the shift and the verdict", body = JudgeResponseSchema),
        (status = 400, description = "A field is not valid; `path` names it", body = ErrorBody),
        (status = 413, description = "Over a limit: 1,000,000 values or 100,000 bins per sample, 2^53 observations per histogram, 64 MiB of body, or samples too large for the exact method; the message names which", body = ErrorBody),
        (status = 500, description = "The judge failed on this input; the server log has the cause", body = ErrorBody),
        (status = 503, description = "The judge is running as many requests as it may (half the cores); `Retry-After` says when to try again", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn judge(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    authorize(&request, &state)?;
    let Ok(permit) = Arc::clone(permits()).try_acquire_owned() else {
        return Ok(busy());
    };
    let body =
        super::request::read_body_up_to(payload, MAX_JUDGE_BODY_BYTES, "the judge's body limit")
            .await?;
    // Parsing a million numbers per arm and ranking them takes long enough to hold up
    // every other request of this worker: both run on the blocking pool. The permit goes
    // with them, so that a client that hangs up does not free a place while its request is
    // still being judged.
    let judged = web::block(move || -> Result<_> {
        let _permit = permit;
        let request: JudgeRequest = super::request::parse_json(&body)?;
        drop(body);
        judge_samples(&request).map_err(judge_error)
    })
    .await;
    match judged {
        Ok(judged) => Ok(HttpResponse::Ok().json(judged?)),
        // The engine does not panic on any input; should it ever, the answer still has
        // the one error shape, and the log has the cause.
        Err(error) => {
            tracing::error!(%error, "the judge failed");
            Ok(HttpResponse::InternalServerError().json(ErrorBody {
                error: "internal",
                message: "the judge failed on this input; the server log has the cause".into(),
                path: None,
                problems: Vec::new(),
            }))
        }
    }
}

/// The request of `POST /api/v1/judge` (docs/judge.md): two samples of the same form, both
/// arrays of numbers or both histograms over the same bins. The schema says all it can; what
/// JSON Schema cannot (a histogram's bins strictly increasing and the same in both samples,
/// a count per bin, an exact method only on samples it can compute) is answered 400 or 413
/// with the field named.
#[derive(utoipa::ToSchema)]
#[schema(as = JudgeRequest)]
#[serde(untagged)]
pub enum JudgeRequestSchema {
    Values(JudgeValuesSchema),
    Histograms(JudgeHistogramsSchema),
}

/// Two samples given as their values.
#[derive(utoipa::ToSchema)]
#[schema(as = JudgeValues)]
#[serde(deny_unknown_fields)]
pub struct JudgeValuesSchema {
    /// The treatment's values: finite numbers, 1 to 1,000,000 of them.
    #[schema(min_items = 1, max_items = 1_000_000)]
    pub treatment: Vec<f64>,
    /// The control's values, as `treatment`.
    #[schema(min_items = 1, max_items = 1_000_000)]
    pub control: Vec<f64>,
    #[schema(inline)]
    pub better: Option<BetterSchema>,
    #[schema(inline)]
    pub alternative: Option<AlternativeSchema>,
    #[schema(inline)]
    pub method: Option<MethodSchema>,
    /// The continuity correction of the asymptotic method; default `true`.
    pub continuity: Option<bool>,
    /// Of the Hodges–Lehmann interval, and 1 − alpha of the verdict; default 0.95.
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub confidence: Option<f64>,
    #[schema(inline)]
    pub tolerance: Option<ToleranceSchema>,
}

/// Two samples given as histograms over the same bins.
#[derive(utoipa::ToSchema)]
#[schema(as = JudgeHistograms)]
#[serde(deny_unknown_fields)]
pub struct JudgeHistogramsSchema {
    pub treatment: HistogramSchema,
    pub control: HistogramSchema,
    #[schema(inline)]
    pub better: Option<BetterSchema>,
    #[schema(inline)]
    pub alternative: Option<AlternativeSchema>,
    #[schema(inline)]
    pub method: Option<MethodSchema>,
    /// The continuity correction of the asymptotic method; default `true`.
    pub continuity: Option<bool>,
    /// Of the Hodges–Lehmann interval, and 1 − alpha of the verdict; default 0.95.
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub confidence: Option<f64>,
    #[schema(inline)]
    pub tolerance: Option<ToleranceSchema>,
}

/// A sample as a histogram: each bin is one tie group, its count how many values it holds.
#[derive(utoipa::ToSchema)]
#[schema(as = JudgeHistogram)]
#[serde(deny_unknown_fields)]
pub struct HistogramSchema {
    /// Strictly increasing finite values, 1 to 100,000 of them.
    #[schema(min_items = 1, max_items = 100_000)]
    pub bins: Vec<f64>,
    /// One count per bin, not all zero, at most 2^53 in all.
    #[schema(min_items = 1, max_items = 100_000)]
    pub counts: Vec<u64>,
}

/// `lower` (the default: latency, error rate) or `higher` (success, conversion).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BetterSchema {
    Lower,
    Higher,
}

/// `greater`, `less` or `two-sided`, treatment first, as scipy's `mannwhitneyu`. Default:
/// the one-sided "treatment is worse" that `better` implies.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AlternativeSchema {
    Greater,
    Less,
    TwoSided,
}

/// `auto` (the default: exact when the smaller sample has at most 8 values and nothing is
/// tied), `exact` or `asymptotic`.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MethodSchema {
    Auto,
    Exact,
    Asymptotic,
}

/// How much worse the treatment may be: a number ≥ 0 in the metric's unit, or a share of
/// the control's median such as `"5%"`. Written by hand: the two forms carry limits that a
/// derived enum cannot put on its variants.
pub struct ToleranceSchema;

impl utoipa::PartialSchema for ToleranceSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "How much worse the treatment may be: a number ≥ 0 in the metric's unit, or a \
                 share of the control's median such as `\"5%\"`. With it, the verdict is PASS, \
                 REGRESSION or INCONCLUSIVE; without it, always INCONCLUSIVE.",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]+(\.[0-9]+)?%$")),
            )
            .into()
    }
}

impl utoipa::ToSchema for ToleranceSchema {}

/// The answer of `POST /api/v1/judge`.
#[derive(utoipa::ToSchema)]
#[schema(as = JudgeResponse)]
pub struct JudgeResponseSchema {
    pub n_treatment: u64,
    pub n_control: u64,
    /// U1 of the treatment, R1 − n1(n1+1)/2 with mid-ranks, whatever the alternative.
    pub u: f64,
    /// n1·n2 − u.
    pub u2: f64,
    /// The normal deviate, for the asymptotic method (absent when every value is tied).
    pub z: Option<f64>,
    pub p_value: f64,
    /// `exact` or `asymptotic`: what `auto` chose.
    pub method: String,
    pub alternative: String,
    /// `{"estimate": ..., "ci": [low, high], "confidence": ...}`: the median of every
    /// difference treatment − control, and its interval.
    #[schema(value_type = Object)]
    pub hodges_lehmann: serde_json::Value,
    /// `{"treatment": ..., "control": ...}`.
    #[schema(value_type = Object)]
    pub medians: serde_json::Value,
    /// `PASS`, `REGRESSION` or `INCONCLUSIVE`.
    pub verdict: String,
    /// With a tolerance, what the verdict weighed against it, in the metric's unit:
    /// `{"measure": "shift" | "rate_difference", "estimate": ..., "worse_bound": ...,
    /// "control_level": ..., "tolerance": ...}`. `rate_difference` (p̂1 − p̂0) is used when
    /// every value is 0 or 1, whose shift is always 0.
    #[schema(value_type = Option<Object>)]
    pub effect: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> Error {
        let request: JudgeRequest = match super::super::request::parse_json(body.as_bytes()) {
            Ok(request) => request,
            Err(error) => return error,
        };
        match judge_samples(&request) {
            Ok(response) => panic!("{body} was judged: {response:?}"),
            Err(error) => judge_error(error),
        }
    }

    #[track_caller]
    fn assert_bad_request(body: &str, field: &str) {
        match error_of(body) {
            Error::BadRequest { path, message } => {
                assert_eq!(path.as_deref(), Some(field), "{body}: {message}")
            }
            other => panic!("{body} gave {other:?}"),
        }
    }

    /// Each kind of bad input is a 400 whose `path` names the field, whether serde or
    /// the engine finds it.
    #[test]
    fn bad_inputs_are_reported_at_their_field() {
        assert_bad_request(r#"{"treatment": [], "control": [1]}"#, "treatment");
        assert_bad_request(r#"{"treatment": [1], "control": []}"#, "control");
        assert_bad_request(r#"{"treatment": [1, "x"], "control": [1]}"#, "treatment[1]");
        assert_bad_request(
            r#"{"treatment": [1, 1e999], "control": [1]}"#,
            "treatment[1]",
        );
        assert_bad_request(
            r#"{"treatment": {"bins": [1, 1], "counts": [1, 2]}, "control": {"bins": [1, 1], "counts": [1, 2]}}"#,
            "treatment.bins[1]",
        );
        assert_bad_request(
            r#"{"treatment": {"bins": [1, 2], "counts": [1, 2]}, "control": {"bins": [1, 2], "counts": [1]}}"#,
            "control.counts",
        );
        assert_bad_request(
            r#"{"treatment": {"bins": [1, 2], "counts": [1, 2]}, "control": [1, 2]}"#,
            "control",
        );
        assert_bad_request(
            r#"{"treatment": {"bins": [1, 2], "counts": [1, -2]}, "control": {"bins": [1, 2], "counts": [1, 2]}}"#,
            "treatment.counts[1]",
        );
        assert_bad_request(
            r#"{"treatment": {"bins": [1, 2]}, "control": {"bins": [1, 2], "counts": [1, 2]}}"#,
            "treatment",
        );
        assert_bad_request(
            r#"{"treatment": [1], "control": [2], "alternative": "bigger"}"#,
            "alternative",
        );
        assert_bad_request(
            r#"{"treatment": [1], "control": [2], "tolerance": "five"}"#,
            "tolerance",
        );
        assert_bad_request(
            r#"{"treatment": [1], "control": [2], "confidence": 1.5}"#,
            "confidence",
        );
        assert_bad_request(
            r#"{"treatment": [1], "control": [2], "colour": 1}"#,
            "colour",
        );
    }

    #[test]
    fn a_sample_over_the_limit_is_a_413_that_names_it() {
        let many = vec!["1"; ripcord_engine::stats::MAX_JUDGE_VALUES + 1].join(",");
        let body = format!(r#"{{"treatment": [1, 2], "control": [{many}]}}"#);
        let error = error_of(&body);
        assert!(
            matches!(&error, Error::LimitExceeded { message, .. } if message.contains("`control`") && message.contains("1000000")),
            "{error:?}"
        );
    }
}
