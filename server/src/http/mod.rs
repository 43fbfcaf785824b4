//! HTTP: the only module that knows actix-web.
//!
//! Handlers parse, authorize, call the [`Service`](crate::service::Service), and map the
//! result. Every domain error becomes a response in one place, [`errors`]; no input produces
//! a 500 or a panic. What handlers share sits in modules that import no handler: [`state`],
//! [`request`] and [`schemas`]; [`openapi`] imports the handlers, never the other way.

pub mod admin;
pub mod admin_events;
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
pub mod ramps;
pub mod request;
pub mod schemas;
pub mod sdk;
pub mod state;

use std::net::TcpListener;
use std::time::Instant;

use actix_web::dev::{Server, Service as _};
use actix_web::web;
use actix_web::{App, HttpServer};

use crate::config::Config;
use state::State;

/// How much of a streamed body actix gathers before it writes to the socket. Event streams
/// hand it slices small enough that, under this limit, a connection's write buffer stays at
/// the 8 KiB it starts with (`sdk`'s `SLICE` says why that matters); bodies sent whole are
/// not affected.
pub(crate) const WRITE_BUFFER: usize = 4096;

/// Builds the HTTP server on `listener`. The caller stops it (see `run`), after `stop` has
/// fired for the streams.
pub fn serve(
    parts: crate::parts::Parts,
    config: &Config,
    listener: TcpListener,
    workers: usize,
    stop: crate::shutdown::Signal,
) -> std::io::Result<Server> {
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
            .wrap_fn(move |request, service| {
                let started = Instant::now();
                let method = known_method(request.method());
                let state = state.clone();
                let response = service.call(request);
                async move {
                    let response = response.await?;
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
            .configure(ramps::routes)
            .configure(explain::routes)
            .configure(admin_events::routes)
            .configure(judge::routes)
            .configure(observations::routes)
            .default_service(web::to(errors::not_found))
    })
    .workers(workers)
    .h1_write_buffer_size(WRITE_BUFFER)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
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
