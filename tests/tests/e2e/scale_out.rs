//! Several nodes on one Redis, as a deployment behind a load balancer runs them: real
//! `ripcord` processes sharing a real `redis-server` that the tests start, kill and restart.
//! A write on any node is read on every other, an SDK watching one node hears of a kill made
//! on another, no acknowledged write is lost when a node or Redis dies, a node keeps serving
//! evaluations while Redis is gone or hangs, refuses writes promptly meanwhile and takes them
//! again when Redis is back, a Redis that comes back empty is refused until a node restores
//! it, and a bootstrap document is imported once however many nodes start with it.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use ripcord_sdk::{Context, LocalClient};
use serde_json::{json, Value};

use crate::harness::{Body, Reply, Server};
use crate::redis::RedisServer;

/// The bound on a change reaching another node (its target is 100 ms at the 99th
/// percentile; a debug build on a busy machine gets ten times that).
const PROPAGATION: Duration = Duration::from_secs(1);

/// For what has no bound of its own to check: a node reconnecting to a Redis that came
/// back, a process starting.
const PATIENCE: Duration = Duration::from_secs(15);

/// A write with Redis gone or hanging must be refused within this: a Redis that hangs is
/// given a few seconds to answer (the store's timeouts), one that is gone none.
const REFUSAL: Duration = Duration::from_secs(6);

/// A flag that serves `true` to everyone while it is on, and `false` once killed.
const FLAGS: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout:
      percentage: 100
      split: [{variant: "on", weight: 1}]
"#;

/// `count` nodes on `redis`, started one after another.
async fn nodes(redis: &RedisServer, count: usize) -> Vec<Server> {
    let mut started = Vec::with_capacity(count);
    for _ in 0..count {
        started.push(node(redis).start().await);
    }
    started
}

fn node(redis: &RedisServer) -> crate::harness::Builder {
    Server::builder().env("RIPCORD_STORE", redis.url())
}

/// Checks `check` until it passes or `limit` has gone by; fails the test with what it last
/// saw.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let seen = check().await;
        let elapsed = started.elapsed();
        match seen {
            Ok(()) => return,
            Err(last) if elapsed > limit => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// OFREP's answer for `flag` on `server`, as `(status, value)`.
async fn evaluate(server: &Server, key: &str, flag: &str) -> (u16, Value) {
    let reply = server
        .evaluate(key, flag, json!({"targetingKey": "u-1"}))
        .await;
    let value = if reply.status == 200 {
        reply.json()["value"].clone()
    } else {
        Value::Null
    };
    (reply.status, value)
}

/// Waits until `server` evaluates `flag` to `value` with `key`.
async fn until_evaluates(
    server: &Server,
    name: &str,
    key: &str,
    flag: &str,
    value: Value,
    limit: Duration,
) {
    within(limit, &format!("{flag} = {value} on node {name}"), || {
        let value = value.clone();
        async move {
            match evaluate(server, key, flag).await {
                (200, seen) if seen == value => Ok(()),
                (status, seen) => Err(format!("{status} {seen}")),
            }
        }
    })
    .await
}

/// The context every evaluation of these tests uses.
fn user() -> Context {
    json!({"targetingKey": "u-1"})
        .as_object()
        .cloned()
        .expect("an object")
        .into()
}

async fn kill_switch(server: &Server, flag: &str, enabled: bool) -> Reply {
    server
        .admin_put(
            &format!("/api/v1/environments/default/flags/{flag}/enabled"),
            json!({"enabled": enabled}),
        )
        .await
}

fn flag_body(key: &str) -> Value {
    json!({
        "key": key,
        "flag": {
            "type": "boolean",
            "variants": {"on": true, "off": false},
            "default_variant": "on",
        }
    })
}

/// Every flag key of `default` as `server` exports it.
async fn flag_keys(server: &Server) -> BTreeSet<String> {
    let exported = server.export("default").await;
    exported["flags"]
        .as_object()
        .map(|flags| flags.keys().cloned().collect())
        .unwrap_or_default()
}

/// The newest audit entry's id, read from the store.
async fn last_audit_id(server: &Server) -> u64 {
    let page = server
        .admin_get("/api/v1/audit?limit=1")
        .await
        .expect_status(200)
        .json();
    page["entries"][0]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no audit entry in {page}"))
}

/// Creates flags `{prefix}-0`, `{prefix}-1`, ... on `server` one after another
/// until `stop` is set or a write is refused; returns the keys whose creation was
/// acknowledged (answered 201).
fn writer(
    server: &Server,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let client = server.client().clone();
    let url = server.url("/api/v1/environments/default/flags");
    let admin_key = server.admin_key.clone();
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for index in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let key = format!("{prefix}-{index}");
            let answer = client
                .post(&url)
                .bearer_auth(&admin_key)
                .json(&flag_body(&key))
                .send()
                .await;
            match answer {
                Ok(response) if response.status() == 201 => acknowledged.push(key),
                // Refused, or the node or its store went away: what was acknowledged is
                // what counts.
                _ => break,
            }
        }
        acknowledged
    })
}

