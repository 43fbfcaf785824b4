//! Operators' endpoints: liveness, readiness, Prometheus metrics. No key needed.

use actix_web::{web, HttpResponse};

use super::State;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The store answers and every environment has a snapshot: evaluations can be served.
async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.service.ready().await {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "store unavailable"}))
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    // Revisions are read at scrape time: cheaper than updating a gauge on every change.
    for (environment, revision) in state.service.environment_names() {
        state
            .metrics
            .snapshot_revision
            .with_label_values(&[environment.as_str()])
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
