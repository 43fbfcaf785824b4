//! TLS on both ports, with a certificate each test makes: OFREP over https, gRPC over TLS,
//! plain text refused on the TLS ports, and bad files refused at start.

use std::path::Path;

use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::harness::Server;

const DOCUMENT: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
"#;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into
/// `directory`; returns the certificate's PEM and the two paths.
fn certificate(directory: &Path) -> (String, String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("a self-signed certificate");
    let cert = made.cert.pem();
    let cert_path = directory.join("cert.pem");
    let key_path = directory.join("key.pem");
    std::fs::write(&cert_path, &cert).expect("writing the certificate");
    std::fs::write(&key_path, made.key_pair.serialize_pem()).expect("writing the key");
    (
        cert,
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

async fn tls_server(directory: &Path) -> (Server, String) {
    let (cert, cert_path, key_path) = certificate(directory);
    let server = Server::builder()
        .env("RIPCORD_TLS_CERT", cert_path)
        .env("RIPCORD_TLS_KEY", key_path)
        .tls(&cert)
        .start()
        .await;
    server
        .import_yaml("default", DOCUMENT)
        .await
        .expect_status(200);
    (server, cert)
}

#[tokio::test(flavor = "multi_thread")]
async fn ofrep_and_grpc_are_served_over_tls_and_plain_text_is_refused() {
    let directory = tempfile::tempdir().expect("a directory");
    let (server, cert) = tls_server(directory.path()).await;
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    assert!(server.url("/").starts_with("https://"));

    // OFREP over https, with the certificate trusted.
    let answer = server
        .evaluate(&key.token, "checkout", json!({"targetingKey": "user-1"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(answer["value"], json!(true), "{answer}");

    // gRPC over TLS.
    let channel = Channel::from_shared(server.grpc_url().to_string())
        .expect("a gRPC URL")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert))
                .domain_name("localhost"),
        )
        .expect("a TLS configuration")
        .connect()
        .await
        .expect("a TLS connection to the gRPC port");
    let mut request = tonic::Request::new(pb::EvaluateRequest {
        flag_key: "checkout".to_string(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", key.token).parse().expect("ASCII"),
    );
    let evaluated = pb::ripcord_client::RipcordClient::new(channel)
        .evaluate(request)
        .await
        .expect("an evaluation over TLS")
        .into_inner();
    assert_eq!(evaluated.flag_key, "checkout");

    // Plain text to either TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let address = server.address();
    let refused = plain.get(format!("http://{address}/healthz")).send().await;
    assert!(
        refused.is_err(),
        "plain HTTP to the TLS port was answered: {refused:?}"
    );
    let grpc_address = server.grpc_url().trim_start_matches("https://").to_string();
    let refused = Channel::from_shared(format!("http://{grpc_address}"))
        .expect("a gRPC URL")
        .connect()
        .await;
    let refused = match refused {
        Err(error) => Err(error.to_string()),
        Ok(channel) => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ())
                .map_err(|status| status.to_string())
        }
    };
    assert!(refused.is_err(), "plain gRPC to the TLS port was answered");
}

fn start_failure(env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("a data directory");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"));
    command
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("RIPCORD_ADMIN_KEY", crate::harness::ADMIN_KEY)
        .env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running the server");
    assert!(!output.status.success(), "the server started with {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_or_lone_tls_file_stops_the_start_naming_its_setting() {
    let directory = tempfile::tempdir().expect("a directory");
    let (_, cert_path, key_path) = certificate(directory.path());
    let garbage = directory.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("writing");
    let garbage = garbage.display().to_string();
    let missing = directory.path().join("missing.pem").display().to_string();

    let stderr = start_failure(&[("RIPCORD_TLS_CERT", &cert_path)]);
    assert!(
        stderr.contains("RIPCORD_TLS_CERT and RIPCORD_TLS_KEY go together"),
        "{stderr}"
    );
    let stderr = start_failure(&[
        ("RIPCORD_TLS_CERT", &missing),
        ("RIPCORD_TLS_KEY", &key_path),
    ]);
    assert!(stderr.contains("RIPCORD_TLS_CERT: reading"), "{stderr}");
    let stderr = start_failure(&[
        ("RIPCORD_TLS_CERT", &garbage),
        ("RIPCORD_TLS_KEY", &key_path),
    ]);
    assert!(stderr.contains("RIPCORD_TLS_CERT"), "{stderr}");
    let stderr = start_failure(&[
        ("RIPCORD_TLS_CERT", &cert_path),
        ("RIPCORD_TLS_KEY", &garbage),
    ]);
    assert!(stderr.contains("RIPCORD_TLS_KEY"), "{stderr}");
}