/// Waits until `server` serves `count` more flags than the `before` it started with.
async fn until_written(server: &Server, before: usize, count: usize) {
    within(PATIENCE, "writes acknowledged before the crash", || async {
        let written = flag_keys(server).await.len().saturating_sub(before);
        if written >= count {
            Ok(())
        } else {
            Err(format!("{written} written"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flag_or_key_written_on_one_node_works_on_every_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 3).await;
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };

    // A key made on B, used on A and C.
    let key = b.create_key("backend", "server", Some("default")).await;
    for (name, server) in [("A", a), ("C", c)] {
        within(
            PROPAGATION,
            &format!("B's key accepted on {name}"),
            || async {
                match evaluate(server, &key.token, "new-checkout").await {
                    // Known key, unknown flag: the key works.
                    (404, _) => Ok(()),
                    (status, value) => Err(format!("{status} {value}")),
                }
            },
        )
        .await;
    }

    // A flag made on A, evaluated on B and C.
    a.admin_post(
        "/api/v1/environments/default/flags",
        flag_body("new-checkout"),
    )
    .await
    .expect_status(201);
    for (name, server) in [("B", b), ("C", c)] {
        until_evaluates(
            server,
            name,
            &key.token,
            "new-checkout",
            json!(true),
            PROPAGATION,
        )
        .await;
    }
    assert_eq!(a.revision("default").await, b.revision("default").await);
    assert_eq!(a.revision("default").await, c.revision("default").await);

    // The key revoked on C, refused on A.
    c.admin_delete(&format!("/api/v1/keys/{}", key.id))
        .await
        .expect_status(200);
    within(PROPAGATION, "C's revocation honoured on A", || async {
        match evaluate(a, &key.token, "new-checkout").await {
            (401, _) => Ok(()),
            (status, value) => Err(format!("{status} {value}")),
        }
    })
    .await;
    assert_eq!(
        evaluate(b, &key.token, "new-checkout").await.0,
        401,
        "and on B"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_watching_one_node_gets_a_kill_made_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 3).await;
    let [a, _, c] = &nodes[..] else {
        unreachable!()
    };
    a.import_yaml("default", FLAGS).await.expect_status(200);
    let key = a.create_key("backend", "server", Some("default")).await;
    until_evaluates(c, "C", &key.token, "new-checkout", json!(true), PROPAGATION).await;

    let sdk = LocalClient::connect(c.grpc_url(), &key.token).expect("a local client");
    sdk.wait_ready(PATIENCE)
        .await
        .unwrap_or_else(|error| panic!("the SDK on C never got the ruleset: {error}"));
    let user = user();
    assert!(sdk.get_bool("new-checkout", &user, false));
    let mut changes = sdk.subscribe_flag("new-checkout");

    let started = Instant::now();
    kill_switch(a, "new-checkout", false)
        .await
        .expect_status(200);
    tokio::time::timeout(PROPAGATION, changes.next())
        .await
        .unwrap_or_else(|_| panic!("the SDK on C did not hear of A's kill within {PROPAGATION:?}"))
        .expect("the SDK's subscription stays open");
    let elapsed = started.elapsed();
    assert!(
        !sdk.get_bool("new-checkout", &user, true),
        "the SDK on C serves the flag as killed on A"
    );
    eprintln!("a kill on A reached the SDK on C in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_right_after_acknowledged_writes_loses_none() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut nodes = nodes(&redis, 2).await;
    let before = flag_keys(&nodes[0]).await.len();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|index| writer(&nodes[0], &format!("w{index}"), Arc::clone(&stop)))
        .collect();
    until_written(&nodes[0], before, 40).await;
    // SIGKILL with writes in flight: those answered before it must all be there.
    nodes[0].kill();
    let mut acknowledged = BTreeSet::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("a writer"));
    }
    assert!(acknowledged.len() >= 40, "{acknowledged:?}");

    let [a, b] = &mut nodes[..] else {
        unreachable!()
    };
    within(PROPAGATION, "every acknowledged write on B", || async {
        let missing: Vec<String> = acknowledged
            .difference(&flag_keys(b).await)
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    })
    .await;
    a.start_again().await;
    let on_a = flag_keys(a).await;
    let missing: Vec<&String> = acknowledged.difference(&on_a).collect();
    assert!(missing.is_empty(), "A restarted lacks {missing:?}");
    assert_eq!(on_a, flag_keys(b).await, "A and B serve the same flags");
    assert_eq!(a.revision("default").await, b.revision("default").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_gone_nodes_serve_evaluations_refuse_writes_and_recover_when_it_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let [a, b] = &nodes[..] else { unreachable!() };
    a.import_yaml("default", FLAGS).await.expect_status(200);
    let key = a.create_key("backend", "server", Some("default")).await;
    until_evaluates(b, "B", &key.token, "new-checkout", json!(true), PROPAGATION).await;
    let audited = last_audit_id(a).await;
    let revision = a.revision("default").await;
    // An SDK following B, whose stream stays open through the outage.
    let sdk = LocalClient::connect(b.grpc_url(), &key.token).expect("a local client");
    sdk.wait_ready(PATIENCE)
        .await
        .unwrap_or_else(|error| panic!("the SDK on B never got the ruleset: {error}"));
    let user = user();

    redis.kill();
    for (name, server) in [("A", a), ("B", b)] {
        assert_eq!(
            evaluate(server, &key.token, "new-checkout").await,
            (200, json!(true)),
            "node {name} evaluates from its snapshot with Redis gone"
        );
        let started = Instant::now();
        let refused = kill_switch(server, "new-checkout", false).await;
        let elapsed = started.elapsed();
        assert_eq!(refused.status, 503, "on {name}: {}", refused.text());
        assert_eq!(refused.json()["error"], "storage_unavailable");
        assert!(
            elapsed < REFUSAL,
            "node {name} took {elapsed:?} to refuse a write with Redis gone"
        );
        let ready = server.call(Method::GET, "/readyz", None, Body::None).await;
        assert_eq!(ready.status, 503, "/readyz on {name}: {}", ready.text());
        assert_eq!(
            evaluate(server, &key.token, "new-checkout").await,
            (200, json!(true)),
            "node {name} still serves the flag as it was: the refused kill changed nothing"
        );
    }

    assert!(
        sdk.get_bool("new-checkout", &user, false),
        "the SDK on B answers as before"
    );

    redis.start_again();
    for (name, server) in [("A", a), ("B", b)] {
        within(PATIENCE, &format!("node {name} ready again"), || async {
            let ready = server.call(Method::GET, "/readyz", None, Body::None).await;
            if ready.status == 200 {
                Ok(())
            } else {
                Err(ready.text())
            }
        })
        .await;
    }
    // Nothing of the refused writes reached the store.
    assert_eq!(last_audit_id(a).await, audited);
    assert_eq!(a.revision("default").await, revision);
    assert_eq!(b.revision("default").await, revision);

    // Writes work on every node again, and each sees the other's.
    for (writer, reader, names, enabled) in [(a, b, "A to B", false), (b, a, "B to A", true)] {
        within(PATIENCE, &format!("a write taken ({names})"), || async {
            let reply = kill_switch(writer, "new-checkout", enabled).await;
            if reply.status == 200 {
                Ok(())
            } else {
                Err(format!("{} {}", reply.status, reply.text()))
            }
        })
        .await;
        until_evaluates(
            reader,
            names,
            &key.token,
            "new-checkout",
            json!(enabled),
            PATIENCE,
        )
        .await;
    }
    assert_eq!(a.revision("default").await, revision + 2);
    // Both writes reach the SDK that followed B through the outage.
    within(PATIENCE, "the SDK on B at the last revision", || async {
        match sdk.snapshot() {
            Some(snapshot) if snapshot.revision() == revision + 2 => Ok(()),
            Some(snapshot) => Err(format!("revision {}", snapshot.revision())),
            None => Err("no snapshot".to_string()),
        }
    })
    .await;
    assert!(sdk.get_bool("new-checkout", &user, false));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_from_its_append_only_file_loses_no_acknowledged_write() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let before = flag_keys(&nodes[0]).await.len();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(node, server)| {
            (0..2).map({
                let stop = Arc::clone(&stop);
                move |index| writer(server, &format!("n{node}w{index}"), Arc::clone(&stop))
            })
        })
        .collect();
    until_written(&nodes[0], before, 40).await;
    // Killed with writes in flight: the ones in flight are refused (or time out), the ones
    // answered before must all come back from the append-only file.
    redis.kill();
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = BTreeSet::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("a writer"));
    }
    assert!(acknowledged.len() >= 40, "{acknowledged:?}");
    redis.start_again();

    // A node started now reads only what Redis has.
    let fresh = node(&redis).start().await;
    let stored = flag_keys(&fresh).await;
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "Redis lost acknowledged writes: {missing:?}"
    );
    // And the nodes that were running take writes on it again, and see each other's.
    let mut written = BTreeSet::new();
    for server in &nodes {
        let flag = format!("after-{}", server.address().port());
        within(PATIENCE, "a write taken after Redis came back", || async {
            let reply = server
                .admin_post("/api/v1/environments/default/flags", flag_body(&flag))
                .await;
            match reply.status {
                201 => Ok(()),
                status => Err(format!("{status} {}", reply.text())),
            }
        })
        .await;
        written.insert(flag);
    }
    for server in &nodes {
        within(PATIENCE, "each node's write on the other", || async {
            let missing: Vec<String> = written
                .difference(&flag_keys(server).await)
                .cloned()
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bootstrap_document_given_to_three_nodes_started_at_once_is_imported_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let directory = tempfile::tempdir().unwrap();
    let document = directory.path().join("flags.yaml");
    std::fs::write(
        &document,
        r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
  search-v2:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
"#,
    )
    .unwrap();
    // Each start waits for its process on a thread of its own, so that the three
    // processes start together and race for the import.
    let runtime = tokio::runtime::Handle::current();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let builder = node(&redis).env("RIPCORD_BOOTSTRAP", document.display());
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || runtime.block_on(builder.start()))
        })
        .collect();
    let mut nodes = Vec::new();
    for start in starts {
        nodes.push(start.await.expect("a node starts"));
    }

    let entries = nodes[0]
        .admin_get("/api/v1/audit?environment=default&limit=500")
        .await
        .expect_status(200)
        .json();
    let entries = entries["entries"].as_array().cloned().unwrap_or_default();
    let imported: Vec<(String, Value)> = entries
        .iter()
        .filter(|entry| entry["operation"] == "bootstrap")
        .map(|entry| {
            (
                entry["target"].as_str().unwrap_or("").to_string(),
                entry["revision"].clone(),
            )
        })
        .collect();
    assert_eq!(
        imported.len(),
        2,
        "one import of two flags, not one per node: {entries:#?}"
    );
    assert!(
        imported.iter().all(|(_, revision)| revision == 1),
        "{imported:?}"
    );
    let created = entries
        .iter()
        .filter(|entry| entry["action"] == "environment.create")
        .count();
    assert_eq!(created, 1, "`default` created once: {entries:#?}");
    for server in &nodes {
        assert_eq!(server.revision("default").await, 1);
        assert_eq!(
            flag_keys(server).await,
            BTreeSet::from(["new-checkout".to_string(), "search-v2".to_string()])
        );
    }
    let importers = nodes
        .iter_mut()
        .map(|server| server.kill().stderr)
        .filter(|log| {
            log.iter()
                .any(|line| line.contains("imported the bootstrap document"))
        })
        .count();
    assert_eq!(importers, 1, "one node says it imported the document");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_hanging_writes_are_refused_promptly_every_time_and_taken_when_it_answers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let [a, b] = &nodes[..] else { unreachable!() };
    a.import_yaml("default", FLAGS).await.expect_status(200);
    let key = a.create_key("backend", "server", Some("default")).await;
    until_evaluates(b, "B", &key.token, "new-checkout", json!(true), PROPAGATION).await;

    // Stopped, Redis keeps its connections open and answers nothing, as one that hangs
    // or sits behind a partition does: every call waits for a timeout.
    redis.pause();
    for (name, server) in [("A", a), ("A", a), ("B", b)] {
        let started = Instant::now();
        let refused = kill_switch(server, "new-checkout", false).await;
        let elapsed = started.elapsed();
        assert_eq!(refused.status, 503, "on {name}: {}", refused.text());
        assert_eq!(refused.json()["error"], "storage_unavailable");
        assert!(
            elapsed < REFUSAL,
            "node {name} took {elapsed:?} to refuse a write with Redis hanging"
        );
        eprintln!("node {name} refused a write in {elapsed:?} with Redis hanging");
        assert_eq!(
            evaluate(server, &key.token, "new-checkout").await,
            (200, json!(true)),
            "node {name} evaluates from its snapshot with Redis hanging"
        );
    }

    redis.resume();
    // A refused write may still land once Redis answers (the refusal says so): what
    // counts is that writes are taken again, and seen on the other node.
    within(PATIENCE, "a write taken once Redis answers", || async {
        let reply = kill_switch(a, "new-checkout", false).await;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", reply.status, reply.text()))
        }
    })
    .await;
    until_evaluates(b, "B", &key.token, "new-checkout", json!(false), PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_comes_back_empty_is_refused_and_restored_from_a_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.import_yaml("default", FLAGS).await.expect_status(200);
    let key = b.create_key("app", "server", Some("default")).await;
    until_evaluates(a, "A", &key.token, "new-checkout", json!(true), PROPAGATION).await;

    // Restarted without persistence: everything is gone, and the nodes must not take that
    // for the truth.
    redis.flush_all();
    let refused = kill_switch(a, "new-checkout", false).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("lost this deployment's data"),
        "the refusal says what happened: {}",
        refused.text()
    );
    for node in [a, b] {
        let (status, value) = evaluate(node, &key.token, "new-checkout").await;
        assert_eq!(
            (status, value),
            (200, json!(true)),
            "served from the snapshot"
        );
        node.call(Method::GET, "/readyz", None, Body::None)
            .await
            .expect_status(503);
    }

    // Any node puts back what it serves; then both take writes again.
    let restored = b
        .admin_post("/api/v1/store/restore", json!({}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(restored["environments"], json!(1), "{restored}");
    assert_eq!(restored["flags"], json!(1), "{restored}");
    b.admin_post("/api/v1/store/restore", json!({}))
        .await
        .expect_status(409);
    within(PATIENCE, "node A ready again", || async {
        let reply = a.call(Method::GET, "/readyz", None, Body::None).await;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(reply.text())
        }
    })
    .await;
    kill_switch(a, "new-checkout", false)
        .await
        .expect_status(200);
    until_evaluates(
        b,
        "B",
        &key.token,
        "new-checkout",
        json!(false),
        PROPAGATION,
    )
    .await;
    let audit = a.admin_get("/api/v1/audit").await.expect_status(200).json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "store.restore"),
        "{audit:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_start_only_on_a_redis_made_a_deployment_by_store_init() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.flush_all();
    let ripcord = |arguments: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"))
            .args(arguments)
            .output()
            .expect("running ripcord")
    };
    let url = redis.url();
    let first = ripcord(&["store", "init", "--to", &url]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("holds a deployment"));
    // Again: nothing changes for the deployment it already is.
    let again = ripcord(&["store", "init", "--to", &url]);
    assert!(again.status.success());
    let nodes = nodes(&redis, 2).await;
    nodes[0]
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let key = nodes[1].create_key("app", "server", Some("default")).await;
    until_evaluates(
        &nodes[1],
        "B",
        &key.token,
        "new-checkout",
        json!(true),
        PROPAGATION,
    )
    .await;
    let sled = ripcord(&["store", "init", "--to", "sled:./nowhere"]);
    assert!(!sled.status.success(), "init is for Redis");
}
