//! The streams that follow an environment (`Watch`, flagd's `EventStream`): the events of
//! `crate::delivery`'s follower, told by a [`Messages`] how to say each.
//!
//! A stream ends when the client goes, the environment is deleted, the key is revoked or
//! the server stops; the last three with a status that says which.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut as _, Bytes};
use futures_util::StreamExt as _;
use http_body::Frame;
use tonic::codegen::http;
use tonic::Status;

use super::auth;
use super::status::Refusal;
use crate::delivery::{Event, Follow, Follower, Opening};
use crate::environment::Environment;
use crate::feed::Delta;

/// What one kind of stream sends.
pub trait Messages: Send + 'static {
    type Message: Send + 'static;

    /// What a client gets on connecting to `environment`.
    fn opening(&mut self, environment: &Environment, opening: &Opening) -> Vec<Self::Message>;

    /// The environment moved from `previous` (the last revision sent) to `current`; `delta`
    /// applies to `previous` when there is one. `None`: nothing this client should hear of.
    fn changed(
        &mut self,
        previous: &Environment,
        current: &Environment,
        delta: Option<&Delta>,
    ) -> Option<Self::Message>;

    fn heartbeat(&mut self, revision: u64) -> Self::Message;
}

/// A stream's messages, made as the client reads them. Nothing runs for an idle stream
/// but this state, polled by the connection that carries it: no task, no channel, no
/// queue of messages of its own.
pub type Stream<M> = Pin<Box<dyn futures_util::Stream<Item = Result<M, Status>> + Send>>;

/// Starts following: the opening, then the follower's events.
pub fn start<T: Messages>(follow: Follow, mut messages: T) -> Result<Stream<T::Message>, Refusal> {
    let name = follow.environment.clone();
    let start = follow.start().ok_or_else(|| gone(&name))?;
    let opening = messages.opening(&start.environment, &start.opening);
    let following = Following {
        follower: start.follower,
        messages,
        name,
    };
    Ok(Box::pin(
        futures_util::stream::iter(opening.into_iter().map(Ok))
            .chain(futures_util::stream::unfold(following, Following::next)),
    ))
}

/// A stream after its opening.
struct Following<T> {
    follower: Follower,
    messages: T,
    name: String,
}

impl<T: Messages> Following<T> {
    /// The next message, and the state to make the one after it; `None` ends the stream,
    /// which the follower does after an error.
    async fn next(mut self) -> Option<(Result<T::Message, Status>, Self)> {
        loop {
            let message = match self.follower.next().await? {
                Event::Changed {
                    previous,
                    current,
                    delta,
                } => match self.messages.changed(&previous, &current, delta.as_deref()) {
                    Some(message) => Ok(message),
                    None => continue,
                },
                Event::Heartbeat(revision) => Ok(self.messages.heartbeat(revision)),
                Event::Deleted => Err(gone(&self.name)),
                Event::Revoked => Err(auth::unknown_key()),
                Event::Stopping => Err(Refusal::Unavailable(
                    "the server is stopping: connect again".to_string(),
                )),
            };
            return Some((message.map_err(Status::from), self));
        }
    }
}

pub fn gone(environment: &str) -> Refusal {
    Refusal::NotFound(format!("environment `{environment}` does not exist"))
}

/// One message as gRPC sends it: uncompressed, length-prefixed.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let length = message.encoded_len();
    let mut out = Vec::with_capacity(5 + length);
    out.put_u8(0);
    // A message over 4 GiB cannot be framed; an environment is bounded far below that by
    // its flag limits.
    out.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    message.encode_raw(&mut out);
    Bytes::from(out)
}

/// The one request message of a server-streaming call, which must arrive within `patience`
/// (`RIPCORD_BODY_TIMEOUT`), as every call's must. No compression is accepted.
pub async fn request<M>(
    body: tonic::body::Body,
    max_bytes: usize,
    patience: Duration,
) -> Result<M, Status>
where
    M: prost::Message + Default + Send + 'static,
{
    let mut messages =
        tonic::codec::Streaming::new_request(Decoder::<M>::default(), body, None, Some(max_bytes));
    match tokio::time::timeout(patience, messages.message()).await {
        Ok(Ok(Some(message))) => Ok(message),
        Ok(Ok(None)) => Err(Status::invalid_argument("the request has no message")),
        Ok(Err(status)) => Err(status),
        // As tonic ends any other call that outlives the timeout.
        Err(_) => Err(Status::cancelled(
            "the request message did not arrive within RIPCORD_BODY_TIMEOUT",
        )),
    }
}

struct Decoder<M>(std::marker::PhantomData<M>);

impl<M> Default for Decoder<M> {
    fn default() -> Self {
        Decoder(std::marker::PhantomData)
    }
}

impl<M: prost::Message + Default> tonic::codec::Decoder for Decoder<M> {
    type Item = M;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<M>, Status> {
        M::decode(src)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("malformed request: {error}")))
    }
}

