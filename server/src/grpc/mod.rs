//! gRPC: the only module that knows tonic. Serves `ripcord.v1`, flagd's evaluation services,
//! gRPC health and reflection, on its own listener and runtime.
//!
//! - [`ripcord`]: `ripcord.v1.Ripcord` — Evaluate, EvaluateAll, Watch, Report.
//! - [`flagd`]: `flagd.evaluation.v1` and `v2`, for OpenFeature's flagd providers.
//! - [`follow`]: the streams that follow an environment (Watch, flagd's EventStream).
//! - [`auth`]: keys in the call's metadata.
//! - [`gate`]: keys checked from a call's headers before its body is read, and the
//!   connection limit.
//! - [`status`]: the one place a refusal becomes a `tonic::Status`.
//! - [`malformed`]: health checks that are not protobuf answered `INVALID_ARGUMENT`.
//! - [`convert`]: protobuf `Struct`s to and from JSON.

mod auth;
pub(crate) mod convert;
mod flagd;
mod follow;
mod gate;
mod malformed;
mod ripcord;
mod shared;
mod status;

use std::net::TcpListener;
use std::sync::Arc;

use ripcord_proto::pb;

use crate::config::Config;
use crate::shutdown;
use shared::Shared;

/// Serves gRPC on `listener` until `stop` fires.
pub async fn serve(
    parts: crate::parts::Parts,
    config: &Config,
    listener: TcpListener,
    mut stop: shutdown::Signal,
    tls: Option<crate::tls::Tls>,
) -> anyhow::Result<()> {
    let crate::parts::Parts {
        service,
        metrics,
        ingest,
        ..
    } = parts;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // Without TCP_NODELAY a small answer waits for the client's delayed ACK: about 40 ms
    // on every unary call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming =
        gate::limit_connections(incoming, config.grpc_max_connections, config.body_timeout);
    let shared = Arc::new(Shared {
        service,
        metrics,
        stop: stop.clone(),
        heartbeat: config.heartbeat,
        body_timeout: config.body_timeout,
        max_context_attributes: config.max_context_attributes,
        flagd_environment: config.flagd_environment.clone(),
        flagd_allow_anonymous: config.flagd_allow_anonymous,
        ingest,
    });
    let gate = gate::Gate::new(Arc::clone(&shared));
    let ripcord = Arc::new(ripcord::Ripcord {
        shared: Arc::clone(&shared),
    });
    let ripcord = ripcord::SharedFrames::new(
        pb::ripcord::v1::ripcord_server::RipcordServer::from_arc(Arc::clone(&ripcord)),
        ripcord,
    );
    let flagd_v1 =
        pb::flagd::evaluation::v1::service_server::ServiceServer::new(flagd::V1(flagd::Flagd {
            shared: Arc::clone(&shared),
        }));
    let flagd_v2 =
        pb::flagd::evaluation::v2::service_server::ServiceServer::new(flagd::V2(flagd::Flagd {
            shared: Arc::clone(&shared),
        }));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
        .await;
    health_reporter
        .set_serving::<pb::ripcord::v1::ripcord_server::RipcordServer<ripcord::Ripcord>>()
        .await;
    // Without an environment to serve, every flagd call fails: a health check should say so.
    let flagd_status = if shared.flagd_environment.is_some() {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health_reporter
        .set_service_status(
            <pb::flagd::evaluation::v1::service_server::ServiceServer<flagd::V1> as tonic::server::NamedService>::NAME,
            flagd_status,
        )
        .await;
    health_reporter
        .set_service_status(
            <pb::flagd::evaluation::v2::service_server::ServiceServer<flagd::V2> as tonic::server::NamedService>::NAME,
            flagd_status,
        )
        .await;
    // Both versions of reflection: Python's grpcio client and older tools speak only
    // `v1alpha`, newer ones `v1`.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ripcord_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let mut waiting = stop.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let identity = tonic::transport::Identity::from_pem(tls.cert_pem(), tls.key_pem());
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let served = builder
        // Beyond this many streams a client waits (or is refused with REFUSED_STREAM if it
        // does not), so one connection cannot hold an unbounded number of calls.
        .max_concurrent_streams(config.grpc_max_streams_per_connection)
        // A call whose request has not arrived, or not been answered, in this time ends; a
        // stream's answer (Watch) starts well before and is not cut by it.
        .timeout(config.body_timeout)
        .layer(gate)
        .add_service(malformed::CallerError(health))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ripcord)
        .add_service(flagd_v1)
        .add_service(flagd_v2)
        .serve_with_incoming_shutdown(incoming, async move { stop.stopped().await });
    // On the stop signal tonic stops accepting and sends GOAWAY, so that clients open no new
    // call here; calls in progress get the grace to finish.
    let grace = config.shutdown_grace;
    tokio::select! {
        served = served => served?,
        () = async move {
            waiting.stopped().await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("gRPC calls still open after RIPCORD_SHUTDOWN_GRACE were dropped"),
    }
    Ok(())
}
