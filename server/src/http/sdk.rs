//! Delivery to SDKs over HTTP: the ruleset, and the server-sent events that keep it current.
//!
//! One stream implementation serves two audiences. Server keys follow
//! `/api/v1/sdk/stream` and receive the ruleset itself, then deltas. OFREP providers follow
//! the channel URL advertised in a bulk evaluation and are only told to evaluate again: the
//! flags and rules never leave the server for them.
//!
//! Every stream subscribes to the delivery feed before it reads the environment, so no
//! change falls between what it sends first and what it follows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast::{self, error::RecvError};

use super::state::State;
use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::feed::{Delta, Update};
use crate::service::{Principal, Service};
use crate::shutdown::Signal;
use crate::store::Scope;

/// How long an `EventSource` waits before it reconnects, in milliseconds.
const RETRY_MILLISECONDS: u64 = 3000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/api/v1/sdk/ruleset").route(web::get().to(ruleset)))
        .service(web::resource("/api/v1/sdk/stream").route(web::get().to(stream)));
}

/// The request's key, which must be a server key; and its environment.
fn server_key(request: &HttpRequest, state: &State) -> Result<(Arc<Principal>, String)> {
    let principal = super::request::principal(request, state)?;
    match (principal.scope, principal.environment.clone()) {
        (Scope::Server, Some(environment)) => Ok((principal, environment)),
        // A ruleset holds every flag and rule: a client key ships inside apps and must not
        // read the server-side ones; an admin key belongs to no environment.
        (scope, _) => Err(Error::Forbidden(format!(
            "this is a {} key; rulesets are delivered to server keys only",
            scope.as_str()
        ))),
    }
}

fn environment_gone(name: &str) -> Error {
    Error::NotFound {
        what: "environment",
        key: name.to_string(),
    }
}

/// The environment's ruleset: every flag and segment, with its revisions, for SDKs that
/// evaluate locally. Answers `304` when `If-None-Match` names the current `ETag`.
#[utoipa::path(
    get,
    path = "/api/v1/sdk/ruleset",
    tag = "sdk",
    params(("If-None-Match" = Option<String>, Header, description = "The `ETag` of a previous answer")),
    responses(
        (status = 200, description = "The ruleset", body = RulesetSchema, headers(("ETag" = String))),
        (status = 304, description = "Nothing changed since the `ETag` sent"),
        (status = 404, description = "The key's environment was deleted meanwhile", body = super::errors::ErrorBody),
        crate::http::schemas::KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn ruleset(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    let (_, name) = server_key(&request, &state)?;
    let environment = state
        .service
        .environment(&name)
        .ok_or_else(|| environment_gone(&name))?;
    let instance = request.headers().get(crate::reach::HEADER);
    let instance = instance.map(|id| id.as_bytes());
    state
        .service
        .reach()
        .record_header(&name, instance, environment.revision);
    let delivered = environment.delivered();
    if super::request::if_none_match(&request, &delivered.etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, delivered.etag.clone()))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, delivered.etag.clone()))
        .content_type("application/json")
        .body(delivered.json.clone()))
}

