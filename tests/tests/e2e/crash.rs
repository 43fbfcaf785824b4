//! Crash safety under load: the real server is killed with SIGKILL again and again while
//! every kind of write is in flight — flag and segment creations, replacements and
//! deletions, key creations and revocations, ramp operations, observation batches and
//! whole-document imports — and after each restart every write the server acknowledged is
//! checked. A write cut off by the kill may have happened or not; an acknowledged one must
//! be there, with what was acknowledged, and the revisions must agree with each other.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::Server;

/// Kills, each after a different stretch of writes.
const CYCLES: u64 = 20;
/// The environment the writers share.
const SHARED: &str = "crash";
/// The environment only imports write.
const IMPORTED: &str = "imported";
const FLAGS: [&str; 3] = ["f0", "f1", "f2"];
const SEGMENTS: [&str; 2] = ["s0", "s1"];
const BATCH: u64 = 20;

const RAMP: &str = r#"{stages: [10, 50, 100], min_stage_duration: 1h, max_stage_duration: 2h, warmup: 1s, guards: [{metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.02, min_samples: 500}]}"#;

fn document() -> String {
    let ramped = |key: &str| {
        format!(
            "  {key}:\n    type: boolean\n    client_visible: true\n    variants: {{\"on\": true, \"off\": false}}\n    \
             default_variant: \"off\"\n    rollout: {{percentage: 0, split: [{{variant: \"on\", weight: 1}}]}}\n    \
             ramp: {RAMP}\n"
        )
    };
    format!("flags:\n{}{}", ramped("ramped"), ramped("observed"))
}

fn flag(value: &str) -> Value {
    json!({"type": "string", "variants": {"v": value}, "default_variant": "v"})
}

fn segment(value: &str) -> Value {
    json!({"when": [{"attribute": "plan", "op": "eq", "values": [value]}]})
}

/// What the server must hold: what it acknowledged last, or what the write the kill cut off
/// would have made of it.
#[derive(Debug)]
struct Expected<T> {
    acknowledged: T,
    in_flight: Option<T>,
}

impl<T: PartialEq + Debug> Expected<T> {
    fn new(acknowledged: T) -> Expected<T> {
        Expected {
            acknowledged,
            in_flight: None,
        }
    }

    /// Checks what the restarted server holds, which is known from then on.
    #[track_caller]
    fn check(&mut self, observed: T, what: &str) {
        assert!(
            observed == self.acknowledged || self.in_flight.as_ref() == Some(&observed),
            "{what}: the server holds {observed:?}, but acknowledged {:?} (a write cut off \
             would have made it {:?})",
            self.acknowledged,
            self.in_flight
        );
        self.acknowledged = observed;
        self.in_flight = None;
    }
}

/// A running server as the writers reach it.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    base: String,
    admin: String,
    /// Writes acknowledged over the whole test.
    acknowledged: Arc<AtomicU64>,
}

impl Target {
    fn of(server: &Server, acknowledged: &Arc<AtomicU64>) -> Target {
        Target {
            acknowledged: Arc::clone(acknowledged),
            client: server.client().clone(),
            base: server.url(""),
            admin: server.admin_key.clone(),
        }
    }

    /// `None` when no answer came: the process died with the request in flight.
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key.unwrap_or(&self.admin));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.bytes().await.ok()?;
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Sends a write; `Some` once it is acknowledged with `status`, `None` when the kill cut
    /// it off. Any other answer fails the test: the writers know what they write to.
    async fn write(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        status: u16,
    ) -> Option<Value> {
        let (answered, body) = self.send(method.clone(), path, key, body).await?;
        assert_eq!(answered, status, "{method} {path}: {body}");
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        Some(body)
    }
}

/// Everything acknowledged so far.
struct Model {
    flags: Items,
    segments: Items,
    /// Keys created, with whether each still works.
    keys: Vec<(String, String, Expected<bool>)>,
    ramp: Expected<(String, u64)>,
    observations: Expected<u64>,
    /// How many observations a batch cut off by the kill had.
    observations_in_flight: u64,
    import: Expected<String>,
    /// The highest revision of each environment that an acknowledgement named.
    shared_revision: u64,
    imported_revision: u64,
    /// A key of the shared environment that is never revoked.
    client_key: String,
    server_key: String,
}

fn revision_of(body: &Value) -> u64 {
    body["revision"].as_u64().unwrap_or(0)
}

type Items = Vec<Expected<Option<String>>>;

