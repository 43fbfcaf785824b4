//! HTTP: the only module that knows actix-web.
//!
//! Handlers parse, authorize, call the [`Service`], and map the result. Every domain error
//! becomes a response in one place, [`errors`]; no input produces a 500 or a panic.

pub mod admin;
pub mod errors;
pub mod flag_schema;
pub mod judge;
pub mod metrics;
pub mod ofrep;
pub mod openapi;
pub mod ops;
pub mod ramps;
pub mod sdk;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, Service as _};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpServer};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::{Principal, Service};
use crate::store::Scope;

/// What every handler can reach.
pub struct State {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub max_import_bytes: usize,
    pub max_context_attributes: usize,
    /// Fires when the process stops: long-lived streams end on it.
    pub stop: crate::shutdown::Signal,
    /// Longest silence on a stream before a heartbeat.
    pub heartbeat: std::time::Duration,
    pub ramps: Arc<crate::ramp::Controller>,
    pub ingest: Arc<crate::ingest::Ingest>,
}

/// Builds the HTTP server on `listener`. The caller stops it (see `run`), after `stop` has
/// fired for the streams.
pub fn serve(
    parts: crate::Parts,
    config: &Config,
    listener: TcpListener,
    workers: usize,
    stop: crate::shutdown::Signal,
) -> std::io::Result<Server> {
    let crate::Parts {
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
            .configure(admin::routes)
            .configure(ramps::routes)
            .configure(judge::routes)
            .configure(metrics::routes)
            .default_service(web::to(errors::not_found))
    })
    .workers(workers)
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

/// The key a request carries, as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn principal(request: &HttpRequest, state: &State) -> Result<Arc<Principal>> {
    let token = api_key(request)?;
    state.service.authenticate(token).ok_or(Error::Unauthorized(
        "the API key is not valid: unknown or revoked",
    ))
}

/// The token a request carries, not yet checked.
pub fn api_key(request: &HttpRequest) -> Result<&str> {
    let headers = request.headers();
    headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(Error::Unauthorized(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))
}

/// Whether `If-None-Match` names `etag` (weakly compared, as RFC 9110 asks for this header)
/// or is `*`.
pub fn if_none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case, as RFC 9110 has it: clients and proxies do send `bearer` and `BEARER`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The request's key, which must be an admin key.
pub fn admin(request: &HttpRequest, state: &State) -> Result<Arc<Principal>> {
    let principal = principal(request, state)?;
    if principal.scope != Scope::Admin {
        return Err(Error::Forbidden(format!(
            "this is a {} key; the admin API needs an admin key",
            principal.scope.as_str()
        )));
    }
    Ok(principal)
}

/// Reads a request body of at most `limit` bytes; a larger one is refused with an error
/// that names the limit, before it is read whole.
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    setting: &'static str,
) -> Result<Bytes> {
    let too_large = || Error::LimitExceeded {
        limit: setting,
        message: format!("the request body is over the limit of {limit} bytes ({setting})"),
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            Error::bad_request(format!("reading the request body failed: {error}"), None)
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body; a problem is reported with its path in the body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        Error::bad_request(
            format!("the request body is not valid: {}", error.inner()),
            (path != "." && path != "?").then_some(path),
        )
    })?;
    deserializer.end().map_err(|error| {
        Error::bad_request(format!("the request body is not valid: {error}"), None)
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR k", "Bearer  k"] {
            assert_eq!(bearer_token(value).map(str::trim), Some("k"), "{value}");
        }
        for value in ["Basic k", "Bearerk", "Bearer", "", "Bear k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
