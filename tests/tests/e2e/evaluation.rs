//! OFREP as applications see it: the kill switch, rollouts and bucketing, ETags and 304s,
//! CORS for browsers, slow uploads, keys of deleted environments, wrong methods, and the
//! evaluation counts operators scrape.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::EXAMPLE_DOCUMENT;
use crate::harness::{Body, Server};

/// The example document without its ramp: staff and the beta track get the checkout flag,
/// 5% of users by `userId`. The ramp is left out because this is about targeting and the
/// kill switch, and a ramp would add its stage to the cohort's metadata besides.
fn checkout() -> String {
    let mut document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(EXAMPLE_DOCUMENT).expect("the example reads");
    document["flags"]["new-checkout"]
        .as_mapping_mut()
        .expect("the example's flag")
        .remove("ramp")
        .expect("the example's ramp");
    serde_yaml_ng::to_string(&document).expect("YAML")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_applies_to_the_very_next_evaluation_and_is_audited() {
    let server = Server::start().await;
    let engineer = server.create_key("release-engineer", "admin", None).await;
    let service = server
        .create_key("checkout-service", "server", Some("default"))
        .await;
    server
        .call(
            Method::PUT,
            "/api/v1/environments/default/document",
            Some(&engineer.token),
            Body::yaml(&checkout()),
        )
        .await
        .expect_status(200);

    let staff = json!({"targetingKey": "user-1", "userId": "user-1", "email": "ana@example.com"});
    let before = server
        .evaluate(&service.token, "new-checkout", staff.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(before["key"], "new-checkout");
    assert_eq!(before["value"], true, "{before}");
    assert_eq!(before["variant"], "on", "{before}");
    assert_eq!(before["reason"], "TARGETING_MATCH", "{before}");
    assert_eq!(before["metadata"]["rule"], "staff", "{before}");

    let killed = server
        .call(
            Method::PUT,
            "/api/v1/environments/default/flags/new-checkout/enabled",
            Some(&engineer.token),
            Body::Json(json!({"enabled": false})),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(killed["flag"]["enabled"], false, "{killed}");

    let after = server
        .evaluate(&service.token, "new-checkout", staff)
        .await
        .expect_status(200)
        .json();
    assert_eq!(after["value"], false, "{after}");
    assert_eq!(after["variant"], "off", "{after}");
    assert_eq!(after["reason"], "DISABLED", "{after}");
    let revision = after["metadata"]["revision"].as_u64().expect("a revision");
    assert!(revision > before["metadata"]["revision"].as_u64().expect("a revision"));

    let audit = server
        .admin_get("/api/v1/audit?environment=default&flag=new-checkout&limit=1")
        .await
        .expect_status(200)
        .json();
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "release-engineer", "{audit}");
    assert_eq!(entry["environment"], "default", "{audit}");
    assert_eq!(entry["action"], "flag.update", "{audit}");
    assert_eq!(entry["target"], "new-checkout", "{audit}");
    assert_eq!(entry["before"]["enabled"], true, "{audit}");
    assert_eq!(entry["after"]["enabled"], false, "{audit}");
    assert_eq!(entry["revision"], revision, "{audit}");
    assert!(
        entry["time"].as_str().is_some_and(|time| !time.is_empty()),
        "{audit}"
    );
    assert!(
        entry["operation"]
            .as_str()
            .is_some_and(|operation| !operation.is_empty()),
        "{audit}"
    );
}

/// Evaluates `flag` for `user-0` to `user-199` and returns who got the change, and who is
/// in the control cohort.
async fn split_of_200_users(
    server: &Server,
    key: &str,
    flag: &str,
) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let mut treatment = BTreeSet::new();
    let mut control = BTreeSet::new();
    for user in 0..200 {
        let result = server
            .evaluate(key, flag, json!({"targetingKey": format!("user-{user}")}))
            .await
            .expect_status(200)
            .json();
        match result["variant"].as_str() {
            Some("new") => {
                assert_eq!(result["reason"], "SPLIT", "{result}");
                assert_eq!(result["metadata"]["cohort"], "treatment", "{result}");
                treatment.insert(user);
            }
            Some("old") => {
                assert_eq!(result["reason"], "DEFAULT", "{result}");
                assert_ne!(result["metadata"]["cohort"], "treatment", "{result}");
                if result["metadata"]["cohort"] == "control" {
                    control.insert(user);
                }
            }
            _ => panic!("unexpected evaluation: {result}"),
        }
    }
    (treatment, control)
}

#[tokio::test(flavor = "multi_thread")]
async fn raising_the_rollout_only_adds_units() {
    let server = Server::start().await;
    server
        .import_yaml(
            "default",
            r#"
flags:
  search-v2:
    type: string
    variants: {old: "classic", new: "vector"}
    default_variant: old
    rollout: {percentage: 10, split: [{variant: new, weight: 1}]}
"#,
        )
        .await
        .expect_status(200);
    let service = server
        .create_key("search-service", "server", Some("default"))
        .await;

    let (at_10, control_at_10) = split_of_200_users(&server, &service.token, "search-v2").await;
    // 200 units at 10%: 20 expected; these bounds are four standard deviations wide.
    assert!(
        (4..=37).contains(&at_10.len()),
        "{} of 200 at 10%",
        at_10.len()
    );
    // Without a ramp the control is every unit outside the rollout.
    assert!(at_10.is_disjoint(&control_at_10));
    assert_eq!(
        at_10.len() + control_at_10.len(),
        200,
        "at 10%: {} treatment and {} control of 200",
        at_10.len(),
        control_at_10.len()
    );

    server
        .admin_put(
            "/api/v1/environments/default/flags/search-v2/rollout/percentage",
            json!({"percentage": 50}),
        )
        .await
        .expect_status(200);
    let (at_50, _) = split_of_200_users(&server, &service.token, "search-v2").await;
    assert!(
        (72..=128).contains(&at_50.len()),
        "{} of 200 at 50%",
        at_50.len()
    );
    let lost: Vec<_> = at_10.difference(&at_50).collect();
    assert!(
        lost.is_empty(),
        "raising 10% to 50% took the change away from {lost:?}"
    );

    // A context without the unit is outside the rollout, and the answer says why.
    let anonymous = server
        .evaluate(&service.token, "search-v2", json!({"country": "CA"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(anonymous["variant"], "old", "{anonymous}");
    assert_eq!(anonymous["reason"], "DEFAULT", "{anonymous}");
    assert_eq!(
        anonymous["metadata"]["unitMissing"], "targetingKey",
        "{anonymous}"
    );
}

/// The cohort of a unit in `bucket` under the threshold `threshold` of a rollout without a
/// ramp, whose control is every unit outside the treatment (docs/bucketing.md, "Cohorts").
/// No cohort is reported at 0% or 100%, where one side would be empty.
fn cohort(bucket: u64, threshold: u64) -> Option<&'static str> {
    if threshold == 0 || threshold >= 100_000 {
        None
    } else if bucket < threshold {
        Some("treatment")
    } else {
        Some("control")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bucketing_matches_the_spec_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/bucketing.json"
    ))
    .expect("the bucketing vectors in spec/bucketing.json");
    let vectors: Value = serde_json::from_str(&text).expect("JSON vectors");
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());

    // Two flags per vector, salted with the vector's salt, sticky on `userId`: one whose
    // threshold is one bucket above the unit's rollout bucket (the unit is in), one whose
    // threshold is that bucket (the unit is out).
    let mut flags = serde_json::Map::new();
    for (index, case) in cases.iter().enumerate() {
        let bucket = case["rollout_bucket"].as_u64().expect("a rollout bucket");
        for (name, threshold) in [("in", bucket + 1), ("out", bucket)] {
            flags.insert(
                format!("vector-{index}-{name}"),
                json!({
                    "type": "string",
                    "variants": {"off": "off", "a": "a", "b": "b"},
                    "default_variant": "off",
                    "rollout": {
                        "stickiness": "userId",
                        "percentage": threshold as f64 / 1000.0,
                        "split": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 1}],
                        "salt": case["salt"],
                    },
                }),
            );
        }
    }
    // One flag per cohort case: the case's percentage, and a ramp with its control design.
    let cohort_cases = vectors["cohorts"].as_array().expect("cohort cases");
    assert!(!cohort_cases.is_empty());
    for (index, case) in cohort_cases.iter().enumerate() {
        flags.insert(
            format!("cohort-{index}"),
            json!({
                "type": "boolean",
                "variants": {"on": true, "off": false},
                "default_variant": "off",
                "rollout": {
                    "stickiness": "userId",
                    "percentage": case["percentage"],
                    "split": [{"variant": "on", "weight": 1}],
                    "salt": case["salt"],
                },
                "ramp": {
                    "stages": [case["percentage"]],
                    "min_stage_duration": "10m",
                    "control": case["control"],
                },
            }),
        );
    }
    let server = Server::start().await;
    server
        .call(
            Method::PUT,
            "/api/v1/environments/default/document",
            Some(&server.admin_key),
            Body::Json(json!({"flags": flags})),
        )
        .await
        .expect_status(200);
    let service = server
        .create_key("vectors", "server", Some("default"))
        .await;

    let mut cohort_mismatches = Vec::new();
    for (index, case) in cohort_cases.iter().enumerate() {
        let result = server
            .evaluate(
                &service.token,
                &format!("cohort-{index}"),
                json!({"userId": case["unit"]}),
            )
            .await
            .expect_status(200)
            .json();
        if result["metadata"]["cohort"] != case["cohort"] {
            cohort_mismatches.push(format!("{case}: got {result}"));
        }
    }
    assert!(
        cohort_mismatches.is_empty(),
        "{} of {} cohort cases differ over OFREP:\n{}",
        cohort_mismatches.len(),
        cohort_cases.len(),
        cohort_mismatches.join("\n")
    );

    let mut mismatches = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let bucket = case["rollout_bucket"].as_u64().expect("a rollout bucket");
        let variant_bucket = case["variant_bucket"].as_u64().expect("a variant bucket");
        // The split a:1, b:1: `point = variant_bucket × 2 div 100000` is 0 for a, 1 for b.
        let split_variant = if variant_bucket * 2 / 100_000 == 0 {
            "a"
        } else {
            "b"
        };
        for (name, threshold, variant, reason) in [
            ("in", bucket + 1, split_variant, "SPLIT"),
            ("out", bucket, "off", "DEFAULT"),
        ] {
            let result = server
                .evaluate(
                    &service.token,
                    &format!("vector-{index}-{name}"),
                    json!({"userId": case["unit"]}),
                )
                .await
                .expect_status(200)
                .json();
            let expected_cohort = cohort(bucket, threshold).map_or(Value::Null, Value::from);
            if result["variant"] != variant
                || result["reason"] != reason
                || result["metadata"]["cohort"] != expected_cohort
            {
                mismatches.push(format!(
                    "{case}: threshold {threshold}: expected {variant}, {reason}, cohort {expected_cohort}; got {result}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// A flag for apps and one for backends only, as a client and a server key see them.
const APP_AND_BACKEND: &str = r#"
flags:
  banner:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
    client_visible: true
  backend-only:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
"#;

fn keys_of(bulk: &Value) -> Vec<&str> {
    bulk["flags"]
        .as_array()
        .expect("a list of flags")
        .iter()
        .map(|flag| flag["key"].as_str().expect("a key"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_etags_change_exactly_when_what_the_key_sees_changes() {
    let server = Server::start().await;
    server
        .import_yaml("default", APP_AND_BACKEND)
        .await
        .expect_status(200);
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let context = json!({"targetingKey": "user-7"});

    let first = server
        .evaluate_all(&app.token, context.clone(), None)
        .await
        .expect_status(200);
    let app_etag = first.header("etag").expect("an ETag on the bulk answer");
    assert_eq!(
        keys_of(&first.json()),
        ["banner"],
        "a client key sees client-visible flags only"
    );
    let again = server
        .evaluate_all(&app.token, context.clone(), None)
        .await
        .expect_status(200);
    assert_eq!(
        again.header("etag").as_deref(),
        Some(app_etag.as_str()),
        "the same answer, the same ETag"
    );
    let cached = server
        .evaluate_all(&app.token, context.clone(), Some(&app_etag))
        .await
        .expect_status(304);
    assert!(cached.body.is_empty(), "a 304 has no body");
    assert_eq!(cached.header("etag").as_deref(), Some(app_etag.as_str()));

    let full = server
        .evaluate_all(&backend.token, context.clone(), None)
        .await
        .expect_status(200);
    let backend_etag = full.header("etag").expect("an ETag");
    assert_eq!(keys_of(&full.json()), ["backend-only", "banner"]);

    // A change the app cannot see: its cache stays valid, the backend's does not.
    server
        .admin_put(
            "/api/v1/environments/default/flags/backend-only/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    server
        .evaluate_all(&app.token, context.clone(), Some(&app_etag))
        .await
        .expect_status(304);
    let changed = server
        .evaluate_all(&backend.token, context.clone(), Some(&backend_etag))
        .await
        .expect_status(200);
    assert_ne!(
        changed.header("etag").as_deref(),
        Some(backend_etag.as_str())
    );

    // A change the app sees.
    server
        .admin_put(
            "/api/v1/environments/default/flags/banner/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let refreshed = server
        .evaluate_all(&app.token, context, Some(&app_etag))
        .await
        .expect_status(200);
    assert_ne!(refreshed.header("etag").as_deref(), Some(app_etag.as_str()));
    assert_eq!(refreshed.json()["flags"][0]["reason"], "DISABLED");
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_may_call_ofrep_from_any_origin_and_read_the_etag() {
    let server = Server::start().await;
    server
        .import_yaml("default", APP_AND_BACKEND)
        .await
        .expect_status(200);
    let app = server
        .create_key("web-app", "client", Some("default"))
        .await;
    let origin = "https://app.example.com";

    for path in [
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/banner",
    ] {
        let preflight = server
            .client()
            .request(Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, if-none-match",
            )
            .send()
            .await
            .expect("an answer");
        assert!(
            preflight.status().is_success(),
            "preflight of {path}: {}",
            preflight.status()
        );
        let allowed = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|value| value.to_str().unwrap());
        assert!(
            allowed == Some("*") || allowed == Some(origin),
            "preflight of {path} allows {allowed:?}"
        );
    }

    let response = server
        .client()
        .post(server.url("/ofrep/v1/evaluate/flags"))
        .header("origin", origin)
        .bearer_auth(&app.token)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default()
    };
    assert!(!header("access-control-allow-origin").is_empty());
    assert!(
        header("access-control-expose-headers")
            .split(',')
            .any(|name| name.trim() == "etag"),
        "a browser app cannot read the ETag: expose-headers is {:?}",
        header("access-control-expose-headers")
    );
}

/// The value of the Prometheus sample whose line starts with `series`, such as
/// `ripcord_evaluations_total{environment="default",flag="banner",reason="STATIC"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_health_evaluation_counts_and_the_api_description() {
    let server = Server::start().await;
    server
        .call(Method::GET, "/healthz", None, Body::None)
        .await
        .expect_status(200);
    server
        .call(Method::GET, "/readyz", None, Body::None)
        .await
        .expect_status(200);

    let imported = server
        .import_yaml("default", APP_AND_BACKEND)
        .await
        .expect_status(200)
        .json();
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    for user in 0..3 {
        server
            .evaluate(
                &app.token,
                "banner",
                json!({"targetingKey": format!("user-{user}")}),
            )
            .await
            .expect_status(200);
    }
    server
        .evaluate_all(&app.token, json!({}), None)
        .await
        .expect_status(200);

    let metrics = server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"ripcord_evaluations_total{environment="default",flag="banner",reason="STATIC"}"#
        ),
        Some(4.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("ripcord_http_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ripcord_snapshot_revision{environment="default"}"#
        ),
        imported["revision"].as_f64(),
        "{metrics}"
    );

    let openapi = server
        .admin_get("/api/v1/openapi.json")
        .await
        .expect_status(200)
        .json();
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with('3')),
        "{openapi}"
    );
    let paths: Vec<&String> = openapi["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .collect();
    for wanted in [
        "/api/v1/keys",
        "/api/v1/audit",
        "/document",
        "/enabled",
        "/rollout/percentage",
    ] {
        assert!(
            paths.iter().any(|path| path.contains(wanted)),
            "no {wanted} in {paths:?}"
        );
    }
}

/// The samples of `/metrics` for one environment: every line that names it.
fn series_of<'a>(metrics: &'a str, environment: &str) -> Vec<&'a str> {
    let label = format!("environment=\"{environment}\"");
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains(&label))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluation_counts_are_per_environment_and_forget_what_was_deleted() {
    let server = Server::start().await;
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    let mut keys = Vec::new();
    for environment in ["default", "staging"] {
        server
            .import_yaml(environment, APP_AND_BACKEND)
            .await
            .expect_status(200);
        keys.push(
            server
                .create_key("backend", "server", Some(environment))
                .await,
        );
    }
    let (production, staging) = (&keys[0], &keys[1]);
    let context = json!({"targetingKey": "user-1"});
    for _ in 0..3 {
        server
            .evaluate(&production.token, "banner", context.clone())
            .await
            .expect_status(200);
    }
    server
        .evaluate(&staging.token, "banner", context.clone())
        .await
        .expect_status(200);
    for key in [production, staging] {
        server
            .evaluate_all(&key.token, context.clone(), None)
            .await
            .expect_status(200);
    }

    let banner = |environment: &str| {
        format!(
            r#"ripcord_evaluations_total{{environment="{environment}",flag="banner",reason="STATIC"}}"#
        )
    };
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, &banner("default")), Some(4.0), "{metrics}");
    assert_eq!(sample(&metrics, &banner("staging")), Some(2.0), "{metrics}");
    assert_eq!(
        metrics
            .lines()
            .filter(|line| *line == "# TYPE ripcord_evaluations_total counter")
            .count(),
        1,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"ripcord_snapshot_revision{environment="staging"}"#
        )
        .is_some(),
        "{metrics}"
    );

    // A change makes a new snapshot; the counts go on from where they were.
    server
        .admin_put(
            "/api/v1/environments/default/flags/backend-only/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    server
        .evaluate(&production.token, "banner", context.clone())
        .await
        .expect_status(200);
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, &banner("default")), Some(5.0), "{metrics}");

    // A deleted flag's counts go, and so does everything of a deleted environment.
    server
        .admin_delete("/api/v1/environments/staging/flags/banner")
        .await;
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, &banner("staging")), None, "{metrics}");
    assert!(
        sample(
            &metrics,
            r#"ripcord_evaluations_total{environment="staging",flag="backend-only",reason="STATIC"}"#
        )
        .is_some(),
        "{metrics}"
    );
    let deleted = server.admin_delete("/api/v1/environments/staging").await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    let metrics = server.metrics().await;
    assert_eq!(
        series_of(&metrics, "staging"),
        Vec::<&str>::new(),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, &banner("default")), Some(5.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_read_in_any_case() {
    let server = Server::start().await;
    server
        .import_yaml("default", APP_AND_BACKEND)
        .await
        .expect_status(200);
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = server
            .client()
            .post(server.url("/ofrep/v1/evaluate/flags/banner"))
            .header("authorization", format!("{scheme} {}", app.token))
            .json(&json!({"context": {"targetingKey": "user-1"}}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200, "scheme `{scheme}`");
    }
}

/// An evaluation request whose body is sent in two parts, so that a test can act while the
/// server waits for the rest, as it does for a slow upload.
struct SlowUpload {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl SlowUpload {
    async fn start(server: &Server, path: &str, token: &str, context: Value) -> SlowUpload {
        let body = json!({"context": context}).to_string().into_bytes();
        let (first, rest) = body.split_at(body.len() / 2);
        let mut stream = TcpStream::connect(server.address()).expect("a connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a read timeout");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("sending the head");
        stream.write_all(first).expect("sending half the body");
        // Time for the server to start on the request: code that looks at the flags before
        // the body is in does so now, and the test sees it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        SlowUpload {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body and returns the answer's status and JSON body.
    fn finish(mut self) -> (u16, Value) {
        self.stream
            .write_all(&self.rest)
            .expect("sending the rest of the body");
        let mut answer = Vec::new();
        // The server closes the connection after the answer (`Connection: close`).
        let _ = self.stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let body = serde_json::from_str(body).unwrap_or_else(|error| {
            panic!("{status} with a body that is not JSON ({error}): {body:?}")
        });
        (status, body)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_sees_the_writes_acknowledged_while_it_was_sent() {
    let server = Server::start().await;
    server
        .import_yaml("default", APP_AND_BACKEND)
        .await
        .expect_status(200);
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let context = json!({"targetingKey": "user-1"});
    let single = SlowUpload::start(
        &server,
        "/ofrep/v1/evaluate/flags/banner",
        &backend.token,
        context.clone(),
    )
    .await;
    let bulk =
        SlowUpload::start(&server, "/ofrep/v1/evaluate/flags", &backend.token, context).await;

    server
        .admin_put(
            "/api/v1/environments/default/flags/banner/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);

    let (status, single) = single.finish();
    assert_eq!(status, 200, "{single}");
    assert_eq!(single["reason"], "DISABLED", "{single}");
    let (status, bulk) = bulk.finish();
    assert_eq!(status, 200, "{bulk}");
    let banner = bulk["flags"]
        .as_array()
        .and_then(|flags| flags.iter().find(|flag| flag["key"] == "banner"))
        .unwrap_or_else(|| panic!("no banner in {bulk}"));
    assert_eq!(banner["reason"], "DISABLED", "{bulk}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_of_a_deleted_environment_get_a_clean_refusal() {
    let server = Server::start().await;
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    server
        .import_yaml("staging", APP_AND_BACKEND)
        .await
        .expect_status(200);
    let app = server
        .create_key("staging-app", "client", Some("staging"))
        .await;
    let context = json!({"targetingKey": "user-1"});
    // Requests under way when the environment goes: authenticated, but nothing to evaluate.
    let single = SlowUpload::start(
        &server,
        "/ofrep/v1/evaluate/flags/banner",
        &app.token,
        context.clone(),
    )
    .await;
    let bulk = SlowUpload::start(
        &server,
        "/ofrep/v1/evaluate/flags",
        &app.token,
        context.clone(),
    )
    .await;

    let deleted = server.admin_delete("/api/v1/environments/staging").await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());

    // OFREP's shapes, so that any provider reads them as the flag's absence.
    let (status, single) = single.finish();
    assert_eq!(status, 404, "{single}");
    assert_eq!(single["key"], "banner", "{single}");
    assert_eq!(single["errorCode"], "FLAG_NOT_FOUND", "{single}");
    assert!(
        single["errorDetails"]
            .as_str()
            .is_some_and(|details| details.contains("staging")),
        "{single}"
    );
    let (status, bulk) = bulk.finish();
    assert_eq!(status, 404, "{bulk}");
    assert_eq!(bulk["errorCode"], "GENERAL", "{bulk}");
    assert!(bulk.get("key").is_none(), "{bulk}");
    assert!(bulk["errorDetails"].is_string(), "{bulk}");

    // Afterwards the key is revoked: refused as any revoked key is.
    let refused = server
        .evaluate(&app.token, "banner", context.clone())
        .await
        .expect_status(401)
        .json();
    assert_eq!(refused["error"], "unauthorized", "{refused}");
    server
        .evaluate_all(&app.token, context, None)
        .await
        .expect_status(401);
}

/// A 405 says which methods the resource does have (`Allow`, as RFC 9110 requires), so a
/// client can correct itself, and keeps the error body every other error has.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_is_405_with_an_error_body_and_the_allowed_methods() {
    let server = Server::start().await;
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    for (method, path, allowed) in [
        (Method::GET, "/ofrep/v1/evaluate/flags", &["POST"][..]),
        (Method::GET, "/ofrep/v1/evaluate/flags/banner", &["POST"]),
        (Method::PUT, "/ofrep/v1/evaluate/flags/banner", &["POST"]),
        (Method::TRACE, "/ofrep/v1/evaluate/flags/banner", &["POST"]),
        (Method::DELETE, "/ofrep/v1/events", &["GET"]),
        (Method::POST, "/metrics", &["GET"]),
        (Method::DELETE, "/healthz", &["GET"]),
        (Method::GET, "/api/v1/keys/some-id", &["DELETE"]),
        (Method::POST, "/api/v1/audit", &["GET"]),
        (
            Method::GET,
            "/api/v1/environments/default/flags/banner/enabled",
            &["PUT"],
        ),
        (
            Method::TRACE,
            "/api/v1/environments/default/flags/banner",
            &["DELETE", "GET", "PUT"],
        ),
        (Method::DELETE, "/api/v1/environments", &["GET", "POST"]),
        (Method::DELETE, "/api/v1/openapi.json", &["GET"]),
    ] {
        let reply = server
            .call(method.clone(), path, Some(&app.token), Body::None)
            .await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
        let mut allow: Vec<String> = reply
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: a 405 without Allow"))
            .split(',')
            .map(|method| method.trim().to_string())
            .collect();
        allow.sort();
        assert_eq!(allow, allowed, "{method} {path}");
        assert_eq!(
            reply.json()["error"],
            "method_not_allowed",
            "{method} {path}: {}",
            reply.text()
        );
    }
}

/// A flag that uses a segment serves differently when the segment changes, so its revision
/// (which apps tag their metrics with) changes too, and its audit trail says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_segment_change_gives_the_flags_using_it_a_new_revision() {
    let server = Server::start().await;
    server
        .import_yaml(
            "default",
            r#"
segments:
  beta-track: {when: [{attribute: releaseTrack, op: in, values: [beta]}]}
flags:
  uses-segment:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules: [{segment: beta-track, serve: {variant: "on"}}]
  independent:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
"#,
        )
        .await
        .expect_status(200);
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let context = json!({"targetingKey": "u1", "releaseTrack": "canary"});
    let before = server
        .evaluate(&key.token, "uses-segment", context.clone())
        .await
        .expect_status(200)
        .json();
    let untouched_before = server
        .evaluate(&key.token, "independent", context.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(before["value"], json!(false), "{before}");

    server
        .admin_put(
            "/api/v1/environments/default/segments/beta-track",
            json!({"when": [{"attribute": "releaseTrack", "op": "in", "values": ["beta", "canary"]}]}),
        )
        .await
        .expect_status(200);
    let after = server
        .evaluate(&key.token, "uses-segment", context.clone())
        .await
        .expect_status(200)
        .json();
    let untouched_after = server
        .evaluate(&key.token, "independent", context)
        .await
        .expect_status(200)
        .json();
    assert_eq!(after["value"], json!(true), "{after}");
    assert!(
        after["metadata"]["revision"].as_u64() > before["metadata"]["revision"].as_u64(),
        "before {before}, after {after}"
    );
    assert_eq!(
        untouched_after["metadata"]["revision"], untouched_before["metadata"]["revision"],
        "a flag without the segment keeps its revision"
    );
    let trail = server
        .admin_get("/api/v1/audit?flag=uses-segment")
        .await
        .expect_status(200)
        .json();
    assert_eq!(
        trail["entries"][0]["operation"],
        json!("segment_change"),
        "{trail}"
    );
}

/// One flag with a rollout on the default stickiness, `targetingKey`, and one without.
const BY_TARGETING_KEY: &str = r#"
flags:
  by-targeting-key:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    client_visible: true
    rollout:
      percentage: 100
      split: [{variant: "on", weight: 1}]
  plain:
    type: integer
    variants: {small: 10, large: 50}
    default_variant: small
    client_visible: true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_null_targeting_key_is_a_missing_one() {
    let server = Server::start_with(&[], BY_TARGETING_KEY).await;
    let service = server
        .create_key("checkout-service", "server", Some("default"))
        .await;

    let plain = server
        .evaluate(&service.token, "plain", json!({"targetingKey": null}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(plain["value"], 10, "{plain}");
    assert_eq!(plain["reason"], "STATIC", "{plain}");

    // Out of the rollout, exactly as a context without the attribute is.
    let null = server
        .evaluate(
            &service.token,
            "by-targeting-key",
            json!({"targetingKey": null, "country": "CA"}),
        )
        .await
        .expect_status(200)
        .json();
    let missing = server
        .evaluate(&service.token, "by-targeting-key", json!({"country": "CA"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(null, missing);
    assert_eq!(null["value"], false, "{null}");
    assert_eq!(null["reason"], "DEFAULT", "{null}");
    assert_eq!(null["metadata"]["unitMissing"], "targetingKey", "{null}");

    let bulk = server
        .evaluate_all(&service.token, json!({"targetingKey": null}), None)
        .await
        .expect_status(200)
        .json();
    assert_eq!(keys_of(&bulk), ["by-targeting-key", "plain"], "{bulk}");

    // Anything else that is not a string is still refused.
    let refused = server
        .evaluate(&service.token, "plain", json!({"targetingKey": 42}))
        .await
        .expect_status(400)
        .json();
    assert_eq!(refused["errorCode"], "INVALID_CONTEXT", "{refused}");
}

/// `search-v2`'s cache token by the variant served, over enough users to meet both.
async fn tokens_by_variant(
    server: &Server,
    key: &str,
) -> std::collections::BTreeMap<String, Value> {
    let mut seen = std::collections::BTreeMap::new();
    for user in 0..40 {
        let answer = server
            .evaluate(
                key,
                "search-v2",
                json!({"targetingKey": format!("user-{user}")}),
            )
            .await
            .expect_status(200)
            .json();
        let token = answer["metadata"]["cacheToken"].clone();
        assert!(
            token.as_str().is_some_and(|token| token.len() == 16),
            "{answer}"
        );
        let variant = answer["variant"].as_str().unwrap().to_string();
        let previous = seen.insert(variant, token.clone());
        assert!(
            previous.is_none_or(|previous| previous == token),
            "everyone served one variant shares its token"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_token_follows_the_value_served() {
    let server = Server::start().await;
    let document = |new_value: &str| {
        format!(
            r#"
flags:
  search-v2:
    type: string
    variants: {{old: "classic", new: "{new_value}", also-old: "classic"}}
    default_variant: old
    rollout: {{percentage: 50, split: [{{variant: new, weight: 1}}]}}
  ranking:
    type: string
    variants: {{old: "classic"}}
    default_variant: old
"#
        )
    };
    server
        .import_yaml("default", &document("vector"))
        .await
        .expect_status(200);
    let key = server
        .create_key("search-service", "server", Some("default"))
        .await;
    let before = tokens_by_variant(&server, &key.token).await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert_ne!(before["old"], before["new"], "treatment and control differ");
    // Another flag serving the same value has a token of its own.
    let ranking = server
        .evaluate(&key.token, "ranking", json!({"targetingKey": "user-1"}))
        .await
        .expect_status(200)
        .json();
    assert_ne!(ranking["metadata"]["cacheToken"], before["old"]);
    // The same in the bulk answer.
    let bulk = server
        .evaluate_all(&key.token, json!({"targetingKey": "user-1"}), None)
        .await
        .expect_status(200)
        .json();
    let item = bulk["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["key"] == "search-v2")
        .unwrap();
    assert_eq!(
        item["metadata"]["cacheToken"],
        before[item["variant"].as_str().unwrap()]
    );

    // The treatment's value changes: its token does, the control's does not.
    server
        .import_yaml("default", &document("semantic"))
        .await
        .expect_status(200);
    let after = tokens_by_variant(&server, &key.token).await;
    assert_eq!(after["old"], before["old"]);
    assert_ne!(after["new"], before["new"]);
}
