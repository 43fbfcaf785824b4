//! Ramps end to end: a real server with a one-second controller tick, observations posted
//! over HTTP, and what a release engineer sees — the kill, the incident, the evaluations,
//! the webhook, the audit log; an A/A stream walking to 100%; a restart mid-ramp.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Body, Server};

const SECRET: &str = "whsec-e2e-0123456789";

/// One rate guard (errors) with second-long stages: the controller looks every second.
pub(crate) const RAMPED: &str = r#"
flags:
  new-checkout:
    type: boolean
    client_visible: true
    variants: {"on": true, "off": false}
    default_variant: "off"
    rollout: {percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [10, 50, 100]
      min_stage_duration: 2s
      max_stage_duration: 1h
      warmup: 1s
      # The tests report as many control observations as treatment ones.
      control: equal
      guards:
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.02, min_samples: 500}
"#;

async fn ramp_server(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("RIPCORD_RAMP_TICK", "1s")];
    env.extend_from_slice(extra);
    Server::start_with(&env, RAMPED).await
}

pub(crate) const RAMP: &str = "/api/v1/environments/default/flags/new-checkout/ramp";

pub(crate) async fn status(server: &Server) -> Value {
    server.admin_get(RAMP).await.expect_status(200).json()
}

/// Starts the ramp with no reason, waits out its warm-up, and answers a client key of
/// `default` to report with.
async fn start_and_warm_up(server: &Server) -> crate::harness::Key {
    let client = server.create_key("app", "client", Some("default")).await;
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    past_warm_up(server).await;
    client
}

