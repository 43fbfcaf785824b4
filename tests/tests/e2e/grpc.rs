//! gRPC as its clients see it, through clients generated from the protos: `ripcord.v1`
//! (evaluation that answers as OFREP does, the `Watch` ruleset stream), flagd's evaluation
//! services v1 and v2, health and reflection.

use std::time::{Duration, Instant};

use ripcord_engine::{Ruleset, RulesetDelta};
use ripcord_proto::pb::flagd::evaluation::{v1 as flagd_v1, v2 as flagd_v2};
use ripcord_proto::pb::ripcord::v1 as pb;
use serde_json::{json, Map, Value};
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

use crate::harness::Server;

/// Every kind of flag, and every reason to get a value.
const DOCUMENT: &str = r##"
segments:
  beta-track:
    when:
      - {attribute: releaseTrack, op: in, values: [beta, canary]}
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
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
      percentage: 50
      split: [{variant: "on", weight: 1}]
  button-color:
    type: string
    variants: {blue: "#1f6feb", green: "#2da44e", orange: "#fb8500"}
    default_variant: blue
    client_visible: true
    rollout:
      percentage: 60
      split:
        - {variant: green, weight: 1}
        - {variant: orange, weight: 1}
  page-size:
    type: integer
    variants: {small: 10, large: 50}
    default_variant: small
    client_visible: true
  price-factor:
    type: float
    variants: {normal: 1, discount: 0.85}
    default_variant: normal
    rules:
      - when: [{attribute: plan, op: eq, values: [pro]}]
        serve: {variant: discount}
  theme:
    type: object
    variants:
      light: {background: white, sizes: [1, 2.5]}
      dark: {background: black, sizes: []}
    default_variant: light
  legacy-search:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: false
    rules:
      - when: [{attribute: plan, op: eq, values: [pro]}]
        serve: {variant: "on"}
"##;

const ALL_FLAGS: [&str; 6] = [
    "new-checkout",
    "button-color",
    "page-size",
    "price-factor",
    "theme",
    "legacy-search",
];

async fn server_with_document(env: &[(&str, &str)]) -> Server {
    Server::start_with(env, DOCUMENT).await
}

async fn channel(server: &Server) -> Channel {
    Channel::from_shared(server.grpc_url().to_string())
        .expect("a gRPC URL")
        .connect()
        .await
        .expect("the gRPC port accepts connections")
}

async fn ripcord(server: &Server) -> pb::ripcord_client::RipcordClient<Channel> {
    pb::ripcord_client::RipcordClient::new(channel(server).await)
}

/// A request with `authorization: Bearer <key>` when there is a key.
fn authorized<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ASCII metadata"),
        );
    }
    request
}

fn to_struct(value: &Value) -> prost_types::Struct {
    let Value::Object(fields) = value else {
        panic!("not an object: {value}")
    };
    prost_types::Struct {
        fields: fields
            .iter()
            .map(|(name, value)| (name.clone(), to_proto(value)))
            .collect(),
    }
}

fn to_proto(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(value) => Kind::BoolValue(*value),
        Value::Number(number) => Kind::NumberValue(number.as_f64().expect("a number")),
        Value::String(value) => Kind::StringValue(value.clone()),
        Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.iter().map(to_proto).collect(),
        }),
        Value::Object(_) => Kind::StructValue(to_struct(value)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn from_proto(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(value)) => json!(value),
        Some(Kind::NumberValue(number)) => json!(number),
        Some(Kind::StringValue(value)) => json!(value),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(from_proto).collect()),
        Some(Kind::StructValue(fields)) => from_struct(fields),
    }
}

fn from_struct(fields: &prost_types::Struct) -> Value {
    Value::Object(
        fields
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), from_proto(value)))
            .collect(),
    )
}

