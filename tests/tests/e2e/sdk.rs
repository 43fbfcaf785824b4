//! The Rust SDK against real servers: local evaluation agrees with the server's, changes
//! reach a watching client across restarts, bootstrap and offline cache, OpenFeature, and
//! the SDK's examples.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use open_feature::{EvaluationContext, EvaluationReason, OpenFeature};
use prost_types::value::Kind;
use ripcord_proto::pb::ripcord::v1::{
    flag_value, ripcord_client::RipcordClient, EvaluateAllRequest,
};
use ripcord_sdk::{
    Context, Details, ErrorCode, LocalClient, Reason, Refreshed, RemoteClient, RipcordProvider,
    Source,
};
use serde_json::{json, Value};

use crate::harness::Server;

/// Long enough for a debug build on a loaded machine; a working SDK takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// Every kind of targeting, and a flag of every type.
const FLAGS: &str = r##"
segments:
  beta-track:
    when: [{attribute: releaseTrack, op: in, values: [beta, canary]}]
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
      - name: beta track
        segment: beta-track
        serve: {variant: "on"}
    rollout:
      stickiness: userId
      percentage: 30
      split: [{variant: "on", weight: 1}]
  button-color:
    type: string
    variants: {blue: "#1f6feb", green: "#2da44e", red: "#cf222e"}
    default_variant: blue
    client_visible: true
    rollout:
      stickiness: targetingKey
      percentage: 60
      split: [{variant: green, weight: 2}, {variant: red, weight: 1}]
  max-items:
    type: integer
    variants: {few: 10, many: 100}
    default_variant: few
    rules:
      - name: modern app
        when:
          - {attribute: appVersion, op: semver_gte, values: ["3.2.0"]}
          - {attribute: country, op: in, values: [DE, FR, NL, US]}
        serve: {variant: many}
  discount:
    type: float
    variants: {none: 0, some: 0.15}
    default_variant: some
    rules:
      - when: [{attribute: sessions, op: gt, values: [20]}]
        serve: {variant: none}
  theme:
    type: object
    variants: {light: {background: white, density: 1}, dark: {background: black, density: 2}}
    default_variant: light
    rollout:
      stickiness: userId
      percentage: 100
      split: [{variant: light, weight: 1}, {variant: dark, weight: 1}]
  legacy-export:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: false
    rules:
      - when: [{attribute: plan, op: eq, values: [pro]}]
        serve: {variant: "on"}
"##;

/// A tiny seeded generator (xorshift64*): the same 10,000 contexts on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

fn random_context(random: &mut Random, index: usize) -> Value {
    let mut context = serde_json::Map::new();
    context.insert("targetingKey".into(), json!(format!("user-{index}")));
    // Some contexts lack the stickiness attribute, and are kept out of that rollout.
    if random.next() % 10 != 0 {
        context.insert(
            "userId".into(),
            json!(format!("u{}", random.next() % 100_000)),
        );
    }
    let domain = random.pick(&["example.com", "mail.test", "example.org"]);
    context.insert("email".into(), json!(format!("p{index}@{domain}")));
    context.insert(
        "releaseTrack".into(),
        json!(random.pick(&["stable", "stable", "stable", "beta", "canary"])),
    );
    context.insert(
        "country".into(),
        json!(random.pick(&["DE", "FR", "US", "BR", "JP"])),
    );
    let version = match random.next() % 8 {
        0 => "not-a-version".to_string(),
        _ => format!(
            "{}.{}.{}",
            random.next() % 5,
            random.next() % 5,
            random.next() % 3
        ),
    };
    context.insert("appVersion".into(), json!(version));
    context.insert("sessions".into(), json!(random.next() % 40));
    context.insert("plan".into(), json!(random.pick(&["free", "pro"])));
    Value::Object(context)
}

fn sdk_context(context: &Value) -> Context {
    match context {
        Value::Object(attributes) => attributes.clone().into(),
        _ => Context::new(),
    }
}

/// The fields the single-engine promise covers, from a typed SDK answer.
fn comparable<T: Into<Value>>(details: Details<T>) -> Value {
    assert_eq!(details.error_code, None, "{:?}", details.error_message);
    json!({
        "value": details.value.into(),
        "variant": details.variant,
        "reason": details.reason.as_str(),
        "revision": details.metadata.revision,
        "cohort": details.metadata.cohort,
    })
}

