//! What both protocol servers serve from: built once by `run`, handed to HTTP and gRPC.

use std::sync::Arc;

use crate::ingest::Ingest;
use crate::ramp::Controller;
use crate::service::Service;
use crate::telemetry::Metrics;

/// What both protocol servers serve from.
#[derive(Clone)]
pub struct Parts {
    pub service: Arc<Service>,
    /// One registry for both protocols: `/metrics` counts gRPC evaluations too.
    pub metrics: Arc<Metrics>,
    pub ingest: Arc<Ingest>,
    pub ramps: Arc<Controller>,
}
