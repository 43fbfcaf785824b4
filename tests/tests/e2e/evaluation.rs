//! OFREP as applications see it: the kill switch, rollouts and bucketing, ETags and 304s,
//! CORS for browsers, and the evaluation counts operators scrape.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Body, Server};

/// The checkout flag of DESIGN.md: staff and the beta track get it, 5% of users by `userId`.
const CHECKOUT: &str = r#"
segments:
  beta-track:
    description: Users on the beta release track
    when:
      - {attribute: releaseTrack, op: in, values: [beta, canary]}
flags:
  new-checkout:
    description: Single-page checkout
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: true
    client_visible: true
    rules:
      - name: staff
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: "on"}
      - name: beta track first
        segment: beta-track
        serve: {variant: "on"}
    rollout:
      stickiness: userId
      percentage: 5
      split: [{variant: "on", weight: 1}]
"#;

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
            Body::yaml(CHECKOUT),
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
    assert!(
        (4..=37).contains(&control_at_10.len()),
        "{} of 200 in control at 10%",
        control_at_10.len()
    );
    assert!(at_10.is_disjoint(&control_at_10));

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

/// The cohort of a unit in `bucket` under the threshold `threshold` (DESIGN.md, contract 1).
/// No cohort is reported at 100%, where there is no one left to compare with.
fn cohort(bucket: u64, threshold: u64) -> Option<&'static str> {
    if threshold >= 100_000 {
        None
    } else if bucket < threshold {
        Some("treatment")
    } else if (threshold <= 50_000 && (50_000..50_000 + threshold).contains(&bucket))
        || (threshold > 50_000 && bucket >= threshold)
    {
        Some("control")
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bucketing_matches_the_shared_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/spec/bucketing.json"
    ))
    .expect("the shared bucketing vectors");
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
/// `ripcord_evaluations_total{flag="banner",reason="STATIC"}`.
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
            r#"ripcord_evaluations_total{flag="banner",reason="STATIC"}"#
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
