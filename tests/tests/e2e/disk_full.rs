//! A full disk, on a real small filesystem: the test mounts a tmpfs, puts the server's data
//! directory on it and fills it. Writes must be refused with `503 storage_unavailable`
//! within the store's bound, while evaluation, health, metrics and the kill switch keep
//! answering (the kill switch works while the free-space reserve is only half used) and
//! `/readyz` says the store is failing; once space is freed, writes must work again without
//! a restart, and SIGTERM must still stop the server promptly.
//!
//! Mounting needs root. Without it (or without `mount`) the tests fail under `CI=true`, and
//! otherwise say they skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Body, Reply, Server};

const DOCUMENT: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - when: [{attribute: userId, op: starts_with, values: ["u-"]}]
        serve: {variant: "on"}
"#;

/// The server's bound on a store call (its default).
const STORE_BOUND: Duration = Duration::from_secs(5);

/// What an answer may take beyond what the server promises: a loaded test machine.
const SLACK: Duration = Duration::from_secs(2);

/// How long reads that never touch the store may take.
const PROMPT: Duration = Duration::from_secs(1);

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Mount {
    directory: tempfile::TempDir,
}

impl Mount {
    /// Mounts a tmpfs of `megabytes`, or says why it cannot (and fails under `CI=true`).
    fn tmpfs(megabytes: u32) -> Option<Mount> {
        let skip = |why: String| {
            if std::env::var("CI").is_ok_and(|value| value == "true") {
                panic!("{why}: CI runs as root and must run the full-disk tests");
            }
            eprintln!("skipped: {why} (the full-disk tests mount a tmpfs, which needs root)");
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
        if !root {
            skip("not running as root".to_string());
            return None;
        }
        let directory = tempfile::tempdir().expect("a temporary mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(directory.path())
            .status();
        match mounted {
            Ok(status) if status.success() => Some(Mount { directory }),
            Ok(status) => {
                skip(format!("mount -t tmpfs failed ({status})"));
                None
            }
            Err(error) => {
                skip(format!("cannot run mount: {error}"));
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: the server's files may still be open if the test failed half-way.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Writes zeros to `path` until it holds `bytes`, or until the filesystem is full when
/// `bytes` is `None`. Returns how much it wrote.
fn fill(path: &Path, bytes: Option<u64>) -> u64 {
    let mut file = std::fs::File::create(path).expect("creating a filler file");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    while bytes.is_none_or(|bytes| written < bytes) {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += chunk.len() as u64,
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    written
}

/// Sends a request and measures how long the answer took.
async fn timed(
    server: &Server,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Body,
) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = server.call(method, path, key, body).await;
    (reply, started.elapsed())
}

fn new_flag(number: usize, description_bytes: usize) -> Body {
    Body::Json(json!({
        "key": format!("filler-{number}"),
        "flag": {
            "description": "x".repeat(description_bytes),
            "type": "boolean",
            "variants": {"on": true, "off": false},
            "default_variant": "off"
        }
    }))
}

/// What `checkout` serves a user now, checked to be answered promptly.
async fn serves(server: &Server, key: &str) -> serde_json::Value {
    let started = Instant::now();
    let reply = server
        .evaluate(key, "checkout", json!({"userId": "u-1"}))
        .await
        .expect_status(200);
    assert!(
        started.elapsed() < PROMPT,
        "evaluation took {:?}",
        started.elapsed()
    );
    reply.json()["value"].clone()
}

async fn expect_prompt(server: &Server, path: &str, status: u16) -> Reply {
    let (reply, took) = timed(server, Method::GET, path, None, Body::None).await;
    assert_eq!(reply.status, status, "{path}: {}", reply.text());
    assert!(took < PROMPT, "{path} took {took:?}");
    reply
}

async fn kill_switch(server: &Server, enabled: bool) -> (Reply, Duration) {
    timed(
        server,
        Method::PUT,
        "/api/v1/environments/default/flags/checkout/enabled",
        Some(&server.admin_key),
        Body::Json(json!({"enabled": enabled})),
    )
    .await
}

/// Checks that the flags `filler-0` to `filler-{acknowledged - 1}` are all there; returns
/// every flag key.
async fn check_acknowledged(server: &Server, acknowledged: usize) -> Vec<String> {
    let flags = server
        .admin_get("/api/v1/environments/default/flags")
        .await
        .expect_status(200)
        .json();
    let keys: Vec<String> = flags
        .as_array()
        .expect("a list of flags")
        .iter()
        .filter_map(|entry| entry["key"].as_str().map(str::to_string))
        .collect();
    for number in 0..acknowledged {
        let key = format!("filler-{number}");
        assert!(keys.contains(&key), "{key} was acknowledged but is gone");
    }
    keys
}

/// One scenario: the disk has `room` bytes left once the test's ballast is in, and flags
/// with descriptions of `description_bytes` are created until the server refuses one.
struct Scenario {
    megabytes: u32,
    room: u64,
    reserve: u64,
    description_bytes: usize,
    /// Whether writes can work again in the same process once space is freed.
    recovers: bool,
}

async fn fill_the_disk_then_free_it(scenario: Scenario) {
    let Some(mount) = Mount::tmpfs(scenario.megabytes) else {
        return;
    };
    let mut server = Server::builder()
        .data_dir_in(mount.path())
        .env("RIPCORD_STORE_RESERVE_BYTES", scenario.reserve)
        .start()
        .await;
    server
        .import_yaml("default", DOCUMENT)
        .await
        .expect_status(200);
    let service = server
        .create_key("service", "server", Some("default"))
        .await;
    assert_eq!(serves(&server, &service.token).await, json!(true));

    // Everything but `room` taken by files that are not the server's.
    let spare: PathBuf = mount.path().join("spare");
    let ballast: PathBuf = mount.path().join("ballast");
    fill(&spare, Some(scenario.room));
    fill(&ballast, None);
    std::fs::remove_file(&spare).expect("removing the spare file");

    // Writes until one is refused.
    let mut refused = None;
    let mut acknowledged = 0;
    for number in 0..5_000 {
        let (reply, took) = timed(
            &server,
            Method::POST,
            "/api/v1/environments/default/flags",
            Some(&server.admin_key),
            new_flag(number, scenario.description_bytes),
        )
        .await;
        assert!(took < STORE_BOUND + SLACK, "a write took {took:?}");
        if reply.status != 201 {
            refused = Some(reply);
            break;
        }
        acknowledged += 1;
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "storage_unavailable");

    // The kill switch is answered within the bound. Below the reserve, it still works: a
    // write that small may use the upper half of the reserve (a new key, below, too).
    if scenario.reserve > 0 {
        for enabled in [false, true] {
            let (reply, took) = kill_switch(&server, enabled).await;
            assert_eq!(reply.status, 200, "the kill switch: {}", reply.text());
            assert!(took < STORE_BOUND + SLACK, "the kill switch took {took:?}");
            assert_eq!(serves(&server, &service.token).await, json!(enabled));
        }
    } else {
        for _ in 0..3 {
            let (reply, took) = kill_switch(&server, false).await;
            assert_eq!(reply.status, 503, "the kill switch: {}", reply.text());
            assert!(took < STORE_BOUND + SLACK, "the kill switch took {took:?}");
        }
    }
    // Every other kind of write is answered too, within the bound.
    let (reply, took) = timed(
        &server,
        Method::POST,
        "/api/v1/keys",
        Some(&server.admin_key),
        Body::Json(json!({"name": "late", "scope": "admin"})),
    )
    .await;
    let small_writes_pass = scenario.reserve > 0;
    assert_eq!(
        reply.status,
        if small_writes_pass { 201 } else { 503 },
        "a new key: {}",
        reply.text()
    );
    assert!(took < STORE_BOUND + SLACK, "a new key took {took:?}");

    // What does not need the disk goes on.
    assert_eq!(serves(&server, &service.token).await, json!(true));
    expect_prompt(&server, "/healthz", 200).await;
    let metrics = expect_prompt(&server, "/metrics", 200).await;
    assert!(metrics.text().contains("ripcord_"), "{}", metrics.text());
    let ready = expect_prompt(&server, "/readyz", 503).await;
    assert_eq!(ready.json()["status"], "store unavailable");

    if !scenario.recovers {
        // The store may be stuck for good: stopping must not wait for it longer than the
        // bound on closing it.
        let started = Instant::now();
        let exited = server.terminate();
        assert!(exited.status.success(), "{:?}", exited.status);
        assert!(
            started.elapsed() < 2 * STORE_BOUND + SLACK,
            "SIGTERM took {:?}",
            started.elapsed()
        );
        std::fs::remove_file(&ballast).expect("removing the ballast");
        server.start_again().await;
        check_acknowledged(&server, acknowledged).await;
        assert_eq!(serves(&server, &service.token).await, json!(true));
        return;
    }

    // Space comes back: writes work again, without a restart.
    std::fs::remove_file(&ballast).expect("removing the ballast");
    let deadline = Instant::now() + STORE_BOUND + SLACK;
    loop {
        let (reply, _) = kill_switch(&server, false).await;
        if reply.status == 200 {
            break;
        }
        if Instant::now() > deadline {
            let exited = server.kill();
            panic!(
                "writes still fail after space was freed: {} {}; stderr:\n{}",
                reply.status,
                reply.text(),
                exited.stderr.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serves(&server, &service.token).await, json!(false));
    expect_prompt(&server, "/readyz", 200).await;
    server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "after", "flag": {"type": "boolean", "variants": {"on": true, "off": false}, "default_variant": "on"}}),
        )
        .await
        .expect_status(201);

    let started = Instant::now();
    let exited = server.terminate();
    assert!(
        exited.status.success(),
        "{:?}; stderr:\n{}",
        exited.status,
        exited.stderr.join("\n")
    );
    assert!(
        started.elapsed() < STORE_BOUND + SLACK,
        "SIGTERM took {:?}",
        started.elapsed()
    );

    // Nothing acknowledged was lost, before the disk filled or after.
    server.start_again().await;
    let keys = check_acknowledged(&server, acknowledged).await;
    assert!(keys.iter().any(|key| key == "after"), "{keys:?}");
    assert_eq!(serves(&server, &service.token).await, json!(false));
    drop(mount);
}

/// Small writes with no reserve: sled itself runs out of space, fails every write after,
/// and must be opened again once space is back.
#[tokio::test]
async fn a_full_disk_fails_writes_alone_and_they_work_again_once_space_is_freed() {
    fill_the_disk_then_free_it(Scenario {
        megabytes: 16,
        room: 2 * 1024 * 1024,
        reserve: 0,
        description_bytes: 4 * 1024,
        recovers: true,
    })
    .await;
}

/// Large writes, which sled stores apart: one that runs out of space half-way leaves sled
/// waiting for it forever. The reserve refuses them while there is still room, and lets the
/// kill switch through.
#[tokio::test]
async fn large_writes_are_refused_before_the_disk_is_full_and_resume_once_space_is_freed() {
    fill_the_disk_then_free_it(Scenario {
        megabytes: 64,
        room: 24 * 1024 * 1024,
        reserve: 16 * 1024 * 1024,
        description_bytes: 200 * 1024,
        recovers: true,
    })
    .await;
}

/// The same large writes with the reserve turned off: sled runs out of space half-way
/// through one and may never finish it. The server must still answer everything else
/// promptly, and stop promptly; after a restart with space, nothing acknowledged is lost.
#[tokio::test]
async fn a_store_stuck_on_a_full_disk_holds_neither_requests_nor_shutdown() {
    fill_the_disk_then_free_it(Scenario {
        megabytes: 24,
        room: 4 * 1024 * 1024,
        reserve: 0,
        description_bytes: 200 * 1024,
        recovers: false,
    })
    .await;
}
