//! Tracking on the wire, against small in-process servers: what a local client sends over
//! gRPC `Report`, what a remote client posts to `/api/v1/metrics`, the instance id on every
//! request, retries while the server fails, and what is dropped when it refuses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ripcord_engine::{Context, Document, Ruleset, Stage};
use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::error::Error;
use crate::local::LocalClient;
use crate::remote::RemoteClient;
use crate::report::Timing;
use crate::tracking::Tracked;

const PATIENCE: Duration = Duration::from_secs(10);

/// Retries come quickly in tests; windows close only when a test flushes.
fn quick_retries() -> Timing {
    Timing {
        flush_interval: Duration::from_secs(3600),
        first_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(100),
    }
}

/// Waits until `done` holds, at most `PATIENCE`.
async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- local mode over gRPC ----------------------------------------------------------------

/// A flag at the second stage (5%) of its ramp, compared with a control of its size, with a rule that takes staff out of the
/// rollout, and a flag without a ramp.
const RAMPED: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - name: staff
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: "on"}
    rollout: {stickiness: userId, percentage: 5, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [1, 5, 25]
      min_stage_duration: 10m
      # A control as large as the treatment leaves most units in no cohort.
      control: equal
      guards:
        - {metric: latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 100}
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.01, min_samples: 100}
  plain:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout: {percentage: 50, split: [{variant: "on", weight: 1}]}
"#;

/// One `Report` call as received.
struct Report {
    authorization: String,
    instance: String,
    observations: Vec<pb::Observation>,
}

#[derive(Default)]
struct FakeRipcord {
    ruleset: Vec<u8>,
    watch_instances: Mutex<Vec<String>>,
    reports: Mutex<Vec<Report>>,
    /// Keeps the streams open.
    streams: Mutex<Vec<mpsc::Sender<Result<pb::WatchResponse, tonic::Status>>>>,
}

fn text(metadata: &tonic::metadata::MetadataMap, name: &str) -> String {
    metadata
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The service over the shared state, which the test keeps to look at.
struct Serving(Arc<FakeRipcord>);

#[tonic::async_trait]
impl pb::ripcord_server::Ripcord for Serving {
    async fn evaluate(
        &self,
        _: tonic::Request<pb::EvaluateRequest>,
    ) -> Result<tonic::Response<pb::Evaluation>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    async fn evaluate_all(
        &self,
        _: tonic::Request<pb::EvaluateAllRequest>,
    ) -> Result<tonic::Response<pb::EvaluateAllResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    type WatchStream = ReceiverStream<Result<pb::WatchResponse, tonic::Status>>;

    async fn watch(
        &self,
        request: tonic::Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        self.0
            .watch_instances
            .lock()
            .unwrap()
            .push(text(request.metadata(), "x-ripcord-instance"));
        let (sender, receiver) = mpsc::channel(4);
        sender
            .send(Ok(pb::WatchResponse {
                revision: 7,
                event: Some(pb::watch_response::Event::Ruleset(
                    self.0.ruleset.clone().into(),
                )),
            }))
            .await
            .unwrap();
        self.0.streams.lock().unwrap().push(sender);
        Ok(tonic::Response::new(ReceiverStream::new(receiver)))
    }

    async fn report(
        &self,
        request: tonic::Request<pb::ReportRequest>,
    ) -> Result<tonic::Response<pb::ReportResponse>, tonic::Status> {
        let (metadata, _, request) = request.into_parts();
        let count = request.observations.len() as u64;
        self.0.reports.lock().unwrap().push(Report {
            authorization: text(&metadata, "authorization"),
            instance: text(&metadata, "x-ripcord-instance"),
            observations: request.observations,
        });
        // The first of each batch refused, so that the counters have both kinds to count.
        Ok(tonic::Response::new(pb::ReportResponse {
            accepted: count.saturating_sub(1),
            rejected: vec![pb::Rejection {
                index: 0,
                reason: "stale stage".to_string(),
            }],
            duplicate: false,
        }))
    }
}

async fn serve_grpc(fake: Arc<FakeRipcord>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::ripcord_server::RipcordServer::new(Serving(fake)))
            .serve_with_incoming(incoming),
    );
    url
}

