//! The admin API and what the server refuses: keys and authorization, document import and
//! export, invalid documents, limits, and garbage that must never produce a server error.

use std::io::{Read, Write};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Body, Server, ADMIN_KEY};

/// The example flag document, as the engine's tests read it.
pub const EXAMPLE_DOCUMENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/tests/fixtures/example.yaml"
));

/// Every part of the flag document, ramp included, as people keep it in git: the example
/// document, whose flags come last, followed by a flag of every other type.
pub const FULL_DOCUMENT: &str = concat!(
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/fixtures/example.yaml"
    )),
    r##"  theme:
    type: string
    variants: {light: "#ffffff", dark: "#000000"}
    default_variant: light
    rules:
      - name: modern apps
        when: [{attribute: appVersion, op: semver_gte, values: ["2.3.0"]}]
        serve: {variant: dark}
  page-size:
    type: integer
    variants: {small: 10, large: 50}
    default_variant: small
    enabled: false
  discount:
    type: float
    variants: {none: 0.0, some: 0.15}
    default_variant: none
    rollout: {percentage: 12.345, split: [{variant: some, weight: 3}, {variant: none, weight: 1}]}
  limits:
    type: object
    variants:
      free: {uploads: 3, size: "10MB"}
      pro: {uploads: 100, size: "1GB", extras: [a, b]}
    default_variant: free
    rules:
      - when: [{attribute: plan, op: eq, values: [pro]}]
        serve: {variant: pro}
"##
);

