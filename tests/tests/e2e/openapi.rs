//! The served OpenAPI document against the server that serves it: schemathesis generates
//! requests from the document (valid ones, and ones the document says are invalid), sends
//! them to a real, seeded server, and checks every answer against the document — statuses,
//! bodies, headers, event streams, the `Allow` of a 405, and that what the document forbids
//! is refused and what it allows is accepted. Its settings, and why each is so, are in
//! `tests/schemathesis.toml`.
//!
//! schemathesis comes from PyPI: `scripts/test.sh` installs it, pinned, and names it in
//! `SCHEMATHESIS`. Without it this test fails under `CI=true`, and otherwise says it skipped
//! (a developer running `cargo test` alone).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Server;

/// Far above the usual run (about half a minute on two cores), so that only a hung run
/// trips it: the test then fails with the output so far instead of hanging.
const PATIENCE: Duration = Duration::from_secs(300);

/// Enough examples per operation that each one's required fields, limits and refusals
/// are tried, while the whole run stays within tens of seconds.
const MAX_EXAMPLES: &str = "20";

/// A fixed seed: the same build runs the same requests, so a failure reported by CI is
/// reproduced by running the test again, and no run fails on a finding unrelated to the
/// change at hand. Exploring further means changing the seed, on purpose.
const SEED: &str = "20261206";

/// The tool, or `None` when it is missing outside CI.
fn schemathesis() -> Option<String> {
    match std::env::var("SCHEMATHESIS") {
        Ok(path) if !path.is_empty() => Some(path),
        _ if std::env::var("CI").is_ok_and(|value| value == "true") => panic!(
            "SCHEMATHESIS is not set: CI must run the OpenAPI conformance check. \
             scripts/test.sh installs schemathesis and sets it; its install log is \
             target/schemathesis-install.log"
        ),
        _ => {
            eprintln!(
                "skipped: SCHEMATHESIS is not set (scripts/test.sh installs schemathesis and \
                 sets it)"
            );
            None
        }
    }
}

/// The operations on the flag document, whose schemas are the largest: half of the run's
/// time, so they run beside the others rather than after them.
const DOCUMENT_TAGS: [&str; 3] = ["flags", "segments", "documents"];

#[tokio::test(flavor = "multi_thread")]
async fn the_document_matches_the_server_on_flags_segments_and_documents() {
    let include = DOCUMENT_TAGS.map(|tag| ["--include-tag", tag]);
    conformance(include.as_flattened()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_matches_the_server_on_every_other_operation() {
    let exclude = DOCUMENT_TAGS.map(|tag| ["--exclude-tag", tag]);
    conformance(exclude.as_flattened()).await;
}

/// Runs schemathesis on the operations `filter` selects, against a seeded server.
async fn conformance(filter: &[&str]) {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let server = Server::builder()
        // Streams send their first event at once; a short heartbeat keeps a stream that has
        // nothing to send (a client already up to date) from holding a request for long.
        .env("RIPCORD_HEARTBEAT", "1s")
        .start()
        .await;
    // The data the requests are drawn towards (see the dictionaries of the settings): an
    // environment with every kind of flag, a segment and a ramp; another for the requests
    // that delete or replace; one for imports; one to delete.
    for environment in ["scratch", "imports", "doomed"] {
        server
            .admin_post("/api/v1/environments", json!({"name": environment}))
            .await
            .expect_status(201);
    }
    for environment in ["default", "scratch"] {
        server
            .import_yaml(environment, crate::admin::FULL_DOCUMENT)
            .await
            .expect_status(200);
    }
    server
        .admin_post(
            "/api/v1/environments/scratch/segments",
            json!({"key": "unused-track", "segment": {"when": [{"attribute": "plan", "op": "exists"}]}}),
        )
        .await
        .expect_status(201);
    let sdk = server
        .create_key("conformance", "server", Some("default"))
        .await;
    let bulk = server
        .evaluate_all(&sdk.token, json!({"targetingKey": "user-1"}), None)
        .await
        .expect_status(200)
        .json();
    let channel = bulk["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .and_then(|uri| uri.split_once("channel="))
        .map(|(_, channel)| channel.to_string())
        .unwrap_or_else(|| panic!("no event stream channel in {bulk}"));

    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let work = tempfile::tempdir().expect("a working directory");
    let output = work.path().join("output.txt");
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args(filter)
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED, "--no-color"])
        // One worker sends the requests in the same order on every run, so each meets the
        // server in the same state: with the seed, the run is the same every time. More
        // would not be faster: generating the requests is most of the time, on one core.
        .args(["--workers", "1"])
        .env("CONFORMANCE_ADMIN_KEY", &server.admin_key)
        .env("CONFORMANCE_SERVER_KEY", &sdk.token)
        .env("CONFORMANCE_CHANNEL", &channel)
        // Its report files and caches stay out of the repository.
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).expect("an output file"))
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&output)
                .expect("the output file"),
        ));
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {schemathesis}: {error}"));
        loop {
            if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
                return Some(status);
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("the waiting thread");
    let printed = std::fs::read_to_string(&output).unwrap_or_default();
    match status {
        Some(status) if status.success() => {
            eprintln!(
                "schemathesis passed in {:.0?}:\n{}",
                started.elapsed(),
                summary(&printed)
            )
        }
        Some(status) => panic!(
            "schemathesis found the document and the server disagree ({status}); \
             reproduce with the same seed against a server seeded as this test does:\n{printed}"
        ),
        None => panic!("schemathesis did not finish in {PATIENCE:?}:\n{printed}"),
    }
}

/// The end of schemathesis's report: what it tested, its warnings and its counts.
fn summary(printed: &str) -> &str {
    printed
        .find("=== WARNINGS ===")
        .or_else(|| printed.find("=== SUMMARY ==="))
        .map(|start| &printed[printed[..start].rfind('\n').map_or(0, |line| line + 1)..])
        .unwrap_or(printed)
}