/// A gRPC evaluation in OFREP's shape, and the name of the field its value came in.
fn as_ofrep(evaluation: &pb::Evaluation) -> (Value, &'static str) {
    use pb::flag_value::Kind;
    let (value, field) = match evaluation
        .value
        .as_ref()
        .and_then(|value| value.kind.as_ref())
    {
        Some(Kind::BoolValue(value)) => (json!(value), "bool"),
        Some(Kind::StringValue(value)) => (json!(value), "string"),
        Some(Kind::IntValue(value)) => (json!(value), "int"),
        Some(Kind::FloatValue(value)) => (json!(value), "float"),
        Some(Kind::ObjectValue(value)) => (from_proto(value), "object"),
        None => (Value::Null, "none"),
    };
    let metadata = evaluation
        .metadata
        .as_ref()
        .expect("an evaluation carries metadata");
    let mut ofrep_metadata = Map::new();
    ofrep_metadata.insert("revision".to_string(), json!(metadata.revision));
    for (name, text) in [
        ("cohort", &metadata.cohort),
        ("rule", &metadata.rule),
        ("unitMissing", &metadata.unit_missing),
        ("cacheToken", &metadata.cache_token),
    ] {
        if !text.is_empty() {
            ofrep_metadata.insert(name.to_string(), json!(text));
        }
    }
    let ofrep = json!({
        "key": evaluation.flag_key,
        "value": value,
        "reason": evaluation.reason,
        "variant": evaluation.variant,
        "metadata": ofrep_metadata,
    });
    (ofrep, field)
}

/// Protobuf's `Value` has only doubles: inside object values `1` comes back as `1.0`, which
/// JSON equality tells apart. Typed values are checked by their field instead.
fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(number) => json!(number.as_f64().expect("a number")),
        Value::Array(values) => Value::Array(values.into_iter().map(numbers_as_floats).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, numbers_as_floats(value)))
                .collect(),
        ),
        other => other,
    }
}

