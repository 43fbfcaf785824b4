//! Large and hostile inputs: an import that takes seconds to read does not hold up the
//! evaluations of its worker; a document nested past the limit is refused at once; the
//! judge's concurrency is bounded; malformed protobuf is the caller's error.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Body, Server};

const ONE_FLAG: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {"on": true, "off": false}
    default_variant: "on"
"#;

/// A valid document of `flags` flags with rules, as YAML: a few megabytes that take the
/// server a good fraction of a second to read, validate and compile.
fn large_document(flags: usize) -> String {
    let mut yaml = String::from("flags:\n  checkout:\n    type: boolean\n    variants: {\"on\": true, \"off\": false}\n    default_variant: \"on\"\n");
    for index in 0..flags {
        yaml.push_str(&format!(
            "  flag-{index:06}:\n    description: \"flag number {index}, with a description long enough to be realistic\"\n    type: string\n    variants: {{a: \"alpha\", b: \"beta\", c: \"gamma\"}}\n    default_variant: a\n    rules:\n      - when: [{{attribute: country, op: in, values: [de, fr, it, es, nl, be]}}]\n        serve: {{variant: b}}\n      - when: [{{attribute: plan, op: eq, values: [pro]}}, {{attribute: version, op: semver_gte, values: [\"2.1.0\"]}}]\n        serve: {{variant: c}}\n    rollout: {{percentage: 25, split: [{{variant: b, weight: 1}}, {{variant: c, weight: 3}}]}}\n"
        ));
    }
    yaml
}

/// Evaluates `checkout` one request after another until `done`, and returns the slowest.
async fn slowest_evaluation(server: &Server, key: &str, done: &tokio::sync::Notify) -> Duration {
    let mut slowest = Duration::ZERO;
    let finished = done.notified();
    tokio::pin!(finished);
    loop {
        let began = Instant::now();
        tokio::select! {
            reply = server.evaluate(key, "checkout", json!({"targetingKey": "u"})) => {
                reply.expect_status(200);
                slowest = slowest.max(began.elapsed());
            }
            () = &mut finished => return slowest,
        }
    }
}

/// With one HTTP worker, everything an import does besides receiving its body happens
/// elsewhere: reading the YAML, validating, diffing, compiling. An evaluation sent while
/// a large import is in progress is answered in a small fraction of the import's time
/// (before, it waited for the import's whole reading and diffing).
#[tokio::test]
async fn a_large_import_does_not_hold_up_the_evaluations_of_its_worker() {
    let server = Server::start_with(&[("RIPCORD_WORKERS", "1")], ONE_FLAG).await;
    let key = server.create_key("app", "server", Some("default")).await;
    let document = large_document(3_000);
    // Warm the connection pool, so that the measurement holds no connection set-up.
    server
        .evaluate(&key.token, "checkout", json!({"targetingKey": "u"}))
        .await
        .expect_status(200);

    let done = tokio::sync::Notify::new();
    let import = async {
        let began = Instant::now();
        let reply = server.import_yaml("default", &document).await;
        let took = began.elapsed();
        done.notify_one();
        (reply, took)
    };
    let ((reply, import_took), slowest) =
        tokio::join!(import, slowest_evaluation(&server, &key.token, &done));
    reply.expect_status(200);
    assert!(
        slowest < import_took / 4,
        "the slowest evaluation took {slowest:?} during an import of {import_took:?}"
    );
}

/// A text of 200 KB nested 100,000 levels deep took the YAML parser 20 s; it is refused
/// before parsing, with the limit and the line, and the environment is unchanged.
#[tokio::test]
async fn a_document_nested_past_the_limit_is_refused_at_once() {
    let server = Server::start_with(&[], ONE_FLAG).await;
    let depth = 100_000;
    let text = format!(
        "flags:\n  x:\n    type: object\n    variants: {{v: {}{}}}\n    default_variant: v\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let began = Instant::now();
    let reply = server
        .import_yaml("default", &text)
        .await
        .expect_status(400);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    let body = reply.json();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("line 4") && message.contains("400 levels"),
        "{body}"
    );
    let exported = server.export("default").await;
    assert!(exported["flags"].get("x").is_none(), "{exported}");
    assert!(exported["flags"].get("checkout").is_some(), "{exported}");
}

