//! Why each flag answers a context as it does: every flag of an environment evaluated for one
//! context, each with the rule that matched, the unit's bucket against the rollout's
//! threshold, the cohort and the ramp stage. Admin keys only: it shows server-side flags and
//! rule names. The evaluations are the ones OFREP gives; only the telling is longer.

use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::bucketing::BUCKETS;
use ripcord_engine::Context;
use serde::Serialize;
use serde_json::Value;

use super::errors::ErrorBody;
use super::schemas::{KeyRefusals, OfrepEvaluationRequest};
use super::state::State;
use crate::context::{Builder, Read};
use crate::error::{Error, Result};
use crate::evaluation::{Caller, Evaluated, Evaluator};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/api/v1/environments/{environment}/explain").route(web::post().to(explain)),
    );
}

/// Every flag's evaluation for one context, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub environment: String,
    /// The environment's revision the flags were evaluated at.
    pub revision: u64,
    /// Every flag, in key order.
    pub flags: Vec<FlagExplanation>,
}

/// One flag's evaluation and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagExplanation {
    pub key: String,
    /// `boolean`, `string`, `integer`, `float` or `object`.
    #[serde(rename = "type")]
    pub flag_type: &'static str,
    /// The value served.
    pub value: Value,
    pub variant: String,
    /// `STATIC` (no rules, no rollout), `TARGETING_MATCH` (see `rule`), `SPLIT` (in the
    /// rollout; see `rollout`), `DEFAULT` (no rule matched and outside the rollout, or no
    /// rollout) or `DISABLED` (the kill switch is off).
    pub reason: &'static str,
    /// The environment revision at which the flag last changed.
    pub revision: u64,
    /// The rule that matched, with `TARGETING_MATCH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<MatchedRule>,
    /// Where the unit fell in the rollout, when the rollout was reached and the context had
    /// a unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPlace>,
    /// `treatment` or `control`, while a rollout below 100% applies to the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<&'static str>,
    /// With a cohort, when the flag has a ramp: the ramp stage, from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<u32>,
    /// The rollout's stickiness attribute, when the context had no usable value for it and
    /// was therefore outside the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_missing: Option<String>,
}

/// The rule that matched.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MatchedRule {
    /// Its position among the flag's rules, from 0.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A unit's place in a rollout: it is in when `bucket < threshold`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolloutPlace {
    /// The unit's bucket, from 0 to `buckets - 1`.
    pub bucket: u32,
    /// Units in buckets below this are in the rollout.
    pub threshold: u32,
    /// How many buckets there are: 100,000.
    pub buckets: u64,
    /// The threshold as a percentage.
    pub percentage: f64,
}

fn explained(evaluated: &Evaluated<'_>) -> FlagExplanation {
    let flag = evaluated.flag;
    let evaluation = &evaluated.evaluation;
    let metadata = &evaluation.metadata;
    FlagExplanation {
        key: flag.key().to_string(),
        flag_type: flag.flag_type().as_str(),
        value: evaluation.value.cloned().unwrap_or(Value::Null),
        variant: evaluation.variant.unwrap_or_default().to_string(),
        reason: evaluation.reason.as_str(),
        revision: metadata.revision,
        rule: metadata.rule_index.map(|index| MatchedRule {
            index,
            name: metadata.rule.map(str::to_string),
        }),
        rollout: metadata.bucket.map(|place| RolloutPlace {
            bucket: place.bucket,
            threshold: place.threshold,
            buckets: BUCKETS,
            percentage: f64::from(place.threshold) * 100.0 / BUCKETS as f64,
        }),
        cohort: metadata.cohort.map(|cohort| cohort.as_str()),
        stage: metadata.stage.map(u32::from),
        unit_missing: metadata.unit_missing.map(str::to_string),
    }
}

/// Evaluates every flag of the environment for the context and says why each answers as it
/// does: the rule that matched (position and name), the unit's bucket against the rollout's
/// threshold, the cohort, the ramp stage, a missing unit. The evaluations are those OFREP
/// gives the same context; they are not counted in the evaluation metrics and do not count
/// towards a kill's reach. The context is held to OFREP's limits.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{environment}/explain",
    tag = "flags",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = OfrepEvaluationRequest,
    responses(
        (status = 200, description = "Every flag's evaluation and why", body = Explanation),
        (status = 400, description = "The body or the context is not valid, or the context is over a limit", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 413, description = "The body is over `RIPCORD_MAX_BODY_BYTES`", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn explain(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let principal = super::request::require_admin(&request, &state)?;
    let environment = environment.into_inner();
    let body = super::request::read_body(&state, payload).await?;
    let context = parse_context(
        &body,
        state.max_context_attributes,
        state.service.limits().max_key_length,
    )?;
    let caller = Caller {
        scope: Some(principal.scope),
        environment: &environment,
        // A person's tries are no instance fetching the flags.
        instance: None,
    };
    let evaluator = Evaluator::open(&state.service, &caller).ok_or_else(|| Error::NotFound {
        what: "environment",
        key: environment.clone(),
    })?;
    let mut flags = Vec::with_capacity(evaluator.flag_count());
    evaluator.explain(&context, |evaluated| flags.push(explained(&evaluated)));
    Ok(HttpResponse::Ok().json(Explanation {
        revision: evaluator.environment().revision,
        environment,
        flags,
    }))
}

/// Reads `{"context": {...}}` with the context built as it is read, as OFREP reads it, so
/// that the same limits refuse it for the same reasons.
fn parse_context(body: &[u8], max_attributes: usize, max_name: usize) -> Result<Context> {
    let invalid = |message: String, path: Option<&str>| {
        Error::bad_request(
            format!("the request body is not valid: {message}"),
            path.map(str::to_string),
        )
    };
    let mut builder = Builder::new(max_attributes, max_name);
    let read = if body.iter().all(u8::is_ascii_whitespace) {
        Read::Null
    } else {
        crate::context::read_request(body, &mut builder)
            .map_err(|error| invalid(error.to_string(), None))?
    };
    if read == Read::NotAnObject {
        return Err(invalid(
            "`context` must be a JSON object".to_string(),
            Some("context"),
        ));
    }
    builder
        .finish()
        .map_err(|message| invalid(message, Some("context")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_held_to_the_limits_of_ofrep() {
        let context = parse_context(
            br#"{"context": {"targetingKey": "u", "plan": "pro"}}"#,
            2,
            12,
        )
        .expect("within the limits");
        assert_eq!(context.len(), 2);
        let over = parse_context(br#"{"context": {"a": 1, "b": 2, "c": 3}}"#, 2, 12).unwrap_err();
        assert!(
            over.to_string().contains("RIPCORD_MAX_CONTEXT_ATTRIBUTES"),
            "{over}"
        );
        let long = parse_context(br#"{"context": {"abcdefghijklm": 1}}"#, 2, 12).unwrap_err();
        assert!(
            long.to_string().contains("RIPCORD_MAX_KEY_LENGTH"),
            "{long}"
        );
        assert!(parse_context(br#"{"context": [1]}"#, 2, 12).is_err());
        assert_eq!(
            parse_context(br#"{"flagKey": "f", "context": {"a": 1}}"#, 2, 12)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_context(br#"{"context": {}, "context": {}}"#, 2, 12).is_err());
        assert!(parse_context(br#"{"context": {"targetingKey": 7}}"#, 2, 12).is_err());
        assert_eq!(parse_context(b"", 2, 12).unwrap().len(), 0);
        assert_eq!(parse_context(br#"{}"#, 2, 12).unwrap().len(), 0);
    }
}
