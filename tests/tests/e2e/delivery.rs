//! Delivery to SDKs over HTTP as their clients see it: the ruleset and its ETag, the
//! server-sent event stream with its deltas, resuming, heartbeats, deletion, revocation and
//! SIGTERM; and the OFREP event stream that browsers follow without their key.

use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use reqwest::header::HeaderMap;
use ripcord_engine::{Ruleset, RulesetDelta};
use serde_json::{json, Value};

use crate::harness::Server;

const FLAGS: &str = r#"
segments:
  staff:
    when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: true
    client_visible: true
    rules:
      - segment: staff
        serve: {variant: "on"}
  search-v2:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
    enabled: true
"#;

/// Long enough for a busy machine, short enough to keep the file quick.
const PATIENCE: Duration = Duration::from_secs(5);

/// One thing read from an event stream.
#[derive(Debug, PartialEq)]
enum Sse {
    Event {
        name: String,
        id: Option<String>,
        data: String,
    },
    /// A comment line, which is how heartbeats come.
    Comment,
    /// The server ended the stream.
    End,
}

impl Sse {
    #[track_caller]
    fn expect(self, wanted: &str) -> (Option<String>, String) {
        match self {
            Sse::Event { name, id, data } if name == wanted => (id, data),
            other => panic!("expected `{wanted}`, got {other:?}"),
        }
    }
}

/// A minimal server-sent events reader: enough of the format for what Ripcord sends.
struct Events {
    headers: HeaderMap,
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
    retry: Option<u64>,
}

impl Events {
    /// Opens a stream; a refusal comes back as its status and body.
    async fn open(
        server: &Server,
        path: &str,
        key: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Events, (u16, String)> {
        let mut request = server
            .client()
            .get(server.url(path))
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(60));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the server answers");
        if response.status() != 200 {
            let status = response.status().as_u16();
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(Events {
            headers: response.headers().clone(),
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|chunk| chunk.to_vec()))
                .boxed(),
            buffer: Vec::new(),
            retry: None,
        })
    }

    #[track_caller]
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
    }

    /// The next event, comment or end; fails the test after [`PATIENCE`] of nothing.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(PATIENCE, self.read())
            .await
            .unwrap_or_else(|_| panic!("nothing arrived on the stream within {PATIENCE:?}"))
    }

    /// The next event, skipping heartbeats.
    async fn next_event(&mut self) -> Sse {
        loop {
            match self.next().await {
                Sse::Comment => continue,
                other => return other,
            }
        }
    }

    /// Everything that arrives within `period`, which must not include the end.
    async fn during(&mut self, period: Duration) -> Vec<Sse> {
        let deadline = tokio::time::Instant::now() + period;
        let mut seen = Vec::new();
        while let Ok(item) = tokio::time::timeout_at(deadline, self.read()).await {
            assert_ne!(item, Sse::End, "the stream ended; before: {seen:?}");
            seen.push(item);
        }
        seen
    }

    async fn read(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(item) = self.parse(&String::from_utf8_lossy(&block)) {
                    return item;
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                // A connection cut at shutdown ends the stream as surely as a clean end.
                Some(Err(_)) | None => return Sse::End,
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<Sse> {
        let (mut name, mut id, mut data) = (None, None, Vec::new());
        let mut comment = false;
        for line in block.lines().filter(|line| !line.is_empty()) {
            if line.starts_with(':') {
                comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = Some(value.to_string()),
                "id" => id = Some(value.to_string()),
                "data" => data.push(value.to_string()),
                "retry" => self.retry = value.parse().ok(),
                other => panic!("unexpected field `{other}` in {block:?}"),
            }
        }
        if data.is_empty() {
            return comment.then_some(Sse::Comment);
        }
        Some(Sse::Event {
            name: name.unwrap_or_else(|| "message".to_string()),
            id,
            data: data.join("\n"),
        })
    }
}

async fn get_ruleset(server: &Server, key: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = server
        .client()
        .get(server.url("/api/v1/sdk/ruleset"))
        .bearer_auth(key);
    if let Some(etag) = if_none_match {
        request = request.header("if-none-match", etag);
    }
    request.send().await.expect("the server answers")
}

fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|value| value.to_str().ok())
        .expect("an ETag")
        .to_string()
}

