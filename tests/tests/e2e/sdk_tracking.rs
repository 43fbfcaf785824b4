//! The SDK's tracking against a real server: a ramp is started, SDKs evaluate for many units,
//! track guard metrics, flush, and the server accepts every observation, over gRPC `Report`
//! (local mode) and `POST /api/v1/metrics` (remote mode). And the instance id: requests
//! that carry one are served, whatever it is.

use std::time::Duration;

use reqwest::Method;
use ripcord_proto::pb::ripcord::v1::{ripcord_client::RipcordClient, EvaluateRequest};
use ripcord_sdk::{Context, LocalClient, RemoteClient, Stage, Tracked};
use serde_json::json;

use crate::harness::{Body, Server};

const PATIENCE: Duration = Duration::from_secs(20);

/// A ramp whose first stage (10%) puts about a fifth of the units in a cohort: 10% in the
/// treatment, as many in the control. It stays at that stage for the whole test.
const RAMPED: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    client_visible: true
    rollout: {stickiness: userId, percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [10, 50, 100]
      min_stage_duration: 1h
      # As many control units as treatment units: a fifth of all units are in a cohort.
      control: equal
      guards:
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 100}
        - {metric: checkout_failed, category: stability, kind: rate, better: lower, tolerance: 0.01, min_samples: 100}
"#;

fn user(id: usize) -> Context {
    [
        ("targetingKey", json!(format!("user-{id}"))),
        ("userId", json!(format!("user-{id}"))),
    ]
    .into_iter()
    .collect()
}