/// The answer to a streaming call whose messages come framed already: each is handed to
/// HTTP/2 as it is, so that a frame shared by every stream stays one allocation, and nothing
/// per stream keeps a buffer the size of the largest message sent.
pub fn response(stream: Stream<Bytes>) -> http::Response<tonic::body::Body> {
    let body = tonic::body::Body::new(Framed {
        stream,
        done: false,
    });
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream of framed messages as an HTTP body, ending with the status as trailers.
struct Framed {
    stream: Stream<Bytes>,
    done: bool,
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match self.stream.poll_next_unpin(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(message))) => return Poll::Ready(Some(Ok(Frame::data(message)))),
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        // Only a status whose message cannot be a header fails here; say so rather than
        // end the stream without one.
        if status.add_header(&mut trailers).is_err() {
            trailers.clear();
            let _ = Status::internal("the stream ended").add_header(&mut trailers);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use ripcord_proto::pb::ripcord::v1 as pb;
    use tonic::Code;

    use http_body::Body as _;

    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    /// A request body of one chunk.
    struct Chunk(Option<Bytes>);

    impl http_body::Body for Chunk {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.take().map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    async fn read(bytes: &[u8]) -> Result<pb::WatchRequest, Status> {
        let body = tonic::body::Body::new(Chunk(Some(Bytes::copy_from_slice(bytes))));
        request(body, 64, Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn the_request_message_is_read_and_a_malformed_one_is_an_invalid_argument() {
        let framed = frame(&pb::WatchRequest { known_revision: 7 });
        assert_eq!(
            read(&framed)
                .await
                .map(|request| request.known_revision)
                .ok(),
            Some(7)
        );
        let code =
            |answer: Result<pb::WatchRequest, Status>| answer.map_err(|status| status.code());
        // A field whose length runs past the message.
        assert_eq!(
            code(read(&[0, 0, 0, 0, 2, 0x0a, 0x7f]).await),
            Err(Code::InvalidArgument)
        );
        assert_eq!(code(read(&[]).await), Err(Code::InvalidArgument));
        // Longer than the limit: refused before it is read.
        assert!(read(&[0, 0, 1, 0, 0]).await.is_err());
        // Compressed without saying how.
        assert!(read(&[1, 0, 0, 0, 0]).await.is_err());
    }

    /// Revisions, as a stream's messages.
    struct Revisions;

    impl Messages for Revisions {
        type Message = u64;

        fn opening(&mut self, environment: &Environment, _: &Opening) -> Vec<u64> {
            vec![environment.revision]
        }

        fn changed(
            &mut self,
            _: &Environment,
            current: &Environment,
            _: Option<&Delta>,
        ) -> Option<u64> {
            Some(current.revision)
        }

        fn heartbeat(&mut self, revision: u64) -> u64 {
            revision
        }
    }

    /// Thousands of clients each hold a stream open for hours, nearly always idle: a task
    /// and a channel of its own were more than half of what a stream cost on a shared
    /// connection. The stream is only state that its connection polls, and it still
    /// follows every change.
    #[tokio::test]
    async fn an_idle_stream_holds_no_task_and_still_follows_changes() {
        let directory = tempfile::tempdir().expect("a directory");
        let store = crate::store::sled::SledStore::open(directory.path()).expect("a store");
        let service = crate::service::Service::open(
            std::sync::Arc::new(store),
            ripcord_engine::Limits::default(),
            None,
        )
        .await
        .expect("a service");
        let person = crate::principal::Principal {
            name: "operator".to_string(),
            scope: crate::store::Scope::Admin,
            environment: None,
            event_channel: None,
        };
        service
            .create_environment("prod", &person)
            .await
            .expect("created");
        let (_trigger, stop) = crate::shutdown::channel();
        let follow = Follow {
            service: std::sync::Arc::clone(&service),
            credential: crate::delivery::Credential::Anonymous,
            environment: "prod".to_string(),
            known_revision: None,
            heartbeat: Duration::from_secs(3600),
            stop,
            instance: None,
        };
        let tasks = tokio::runtime::Handle::current().metrics();
        let before = tasks.num_alive_tasks();
        let mut stream = start(follow, Revisions).expect("started");
        let opened = stream
            .next()
            .await
            .expect("the opening")
            .expect("a revision");
        assert_eq!(tasks.num_alive_tasks(), before, "a task per stream");

        let document = ripcord_engine::Document::from_yaml(
            "flags:\n  banner: {type: boolean, variants: {on: true}, default_variant: \"on\"}\n",
        )
        .expect("a valid document");
        let change = crate::service::Change {
            environment: "prod",
            actor: &person,
            operation: "import",
            reason: None,
        };
        let revision = service
            .change(change, |current| {
                *current = document.clone();
                Ok(())
            })
            .await
            .expect("changed");
        assert!(revision > opened);
        let changed = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("in time")
            .expect("a message")
            .expect("a revision");
        assert_eq!(changed, revision);
    }

    /// The frames go out as they were given, the very allocation shared by other streams,
    /// and the stream ends with its status as trailers.
    #[tokio::test]
    async fn framed_messages_go_out_as_given_then_the_status() {
        let shared = frame(&pb::WatchRequest { known_revision: 7 });
        let (sender, receiver) = mpsc::channel(4);
        sender.send(Ok(shared.clone())).await.expect("sent");
        sender
            .send(Err(Status::not_found("environment `prod` does not exist")))
            .await
            .expect("sent");
        let response = response(Box::pin(ReceiverStream::new(receiver)));
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let mut body = response.into_body();
        let data = poll_fn(|context| Pin::new(&mut body).poll_frame(context))
            .await
            .expect("a frame")
            .expect("data");
        let data = data.into_data().expect("data");
        assert_eq!(data.as_ptr(), shared.as_ptr());
        let trailers = poll_fn(|context| Pin::new(&mut body).poll_frame(context))
            .await
            .expect("a frame")
            .expect("trailers");
        let trailers = trailers.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "5");
        assert!(poll_fn(|context| Pin::new(&mut body).poll_frame(context))
            .await
            .is_none());
    }
}
