//! Delivery to SDKs over HTTP: the ruleset, and the server-sent events that keep it current.
//!
//! One stream implementation serves two audiences. Server keys follow
//! `/api/v1/sdk/stream` and receive the ruleset itself, then deltas. OFREP providers follow
//! the channel URL advertised in a bulk evaluation and are only told to evaluate again: the
//! flags and rules never leave the server for them.
//!
//! What is sent and when is decided by `crate::delivery`'s follower; this module only
//! writes it as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};

use super::state::State;
use crate::access::{self, Action};
use crate::delivery::{Credential, Event, Follow, Opening};
use crate::environment::{Environment, Framing};
use crate::error::{Error, Result};
use crate::feed::Delta;
use crate::principal::Principal;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/api/v1/sdk/ruleset").route(web::get().to(ruleset)))
        .service(web::resource("/api/v1/sdk/stream").route(web::get().to(stream)));
}

/// The request's key, which must be a server key; and its environment.
fn server_key(request: &HttpRequest, state: &State) -> Result<(Arc<Principal>, String)> {
    let principal = super::request::principal(request, state)?;
    let environment = access::environment(&principal, Action::FetchRuleset)?.to_string();
    Ok((principal, environment))
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

/// How a stream tells its client about a change.
#[derive(Clone, Copy)]
pub(super) enum Encoding {
    /// The ruleset and its deltas, for SDKs that evaluate locally.
    Ruleset,
    /// OFREP's `refetchEvaluation`: evaluate again, the answer has changed.
    Ofrep,
}

impl Encoding {
    /// What a client gets on connecting, as the chunks it is written in.
    fn opening(self, environment: &Environment, opening: &Opening) -> VecDeque<Bytes> {
        let mut out = VecDeque::from([Bytes::from_static(RETRY)]);
        match (self, opening) {
            (Encoding::Ruleset, Opening::Deltas(deltas)) => {
                out.extend(deltas.iter().map(|delta| self.delta(delta)));
            }
            // A provider fetched its evaluations before it connected: a change may have
            // come in between, and one more (usually `304`) fetch is cheap. Up to date, it
            // has nothing to fetch.
            (Encoding::Ofrep, Opening::Deltas(deltas)) if deltas.is_empty() => {}
            (_, Opening::Deltas(_) | Opening::Ruleset) => out.push_back(self.ruleset(environment)),
        }
        out
    }

    /// An event as this stream tells it; `None` ends the stream without a word, as a
    /// revoked key or a stopping server do.
    fn event(self, environment: &str, event: Event) -> Option<Bytes> {
        match event {
            Event::Changed {
                delta: Some(delta), ..
            } => Some(self.delta(&delta)),
            Event::Changed { current, .. } => Some(self.ruleset(&current)),
            Event::Heartbeat(_) => Some(Bytes::from_static(HEARTBEAT)),
            // Told even though the deletion has revoked the key by now: it was valid for
            // everything this stream sent before, and this is the last event.
            Event::Deleted => Some(self.deleted(environment)),
            Event::Revoked | Event::Stopping => None,
        }
    }

    /// The whole ruleset: one shared frame per revision for every stream that sends it.
    fn ruleset(self, environment: &Environment) -> Bytes {
        match self {
            Encoding::Ruleset => environment.frame(Framing::ServerSentEvent, || {
                event(
                    "ruleset",
                    Some(environment.revision),
                    &environment.delivered().json,
                )
            }),
            Encoding::Ofrep => refetch(Some(environment.revision)),
        }
    }

    fn delta(self, delta: &Delta) -> Bytes {
        match self {
            Encoding::Ruleset => delta.frame(Framing::ServerSentEvent, || {
                event("delta", Some(delta.revision), &delta.json)
            }),
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

/// Tells an `EventSource` to wait 3 seconds before it reconnects.
const RETRY: &[u8] = b"retry: 3000\n\n";

/// The most of a frame handed to actix at once. Actix copies each chunk of a body into the
/// connection's write buffer and keeps that buffer's size for as long as the connection
/// lives (up to 128 KiB): a ruleset handed over whole would leave every idle stream holding
/// a buffer the size of the ruleset. In slices this size, with the server's write buffer
/// limit of [`super::WRITE_BUFFER`], the buffer never outgrows the 8 KiB actix starts
/// with. The slices share the frame; nothing is copied for them.
const SLICE: usize = super::WRITE_BUFFER - 16;

/// The next slice of `pending`'s first chunk.
fn next_slice(pending: &mut VecDeque<Bytes>) -> Option<Bytes> {
    let chunk = pending.front_mut()?;
    if chunk.len() > SLICE {
        return Some(chunk.split_to(SLICE));
    }
    pending.pop_front()
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
    let start = Follow {
        service: Arc::clone(&state.service),
        credential,
        environment: environment.clone(),
        known_revision: last_event_id,
        heartbeat: state.heartbeat,
        stop: state.stop.clone(),
        instance,
    }
    .start()
    .ok_or_else(|| environment_gone(&environment))?;
    let pending = encoding.opening(&start.environment, &start.opening);
    let body = futures_util::stream::unfold(
        (pending, start.follower),
        move |(mut pending, mut follower)| {
            let environment = environment.clone();
            async move {
                loop {
                    if let Some(slice) = next_slice(&mut pending) {
                        return Some((Ok::<_, Infallible>(slice), (pending, follower)));
                    }
                    let event = follower.next().await?;
                    pending.push_back(encoding.event(&environment, event)?);
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise hold events back to fill their buffers.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use ripcord_engine::{Document, Limits, Snapshot};

    use super::*;

    fn environment(flags: usize) -> Environment {
        let yaml: String = std::iter::once("flags:\n".to_string())
            .chain((0..flags).map(|index| {
                format!(
                    "  flag-{index:04}:\n    type: string\n    variants: {{v: \"{}\"}}\n    default_variant: v\n",
                    "x".repeat(100)
                )
            }))
            .collect();
        let document = Document::from_yaml(&yaml).expect("a valid document");
        let snapshot =
            Snapshot::compile(&document, 7, |_| 7, &Limits::default()).expect("it compiles");
        Environment::new("production", 7, snapshot, document, BTreeMap::new())
    }

    /// The chunks a stream's body hands actix, in order.
    fn slices(mut pending: VecDeque<Bytes>) -> Vec<Bytes> {
        std::iter::from_fn(|| next_slice(&mut pending)).collect()
    }

    /// Two streams that open at the same revision send the same bytes, from one frame: a
    /// ruleset is not copied once per stream.
    #[test]
    fn streams_at_one_revision_share_one_frame() {
        let environment = environment(3);
        let first = Encoding::Ruleset.opening(&environment, &Opening::Ruleset);
        let second = Encoding::Ruleset.opening(&environment, &Opening::Ruleset);
        assert_eq!(first, second);
        assert_eq!(first[1].as_ptr(), second[1].as_ptr());
        let text = String::from_utf8(first.iter().flat_map(|chunk| chunk.to_vec()).collect())
            .expect("text");
        assert!(
            text.starts_with("retry: 3000\n\nevent: ruleset\nid: 7\ndata: {"),
            "{text}"
        );

        let delta = Arc::new(Delta::new(7, 8, Bytes::from_static(b"{}"), Vec::new()));
        let deltas = Opening::Deltas(vec![Arc::clone(&delta)]);
        let first = Encoding::Ruleset.opening(&environment, &deltas);
        let second = Encoding::Ruleset.event(
            "production",
            Event::Changed {
                previous: Arc::new(Environment::new(
                    "production",
                    7,
                    Snapshot::empty(7),
                    Document::default(),
                    BTreeMap::new(),
                )),
                current: Arc::new(environment),
                delta: Some(delta),
            },
        );
        assert_eq!(first[1], &b"event: delta\nid: 8\ndata: {}\n\n"[..]);
        assert_eq!(Some(first[1].as_ptr()), second.map(|frame| frame.as_ptr()));
    }

    /// A ruleset goes to actix in slices of the shared frame that fit its write buffer, so
    /// that no connection keeps a buffer the size of the ruleset once it is sent.
    #[test]
    fn a_large_frame_is_handed_over_in_slices_of_itself() {
        let environment = environment(200);
        let opening = Encoding::Ruleset.opening(&environment, &Opening::Ruleset);
        let frame = opening[1].clone();
        assert!(frame.len() > 8 * SLICE, "{}", frame.len());
        let slices = slices(opening);
        assert!(slices.iter().all(|slice| slice.len() <= SLICE));
        assert_eq!(slices[0], &b"retry: 3000\n\n"[..]);
        let joined: Vec<u8> = slices[1..]
            .iter()
            .flat_map(|slice| slice.to_vec())
            .collect();
        assert_eq!(joined, frame);
        let range = frame.as_ptr_range();
        assert!(slices[1..]
            .iter()
            .all(|slice| range.contains(&slice.as_ptr())));
    }

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