/// Creates, replaces and deletes the items `keys` of `collection` (`flags` or `segments`),
/// each in turn. The highest revision acknowledged.
async fn write_items(
    target: Target,
    collection: &'static str,
    keys: &'static [&'static str],
    item: fn(&str) -> Value,
    mut items: Items,
    cycle: u64,
) -> (Items, u64) {
    let mut revision = 0;
    let singular = collection.trim_end_matches('s');
    let base = format!("/api/v1/environments/{SHARED}/{collection}");
    for step in 0.. {
        let index = step % keys.len();
        let key = keys[index];
        let value = format!("c{cycle}-{step}");
        let expected = &mut items[index];
        let path = format!("{base}/{key}");
        let (next, method, path, body, status) = match &expected.acknowledged {
            None => {
                let body = json!({"key": key, singular: item(&value)});
                (Some(value), Method::POST, base.clone(), Some(body), 201)
            }
            Some(_) if step % 3 == 2 => (None, Method::DELETE, path, None, 204),
            Some(_) => {
                let body = item(&value);
                (Some(value), Method::PUT, path, Some(body), 200)
            }
        };
        expected.in_flight = Some(next.clone());
        let Some(answer) = target.write(method, &path, None, body, status).await else {
            break;
        };
        revision = revision.max(revision_of(&answer));
        *expected = Expected::new(next);
    }
    (items, revision)
}

type Keys = Vec<(String, String, Expected<bool>)>;

/// Creates server keys, and revokes every other one it created.
async fn write_keys(target: Target, mut keys: Keys, cycle: u64) -> Keys {
    for step in 0u64.. {
        let live = keys
            .iter()
            .position(|(_, _, expected)| expected.acknowledged);
        match live {
            Some(index) if step % 2 == 1 => {
                let (id, _, expected) = &mut keys[index];
                expected.in_flight = Some(false);
                let path = format!("/api/v1/keys/{id}");
                if target
                    .write(Method::DELETE, &path, None, None, 200)
                    .await
                    .is_none()
                {
                    break;
                }
                *expected = Expected::new(false);
            }
            _ => {
                let body = json!({"name": format!("k{cycle}-{step}"), "scope": "server", "environment": SHARED});
                let Some(created) = target
                    .write(Method::POST, "/api/v1/keys", None, Some(body), 201)
                    .await
                else {
                    break;
                };
                let text = |field: &str| {
                    created[field]
                        .as_str()
                        .unwrap_or_else(|| panic!("no {field} in {created}"))
                        .to_string()
                };
                keys.push((text("id"), text("token"), Expected::new(true)));
            }
        }
    }
    keys
}

/// Starts, pauses, resumes and aborts the ramp of `ramped`, round and round.
async fn write_ramp(target: Target, mut ramp: Expected<(String, u64)>) -> Expected<(String, u64)> {
    let path = format!("/api/v1/environments/{SHARED}/flags/ramped/ramp");
    for step in 0u64.. {
        let (status, generation) = ramp.acknowledged.clone();
        let (operation, next) = match status.as_str() {
            "running" => ("pause", ("paused", generation)),
            "paused" if step % 2 == 0 => ("resume", ("running", generation)),
            "paused" => ("abort", ("aborted", generation)),
            // A ramp never started runs as its first generation; a finished one starts
            // again as a new one.
            "pending" => ("start", ("running", generation)),
            _ => ("start", ("running", generation + 1)),
        };
        let next = (next.0.to_string(), next.1);
        ramp.in_flight = Some(next.clone());
        let answer = target
            .write(
                Method::POST,
                &format!("{path}/{operation}"),
                None,
                Some(json!({})),
                200,
            )
            .await;
        let Some(answer) = answer else { break };
        let answered = ramp_of(&answer);
        assert_eq!(answered, next, "{operation}: {answer}");
        ramp = Expected::new(answered);
    }
    ramp
}

fn ramp_of(status: &Value) -> (String, u64) {
    (
        status["status"]
            .as_str()
            .unwrap_or_else(|| panic!("no status in {status}"))
            .to_string(),
        status["generation"].as_u64().unwrap_or(0),
    )
}

/// Posts batches of observations to the running ramp of `observed`.
async fn write_observations(target: Target, key: String, mut total: u64, cycle: u64) -> (u64, u64) {
    for step in 0u64.. {
        let observations: Vec<Value> = (0..BATCH)
            .map(|index| {
                let cohort = if index % 2 == 0 {
                    "treatment"
                } else {
                    "control"
                };
                json!({"flag": "observed", "metric": "errors", "value": 0, "cohort": cohort,
                       "stage": 0, "unit": format!("u{cycle}-{step}-{index}")})
            })
            .collect();
        let body = json!({"observations": observations});
        let Some(answer) = target
            .write(Method::POST, "/api/v1/metrics", Some(&key), Some(body), 200)
            .await
        else {
            return (total, BATCH);
        };
        assert_eq!(
            answer["accepted"],
            json!(BATCH),
            "cycle {cycle} batch {step}: {answer}"
        );
        total += BATCH;
    }
    (total, 0)
}