/// A server with the ramp started.
async fn ramping_server() -> Server {
    let server = Server::start().await;
    server
        .import_yaml("default", RAMPED)
        .await
        .expect_status(200);
    let started = server
        .admin_post(
            "/api/v1/environments/default/flags/new-checkout/ramp/start",
            json!({}),
        )
        .await;
    assert!(
        started.status == 200 || started.status == 201,
        "starting the ramp: {} {}",
        started.status,
        started.text()
    );
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_client_reports_tagged_observations_over_grpc_and_the_server_accepts_them() {
    let server = ramping_server().await;
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let client = LocalClient::builder()
        .server(server.grpc_url(), &key.token)
        .instance_id("checkout-service-1")
        .build()
        .unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    // The ruleset with the started ramp may come a moment after the first one.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while (0..200).all(|id| {
        client
            .get_bool_details("new-checkout", &user(id), false)
            .metadata
            .stage
            .is_none()
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ramp did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut in_cohort = 0u64;
    for id in 0..2_000 {
        let context = user(id);
        let details = client.get_bool_details("new-checkout", &context, false);
        let latency = if details.value { 120.0 } else { 100.0 };
        for value in [latency, latency + 20.0] {
            client.track("new-checkout", &context, "checkout_latency_ms", value);
        }
        let tracked = client.track(
            "new-checkout",
            &context,
            "checkout_failed",
            f64::from(u8::from(id % 50 == 0)),
        );
        if details.metadata.cohort.is_some() {
            assert_eq!(details.metadata.stage, Some(Stage::FIRST));
            assert_eq!(tracked, Tracked::Recorded);
            in_cohort += 1;
        } else {
            assert_eq!(tracked, Tracked::Untagged);
        }
    }
    assert!(
        (250..=550).contains(&in_cohort),
        "about a fifth: {in_cohort}"
    );
    client.flush().await.unwrap();

    let tracking = client.status().tracking;
    assert_eq!(tracking.sent, 2 * in_cohort, "one per unit and metric");
    assert_eq!(tracking.accepted, tracking.sent, "{tracking:?}");
    assert_eq!(
        (tracking.rejected, tracking.dropped),
        (0, 0),
        "{tracking:?}"
    );
    assert_eq!(tracking.untagged, 3 * (2_000 - in_cohort));
    assert_eq!(tracking.pending, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_report_over_http_with_their_client_key_and_the_server_accepts_them() {
    let server = ramping_server().await;
    let app_key = server.create_key("app", "client", Some("default")).await;
    let mut in_cohort = 0u64;
    let mut accepted = 0u64;
    for device in 0..60 {
        let app = RemoteClient::builder(server.url(""), &app_key.token)
            .context(user(device))
            .build()
            .unwrap();
        app.wait_ready(PATIENCE).await.unwrap();
        let details = app.get_bool_details("new-checkout", false);
        app.track_value("new-checkout", "checkout_latency_ms", 80.0);
        app.track_value("new-checkout", "checkout_latency_ms", 100.0);
        app.track_rate("new-checkout", "checkout_failed", false);
        app.flush().await.unwrap();
        let tracking = app.status().tracking;
        if details.metadata.cohort.is_some() {
            in_cohort += 1;
            assert_eq!(tracking.sent, 2, "{tracking:?}");
        } else {
            assert_eq!((tracking.sent, tracking.untagged), (0, 3), "{tracking:?}");
        }
        assert_eq!(
            (tracking.rejected, tracking.dropped),
            (0, 0),
            "{tracking:?}"
        );
        accepted += tracking.accepted;
    }
    assert!(in_cohort > 0, "some of 60 devices are in a cohort");
    assert_eq!(accepted, 2 * in_cohort);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_answers_bad_observations_one_by_one() {
    let server = ramping_server().await;
    let app_key = server.create_key("app", "client", Some("default")).await;
    let reply = server
        .call(
            Method::POST,
            "/api/v1/metrics",
            Some(&app_key.token),
            Body::Json(json!({"observations": [
                {"flag": "new-checkout", "metric": "checkout_latency_ms", "value": 90.0,
                 "cohort": "control", "stage": 0},
                {"flag": "new-checkout", "metric": "checkout_failed", "value": 0.5,
                 "cohort": "control", "stage": 0},
                {"flag": "no-such-flag", "metric": "checkout_failed", "value": 1,
                 "cohort": "treatment", "stage": 0}
            ]})),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    let rejected: Vec<u64> = reply["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|rejection| rejection["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2], "{reply}");
}

/// Every request may name its instance; an id the server cannot count (too long, not
/// printable ASCII) is ignored, never a reason to refuse the request.
#[tokio::test(flavor = "multi_thread")]
async fn requests_with_an_instance_id_are_served_and_bad_ids_are_ignored() {
    let server = Server::start().await;
    server
        .import_yaml("default", RAMPED)
        .await
        .expect_status(200);
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let app = server.create_key("app", "client", Some("default")).await;
    let too_long = "x".repeat(300);
    let ids: [&[u8]; 4] = [b"pod-7", too_long.as_bytes(), b"caf\xc3\xa9", b"tab\there"];
    for id in ids {
        let header = reqwest::header::HeaderValue::from_bytes(id).unwrap();
        let post = |path: &str, key: &str| {
            server
                .client()
                .post(server.url(path))
                .bearer_auth(key)
                .header("x-ripcord-instance", header.clone())
                .json(&json!({"context": {"userId": "user-1"}}))
        };
        for (path, key) in [
            ("/ofrep/v1/evaluate/flags/new-checkout", &app.token),
            ("/ofrep/v1/evaluate/flags", &app.token),
        ] {
            let response = post(path, key).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path} with {id:?}");
        }
        let ruleset = server
            .client()
            .get(server.url("/api/v1/sdk/ruleset"))
            .bearer_auth(&backend.token)
            .header("x-ripcord-instance", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(ruleset.status(), 200, "ruleset with {id:?}");
        let mut stream = server
            .client()
            .get(server.url("/api/v1/sdk/stream"))
            .bearer_auth(&backend.token)
            .header("x-ripcord-instance", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200, "stream with {id:?}");
        let first = tokio::time::timeout(PATIENCE, stream.chunk())
            .await
            .expect("the stream opens")
            .unwrap()
            .unwrap_or_default();
        assert!(!first.is_empty());
    }

    // gRPC metadata is ASCII: a long id is the bad one there.
    let mut grpc = RipcordClient::connect(server.grpc_url().to_string())
        .await
        .unwrap();
    for id in ["pod-7", too_long.as_str()] {
        let mut request = tonic::Request::new(EvaluateRequest {
            flag_key: "new-checkout".to_string(),
            context: None,
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", backend.token).parse().unwrap(),
        );
        request
            .metadata_mut()
            .insert("x-ripcord-instance", id.parse().unwrap());
        let evaluation = grpc.evaluate(request).await.unwrap().into_inner();
        assert_eq!(evaluation.error_code, "", "{id}");
    }

    // The SDKs send one on every request, and work as ever.
    let client = LocalClient::builder()
        .server(server.grpc_url(), &backend.token)
        .instance_id("pod-8")
        .build()
        .unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let phone = RemoteClient::builder(server.url(""), &app.token)
        .instance_id("phone-1")
        .build()
        .unwrap();
    phone.wait_ready(PATIENCE).await.unwrap();
    assert_eq!(phone.instance_id(), "phone-1");
    assert!(
        !phone.get_bool("new-checkout", true),
        "the ramp has not started: 0%"
    );
}