fn user(id: usize, email: &str) -> Context {
    [("userId", json!(format!("u{id}"))), ("email", json!(email))]
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_local_client_reports_one_tagged_observation_per_unit_over_grpc() {
    let mut ruleset = Ruleset::from_document("prod", Document::from_text(RAMPED).unwrap());
    ruleset.revision = 7;
    let fake = Arc::new(FakeRipcord {
        ruleset: ruleset.as_ref().to_json(),
        ..FakeRipcord::default()
    });
    let url = serve_grpc(Arc::clone(&fake)).await;
    let client = LocalClient::builder()
        .server(url, "ripcord-server-key")
        .instance_id("pod-7")
        .timing(quick_retries())
        .build()
        .unwrap();
    client.wait_ready(PATIENCE).await.unwrap();

    let mut cohorts = std::collections::HashMap::new();
    let mut outside = 0;
    for id in 0..2_000 {
        let context = user(id, "someone@mail.test");
        let details = client.get_bool_details("checkout", &context, false);
        for (metric, value) in [("latency_ms", 10.0), ("latency_ms", 20.0), ("errors", 0.0)] {
            let tracked = client.track("checkout", &context, metric, value);
            match &details.metadata.cohort {
                Some(_) => assert_eq!(tracked, Tracked::Recorded),
                None => assert_eq!(tracked, Tracked::Untagged),
            }
        }
        match details.metadata.cohort {
            Some(cohort) => {
                assert_eq!(
                    details.metadata.stage,
                    Some(Stage::new(1)),
                    "5% is the second stage"
                );
                cohorts.insert(format!("u{id}"), cohort);
            }
            None => outside += 1,
        }
    }
    assert!(cohorts.len() > 100 && outside > 1_000, "{}", cohorts.len());
    client.flush().await.unwrap();

    let reports = fake.reports.lock().unwrap();
    let observations: Vec<&pb::Observation> = reports
        .iter()
        .flat_map(|report| &report.observations)
        .collect();
    assert_eq!(
        observations.len(),
        2 * cohorts.len(),
        "one per unit and metric"
    );
    for observation in &observations {
        assert_eq!(observation.flag, "checkout");
        assert_eq!(observation.stage, 1);
        assert_eq!(cohorts[&observation.unit], observation.cohort);
        let expected = if observation.metric == "latency_ms" {
            15.0
        } else {
            0.0
        };
        assert_eq!(observation.value, expected, "{observation:?}");
        assert!(observation.timestamp_ms.unwrap() > 1_700_000_000_000);
    }
    for report in reports.iter() {
        assert_eq!(report.authorization, "Bearer ripcord-server-key");
        assert_eq!(report.instance, "pod-7");
    }
    assert_eq!(*fake.watch_instances.lock().unwrap(), ["pod-7"]);

    let status = client.status().tracking;
    let total = observations.len() as u64;
    let batches = reports.len() as u64;
    assert_eq!(status.sent, total);
    assert_eq!(
        (status.accepted, status.rejected),
        (total - batches, batches)
    );
    assert_eq!(status.last_rejection.as_deref(), Some("stale stage"));
    assert_eq!(status.untagged, 3 * outside);
    assert_eq!((status.pending, status.dropped), (0, 0));
}

#[tokio::test]
async fn a_local_client_tags_with_the_units_last_evaluation_and_knows_its_guards() {
    let mut ruleset = Ruleset::from_document("prod", Document::from_text(RAMPED).unwrap());
    ruleset.revision = 7;
    let fake = Arc::new(FakeRipcord {
        ruleset: ruleset.as_ref().to_json(),
        ..FakeRipcord::default()
    });
    let url = serve_grpc(Arc::clone(&fake)).await;
    let client = LocalClient::builder()
        .server(url, "ripcord-server-key")
        .timing(quick_retries())
        .build()
        .unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let id = (0..)
        .find(|id| {
            client
                .get_bool_details("checkout", &user(*id, "a@mail.test"), false)
                .metadata
                .cohort
                .is_some()
        })
        .unwrap();
    let member = user(id, "a@mail.test");
    let as_staff = user(id, "a@example.com");

    assert_eq!(
        client.track("checkout", &member, "latency_ms", 5.0),
        Tracked::Recorded
    );
    // The same unit, served by the staff rule this time: no cohort, so its events from now
    // on are not the ramp's.
    assert!(client.get_bool("checkout", &as_staff, false));
    assert_eq!(
        client.track("checkout", &member, "latency_ms", 5.0),
        Tracked::Untagged
    );
    client.get_bool("checkout", &member, false);
    assert_eq!(
        client.track("checkout", &member, "errors", 1.0),
        Tracked::Recorded
    );
    assert!(matches!(
        client.track("checkout", &member, "errors", 0.5),
        Tracked::Dropped(reason) if reason.contains("rate")
    ));
    assert!(matches!(
        client.track("checkout", &member, "revenue", 3.0),
        Tracked::Dropped(reason) if reason.contains("not a guard metric")
    ));
    assert_eq!(
        client.track("plain", &member, "latency_ms", 5.0),
        Tracked::Untagged,
        "a flag without a ramp puts no unit in a cohort"
    );
    let status = client.status().tracking;
    assert_eq!((status.untagged, status.dropped, status.pending), (2, 2, 2));

    client.close();
    eventually(|| fake.reports.lock().unwrap().len() == 1).await;
    assert_eq!(
        fake.watch_instances.lock().unwrap()[0],
        crate::instance::of_process(),
        "without an id, the process's own"
    );
}

#[tokio::test]
async fn a_client_without_a_server_does_not_report() {
    let client = LocalClient::builder()
        .bootstrap_text(RAMPED)
        .build()
        .unwrap();
    let member = user(1, "a@mail.test");
    client.get_bool("checkout", &member, false);
    assert!(matches!(
        client.track("checkout", &member, "latency_ms", 1.0),
        Tracked::Dropped(_)
    ));
    client.flush().await.unwrap();
    assert_eq!(
        client.status().tracking,
        crate::tracking::TrackingStatus::default()
    );
    assert!(matches!(
        LocalClient::builder()
            .bootstrap_text(RAMPED)
            .instance_id("no spaces\u{7f}")
            .build(),
        Err(Error::InvalidInstanceId(_))
    ));
}

// ---- remote mode over HTTP ---------------------------------------------------------------

/// One request as received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: String,
    instance: String,
    body: Value,
}

