//! HTTP: the only module that knows actix-web.
//!
//! Handlers parse, authorize, call the [`Service`](crate::service::Service), and map the
//! result. Every domain error becomes a response in one place, [`errors`]; no input produces
//! a 500 or a panic. What handlers share sits in modules that import no handler: [`state`],
//! [`request`] and [`schemas`]; [`openapi`] imports the handlers, never the other way.

pub mod admin;
pub mod admin_events;
pub mod console;
pub mod dry_run;
pub mod errors;
pub mod explain;
pub mod flag_schema;
pub mod judge;
pub mod observations;
pub mod ofrep;
pub mod openapi;
pub mod ops;
pub mod ramp_history;
pub mod ramp_summaries;
pub mod ramps;
pub mod request;
pub mod schemas;
pub mod sdk;
pub mod state;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle, Service as _};
use actix_web::web;
use actix_web::{App, HttpMessage as _, HttpServer};

use crate::config::Config;
use state::State;

/// How much of a streamed body actix gathers before it writes to the socket. Event streams
/// hand it slices small enough that, under this limit, a connection's write buffer stays at
/// the 8 KiB it starts with (`sdk`'s `SLICE` says why that matters); bodies sent whole are
/// not affected.
pub(crate) const WRITE_BUFFER: usize = 4096;

/// Builds the HTTP server on `listener`. The caller stops it with the [`Drain`], which fires
/// `stop` for the streams.
pub fn serve(
    parts: crate::parts::Parts,
    config: &Config,
    listener: TcpListener,
    workers: usize,
    stop: crate::shutdown::Signal,
    tls: Option<crate::tls::Tls>,
) -> std::io::Result<(Server, Drain)> {
    let crate::parts::Parts {
        service,
        metrics,
        ingest,
        ramps,
    } = parts;
    let state = web::Data::new(State {
        service,
        metrics,
        max_body_bytes: config.max_body_bytes,
        max_import_bytes: config.max_import_bytes,
        max_context_attributes: config.max_context_attributes,
        stop,
        heartbeat: config.heartbeat,
        ramps,
        ingest,
    });
    let body_timeout = config.body_timeout;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let accepting = listener.try_clone()?;
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new()
            .app_data(state.clone())
            // Bodies are read by `read_body`, which enforces our limits with a clear error.
            .app_data(web::PayloadConfig::new(usize::MAX))
            .wrap(actix_web::middleware::ErrorHandlers::new().handler(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                errors::method_not_allowed,
            ))
            .wrap_fn(move |mut request, service| {
                let started = Instant::now();
                if has_body(request.headers()) {
                    let payload = request.take_payload();
                    request.set_payload(request::with_deadline(payload, body_timeout));
                }
                let method = known_method(request.method());
                let state = state.clone();
                let response = service.call(request);
                async move {
                    let mut response = response.await?;
                    if state.stop.is_stopping() {
                        // The client learns from the answer not to send another request on
                        // this connection, which the server is about to close.
                        response
                            .response_mut()
                            .head_mut()
                            .set_connection_type(actix_web::http::ConnectionType::Close);
                    }
                    let route = response
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    state
                        .metrics
                        .request_duration
                        .with_label_values(&[method, route.as_str(), response.status().as_str()])
                        .observe(started.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
            .configure(ops::routes)
            .configure(ofrep::routes)
            .configure(sdk::routes)
            .configure(openapi::routes)
            .configure(admin::routes)
            .configure(ramp_history::routes)
            .configure(ramp_summaries::routes)
            .configure(ramps::routes)
            .configure(explain::routes)
            .configure(admin_events::routes)
            .configure(judge::routes)
            .configure(observations::routes)
            .configure(console::routes)
            .default_service(web::to(errors::not_found))
    })
    .workers(workers)
    .h1_write_buffer_size(WRITE_BUFFER)
    .disable_signals()
    .keep_alive(KEEP_ALIVE)
    .on_connect(move |_, extensions| {
        extensions.insert(Open::new(&counted));
    })
    // The idle window of the drain comes out of the grace (actix counts whole seconds).
    .shutdown_timeout(
        config
            .shutdown_grace
            .saturating_sub(IDLE_DRAIN)
            .as_secs()
            .max(1),
    );
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.http())?,
        None => server.listen(listener)?,
    }
    .run();
    let drain = Drain {
        handle: server.handle(),
        accepting,
        connections,
        grace: config.shutdown_grace,
    };
    Ok((server, drain))
}

/// How long an idle keep-alive connection stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How long a stop leaves open keep-alive connections for the requests their clients may
/// already have sent. A connection used in that time is closed after its answer, which says
/// so; one idle throughout is closed then, as when its keep-alive runs out.
const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// Counts an open connection while it lives in the connection's extensions.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        crate::memory::connection_closed();
    }
}

/// How the HTTP server stops without resetting a request a client has sent.
///
/// actix's graceful stop closes idle keep-alive connections at once, while their clients
/// may be sending a request on them; closing a socket with unread data resets it, and the
/// client sees its request fail. So the stop goes in this order: new connections are
/// refused (the listening socket is shut, so a client's connect fails before it sends
/// anything); answers say `Connection: close`, so clients move off the connections they
/// use; idle connections get [`IDLE_DRAIN`] to be used once more or stay idle; then actix
/// stops gracefully, finishing what is in progress within `RIPCORD_SHUTDOWN_GRACE`.
pub struct Drain {
    handle: ServerHandle,
    /// The listening socket, shared with actix's accept loop.
    accepting: TcpListener,
    connections: Arc<AtomicUsize>,
    grace: Duration,
}

impl Drain {
    /// Stops the server; `trigger` ends the long-lived streams once no new connection can
    /// arrive. Returns when the server has stopped.
    pub async fn stop(self, trigger: crate::shutdown::Trigger) {
        let started = Instant::now();
        self.handle.pause().await;
        // Linux takes a listening socket out of service on shutdown; elsewhere this fails
        // and new connections wait in the backlog until actix closes the socket.
        if let Err(error) =
            socket2::SockRef::from(&self.accepting).shutdown(std::net::Shutdown::Read)
        {
            tracing::debug!(%error, "could not shut the listening socket");
        }
        trigger.stop();
        let window = IDLE_DRAIN.min(self.grace);
        while self.connections.load(Ordering::Relaxed) > 0 && started.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.handle.stop(true).await;
    }
}

/// Whether the request announces a body: only those need a deadline on reading it.
fn has_body(headers: &actix_web::http::header::HeaderMap) -> bool {
    use actix_web::http::header;
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// The method as a metric label: only known methods, so that a client cannot grow the
/// metrics without bound by inventing methods.
fn known_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .iter()
    .zip(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    .find_map(|(known, label)| (known == method).then_some(label))
    .unwrap_or("other")
}
