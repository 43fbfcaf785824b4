//! `POST /api/v1/metrics`: guard observations, the metric values reported for the guards of running ramps, in batches.
//!
//! Client and server keys report for their own environment (client keys on client-visible
//! flags only); admin keys are refused with 403, since they belong to no environment. A
//! batch is never refused for a bad observation: the answer counts the accepted ones and
//! says why each of the others was not. It is refused whole only when it is not a batch
//! (400, with the path of the problem) or too large (413, naming the limit). The checks and
//! the storage are `crate::ingest`'s.

use actix_cors::Cors;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::errors::ErrorBody;
use super::schemas::KeyRefusals;
use super::state::State;
use crate::error::Result;
use crate::ingest::{self, Accepted, ObservationIn, Timestamp};

/// A batch may take this many bytes per observation it is allowed to hold (or the general
/// body limit, if that is larger): a full batch of long names always fits.
pub const BODY_BYTES_PER_OBSERVATION: usize = 512;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/api/v1/metrics")
            // Web apps report with their client key, from any origin, as they evaluate.
            .wrap(
                Cors::default()
                    .allow_any_origin()
                    .allowed_methods(["POST", "OPTIONS"])
                    .allowed_headers([
                        header::AUTHORIZATION,
                        header::CONTENT_TYPE,
                        header::HeaderName::from_static("x-api-key"),
                    ])
                    .max_age(3600),
            )
            .route(web::post().to(report)),
    );
}

/// A batch of observations.
// The schema keeps the name that clients already generate code from.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MetricsBatch)]
pub struct ObservationBatch {
    /// Names the batch, so that sending it again (a retry whose answer was lost) counts it
    /// once: 1 to 128 printable ASCII characters, unique per batch (a UUID, say).
    /// Remembered for an hour.
    #[serde(default)]
    #[schema(max_length = 128, min_length = 1, pattern = "^[ -~]{1,128}$")]
    pub batch_id: Option<String>,
    pub observations: Vec<ObservationBody>,
}

/// One observation, tagged with what the evaluation's metadata said.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationBody {
    /// The flag's key.
    #[schema(example = "new-checkout")]
    pub flag: String,
    /// One of the ramp's guard metrics.
    #[schema(example = "checkout_latency_ms")]
    pub metric: String,
    /// 0 or 1 for a `rate` metric; a number ≥ 0 for a `value` metric.
    #[schema(example = 123.4)]
    pub value: f64,
    /// `treatment` or `control`, from the evaluation's metadata.
    #[schema(example = "treatment")]
    pub cohort: String,
    /// The ramp stage, from the evaluation's metadata: a whole number from 0 to 2^64 − 1.
    /// One that the flag's ramp does not have is rejected with its observation.
    #[schema(schema_with = stage_schema)]
    #[serde(deserialize_with = "whole_stage")]
    pub stage: u64,
    /// The randomization unit (the stickiness attribute's value), if known.
    #[serde(default)]
    pub unit: Option<String>,
    /// When it was observed, RFC 3339; absent means when the server receives it.
    #[serde(default)]
    #[schema(example = "2026-11-28T10:00:00Z")]
    pub timestamp: Option<String>,
}

/// A stage's schema: any whole number a `u64` holds. Stated by hand, as a derived one says
/// `int64`, whose range is half of it.
fn stage_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "The ramp stage, from the evaluation's metadata. One that the flag's ramp does \
             not have is rejected with its observation.",
        ))
        .examples([0])
        .minimum(Some(0))
        .maximum(Some(usize::try_from(u64::MAX).unwrap_or(usize::MAX)))
        .build()
}

/// A stage as JSON writes it: a whole number that a `u64` holds, written `2` or `2.0` (JSON
/// does not tell them apart, and some clients write every number as a float).
fn whole_stage<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<u64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(formatter, "a whole number from 0 to {}", u64::MAX)
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> std::result::Result<u64, E> {
            Ok(value)
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> std::result::Result<u64, E> {
            u64::try_from(value)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> std::result::Result<u64, E> {
            // 2^64 is the first float above `u64::MAX`.
            if value.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&value) {
                Ok(value as u64)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(value), &self))
            }
        }
    }
    deserializer.deserialize_any(Visitor)
}

