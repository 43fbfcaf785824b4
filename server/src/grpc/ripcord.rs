//! `ripcord.v1.Ripcord`: evaluation for backend services, the ruleset `Watch` stream, and
//! `Report`, metric observations for running ramps (checked and stored by `crate::ingest`).
//!
//! Evaluations carry what OFREP's carry; client keys see only client-visible flags, and any
//! other flag is answered as not found, so an app's key does not reveal which server-side
//! flags exist.

use std::sync::Arc;

use ripcord_engine::{CompiledFlag, Context, ErrorCode, Evaluation, FlagType};
use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::follow::{self, Messages};
use super::shared::Shared;
use super::status::{Refusal, Result};
use super::{auth, convert};
use crate::access::{self, Action};
use crate::delivery::Opening;
use crate::environment::Environment;
use crate::evaluation::{Caller, Evaluator};
use crate::feed::Delta;
use crate::ingest::{ObservationIn, Timestamp};
use crate::principal::Principal;

pub struct Ripcord {
    pub shared: Arc<Shared>,
}

impl Ripcord {
    /// Authenticates an evaluating key and builds the context.
    fn prepare(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        context: Option<prost_types::Struct>,
    ) -> Result<(Arc<Principal>, String, Context)> {
        let token = auth::required(metadata)?;
        let (principal, environment) = auth::evaluating(&self.shared.service, &token)?;
        let context = self.shared.context(context)?;
        Ok((principal, environment, context))
    }

    /// The key's environment, opened for evaluation.
    fn open(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        principal: &Principal,
        environment: &str,
    ) -> Option<Evaluator> {
        let caller = Caller {
            scope: Some(principal.scope),
            environment,
            instance: metadata.get(crate::reach::HEADER).map(|id| id.as_bytes()),
        };
        Evaluator::open(&self.shared.service, &caller)
    }
}

#[tonic::async_trait]
impl pb::ripcord_server::Ripcord for Ripcord {
    async fn evaluate(
        &self,
        request: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let (metadata, _, request) = request.into_parts();
        let (principal, name, context) = self.prepare(&metadata, request.context)?;
        let key = request.flag_key;
        // The key's environment was deleted while the call came in (which revoked the key),
        // or has not reached this node yet: nothing can be evaluated, as over OFREP.
        let Some(evaluator) = self.open(&metadata, &principal, &name) else {
            return Ok(Response::new(not_found(
                key,
                format!("environment `{name}` does not exist"),
            )));
        };
        let counts = &self.shared.metrics.evaluations;
        match evaluator.one(counts, &key, &context, None) {
            Some(evaluated) => Ok(Response::new(to_pb(evaluated.flag, &evaluated.evaluation))),
            None => {
                let message = format!("flag `{key}` was not found");
                Ok(Response::new(not_found(key, message)))
            }
        }
    }

    async fn evaluate_all(
        &self,
        request: Request<pb::EvaluateAllRequest>,
    ) -> Result<Response<pb::EvaluateAllResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let (principal, name, context) = self.prepare(&metadata, request.context)?;
        let evaluator = self
            .open(&metadata, &principal, &name)
            .ok_or_else(|| follow::gone(&name))?;
        let mut evaluations = Vec::with_capacity(evaluator.flag_count());
        evaluator.all(&self.shared.metrics.evaluations, &context, |evaluated| {
            evaluations.push(to_pb(evaluated.flag, &evaluated.evaluation));
        });
        Ok(Response::new(pb::EvaluateAllResponse { evaluations }))
    }

    type WatchStream = follow::Stream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (metadata, _, request) = request.into_parts();
        let token = auth::required(&metadata)?;
        let principal = self
            .shared
            .service
            .authenticate(&token)
            .ok_or_else(auth::unknown_key)?;
        let environment = access::environment(&principal, Action::FetchRuleset)
            .map_err(|denied| {
                Refusal::PermissionDenied(format!(
                    "this is a {} key; Watch takes a server key",
                    denied.scope.as_str()
                ))
            })?
            .to_string();
        let instance = metadata.get(crate::reach::HEADER).map(|id| id.as_bytes());
        let instance = self.shared.service.reach().instance(&environment, instance);
        // Protobuf has no absent number: revision 0 means none.
        let known_revision = Some(request.known_revision).filter(|revision| *revision > 0);
        let follow = self
            .shared
            .follow(Some(token), environment, known_revision, instance);
        let stream = follow::start(follow, Watch)?;
        Ok(Response::new(stream))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let token = auth::required(&metadata)?;
        let principal = self
            .shared
            .service
            .authenticate(&token)
            .ok_or_else(auth::unknown_key)?;
        let observations = request
            .observations
            .into_iter()
            .map(observation_in)
            .collect();
        let accepted = self
            .shared
            .ingest
            .report(
                &self.shared.service,
                &principal,
                observations,
                crate::clock::unix_now(),
            )
            .await
            .map_err(Refusal::from)?;
        Ok(Response::new(pb::ReportResponse {
            accepted: accepted.accepted,
            rejected: accepted
                .rejected
                .into_iter()
                .map(|rejection| pb::Rejection {
                    // A batch is far below u32::MAX observations (the batch limit).
                    index: u32::try_from(rejection.index).unwrap_or(u32::MAX),
                    reason: rejection.reason,
                })
                .collect(),
        }))
    }
}

