//! The server as a process: restarts, crashes right after a write, SIGTERM, the bootstrap
//! document, the generated admin key, and the configuration `--help` documents.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::admin::{normalized, yaml_to_json, FULL_DOCUMENT};
use crate::harness::Server;

async fn audit(server: &Server) -> Value {
    server
        .admin_get("/api/v1/audit?limit=500")
        .await
        .expect_status(200)
        .json()["entries"]
        .clone()
}

/// The whole audit log, read two entries at a time by following `next`.
async fn audit_in_pages_of_two(server: &Server) -> Value {
    let mut entries = Vec::new();
    let mut path = "/api/v1/audit?limit=2".to_string();
    loop {
        let page = server.admin_get(&path).await.expect_status(200).json();
        let page_entries = page["entries"].as_array().expect("entries");
        assert!(page_entries.len() <= 2, "{page}");
        entries.extend(page_entries.iter().cloned());
        match &page["next"] {
            Value::Null => break,
            next => {
                let next = next.as_u64().map_or_else(
                    || next.as_str().expect("a cursor").to_string(),
                    |next| next.to_string(),
                );
                path = format!("/api/v1/audit?limit=2&before={next}");
            }
        }
        assert!(entries.len() < 1000, "the audit cursor does not end");
    }
    Value::Array(entries)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_flags_keys_and_the_audit_log() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    server
        .import_yaml(
            "staging",
            "flags:\n  x: {type: boolean, variants: {on: true}, default_variant: \"on\"}\n",
        )
        .await
        .expect_status(200);
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    let retired = server
        .create_key("old-app", "client", Some("default"))
        .await;
    server
        .admin_delete(&format!("/api/v1/keys/{}", retired.id))
        .await;
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);

    let context = json!({"targetingKey": "user-1", "email": "ana@example.com"});
    let documents = (
        server.export("default").await,
        server.export("staging").await,
    );
    let revision = server.revision("default").await;
    let keys = server
        .admin_get("/api/v1/keys")
        .await
        .expect_status(200)
        .json();
    let entries = audit(&server).await;
    let evaluation = server
        .evaluate(&app.token, "new-checkout", context.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(evaluation["reason"], "DISABLED");

    server.restart().await;

    assert_eq!(
        (
            server.export("default").await,
            server.export("staging").await
        ),
        documents
    );
    assert_eq!(server.revision("default").await, revision);
    assert_eq!(
        server
            .admin_get("/api/v1/keys")
            .await
            .expect_status(200)
            .json(),
        keys
    );
    assert_eq!(audit(&server).await, entries);
    assert_eq!(audit_in_pages_of_two(&server).await, entries);
    let again = server
        .evaluate(&app.token, "new-checkout", context.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(again, evaluation);
    server
        .evaluate(&retired.token, "new-checkout", context)
        .await
        .expect_status(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_write_survives_sigkill() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let mut keys = Vec::new();
    for round in 1..=5u32 {
        let percentage = f64::from(round * 10) + 0.125;
        server
            .admin_put(
                "/api/v1/environments/default/flags/new-checkout/rollout/percentage",
                json!({"percentage": percentage}),
            )
            .await
            .expect_status(200);
        keys.push(
            server
                .create_key(&format!("key-{round}"), "server", Some("default"))
                .await,
        );
        let exited = server.kill();
        assert_eq!(exited.status.signal(), Some(libc::SIGKILL));

        server.start_again().await;
        let flag = server
            .admin_get("/api/v1/environments/default/flags/new-checkout")
            .await
            .expect_status(200)
            .json();
        assert_eq!(
            flag["flag"]["rollout"]["percentage"], percentage,
            "round {round}: {flag}"
        );
        for key in &keys {
            server
                .evaluate(&key.token, "new-checkout", json!({"userId": "user-1"}))
                .await
                .expect_status(200);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let address = server.address();
    let exited = server.terminate();
    assert!(
        exited.status.success(),
        "exit status {:?}; stderr:\n{}",
        exited.status,
        exited.stderr.join("\n")
    );
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "the port still accepts connections after the server exited"
    );
}

/// A bootstrap document in its own directory, as a deployment would mount it.
fn bootstrap_file(directory: &Path) -> String {
    let path = directory.join("flags.yaml");
    std::fs::write(&path, FULL_DOCUMENT).expect("writing the bootstrap document");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_document_is_imported_once_and_never_undoes_changes() {
    let directory = tempfile::tempdir().expect("a directory");
    let mut server = Server::builder()
        .env("RIPCORD_BOOTSTRAP", bootstrap_file(directory.path()))
        .start()
        .await;
    assert_eq!(
        normalized(&server.export("default").await),
        normalized(&yaml_to_json(FULL_DOCUMENT))
    );

    // Later changes: a flag killed, one deleted, one added.
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let deleted = server
        .admin_delete("/api/v1/environments/default/flags/theme")
        .await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "added", "flag": {"type": "boolean", "variants": {"on": true}, "default_variant": "on"}}),
        )
        .await
        .expect_status(201);
    let changed = server.export("default").await;
    let revision = server.revision("default").await;
    let bootstrap_entries = |entries: &Value| {
        entries
            .as_array()
            .expect("entries")
            .iter()
            .filter(|entry| entry["operation"] == "bootstrap")
            .count()
    };
    let imported = bootstrap_entries(&audit(&server).await);
    assert!(imported > 0, "the bootstrap import is not in the audit log");

    server.restart().await;
    assert_eq!(
        server.export("default").await,
        changed,
        "a restart undid later changes"
    );
    assert_eq!(server.revision("default").await, revision);
    assert_eq!(bootstrap_entries(&audit(&server).await), imported);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_document_does_not_come_back_after_every_flag_is_deleted() {
    let directory = tempfile::tempdir().expect("a directory");
    let mut server = Server::builder()
        .env("RIPCORD_BOOTSTRAP", bootstrap_file(directory.path()))
        .start()
        .await;
    let flags = server
        .admin_get("/api/v1/environments/default/flags")
        .await
        .expect_status(200)
        .json();
    for entry in flags.as_array().expect("flags") {
        let key = entry["key"].as_str().expect("a key");
        let deleted = server
            .admin_delete(&format!("/api/v1/environments/default/flags/{key}"))
            .await;
        assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    }
    let emptied = server.export("default").await;
    assert!(
        emptied.get("flags").is_none_or(|flags| flags == &json!({})),
        "{emptied}"
    );

    server.restart().await;
    let after = server.export("default").await;
    let back: Vec<&String> = after["flags"]
        .as_object()
        .map(|flags| flags.keys().collect())
        .unwrap_or_default();
    assert!(
        back.is_empty(),
        "a restart re-imported the bootstrap document over the deletion of every flag: {back:?}"
    );
    assert_eq!(after, emptied);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_admin_key_is_printed_once_and_never_logged() {
    let mut server = Server::builder().generated_admin_key().start().await;
    let token = server.admin_key.clone();
    assert!(!token.is_empty());
    let keys = server
        .admin_get("/api/v1/keys")
        .await
        .expect_status(200)
        .json();
    let admins: Vec<&Value> = keys
        .as_array()
        .expect("keys")
        .iter()
        .filter(|key| key["scope"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{keys}");

    let first = server.restart().await;
    let printed = |lines: &[String]| lines.iter().filter(|line| line.contains(&token)).count();
    assert_eq!(
        printed(&first.stdout),
        1,
        "stdout of the first start: {:?}",
        first.stdout
    );
    assert_eq!(printed(&first.stderr), 0, "the admin key is in the logs");

    // The key outlives the restart, and no new one is made.
    server.admin_get("/api/v1/keys").await.expect_status(200);
    let second = server.terminate();
    assert!(second.status.success());
    assert!(
        !second.stdout.iter().any(|line| line.contains("admin key")),
        "a restart printed a key again: {:?}",
        second.stdout
    );
    server.start_again().await;
    assert_eq!(
        server
            .admin_get("/api/v1/keys")
            .await
            .expect_status(200)
            .json(),
        keys
    );
}

#[test]
fn help_lists_every_environment_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"))
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("running --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);

    // Every variable the server's source mentions, whether clap reads it or code does.
    let mut variables = BTreeSet::new();
    let mut directories = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src")];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).expect("the server's sources") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                directories.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let source = std::fs::read_to_string(&path).expect("a source file");
                for (start, _) in source.match_indices("RIPCORD_") {
                    let name: String = source[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    variables.insert(name);
                }
            }
        }
    }
    for expected in [
        "RIPCORD_HTTP_ADDR",
        "RIPCORD_DATA_DIR",
        "RIPCORD_ADMIN_KEY",
        "RIPCORD_BOOTSTRAP",
    ] {
        assert!(
            variables.contains(expected),
            "{expected} not found in the sources"
        );
    }
    let missing: Vec<_> = variables
        .iter()
        .filter(|name| !help.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "--help does not mention {missing:?}:\n{help}"
    );
}

/// Limits guard what may be written, not what was: lowering one must not stop a server
/// from starting on data written under the old limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_lowered_limit_does_not_stop_a_restart() {
    let mut server = Server::start().await;
    server
        .import_yaml(
            "default",
            "flags:\n  checkout-redesign: {type: boolean, variants: {on: true, off: false}, default_variant: \"on\", client_visible: true}\n",
        )
        .await
        .expect_status(200);
    let app = server.create_key("app", "client", Some("default")).await;
    let exited = server.terminate();
    assert!(exited.status.success(), "{:?}", exited.stderr);

    server.set_env("RIPCORD_MAX_KEY_LENGTH", 12);
    server.start_again().await;
    let reply = server
        .evaluate(
            &app.token,
            "checkout-redesign",
            json!({"targetingKey": "u"}),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(reply["value"], json!(true), "{reply}");
    // New writes obey the new limit.
    let refused = server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "another-long-key", "flag": {"type": "boolean", "variants": {"on": true}, "default_variant": "on"}}),
        )
        .await
        .expect_status(400)
        .json();
    assert_eq!(
        refused["path"],
        json!("flags.another-long-key"),
        "{refused}"
    );
}

/// The configured admin key cannot be revoked while it is configured, so a guessable one
/// is refused at start, with a message that says what to do.
#[test]
fn a_short_configured_admin_key_is_refused() {
    let data = tempfile::tempdir().expect("a data directory");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"))
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RIPCORD_ADMIN_KEY", "admin")
        .env("NO_COLOR", "1")
        .output()
        .expect("running the server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RIPCORD_ADMIN_KEY is 5 characters; use at least 24"),
        "{stderr}"
    );
}