/// The document as JSON, with every number as a float: `5` and `5.0` are the same number in
/// a flag document.
pub fn normalized(document: &Value) -> Value {
    match document {
        Value::Number(number) => json!(number.as_f64().expect("a finite number")),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), normalized(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn yaml_to_json(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("a YAML document")
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_decide_who_may_do_what() {
    let server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let retired = server
        .create_key("old-app", "client", Some("default"))
        .await;
    let context = json!({"targetingKey": "user-1"});

    // The retired key works until it is revoked.
    server
        .evaluate(&retired.token, "new-checkout", context.clone())
        .await
        .expect_status(200);
    let revoked = server
        .admin_delete(&format!("/api/v1/keys/{}", retired.id))
        .await;
    assert!(
        (200..300).contains(&revoked.status),
        "revoking: {}",
        revoked.text()
    );

    let evaluate = |key: Option<&'static str>| {
        let body = Body::Json(json!({"context": {"targetingKey": "user-1"}}));
        server.call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/new-checkout",
            key,
            body,
        )
    };
    let unauthorized = evaluate(None).await.expect_status(401).json();
    assert!(
        unauthorized["error"].is_string() && unauthorized["message"].is_string(),
        "{unauthorized}"
    );
    evaluate(Some("ripcord-client-not-a-real-key"))
        .await
        .expect_status(401);
    server
        .evaluate(&retired.token, "new-checkout", context.clone())
        .await
        .expect_status(401);
    server
        .call(Method::GET, "/api/v1/environments", None, Body::None)
        .await
        .expect_status(401);
    server
        .call(
            Method::GET,
            "/api/v1/environments",
            Some("wrong"),
            Body::None,
        )
        .await
        .expect_status(401);

    // Client and server keys cannot change anything; admin keys do not evaluate.
    for key in [&app.token, &backend.token] {
        server
            .call(Method::GET, "/api/v1/environments", Some(key), Body::None)
            .await
            .expect_status(403);
        server
            .call(
                Method::PUT,
                "/api/v1/environments/default/flags/new-checkout/enabled",
                Some(key),
                Body::Json(json!({"enabled": false})),
            )
            .await
            .expect_status(403);
    }
    server
        .evaluate(ADMIN_KEY, "new-checkout", context.clone())
        .await
        .expect_status(403);

    // A client key cannot tell a server-side flag from one that does not exist.
    let hidden = server
        .evaluate(&app.token, "theme", context.clone())
        .await
        .expect_status(404)
        .json();
    assert_eq!(hidden["errorCode"], "FLAG_NOT_FOUND", "{hidden}");
    let missing = server
        .evaluate(&app.token, "no-such-flag", context.clone())
        .await
        .expect_status(404)
        .json();
    assert_eq!(missing["errorCode"], "FLAG_NOT_FOUND", "{missing}");
    server
        .evaluate(&app.token, "new-checkout", context.clone())
        .await
        .expect_status(200);
    let seen = server
        .evaluate(&backend.token, "theme", context.clone())
        .await
        .expect_status(200)
        .json();
    assert_eq!(seen["value"], "#ffffff", "{seen}");

    // `X-API-Key` works as well as `Authorization: Bearer`.
    let with_header = server
        .client()
        .post(server.url("/ofrep/v1/evaluate/flags/new-checkout"))
        .header("x-api-key", &app.token)
        .json(&json!({"context": context}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(with_header.status(), 200);
    let keys = server
        .client()
        .get(server.url("/api/v1/keys"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("an answer");
    assert_eq!(keys.status(), 200);

    // Keys are listed without their tokens, the revoked one marked as such.
    let listing = keys.text().await.expect("a body");
    for token in [&app.token, &backend.token, &retired.token] {
        assert!(
            !listing.contains(token.as_str()),
            "GET /api/v1/keys shows a token: {listing}"
        );
    }
    let listing: Value = serde_json::from_str(&listing).expect("JSON");
    let old_app = listing
        .as_array()
        .expect("a list of keys")
        .iter()
        .find(|key| key["id"] == retired.id.as_str())
        .expect("the revoked key is listed");
    assert!(old_app["revoked_at"].is_string(), "{old_app}");

    // Deleting an environment revokes its keys; other environments' keys keep working.
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    let staging = server
        .create_key("staging-app", "client", Some("staging"))
        .await;
    server
        .evaluate_all(&staging.token, json!({}), None)
        .await
        .expect_status(200);
    let deleted = server.admin_delete("/api/v1/environments/staging").await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    server
        .evaluate_all(&staging.token, json!({}), None)
        .await
        .expect_status(401);
    server
        .evaluate_all(&app.token, json!({}), None)
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_documents_are_refused_with_their_path_and_change_nothing() {
    let server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let exported = server.export("default").await;
    let revision = server.revision("default").await;

    // Each refused document also adds a valid flag, which must not appear either.
    let addition = "\n  added-by-a-refused-import:\n    type: boolean\n    variants: {on: true}\n    default_variant: \"on\"\n";
    let cases = [
        (
            FULL_DOCUMENT.replace("percentage: 5\n", "percentage: 150\n"),
            "flags.new-checkout.rollout.percentage",
        ),
        (
            FULL_DOCUMENT.replace(
                "    client_visible: true\n",
                "    client_visible: true\n    colour: blue\n",
            ),
            "flags.new-checkout.colour",
        ),
        (
            FULL_DOCUMENT.replace("default_variant: light", "default_variant: sepia"),
            "flags.theme.default_variant",
        ),
        (
            FULL_DOCUMENT.replace("segment: beta-track", "segment: gamma-track"),
            "flags.new-checkout.rules[1].segment",
        ),
    ];
    for (document, path) in cases {
        let refused = server.import_yaml("default", &(document + addition)).await;
        let body = refused.json();
        assert_eq!(refused.status, 400, "{path}: {body}");
        assert_eq!(body["path"], path, "{body}");
        assert!(body["message"].is_string(), "{body}");
        let problems = body["problems"].as_array().expect("problems");
        assert!(
            problems.iter().any(|problem| problem["path"] == path),
            "{body}"
        );
    }

    // Several problems are reported together.
    let twice_wrong = FULL_DOCUMENT
        .replace("percentage: 5\n", "percentage: 150\n")
        .replace("default_variant: light", "default_variant: sepia");
    let body = server
        .import_yaml("default", &twice_wrong)
        .await
        .expect_status(400)
        .json();
    let paths: Vec<&str> = body["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|problem| problem["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"flags.new-checkout.rollout.percentage"),
        "{body}"
    );
    assert!(paths.contains(&"flags.theme.default_variant"), "{body}");

    // A flag that exists is not created again.
    server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "theme", "flag": {"type": "boolean", "variants": {"on": true}, "default_variant": "on"}}),
        )
        .await
        .expect_status(409);

    // A segment that a rule uses cannot be deleted or made invalid.
    let refused = server
        .admin_delete("/api/v1/environments/default/segments/beta-track")
        .await;
    assert!(
        (400..500).contains(&refused.status),
        "{} {}",
        refused.status,
        refused.text()
    );
    let body = server
        .admin_put(
            "/api/v1/environments/default/segments/beta-track",
            json!({"when": [{"attribute": "releaseTrack", "op": "sounds_like", "values": ["beta"]}]}),
        )
        .await
        .expect_status(400)
        .json();
    assert!(
        body["path"]
            .as_str()
            .is_some_and(|path| path.contains("when")),
        "{body}"
    );

    // The single-flag endpoints refuse the same values.
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/rollout/percentage",
            json!({"percentage": 150}),
        )
        .await
        .expect_status(400);
    let mut flag = exported["flags"]["new-checkout"].clone();
    flag["rollout"]["percentage"] = json!(100.0001);
    let body = server
        .admin_put("/api/v1/environments/default/flags/new-checkout", flag)
        .await
        .expect_status(400)
        .json();
    assert!(
        body["path"]
            .as_str()
            .is_some_and(|path| path.ends_with("rollout.percentage")),
        "{body}"
    );
    server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "broken", "flag": {"type": "boolean", "variants": {"on": true}, "default_variant": "off"}}),
        )
        .await
        .expect_status(400);

    assert_eq!(
        server.export("default").await,
        exported,
        "a refused change changed the document"
    );
    assert_eq!(
        server.revision("default").await,
        revision,
        "a refused change made a revision"
    );
    server
        .admin_get("/api/v1/environments/default/flags/added-by-a-refused-import")
        .await
        .expect_status(404);
}

