//! Prometheus metrics: evaluations, request latency, snapshot revisions.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub evaluations: IntCounterVec,
    pub request_duration: HistogramVec,
    pub snapshot_revision: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let evaluations = IntCounterVec::new(
            Opts::new(
                "ripcord_evaluations_total",
                "Flag evaluations by flag and reason.",
            ),
            &["flag", "reason"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ripcord_http_request_duration_seconds",
                "HTTP request latency by route and status.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let snapshot_revision = IntGaugeVec::new(
            Opts::new(
                "ripcord_snapshot_revision",
                "The revision of the snapshot each environment serves.",
            ),
            &["environment"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(evaluations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(snapshot_revision.clone()),
        ] {
            registry
                .register(collector)
                .expect("metrics are registered once");
        }
        Metrics {
            registry,
            evaluations,
            request_duration,
            snapshot_revision,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