type Answerer = dyn Fn(&Received) -> (u16, Value) + Send + Sync;

/// A tiny HTTP/1.1 server: one request per connection, answered by `answer`.
struct FakeHttp {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeHttp {
    async fn start(answer: Arc<Answerer>) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let (answer, log) = (Arc::clone(&answer), Arc::clone(&log));
                tokio::spawn(async move { respond(connection, &*answer, &log).await });
            }
        });
        FakeHttp { url, received }
    }

    fn metrics_requests(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == "/api/v1/metrics")
            .cloned()
            .collect()
    }
}

async fn respond(mut connection: TcpStream, answer: &Answerer, log: &Mutex<Vec<Received>>) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        match connection.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => bytes.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (field, value) = line.split_once(':')?;
                field
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while bytes.len() < head_end + length {
        match connection.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => bytes.extend_from_slice(&chunk[..read]),
        }
    }
    let request = Received {
        path: head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string(),
        authorization: header("authorization"),
        instance: header("x-ripcord-instance"),
        body: serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null),
    };
    log.lock().unwrap().push(request.clone());
    let (status, body) = answer(&request);
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = connection.write_all(response.as_bytes()).await;
    let _ = connection.shutdown().await;
}

/// The OFREP bulk answer: the app is in the treatment of `checkout` at stage 2; `plain`
/// has no cohort.
fn bulk() -> Value {
    json!({"flags": [
        {"key": "checkout", "value": true, "reason": "SPLIT", "variant": "on",
         "metadata": {"revision": 9, "cohort": "treatment", "stage": 2}},
        {"key": "plain", "value": false, "reason": "DEFAULT", "variant": "off",
         "metadata": {"revision": 3}}
    ]})
}