/// A valid request that the flag's state refuses is a conflict, not a bad request: setting
/// the percentage of a flag without a rollout changes nothing and says what to add.
#[tokio::test(flavor = "multi_thread")]
async fn a_percentage_for_a_flag_without_a_rollout_is_a_conflict() {
    let server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let revision = server.revision("default").await;
    let refused = server
        .admin_put(
            "/api/v1/environments/default/flags/theme/rollout/percentage",
            json!({"percentage": 50}),
        )
        .await
        .expect_status(409)
        .json();
    assert_eq!(refused["error"], "conflict", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("has no rollout")),
        "{refused}"
    );
    assert_eq!(server.revision("default").await, revision);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_document_exports_as_it_was_written() {
    let server = Server::start().await;
    let imported = server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200)
        .json();
    assert!(imported["revision"].is_u64(), "{imported}");
    let written = normalized(&yaml_to_json(FULL_DOCUMENT));

    let exported = server.export("default").await;
    assert_eq!(normalized(&exported), written);
    let as_yaml = server
        .admin_get("/api/v1/environments/default/document?format=yaml")
        .await
        .expect_status(200);
    assert!(
        as_yaml
            .header("content-type")
            .is_some_and(|kind| kind.contains("yaml")),
        "{:?}",
        as_yaml.header("content-type")
    );
    assert_eq!(normalized(&yaml_to_json(&as_yaml.text())), written);

    // Each flag and segment reads back the same one by one.
    let listed = server
        .admin_get("/api/v1/environments/default/flags")
        .await
        .expect_status(200)
        .json();
    let listed = listed.as_array().expect("a list of flags");
    assert_eq!(
        listed.len(),
        written["flags"].as_object().expect("flags").len()
    );
    for entry in listed {
        let key = entry["key"].as_str().expect("a key");
        assert_eq!(normalized(&entry["flag"]), written["flags"][key], "{key}");
        assert!(entry["revision"].is_u64(), "{entry}");
        let one = server
            .admin_get(&format!("/api/v1/environments/default/flags/{key}"))
            .await
            .expect_status(200)
            .json();
        assert_eq!(normalized(&one["flag"]), written["flags"][key], "{key}");
    }
    let segment = server
        .admin_get("/api/v1/environments/default/segments/beta-track")
        .await
        .expect_status(200)
        .json();
    assert_eq!(
        normalized(&segment["segment"]),
        written["segments"]["beta-track"]
    );

    // Typed OpenFeature clients get values of the flag's type: floats with a decimal point.
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let bulk = server
        .evaluate_all(&backend.token, json!({"targetingKey": "user-1"}), None)
        .await
        .expect_status(200)
        .json();
    for result in bulk["flags"].as_array().expect("flags") {
        let key = result["key"].as_str().expect("a key");
        let value = &result["value"];
        let typed = match written["flags"][key]["type"].as_str().expect("a type") {
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            "integer" => value.is_i64(),
            "float" => value.is_f64(),
            "object" => value.is_object(),
            other => panic!("unknown type {other}"),
        };
        assert!(typed, "{key} answered {value}");
    }
    let discount = server
        .evaluate(
            &backend.token,
            "discount",
            json!({"targetingKey": "user-1"}),
        )
        .await
        .text();
    assert!(
        discount.contains("\"value\":0.0") || discount.contains("\"value\":0.15"),
        "{discount}"
    );

    // Importing the export (as JSON) changes nothing: no revision, no audit entry.
    let audit_before = server
        .admin_get("/api/v1/audit?limit=100")
        .await
        .expect_status(200)
        .json();
    let again = server
        .call(
            Method::PUT,
            "/api/v1/environments/default/document",
            Some(ADMIN_KEY),
            Body::Json(exported.clone()),
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(again["revision"], imported["revision"], "{again}");
    let audit_after = server
        .admin_get("/api/v1/audit?limit=100")
        .await
        .expect_status(200)
        .json();
    assert_eq!(audit_after["entries"], audit_before["entries"]);
    assert_eq!(server.export("default").await, exported);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_enforced_with_errors_that_name_them() {
    let server = Server::builder()
        .env("RIPCORD_MAX_BODY_BYTES", 2048)
        .env("RIPCORD_MAX_IMPORT_BYTES", 16 * 1024)
        .env("RIPCORD_MAX_FLAGS", 3)
        .env("RIPCORD_MAX_CONTEXT_ATTRIBUTES", 8)
        .start()
        .await;
    let small = "flags:\n  a: {type: boolean, variants: {on: true}, default_variant: \"on\", client_visible: true}\n";
    server
        .import_yaml("default", small)
        .await
        .expect_status(200);
    let exported = server.export("default").await;
    let revision = server.revision("default").await;
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;

    // A body over RIPCORD_MAX_BODY_BYTES, on OFREP and on the admin API.
    let large = "x".repeat(4096);
    let body = server
        .evaluate(
            &app.token,
            "a",
            json!({"targetingKey": "user-1", "note": large}),
        )
        .await
        .expect_status(413)
        .json();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("RIPCORD_MAX_BODY_BYTES") && message.contains("2048"),
        "{body}"
    );
    let body = server
        .admin_post(
            "/api/v1/environments/default/flags",
            json!({"key": "b", "flag": {"description": large, "type": "boolean", "variants": {"on": true}, "default_variant": "on"}}),
        )
        .await
        .expect_status(413)
        .json();
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("RIPCORD_MAX_BODY_BYTES"),
        "{body}"
    );
    // A ramp operation's reason is refused before the ramp is looked at.
    let body = server
        .admin_post(
            "/api/v1/environments/default/flags/a/ramp/pause",
            json!({ "reason": large }),
        )
        .await
        .expect_status(413)
        .json();
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("RIPCORD_MAX_BODY_BYTES"),
        "{body}"
    );

    // Imports have their own, larger limit.
    let padded = format!("{small}{}", "# padding\n".repeat(2000));
    let body = server
        .import_yaml("default", &padded)
        .await
        .expect_status(413)
        .json();
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("RIPCORD_MAX_IMPORT_BYTES"),
        "{body}"
    );

    // A document over RIPCORD_MAX_FLAGS.
    let mut four = String::from("flags:\n");
    for key in ["a", "b", "c", "d"] {
        four.push_str(&format!(
            "  {key}: {{type: boolean, variants: {{on: true}}, default_variant: \"on\"}}\n"
        ));
    }
    let body = server
        .import_yaml("default", &four)
        .await
        .expect_status(400)
        .json();
    assert_eq!(body["path"], "flags", "{body}");

    // A context over RIPCORD_MAX_CONTEXT_ATTRIBUTES; the limit itself is fine.
    let mut context = serde_json::Map::new();
    for index in 0..8 {
        context.insert(format!("attribute{index}"), json!(index));
    }
    server
        .evaluate(&app.token, "a", Value::Object(context.clone()))
        .await
        .expect_status(200);
    context.insert("one-too-many".to_string(), json!(true));
    let body = server
        .evaluate(&app.token, "a", Value::Object(context.clone()))
        .await
        .expect_status(400)
        .json();
    assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");
    let body = server
        .evaluate_all(&app.token, Value::Object(context), None)
        .await
        .expect_status(400)
        .json();
    assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");

    assert_eq!(server.export("default").await, exported);
    assert_eq!(server.revision("default").await, revision);
}