fn sdk_answer(client: &LocalClient, flag: &str, context: &Context) -> Value {
    match flag {
        "new-checkout" | "legacy-export" => {
            comparable(client.get_bool_details(flag, context, false))
        }
        "button-color" => comparable(client.get_string_details(flag, context, "")),
        "max-items" => comparable(client.get_int_details(flag, context, 0)),
        "discount" => comparable(client.get_float_details(flag, context, -1.0)),
        "theme" => comparable(client.get_json_details(flag, context, json!({}))),
        other => panic!("no type for {other}"),
    }
}

fn ofrep_answer(item: &Value) -> Value {
    json!({
        "value": item["value"],
        "variant": item["variant"],
        "reason": item["reason"],
        "revision": item["metadata"]["revision"],
        "cohort": item["metadata"]["cohort"],
    })
}

fn grpc_answer(evaluation: &ripcord_proto::pb::ripcord::v1::Evaluation) -> Value {
    let value = match evaluation
        .value
        .as_ref()
        .and_then(|value| value.kind.as_ref())
    {
        Some(flag_value::Kind::BoolValue(value)) => json!(value),
        Some(flag_value::Kind::StringValue(value)) => json!(value),
        Some(flag_value::Kind::IntValue(value)) => json!(value),
        Some(flag_value::Kind::FloatValue(value)) => json!(value),
        Some(flag_value::Kind::ObjectValue(value)) => from_protobuf(value),
        None => Value::Null,
    };
    let metadata = evaluation.metadata.clone().unwrap_or_default();
    json!({
        "value": value,
        "variant": evaluation.variant,
        "reason": evaluation.reason,
        "revision": metadata.revision,
        "cohort": (!metadata.cohort.is_empty()).then_some(metadata.cohort),
    })
}

fn from_protobuf(value: &prost_types::Value) -> Value {
    match &value.kind {
        Some(Kind::BoolValue(value)) => json!(value),
        Some(Kind::StringValue(value)) => json!(value),
        // Whole numbers come back as integers, as JSON flags write them.
        Some(Kind::NumberValue(number)) if number.fract() == 0.0 && number.abs() < 1e15 => {
            json!(*number as i64)
        }
        Some(Kind::NumberValue(number)) => json!(number),
        Some(Kind::ListValue(list)) => list.values.iter().map(from_protobuf).collect(),
        Some(Kind::StructValue(fields)) => Value::Object(
            fields
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), from_protobuf(value)))
                .collect(),
        ),
        Some(Kind::NullValue(_)) | None => Value::Null,
    }
}

