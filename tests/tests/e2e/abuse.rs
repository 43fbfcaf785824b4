//! Clients that try to hold the server's memory or connections: gRPC streams that send
//! headers and never a body, with and without a key, and HTTP bodies that never finish.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::Server;

/// The body timeout the servers here run with: short, so that the tests are, and long
/// enough that an answer that comes before it cannot be the timeout's.
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

async fn server() -> Server {
    Server::builder()
        .env("RIPCORD_BODY_TIMEOUT", "2s")
        .env("RIPCORD_GRPC_MAX_STREAMS_PER_CONNECTION", 8)
        .start()
        .await
}

/// An HTTP/2 connection to the gRPC port, driven by hand so that a test can send headers
/// without a body, as no gRPC client library would.
async fn h2_connection(server: &Server) -> h2::client::SendRequest<bytes::Bytes> {
    let address = server.grpc_url().trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connecting to the gRPC port");
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // One call answered means the server's SETTINGS have arrived, with its stream limit: a
    // client that ignores the limit is refused with REFUSED_STREAM, but the tests here
    // follow it, as real clients do.
    let mut client = client.ready().await.expect("a stream slot");
    let (response, _body) = client
        .send_request(headers_only(server, None), false)
        .expect("sending headers");
    tokio::time::timeout(BODY_TIMEOUT, grpc_status(response))
        .await
        .expect("a call without a key is refused at once");
    client
}

/// The headers of a `ripcord.v1` call, with `key` if any. The body never follows.
fn headers_only(server: &Server, key: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{}/ripcord.v1.Ripcord/Evaluate", server.grpc_url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(()).expect("a request")
}

/// The call's `grpc-status`, from the headers of a trailers-only answer or the trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> String {
    let response = response.await.expect("an answer to the stream");
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().expect("ASCII").to_string();
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("a grpc-status in the trailers");
    trailers["grpc-status"].to_str().expect("ASCII").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_streams_without_a_key_are_refused_before_their_body() {
    let server = server().await;
    let mut client = h2_connection(&server).await;
    let started = Instant::now();
    // Far more than the 8 streams a connection may have open: each refusal must end its
    // stream, or the rest would wait for a slot.
    let mut pending = Vec::new();
    for _ in 0..64 {
        client = client.ready().await.expect("a stream slot");
        let (response, body) = client
            .send_request(headers_only(&server, None), false)
            .expect("sending headers");
        pending.push((response, body));
    }
    for (response, _body) in pending {
        let status = tokio::time::timeout(BODY_TIMEOUT, grpc_status(response))
            .await
            .expect("a call without a key is refused without waiting for its body");
        assert_eq!(status, "16", "UNAUTHENTICATED");
    }
    assert!(
        started.elapsed() < BODY_TIMEOUT,
        "64 refusals took {:?}: they waited for the body timeout",
        started.elapsed()
    );
    assert_eq!(
        client.current_max_send_streams(),
        8,
        "the server advertises RIPCORD_GRPC_MAX_STREAMS_PER_CONNECTION"
    );

    // A revoked or invented key is refused the same way.
    client = client.ready().await.expect("a stream slot");
    let (response, _body) = client
        .send_request(headers_only(&server, Some("not-a-key")), false)
        .expect("sending headers");
    let status = tokio::time::timeout(BODY_TIMEOUT, grpc_status(response))
        .await
        .expect("an unknown key is refused without waiting for the body");
    assert_eq!(status, "16", "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_with_a_key_but_no_body_end_at_the_body_timeout() {
    let server = server().await;
    let key = server.create_key("app", "client", Some("default")).await;
    let mut client = h2_connection(&server).await;
    let started = Instant::now();
    let mut pending = Vec::new();
    // One more than the connection may have open: that one waits for a slot.
    for _ in 0..9 {
        client = client.ready().await.expect("a stream slot");
        let (response, body) = client
            .send_request(headers_only(&server, Some(&key.token)), false)
            .expect("sending headers");
        pending.push((response, body));
    }
    let mut answered = Vec::new();
    for (response, _body) in pending {
        let status = tokio::time::timeout(4 * BODY_TIMEOUT, grpc_status(response))
            .await
            .expect("an incomplete call ends at the body timeout");
        assert_ne!(status, "0", "an incomplete call does not succeed");
        answered.push(started.elapsed());
    }
    let (last, first_eight) = answered.split_last().expect("nine answers");
    for elapsed in first_eight {
        assert!(
            *elapsed >= BODY_TIMEOUT - Duration::from_millis(100) && *elapsed < 2 * BODY_TIMEOUT,
            "the open calls end at the body timeout, not at {elapsed:?}"
        );
    }
    assert!(
        *last >= 2 * BODY_TIMEOUT - Duration::from_millis(200),
        "the ninth call could start only when a slot was free, yet it ended after {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_body_that_stalls_is_answered_408_at_the_body_timeout() {
    let server = server().await;
    let key = server.create_key("app", "client", Some("default")).await;
    let mut tcp = tokio::net::TcpStream::connect(server.address())
        .await
        .expect("connecting to the HTTP port");
    let head = format!(
        "POST /ofrep/v1/evaluate/flags/anything HTTP/1.1\r\nhost: ripcord\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"context\": {{",
        key.token
    );
    tcp.write_all(head.as_bytes()).await.expect("sending");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(4 * BODY_TIMEOUT, tcp.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    assert!(
        read.is_ok(),
        "the stalled request was still open after {elapsed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a stalled body is answered 408, got:\n{answer}"
    );
    assert!(
        answer.contains("RIPCORD_BODY_TIMEOUT"),
        "the answer names the setting:\n{answer}"
    );
    assert!(
        elapsed >= BODY_TIMEOUT - Duration::from_millis(100) && elapsed < 2 * BODY_TIMEOUT,
        "answered after {elapsed:?}, not at the body timeout"
    );
}

/// Connections that never say anything are closed at the body timeout, so that a client
/// without a key cannot keep real ones out by holding every connection the limit allows.
#[tokio::test]
async fn silent_grpc_connections_are_closed_and_free_their_place() {
    let server = Server::builder()
        .env("RIPCORD_BODY_TIMEOUT", "2s")
        .env("RIPCORD_GRPC_MAX_CONNECTIONS", 2)
        .start()
        .await;
    let address = server.grpc_url().trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connecting to the gRPC port"),
        );
    }
    let started = Instant::now();
    for socket in &mut silent {
        // The server speaks first (its HTTP/2 settings), then ends the connection, with a
        // close or a reset: either ends the read, and a connection left open fails here.
        let mut received = Vec::new();
        let _ended = tokio::time::timeout(BODY_TIMEOUT * 3, socket.read_to_end(&mut received))
            .await
            .expect("a silent connection is closed within the body timeout");
    }
    assert!(
        started.elapsed() >= BODY_TIMEOUT / 2,
        "{:?}",
        started.elapsed()
    );
    // Their places are free again: a client that speaks gets an answer.
    let mut client = h2_connection(&server).await;
    client = client.ready().await.expect("a stream slot");
    let (response, _body) = client
        .send_request(headers_only(&server, None), true)
        .expect("sending a call");
    let status = tokio::time::timeout(BODY_TIMEOUT, grpc_status(response))
        .await
        .expect("an answer");
    assert_eq!(status, "16", "a call without a key is UNAUTHENTICATED");
}
