//! Streams at scale, as far as a test can see it: streams at one revision receive the same
//! bytes, an idle stream costs the server no more memory with a large ruleset than a
//! connection's own buffers, and an idle HTTP/2 connection holds no buffers.

use std::time::Duration;

use reqwest::Method;
use ripcord_proto::pb::flagd::evaluation::v1 as flagd_v1;
use ripcord_proto::pb::ripcord::v1::{ripcord_client::RipcordClient, WatchRequest};
use serde_json::{json, Value};

use crate::harness::{Body, Server};

/// Streams opened for a memory measurement: enough that a ruleset-sized buffer per stream
/// (about 75 KiB here) stands far above the allocator's noise.
const STREAMS: usize = 150;
/// What an idle stream may cost. An event stream is about 15 KiB in a release build; one
/// that keeps a buffer the size of its ruleset costs more than that buffer.
const MAX_KIB_PER_STREAM: f64 = 60.0;
/// `Watch` streams (and flagd `EventStream`s), each on a connection of its own, opened for
/// their measurement: more than the event streams, as the bound below is closer to what
/// they cost.
const WATCHES: usize = 400;
/// What an idle `Watch` on a connection of its own may cost: 7–11 KiB in this test's
/// debug build, 22–26 KiB when HTTP/2 kept its read and write buffers and a block of
/// header bytes for every connection, idle or not (vendor/README.md). A flagd
/// `EventStream` costs 7–8 KiB here, 12–15 KiB with tonic's 8 KiB encoding buffer, which
/// tests/tests/grpc_stream_idle.rs counts exactly.
const MAX_KIB_PER_WATCH: f64 = 16.0;

/// A document of 200 flags whose ruleset is about 75 KB: large, and below the 128 KiB up
/// to which actix keeps a connection's write buffer at its largest size.
fn large_document() -> Value {
    let flags: serde_json::Map<String, Value> = (0..200)
        .map(|index| {
            let flag = json!({
                "description": format!("flag {index}: {}", "a long description ".repeat(12)),
                "type": "boolean",
                "variants": {"on": true, "off": false},
                "default_variant": "off",
                "rules": [{"when": [{"attribute": "plan", "op": "eq", "values": ["pro"]}], "serve": {"variant": "on"}}],
            });
            (format!("flag-{index:03}"), flag)
        })
        .collect();
    json!({ "flags": flags })
}

async fn server_with_large_ruleset() -> (Server, String) {
    // flagd's service answers for `default`, so that its event stream can be measured too.
    let server = Server::builder()
        .env("RIPCORD_FLAGD_ENVIRONMENT", "default")
        .start()
        .await;
    server
        .call(
            Method::PUT,
            "/api/v1/environments/default/document",
            Some(&server.admin_key.clone()),
            Body::Json(large_document()),
        )
        .await
        .expect_status(200);
    let key = server.create_key("sdk", "server", Some("default")).await;
    (server, key.token)
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

/// An open `/api/v1/sdk/stream` and what it has sent so far.
struct Events {
    response: reqwest::Response,
    received: Vec<u8>,
}

impl Events {
    async fn open(server: &Server, client: &reqwest::Client, key: &str) -> Events {
        let response = client
            .get(server.url("/api/v1/sdk/stream"))
            .bearer_auth(key)
            .send()
            .await
            .expect("the stream opens");
        assert_eq!(response.status(), 200);
        Events {
            response,
            received: Vec::new(),
        }
    }

    /// The next event, whole, with its `event`, `id` and `data` lines.
    async fn next(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.received.windows(2).position(|pair| pair == b"\n\n") {
                let event: Vec<u8> = self.received.drain(..end + 2).collect();
                // The reconnection delay and heartbeats are not events.
                if event.starts_with(b"event: ") {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .expect("the stream goes on");
            self.received.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_at_one_revision_receive_the_same_bytes() {
    let (server, key) = server_with_large_ruleset().await;
    let mut first = Events::open(&server, server.client(), &key).await;
    let mut second = Events::open(&server, server.client(), &key).await;
    let ruleset = first.next().await;
    assert!(ruleset.starts_with(b"event: ruleset\n"));
    assert_eq!(second.next().await, ruleset);
    server
        .admin_put(
            "/api/v1/environments/default/flags/flag-007/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let delta = first.next().await;
    assert!(delta.starts_with(b"event: delta\n"));
    assert_eq!(second.next().await, delta);
}

/// Each stream on a connection of its own, as separate SDK instances are.
fn own_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// What each of `count` more idle streams costs the server, in KiB of resident memory. One
/// stream is opened first, so that what is made once (the ruleset's encoding, the runtime's
/// first allocations) is not counted per stream. `open` returns a stream that has read its
/// opening; every stream is held until the memory has been read.
async fn kib_per_idle_stream<S, F>(server: &Server, count: usize, open: impl Fn() -> F) -> f64
where
    F: std::future::Future<Output = S>,
{
    let _warm = open().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(server.pid());
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(open().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rss_kib(server.pid()) - before) / count as f64
}

/// A gRPC call's request with the key, on a connection of its own.
async fn own_grpc_connection<T>(
    server: &Server,
    key: &str,
    message: T,
) -> (tonic::transport::Channel, tonic::Request<T>) {
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url().to_string())
        .expect("the gRPC URL")
        .connect()
        .await
        .expect("a connection");
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("a header"),
    );
    (channel, request)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_event_stream_keeps_no_ruleset_sized_buffer() {
    let (server, key) = server_with_large_ruleset().await;
    let client = own_connection_client();
    let per_stream = kib_per_idle_stream(&server, STREAMS, || async {
        let mut events = Events::open(&server, &client, &key).await;
        assert!(events.next().await.starts_with(b"event: ruleset\n"));
        events
    })
    .await;
    assert!(
        per_stream < MAX_KIB_PER_STREAM,
        "an idle event stream costs {per_stream:.1} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_watch_keeps_no_ruleset_sized_buffer_and_no_http2_buffers() {
    let (server, key) = server_with_large_ruleset().await;
    let per_stream = kib_per_idle_stream(&server, WATCHES, || async {
        let watch = WatchRequest { known_revision: 0 };
        let (channel, request) = own_grpc_connection(&server, &key, watch).await;
        let mut stream = RipcordClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .watch(request)
            .await
            .expect("Watch opens")
            .into_inner();
        let ruleset = stream
            .message()
            .await
            .expect("a message")
            .expect("the ruleset");
        assert!(ruleset.revision > 0);
        stream
    })
    .await;
    assert!(
        per_stream < MAX_KIB_PER_WATCH,
        "an idle Watch on a connection of its own costs {per_stream:.1} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_flagd_event_stream_keeps_no_http2_buffers() {
    let (server, key) = server_with_large_ruleset().await;
    let per_stream = kib_per_idle_stream(&server, WATCHES, || async {
        let follow = flagd_v1::EventStreamRequest {};
        let (channel, request) = own_grpc_connection(&server, &key, follow).await;
        let mut events = flagd_v1::service_client::ServiceClient::new(channel)
            .event_stream(request)
            .await
            .expect("EventStream opens")
            .into_inner();
        let ready = events
            .message()
            .await
            .expect("an event")
            .expect("provider_ready");
        assert_eq!(ready.r#type, "provider_ready");
        events
    })
    .await;
    assert!(
        per_stream < MAX_KIB_PER_WATCH,
        "an idle flagd EventStream on a connection of its own costs {per_stream:.1} KiB"
    );
}
