//! What every gRPC service here needs, in a module of its own so that the services and the
//! module that starts them do not import each other.

use std::sync::Arc;
use std::time::Duration;

use ripcord_engine::Context;

use super::convert;
use super::status::Refusal;
use crate::service::Service;
use crate::shutdown;
use crate::telemetry::Metrics;

/// What every service here needs.
pub struct Shared {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
    pub stop: shutdown::Signal,
    pub heartbeat: Duration,
    /// How long a streaming call may take to send its one request message
    /// (`RIPCORD_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    pub max_context_attributes: usize,
    pub flagd_environment: Option<String>,
    pub flagd_allow_anonymous: bool,
    pub ingest: Arc<crate::ingest::Ingest>,
}

impl Shared {
    /// The evaluation context, checked as every protocol checks it.
    pub fn context(&self, context: Option<prost_types::Struct>) -> Result<Context, Refusal> {
        let attributes = context.map(convert::struct_to_json).unwrap_or_default();
        crate::context::build(
            attributes,
            self.max_context_attributes,
            self.service.limits().max_key_length,
        )
        .map_err(|problem| Refusal::InvalidArgument(format!("invalid context: {problem}")))
    }

    /// How a stream follows `environment` for the holder of `token` (`None`: anonymous).
    pub fn follow(
        &self,
        token: Option<String>,
        environment: String,
        known_revision: Option<u64>,
        instance: Option<crate::reach::Instance>,
    ) -> crate::delivery::Follow {
        crate::delivery::Follow {
            service: Arc::clone(&self.service),
            credential: token.map_or(crate::delivery::Credential::Anonymous, |token| {
                crate::delivery::Credential::Key(token)
            }),
            environment,
            known_revision,
            heartbeat: self.heartbeat,
            stop: self.stop.clone(),
            instance,
        }
    }
}