/// Polls the ramp's status until `done` holds, for at most `patience`.
pub(crate) async fn wait_for(
    server: &Server,
    patience: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let status = status(server).await;
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < patience,
            "the ramp did not get there in {patience:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the current stage's warm-up is over, so that observations count.
pub(crate) async fn past_warm_up(server: &Server) -> Value {
    past_warm_up_of(server, RAMP).await
}

/// [`past_warm_up`] for the ramp at `path`.
async fn past_warm_up_of(server: &Server, path: &str) -> Value {
    let status = server.admin_get(path).await.expect_status(200).json();
    let counts_from = status["counts_from"]
        .as_str()
        .expect("a running ramp has counts_from");
    let counts_from = time_of(counts_from);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now > counts_from {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Unix seconds of an RFC 3339 time such as `2026-11-28T10:00:00Z`.
fn time_of(text: &str) -> u64 {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|error| panic!("`{text}` is not RFC 3339: {error}"));
    u64::try_from(time.unix_timestamp()).unwrap()
}

/// `per_cohort` observations of `errors` per cohort at `stage`, `events` of them errors
/// (treatment, control), each of a unit of its own named after `prefix`.
pub(crate) fn error_observations(
    prefix: &str,
    stage: u64,
    per_cohort: u64,
    events: [u64; 2],
) -> Vec<Value> {
    ["treatment", "control"]
        .into_iter()
        .zip(events)
        .flat_map(|(cohort, events)| {
            (0..per_cohort).map(move |index| {
                json!({
                    "flag": "new-checkout",
                    "metric": "errors",
                    "value": u64::from(index < events),
                    "cohort": cohort,
                    "stage": stage,
                    "unit": format!("{prefix}{cohort}-{index}"),
                })
            })
        })
        .collect()
}

/// Posts `per_cohort` observations per cohort with the given number of events, as a client
/// key, in one batch: the controller then never sees one cohort of a stage without the other.
pub(crate) async fn post_errors(
    server: &Server,
    key: &str,
    stage: u64,
    per_cohort: u64,
    events: [u64; 2],
) {
    post_errors_from(server, key, "", stage, per_cohort, events).await;
}

/// [`post_errors`] with units named after `prefix`, so that batches posted to several nodes
/// are of units of their own.
pub(crate) async fn post_errors_from(
    server: &Server,
    key: &str,
    prefix: &str,
    stage: u64,
    per_cohort: u64,
    events: [u64; 2],
) {
    let observations = error_observations(prefix, stage, per_cohort, events);
    let answer = server.report(key, &observations).await;
    assert_eq!(
        answer["accepted"],
        json!(2 * per_cohort),
        "first rejection: {}",
        answer["rejected"][0]
    );
}

/// Evaluates every flag as the app instance `instance` does when it phones home.
pub(crate) async fn fetch_as(server: &Server, key: &str, instance: &str) {
    let response = server
        .client()
        .post(server.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(key)
        .header("x-ripcord-instance", instance)
        .json(&json!({"context": {"targetingKey": "user-7"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{instance} fetching its flags");
}

/// A webhook receiver: answers 500 to the first `failures` deliveries, 200 after, and keeps
/// every request it got.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Delivery>>>,
}

#[derive(Clone, Debug)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON delivery")
    }
}

impl Receiver {
    async fn start(failures: usize) -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/ripcord", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let requests = Arc::clone(&receiver.requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let requests = Arc::clone(&requests);
                tokio::spawn(async move {
                    let Some(delivery) = read_request(&mut socket).await else {
                        return;
                    };
                    let seen = {
                        let mut requests = requests.lock().unwrap();
                        requests.push(delivery);
                        requests.len()
                    };
                    let status = if seen <= failures {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (receiver, url)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Delivery> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(Delivery {
        headers,
        body: buffer[header_end..header_end + length].to_vec(),
    })
}

fn signed_correctly(delivery: &Delivery) -> bool {
    let (Some(timestamp), Some(signature)) = (
        delivery.header("x-ripcord-timestamp"),
        delivery.header("x-ripcord-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&delivery.body);
    let expected = format!("sha256={}", hex_of(&mac.finalize().into_bytes()));
    signature == expected
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regression_is_killed_within_a_few_ticks_with_incident_webhook_and_audit() {
    // The receiver fails the first delivery (ramp.start) so the retry path is exercised.
    let (receiver, url) = Receiver::start(1).await;
    let server = ramp_server(&[
        ("RIPCORD_WEBHOOK_URLS", url.as_str()),
        ("RIPCORD_WEBHOOK_SECRET", SECRET),
        ("RIPCORD_WEBHOOK_BACKOFF", "1s"),
    ])
    .await;
    let client = server.create_key("app", "client", Some("default")).await;

    let started = server
        .admin_post(&format!("{RAMP}/start"), json!({"reason": "release 4.2"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["percentage"], json!(10.0));
    // The flag serves the first stage now, and evaluations name the stage and cohort.
    let exported = server.export("default").await;
    assert_eq!(
        exported["flags"]["new-checkout"]["rollout"]["percentage"],
        json!(10.0)
    );

    // Two app instances fetch their flags before the kill.
    for instance in ["phone-a", "phone-b"] {
        fetch_as(&server, &client.token, instance).await;
    }

    past_warm_up(&server).await;
    let posted = Instant::now();
    // 30% errors in treatment against 1% in control: far worse than the 2-point tolerance.
    post_errors(&server, &client.token, 0, 1000, [300, 10]).await;
    let killed = wait_for(&server, Duration::from_secs(20), |status| {
        status["status"] == "killed"
    })
    .await;
    let took = posted.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "killed {took:?} after the data arrived: more than a few one-second ticks"
    );
    assert_eq!(killed["percentage"], json!(0.0), "{killed:#}");
    let guard = &killed["guards"][0];
    assert_eq!(guard["verdict"], "REGRESSION", "{killed:#}");
    assert_eq!(guard["evidence"]["n_treatment"], json!(1000));
    assert_eq!(guard["evidence"]["n_control"], json!(1000));

    // Everyone gets the default variant: the kill switch is off.
    let evaluation = server
        .evaluate(
            &client.token,
            "new-checkout",
            json!({"targetingKey": "user-7"}),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(evaluation["value"], json!(false), "{evaluation}");
    assert_eq!(evaluation["reason"], "DISABLED", "{evaluation}");
    let flag = &server.export("default").await["flags"]["new-checkout"];
    assert_eq!(flag["enabled"], json!(false), "{flag}");

    // Kill reach: neither instance has fetched the kill yet; once one has, the status says
    // half of them have.
    assert_eq!(
        killed["reach"],
        json!({"active": 2, "fetched": 0}),
        "{killed:#}"
    );
    fetch_as(&server, &client.token, "phone-a").await;
    let reach = status(&server).await["reach"].clone();
    assert_eq!(reach, json!({"active": 2, "fetched": 1}));

    // The incident has the evidence a postmortem needs.
    let incidents = server
        .admin_get("/api/v1/incidents?flag=new-checkout")
        .await
        .expect_status(200)
        .json();
    let incident = &incidents["incidents"][0];
    assert_eq!(incident["action"], "kill", "{incidents:#}");
    assert_eq!(incident["stage"], json!(0));
    assert_eq!(incident["percentage"], json!(10.0));
    let evidence = &incident["evidence"][0];
    assert_eq!(evidence["metric"], "errors");
    assert_eq!(evidence["verdict"], "REGRESSION");
    let numbers = &evidence["evidence"];
    assert_eq!(numbers["rate_treatment"], json!(0.3), "{numbers:#}");
    assert_eq!(numbers["rate_control"], json!(0.01), "{numbers:#}");
    assert!(numbers["p_value"].as_f64().unwrap() <= numbers["threshold"].as_f64().unwrap());
    assert!(numbers["effect"]["ci"].is_array(), "{numbers:#}");
    let one = server
        .admin_get(&format!("/api/v1/incidents/{}", incident["id"]))
        .await
        .expect_status(200)
        .json();
    assert_eq!(&one, incident);
    assert_eq!(killed["kill"]["incident"], incident["id"]);

    // The postmortem the team starts from: what, when, the timeline, the evidence, the
    // reach, and the sections only people can write.
    let postmortem = server
        .admin_get(&format!("/api/v1/incidents/{}/postmortem", incident["id"]))
        .await
        .expect_status(200);
    assert!(
        postmortem
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("text/markdown")),
        "{:?}",
        postmortem.header("content-type")
    );
    let text = postmortem.text();
    assert!(
        text.starts_with(&format!(
            "# Postmortem: `new-checkout` killed in `default` (incident {})",
            incident["id"]
        )),
        "{text}"
    );
    assert!(
        text.contains("at stage 1 (10% of the rollout population)"),
        "{text}"
    );
    let timeline = &text[text.find("## Timeline").unwrap()..text.find("## Evidence").unwrap()];
    let start_row = timeline
        .find("| start | bootstrap-admin |")
        .expect(timeline);
    let kill_row = timeline.find("| kill | ramp-controller |").expect(timeline);
    assert!(start_row < kill_row, "oldest first: {timeline}");
    assert!(
        text.contains("| errors | REGRESSION | n = 1000, rate 0.3 | n = 1000, rate 0.01 |"),
        "{text}"
    );
    // The data were sound: as many units reported from each cohort as the equal bands
    // imply.
    assert!(
        text.contains(
            "**Sample ratio** (`units`): the cohorts reported as the bands imply: 1000 \
             treatment and 1000 control distinct units, a treatment : control ratio of 1 \
             against 1 expected"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "1 of the 2 app and SDK instances seen in the last hour have fetched the kill."
        ),
        "{text}"
    );
    for section in ["## Impact", "## Root cause", "## Actions"] {
        assert!(text.contains(section), "{section} in {text}");
    }
    server
        .admin_get("/api/v1/incidents/999999/postmortem")
        .await
        .expect_status(404);

    // The audit log has the decision, by the controller, with its reason.
    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .expect_status(200)
        .json();
    let entries = audit["entries"].as_array().unwrap();
    let kill = entries
        .iter()
        .find(|entry| entry["action"] == "ramp.kill")
        .unwrap_or_else(|| panic!("no ramp.kill in {audit:#}"));
    assert_eq!(kill["actor"], "ramp-controller");
    assert!(
        kill["reason"].as_str().unwrap().contains("regressed"),
        "{kill}"
    );
    let start = entries
        .iter()
        .find(|entry| entry["action"] == "ramp.start")
        .expect("the start is audited");
    assert_eq!(
        start["actor"], "bootstrap-admin",
        "a person's start is theirs"
    );
    assert!(entries
        .iter()
        .any(|entry| entry["action"] == "flag.update" && entry["actor"] == "ramp-controller"));

    // The webhook got the kill, signed; the start was retried after a failure.
    let started = Instant::now();
    let deliveries = loop {
        let deliveries = receiver.deliveries();
        let kills = deliveries
            .iter()
            .filter(|delivery| delivery.header("x-ripcord-event") == Some("ramp.kill"))
            .count();
        let starts = deliveries
            .iter()
            .filter(|delivery| delivery.header("x-ripcord-event") == Some("ramp.start"))
            .count();
        if kills >= 1 && starts >= 2 {
            break deliveries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "deliveries so far: {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for delivery in &deliveries {
        assert!(signed_correctly(delivery), "{delivery:?}");
    }
    let kill = deliveries
        .iter()
        .find(|delivery| delivery.header("x-ripcord-event") == Some("ramp.kill"))
        .unwrap()
        .json();
    assert_eq!(kill["flag"], "new-checkout");
    assert_eq!(kill["status"], "killed");
    assert_eq!(kill["incident"], incident["id"]);
    let starts: Vec<&Delivery> = deliveries
        .iter()
        .filter(|delivery| delivery.header("x-ripcord-event") == Some("ramp.start"))
        .collect();
    assert_eq!(
        starts[0].header("x-ripcord-delivery"),
        starts[1].header("x-ripcord-delivery"),
        "a retry is the same delivery"
    );
    let webhooks = status(&server).await["webhooks"].clone();
    assert_eq!(webhooks["failed_attempts"], json!(1), "{webhooks}");
    assert_eq!(webhooks["failed"], json!(0), "{webhooks}");
    assert!(
        webhooks["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{webhooks}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_a_a_stream_walks_every_stage_and_completes_at_100() {
    let server = ramp_server(&[]).await;
    let client = server.create_key("app", "client", Some("default")).await;
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    for stage in 0..2u64 {
        let status = wait_for(&server, Duration::from_secs(20), |status| {
            status["stage"] == json!(stage)
        })
        .await;
        assert_eq!(status["status"], "running", "{status:#}");
        if stage > 0 {
            // The first stage's data pass, but this stage needs min_samples (500) per
            // cohort of its own before it may advance.
            assert_eq!(
                status["guards"][0]["more_observations"],
                json!(1000),
                "{status:#}"
            );
        }
        past_warm_up(&server).await;
        // The same 1% error rate in both cohorts.
        post_errors(&server, &client.token, stage, 3000, [30, 30]).await;
    }
    let completed = wait_for(&server, Duration::from_secs(30), |status| {
        status["status"] == "completed"
    })
    .await;
    assert_eq!(completed["percentage"], json!(100.0), "{completed:#}");
    assert_eq!(completed["guards"][0]["verdict"], "PASS", "{completed:#}");
    let exported = server.export("default").await;
    let flag = &exported["flags"]["new-checkout"];
    assert_eq!(flag["rollout"]["percentage"], json!(100.0), "{flag}");
    assert_ne!(flag["enabled"], json!(false), "{flag}");
    let incidents = server.admin_get("/api/v1/incidents").await.json();
    assert_eq!(
        incidents["incidents"],
        json!([]),
        "an A/A ramp records no incident"
    );
    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .filter(|action| action.starts_with("ramp.") && *action != "ramp.hold")
        .collect();
    assert_eq!(
        actions,
        vec![
            "ramp.complete",
            "ramp.advance",
            "ramp.advance",
            "ramp.start"
        ],
        "{audit:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_continues_where_it_was_after_a_restart() {
    let mut server = ramp_server(&[]).await;
    let client = start_and_warm_up(&server).await;
    post_errors(&server, &client.token, 0, 3000, [30, 30]).await;
    let before = wait_for(&server, Duration::from_secs(20), |status| {
        status["stage"] == json!(1)
    })
    .await;
    server.restart().await;
    let after = status(&server).await;
    assert_eq!(after["status"], "running", "{after:#}");
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(after["stage"], json!(1));
    assert_eq!(after["percentage"], json!(50.0));
    assert_eq!(after["stage_started_at"], before["stage_started_at"]);
    // The data of the first stage survived too: the guard's looks still count them.
    assert_eq!(
        after["guards"][0]["evidence"]["n_treatment"],
        before["guards"][0]["evidence"]["n_treatment"]
    );
    // And the controller goes on from there.
    past_warm_up(&server).await;
    post_errors(&server, &client.token, 1, 3000, [30, 30]).await;
    wait_for(&server, Duration::from_secs(30), |status| {
        status["status"] == "completed"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_controls_pause_resume_advance_abort_and_restart_as_a_new_generation() {
    let server = ramp_server(&[]).await;
    let client = server.create_key("app", "client", Some("default")).await;
    // Nothing to pause before the start.
    let refused = server
        .admin_post(&format!("{RAMP}/pause"), json!({}))
        .await
        .expect_status(409)
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("start it first"),
        "{refused}"
    );
    let pending = status(&server).await;
    assert_eq!(pending["status"], "pending");

    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    let paused = server
        .admin_post(
            &format!("{RAMP}/pause"),
            json!({"reason": "holiday freeze"}),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["pause_reason"], "manual");
    let resumed = server
        .admin_post(&format!("{RAMP}/resume"), json!({}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(resumed["status"], "running");

    let no_reason = server
        .admin_post(&format!("{RAMP}/advance"), json!({}))
        .await
        .expect_status(400)
        .json();
    assert_eq!(no_reason["path"], "reason", "{no_reason}");
    let advanced = server
        .admin_post(
            &format!("{RAMP}/advance"),
            json!({"reason": "the canary looked fine on the dashboards"}),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(advanced["stage"], json!(1));
    assert_eq!(advanced["percentage"], json!(50.0));

    // Observations tagged with the stage before are refused as stale.
    let stale = server
        .call(
            reqwest::Method::POST,
            "/api/v1/metrics",
            Some(&client.token),
            Body::Json(json!({"observations": [
                {"flag": "new-checkout", "metric": "errors", "value": 0, "cohort": "control", "stage": 0}
            ]})),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(stale["accepted"], json!(0), "{stale}");
    assert!(
        stale["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("stale"),
        "{stale}"
    );

    let aborted = server
        .admin_post(&format!("{RAMP}/abort"), json!({"reason": "wrong build"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(aborted["status"], "aborted");
    assert_eq!(
        server.export("default").await["flags"]["new-checkout"]["rollout"]["percentage"],
        json!(0.0)
    );
    let again = server
        .admin_post(&format!("{RAMP}/resume"), json!({}))
        .await
        .expect_status(409);
    assert!(again.text().contains("aborted"), "{}", again.text());

    let restarted = server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(restarted["generation"], json!(2));
    assert_eq!(restarted["stage"], json!(0));
    assert_eq!(restarted["guards"][0]["stage_observations"], json!(0));

    let unknown = server
        .admin_post(&format!("{RAMP}/accelerate"), json!({}))
        .await
        .expect_status(404);
    assert!(unknown.text().contains("accelerate"), "{}", unknown.text());
    let not_admin = server
        .call(
            reqwest::Method::POST,
            &format!("{RAMP}/abort"),
            Some(&client.token),
            Body::Json(json!({})),
        )
        .await;
    assert_eq!(not_admin.status, 403);

    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .json();
    let advance = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == "ramp.advance")
        .expect("the advance is audited");
    assert!(advance["reason"]
        .as_str()
        .unwrap()
        .contains("the canary looked fine on the dashboards"));
    assert_ne!(advance["actor"], "ramp-controller");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_in_an_environment_created_again_starts_from_no_data() {
    let server = ramp_server(&[]).await;
    let ramp = "/api/v1/environments/staging/flags/new-checkout/ramp";
    let stage_observations = |status: &Value| status["guards"][0]["stage_observations"].clone();
    for round in 0..2 {
        server
            .admin_post("/api/v1/environments", json!({"name": "staging"}))
            .await
            .expect_status(201);
        server
            .import_yaml("staging", RAMPED)
            .await
            .expect_status(200);
        let client = server.create_key("app", "client", Some("staging")).await;
        let started = server
            .admin_post(&format!("{ramp}/start"), json!({}))
            .await
            .expect_status(200)
            .json();
        // Generations count from 1 again in the new environment: the old one's counts
        // under the same flag and generation must not come back.
        assert_eq!(started["generation"], json!(1));
        let status = server.admin_get(ramp).await.expect_status(200).json();
        assert_eq!(
            stage_observations(&status),
            json!(0),
            "round {round}: {status:#}"
        );
        if round == 1 {
            break;
        }
        past_warm_up_of(&server, ramp).await;
        let observations: Vec<Value> = ["treatment", "control"]
            .into_iter()
            .map(|cohort| {
                json!({"flag": "new-checkout", "metric": "errors", "value": 0,
                       "cohort": cohort, "stage": 0})
            })
            .collect();
        let answer = server.report(&client.token, &observations).await;
        assert_eq!(answer["accepted"], json!(2), "{answer}");
        let status = server.admin_get(ramp).await.json();
        assert_eq!(stage_observations(&status), json!(2), "{status:#}");
        server
            .admin_delete("/api/v1/environments/staging")
            .await
            .expect_status(204);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_incidents_refuse_what_does_not_exist() {
    let server = ramp_server(&[]).await;
    server
        .admin_get("/api/v1/environments/default/flags/missing/ramp")
        .await
        .expect_status(404);
    server
        .admin_get("/api/v1/environments/nowhere/flags/new-checkout/ramp")
        .await
        .expect_status(404);
    server
        .admin_get("/api/v1/incidents/12345")
        .await
        .expect_status(404);
    server
        .admin_get("/api/v1/incidents/abc")
        .await
        .expect_status(404);
    let bad = server
        .admin_get("/api/v1/incidents?limit=0")
        .await
        .expect_status(400)
        .json();
    assert_eq!(bad["path"], "limit", "{bad}");
}

/// Posts `batch` under `batch_id`, answered 200.
async fn send_named(server: &Server, key: &str, batch_id: &str, batch: &[Value]) -> Value {
    server
        .call(
            reqwest::Method::POST,
            "/api/v1/metrics",
            Some(key),
            Body::Json(json!({"batch_id": batch_id, "observations": batch})),
        )
        .await
        .expect_status(200)
        .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sent_again_counts_once_also_after_a_restart() {
    let mut server = ramp_server(&[]).await;
    let client = start_and_warm_up(&server).await;
    // 100 per cohort: under the guard's minimum, so nothing is decided and the counts show.
    let batch = error_observations("", 0, 100, [0, 0]);
    let counted = |status: &Value| status["guards"][0]["stage_observations"].clone();

    let first = send_named(&server, &client.token, "batch-7f3a", &batch).await;
    assert_eq!(first["accepted"], json!(200), "{first}");
    assert!(first.get("duplicate").is_none(), "{first}");
    // Its answer was lost, say: the reporter sends it again.
    let again = send_named(&server, &client.token, "batch-7f3a", &batch).await;
    assert_eq!(again["duplicate"], json!(true), "{again}");
    assert_eq!(counted(&status(&server).await), json!(200));

    server.restart().await;
    let after_restart = send_named(&server, &client.token, "batch-7f3a", &batch).await;
    assert_eq!(after_restart["duplicate"], json!(true), "{after_restart}");
    assert_eq!(counted(&status(&server).await), json!(200), "counted once");

    // Another batch, and one without an id, count as usual.
    send_named(&server, &client.token, "batch-8b41", &batch).await;
    post_errors(&server, &client.token, 0, 100, [0, 0]).await;
    assert_eq!(counted(&status(&server).await), json!(600));

    // An id that is not one is refused, naming it.
    let refused = server
        .call(
            reqwest::Method::POST,
            "/api/v1/metrics",
            Some(&client.token),
            Body::Json(json!({"batch_id": "", "observations": []})),
        )
        .await
        .expect_status(400)
        .json();
    assert_eq!(refused["path"], "batch_id", "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_pending_when_the_server_is_killed_is_delivered_after_the_restart() {
    // The receiver is down for the first two deliveries (the start's and the kill's), and
    // the next try is a minute away when the server dies.
    let (receiver, url) = Receiver::start(2).await;
    let mut server = ramp_server(&[
        ("RIPCORD_WEBHOOK_URLS", url.as_str()),
        ("RIPCORD_WEBHOOK_SECRET", SECRET),
        ("RIPCORD_WEBHOOK_BACKOFF", "60s"),
    ])
    .await;
    let client = start_and_warm_up(&server).await;
    post_errors(&server, &client.token, 0, 1000, [300, 10]).await;
    wait_for(&server, Duration::from_secs(20), |status| {
        status["status"] == "killed"
    })
    .await;
    let started = Instant::now();
    while receiver.deliveries().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "both tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.kill();
    server.start_again().await;
    let kills = |deliveries: &[Delivery]| -> Vec<Delivery> {
        deliveries
            .iter()
            .filter(|delivery| delivery.header("x-ripcord-event") == Some("ramp.kill"))
            .cloned()
            .collect()
    };
    let started = Instant::now();
    let kill_deliveries = loop {
        let kill_deliveries = kills(&receiver.deliveries());
        if kill_deliveries.len() >= 2 {
            break kill_deliveries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the kill's notice was not sent again after the restart: {:?}",
            receiver.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        kill_deliveries[0].header("x-ripcord-delivery"),
        kill_deliveries[1].header("x-ripcord-delivery"),
        "the same delivery id, for the receiver to drop a repeat"
    );
    assert!(signed_correctly(&kill_deliveries[1]));
    assert_eq!(kill_deliveries[1].json()["event"], "ramp.kill");
    // Delivered now: a later restart sends it no more.
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kills(&receiver.deliveries()).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_without_observations_for_max_silence_raises_a_no_data_alert_until_data_come() {
    let (receiver, url) = Receiver::start(0).await;
    let document = RAMPED.replace(
        "      warmup: 1s\n",
        "      warmup: 1s\n      max_silence: 3s\n",
    );
    assert_ne!(document, RAMPED);
    let server = Server::start_with(
        &[
            ("RIPCORD_RAMP_TICK", "1s"),
            ("RIPCORD_WEBHOOK_URLS", url.as_str()),
            ("RIPCORD_WEBHOOK_SECRET", SECRET),
        ],
        &document,
    )
    .await;
    let client = start_and_warm_up(&server).await;

    // No app reports: three seconds after the warm-up the stage is silent.
    let silent = wait_for(&server, Duration::from_secs(15), |status| {
        status["hold"] == "no_data"
    })
    .await;
    assert_eq!(silent["status"], "running", "{silent:#}");
    assert_eq!(silent["last_observation_at"], Value::Null, "{silent:#}");
    let started = Instant::now();
    let alert = loop {
        let alerts: Vec<Value> = receiver
            .deliveries()
            .iter()
            .filter(|delivery| delivery.header("x-ripcord-event") == Some("ramp.alert"))
            .map(Delivery::json)
            .collect();
        if let Some(alert) = alerts.first() {
            assert_eq!(
                alerts.len(),
                1,
                "one alert while the silence lasts: {alerts:?}"
            );
            break alert.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no ramp.alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["alert"], "no_data", "{alert}");
    assert!(
        alert["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no observations for")
                && reason.contains("max_silence 3s")),
        "{alert}"
    );
    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .json();
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|entry| {
            entry["action"] == "ramp.hold"
                && entry["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("no observations for"))
        }),
        "{audit:#}"
    );

    // Observations arrive: the alert ends by itself.
    post_errors(&server, &client.token, 0, 100, [1, 1]).await;
    let heard = wait_for(&server, Duration::from_secs(10), |status| {
        status["hold"] != "no_data"
    })
    .await;
    assert!(heard["last_observation_at"].is_string(), "{heard:#}");
}
