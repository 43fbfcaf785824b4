//! What an idle HTTP/2 connection keeps allocated, counted by the allocator rather than read
//! from the process's resident memory: each end of a connection that has carried one call and
//! keeps its stream open, as a `Watch` does, holds neither its read nor its write buffer, nor
//! a block of decoded header bytes (vendor/README.md). A binary of its own, because the
//! counting allocator is global.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::DuplexStream;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Connections opened, both ends in this process: enough that the spare buffers a thread
/// keeps (at most eight of each kind) are small beside what every connection kept before.
const CONNECTIONS: usize = 64;

/// What both ends of one idle connection may keep, with its open stream and this test's
/// in-memory pipe: 23.3 KiB here, 71 KiB on the published `h2`, whose buffers alone were
/// 2 × 28 KiB, and 31.2 KiB with only the 4 KiB block for header strings kept again.
const MAX_BYTES_PER_CONNECTION: usize = 28 * 1024;

/// One end of the call: reads the request, answers with headers and a first message, and
/// keeps the stream open, as the server does for a `Watch`.
async fn serve(io: DuplexStream) {
    let mut connection = h2::server::handshake(io).await.expect("a server handshake");
    while let Some(call) = connection.accept().await {
        let (request, mut respond) = call.expect("a call");
        tokio::spawn(async move {
            let mut body = request.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("request bytes");
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let mut stream = respond
                .send_response(http::Response::new(()), false)
                .expect("response headers");
            stream
                .send_data(Bytes::from(vec![7u8; 300]), false)
                .expect("a first message");
            std::future::pending::<()>().await;
            drop(stream);
        });
    }
}

/// The other end: one call with the headers a gRPC client sends, its first message read,
/// the stream and the connection held open.
async fn call(io: DuplexStream) -> (h2::client::SendRequest<Bytes>, h2::RecvStream) {
    let (client, connection) = h2::client::handshake(io).await.expect("a client handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("a connection ready for a call");
    let request = http::Request::builder()
        .method("POST")
        .uri("http://ripcord.test/ripcord.v1.Ripcord/Watch")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(
            "authorization",
            "Bearer ripcord-server-0123456789abcdef0123456789abcdef",
        )
        .header("user-agent", "ripcord-test/1.0")
        .body(())
        .expect("a request");
    let (response, mut send) = client.send_request(request, false).expect("a call");
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 0]), true)
        .expect("the request message");
    let mut body = response.await.expect("response headers").into_body();
    let first = body
        .data()
        .await
        .expect("a first message")
        .expect("its bytes");
    let _ = body.flow_control().release_capacity(first.len());
    (client, body)
}

/// Lets every task run until nothing is left to do: all of it is in this process.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn an_idle_http2_connection_gives_its_buffers_back() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // One connection first, so that what is made once (the runtime's timer, the thread's
        // spare buffers) is not counted per connection.
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(server_io));
        let warm = call(client_io).await;
        settle().await;

        let before = dhat::HeapStats::get().curr_bytes;
        let mut open = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve(server_io));
            open.push(call(client_io).await);
        }
        settle().await;
        let after = dhat::HeapStats::get().curr_bytes;
        let per_connection = after.saturating_sub(before) / CONNECTIONS;
        eprintln!("an idle connection, both ends: {per_connection} bytes");
        assert!(
            per_connection < MAX_BYTES_PER_CONNECTION,
            "an idle connection keeps {per_connection} bytes, both ends"
        );
        drop((warm, open));
    });
}