/// Server-sent events: the ruleset (`event: ruleset`), then every change as `event: delta`
/// (or a whole `ruleset` when a delta would not apply), `event: deleted` when the
/// environment is deleted. Each event's `id` is the revision it brings the client to; send it
/// back as `Last-Event-ID` to receive only what was missed. Heartbeats are SSE comments.
#[utoipa::path(
    get,
    path = "/api/v1/sdk/stream",
    tag = "sdk",
    params(("Last-Event-ID" = Option<String>, Header, description = "The revision the client has; only later changes are sent")),
    responses(
        (status = 200, description = "The event stream; each event as the schema says", content_type = "text/event-stream", body = SdkStreamEvent),
        (status = 404, description = "The key's environment was deleted meanwhile", body = super::errors::ErrorBody),
        crate::http::schemas::KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn stream(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    let (_, environment) = server_key(&request, &state)?;
    let token = super::request::api_key(&request)?.to_string();
    let instance = request.headers().get(crate::reach::HEADER);
    let instance = state
        .service
        .reach()
        .instance(&environment, instance.map(|id| id.as_bytes()));
    follow(
        &state,
        Credential::Key(token),
        environment,
        last_event_id(&request),
        Encoding::Ruleset,
        instance,
    )
}

/// The revision a reconnecting client has. Anything unreadable counts as none: the client
/// then starts over from the whole ruleset.
pub(super) fn last_event_id(request: &HttpRequest) -> Option<u64> {
    request
        .headers()
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What a stream's client authenticated with, checked again before every event: a revoked
/// key ends its streams.
pub(super) enum Credential {
    /// An API key, for `/api/v1/sdk/stream`.
    Key(String),
    /// An OFREP channel, for `/ofrep/v1/events`.
    Channel(String),
}

impl Credential {
    fn principal(&self, service: &Service) -> Option<Arc<Principal>> {
        match self {
            Credential::Key(token) => service.authenticate(token),
            Credential::Channel(channel) => service.channel_principal(channel),
        }
    }
}

/// How a stream tells its client about a change.
#[derive(Clone, Copy)]
pub(super) enum Encoding {
    /// The ruleset and its deltas, for SDKs that evaluate locally.
    Ruleset,
    /// OFREP's `refetchEvaluation`: evaluate again, the answer has changed.
    Ofrep,
}

impl Encoding {
    /// What a client gets on connecting, having sent `last_event_id`.
    fn opening(
        self,
        service: &Service,
        environment: &Environment,
        last_event_id: Option<u64>,
    ) -> BytesMut {
        let mut out = BytesMut::new();
        out.extend_from_slice(format!("retry: {RETRY_MILLISECONDS}\n\n").as_bytes());
        match self {
            Encoding::Ruleset => {
                match last_event_id.and_then(|revision| {
                    service.deltas_since(&environment.name, revision, environment.revision)
                }) {
                    Some(deltas) => {
                        for delta in deltas {
                            out.extend_from_slice(&self.delta(&delta));
                        }
                    }
                    None => out.extend_from_slice(&self.ruleset(environment)),
                }
            }
            // A provider fetched its evaluations before it connected: a change may have
            // come in between, and one more (usually `304`) fetch is cheap.
            Encoding::Ofrep => {
                if last_event_id != Some(environment.revision) {
                    out.extend_from_slice(&self.ruleset(environment));
                }
            }
        }
        out
    }

    fn ruleset(self, environment: &Environment) -> Bytes {
        match self {
            Encoding::Ruleset => event(
                "ruleset",
                Some(environment.revision),
                &environment.delivered().json,
            ),
            Encoding::Ofrep => refetch(Some(environment.revision)),
        }
    }

    fn delta(self, delta: &Delta) -> Bytes {
        match self {
            Encoding::Ruleset => event("delta", Some(delta.revision), &delta.json),
            Encoding::Ofrep => refetch(Some(delta.revision)),
        }
    }

    fn deleted(self, name: &str) -> Bytes {
        match self {
            Encoding::Ruleset => {
                let data = serde_json::json!({ "environment": name }).to_string();
                event("deleted", None, data.as_bytes())
            }
            // OFREP has no such event: the fetch it causes is refused, which is how a
            // provider learns that its flags are gone.
            Encoding::Ofrep => refetch(None),
        }
    }
}

/// One event. Compact JSON never holds a line break, but should `data` ever hold one, each
/// line goes in a `data` field of its own (`\r\n`, `\r` and `\n` all end a line in SSE), which
/// the client joins back with `\n`.
fn event(name: &str, id: Option<u64>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 48);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    let mut rest = data;
    loop {
        let end = rest
            .iter()
            .position(|byte| matches!(byte, b'\r' | b'\n'))
            .unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end]);
        out.extend_from_slice(b"\n");
        rest = match rest.get(end..) {
            Some([b'\r', b'\n', after @ ..]) | Some([_, after @ ..]) => after,
            _ => break,
        };
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

fn refetch(id: Option<u64>) -> Bytes {
    event("message", id, br#"{"type":"refetchEvaluation"}"#)
}

/// A comment: `EventSource` ignores it, while proxies and clients see a live connection.
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Answers with a stream that follows `environment` for the holder of `credential`.
pub(super) fn follow(
    state: &State,
    credential: Credential,
    environment: String,
    last_event_id: Option<u64>,
    encoding: Encoding,
    instance: Option<crate::reach::Instance>,
) -> Result<HttpResponse> {
    // Subscribed before the environment is read: see the module's documentation.
    let updates = state.service.subscribe();
    let current = state
        .service
        .environment(&environment)
        .ok_or_else(|| environment_gone(&environment))?;
    let opening = encoding.opening(&state.service, &current, last_event_id);
    let follower = Follower {
        service: Arc::clone(&state.service),
        credential,
        environment,
        encoding,
        updates,
        stop: state.stop.clone(),
        heartbeat: state.heartbeat,
        quiet_until: tokio::time::Instant::now() + state.heartbeat,
        sent: current.revision,
        opening: Some(opening.freeze()),
        finished: false,
        instance,
    };
    let body = futures_util::stream::unfold(follower, |mut follower| async move {
        let chunk = follower.next().await?;
        Some((Ok::<_, Infallible>(chunk), follower))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise hold events back to fill their buffers.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct Follower {
    service: Arc<Service>,
    credential: Credential,
    environment: String,
    encoding: Encoding,
    updates: broadcast::Receiver<Arc<Update>>,
    stop: Signal,
    heartbeat: Duration,
    /// When a heartbeat is due unless something else is sent first.
    quiet_until: tokio::time::Instant,
    /// The revision the client has been brought to.
    sent: u64,
    opening: Option<Bytes>,
    finished: bool,
    /// Records every revision sent, heartbeats included, for a kill's reach.
    instance: Option<crate::reach::Instance>,
}

impl Follower {
    /// The next chunk to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(opening) = self.opening.take() {
            if let Some(instance) = &self.instance {
                instance.record(self.sent);
            }
            return Some(opening);
        }
        if self.finished {
            return None;
        }
        let chunk = loop {
            let received = tokio::select! {
                biased;
                () = self.stop.stopped() => return None,
                received = tokio::time::timeout_at(self.quiet_until, self.updates.recv()) => received,
            };
            let Ok(received) = received else {
                if !self.authorized() {
                    return None;
                }
                break Bytes::from_static(HEARTBEAT);
            };
            let update = match received {
                Ok(update) => update,
                // Fallen too far behind for the missed changes to be known: start over.
                Err(RecvError::Lagged(_)) => match self.service.environment(&self.environment) {
                    Some(environment) if environment.revision != self.sent => {
                        if !self.authorized() {
                            return None;
                        }
                        self.sent = environment.revision;
                        break self.encoding.ruleset(&environment);
                    }
                    Some(_) => continue,
                    None => {
                        self.finished = true;
                        break self.encoding.deleted(&self.environment);
                    }
                },
                Err(RecvError::Closed) => return None,
            };
            if update.environment_name() != self.environment {
                continue;
            }
            match &*update {
                // Told even if the deletion has revoked the key by now: it was valid for
                // everything this stream sent before, and this is the last event.
                Update::Deleted { .. } => {
                    self.finished = true;
                    break self.encoding.deleted(&self.environment);
                }
                Update::Changed { environment, delta } => {
                    if environment.revision <= self.sent {
                        continue;
                    }
                    if !self.authorized() {
                        return None;
                    }
                    let chunk = match delta
                        .as_ref()
                        .filter(|delta| delta.from_revision == self.sent)
                    {
                        Some(delta) => self.encoding.delta(delta),
                        None => self.encoding.ruleset(environment),
                    };
                    self.sent = environment.revision;
                    break chunk;
                }
            }
        };
        self.quiet_until = tokio::time::Instant::now() + self.heartbeat;
        if let Some(instance) = &self.instance {
            instance.record(self.sent);
        }
        Some(chunk)
    }

    /// Whether the credential still names a valid key of this environment.
    fn authorized(&self) -> bool {
        self.credential
            .principal(&self.service)
            .is_some_and(|principal| principal.environment.as_deref() == Some(&self.environment))
    }
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn each_line_of_data_is_a_field_of_its_own() {
        for (data, fields) in [
            (&b"{}"[..], "data: {}\n"),
            (b"", "data: \n"),
            (b"a\nb", "data: a\ndata: b\n"),
            (b"a\r\nb\rc", "data: a\ndata: b\ndata: c\n"),
            (b"a\n", "data: a\ndata: \n"),
        ] {
            assert_eq!(
                event("delta", Some(7), data),
                format!("event: delta\nid: 7\n{fields}\n").into_bytes(),
                "{data:?}"
            );
        }
        assert_eq!(
            event("deleted", None, b"{}"),
            &b"event: deleted\ndata: {}\n\n"[..]
        );
    }

    #[test]
    fn the_openapi_document_names_the_delivery_routes() {
        use utoipa::OpenApi as _;
        let document = super::super::openapi::ApiDoc::openapi();
        for path in [
            "/api/v1/sdk/ruleset",
            "/api/v1/sdk/stream",
            "/ofrep/v1/events",
        ] {
            assert!(
                document.paths.paths.contains_key(path),
                "{path} is not documented"
            );
        }
    }
}

/// What `/api/v1/sdk/ruleset` answers, and the data of a `ruleset` event.
#[derive(utoipa::ToSchema)]
#[schema(as = SdkRuleset)]
pub struct RulesetSchema {
    pub environment: String,
    /// The environment's revision.
    pub revision: u64,
    /// The revision at which each flag last changed, by key.
    pub flag_revisions: std::collections::BTreeMap<String, u64>,
    /// The flag document: `segments` and `flags` (docs/flags.md).
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// One event of `/api/v1/sdk/stream`, as an SSE client reads it: `event` is its name, `id`
/// the revision it brings the client to, `data` one JSON value.
pub struct SdkStreamEvent;

impl utoipa::PartialSchema for SdkStreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .description(Some(
                "One event of the stream: `ruleset` (the whole ruleset), `delta` (what changed \
                 since the previous event) or `deleted` (the environment is gone; the stream \
                 ends). Heartbeats are SSE comments, not events.",
            ))
            .item(sse_event(
                "ruleset",
                true,
                "The whole ruleset as JSON, as `GET /api/v1/sdk/ruleset` answers it \
                 (`SdkRuleset`): sent first, and whenever a delta would not apply",
            ))
            .item(sse_event(
                "delta",
                true,
                "What changed, as JSON: `{environment, from_revision, revision, flags?, \
                 segments?, flag_revisions?}`, where a removed flag or segment is `null`",
            ))
            .item(sse_event(
                "deleted",
                false,
                "`{\"environment\": name}`: the environment was deleted",
            ))
            .into()
    }
}

impl utoipa::ToSchema for SdkStreamEvent {}

/// One event of `/ofrep/v1/events`: OFREP's `refetchEvaluation`, the only event it has.
pub struct OfrepStreamEvent;

impl utoipa::PartialSchema for OfrepStreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "Evaluate again: an answer may have changed. `id` is the revision it brings \
                 the client to.",
            ))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["message"])),
            )
            .required("event")
            .property("id", revision_id())
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .enum_values(Some([r#"{"type":"refetchEvaluation"}"#])),
            )
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for OfrepStreamEvent {}

/// An event named `name` whose `data` is described by `data`; with `revision`, its `id` is
/// always there.
fn sse_event(name: &str, revision: bool, data: &str) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let event = ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name])),
        )
        .required("event")
        .property("id", revision_id())
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .description(Some(data)),
        )
        .required("data");
    if revision {
        event.required("id")
    } else {
        event
    }
    .build()
}

/// An event's `id`: a revision, which a client sends back as `Last-Event-ID`.
fn revision_id() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some("^[0-9]+$"))
        .description(Some("The revision the event brings the client to"))
}
