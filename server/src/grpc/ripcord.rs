//! `ripcord.v1.Ripcord`: evaluation for backend services, the ruleset `Watch` stream, and
//! `Report`, metric observations for running ramps (checked and stored by `crate::ingest`).
//!
//! Evaluations carry what OFREP's carry; client keys see only client-visible flags, and any
//! other flag is answered as not found, so an app's key does not reveal which server-side
//! flags exist.

use std::sync::Arc;

use bytes::Bytes;
use ripcord_engine::{CompiledFlag, Context, ErrorCode, Evaluation, FlagType};
use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::Value;
use tonic::codegen::http;
use tonic::{Request, Response, Status};

use super::follow::{self, Messages};
use super::shared::Shared;
use super::status::{Refusal, Result};
use super::{auth, convert};
use crate::access::{self, Action};
use crate::delivery::Opening;
use crate::environment::{Environment, Framing};
use crate::evaluation::{Caller, Evaluator};
use crate::feed::Delta;
use crate::ingest::{ObservationIn, Timestamp};
use crate::principal::Principal;

pub struct Ripcord {
    pub shared: Arc<Shared>,
}

impl Ripcord {
    /// A `Watch`'s key and the environment it follows, from the headers alone.
    fn watching(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(String, String), Status> {
        let token = auth::required(metadata)?;
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
        Ok((token, environment))
    }

    fn follow(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        (token, environment): (String, String),
        known_revision: u64,
    ) -> crate::delivery::Follow {
        let instance = metadata.get(crate::reach::HEADER).map(|id| id.as_bytes());
        let instance = self.shared.service.reach().instance(&environment, instance);
        // Protobuf has no absent number: revision 0 means none.
        let known_revision = Some(known_revision).filter(|revision| *revision > 0);
        self.shared
            .follow(Some(token), environment, known_revision, instance)
    }

    /// `Watch` with frames shared by every stream: the key is checked before the request
    /// message is read.
    async fn watch_shared(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let (parts, body) = request.into_parts();
        let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
        let started = async {
            let watching = self.watching(&metadata)?;
            let request: pb::WatchRequest =
                follow::request(body, MAX_WATCH_REQUEST, self.shared.body_timeout).await?;
            let follow = self.follow(&metadata, watching, request.known_revision);
            Ok::<_, Status>(follow::start(follow, SharedWatch)?)
        };
        match started.await {
            Ok(stream) => follow::response(stream),
            Err(status) => status.into_http(),
        }
    }

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

    /// Served by [`SharedFrames`] on a running server; this is the same stream encoded by
    /// tonic, for a `RipcordServer` used without it.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (metadata, _, request) = request.into_parts();
        let watching = self.watching(&metadata)?;
        let follow = self.follow(&metadata, watching, request.known_revision);
        Ok(Response::new(follow::start(follow, Watch)?))
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
        let batch_id = Some(request.batch_id.as_str()).filter(|id| !id.is_empty());
        if let Some(id) = batch_id {
            crate::ingest::check_batch_id(id).map_err(Status::invalid_argument)?;
        }
        let observations = request
            .observations
            .into_iter()
            .map(observation_in)
            .collect();
        let accepted = self
            .shared
            .ingest
            .report_batch(
                &self.shared.service,
                &principal,
                batch_id,
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
            duplicate: accepted.duplicate,
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
            cache_token: metadata.cache_token.unwrap_or_default().to_string(),
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

/// The largest `WatchRequest` read: it holds one number.
const MAX_WATCH_REQUEST: usize = 1024;

const WATCH_PATH: &str = "/ripcord.v1.Ripcord/Watch";

/// `ripcord.v1.Ripcord` with `Watch` answered by [`Ripcord::watch_shared`]: tonic encodes
/// each message of a stream into a buffer of the stream's own, which then keeps the size of
/// the largest message for as long as the stream lives, a ruleset's size for every idle
/// `Watch`. Every other method goes to the generated service.
#[derive(Clone)]
pub struct SharedFrames<S> {
    inner: S,
    ripcord: Arc<Ripcord>,
}

impl<S> SharedFrames<S> {
    pub fn new(inner: S, ripcord: Arc<Ripcord>) -> SharedFrames<S> {
        SharedFrames { inner, ripcord }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for SharedFrames<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tonic::codegen::Service<http::Request<tonic::body::Body>> for SharedFrames<S>
where
    S: tonic::codegen::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == WATCH_PATH {
            let ripcord = Arc::clone(&self.ripcord);
            Box::pin(async move { Ok(ripcord.watch_shared(request).await) })
        } else {
            Box::pin(self.inner.call(request))
        }
    }
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

/// [`Watch`]'s messages framed for gRPC, the ruleset and each delta once per revision for
/// every stream.
struct SharedWatch;

impl SharedWatch {
    fn ruleset(environment: &Environment) -> Bytes {
        environment.frame(Framing::Grpc, || {
            follow::frame(&Watch::ruleset(environment))
        })
    }

    fn delta(delta: &Delta) -> Bytes {
        delta.frame(Framing::Grpc, || follow::frame(&Watch::delta(delta)))
    }
}

impl Messages for SharedWatch {
    type Message = Bytes;

    fn opening(&mut self, environment: &Environment, opening: &Opening) -> Vec<Bytes> {
        match opening {
            Opening::Deltas(deltas) => deltas
                .iter()
                .map(|delta| SharedWatch::delta(delta))
                .collect(),
            Opening::Ruleset => vec![SharedWatch::ruleset(environment)],
        }
    }

    fn changed(
        &mut self,
        _: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<Bytes> {
        Some(match delta {
            Some(delta) => SharedWatch::delta(delta),
            None => SharedWatch::ruleset(current),
        })
    }

    fn heartbeat(&mut self, revision: u64) -> Bytes {
        follow::frame(&Watch.heartbeat(revision))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;
    use ripcord_engine::{Document, Limits, Snapshot};

    use super::*;

    /// Every `Watch` at a revision sends the one frame the first encoded, which is the
    /// message tonic would have sent.
    #[test]
    fn watch_streams_at_one_revision_share_one_frame() {
        let document = Document::from_yaml(
            "flags:\n  banner: {type: boolean, variants: {on: true}, default_variant: \"on\"}\n",
        )
        .expect("a valid document");
        let snapshot =
            Snapshot::compile(&document, 4, |_| 4, &Limits::default()).expect("it compiles");
        let environment = Environment::new("prod", 4, snapshot, document, BTreeMap::new());
        let first = SharedWatch.opening(&environment, &Opening::Ruleset);
        let second = SharedWatch.opening(&environment, &Opening::Ruleset);
        assert_eq!(first[0].as_ptr(), second[0].as_ptr());
        assert_eq!(first[0][0], 0, "not compressed");
        let length = u32::from_be_bytes([first[0][1], first[0][2], first[0][3], first[0][4]]);
        assert_eq!(length as usize, first[0].len() - 5);
        let decoded = pb::WatchResponse::decode(&first[0][5..]).expect("a WatchResponse");
        assert_eq!(decoded, Watch::ruleset(&environment));

        let delta = Arc::new(Delta::new(4, 5, Bytes::from_static(b"{}"), Vec::new()));
        let opened = SharedWatch.opening(&environment, &Opening::Deltas(vec![Arc::clone(&delta)]));
        let changed = SharedWatch.changed(&environment, &environment, Some(&delta));
        assert_eq!(
            Some(opened[0].as_ptr()),
            changed.map(|frame| frame.as_ptr())
        );
    }
}
