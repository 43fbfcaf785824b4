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
/// in-memory pipe: 15.7 KiB here; 71.6 KiB on the published `h2`, whose buffers alone were
/// 2 × 28 KiB; 23.5 KiB with only the 4 KiB block for header strings kept again, and 23.7
/// KiB when a read buffer replaced while a frame still used the old one was kept.
const MAX_BYTES_PER_CONNECTION: usize = 20 * 1024;

/// The same after messages of 40 KiB each way, over a pipe of 4 KiB whose two directions
/// keep 8 KiB between them: 22.6 KiB here, 30.5 KiB with the header block kept again.
const MAX_BYTES_PER_CONNECTION_AFTER_LARGE_FRAMES: usize = 28 * 1024;

/// One end of the call: reads the request, answers with headers and a first message of
/// `message` bytes, and keeps the stream open, as the server does for a `Watch`.
async fn serve(io: DuplexStream, message: usize) {
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
                .send_data(Bytes::from(vec![7u8; message]), false)
                .expect("a first message");
            std::future::pending::<()>().await;
            drop(stream);
        });
    }
}

/// The other end: one call with the headers a gRPC client sends and a request of `message`
/// bytes, the first message of the answer read, the stream and the connection held open.
async fn call(
    io: DuplexStream,
    message: usize,
) -> (h2::client::SendRequest<Bytes>, h2::RecvStream) {
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
    send.send_data(Bytes::from(vec![8u8; message]), true)
        .expect("the request message");
    let mut body = response.await.expect("response headers").into_body();
    let mut received = 0;
    while received < message {
        let chunk = body
            .data()
            .await
            .expect("a first message")
            .expect("its bytes");
        received += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
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

/// Opens `CONNECTIONS` connections in this process whose call carries `message` bytes each
/// way over a pipe that holds at most `pipe` bytes, lets them go idle, and returns what each
/// keeps allocated, both ends and the pipe together.
fn bytes_per_idle_connection(message: usize, pipe: usize) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // One connection first, so that what is made once (the runtime's timer, the thread's
        // spare buffers) is not counted per connection.
        let (client_io, server_io) = tokio::io::duplex(pipe);
        tokio::spawn(serve(server_io, message));
        let warm = call(client_io, message).await;
        settle().await;

        let before = dhat::HeapStats::get().curr_bytes;
        let mut open = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (client_io, server_io) = tokio::io::duplex(pipe);
            tokio::spawn(serve(server_io, message));
            open.push(call(client_io, message).await);
        }
        settle().await;
        let after = dhat::HeapStats::get().curr_bytes;
        drop((warm, open));
        after.saturating_sub(before) / CONNECTIONS
    })
}

#[test]
fn an_idle_http2_connection_gives_its_buffers_back() {
    let _profiler = dhat::Profiler::builder().testing().build();

    let small = bytes_per_idle_connection(300, 64 * 1024);
    eprintln!("an idle connection after small messages, both ends: {small} bytes");
    assert!(
        small < MAX_BYTES_PER_CONNECTION,
        "an idle connection keeps {small} bytes after small messages, both ends"
    );

    // Frames larger than the 8 KiB read buffer make it grow, or be replaced while the frame
    // read into it is still alive: the connection must let go of those too.
    let large = bytes_per_idle_connection(40 * 1024, 4 * 1024);
    eprintln!("an idle connection after 40 KiB messages, both ends: {large} bytes");
    assert!(
        large < MAX_BYTES_PER_CONNECTION_AFTER_LARGE_FRAMES,
        "an idle connection keeps {large} bytes after 40 KiB messages, both ends"
    );
}