fn contexts() -> Vec<Value> {
    let mut contexts = vec![
        json!({}),
        json!({"targetingKey": "t-1", "userId": "u-1", "email": "ana@example.com"}),
        json!({"targetingKey": "t-2", "userId": "u-2", "releaseTrack": "beta", "plan": "pro"}),
        json!({"userId": 17, "plan": "free"}),
    ];
    contexts.extend(
        (0..24).map(|n| json!({"targetingKey": format!("user-{n}"), "userId": format!("u-{n}")})),
    );
    contexts
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_and_evaluate_all_answer_as_ofrep_does() {
    let server = server_with_document(&[]).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let mut client = ripcord(&server).await;
    let mut cohorts = std::collections::BTreeSet::new();
    for context in contexts() {
        for flag in ALL_FLAGS {
            let ofrep = server
                .evaluate(&backend.token, flag, context.clone())
                .await
                .expect_status(200)
                .json();
            let evaluation = client
                .evaluate(authorized(
                    pb::EvaluateRequest {
                        flag_key: flag.to_string(),
                        context: Some(to_struct(&context)),
                    },
                    Some(&backend.token),
                ))
                .await
                .unwrap_or_else(|status| panic!("Evaluate {flag}: {status:?}"))
                .into_inner();
            assert!(evaluation.error_code.is_empty(), "{evaluation:?}");
            let (answer, field) = as_ofrep(&evaluation);
            assert_eq!(
                numbers_as_floats(answer),
                numbers_as_floats(ofrep),
                "{flag} for {context}"
            );
            let expected_field = match flag {
                "new-checkout" | "legacy-search" => "bool",
                "button-color" => "string",
                "page-size" => "int",
                "price-factor" => "float",
                _ => "object",
            };
            assert_eq!(field, expected_field, "{flag}: {evaluation:?}");
            if !evaluation
                .metadata
                .as_ref()
                .is_none_or(|m| m.cohort.is_empty())
            {
                cohorts.insert(evaluation.metadata.unwrap_or_default().cohort);
            }
        }

        let bulk = server
            .evaluate_all(&backend.token, context.clone(), None)
            .await
            .expect_status(200)
            .json();
        let all = client
            .evaluate_all(authorized(
                pb::EvaluateAllRequest {
                    context: Some(to_struct(&context)),
                },
                Some(&backend.token),
            ))
            .await
            .expect("EvaluateAll")
            .into_inner();
        let mut ofrep_flags: Vec<Value> = bulk["flags"].as_array().expect("flags").clone();
        ofrep_flags.sort_by_key(|flag| flag["key"].as_str().unwrap_or_default().to_string());
        let grpc_flags: Vec<Value> = all.evaluations.iter().map(|e| as_ofrep(e).0).collect();
        assert_eq!(
            numbers_as_floats(Value::Array(grpc_flags)),
            numbers_as_floats(Value::Array(ofrep_flags)),
            "EvaluateAll for {context}"
        );
    }
    // The rollouts are below 100%: both cohorts show up in the metadata.
    assert_eq!(
        cohorts.into_iter().collect::<Vec<_>>(),
        ["control", "treatment"],
        "cohorts seen"
    );

    // A missing flag is an evaluation that says so, not a failed call.
    let missing = client
        .evaluate(authorized(
            pb::EvaluateRequest {
                flag_key: "no-such-flag".to_string(),
                context: None,
            },
            Some(&backend.token),
        ))
        .await
        .expect("Evaluate of a missing flag")
        .into_inner();
    assert_eq!(missing.error_code, "FLAG_NOT_FOUND", "{missing:?}");
    assert_eq!(missing.reason, "ERROR", "{missing:?}");
    assert!(missing.value.is_none(), "{missing:?}");

    // gRPC evaluations are counted with OFREP's.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(
            r#"ripcord_evaluations_total{environment="default",flag="theme",reason="STATIC"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_checked_as_over_ofrep() {
    let server = server_with_document(&[]).await;
    let app = server.create_key("app", "client", Some("default")).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let mut client = ripcord(&server).await;
    let evaluate = |flag: &str, key: Option<&str>, context: Value| {
        authorized(
            pb::EvaluateRequest {
                flag_key: flag.to_string(),
                context: Some(to_struct(&context)),
            },
            key,
        )
    };

    for (key, code) in [
        (None, Code::Unauthenticated),
        (Some("ripcord-server-not-a-real-key"), Code::Unauthenticated),
        (Some(server.admin_key.as_str()), Code::PermissionDenied),
    ] {
        let refused = client
            .evaluate(evaluate("page-size", key, json!({})))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{key:?}: {refused:?}");
        let refused = client
            .evaluate_all(authorized(pb::EvaluateAllRequest { context: None }, key))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{key:?}: {refused:?}");
    }

    // The scheme is case-insensitive.
    let mut lowercase = evaluate("page-size", None, json!({}));
    lowercase.metadata_mut().insert(
        "authorization",
        format!("bearer {}", app.token).parse().expect("ASCII"),
    );
    let answer = client
        .evaluate(lowercase)
        .await
        .expect("a lowercase scheme");
    assert_eq!(answer.into_inner().reason, "STATIC");

    // A client key does not see server-only flags, not even that they exist.
    let hidden = client
        .evaluate(evaluate("theme", Some(&app.token), json!({})))
        .await
        .expect("Evaluate")
        .into_inner();
    assert_eq!(hidden.error_code, "FLAG_NOT_FOUND", "{hidden:?}");
    let seen = client
        .evaluate(evaluate("theme", Some(&backend.token), json!({})))
        .await
        .expect("Evaluate")
        .into_inner();
    assert_eq!(seen.variant, "light", "{seen:?}");
    let keys = |response: pb::EvaluateAllResponse| -> Vec<String> {
        response
            .evaluations
            .into_iter()
            .map(|evaluation| evaluation.flag_key)
            .collect()
    };
    let for_app = client
        .evaluate_all(authorized(
            pb::EvaluateAllRequest { context: None },
            Some(&app.token),
        ))
        .await
        .expect("EvaluateAll");
    assert_eq!(
        keys(for_app.into_inner()),
        ["button-color", "new-checkout", "page-size"]
    );
    let for_backend = client
        .evaluate_all(authorized(
            pb::EvaluateAllRequest { context: None },
            Some(&backend.token),
        ))
        .await
        .expect("EvaluateAll");
    assert_eq!(keys(for_backend.into_inner()).len(), ALL_FLAGS.len());

    // Rulesets hold every flag: a client key may not Watch.
    let refused = client
        .watch(authorized(
            pb::WatchRequest { known_revision: 0 },
            Some(&app.token),
        ))
        .await
        .expect_err("a client key cannot Watch");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = client
        .watch(authorized(
            pb::WatchRequest { known_revision: 0 },
            Some(&server.admin_key),
        ))
        .await
        .expect_err("an admin key cannot Watch");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // A context refused says why.
    let refused = client
        .evaluate(evaluate(
            "page-size",
            Some(&backend.token),
            json!({"targetingKey": 42}),
        ))
        .await
        .expect_err("a numeric targetingKey is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("targetingKey"), "{refused:?}");

    // A revoked key is refused from the next call on.
    server
        .admin_delete(&format!("/api/v1/keys/{}", backend.id))
        .await
        .expect_status(200);
    let refused = client
        .evaluate(evaluate("page-size", Some(&backend.token), json!({})))
        .await
        .expect_err("a revoked key is refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

/// The next message that is not a heartbeat.
async fn next_change(stream: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a message within 5 s")
            .expect("the stream goes on")
            .expect("a message");
        if !matches!(message.event, Some(pb::watch_response::Event::Heartbeat(_))) {
            return message;
        }
    }
}

async fn watch(
    client: &mut pb::ripcord_client::RipcordClient<Channel>,
    key: &str,
    known_revision: u64,
) -> Streaming<pb::WatchResponse> {
    client
        .watch(authorized(pb::WatchRequest { known_revision }, Some(key)))
        .await
        .expect("Watch")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_sends_the_ruleset_then_deltas_and_resumes_with_what_was_missed() {
    let server = server_with_document(&[("RIPCORD_HEARTBEAT", "1s")]).await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let mut client = ripcord(&server).await;
    let mut stream = watch(&mut client, &backend.token, 0).await;

    let first = next_change(&mut stream).await;
    let Some(pb::watch_response::Event::Ruleset(json)) = &first.event else {
        panic!("the first message is the ruleset: {first:?}")
    };
    let mut ruleset = Ruleset::from_json(json).expect("a ruleset");
    let start = ruleset.revision;
    assert_eq!(first.revision, start);
    assert_eq!(start, server.revision("default").await);
    assert_eq!(ruleset.environment, "default");
    let checkout = &ruleset.document.flags["new-checkout"];
    assert_eq!(checkout.rules.len(), 2, "{checkout:?}");
    assert_ne!(checkout.enabled, Some(false), "{checkout:?}");

    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let change = next_change(&mut stream).await;
    let Some(pb::watch_response::Event::Delta(json)) = &change.event else {
        panic!("a change comes as a delta: {change:?}")
    };
    let delta = RulesetDelta::from_json(json).expect("a delta");
    ruleset.apply(&delta).expect("the delta applies");
    assert_eq!(ruleset.document.flags["new-checkout"].enabled, Some(false));
    assert_eq!(change.revision, start + 1);
    assert_eq!(ruleset.revision, start + 1);
    assert_eq!(
        serde_json::to_value(&ruleset.document).expect("JSON"),
        server.export("default").await
    );

    // Quiet: a heartbeat, at the current revision.
    let quiet = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("a heartbeat within 3 s")
        .expect("the stream goes on")
        .expect("a message");
    assert!(
        matches!(quiet.event, Some(pb::watch_response::Event::Heartbeat(_))),
        "{quiet:?}"
    );
    assert_eq!(quiet.revision, start + 1);
    drop(stream);

    // Coming back at the revision before the change: only the missed delta.
    let mut resumed = watch(&mut client, &backend.token, start).await;
    let missed = next_change(&mut resumed).await;
    assert!(
        matches!(&missed.event, Some(pb::watch_response::Event::Delta(_))),
        "{missed:?}"
    );
    assert_eq!(missed.revision, start + 1);
    let after = tokio::time::timeout(Duration::from_secs(3), resumed.message())
        .await
        .expect("a heartbeat within 3 s")
        .expect("the stream goes on")
        .expect("a message");
    assert!(
        matches!(after.event, Some(pb::watch_response::Event::Heartbeat(_))),
        "only heartbeats after the missed delta: {after:?}"
    );

    // Coming back up to date: nothing but heartbeats.
    let mut current = watch(&mut client, &backend.token, start + 1).await;
    let only = tokio::time::timeout(Duration::from_secs(3), current.message())
        .await
        .expect("a heartbeat within 3 s")
        .expect("the stream goes on")
        .expect("a message");
    assert!(
        matches!(only.event, Some(pb::watch_response::Event::Heartbeat(_))),
        "{only:?}"
    );

    // Revoking the key ends its streams by the next heartbeat at the latest.
    server
        .admin_delete(&format!("/api/v1/keys/{}", backend.id))
        .await
        .expect_status(200);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(3), current.message())
            .await
            .expect("the stream ends within 3 s")
        {
            Ok(Some(_heartbeat)) => continue,
            Ok(None) => panic!("the stream ended without saying why"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_ends_when_the_environment_is_deleted_and_sigterm_ends_it_promptly() {
    let mut server = Server::start().await;
    server
        .admin_post("/api/v1/environments", json!({"name": "staging"}))
        .await
        .expect_status(201);
    let staging = server
        .create_key("staging", "server", Some("staging"))
        .await;
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let mut client = ripcord(&server).await;

    let mut stream = watch(&mut client, &staging.token, 0).await;
    next_change(&mut stream).await;
    let deleted = server.admin_delete("/api/v1/environments/staging").await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends within 5 s")
        .expect_err("the stream ends with an error");
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");

    // An open Watch does not hold a graceful stop.
    let mut open = watch(&mut client, &backend.token, 0).await;
    next_change(&mut open).await;
    let asked = Instant::now();
    let exited = server.terminate();
    assert!(
        exited.status.success(),
        "{:?}; stderr:\n{}",
        exited.status,
        exited.stderr.join("\n")
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = Server::builder()
        .env("RIPCORD_FLAGD_ENVIRONMENT", "default")
        .start()
        .await;
    let channel = channel(&server).await;
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "ripcord.v1.Ripcord",
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of `{service}`: {status:?}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "`{service}`");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(one_message(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a reflection answer")
        .expect("a message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}")
    };
    lists_every_service(
        list.service
            .into_iter()
            .map(|service| service.name)
            .collect(),
    );
}

/// Checks that a reflection answer lists every service the server serves; both reflection
/// versions must, since a client of either needs to find them all.
fn lists_every_service(names: Vec<String>) {
    for expected in [
        "ripcord.v1.Ripcord",
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} in {names:?}"
        );
    }
}

/// A client stream of one message.
fn one_message<T: Send + 'static>(
    message: T,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::iter([message])
}

fn flagd_context() -> Option<prost_types::Struct> {
    Some(to_struct(
        &json!({"targetingKey": "t-2", "userId": "u-2", "plan": "pro"}),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn flagd_v1_resolves_typed_values_and_streams_changes() {
    use flagd_v1::service_client::ServiceClient;
    let server = server_with_document(&[
        ("RIPCORD_FLAGD_ENVIRONMENT", "default"),
        ("RIPCORD_FLAGD_ALLOW_ANONYMOUS", "true"),
    ])
    .await;
    let mut client = ServiceClient::new(channel(&server).await);
    let revision = server.revision("default").await;

    let boolean = client
        .resolve_boolean(flagd_v1::ResolveBooleanRequest {
            flag_key: "legacy-search".to_string(),
            context: flagd_context(),
        })
        .await
        .expect("ResolveBoolean")
        .into_inner();
    assert_eq!(
        (
            boolean.value,
            boolean.reason.as_str(),
            boolean.variant.as_str()
        ),
        (false, "DISABLED", "off")
    );
    let metadata = from_struct(&boolean.metadata.expect("metadata"));
    assert_eq!(metadata["revision"], json!(revision as f64), "{metadata}");

    let string = client
        .resolve_string(flagd_v1::ResolveStringRequest {
            flag_key: "button-color".to_string(),
            context: flagd_context(),
        })
        .await
        .expect("ResolveString")
        .into_inner();
    assert!(
        ["#1f6feb", "#2da44e", "#fb8500"].contains(&string.value.as_str()),
        "{string:?}"
    );
    let float = client
        .resolve_float(flagd_v1::ResolveFloatRequest {
            flag_key: "price-factor".to_string(),
            context: flagd_context(),
        })
        .await
        .expect("ResolveFloat")
        .into_inner();
    assert_eq!(
        (float.value, float.reason.as_str()),
        (0.85, "TARGETING_MATCH")
    );
    let int = client
        .resolve_int(flagd_v1::ResolveIntRequest {
            flag_key: "page-size".to_string(),
            context: None,
        })
        .await
        .expect("ResolveInt")
        .into_inner();
    assert_eq!(
        (int.value, int.reason.as_str(), int.variant.as_str()),
        (10, "STATIC", "small")
    );
    let object = client
        .resolve_object(flagd_v1::ResolveObjectRequest {
            flag_key: "theme".to_string(),
            context: None,
        })
        .await
        .expect("ResolveObject")
        .into_inner();
    assert_eq!(
        from_struct(&object.value.expect("a value")),
        json!({"background": "white", "sizes": [1.0, 2.5]})
    );

    let missing = client
        .resolve_boolean(flagd_v1::ResolveBooleanRequest {
            flag_key: "no-such-flag".to_string(),
            context: None,
        })
        .await
        .expect_err("a missing flag");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let mismatch = client
        .resolve_boolean(flagd_v1::ResolveBooleanRequest {
            flag_key: "button-color".to_string(),
            context: None,
        })
        .await
        .expect_err("a string flag is not a boolean");
    assert_eq!(mismatch.code(), Code::InvalidArgument, "{mismatch:?}");
    // As with flagd, numbers are numbers: an integer call truncates a float flag's value, and
    // a float call reads an integer flag's.
    let truncated = client
        .resolve_int(flagd_v1::ResolveIntRequest {
            flag_key: "price-factor".to_string(),
            context: flagd_context(),
        })
        .await
        .expect("ResolveInt of a float flag")
        .into_inner();
    assert_eq!(
        (truncated.value, truncated.variant.as_str()),
        (0, "discount")
    );
    let widened = client
        .resolve_float(flagd_v1::ResolveFloatRequest {
            flag_key: "page-size".to_string(),
            context: None,
        })
        .await
        .expect("ResolveFloat of an integer flag")
        .into_inner();
    assert_eq!((widened.value, widened.variant.as_str()), (10.0, "small"));
    let invalid = client
        .resolve_int(flagd_v1::ResolveIntRequest {
            flag_key: "page-size".to_string(),
            context: Some(to_struct(&json!({"targetingKey": true}))),
        })
        .await
        .expect_err("an invalid context");
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");

    let all = client
        .resolve_all(flagd_v1::ResolveAllRequest {
            context: flagd_context(),
        })
        .await
        .expect("ResolveAll")
        .into_inner();
    let mut keys: Vec<&str> = all.flags.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = ALL_FLAGS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    use flagd_v1::any_flag::Value as Any;
    assert_eq!(all.flags["page-size"].value, Some(Any::DoubleValue(10.0)));
    assert_eq!(
        all.flags["price-factor"].value,
        Some(Any::DoubleValue(0.85))
    );
    assert_eq!(
        all.flags["legacy-search"].value,
        Some(Any::BoolValue(false))
    );
    assert_eq!(all.flags["price-factor"].reason, "TARGETING_MATCH");

    let mut events = client
        .event_stream(flagd_v1::EventStreamRequest {})
        .await
        .expect("EventStream")
        .into_inner();
    let ready = events
        .message()
        .await
        .expect("an event")
        .expect("a message");
    assert_eq!(ready.r#type, "provider_ready");
    server
        .admin_put(
            "/api/v1/environments/default/flags/page-size/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let change = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("a message");
        if event.r#type != "keep_alive" {
            break event;
        }
    };
    assert_eq!(change.r#type, "configuration_change");
    let data = from_struct(&change.data.expect("data"));
    let changed: Vec<&String> = data["flags"].as_object().expect("flags").keys().collect();
    assert_eq!(changed, ["page-size"], "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flagd_v2_resolves_typed_values_and_streams_changes() {
    use flagd_v2::service_client::ServiceClient;
    let server = server_with_document(&[
        ("RIPCORD_FLAGD_ENVIRONMENT", "default"),
        ("RIPCORD_FLAGD_ALLOW_ANONYMOUS", "true"),
    ])
    .await;
    let mut client = ServiceClient::new(channel(&server).await);

    let boolean = client
        .resolve_boolean(flagd_v2::ResolveBooleanRequest {
            flag_key: "new-checkout".to_string(),
            context: Some(to_struct(&json!({"email": "ana@example.com"}))),
        })
        .await
        .expect("ResolveBoolean")
        .into_inner();
    assert_eq!(boolean.value, Some(true));
    assert_eq!(boolean.variant.as_deref(), Some("on"));
    assert_eq!(boolean.reason, "TARGETING_MATCH");
    let metadata = from_struct(&boolean.metadata.expect("metadata"));
    assert_eq!(metadata["rule"], "staff", "{metadata}");
    let float = client
        .resolve_float(flagd_v2::ResolveFloatRequest {
            flag_key: "price-factor".to_string(),
            context: None,
        })
        .await
        .expect("ResolveFloat")
        .into_inner();
    assert_eq!(float.value, Some(1.0));
    let int = client
        .resolve_int(flagd_v2::ResolveIntRequest {
            flag_key: "page-size".to_string(),
            context: None,
        })
        .await
        .expect("ResolveInt")
        .into_inner();
    assert_eq!(int.value, Some(10));
    let string = client
        .resolve_string(flagd_v2::ResolveStringRequest {
            flag_key: "button-color".to_string(),
            context: Some(to_struct(&json!({"targetingKey": "someone"}))),
        })
        .await
        .expect("ResolveString")
        .into_inner();
    assert!(
        string.value.is_some() && string.variant.is_some(),
        "{string:?}"
    );
    let object = client
        .resolve_object(flagd_v2::ResolveObjectRequest {
            flag_key: "theme".to_string(),
            context: None,
        })
        .await
        .expect("ResolveObject")
        .into_inner();
    assert_eq!(
        from_struct(&object.value.expect("a value"))["background"],
        "white"
    );

    let missing = client
        .resolve_string(flagd_v2::ResolveStringRequest {
            flag_key: "no-such-flag".to_string(),
            context: None,
        })
        .await
        .expect_err("a missing flag");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let mismatch = client
        .resolve_string(flagd_v2::ResolveStringRequest {
            flag_key: "page-size".to_string(),
            context: None,
        })
        .await
        .expect_err("an integer flag is not a string");
    assert_eq!(mismatch.code(), Code::InvalidArgument, "{mismatch:?}");

    let mut events = client
        .event_stream(flagd_v2::EventStreamRequest {})
        .await
        .expect("EventStream")
        .into_inner();
    let ready = events
        .message()
        .await
        .expect("an event")
        .expect("a message");
    assert_eq!(ready.r#type, "provider_ready");
    server
        .admin_put(
            "/api/v1/environments/default/flags/theme/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let change = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("a message");
        if event.r#type != "keep_alive" {
            break event;
        }
    };
    assert_eq!(change.r#type, "configuration_change");
    let data = from_struct(&change.data.expect("data"));
    assert!(data["flags"].get("theme").is_some(), "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flagd_needs_an_environment_and_a_key_unless_anonymous_access_is_on() {
    let (unset, keyed) = tokio::join!(
        Server::start(),
        server_with_document(&[("RIPCORD_FLAGD_ENVIRONMENT", "default")])
    );

    let mut client = flagd_v1::service_client::ServiceClient::new(channel(&unset).await);
    let refused = client
        .resolve_int(flagd_v1::ResolveIntRequest {
            flag_key: "page-size".to_string(),
            context: None,
        })
        .await
        .expect_err("no flagd environment");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("RIPCORD_FLAGD_ENVIRONMENT"),
        "{refused:?}"
    );
    // Health says so too, so that a load balancer does not send flagd providers here.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&unset).await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "flagd.evaluation.v1.Service".to_string(),
        })
        .await
        .expect("health of flagd's service")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );

    let mut client = flagd_v2::service_client::ServiceClient::new(channel(&keyed).await);
    let request = |key: Option<&str>, flag: &str| {
        authorized(
            flagd_v2::ResolveIntRequest {
                flag_key: flag.to_string(),
                context: None,
            },
            key,
        )
    };
    let refused = client
        .resolve_int(request(None, "page-size"))
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = client
        .event_stream(flagd_v2::EventStreamRequest {})
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let app = keyed.create_key("app", "client", Some("default")).await;
    let resolved = client
        .resolve_int(request(Some(&app.token), "page-size"))
        .await
        .expect("a client key resolves")
        .into_inner();
    assert_eq!(resolved.value, Some(10));
    // A client key does not see server-only flags.
    let hidden = client
        .resolve_float(authorized(
            flagd_v2::ResolveFloatRequest {
                flag_key: "price-factor".to_string(),
                context: None,
            },
            Some(&app.token),
        ))
        .await
        .expect_err("a server-only flag");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    let refused = client
        .resolve_int(request(Some(&keyed.admin_key), "page-size"))
        .await
        .expect_err("an admin key");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

/// OpenFeature's flagd provider sends `"targetingKey": null` when the app has no targeting
/// key: a missing key, not a malformed context.
#[tokio::test(flavor = "multi_thread")]
async fn flagd_takes_a_null_targeting_key_as_a_missing_one() {
    use flagd_v1::service_client::ServiceClient;
    let server = server_with_document(&[
        ("RIPCORD_FLAGD_ENVIRONMENT", "default"),
        ("RIPCORD_FLAGD_ALLOW_ANONYMOUS", "true"),
    ])
    .await;
    let mut client = ServiceClient::new(channel(&server).await);
    let null = || Some(to_struct(&json!({"targetingKey": null, "plan": "free"})));
    let missing = || Some(to_struct(&json!({"plan": "free"})));

    let plain = client
        .resolve_int(flagd_v1::ResolveIntRequest {
            flag_key: "page-size".to_string(),
            context: null(),
        })
        .await
        .expect("a flag without a rollout resolves")
        .into_inner();
    assert_eq!(plain.value, 10);
    assert_eq!(plain.reason, "STATIC");

    // button-color rolls out by `targetingKey`: a null key keeps the context out of it,
    // as a missing one does.
    let mut answers = Vec::new();
    for context in [null(), missing()] {
        let resolved = client
            .resolve_string(flagd_v1::ResolveStringRequest {
                flag_key: "button-color".to_string(),
                context,
            })
            .await
            .expect("a rollout resolves without a unit")
            .into_inner();
        answers.push((
            resolved.value,
            resolved.reason,
            resolved.variant,
            resolved.metadata.as_ref().map(from_struct),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    let (value, reason, _, metadata) = &answers[0];
    assert_eq!(value, "#1f6feb");
    assert_eq!(reason, "DEFAULT");
    assert_eq!(
        metadata.as_ref().map(|metadata| &metadata["unitMissing"]),
        Some(&json!("targetingKey"))
    );

    let all = client
        .resolve_all(flagd_v1::ResolveAllRequest { context: null() })
        .await
        .expect("every flag resolves")
        .into_inner();
    assert!(all.flags.contains_key("page-size"), "{:?}", all.flags);
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_is_served_as_v1alpha_too() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let server = Server::start().await;
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = reflection
        .server_reflection_info(one_message(request))
        .await
        .expect("v1alpha reflection is served")
        .into_inner()
        .message()
        .await
        .expect("a reflection answer")
        .expect("a message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}")
    };
    lists_every_service(
        list.service
            .into_iter()
            .map(|service| service.name)
            .collect(),
    );
}
