//! What a gRPC call must pass before its request body is read, and how many connections may
//! be open at once.
//!
//! tonic reads a call's whole request message before the service sees the call, so a key
//! checked by the service is checked too late: a client without one could open streams, send
//! headers and never a body, and each stream would hold memory until the connection closed.
//! The gate answers UNAUTHENTICATED from the headers alone, so such a stream ends at once.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::shared::Shared;
use super::{auth, flagd};

/// Who may start which call, judged from its path and headers.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
}

impl Gate {
    pub fn new(shared: Arc<Shared>) -> Gate {
        Gate { shared }
    }

    /// `Ok` lets the call reach its service, which checks what the key may do. Health and
    /// reflection need no key; `ripcord.v1` needs a valid one; flagd's services are asked
    /// exactly what they ask of every call.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
        let authorization = headers.get(http::header::AUTHORIZATION);
        if path.starts_with("/ripcord.v1.") {
            let token = auth::token_of(authorization)?.ok_or_else(auth::missing_key)?;
            self.shared
                .service
                .authenticate(&token)
                .ok_or_else(auth::unknown_key)?;
        } else if path.starts_with("/flagd.evaluation.") {
            flagd::caller(&self.shared, authorization)?;
        }
        Ok(())
    }
}

impl<S> tower::Layer<S> for Gate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.clone(),
        }
    }
}

/// A service behind the [`Gate`].
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.gate.admit(request.uri().path(), request.headers()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            // Dropping the request drops its unread body: the stream is done with.
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

/// Connections beyond `limit` are closed as soon as they are accepted, so that the memory
/// held by open connections has a bound; each accepted one holds a permit until it closes.
///
/// A connection that sends nothing within `silence` of being accepted is closed: a client
/// opens a connection to speak on it, and one that does not would otherwise hold a permit,
/// and so keep real clients out, for as long as it likes.
pub fn limit_connections<S>(
    incoming: S,
    limit: usize,
    silence: std::time::Duration,
) -> impl futures_util::Stream<Item = std::io::Result<Limited>>
where
    S: futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>>,
{
    use futures_util::StreamExt as _;
    let permits = Arc::new(Semaphore::new(limit));
    incoming.filter_map(move |accepted| {
        let admitted = accepted.map(|stream| {
            Arc::clone(&permits)
                .try_acquire_owned()
                .ok()
                .map(|permit| Limited {
                    _closing: Closing,
                    stream,
                    _permit: permit,
                    first_byte: Some(Box::pin(tokio::time::sleep(silence))),
                })
        });
        let admitted = match admitted {
            Ok(Some(limited)) => Some(Ok(limited)),
            Ok(None) => {
                tracing::debug!(
                    limit,
                    "refused a gRPC connection: RIPCORD_GRPC_MAX_CONNECTIONS are open"
                );
                None
            }
            Err(error) => Some(Err(error)),
        };
        ready(admitted)
    })
}

/// An accepted connection that counts against the connection limit while it is open.
pub struct Limited {
    _closing: Closing,
    stream: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the client's first byte: when it must have come by.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Tells [`crate::memory`] when the connection closes, so that what it held is given back
/// to the system after a burst of closes.
struct Closing;

impl Drop for Closing {
    fn drop(&mut self) {
        crate::memory::connection_closed();
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(first_byte) = &mut this.first_byte {
            match read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.first_byte = None,
                Poll::Pending if first_byte.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent nothing within RIPCORD_BODY_TIMEOUT of connecting",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