/// Imports a whole document into its own environment, over and over.
async fn write_imports(
    target: Target,
    mut import: Expected<String>,
    cycle: u64,
) -> (Expected<String>, u64) {
    let mut revision = 0;
    let path = format!("/api/v1/environments/{IMPORTED}/document");
    for step in 0u64.. {
        let value = format!("c{cycle}-{step}");
        import.in_flight = Some(value.clone());
        let document =
            json!({"flags": {"imported": flag(&value)}, "segments": {"everyone": segment(&value)}});
        let Some(answer) = target
            .write(Method::PUT, &path, None, Some(document), 200)
            .await
        else {
            break;
        };
        revision = revision.max(revision_of(&answer));
        import = Expected::new(value);
    }
    (import, revision)
}

fn value_at(document: &Value, pointer: &str) -> Option<String> {
    document
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Checks every acknowledged write against the restarted server.
async fn check(server: &Server, model: &mut Model, cycle: u64) {
    let shared = server.export(SHARED).await;
    for (key, expected) in FLAGS.iter().zip(&mut model.flags) {
        let observed = value_at(&shared, &format!("/flags/{key}/variants/v"));
        expected.check(observed, &format!("cycle {cycle}: flag {key}"));
    }
    for (key, expected) in SEGMENTS.iter().zip(&mut model.segments) {
        let observed = value_at(&shared, &format!("/segments/{key}/when/0/values/0"));
        expected.check(observed, &format!("cycle {cycle}: segment {key}"));
    }
    for (id, token, expected) in &mut model.keys {
        let answer = server
            .call(
                Method::GET,
                "/api/v1/sdk/ruleset",
                Some(token),
                crate::harness::Body::None,
            )
            .await;
        assert!(
            matches!(answer.status, 200 | 401),
            "key {id}: {}",
            answer.text()
        );
        expected.check(
            answer.status == 200,
            &format!("cycle {cycle}: key {id} works"),
        );
    }
    let ramp = server
        .admin_get(&format!("/api/v1/environments/{SHARED}/flags/ramped/ramp"))
        .await
        .expect_status(200)
        .json();
    model
        .ramp
        .check(ramp_of(&ramp), &format!("cycle {cycle}: ramp"));

    let observed = server
        .admin_get(&format!(
            "/api/v1/environments/{SHARED}/flags/observed/ramp"
        ))
        .await
        .expect_status(200)
        .json();
    let count = observed["guards"][0]["stage_observations"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stage_observations in {observed}"));
    let acknowledged = model.observations.acknowledged;
    assert!(
        (acknowledged..=acknowledged + model.observations_in_flight).contains(&count),
        "cycle {cycle}: {count} observations counted, {acknowledged} acknowledged \
         ({} cut off)",
        model.observations_in_flight
    );
    model.observations = Expected::new(count);
    model.observations_in_flight = 0;

    let imported = server.export(IMPORTED).await;
    let observed = value_at(&imported, "/flags/imported/variants/v");
    assert_eq!(
        value_at(&imported, "/segments/everyone/when/0/values/0"),
        observed,
        "cycle {cycle}: an import is all or nothing"
    );
    model.import.check(
        observed.unwrap_or_default(),
        &format!("cycle {cycle}: import"),
    );

    // Revisions: none acknowledged is lost, and what SDKs receive is at the same revision
    // as what the admin API lists.
    let shared_revision = server.revision(SHARED).await;
    assert!(
        shared_revision >= model.shared_revision,
        "cycle {cycle}: {shared_revision} < {}",
        model.shared_revision
    );
    let imported_revision = server.revision(IMPORTED).await;
    assert!(
        imported_revision >= model.imported_revision,
        "cycle {cycle}: {imported_revision} < {}",
        model.imported_revision
    );
    let ruleset = server
        .call(
            Method::GET,
            "/api/v1/sdk/ruleset",
            Some(&model.server_key),
            crate::harness::Body::None,
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(ruleset["revision"], json!(shared_revision), "cycle {cycle}");
    for (flag, revision) in ruleset["flag_revisions"]
        .as_object()
        .expect("flag_revisions")
    {
        let revision = revision.as_u64().expect("a revision");
        assert!(
            revision <= shared_revision,
            "cycle {cycle}: {flag} at {revision}"
        );
    }
    model.shared_revision = shared_revision;
    model.imported_revision = imported_revision;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_repeated_sigkill_under_load() {
    let started = Instant::now();
    let mut server = Server::start().await;
    server
        .admin_post("/api/v1/environments", json!({"name": SHARED}))
        .await
        .expect_status(201);
    server
        .admin_post("/api/v1/environments", json!({"name": IMPORTED}))
        .await
        .expect_status(201);
    server
        .import_yaml(SHARED, &document())
        .await
        .expect_status(200);
    let client_key = server
        .create_key("observer", "client", Some(SHARED))
        .await
        .token;
    let server_key = server
        .create_key("reader", "server", Some(SHARED))
        .await
        .token;
    let observed = server
        .admin_post(
            &format!("/api/v1/environments/{SHARED}/flags/observed/ramp/start"),
            json!({}),
        )
        .await
        .expect_status(200)
        .json();
    // Observations count from the end of the warm-up.
    let counts_from = observed["counts_from"]
        .as_str()
        .expect("counts_from")
        .to_string();
    let counts_from =
        time::OffsetDateTime::parse(&counts_from, &time::format_description::well_known::Rfc3339)
            .expect("an RFC 3339 time");
    while time::OffsetDateTime::now_utc() <= counts_from {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut model = Model {
        flags: FLAGS.iter().map(|_| Expected::new(None)).collect(),
        segments: SEGMENTS.iter().map(|_| Expected::new(None)).collect(),
        keys: Vec::new(),
        ramp: Expected::new(("pending".to_string(), 1)),
        observations: Expected::new(0),
        observations_in_flight: 0,
        import: Expected::new(String::new()),
        shared_revision: 0,
        imported_revision: 0,
        client_key,
        server_key,
    };
    check(&server, &mut model, 0).await;

    for cycle in 1..=CYCLES {
        let target = Target::of(&server, &acknowledged);
        let flags = tokio::spawn(write_items(
            target.clone(),
            "flags",
            &FLAGS,
            flag,
            std::mem::take(&mut model.flags),
            cycle,
        ));
        let segments = tokio::spawn(write_items(
            target.clone(),
            "segments",
            &SEGMENTS,
            segment,
            std::mem::take(&mut model.segments),
            cycle,
        ));
        let keys = tokio::spawn(write_keys(
            target.clone(),
            std::mem::take(&mut model.keys),
            cycle,
        ));
        let ramp = tokio::spawn(write_ramp(
            target.clone(),
            std::mem::replace(&mut model.ramp, Expected::new(Default::default())),
        ));
        let observations = tokio::spawn(write_observations(
            target.clone(),
            model.client_key.clone(),
            model.observations.acknowledged,
            cycle,
        ));
        let import = tokio::spawn(write_imports(
            target.clone(),
            std::mem::replace(&mut model.import, Expected::new(String::new())),
            cycle,
        ));

        // A different stretch each time, so that the kill lands at different points of the
        // writes.
        tokio::time::sleep(Duration::from_millis(150 + cycle * 37 % 200)).await;
        server.kill();

        let (flags, flag_revision) = flags.await.expect("the flag writer");
        let (segments, segment_revision) = segments.await.expect("the segment writer");
        model.flags = flags;
        model.segments = segments;
        model.keys = keys.await.expect("the key writer");
        model.ramp = ramp.await.expect("the ramp writer");
        let (total, in_flight) = observations.await.expect("the observation writer");
        model.observations = Expected::new(total);
        model.observations_in_flight = in_flight;
        let (import, import_revision) = import.await.expect("the import writer");
        model.import = import;
        model.shared_revision = model
            .shared_revision
            .max(flag_revision)
            .max(segment_revision);
        model.imported_revision = model.imported_revision.max(import_revision);

        server.start_again().await;
        check(&server, &mut model, cycle).await;
    }
    // Every kind of write was acknowledged at least once, so that each was checked.
    assert!(
        model
            .keys
            .iter()
            .any(|(_, _, expected)| !expected.acknowledged),
        "no key was revoked"
    );
    assert!(
        model.ramp.acknowledged.1 > 1,
        "the ramp never started again: {:?}",
        model.ramp
    );
    assert!(model.observations.acknowledged > 0);
    assert!(model.import.acknowledged.starts_with('c'));
    eprintln!(
        "{CYCLES} kill cycles, {} writes acknowledged and checked, in {:?}",
        acknowledged.load(Ordering::Relaxed),
        started.elapsed()
    );
}
