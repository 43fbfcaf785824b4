//! Health checks whose request is not protobuf are the caller's error.
//!
//! The services generated here decode with [`ripcord_proto::codec`], which answers a request
//! that is not protobuf `INVALID_ARGUMENT`. gRPC health comes generated with prost's codec,
//! which answers it `INTERNAL`: a monitoring system would read the server as broken when the
//! probe is. Health decodes its one request message before the service sees it, so the
//! failure is a response of headers alone, which is rewritten here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::server::NamedService;

/// The start of every message prost gives to a decoding failure.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// A service whose decoding failures are `INVALID_ARGUMENT`.
#[derive(Clone)]
pub struct CallerError<S>(pub S);

impl<S: NamedService> NamedService for CallerError<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for CallerError<S>
where
    S: tower::Service<
        http::Request<B>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                if status.code() == tonic::Code::Internal
                    && status.message().starts_with(DECODE_FAILURE)
                {
                    let refusal = tonic::Status::invalid_argument(format!(
                        "the request is not a valid protobuf message: {}",
                        status.message()
                    ));
                    // The answer was headers alone; only the status in them changes.
                    let headers = response.headers_mut();
                    headers.remove("grpc-status");
                    headers.remove("grpc-message");
                    if let Err(error) = refusal.add_header(headers) {
                        tracing::debug!(%error, "could not rewrite a health check's status");
                    }
                }
            }
            Ok(response)
        })
    }
}
