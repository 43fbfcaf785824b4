//! `GET /api/v1/events`: the live events of changes, ramp decisions and incidents, for the
//! screens of the people who run releases. Admin keys only.

use std::convert::Infallible;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::ErrorBody;
use super::state::State;
use crate::error::Result;
use crate::ramp::events::{AdminEvent, Events, Numbered, Resume};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/api/v1/events").route(web::get().to(events)));
}

/// A comment: `EventSource` ignores it, while proxies and clients see a live connection.
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Server-sent events of every committed change (`change`, `environment_deleted`), every
/// ramp decision the audit log keeps (`ramp`) and every incident (`incident`). Each event
/// has an `id`; a client that reconnects with `Last-Event-ID` gets what it missed, while the
/// last 1,024 events are kept in memory. When what it missed is no longer kept, or the id is
/// from before a restart, the stream opens with a `reset` event: read the state afresh.
/// Heartbeats are SSE comments.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received")
    ),
    responses(
        (status = 200, description = "The event stream; each event as the schema says, its data as `AdminEvent` says", content_type = "text/event-stream", body = AdminStreamEvent),
        (status = 401, description = "No API key, or one that is unknown or revoked", body = ErrorBody),
        (status = 403, description = "The key is not an admin key", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn events(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    super::request::require_admin(&request, &state)?;
    let events = Arc::clone(state.ramps.events());
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let latest = events.watch();
    let mut opening = b"retry: 3000\n\n".to_vec();
    let seen = match events.resume(last_event_id) {
        Resume::After(seen) => seen,
        Resume::Reset(latest) => {
            opening.extend_from_slice(&reset(&events, latest));
            latest
        }
    };
    let stream = Stream {
        events,
        latest,
        seen,
        heartbeat: state.heartbeat,
        stop: state.stop.clone(),
    };
    let body = futures_util::stream::unfold(
        (Some(Bytes::from(opening)), stream),
        |(opening, mut stream)| async move {
            if let Some(opening) = opening {
                return Some((Ok::<_, Infallible>(opening), (None, stream)));
            }
            let next = stream.next().await?;
            Some((Ok(next), (None, stream)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise hold events back to fill their buffers.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct Stream {
    events: Arc<Events>,
    latest: tokio::sync::watch::Receiver<u64>,
    /// The sequence number of the last event sent.
    seen: u64,
    heartbeat: std::time::Duration,
    stop: crate::shutdown::Signal,
}

impl Stream {
    /// The next bytes to send: the events after the last sent, a reset, or a heartbeat;
    /// `None` once the process stops.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.stop.is_stopping() {
                return None;
            }
            match self.events.after(self.seen) {
                // A stream too slow for the kept events: its client starts over.
                None => {
                    let latest = self.events.latest();
                    self.seen = latest;
                    return Some(reset(&self.events, latest));
                }
                Some(missed) if !missed.is_empty() => {
                    let mut text = Vec::new();
                    for numbered in &missed {
                        encode(&self.events, numbered, &mut text);
                        self.seen = numbered.sequence;
                    }
                    return Some(Bytes::from(text));
                }
                Some(_) => {}
            }
            tokio::select! {
                changed = self.latest.changed() => {
                    // The sender lives as long as the controller: gone means stopping.
                    changed.ok()?;
                }
                () = tokio::time::sleep(self.heartbeat) => {
                    return Some(Bytes::from_static(HEARTBEAT));
                }
                () = self.stop.stopped() => return None,
            }
        }
    }
}

/// One event of `/api/v1/events`, as the stream sends it.
pub struct AdminStreamEvent;

impl utoipa::PartialSchema for AdminStreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .description(Some(
                "One event: its name is the `type` of its data (`AdminEvent`), or `reset` \
                 (data `{}`: what the client missed is no longer kept; read the state \
                 afresh). Heartbeats are SSE comments, not events.",
            ))
            .item(event("change", "`AdminEvent` of type `change`"))
            .item(event(
                "environment_deleted",
                "`AdminEvent` of type `environment_deleted`",
            ))
            .item(event("ramp", "`AdminEvent` of type `ramp`"))
            .item(event("incident", "`AdminEvent` of type `incident`"))
            .item(event("reset", "`{}`"))
            .into()
    }
}

impl utoipa::ToSchema for AdminStreamEvent {}

fn event(name: &str, data: &str) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name])),
        )
        .required("event")
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+-[0-9]+$"))
                .description(Some(
                    "The process's start and the event's number: send it back as \
                     `Last-Event-ID`",
                )),
        )
        .required("id")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .description(Some(data)),
        )
        .required("data")
        .build()
}

fn reset(events: &Events, latest: u64) -> Bytes {
    Bytes::from(format!(
        "event: reset\nid: {}\ndata: {{}}\n\n",
        events.id(latest)
    ))
}

fn encode(events: &Events, numbered: &Numbered, text: &mut Vec<u8>) {
    let name = match &*numbered.event {
        AdminEvent::Change { .. } => "change",
        AdminEvent::EnvironmentDeleted { .. } => "environment_deleted",
        AdminEvent::Ramp { .. } => "ramp",
        AdminEvent::Incident { .. } => "incident",
    };
    // JSON with no newline in it: one `data:` line.
    let data = serde_json::to_string(&*numbered.event).unwrap_or_else(|_| "{}".to_string());
    text.extend_from_slice(
        format!(
            "event: {name}\nid: {}\ndata: {data}\n\n",
            events.id(numbered.sequence)
        )
        .as_bytes(),
    );
}
