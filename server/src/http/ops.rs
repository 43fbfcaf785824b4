//! Operators' endpoints: liveness, readiness, Prometheus metrics. No key needed.

use actix_web::{web, HttpResponse};

use super::state::State;

pub fn routes(config: &mut web::ServiceConfig) {
    // Resources rather than `.route`: a wrong method then gets 405, not 404.
    config
        .service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The store takes writes: changes, keys and metric batches can be accepted. Evaluations are
/// served from the snapshots either way; this says whether the node is whole. Answered
/// within half a second even when the store is stuck (see `store::isolated`). A node that
/// is stopping is not ready, so that a load balancer probing on a kept-alive connection
/// sends its traffic elsewhere while the node drains.
async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.stop.is_stopping() {
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "draining"}));
    }
    if state.service.ready().await {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "store unavailable"}))
    }
}

/// The Prometheus text. It needs no key, and so anyone who reaches it reads the flag keys
/// of every environment in the evaluation counts, which a client key is otherwise careful
/// not to reveal: it belongs on the operators' network.
async fn metrics(state: web::Data<State>) -> HttpResponse {
    // Read at scrape time: cheaper than updating a gauge on every change, and it lets the
    // scrape drop what deleted environments and flags left behind.
    let revisions = state.service.environment_names();
    state.metrics.set_snapshot_revisions(
        revisions
            .iter()
            .map(|(environment, revision)| (environment.as_str(), *revision)),
    );
    state.metrics.evaluations.retain(
        |name| state.service.environment(name),
        |environment, flag| environment.snapshot.flag(flag).is_some(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