fn to_protobuf(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(value) => Kind::BoolValue(*value),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_protobuf).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(name, value)| (name.clone(), to_protobuf(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

async fn watching_client(url: &str, key: &str) -> LocalClient {
    let client = LocalClient::builder()
        .server(url, key)
        .build()
        .expect("a local client");
    client
        .wait_ready(PATIENCE)
        .await
        .unwrap_or_else(|error| panic!("the SDK never got the ruleset: {error}"));
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn local_evaluation_answers_what_the_server_answers_over_ofrep_and_grpc() {
    let server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let client = watching_client(server.grpc_url(), &key.token).await;

    let mut random = Random(0x5eed_1234_abcd_0001);
    let contexts: Arc<Vec<Value>> = Arc::new(
        (0..10_000)
            .map(|index| random_context(&mut random, index))
            .collect(),
    );
    // The server's answers, many requests in flight: a debug build takes about a
    // millisecond for each, so one after another would take half a minute; in flight
    // together, both cores stay busy and the comparison takes seconds.
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url().to_string())
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", key.token).parse().unwrap();
    const WORKERS: usize = 100;
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let contexts = Arc::clone(&contexts);
        let http = server.client().clone();
        let url = server.url("/ofrep/v1/evaluate/flags");
        let mut grpc = RipcordClient::new(channel.clone());
        let (token, authorization) = (key.token.clone(), authorization.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for index in (worker..contexts.len()).step_by(WORKERS) {
                let context = &contexts[index];
                let Value::Object(fields) = context else {
                    unreachable!("contexts are objects")
                };
                let mut request = tonic::Request::new(EvaluateAllRequest {
                    context: Some(prost_types::Struct {
                        fields: fields
                            .iter()
                            .map(|(name, value)| (name.clone(), to_protobuf(value)))
                            .collect(),
                    }),
                });
                request
                    .metadata_mut()
                    .insert("authorization", authorization.clone());
                let ofrep = async {
                    http.post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"context": context}))
                        .send()
                        .await
                        .expect("OFREP answers")
                        .json::<Value>()
                        .await
                        .expect("OFREP JSON")
                };
                let (ofrep, grpc_answers) = tokio::join!(ofrep, grpc.evaluate_all(request));
                let grpc_answers = grpc_answers.expect("EvaluateAll answers").into_inner();
                answers.push((index, ofrep, grpc_answers));
            }
            answers
        }));
    }
    let mut compared = 0;
    let mut reasons = BTreeMap::<String, usize>::new();
    for worker in workers {
        for (index, ofrep, grpc) in worker.await.unwrap() {
            let context = sdk_context(&contexts[index]);
            let items = ofrep["flags"].as_array().expect("a bulk answer");
            assert_eq!(items.len(), 6, "{ofrep}");
            assert_eq!(grpc.evaluations.len(), 6);
            for (item, evaluation) in items.iter().zip(&grpc.evaluations) {
                let flag = item["key"].as_str().unwrap();
                assert_eq!(evaluation.flag_key, flag, "both ordered by key");
                let local = sdk_answer(&client, flag, &context);
                assert_eq!(
                    local,
                    ofrep_answer(item),
                    "OFREP, {flag}, {}",
                    contexts[index]
                );
                assert_eq!(
                    local,
                    grpc_answer(evaluation),
                    "gRPC, {flag}, {}",
                    contexts[index]
                );
                *reasons
                    .entry(format!("{flag} {}", local["reason"]))
                    .or_default() += 1;
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 60_000);
    // The contexts exercise every path, not one over and over.
    for path in [
        "new-checkout \"TARGETING_MATCH\"",
        "new-checkout \"SPLIT\"",
        "new-checkout \"DEFAULT\"",
        "button-color \"SPLIT\"",
        "max-items \"TARGETING_MATCH\"",
        "max-items \"DEFAULT\"",
        "discount \"TARGETING_MATCH\"",
        "theme \"SPLIT\"",
        "legacy-export \"DISABLED\"",
    ] {
        assert!(
            reasons.get(path).is_some_and(|&count| count > 100),
            "{path}: {reasons:?}"
        );
    }
}

/// A TCP forwarder whose upstream can be changed: a restarted server listens on a new
/// port, and the SDK, like a real deployment behind a stable address, keeps its URL.
struct Forwarder {
    address: String,
    upstream: Arc<Mutex<String>>,
}

impl Forwarder {
    fn start(upstream: &str) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Arc::new(Mutex::new(
            upstream.trim_start_matches("http://").to_string(),
        ));
        let target = Arc::clone(&upstream);
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(incoming) = incoming else { continue };
                let target = target.lock().unwrap().clone();
                // An upstream that is down closes the connection, as a dead server would.
                let Ok(outgoing) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (incoming.try_clone().unwrap(), outgoing.try_clone().unwrap()),
                    (outgoing, incoming),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(read) = from.read(&mut buffer) {
                            if read == 0 || to.write_all(&buffer[..read]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Forwarder { address, upstream }
    }

    fn point_to(&self, upstream: &str) {
        *self.upstream.lock().unwrap() = upstream.trim_start_matches("http://").to_string();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_changes_reach_a_watching_sdk_which_catches_up_after_a_restart() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let forwarder = Forwarder::start(server.grpc_url());
    let client = watching_client(&forwarder.address, &key.token).await;
    let staff = sdk_context(&json!({"targetingKey": "ana", "email": "ana@example.com"}));
    assert!(client.get_bool("new-checkout", &staff, false));

    let mut checkout = client.subscribe_flag("new-checkout");
    let mut everything = client.subscribe();
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    let change = tokio::time::timeout(PATIENCE, checkout.next())
        .await
        .expect("the change arrives")
        .expect("the subscription is open");
    let revision = server.revision("default").await;
    assert_eq!(change.revision, Some(revision));
    let details = client.get_bool_details("new-checkout", &staff, true);
    assert!(!details.value);
    assert_eq!(details.reason, Reason::Disabled);
    assert_eq!(details.metadata.revision, revision);
    let any = tokio::time::timeout(PATIENCE, everything.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(any.revision, revision);
    assert_eq!(any.flags.len(), 1, "{any:?}");

    // The server goes away; a change is made while the SDK cannot reach it.
    server.terminate();
    server.start_again().await;
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": true}),
        )
        .await
        .expect_status(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !client.get_bool("new-checkout", &staff, true),
        "the last ruleset is still served"
    );
    let status = client.status();
    assert!(!status.connected);
    assert!(status.last_error.is_some());

    forwarder.point_to(server.grpc_url());
    let change = tokio::time::timeout(Duration::from_secs(40), checkout.next())
        .await
        .expect("the SDK reconnects and catches up")
        .unwrap();
    assert_eq!(change.revision, Some(server.revision("default").await));
    assert!(client.get_bool("new-checkout", &staff, false));
    assert!(client.status().connected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ruleset_larger_than_grpcs_default_message_limit_reaches_the_sdk() {
    // tonic refuses messages over 4 MiB unless told otherwise; an environment within the
    // server's limits easily has a larger ruleset (here about 6 MB).
    let server = Server::start().await;
    let values: Vec<String> = (0..10_000).map(|index| format!("{index:0>90}")).collect();
    let flags: serde_json::Map<String, Value> = (0..6)
        .map(|flag| {
            let definition = json!({
                "type": "boolean",
                "variants": {"on": true, "off": false},
                "default_variant": "off",
                "rules": [{
                    "when": [{"attribute": "account", "op": "in", "values": values}],
                    "serve": {"variant": "on"}
                }]
            });
            (format!("big-{flag}"), definition)
        })
        .collect();
    let document = json!({ "flags": flags }).to_string();
    assert!(document.len() > 5 * 1024 * 1024);
    server
        .import_yaml("default", &document)
        .await
        .expect_status(200);
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let client = watching_client(server.grpc_url(), &key.token).await;
    let listed = sdk_context(&json!({"account": values[9_999]}));
    assert!(client.get_bool("big-5", &listed, false));
    assert!(client.status().from_server);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_started_while_the_server_is_down_serves_its_bootstrap_until_it_is_back() {
    let server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let nowhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", nowhere.local_addr().unwrap());
    drop(nowhere);
    let forwarder = Forwarder::start(&dead);

    let directory = tempfile::tempdir().unwrap();
    let bootstrap = directory.path().join("flags.yaml");
    std::fs::write(
        &bootstrap,
        r#"{"flags": {"max-items": {"type": "integer", "variants": {"offline": 5}, "default_variant": "offline"}}}"#,
    )
    .unwrap();
    let client = LocalClient::builder()
        .server(&forwarder.address, &key.token)
        .bootstrap_file(&bootstrap)
        .build()
        .unwrap();
    assert!(client.is_ready(), "a bootstrap is ready at once");
    let anyone = Context::new();
    let details = client.get_int_details("max-items", &anyone, 0);
    assert_eq!((details.value, details.metadata.revision), (5, 0));
    assert_eq!(
        client
            .get_bool_details("new-checkout", &anyone, true)
            .error_code,
        Some(ErrorCode::FlagNotFound)
    );
    let mut max_items = client.subscribe_flag("max-items");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client.get_int("max-items", &anyone, 0),
        5,
        "still the bootstrap"
    );
    assert!(!client.status().from_server);

    forwarder.point_to(server.grpc_url());
    tokio::time::timeout(PATIENCE, max_items.next())
        .await
        .expect("the server's ruleset replaces the bootstrap")
        .unwrap();
    assert_eq!(client.get_int("max-items", &anyone, 0), 10);
    assert!(client.status().from_server);

    let offline = LocalClient::builder()
        .bootstrap_file(&bootstrap)
        .build()
        .unwrap();
    assert_eq!(
        offline.get_int("max-items", &anyone, 0),
        5,
        "no server at all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_mode_caches_serves_offline_and_revalidates_when_back() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let key = server.create_key("app", "client", Some("default")).await;
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("ripcord-cache.json");
    let device = sdk_context(&json!({"targetingKey": "device-1", "email": "ana@example.com"}));
    let start = |url: String| {
        RemoteClient::builder(url, &key.token)
            .context(device.clone())
            .cache_file(&cache)
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };

    let first = start(server.url(""));
    assert!(!first.is_ready(), "no cache yet");
    first.wait_ready(PATIENCE).await.unwrap();
    assert_eq!(first.status().source, Some(Source::Server));
    let details = first.get_bool_details("new-checkout", true);
    assert!(details.value);
    assert_eq!(details.reason, Reason::TargetingMatch);
    assert_eq!(details.metadata.rule.as_deref(), Some("staff"));
    assert_eq!(
        first.get_int_details("max-items", 3).error_code,
        Some(ErrorCode::FlagNotFound),
        "not client-visible"
    );
    assert!(cache.exists());
    drop(first);

    // Offline: served from the cache at once, and the failed refresh says why.
    server.terminate();
    let offline = start(server.url(""));
    assert!(offline.is_ready());
    assert_eq!(offline.status().source, Some(Source::Cache));
    assert!(offline.get_bool("new-checkout", false));
    assert!(offline.refresh().await.is_err());
    assert!(offline.last_error().is_some());
    assert!(
        offline.get_bool("new-checkout", false),
        "a failed refresh keeps the cache"
    );
    drop(offline);

    // Back: the cached answer is confirmed with a 304, then a change is fetched.
    server.start_again().await;
    let back = start(server.url(""));
    assert_eq!(back.status().source, Some(Source::Cache));
    assert_eq!(back.refresh().await, Ok(Refreshed::NotModified));
    assert_eq!(back.status().source, Some(Source::Server));
    server
        .admin_put(
            "/api/v1/environments/default/flags/new-checkout/enabled",
            json!({"enabled": false}),
        )
        .await
        .expect_status(200);
    assert_eq!(back.refresh().await, Ok(Refreshed::Updated));
    let details = back.get_bool_details("new-checkout", true);
    assert!(!details.value);
    assert_eq!(details.reason, Reason::Disabled);
    assert_eq!(back.last_error(), None);
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["etag"].as_str(), back.status().etag.as_deref());
}

#[tokio::test(flavor = "multi_thread")]
async fn openfeature_reads_flags_through_the_provider_in_both_modes() {
    let server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let app = server.create_key("app", "client", Some("default")).await;
    let local = LocalClient::connect(server.grpc_url(), &backend.token).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let remote = RemoteClient::builder(server.url(""), &app.token)
        .context(sdk_context(
            &json!({"targetingKey": "ana", "email": "ana@example.com"}),
        ))
        .cache_file(directory.path().join("cache.json"))
        .build()
        .unwrap();

    let staff = EvaluationContext::default()
        .with_targeting_key("ana")
        .with_custom_field("email", "ana@example.com");
    for provider in [
        RipcordProvider::local(local),
        RipcordProvider::remote(remote),
    ] {
        let mut api = OpenFeature::default();
        // Setting the provider waits until it is ready.
        api.set_provider(provider).await;
        let client = api.create_client();
        let details = client
            .get_bool_details("new-checkout", Some(&staff), None)
            .await
            .expect("an evaluation");
        assert!(details.value);
        assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
        assert_eq!(details.variant.as_deref(), Some("on"));
        let color = client
            .get_string_value("button-color", Some(&staff), None)
            .await
            .unwrap();
        assert!(color.starts_with('#'), "{color}");
        let missing = client
            .get_bool_value("no-such-flag", Some(&staff), None)
            .await
            .unwrap_err();
        assert_eq!(
            missing.code,
            open_feature::EvaluationErrorCode::FlagNotFound
        );
    }
}

/// Runs an example of the SDK as a user would, and returns what it printed.
fn run_example(name: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = std::process::Command::new(cargo)
        .args([
            "run",
            "-q",
            "--locked",
            "-p",
            "ripcord-sdk",
            "--example",
            name,
            "--",
        ])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_examples_run_against_a_server() {
    let mut server = Server::start().await;
    server
        .import_yaml("default", FLAGS)
        .await
        .expect_status(200);
    let backend = server
        .create_key("backend", "server", Some("default"))
        .await;
    let app = server.create_key("app", "client", Some("default")).await;

    let grpc_url = server.grpc_url().to_string();
    let printed = tokio::task::spawn_blocking(move || {
        run_example(
            "backend",
            &[
                ("RIPCORD_GRPC_URL", &grpc_url),
                ("RIPCORD_SERVER_KEY", &backend.token),
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(printed.contains("ready at revision"), "{printed}");
    assert!(
        printed.contains("flag new-checkout = true (TARGETING_MATCH, variant on"),
        "{printed}"
    );
    assert!(
        printed.contains("flag legacy-export = false (DISABLED"),
        "{printed}"
    );

    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache.json");
    let phone_home = |url: String| {
        let (cache, token) = (cache.to_string_lossy().into_owned(), app.token.clone());
        tokio::task::spawn_blocking(move || {
            run_example(
                "phone_home",
                &[("RIPCORD_URL", &url), ("RIPCORD_CLIENT_KEY", &token)],
                &[&cache],
            )
        })
    };
    let first = phone_home(server.url("")).await.unwrap();
    assert!(first.contains("start: no cache yet"), "{first}");
    assert!(first.contains("flag button-color = \"#"), "{first}");
    server.terminate();
    let second = phone_home(server.url("")).await.unwrap();
    assert!(
        second.contains("start: serving 2 flags from the cache"),
        "{second}"
    );
    assert!(second.contains("refresh failed"), "{second}");
    assert!(second.contains("flag button-color = \"#"), "{second}");
}
