//! What an open gRPC server stream keeps for encoding its messages, counted by the allocator:
//! tonic encodes a call's answers into a buffer of the call's own and keeps it, with the
//! pages its first messages wrote, for as long as the stream is open. Ripcord's codec
//! (`ripcord_proto::codec`) starts that buffer at 512 bytes rather than tonic's 8 KiB, which
//! is most of what an idle flagd `EventStream` cost beyond a `Watch`. A binary of its own,
//! because the counting allocator is global.

use std::future::poll_fn;
use std::task::Poll;

use futures_util::StreamExt as _;
use http_body::Body as _;
use ripcord_proto::codec::Codec;
use ripcord_proto::pb::flagd::evaluation::v1 as flagd_v1;
use tonic::codec::{Codec as _, EncodeBody, SingleMessageCompressionOverride};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Streams held open at once: the count is exact, so few are needed.
const STREAMS: usize = 64;

/// What one open stream that has sent its first message may keep, body and buffer: 832
/// bytes with Ripcord's codec, 8,512 with tonic's default buffer.
const MAX_BYTES_PER_STREAM: usize = 2 * 1024;

#[test]
fn an_open_server_stream_keeps_no_more_than_a_small_encoding_buffer() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let before = dhat::HeapStats::get().curr_bytes;
        let mut open = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            // A stream that sends `provider_ready` and then has nothing more to say, as
            // flagd's `EventStream` does until the flags change.
            let ready = flagd_v1::EventStreamResponse {
                r#type: "provider_ready".to_string(),
                data: None,
            };
            let messages =
                futures_util::stream::iter([Ok(ready)]).chain(futures_util::stream::pending());
            let mut codec =
                Codec::<flagd_v1::EventStreamResponse, flagd_v1::EventStreamRequest>::default();
            let mut body = Box::pin(EncodeBody::new_server(
                codec.encoder(),
                messages,
                None,
                SingleMessageCompressionOverride::default(),
                None,
            ));
            let first = poll_fn(|cx| body.as_mut().poll_frame(cx))
                .await
                .expect("a first frame")
                .expect("its bytes");
            assert!(first.is_data(), "the first frame carries the message");
            drop(first);
            let waiting =
                poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx).is_pending())).await;
            assert!(waiting, "the stream waits for its next message");
            open.push(body);
        }
        let per_stream = dhat::HeapStats::get().curr_bytes.saturating_sub(before) / STREAMS;
        eprintln!("an open server stream keeps {per_stream} bytes");
        assert!(
            per_stream < MAX_BYTES_PER_STREAM,
            "an open server stream keeps {per_stream} bytes"
        );
        drop(open);
    });
}