/// A flag key written twice in an import is refused at its path, and nothing changes.
#[tokio::test]
async fn an_import_with_a_key_written_twice_changes_nothing() {
    let server = Server::start_with(&[], ONE_FLAG).await;
    let flag = r#"{"type": "boolean", "variants": {"on": true}, "default_variant": "on"}"#;
    let json_text = format!(r#"{{"flags": {{"a": {flag}, "a": {flag}}}}}"#);
    let reply = server
        .call(
            Method::PUT,
            "/api/v1/environments/default/document",
            Some(&server.admin_key),
            Body::raw_json(json_text),
        )
        .await
        .expect_status(400);
    assert_eq!(reply.json()["path"], "flags.a", "{}", reply.text());
    let exported = server.export("default").await;
    assert!(exported["flags"].get("a").is_none(), "{exported}");
}

/// More judge requests at once than the judge runs (half the cores) are refused with
/// `503 judge_busy` and `Retry-After` before their bodies are read; the others are judged.
/// Unbounded, sixteen requests of a million values each took 3 GB.
#[tokio::test]
async fn judge_requests_past_the_limit_are_told_to_retry() {
    let server = Server::start_with(&[], ONE_FLAG).await;
    let key = server.create_key("ci", "server", Some("default")).await;
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let values = |offset: usize| {
        (0..100_000)
            .map(|index| ((index * 7919 + offset) % 100_003).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let body = format!(
        r#"{{"treatment": [{}], "control": [{}], "tolerance": "5%"}}"#,
        values(1),
        values(2)
    );
    let requests = (0..2 * cores + 2).map(|_| {
        server.call(
            Method::POST,
            "/api/v1/judge",
            Some(&key.token),
            Body::raw_json(body.clone()),
        )
    });
    let replies = futures_util::future::join_all(requests).await;
    let judged = replies.iter().filter(|reply| reply.status == 200).count();
    let busy: Vec<_> = replies.iter().filter(|reply| reply.status == 503).collect();
    assert!(judged >= 1, "none was judged");
    assert_eq!(judged + busy.len(), replies.len(), "other statuses");
    assert!(
        !busy.is_empty(),
        "{judged} of {} judged at once",
        replies.len()
    );
    for reply in busy {
        assert_eq!(reply.json()["error"], "judge_busy", "{}", reply.text());
        let retry: u32 = reply
            .header("retry-after")
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After: {:?}", reply.headers));
        assert!(retry >= 1);
    }
    // Once the others are done, a request is judged again.
    server
        .call(
            Method::POST,
            "/api/v1/judge",
            Some(&key.token),
            Body::raw_json(r#"{"treatment": [1, 2, 3], "control": [2, 3, 4]}"#),
        )
        .await
        .expect_status(200);
}

/// Sends bytes as they are, and reads nothing: a client for requests that are not protobuf.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;
struct NoDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = NoDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> NoDecoder {
        NoDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for NoDecoder {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, _: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}

/// Bytes that are not protobuf, sent to each kind of call with a valid key, are the
/// caller's error: `INVALID_ARGUMENT`, not `INTERNAL`.
#[tokio::test]
async fn malformed_protobuf_is_an_invalid_argument() {
    // flagd's services must serve an environment, or they refuse every call before reading
    // its body.
    let server = Server::start_with(&[("RIPCORD_FLAGD_ENVIRONMENT", "default")], ONE_FLAG).await;
    let key = server.create_key("app", "server", Some("default")).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url().to_string())
        .expect("a gRPC URL")
        .connect()
        .await
        .expect("the gRPC port accepts connections");
    // A field 1 of wire type 2 whose length runs past the end, then a tag of field 0.
    let malformed: &[&[u8]] = &[&[0x0a, 0x7f, 0x01], &[0x00], &[0xff; 11]];
    for method in [
        "/ripcord.v1.Ripcord/Evaluate",
        "/ripcord.v1.Ripcord/EvaluateAll",
        "/ripcord.v1.Ripcord/Watch",
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        "/flagd.evaluation.v2.Service/ResolveString",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ] {
        for bytes in malformed {
            let mut client = tonic::client::Grpc::new(channel.clone());
            client.ready().await.expect("the channel is ready");
            let mut request = tonic::Request::new(bytes.to_vec());
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", key.token)
                    .parse()
                    .expect("ASCII metadata"),
            );
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
            let status = if method.ends_with("Watch") {
                client
                    .server_streaming(request, path, RawCodec)
                    .await
                    .map(drop)
            } else {
                client.unary(request, path, RawCodec).await.map(drop)
            }
            .expect_err(method);
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{method} {bytes:?}: {status:?}"
            );
        }
    }
}