/// Sends raw bytes as an HTTP/1.1 request and returns the status code of the answer.
fn raw_request(server: &Server, request: &[u8]) -> u16 {
    let mut stream = std::net::TcpStream::connect(server.address()).expect("a connection");
    stream.write_all(request).expect("sending the request");
    let mut answer = Vec::new();
    // The server closes the connection after the answer (`Connection: close`).
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_never_produces_a_server_error() {
    let server = Server::start().await;
    server
        .import_yaml("default", FULL_DOCUMENT)
        .await
        .expect_status(200);
    let app = server
        .create_key("mobile-app", "client", Some("default"))
        .await;
    let admin = Some(ADMIN_KEY);
    let key = Some(app.token.as_str());
    let mut failures = Vec::new();

    let deeply_nested = format!(
        "{{\"context\": {{\"a\": {}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let ofrep_bodies: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "invalid JSON",
            b"{\"context\": ".to_vec(),
            Some("PARSE_ERROR"),
        ),
        ("an empty body", Vec::new(), Some("PARSE_ERROR")),
        (
            "not UTF-8",
            vec![0xff, 0xfe, 0x00, 0x7b],
            Some("PARSE_ERROR"),
        ),
        (
            "a list for a context",
            b"{\"context\": []}".to_vec(),
            Some("INVALID_CONTEXT"),
        ),
        (
            "a number for the targeting key",
            b"{\"context\": {\"targetingKey\": 7}}".to_vec(),
            Some("INVALID_CONTEXT"),
        ),
        (
            "a number out of range",
            b"{\"context\": {\"userId\": 1e999}}".to_vec(),
            None,
        ),
        (
            "a huge integer",
            b"{\"context\": {\"userId\": 123456789012345678901234567890}}".to_vec(),
            None,
        ),
        (
            "a negative zero",
            b"{\"context\": {\"userId\": -0}}".to_vec(),
            None,
        ),
        ("deep nesting", deeply_nested.into_bytes(), None),
        (
            "a JSON string",
            b"\"context\"".to_vec(),
            Some("PARSE_ERROR"),
        ),
        (
            "trailing garbage",
            b"{\"context\": {}} trailing".to_vec(),
            Some("PARSE_ERROR"),
        ),
    ];
    for path in [
        "/ofrep/v1/evaluate/flags/new-checkout",
        "/ofrep/v1/evaluate/flags",
    ] {
        for (what, bytes, code) in &ofrep_bodies {
            let reply = server
                .call(Method::POST, path, key, Body::raw_json(bytes.clone()))
                .await;
            if reply.status >= 500 {
                failures.push(format!(
                    "POST {path} with {what}: {} {}",
                    reply.status,
                    reply.text()
                ));
            } else if let Some(code) = code {
                if reply.status != 400 || reply.json()["errorCode"] != *code {
                    failures.push(format!(
                        "POST {path} with {what}: expected 400 {code}, got {} {}",
                        reply.status,
                        reply.text()
                    ));
                }
            }
        }
    }

    server
        .evaluate(
            &app.token,
            "no-such-flag",
            json!({"targetingKey": "user-1"}),
        )
        .await
        .expect_status(404);

    // Malformed requests to the admin API: refused with a 4xx, never a 5xx.
    let flags = "/api/v1/environments/default/flags";
    let checkout = format!("{flags}/new-checkout");
    let percentage = format!("{checkout}/rollout/percentage");
    let document = "/api/v1/environments/default/document";
    let json = Body::raw_json;
    let admin_calls: Vec<(Method, String, Body)> = vec![
        (
            Method::POST,
            "/api/v1/environments".into(),
            json(r#"{"name": 12}"#),
        ),
        (
            Method::POST,
            "/api/v1/environments".into(),
            json(r#"{"name": "Not A Name!"}"#),
        ),
        (Method::POST, "/api/v1/environments".into(), json("{")),
        (
            Method::POST,
            "/api/v1/environments".into(),
            Body::raw_json(vec![0xff, 0xfe]),
        ),
        (
            Method::POST,
            flags.into(),
            json(r#"{"key": "x", "flag": "nope"}"#),
        ),
        (
            Method::POST,
            flags.into(),
            json(r#"{"key": 5, "flag": {}}"#),
        ),
        (Method::POST, flags.into(), json("[]")),
        (Method::PUT, checkout.clone(), json("null")),
        (
            Method::PUT,
            format!("{checkout}/enabled"),
            json(r#"{"enabled": "yes"}"#),
        ),
        (Method::PUT, format!("{checkout}/enabled"), json("{}")),
        (
            Method::PUT,
            percentage.clone(),
            json(r#"{"percentage": 1e999}"#),
        ),
        (
            Method::PUT,
            percentage.clone(),
            json(r#"{"percentage": 1e300}"#),
        ),
        (
            Method::PUT,
            percentage.clone(),
            json(r#"{"percentage": -1}"#),
        ),
        (
            Method::PUT,
            percentage.clone(),
            json(r#"{"percentage": "50"}"#),
        ),
        (
            Method::PUT,
            percentage.clone(),
            json(r#"{"percentage": 12.3456}"#),
        ),
        (
            Method::PUT,
            format!("{flags}/theme/rollout/percentage"),
            json(r#"{"percentage": 50}"#),
        ),
        (
            Method::PUT,
            format!("{flags}/no-such-flag/enabled"),
            json(r#"{"enabled": false}"#),
        ),
        (
            Method::PUT,
            "/api/v1/environments/no-such-environment/flags/x/enabled".into(),
            json(r#"{"enabled": false}"#),
        ),
        (Method::PUT, document.into(), Body::yaml("flags: [1, 2")),
        (
            Method::PUT,
            document.into(),
            Body::yaml("flags:\n  x: !!binary aGVsbG8=\n"),
        ),
        (Method::PUT, document.into(), Body::yaml("a: &a [*a]")),
        (
            Method::PUT,
            document.into(),
            Body::Raw {
                content_type: "application/xml",
                bytes: b"<flags/>".to_vec(),
            },
        ),
        (
            Method::PUT,
            document.into(),
            Body::raw_json(vec![0xff, 0xfe, 0xfd]),
        ),
        (
            Method::PUT,
            document.into(),
            json(
                r#"{"flags": {"x": {"type": "boolean", "variants": {"on": 1e999}, "default_variant": "on"}}}"#,
            ),
        ),
        (
            Method::POST,
            "/api/v1/keys".into(),
            json(r#"{"name": "k", "scope": "root"}"#),
        ),
        (
            Method::POST,
            "/api/v1/keys".into(),
            json(r#"{"name": "k", "scope": "client"}"#),
        ),
        (
            Method::POST,
            "/api/v1/keys".into(),
            json(r#"{"name": "k", "scope": "client", "environment": "nowhere"}"#),
        ),
        (
            Method::DELETE,
            "/api/v1/keys/not-a-key-id".into(),
            Body::None,
        ),
        (Method::GET, "/api/v1/audit?limit=-1".into(), Body::None),
        (Method::GET, "/api/v1/audit?limit=abc".into(), Body::None),
        (
            Method::GET,
            "/api/v1/audit?limit=99999999999999999999999".into(),
            Body::None,
        ),
        (
            Method::GET,
            "/api/v1/audit?before=99999999999999999999999".into(),
            Body::None,
        ),
        (Method::GET, format!("{document}?format=xml"), Body::None),
        (Method::GET, format!("{flags}/%FF%FE"), Body::None),
        (
            Method::GET,
            "/api/v1/environments/%00/flags".into(),
            Body::None,
        ),
        (Method::GET, "/api/v1/nothing-here".into(), Body::None),
        (Method::GET, "/nothing-here".into(), Body::None),
        (Method::PATCH, "/api/v1/environments".into(), Body::None),
        (Method::GET, "/ofrep/v1/evaluate/flags".into(), Body::None),
        (Method::POST, "/ofrep/v1/evaluate".into(), Body::None),
    ];
    for (method, path, body) in admin_calls {
        let described = format!("{method} {path}");
        let reply = server.call(method, &path, admin, body).await;
        if reply.status >= 500 {
            failures.push(format!("{described}: {} {}", reply.status, reply.text()));
        } else if reply.status < 400 {
            failures.push(format!(
                "{described}: accepted with {} {}",
                reply.status,
                reply.text()
            ));
        } else {
            // Every refusal says why, in JSON: ours (`error`) or OFREP's (`errorCode`).
            let body: serde_json::Value =
                serde_json::from_str(&reply.text()).unwrap_or(serde_json::Value::Null);
            if body.get("error").is_none() && body.get("errorCode").is_none() {
                failures.push(format!(
                    "{described}: {} without an error body: {:?}",
                    reply.status,
                    reply.text()
                ));
            }
        }
    }

    // Odd but harmless requests: any answer but a server error.
    for path in [
        "/api/v1/audit?environment=%FF%FE",
        "/api/v1/audit?flag=%00&limit=1",
        "/metrics?x=%FF",
    ] {
        let reply = server.call(Method::GET, path, admin, Body::None).await;
        if reply.status >= 500 {
            failures.push(format!("GET {path}: {} {}", reply.status, reply.text()));
        }
    }

    // Paths and headers that are not UTF-8, which no HTTP client library will send.
    let as_admin = format!("Authorization: Bearer {ADMIN_KEY}\r\n");
    let as_app = format!("Authorization: Bearer {}\r\n", app.token);
    let end = "Host: x\r\nConnection: close\r\n\r\n";
    // U+FFFD marks where the bytes that are not UTF-8 go.
    for template in [
        format!("GET /api/v1/environments/\u{fffd}/flags HTTP/1.1\r\n{as_admin}{end}"),
        format!("POST /ofrep/v1/evaluate/flags/\u{fffd} HTTP/1.1\r\n{as_app}Content-Length: 2\r\n{end}{{}}"),
        format!("GET /\u{fffd}( HTTP/1.1\r\n{end}"),
        format!("GET /api/v1/keys HTTP/1.1\r\nAuthorization: Bearer \u{fffd}\r\n{end}"),
        format!("GET /api/v1/keys HTTP/1.1\r\nX-API-Key: \u{fffd}\r\n{end}"),
    ] {
        let request = replace(template.as_bytes(), "\u{fffd}".as_bytes(), b"\xff\xfe");
        let status = raw_request(&server, &request);
        if status >= 500 {
            failures.push(format!("{:?}: {status}", String::from_utf8_lossy(&request)));
        }
    }

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server
        .call(Method::GET, "/healthz", None, Body::None)
        .await
        .expect_status(200);
    let document = server.export("default").await;
    assert_eq!(
        normalized(&document),
        normalized(&yaml_to_json(FULL_DOCUMENT)),
        "garbage changed the document"
    );
    // Unknown paths and flags do not become metric labels: a scanner cannot blow up the
    // number of series operators store.
    let metrics = server.metrics().await;
    for invented in ["nothing-here", "no-such-flag", "not-a-key-id"] {
        assert!(
            !metrics.contains(invented),
            "/metrics has a series for `{invented}`"
        );
    }
}

/// `haystack` with every `needle` replaced by `replacement`.
fn replace(haystack: &[u8], needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let mut result = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            result.extend_from_slice(replacement);
            rest = &rest[needle.len()..];
        } else {
            result.push(rest[0]);
            rest = &rest[1..];
        }
    }
    result
}
