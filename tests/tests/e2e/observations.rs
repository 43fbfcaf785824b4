//! Metric reporting as SDKs and apps see it, over HTTP (`POST /api/v1/metrics`) and gRPC
//! (`Report`): who may report, what a batch must look like, and how observations for flags
//! without a running ramp are answered. Observations accepted against a running ramp are in
//! [`crate::ramps`]; their durability and every rejection reason are tested inside the server
//! crate (`ingest::tests`).

use reqwest::Method;
use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::{Body, Server};

/// A flag with a ramp that nobody started, a server-side flag, and a flag without a ramp.
const DOCUMENT: &str = r#"
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    client_visible: true
    rollout:
      stickiness: userId
      percentage: 0
      split: [{variant: "on", weight: 1}]
    ramp:
      stages: [1, 5, 25, 50, 100]
      min_stage_duration: 10m
      warmup: 2m
      guards:
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
        - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.002, min_samples: 2000}
  search-backend:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
  dark-mode:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    client_visible: true
"#;

async fn server_with(env: &[(&str, &str)]) -> Server {
    Server::start_with(env, DOCUMENT).await
}

fn observation(flag: &str, metric: &str, value: f64) -> Value {
    json!({
        "flag": flag,
        "metric": metric,
        "value": value,
        "cohort": "treatment",
        "stage": 0,
        "unit": "user-1",
        "timestamp": "2026-11-28T10:00:00Z"
    })
}

async fn post_metrics(server: &Server, key: Option<&str>, body: Body) -> crate::harness::Reply {
    server
        .call(Method::POST, "/api/v1/metrics", key, body)
        .await
}

async fn ripcord(server: &Server) -> pb::ripcord_client::RipcordClient<Channel> {
    let channel = Channel::from_shared(server.grpc_url().to_string())
        .expect("a gRPC URL")
        .connect()
        .await
        .expect("the gRPC port accepts connections");
    pb::ripcord_client::RipcordClient::new(channel)
}

fn report(observations: Vec<pb::Observation>, key: Option<&str>) -> Request<pb::ReportRequest> {
    let mut request = Request::new(pb::ReportRequest {
        observations,
        batch_id: String::new(),
    });
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ASCII metadata"),
        );
    }
    request
}