fn observation_in(observation: pb::Observation) -> ObservationIn {
    ObservationIn {
        flag: observation.flag,
        metric: observation.metric,
        value: observation.value,
        cohort: observation.cohort,
        stage: u64::from(observation.stage),
        // Protobuf has no absent string: empty means not sent.
        unit: Some(observation.unit).filter(|unit| !unit.is_empty()),
        timestamp: observation.timestamp_ms.map(Timestamp::UnixMillis),
    }
}

fn not_found(flag_key: String, message: String) -> pb::Evaluation {
    pb::Evaluation {
        flag_key,
        value: None,
        variant: String::new(),
        reason: ripcord_engine::Reason::Error.as_str().to_string(),
        error_code: ErrorCode::FlagNotFound.as_str().to_string(),
        error_message: message,
        metadata: None,
    }
}

fn to_pb(flag: &CompiledFlag, evaluation: &Evaluation<'_>) -> pb::Evaluation {
    let metadata = &evaluation.metadata;
    pb::Evaluation {
        flag_key: flag.key().to_string(),
        value: evaluation.value.map(|value| typed(flag.flag_type(), value)),
        variant: evaluation.variant.unwrap_or_default().to_string(),
        reason: evaluation.reason.as_str().to_string(),
        error_code: evaluation
            .error
            .map(|code| code.as_str().to_string())
            .unwrap_or_default(),
        error_message: String::new(),
        metadata: Some(pb::EvaluationMetadata {
            revision: metadata.revision,
            cohort: metadata
                .cohort
                .map(|cohort| cohort.as_str().to_string())
                .unwrap_or_default(),
            stage: metadata.stage.map(u32::from),
            rule: metadata.rule.unwrap_or_default().to_string(),
            unit_missing: metadata.unit_missing.unwrap_or_default().to_string(),
        }),
    }
}

/// The value in the field of the flag's type. A value that does not fit its type cannot
/// come from a validated document; should one, it goes out as it is rather than altered.
fn typed(flag_type: FlagType, value: &Value) -> pb::FlagValue {
    use pb::flag_value::Kind;
    let kind = match (flag_type, value) {
        (FlagType::Boolean, Value::Bool(value)) => Kind::BoolValue(*value),
        (FlagType::String, Value::String(value)) => Kind::StringValue(value.clone()),
        (FlagType::Integer, Value::Number(number)) if number.as_i64().is_some() => {
            Kind::IntValue(number.as_i64().unwrap_or_default())
        }
        (FlagType::Float, Value::Number(number)) => {
            Kind::FloatValue(number.as_f64().unwrap_or_default())
        }
        _ => Kind::ObjectValue(convert::json_to_value(value)),
    };
    pb::FlagValue { kind: Some(kind) }
}

/// `Watch`: the ruleset, then deltas.
struct Watch;

impl Watch {
    fn ruleset(environment: &Environment) -> pb::WatchResponse {
        pb::WatchResponse {
            revision: environment.revision,
            event: Some(pb::watch_response::Event::Ruleset(
                environment.delivered().json.clone(),
            )),
        }
    }

    fn delta(delta: &Delta) -> pb::WatchResponse {
        pb::WatchResponse {
            revision: delta.revision,
            event: Some(pb::watch_response::Event::Delta(delta.json.clone())),
        }
    }
}

impl Messages for Watch {
    type Message = pb::WatchResponse;

    fn opening(&mut self, environment: &Environment, opening: &Opening) -> Vec<pb::WatchResponse> {
        match opening {
            Opening::Deltas(deltas) => deltas.iter().map(|delta| Watch::delta(delta)).collect(),
            Opening::Ruleset => vec![Watch::ruleset(environment)],
        }
    }

    fn changed(
        &mut self,
        _: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<pb::WatchResponse> {
        Some(match delta {
            Some(delta) => Watch::delta(delta),
            None => Watch::ruleset(current),
        })
    }

    fn heartbeat(&mut self, revision: u64) -> pb::WatchResponse {
        pb::WatchResponse {
            revision,
            event: Some(pb::watch_response::Event::Heartbeat(pb::Heartbeat {})),
        }
    }
}
