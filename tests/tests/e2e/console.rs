//! What the web console asks of the server, end to end: reasons kept by the audit log for
//! the kill switch and the ramp controls, the explanation of every flag's evaluation for one
//! context, the live event stream, a ramp's look history, and an import's dry run.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Body, Server};

const DOCUMENT: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {"on": true, "off": false}
    default_variant: "off"
    rules:
      - when: [{attribute: plan, op: in, values: [internal]}]
        serve: {variant: "off"}
      - name: staff
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: "on"}
    rollout: {percentage: 30, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [30, 60, 100]
      min_stage_duration: 1h
      max_stage_duration: 2h
      guards:
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.02, min_samples: 500}
  banner:
    type: string
    variants: {plain: "hello", fancy: "HELLO"}
    default_variant: plain
  by-account:
    type: integer
    variants: {small: 1, big: 2}
    default_variant: small
    rollout: {percentage: 50, stickiness: accountId, split: [{variant: big, weight: 1}]}
"#;

const FLAG: &str = "/api/v1/environments/default/flags/new-checkout";
const RAMP: &str = "/api/v1/environments/default/flags/new-checkout/ramp";

async fn audit_entries(server: &Server, flag: &str) -> Vec<Value> {
    server
        .admin_get(&format!("/api/v1/audit?flag={flag}&limit=100"))
        .await
        .expect_status(200)
        .json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_and_the_ramp_controls_keep_the_reason_given() {
    let server = Server::start_with(&[], DOCUMENT).await;

    // A body without a reason works as it always did.
    server
        .admin_put(&format!("{FLAG}/enabled"), json!({"enabled": true}))
        .await
        .expect_status(200);
    let killed = server
        .admin_put(
            &format!("{FLAG}/enabled"),
            json!({"enabled": false, "reason": "  checkout errors on the dashboard  "}),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(killed["flag"]["enabled"], json!(false), "{killed}");
    let entries = audit_entries(&server, "new-checkout").await;
    let kill = entries
        .iter()
        .find(|entry| entry["operation"] == "kill_switch")
        .unwrap_or_else(|| panic!("the kill is audited: {entries:?}"));
    assert_eq!(kill["reason"], "checkout errors on the dashboard", "{kill}");

    // Too long a reason is refused, by name, and changes nothing.
    let long = "x".repeat(1001);
    let refused = server
        .admin_put(
            &format!("{FLAG}/enabled"),
            json!({"enabled": true, "reason": long}),
        )
        .await
        .expect_status(400)
        .json();
    assert_eq!(refused["path"], "reason", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("1000"),
        "{refused}"
    );
    let flag = server.admin_get(FLAG).await.expect_status(200).json();
    assert_eq!(flag["flag"]["enabled"], json!(false), "{flag}");
    let refused = server
        .admin_post(&format!("{RAMP}/start"), json!({"reason": long}))
        .await
        .expect_status(400)
        .json();
    assert_eq!(refused["path"], "reason", "{refused}");
    assert_eq!(
        server.admin_get(RAMP).await.expect_status(200).json()["status"],
        "pending"
    );

    // Every ramp control keeps its reason, the start included.
    for (operation, reason) in [
        ("start", "release 4.2 approved"),
        ("pause", "holiday freeze"),
        ("resume", "freeze over"),
        ("advance", "the canary looked fine"),
        ("abort", "wrong build"),
    ] {
        server
            .admin_post(&format!("{RAMP}/{operation}"), json!({"reason": reason}))
            .await
            .expect_status(200);
        let entries = audit_entries(&server, "new-checkout").await;
        assert!(
            entries.iter().any(|entry| entry["operation"] == "ramp"
                && entry["reason"]
                    .as_str()
                    .is_some_and(|kept| kept.contains(reason))),
            "no audit entry keeps the reason of `{operation}`: {entries:?}"
        );
    }
    // A start without a reason still works.
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
}

/// The OFREP bulk answer for `context`, by flag key.
async fn ofrep(server: &Server, token: &str, context: &Value) -> Vec<(String, Value)> {
    let answer = server
        .evaluate_all(token, context.clone(), None)
        .await
        .expect_status(200)
        .json();
    answer["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flag| (flag["key"].as_str().unwrap().to_string(), flag.clone()))
        .collect()
}

async fn explain(server: &Server, context: Value) -> Value {
    server
        .admin_post(
            "/api/v1/environments/default/explain",
            json!({"context": context}),
        )
        .await
        .expect_status(200)
        .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_answers_as_ofrep_does_and_says_why() {
    let server = Server::start_with(&[], DOCUMENT).await;
    let service = server
        .create_key("checkout-service", "server", Some("default"))
        .await;
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);

    let mut contexts = vec![
        json!({"targetingKey": "u", "plan": "internal", "email": "a@example.com"}),
        json!({"targetingKey": "u", "email": "a@example.com"}),
        json!({}),
    ];
    contexts.extend((0..40).map(|unit| json!({"targetingKey": format!("user-{unit}")})));
    let (mut inside, mut outside) = (0, 0);
    for context in &contexts {
        let explanation = explain(&server, context.clone()).await;
        assert_eq!(explanation["environment"], "default");
        let flags = explanation["flags"].as_array().unwrap();
        let expected = ofrep(&server, &service.token, context).await;
        assert_eq!(flags.len(), expected.len(), "{explanation}");
        for (flag, (key, answer)) in flags.iter().zip(&expected) {
            assert_eq!(&flag["key"], key);
            for field in ["value", "variant", "reason"] {
                assert_eq!(
                    flag[field], answer[field],
                    "{field} of {key}: {flag} / {answer}"
                );
            }
            for field in ["cohort", "stage"] {
                assert_eq!(
                    flag[field], answer["metadata"][field],
                    "{field} of {key}: {flag} / {answer}"
                );
            }
            if let Some(place) = flag.get("rollout") {
                let bucket = place["bucket"].as_u64().unwrap();
                let threshold = place["threshold"].as_u64().unwrap();
                assert_eq!(place["buckets"], json!(100_000));
                assert_eq!(
                    flag["reason"] == "SPLIT",
                    bucket < threshold,
                    "the bucket decides: {flag}"
                );
                if key == "new-checkout" {
                    assert_eq!(place["percentage"], json!(30.0), "{flag}");
                    if bucket < threshold {
                        // The ramp is at its first stage: units in it are its treatment.
                        assert_eq!(flag["cohort"], "treatment", "{flag}");
                        assert_eq!(flag["stage"], json!(0), "{flag}");
                        inside += 1;
                    } else {
                        outside += 1;
                    }
                }
            }
        }
        let by_key = |key: &str| {
            flags
                .iter()
                .find(|flag| flag["key"] == key)
                .cloned()
                .unwrap()
        };
        assert_eq!(by_key("banner")["reason"], "STATIC");
        if context == &json!({}) {
            // No unit, no bucket: said so, by the attribute's name.
            let checkout = by_key("new-checkout");
            assert_eq!(checkout["unit_missing"], "targetingKey", "{checkout}");
            assert!(checkout.get("rollout").is_none(), "{checkout}");
            assert_eq!(by_key("by-account")["unit_missing"], "accountId");
        }
    }
    assert!(inside > 0 && outside > 0, "{inside} in, {outside} out");

    // The matched rule, named or not, by its position.
    let internal = explain(&server, contexts[0].clone()).await;
    // Flags come in key order: banner, by-account, new-checkout.
    let checkout = &internal["flags"][2];
    assert_eq!(checkout["key"], "new-checkout");
    assert_eq!(checkout["rule"], json!({"index": 0}), "{checkout}");
    let staff = explain(&server, contexts[1].clone()).await;
    assert_eq!(
        staff["flags"][2]["rule"],
        json!({"index": 1, "name": "staff"}),
        "{staff}"
    );

    // The kill switch is why, whatever the context.
    server
        .admin_put(&format!("{FLAG}/enabled"), json!({"enabled": false}))
        .await
        .expect_status(200);
    let killed = explain(&server, contexts[1].clone()).await;
    assert_eq!(killed["flags"][2]["reason"], "DISABLED", "{killed}");
    assert!(killed["flags"][2].get("rule").is_none(), "{killed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_is_for_admin_keys_and_refuses_what_ofrep_refuses() {
    let server = Server::start_with(&[("RIPCORD_MAX_CONTEXT_ATTRIBUTES", "3")], DOCUMENT).await;
    let service = server
        .create_key("checkout-service", "server", Some("default"))
        .await;
    let path = "/api/v1/environments/default/explain";
    let not_admin = server
        .call(
            Method::POST,
            path,
            Some(&service.token),
            Body::Json(json!({"context": {}})),
        )
        .await;
    assert_eq!(not_admin.status, 403);
    let anonymous = server
        .call(Method::POST, path, None, Body::Json(json!({"context": {}})))
        .await;
    assert_eq!(anonymous.status, 401);

    let over = server
        .admin_post(path, json!({"context": {"a": 1, "b": 2, "c": 3, "d": 4}}))
        .await
        .expect_status(400)
        .json();
    assert!(
        over["message"]
            .as_str()
            .unwrap()
            .contains("RIPCORD_MAX_CONTEXT_ATTRIBUTES"),
        "{over}"
    );
    let not_an_object = server
        .admin_post(path, json!({"context": "user-1"}))
        .await
        .expect_status(400)
        .json();
    assert_eq!(not_an_object["path"], "context", "{not_an_object}");
    server
        .admin_post(path, json!({"context": {"targetingKey": 7}}))
        .await
        .expect_status(400);
    server
        .admin_post(
            "/api/v1/environments/nowhere/explain",
            json!({"context": {}}),
        )
        .await
        .expect_status(404);
    // No body is an empty context.
    let empty = server
        .call(
            Method::POST,
            path,
            Some(crate::harness::ADMIN_KEY),
            Body::None,
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(empty["flags"].as_array().unwrap().len(), 3, "{empty}");
}

/// One server-sent event: its name, id and data.
#[derive(Debug)]
struct Event {
    name: String,
    id: String,
    data: Value,
}

/// A reader of `GET /api/v1/events`, heartbeats skipped.
struct Stream {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl Stream {
    async fn open(server: &Server, key: &str, last_event_id: Option<&str>) -> Result<Stream, u16> {
        let mut request = server
            .client()
            .get(server.url("/api/v1/events"))
            .bearer_auth(key)
            .timeout(Duration::from_secs(60));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the server answers");
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Ok(Stream {
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|chunk| chunk.to_vec()))
                .boxed(),
            buffer: Vec::new(),
        })
    }

    /// The next event; fails the test after two seconds of none, the console's promise.
    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(2), self.read())
            .await
            .expect("an event within 2 s")
    }

    async fn read(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8");
                let (mut name, mut id, mut data) = (None, None, None);
                for line in block.lines() {
                    let Some((field, value)) = line.split_once(": ") else {
                        continue;
                    };
                    match field {
                        "event" => name = Some(value.to_string()),
                        "id" => id = Some(value.to_string()),
                        "data" => data = Some(serde_json::from_str(value).expect("JSON data")),
                        _ => {}
                    }
                }
                // Comments (heartbeats) and `retry:` have no event.
                if let (Some(name), Some(id), Some(data)) = (name, id, data) {
                    return Event { name, id, data };
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                other => panic!("the stream ended: {other:?}"),
            }
        }
    }

    /// The next event named `name`, skipping others.
    async fn next_named(&mut self, name: &str) -> Event {
        loop {
            let event = self.next().await;
            if event.name == name {
                return event;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_follows_changes_and_ramps_and_resumes() {
    let server = Server::start_with(&[("RIPCORD_HEARTBEAT", "1s")], DOCUMENT).await;
    let service = server
        .create_key("checkout-service", "server", Some("default"))
        .await;
    assert_eq!(
        Stream::open(&server, &service.token, None).await.err(),
        Some(403)
    );
    assert_eq!(Stream::open(&server, "nope", None).await.err(), Some(401));

    let mut stream = Stream::open(&server, crate::harness::ADMIN_KEY, None)
        .await
        .unwrap();
    let revision = server.revision("default").await;
    server
        .admin_put(
            &format!("{FLAG}/enabled"),
            json!({"enabled": false, "reason": "errors"}),
        )
        .await
        .expect_status(200);
    let change = stream.next_named("change").await;
    assert_eq!(change.data["type"], "change");
    assert_eq!(change.data["environment"], "default");
    assert_eq!(change.data["revision"], json!(revision + 1));
    assert_eq!(change.data["flags"], json!(["new-checkout"]), "{change:?}");

    server
        .admin_post(&format!("{RAMP}/start"), json!({"reason": "go"}))
        .await
        .expect_status(200);
    let ramp = stream.next_named("ramp").await;
    assert_eq!(ramp.data["action"], "start", "{ramp:?}");
    assert_eq!(ramp.data["flag"], "new-checkout");
    assert_eq!(ramp.data["status"], "running");
    assert_eq!(ramp.data["percentage"], json!(30.0));
    assert!(ramp.data["reason"].as_str().unwrap().contains("go"));
    // The start turns the flag back on: a change follows.
    let started = stream.next_named("change").await;
    let seen = started.id.clone();

    // What happens while a client is away is sent when it comes back with its last id.
    drop(stream);
    server
        .admin_post(&format!("{RAMP}/pause"), json!({"reason": "lunch"}))
        .await
        .expect_status(200);
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    let mut resumed = Stream::open(&server, crate::harness::ADMIN_KEY, Some(&seen))
        .await
        .unwrap();
    // The controller may have held the ramp in between: only what matters here is looked at.
    let paused = loop {
        let event = resumed.next_named("ramp").await;
        if event.data["action"] == "pause" {
            break event;
        }
    };
    assert!(
        paused.data["reason"].as_str().unwrap().contains("lunch"),
        "{paused:?}"
    );
    let created = resumed.next_named("change").await;
    assert_eq!(created.data["environment"], "staging", "{created:?}");
    assert!(created.data.get("flags").is_none(), "{created:?}");

    // An id the server cannot resume from says so first.
    let mut lost = Stream::open(&server, crate::harness::ADMIN_KEY, Some("1-1"))
        .await
        .unwrap();
    let reset = lost.next().await;
    assert_eq!(reset.name, "reset", "{reset:?}");
    server
        .admin_delete("/api/v1/environments/staging")
        .await
        .expect_status(204);
    let deleted = lost.next_named("environment_deleted").await;
    assert_eq!(deleted.data["environment"], "staging");
    assert_ne!(deleted.id, reset.id);

    // An idle stream has heartbeats, as comments.
    let chunk = tokio::time::timeout(Duration::from_millis(2500), lost.body.next())
        .await
        .expect("a heartbeat within the period")
        .expect("the stream is open")
        .unwrap();
    assert_eq!(chunk, b": heartbeat\n\n");
}

const HISTORY: &str = "/api/v1/environments/default/flags/new-checkout/ramp/history";

/// Polls the history until `done` holds, for at most 20 seconds.
async fn history_until(server: &Server, done: impl Fn(&[Value]) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let history = server.admin_get(HISTORY).await.expect_status(200).json();
        if done(history["looks"].as_array().unwrap()) {
            return history;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the history did not get there: {history:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_s_look_history_keeps_each_guard_s_evidence_across_a_restart() {
    let mut server = Server::start_with(&[("RIPCORD_RAMP_TICK", "1s")], crate::ramps::RAMPED).await;
    let client = server.create_key("app", "client", Some("default")).await;

    let never_started = server.admin_get(HISTORY).await.expect_status(200).json();
    assert_eq!(never_started["generation"], json!(0));
    assert_eq!(never_started["looks"], json!([]));

    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    // Looks after the warm-up are kept; several looks a second apart make one point a
    // minute (two, should the test straddle a minute's turn).
    let first = history_until(&server, |looks| !looks.is_empty()).await;
    assert_eq!(first["generation"], json!(1));
    let look = &first["looks"][0];
    assert_eq!(look["stage"], json!(0), "{look}");
    assert_eq!(look["percentage"], json!(10.0), "{look}");
    assert_eq!(look["status"], "running", "{look}");
    assert_eq!(look["guards"][0]["metric"], "errors", "{look}");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let later = server.admin_get(HISTORY).await.expect_status(200).json();
    assert!(
        later["looks"].as_array().unwrap().len() <= 2,
        "more than one point a minute: {later:#}"
    );

    // The kill's look is kept, with the evidence that killed, and the live stream tells
    // of the incident.
    let mut stream = Stream::open(&server, crate::harness::ADMIN_KEY, None)
        .await
        .unwrap();
    crate::ramps::post_errors(&server, &client.token, 0, 1000, [300, 10]).await;
    let killed = history_until(&server, |looks| {
        looks.last().is_some_and(|look| look["status"] == "killed")
    })
    .await;
    let kill = killed["looks"].as_array().unwrap().last().unwrap().clone();
    let evidence = &kill["guards"][0]["evidence"];
    assert_eq!(evidence["verdict"], "REGRESSION", "{kill:#}");
    assert_eq!(evidence["n_treatment"], json!(1000), "{kill:#}");
    assert!(evidence["p_value"].as_f64().unwrap() <= evidence["threshold"].as_f64().unwrap());
    assert!(evidence["effect"].is_object(), "{kill:#}");
    let incident = stream.next_named("incident").await;
    assert_eq!(incident.data["action"], "kill", "{incident:?}");
    let id = incident.data["id"].as_u64().unwrap();
    server
        .admin_get(&format!("/api/v1/incidents/{id}"))
        .await
        .expect_status(200);
    drop(stream);

    server.restart().await;
    let after = server.admin_get(HISTORY).await.expect_status(200).json();
    assert_eq!(after, killed, "the history survives a restart");

    assert_eq!(
        server
            .admin_get(&format!("{HISTORY}?generation=2"))
            .await
            .expect_status(200)
            .json()["looks"],
        json!([])
    );
    let bad = server
        .admin_get(&format!("{HISTORY}?generation=zero"))
        .await
        .expect_status(400)
        .json();
    assert_eq!(bad["path"], "generation", "{bad}");
    server
        .admin_get("/api/v1/environments/default/flags/nope/ramp/history")
        .await
        .expect_status(404);
    let not_admin = server
        .call(Method::GET, HISTORY, Some(&client.token), Body::None)
        .await;
    assert_eq!(not_admin.status, 403);

    // A new generation starts a new history.
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    let restarted = server.admin_get(HISTORY).await.expect_status(200).json();
    assert_eq!(restarted["generation"], json!(2));
    assert!(
        restarted["looks"].as_array().unwrap().len() <= 1,
        "{restarted:#}"
    );
    assert_eq!(
        server
            .admin_get(&format!("{HISTORY}?generation=1"))
            .await
            .expect_status(200)
            .json()["looks"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_dry_run_says_what_would_change_and_changes_nothing() {
    let server = Server::start_with(&[], DOCUMENT).await;
    let revision = server.revision("default").await;
    let exported = server.export("default").await;
    let audit = audit_entries(&server, "banner").await.len();

    // `banner` changes, `by-account` goes, `fresh` comes, `new-checkout` stays.
    let mut next = exported.clone();
    next["flags"]["banner"]["default_variant"] = json!("fancy");
    next["flags"].as_object_mut().unwrap().remove("by-account");
    next["flags"]["fresh"] =
        json!({"type": "boolean", "variants": {"on": true}, "default_variant": "on"});
    let path = "/api/v1/environments/default/document";
    let dry = server
        .admin_put(&format!("{path}?dry_run=true"), next.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(dry["dry_run"], json!(true));
    assert_eq!(dry["changes"], json!(true));
    assert_eq!(dry["revision"], json!(revision));
    let flags = &dry["flags"];
    assert_eq!(flags["added"][0]["key"], "fresh", "{dry:#}");
    assert_eq!(flags["added"][0]["after"], next["flags"]["fresh"]);
    assert!(flags["added"][0].get("before").is_none());
    assert_eq!(flags["changed"][0]["key"], "banner", "{dry:#}");
    assert_eq!(flags["changed"][0]["before"]["default_variant"], "plain");
    assert_eq!(flags["changed"][0]["after"]["default_variant"], "fancy");
    assert_eq!(flags["removed"][0]["key"], "by-account", "{dry:#}");
    assert_eq!(
        flags["removed"][0]["before"],
        exported["flags"]["by-account"]
    );
    assert_eq!(flags["unchanged"], json!(1));
    for list in ["added", "changed", "removed"] {
        assert_eq!(flags[list].as_array().unwrap().len(), 1, "{list}: {dry:#}");
    }

    // Nothing changed: no revision, no audit entry, the same document.
    assert_eq!(server.revision("default").await, revision);
    assert_eq!(server.export("default").await, exported);
    assert_eq!(audit_entries(&server, "banner").await.len(), audit);

    // The same document would change nothing; an invalid one is refused at its path, as the
    // import would refuse it.
    let same = server
        .admin_put(&format!("{path}?dry_run=true"), exported.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(same["changes"], json!(false), "{same:#}");
    let mut invalid = next.clone();
    invalid["flags"]["fresh"]["default_variant"] = json!("missing");
    let refused = server
        .admin_put(&format!("{path}?dry_run=true"), invalid)
        .await
        .expect_status(400)
        .json();
    assert!(
        refused.to_string().contains("flags.fresh.default_variant"),
        "{refused:#}"
    );
    let typo = server
        .admin_put(&format!("{path}?dry_run=yes"), next.clone())
        .await
        .expect_status(400)
        .json();
    assert_eq!(typo["path"], "dry_run", "{typo}");
    assert_eq!(server.revision("default").await, revision);

    // Without it, or with `false`, the import goes through.
    server
        .admin_put(&format!("{path}?dry_run=false"), next)
        .await
        .expect_status(200);
    assert_eq!(server.revision("default").await, revision + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_at_a_stale_revision_changes_nothing() {
    let server = Server::start_with(&[], DOCUMENT).await;
    let path = "/api/v1/environments/default/document";
    // The export names the revision its text was read at.
    let read = server.admin_get(path).await.expect_status(200);
    let seen: u64 = read
        .header("ripcord-revision")
        .expect("the export's revision")
        .parse()
        .expect("a number");
    assert_eq!(seen, server.revision("default").await);
    let exported = read.json();

    // Someone else changes a flag after the document was read at `seen`.
    let mut theirs = exported.clone();
    theirs["flags"]["banner"]["default_variant"] = json!("fancy");
    server
        .admin_put(path, theirs.clone())
        .await
        .expect_status(200);
    let now = server.revision("default").await;
    assert_eq!(now, seen + 1);

    // An import, or its dry run, made from the older read is refused and says where the
    // environment is now; the other change stays.
    let mut mine = exported.clone();
    mine["flags"].as_object_mut().unwrap().remove("by-account");
    for query in ["", "&dry_run=true"] {
        let refused = server
            .admin_put(
                &format!("{path}?expected_revision={seen}{query}"),
                mine.clone(),
            )
            .await
            .expect_status(409)
            .json();
        assert_eq!(refused["error"], "conflict", "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("revision {now}")),
            "{refused}"
        );
    }
    assert_eq!(server.revision("default").await, now);
    assert_eq!(server.export("default").await, theirs);

    // Not a revision at all is a bad request, not an import.
    server
        .admin_put(&format!("{path}?expected_revision=-1"), mine.clone())
        .await
        .expect_status(400);

    // At the current revision, it goes through.
    let dry = server
        .admin_put(
            &format!("{path}?expected_revision={now}&dry_run=true"),
            mine.clone(),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(dry["revision"], json!(now));
    server
        .admin_put(&format!("{path}?expected_revision={now}"), mine)
        .await
        .expect_status(200);
    assert_eq!(server.revision("default").await, now + 1);
    assert!(server.export("default").await["flags"]
        .get("by-account")
        .is_none());
}
