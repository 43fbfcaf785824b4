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