async fn kill(server: &Server, flag: &str, enabled: bool) {
    server
        .admin_put(
            &format!("/api/v1/environments/default/flags/{flag}/enabled"),
            json!({"enabled": enabled}),
        )
        .await
        .expect_status(200);
}

#[track_caller]
fn assert_matches_export(ruleset: &Ruleset, exported: &Value) {
    assert_eq!(
        &serde_json::to_value(&ruleset.document).expect("a document serializes"),
        exported
    );
}

async fn start_with_flags(heartbeat: &str) -> Server {
    let server = Server::builder()
        .env("RIPCORD_HEARTBEAT", heartbeat)
        .start()
        .await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ruleset_is_the_exported_document_and_its_etag_changes_with_it() {
    let server = start_with_flags("15s").await;
    let key = server.create_key("api", "server", Some("default")).await;

    let response = get_ruleset(&server, &key.token, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let first = etag(&response);
    let ruleset = Ruleset::from_json(&response.bytes().await.unwrap()).expect("a ruleset");
    assert_eq!(ruleset.environment, "default");
    assert_eq!(ruleset.revision, server.revision("default").await);
    assert_matches_export(&ruleset, &server.export("default").await);
    assert!(ruleset.compile().is_ok(), "the ruleset compiles");

    let unchanged = get_ruleset(&server, &key.token, Some(&first)).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(etag(&unchanged), first);

    kill(&server, "new-checkout", false).await;
    let changed = get_ruleset(&server, &key.token, Some(&first)).await;
    assert_eq!(changed.status(), 200, "a write changes the ruleset");
    assert_ne!(etag(&changed), first);
    let ruleset = Ruleset::from_json(&changed.bytes().await.unwrap()).expect("a ruleset");
    assert_eq!(ruleset.document.flags["new-checkout"].enabled, Some(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_server_keys_receive_rulesets_and_streams() {
    let server = start_with_flags("15s").await;
    let client = server.create_key("web", "client", Some("default")).await;
    for path in ["/api/v1/sdk/ruleset", "/api/v1/sdk/stream"] {
        for (key, status) in [
            (None, 401),
            (Some("ripcord-server-made-up"), 401),
            (Some(client.token.as_str()), 403),
            (Some(server.admin_key.as_str()), 403),
        ] {
            let (got, body) = Events::open(&server, path, key, None)
                .await
                .err()
                .unwrap_or_else(|| panic!("{path} streamed for {key:?}"));
            assert_eq!(got, status, "{path} with {key:?}: {body}");
            let body: Value = serde_json::from_str(&body).expect("the server's error shape");
            assert!(
                body["error"].is_object() || body["error"].is_string(),
                "{body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_sends_the_ruleset_then_each_change_as_a_delta_that_applies() {
    let server = start_with_flags("15s").await;
    let key = server.create_key("api", "server", Some("default")).await;
    let revision = server.revision("default").await;

    let mut events = Events::open(&server, "/api/v1/sdk/stream", Some(&key.token), None)
        .await
        .expect("a stream");
    assert!(events
        .header("content-type")
        .starts_with("text/event-stream"));
    assert_eq!(events.header("cache-control"), "no-cache");
    assert_eq!(events.header("x-accel-buffering"), "no");
    let (id, data) = events.next_event().await.expect("ruleset");
    assert_eq!(id, Some(revision.to_string()));
    assert!(events.retry.is_some(), "a reconnection delay is suggested");
    let mut ruleset = Ruleset::from_json(data.as_bytes()).expect("a ruleset");
    assert_matches_export(&ruleset, &server.export("default").await);

    for (step, enabled) in [false, true].into_iter().enumerate() {
        kill(&server, "new-checkout", enabled).await;
        let (id, data) = events.next_event().await.expect("delta");
        let expected = revision + 1 + step as u64;
        assert_eq!(id, Some(expected.to_string()));
        let delta = RulesetDelta::from_json(data.as_bytes()).expect("a delta");
        ruleset.apply(&delta).expect("the delta applies");
        assert_eq!(ruleset.revision, expected);
        assert_matches_export(&ruleset, &server.export("default").await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_stream_receives_only_what_it_missed() {
    let server = start_with_flags("1s").await;
    let key = server.create_key("api", "server", Some("default")).await;
    let old = Ruleset::from_json(
        &get_ruleset(&server, &key.token, None)
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .expect("a ruleset");
    kill(&server, "new-checkout", false).await;
    kill(&server, "search-v2", false).await;
    let current = server.revision("default").await;
    assert_eq!(current, old.revision + 2);
    let exported = server.export("default").await;

    // Up to date: nothing but heartbeats.
    let mut events = Events::open(
        &server,
        "/api/v1/sdk/stream",
        Some(&key.token),
        Some(&current.to_string()),
    )
    .await
    .expect("a stream");
    let seen = events.during(Duration::from_millis(2500)).await;
    assert!(!seen.is_empty(), "heartbeats arrive during silence");
    assert!(
        seen.iter().all(|item| *item == Sse::Comment),
        "nothing is sent again: {seen:?}"
    );

    // Two revisions behind: the two deltas, nothing more.
    let mut events = Events::open(
        &server,
        "/api/v1/sdk/stream",
        Some(&key.token),
        Some(&old.revision.to_string()),
    )
    .await
    .expect("a stream");
    let mut ruleset = old.clone();
    for expected in [old.revision + 1, old.revision + 2] {
        let (id, data) = events.next_event().await.expect("delta");
        assert_eq!(id, Some(expected.to_string()));
        ruleset
            .apply(&RulesetDelta::from_json(data.as_bytes()).expect("a delta"))
            .expect("the delta applies");
    }
    assert_matches_export(&ruleset, &exported);
    let rest = events.during(Duration::from_millis(1200)).await;
    assert!(rest.iter().all(|item| *item == Sse::Comment), "{rest:?}");

    // A revision the server cannot lead from: the whole ruleset.
    for id in ["garbage", "999999"] {
        let mut events = Events::open(&server, "/api/v1/sdk/stream", Some(&key.token), Some(id))
            .await
            .expect("a stream");
        let (got, data) = events.next_event().await.expect("ruleset");
        assert_eq!(got, Some(current.to_string()), "Last-Event-ID {id}");
        assert_matches_export(&Ruleset::from_json(data.as_bytes()).unwrap(), &exported);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_environment_ends_its_streams() {
    let server = Server::start().await;
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    server
        .import_yaml("staging", FLAGS)
        .await
        .expect_status(200);
    let key = server.create_key("api", "server", Some("staging")).await;
    let mut events = Events::open(&server, "/api/v1/sdk/stream", Some(&key.token), None)
        .await
        .expect("a stream");
    events.next_event().await.expect("ruleset");

    server
        .admin_delete("/api/v1/environments/staging")
        .await
        .expect_status(204);
    let (_, data) = events.next_event().await.expect("deleted");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["environment"],
        "staging"
    );
    assert_eq!(events.next_event().await, Sse::End);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_promptly_with_streams_open() {
    let mut server = start_with_flags("15s").await;
    let key = server.create_key("api", "server", Some("default")).await;
    let web = server.create_key("web", "client", Some("default")).await;
    let mut sdk = Events::open(&server, "/api/v1/sdk/stream", Some(&key.token), None)
        .await
        .expect("a stream");
    sdk.next_event().await.expect("ruleset");
    let bulk = server
        .evaluate_all(&web.token, json!({}), None)
        .await
        .json();
    let uri = bulk["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .expect("an event stream")
        .to_string();
    let mut ofrep = Events::open(&server, &uri, None, None)
        .await
        .expect("a stream");
    ofrep.next_event().await.expect("message");

    let started = Instant::now();
    let exited = server.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        started.elapsed()
    );
    assert!(
        exited.status.success(),
        "{:?}: {}",
        exited.status,
        exited.stderr.join("\n")
    );
    assert_eq!(sdk.next_event().await, Sse::End);
    assert_eq!(ofrep.next_event().await, Sse::End);
}

#[tokio::test(flavor = "multi_thread")]
async fn ofrep_providers_follow_the_advertised_stream_without_their_key() {
    let server = start_with_flags("15s").await;
    let web = server.create_key("web", "client", Some("default")).await;
    let context = json!({"targetingKey": "user-1"});

    let answer = server.evaluate_all(&web.token, context.clone(), None).await;
    let bulk = answer.json();
    let stream = &bulk["eventStreams"][0];
    assert_eq!(stream["type"], "sse", "{bulk}");
    assert_eq!(stream["inactivityDelaySec"], 120, "{bulk}");
    let uri = stream["endpoint"]["requestUri"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestUri in {bulk}"))
        .to_string();
    assert!(uri.starts_with("/ofrep/v1/events?"), "{uri}");
    assert!(!uri.contains(&web.token), "the URL must not carry the key");
    let tag = answer.header("etag").expect("an ETag");
    server
        .evaluate_all(&web.token, context.clone(), Some(&tag))
        .await
        .expect_status(304);

    // As a browser's EventSource would: no key, the provider's own origin.
    let revision = server.revision("default").await;
    let response = server
        .client()
        .get(server.url(&uri))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .contains_key("access-control-allow-origin"));
    drop(response);

    // Resuming at the current revision: nothing until something changes.
    let mut events = Events::open(&server, &uri, None, Some(&revision.to_string()))
        .await
        .expect("a stream");
    kill(&server, "new-checkout", false).await;
    let (id, data) = events.next_event().await.expect("message");
    assert_eq!(id, Some((revision + 1).to_string()));
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"type": "refetchEvaluation"})
    );
    // Refetching gives the change, with the parameters OFREP lets a provider add after an
    // event.
    let refetched =
        server
            .client()
            .post(server.url(
                "/ofrep/v1/evaluate/flags?flagConfigEtag=abc&flagConfigLastModified=1771622898",
            ))
            .bearer_auth(&web.token)
            .header("if-none-match", &tag)
            .json(&json!({ "context": context }))
            .send()
            .await
            .expect("the server answers");
    assert_eq!(refetched.status(), 200);
    let refetched: Value = refetched.json().await.expect("a bulk answer");
    assert_eq!(refetched["eventStreams"], bulk["eventStreams"]);
    assert_eq!(refetched["flags"][0]["key"], "new-checkout");
    assert_eq!(refetched["flags"][0]["reason"], "DISABLED");

    for made_up in [
        "/ofrep/v1/events?channel=0123456789abcdef".to_string(),
        "/ofrep/v1/events".to_string(),
        format!("/ofrep/v1/events?channel={}", web.token),
    ] {
        let (status, _) = Events::open(&server, &made_up, None, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{made_up} streamed"));
        assert_eq!(status, 401, "{made_up}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_key_ends_its_streams() {
    let server = start_with_flags("1s").await;
    let api = server.create_key("api", "server", Some("default")).await;
    let web = server.create_key("web", "client", Some("default")).await;
    let bulk = server
        .evaluate_all(&web.token, json!({}), None)
        .await
        .json();
    let uri = bulk["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .expect("an event stream")
        .to_string();
    let mut sdk = Events::open(&server, "/api/v1/sdk/stream", Some(&api.token), None)
        .await
        .expect("a stream");
    sdk.next_event().await.expect("ruleset");
    let mut ofrep = Events::open(&server, &uri, None, None)
        .await
        .expect("a stream");
    ofrep.next_event().await.expect("message");

    for key in [&api, &web] {
        server
            .admin_delete(&format!("/api/v1/keys/{}", key.id))
            .await
            .expect_status(200);
    }
    // Ended at the next heartbeat at the latest.
    assert_eq!(sdk.next_event().await, Sse::End);
    assert_eq!(ofrep.next_event().await, Sse::End);
    let (status, _) = Events::open(&server, &uri, None, None)
        .await
        .err()
        .expect("the channel of a revoked key is refused");
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_lists_the_delivery_endpoints() {
    let server = Server::start().await;
    let openapi = server
        .admin_get("/api/v1/openapi.json")
        .await
        .expect_status(200)
        .json();
    for path in [
        "/api/v1/sdk/ruleset",
        "/api/v1/sdk/stream",
        "/ofrep/v1/events",
    ] {
        assert!(openapi["paths"][path]["get"].is_object(), "no GET {path}");
    }
    let bulk = &openapi["components"]["schemas"]["OfrepBulkEvaluationSuccess"];
    assert!(bulk["properties"]["eventStreams"].is_object(), "{bulk}");
}
