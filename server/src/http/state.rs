//! What every handler can reach.

use std::sync::Arc;

use crate::service::Service;
use crate::telemetry::Metrics;

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