/// Answers OFREP with `bulk()`, and metrics with `metrics` (given the observations).
fn server(metrics: impl Fn(&[Value]) -> (u16, Value) + Send + Sync + 'static) -> Arc<Answerer> {
    Arc::new(move |request: &Received| match request.path.as_str() {
        "/ofrep/v1/evaluate/flags" => (200, bulk()),
        "/api/v1/metrics" => {
            let observations = request.body["observations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            metrics(&observations)
        }
        _ => (404, json!({"error": "no such route"})),
    })
}

fn accept_all(observations: &[Value]) -> (u16, Value) {
    (200, json!({"accepted": observations.len(), "rejected": []}))
}

async fn remote_client(url: &str, cache: Option<&std::path::Path>) -> RemoteClient {
    let mut builder = RemoteClient::builder(url, "ripcord-client-key")
        .context([("targetingKey", json!("device-1"))].into_iter().collect())
        .timing(quick_retries());
    if let Some(cache) = cache {
        builder = builder.cache_file(cache);
    }
    let client = builder.build().unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    client
}

#[tokio::test]
async fn a_remote_client_posts_the_apps_aggregates_tagged_with_what_it_read() {
    let fake = FakeHttp::start(server(accept_all)).await;
    let client = remote_client(&fake.url, None).await;
    // Not read yet: nothing to tag with.
    assert_eq!(
        client.track_value("checkout", "latency_ms", 1.0),
        Tracked::Untagged
    );
    let details = client.get_bool_details("checkout", false);
    assert_eq!(details.metadata.stage, Some(Stage::new(2)));
    for latency in [100.0, 300.0] {
        assert_eq!(
            client.track_value("checkout", "latency_ms", latency),
            Tracked::Recorded
        );
    }
    client.track_rate("checkout", "crashed", false);
    client.track_rate("checkout", "crashed", true);
    client.track_rate("checkout", "converted", false);
    client.get_bool("plain", false);
    assert_eq!(
        client.track_value("plain", "latency_ms", 1.0),
        Tracked::Untagged
    );
    assert!(matches!(
        client.track_value("checkout", "latency_ms", -1.0),
        Tracked::Dropped(_)
    ));
    client.flush().await.unwrap();

    let requests = fake.metrics_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].authorization, "Bearer ripcord-client-key");
    let mut observations = requests[0].body["observations"].as_array().unwrap().clone();
    observations.sort_by_key(|observation| observation["metric"].as_str().unwrap().to_string());
    let summary: Vec<(&str, f64)> = observations
        .iter()
        .map(|observation| {
            assert_eq!(observation["flag"], "checkout");
            assert_eq!(observation["cohort"], "treatment");
            assert_eq!(observation["stage"], 2);
            assert!(observation.get("unit").is_none(), "the app is the unit");
            let timestamp = observation["timestamp"].as_str().unwrap();
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .unwrap();
            (
                observation["metric"].as_str().unwrap(),
                observation["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("converted", 0.0), ("crashed", 1.0), ("latency_ms", 200.0)]
    );
    // Every request names the installation, the OFREP one too.
    let all = fake.received.lock().unwrap().clone();
    assert!(all.len() >= 2);
    for request in &all {
        assert_eq!(request.instance, client.instance_id(), "{}", request.path);
    }
    let status = client.status().tracking;
    assert_eq!((status.sent, status.accepted, status.rejected), (3, 3, 0));
    assert_eq!((status.untagged, status.dropped), (2, 1));
}

#[tokio::test]
async fn a_failed_send_is_retried_with_backoff_until_the_server_takes_it() {
    let failures = Arc::new(Mutex::new(2));
    let remaining = Arc::clone(&failures);
    let fake = FakeHttp::start(server(move |observations| {
        let mut remaining = remaining.lock().unwrap();
        if *remaining > 0 {
            *remaining -= 1;
            return (503, json!({"error": "starting"}));
        }
        accept_all(observations)
    }))
    .await;
    let client = remote_client(&fake.url, None).await;
    client.get_bool("checkout", false);
    client.track_value("checkout", "latency_ms", 5.0);

    let error = client.flush().await.unwrap_err();
    assert!(
        matches!(error, Error::Refused { status: 503, .. }),
        "{error}"
    );
    let status = client.status().tracking;
    assert_eq!((status.pending, status.sent), (1, 0));
    assert_eq!(status.last_error, Some(error));

    eventually(|| client.status().tracking.accepted == 1).await;
    let status = client.status().tracking;
    assert_eq!(
        (status.pending, status.dropped, status.last_error),
        (0, 0, None)
    );
    let requests = fake.metrics_requests();
    assert_eq!(requests.len(), 3, "two failures, then the one that worked");
    // Sent again under the same id, so that a server that did count it counts it once.
    let ids: Vec<&Value> = requests
        .iter()
        .map(|request| &request.body["batch_id"])
        .collect();
    assert!(ids[0].as_str().is_some_and(|id| id.len() == 32), "{ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[tokio::test]
async fn what_the_server_refuses_for_good_is_dropped_and_counted_and_large_batches_are_halved() {
    let fake = FakeHttp::start(server(|_| (401, json!({"error": "unknown key"})))).await;
    let client = remote_client(&fake.url, None).await;
    client.get_bool("checkout", false);
    client.track_value("checkout", "latency_ms", 5.0);
    client.track_rate("checkout", "crashed", false);
    let error = client.flush().await.unwrap_err();
    assert!(
        matches!(error, Error::Refused { status: 401, .. }),
        "{error}"
    );
    let status = client.status().tracking;
    assert_eq!((status.dropped, status.pending), (2, 0));
    assert!(status.last_drop.unwrap().contains("unknown key"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.metrics_requests().len(), 1, "not retried");

    // A server that takes one observation per request: the batch goes in halves.
    let fake = FakeHttp::start(server(|observations| {
        if observations.len() > 1 {
            (413, json!({"error": "too large"}))
        } else {
            accept_all(observations)
        }
    }))
    .await;
    let client = remote_client(&fake.url, None).await;
    client.get_bool("checkout", false);
    for metric in ["a", "b", "c"] {
        client.track_value("checkout", metric, 1.0);
    }
    client.flush().await.unwrap();
    assert_eq!(client.status().tracking.accepted, 3);
}

#[tokio::test]
async fn an_installation_keeps_its_instance_id_in_the_cache_file() {
    let fake = FakeHttp::start(server(accept_all)).await;
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("flags.json");
    let first = remote_client(&fake.url, Some(&cache)).await;
    first.refresh().await.unwrap();
    let id = first.instance_id().to_string();
    drop(first);
    let again = remote_client(&fake.url, Some(&cache)).await;
    assert_eq!(again.instance_id(), id);
    let elsewhere = remote_client(&fake.url, None).await;
    assert_ne!(
        elsewhere.instance_id(),
        id,
        "another installation, another id"
    );

    let chosen = RemoteClient::builder(&fake.url, "ripcord-client-key")
        .cache_file(&cache)
        .instance_id("kiosk-12")
        .build()
        .unwrap();
    assert_eq!(chosen.instance_id(), "kiosk-12");
    assert!(matches!(
        RemoteClient::builder(&fake.url, "key")
            .instance_id("x".repeat(129))
            .build(),
        Err(Error::InvalidInstanceId(_))
    ));
}

#[test]
fn the_queue_drops_its_oldest_batches_while_the_server_is_away() {
    use crate::tracking::{Bounds, MetricKind, Recorder, Tag};
    let recorder = Recorder::new(Bounds {
        max_units: 10,
        max_batches: 3,
        batch_size: 1,
        max_tags: 10,
    });
    let tag = Tag::of(Some(ripcord_engine::Cohort::Control), Some(Stage::FIRST));
    for window in 0..5 {
        recorder.record(
            "f",
            Some("u"),
            tag,
            "m",
            MetricKind::Value,
            f64::from(window),
            0,
        );
        recorder.close_window();
    }
    let status = recorder.status();
    assert_eq!((status.pending, status.dropped), (3, 2));
    let kept: Vec<f64> = std::iter::from_fn(|| recorder.take_batch())
        .map(|batch| batch.observations[0].value)
        .collect();
    assert_eq!(kept, [2.0, 3.0, 4.0], "the newest windows are kept");
}

#[tokio::test]
async fn the_openfeature_provider_shows_the_stage_and_reports_through_its_client() {
    use open_feature::provider::FeatureProvider as _;
    use open_feature::{EvaluationContext, FlagMetadataValue};

    let fake = FakeHttp::start(server(accept_all)).await;
    let provider = crate::provider::RipcordProvider::remote(remote_client(&fake.url, None).await);
    let context = EvaluationContext::default();
    let resolved = provider
        .resolve_bool_value("checkout", &context)
        .await
        .unwrap();
    let metadata = resolved.flag_metadata.unwrap().values;
    assert_eq!(metadata["stage"], FlagMetadataValue::Int(2));
    assert_eq!(
        metadata["cohort"],
        FlagMetadataValue::String("treatment".into())
    );

    // OpenFeature takes the provider; a clone keeps reporting.
    let reporting = provider.clone();
    assert_eq!(
        reporting.track_value("checkout", &context, "latency_ms", 40.0),
        Tracked::Recorded
    );
    assert_eq!(
        reporting.track_rate("checkout", &context, "crashed", true),
        Tracked::Recorded
    );
    reporting.flush().await.unwrap();
    let observations = &fake.metrics_requests()[0].body["observations"];
    assert_eq!(observations.as_array().unwrap().len(), 2);
}