fn pb_observation(flag: &str, metric: &str, value: f64) -> pb::Observation {
    pb::Observation {
        flag: flag.to_string(),
        metric: metric.to_string(),
        value,
        cohort: "control".to_string(),
        stage: 0,
        unit: "user-2".to_string(),
        timestamp_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn observations_for_flags_without_a_running_ramp_are_rejected_one_by_one() {
    let mut server = server_with(&[]).await;
    let app = server.create_key("app", "client", Some("default")).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let batch = json!({"observations": [
        observation("new-checkout", "checkout_latency_ms", 123.4),
        observation("search-backend", "crash_rate", 1.0),
        observation("no-such-flag", "crash_rate", 0.0),
        {"flag": "dark-mode", "metric": "m", "value": 1, "cohort": "control", "stage": 3},
    ]});
    let expected = json!({
        "accepted": 0,
        "rejected": [
            {"index": 0, "reason": "unknown flag `new-checkout` or no running ramp"},
            {"index": 1, "reason": "unknown flag `search-backend` or no running ramp"},
            {"index": 2, "reason": "unknown flag `no-such-flag` or no running ramp"},
            {"index": 3, "reason": "unknown flag `dark-mode` or no running ramp"},
        ]
    });
    for key in [&app.token, &backend.token] {
        let answer = post_metrics(&server, Some(key), Body::Json(batch.clone()))
            .await
            .expect_status(200)
            .json();
        assert_eq!(answer, expected);
    }
    let empty = post_metrics(
        &server,
        Some(&backend.token),
        Body::Json(json!({"observations": []})),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(empty, json!({"accepted": 0, "rejected": []}));

    let answer = ripcord(&server)
        .await
        .report(report(
            vec![
                pb_observation("new-checkout", "checkout_latency_ms", 80.0),
                pb_observation("dark-mode", "crash_rate", 1.0),
            ],
            Some(&app.token),
        ))
        .await
        .expect("Report answers")
        .into_inner();
    assert_eq!(answer.accepted, 0);
    let rejected: Vec<(u32, &str)> = answer
        .rejected
        .iter()
        .map(|rejection| (rejection.index, rejection.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (0, "unknown flag `new-checkout` or no running ramp"),
            (1, "unknown flag `dark-mode` or no running ramp"),
        ]
    );

    // Ingestion's stop is part of a clean stop.
    server.restart().await;
    let answer = post_metrics(&server, Some(&app.token), Body::Json(batch))
        .await
        .expect_status(200)
        .json();
    assert_eq!(answer, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_client_and_server_keys_report() {
    let server = server_with(&[]).await;
    let batch = json!({"observations": [observation("new-checkout", "crash_rate", 1.0)]});

    let missing = post_metrics(&server, None, Body::Json(batch.clone()))
        .await
        .expect_status(401)
        .json();
    assert_eq!(missing["error"], json!("unauthorized"), "{missing}");
    let unknown = post_metrics(&server, Some("not-a-key"), Body::Json(batch.clone()))
        .await
        .expect_status(401)
        .json();
    assert_eq!(unknown["error"], json!("unauthorized"), "{unknown}");
    let admin = post_metrics(&server, Some(&server.admin_key), Body::Json(batch.clone()))
        .await
        .expect_status(403)
        .json();
    assert_eq!(
        admin["message"],
        json!("admin keys do not report metrics: use a client or server key of the environment"),
        "{admin}"
    );
    // Refused before the body is read: a bad body does not change the answer.
    post_metrics(&server, Some(&server.admin_key), Body::raw_json("{"))
        .await
        .expect_status(403);

    let mut client = ripcord(&server).await;
    let observations = || vec![pb_observation("new-checkout", "crash_rate", 1.0)];
    let status = client
        .report(report(observations(), None))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .report(report(observations(), Some("not-a-key")))
        .await
        .expect_err("an unknown key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .report(report(observations(), Some(&server.admin_key)))
        .await
        .expect_err("an admin key");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("admin keys do not report metrics"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_a_batch_is_refused_with_its_path() {
    let server = server_with(&[]).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let cases = [
        (
            json!({"observations": [
                observation("new-checkout", "crash_rate", 1.0),
                {"flag": "new-checkout", "metric": "crash_rate", "value": "fast", "cohort": "treatment", "stage": 0},
            ]}),
            Some("observations[1].value"),
        ),
        (
            json!({"observations": [{"flag": "new-checkout", "metric": "crash_rate", "value": 1, "cohort": "treatment"}]}),
            Some("observations[0]"),
        ),
        (
            json!({"observations": [{"flag": "new-checkout", "metric": "crash_rate", "value": 1, "cohort": "treatment", "stage": -1}]}),
            Some("observations[0].stage"),
        ),
        (
            json!({"observations": [{"flag": "new-checkout", "metric": "crash_rate", "value": 1, "cohort": "treatment", "stage": 0, "weight": 2}]}),
            Some("observations[0].weight"),
        ),
        (
            json!({"observations": [{"flag": "new-checkout", "metric": "crash_rate", "value": 1, "cohort": "treatment", "stage": 0, "timestamp": 1764324000}]}),
            Some("observations[0].timestamp"),
        ),
        (json!({"observations": {}}), Some("observations")),
        (json!({}), None),
        (json!([]), None),
    ];
    for (body, path) in cases {
        let answer = post_metrics(&server, Some(&backend.token), Body::Json(body.clone()))
            .await
            .expect_status(400)
            .json();
        assert_eq!(answer["error"], json!("bad_request"), "{body}: {answer}");
        assert_eq!(answer["path"], json!(path), "{body}: {answer}");
    }
    for raw in ["", "{", "not json", "{\"observations\": []} trailing"] {
        let answer = post_metrics(&server, Some(&backend.token), Body::raw_json(raw))
            .await
            .expect_status(400)
            .json();
        assert_eq!(answer["error"], json!("bad_request"), "{raw:?}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_over_the_limit_are_refused_naming_it() {
    let server = server_with(&[("RIPCORD_MAX_OBSERVATIONS_PER_BATCH", "5")]).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let batch = |count: usize| json!({"observations": vec![observation("new-checkout", "crash_rate", 1.0); count]});
    let answer = post_metrics(&server, Some(&backend.token), Body::Json(batch(5)))
        .await
        .expect_status(200)
        .json();
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(5));
    let refused = post_metrics(&server, Some(&backend.token), Body::Json(batch(6)))
        .await
        .expect_status(413)
        .json();
    assert_eq!(refused["error"], json!("limit_exceeded"), "{refused}");
    assert_eq!(
        refused["message"],
        json!(
            "6 observations is over the limit of 5 per batch (RIPCORD_MAX_OBSERVATIONS_PER_BATCH)"
        )
    );
    // The body may take 512 bytes per observation of the limit, or RIPCORD_MAX_BODY_BYTES
    // (256 KiB by default) if that is more, as it is here; the refusal names that one.
    let padding = "x".repeat(300 * 1024);
    let huge = json!({"observations": [{"flag": padding, "metric": "m", "value": 1, "cohort": "control", "stage": 0}]});
    let refused = post_metrics(&server, Some(&backend.token), Body::Json(huge))
        .await
        .expect_status(413)
        .json();
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("RIPCORD_MAX_BODY_BYTES")),
        "{refused}"
    );

    let status = ripcord(&server)
        .await
        .report(report(
            vec![pb_observation("new-checkout", "crash_rate", 1.0); 6],
            Some(&backend.token),
        ))
        .await
        .expect_err("too many observations");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("over the limit of 5 per batch (RIPCORD_MAX_OBSERVATIONS_PER_BATCH)"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn web_apps_may_report_from_any_origin_and_the_api_document_lists_the_endpoint() {
    let server = server_with(&[]).await;
    let preflight = server
        .client()
        .request(Method::OPTIONS, server.url("/api/v1/metrics"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("the server answers");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight
        .headers()
        .get("access-control-allow-origin")
        .and_then(|value| value.to_str().ok());
    assert!(
        matches!(allowed, Some("*") | Some("https://shop.example")),
        "{allowed:?}"
    );

    let document = server
        .call(Method::GET, "/api/v1/openapi.json", None, Body::None)
        .await
        .expect_status(200)
        .json();
    let operation = &document["paths"]["/api/v1/metrics"]["post"];
    assert_eq!(operation["tags"], json!(["metrics"]), "{operation}");
    for status in ["200", "400", "401", "403", "413"] {
        assert!(
            operation["responses"].get(status).is_some(),
            "{status} missing: {operation}"
        );
    }
}