impl From<ObservationBody> for ObservationIn {
    fn from(body: ObservationBody) -> ObservationIn {
        ObservationIn {
            flag: body.flag,
            metric: body.metric,
            value: body.value,
            cohort: body.cohort,
            stage: body.stage,
            unit: body.unit,
            timestamp: body.timestamp.map(Timestamp::Rfc3339),
        }
    }
}

/// Parses a request body of the batch's shape; a body of another shape is a 400 that
/// names the path of the first problem.
pub fn parse_batch(body: &[u8]) -> Result<Vec<ObservationIn>> {
    parse_named_batch(body).map(|(_, observations)| observations)
}

/// [`parse_batch`], with the batch's `batch_id` if it has one.
pub fn parse_named_batch(body: &[u8]) -> Result<(Option<String>, Vec<ObservationIn>)> {
    // Tracking the path costs on every value: only a body that fails is parsed again with it.
    let batch: ObservationBatch = match serde_json::from_slice(body) {
        Ok(batch) => batch,
        Err(_) => super::request::parse_json(body)?,
    };
    if let Some(id) = &batch.batch_id {
        ingest::check_batch_id(id).map_err(|message| {
            crate::error::Error::bad_request(message, Some("batch_id".to_string()))
        })?;
    }
    let observations = batch
        .observations
        .into_iter()
        .map(ObservationIn::from)
        .collect();
    Ok((batch.batch_id, observations))
}

/// Reports observations for the guards of running ramps.
#[utoipa::path(
    post,
    path = "/api/v1/metrics",
    tag = "metrics",
    request_body = ObservationBatch,
    responses(
        (status = 200, description = "How many observations were accepted, and why each of the others was not. Accepted observations are durably stored. With `duplicate`, the batch's id was seen before: it counted then, and not again", body = Accepted),
        (status = 400, description = "The body is not a batch of observations; `path` says where", body = ErrorBody),
        (status = 413, description = "More observations than RIPCORD_MAX_OBSERVATIONS_PER_BATCH, or a body over its size limit", body = ErrorBody),
        (status = 503, description = "The store is unavailable or the server is stopping; the batch was not acknowledged", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn report(
    request: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let principal = super::request::principal(&request, &state)?;
    ingest::reporting_environment(&principal)?;
    let batch_bytes = state
        .ingest
        .max_batch()
        .saturating_mul(BODY_BYTES_PER_OBSERVATION);
    // The larger limit applies; a refusal names the setting that made it.
    let (limit, setting) = if state.max_body_bytes > batch_bytes {
        (state.max_body_bytes, "RIPCORD_MAX_BODY_BYTES")
    } else {
        (
            batch_bytes,
            "512 bytes per observation of RIPCORD_MAX_OBSERVATIONS_PER_BATCH",
        )
    };
    let body = super::request::read_body_up_to(payload, limit, setting).await?;
    let (batch_id, observations) = parse_named_batch(&body)?;
    let accepted = state
        .ingest
        .report_batch(
            &state.service,
            &principal,
            batch_id.as_deref(),
            observations,
            crate::clock::unix_now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage_of(stage: &str) -> Result<u64> {
        let body = format!(
            r#"{{"observations": [{{"flag": "f", "metric": "m", "value": 1, "cohort": "treatment", "stage": {stage}}}]}}"#
        );
        parse_batch(body.as_bytes()).map(|observations| observations[0].stage)
    }

    /// JSON does not tell `2` from `2.0`, and the document says `integer`, which includes
    /// both; a fraction, a negative number or one past `u64::MAX` is refused at its path.
    #[test]
    fn a_stage_is_a_whole_number_however_it_is_written() {
        assert_eq!(stage_of("2").unwrap(), 2);
        assert_eq!(stage_of("2.0").unwrap(), 2);
        assert_eq!(stage_of("1e19").unwrap(), 10_000_000_000_000_000_000);
        assert_eq!(stage_of("18446744073709551615").unwrap(), u64::MAX);
        for bad in ["2.5", "-1", "18446744073709551616", "1e20", "\"2\""] {
            match stage_of(bad) {
                Err(crate::error::Error::BadRequest { path, .. }) => {
                    assert_eq!(path.as_deref(), Some("observations[0].stage"), "{bad}")
                }
                other => panic!("stage {bad} gave {other:?}"),
            }
        }
    }
}
