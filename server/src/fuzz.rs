//! Every parser an outsider can reach, as a plain function of bytes: the entry points of the
//! fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) and of the property tests below, which
//! the test suite runs on generated inputs. Each does what the server does with such bytes
//! up to the point where the answer is decided, and returns whether the input was accepted.
//! None may panic, whatever the bytes.

use prost::Message;
use ripcord_engine::stats::{judge, JudgeRequest};
use ripcord_engine::{evaluate, Context, Document, Limits, Snapshot};
use ripcord_proto::pb;

use crate::http::admin::document::{read_document, Format};

/// The default of `RIPCORD_MAX_CONTEXT_ATTRIBUTES`; that of `RIPCORD_MAX_KEY_LENGTH` is
/// `Limits::default()`'s.
const MAX_CONTEXT_ATTRIBUTES: usize = 200;

/// An imported document, as its content type would have it read: JSON, YAML, or either.
/// An accepted document is compiled, and each of its flags evaluated for an empty context
/// and for one with a targeting key.
pub fn document(data: &[u8], format: Option<Format>) -> bool {
    match read_document(data, format) {
        Ok(document) => compile_and_evaluate(&document),
        Err(_) => false,
    }
}

pub fn document_json(data: &[u8]) -> bool {
    document(data, Some(Format::Json))
}

pub fn document_yaml(data: &[u8]) -> bool {
    document(data, Some(Format::Yaml))
}

pub fn document_any(data: &[u8]) -> bool {
    document(data, None)
}

/// What every entry point is: bytes in, whether they were accepted out.
pub type EntryPoint = fn(&[u8]) -> bool;

/// The entry point of the fuzz target `name` (a file of `fuzz/fuzz_targets/`).
pub fn target(name: &str) -> Option<EntryPoint> {
    Some(match name {
        "document_json" => document_json,
        "document_yaml" => document_yaml,
        "document_any" => document_any,
        "evaluation_context" => evaluation_context,
        "ofrep_body" => ofrep_body,
        "observations_body" => observations_body,
        "judge_input" => judge_input,
        "protobuf" => protobuf,
        _ => return None,
    })
}

fn compile_and_evaluate(document: &Document) -> bool {
    let Ok(snapshot) = Snapshot::compile(document, 1, |_| 1, &Limits::default()) else {
        return false;
    };
    let empty = Context::default();
    let keyed: Context = [(
        "targetingKey".to_string(),
        serde_json::Value::from("user-1"),
    )]
    .into_iter()
    .collect();
    for key in document.flags.keys() {
        evaluate(&snapshot, key, &empty);
        evaluate(&snapshot, key, &keyed);
    }
    true
}

/// An evaluation context given as a JSON object of attributes.
pub fn evaluation_context(data: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(attributes)) => crate::context::build(
            attributes,
            MAX_CONTEXT_ATTRIBUTES,
            Limits::default().max_key_length,
        )
        .is_ok(),
        _ => false,
    }
}

/// The body of an OFREP evaluation, `{"context": {...}}`.
pub fn ofrep_body(data: &[u8]) -> bool {
    crate::http::ofrep::parse_context(
        data,
        Some("flag"),
        MAX_CONTEXT_ATTRIBUTES,
        Limits::default().max_key_length,
    )
    .is_ok()
}

/// The body of `POST /api/v1/metrics`, a batch of observations.
pub fn observations_body(data: &[u8]) -> bool {
    crate::http::observations::parse_batch(data).is_ok()
}

/// The body of `POST /api/v1/judge`, read and judged.
pub fn judge_input(data: &[u8]) -> bool {
    match crate::http::request::parse_json::<JudgeRequest>(data) {
        Ok(request) => judge(&request).is_ok(),
        Err(_) => false,
    }
}

/// A gRPC request message of each of the services' calls; a context it carries is checked
/// and built as the call would.
pub fn protobuf(data: &[u8]) -> bool {
    let context = |context: Option<prost_types::Struct>| {
        crate::context::build(
            crate::grpc::convert::struct_to_json(context.unwrap_or_default()),
            MAX_CONTEXT_ATTRIBUTES,
            Limits::default().max_key_length,
        )
        .is_ok()
    };
    let mut accepted = false;
    if let Ok(request) = pb::ripcord::v1::EvaluateRequest::decode(data) {
        accepted |= context(request.context);
    }
    if let Ok(request) = pb::ripcord::v1::EvaluateAllRequest::decode(data) {
        accepted |= context(request.context);
    }
    accepted |= pb::ripcord::v1::WatchRequest::decode(data).is_ok();
    accepted |= pb::ripcord::v1::ReportRequest::decode(data).is_ok();
    if let Ok(request) = pb::flagd::evaluation::v1::ResolveAllRequest::decode(data) {
        accepted |= context(request.context);
    }
    if let Ok(request) = pb::flagd::evaluation::v1::ResolveObjectRequest::decode(data) {
        accepted |= context(request.context);
    }
    if let Ok(request) = pb::flagd::evaluation::v2::ResolveStringRequest::decode(data) {
        accepted |= context(request.context);
    }
    accepted
}

/// Valid inputs of each parser, which the property tests mangle: near misses reach deeper
/// into a parser than random bytes do.
pub mod seeds {
    pub const DOCUMENT_JSON: &str = r#"{
  "segments": {"beta": {"when": [{"attribute": "track", "op": "in", "values": ["beta", "canary"]}]}},
  "flags": {
    "checkout": {
      "description": "the new checkout",
      "type": "boolean",
      "variants": {"on": true, "off": false},
      "default_variant": "off",
      "client_visible": true,
      "rules": [
        {"name": "staff", "when": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}], "serve": {"variant": "on"}},
        {"segment": "beta", "serve": {"variant": "on"}},
        {"when": [{"attribute": "version", "op": "semver_gte", "values": ["2.1.0"]}, {"attribute": "since", "op": "after", "values": ["2024-01-01T00:00:00Z"]}], "serve": {"variant": "on"}}
      ],
      "rollout": {"stickiness": "userId", "percentage": 12.5, "split": [{"variant": "on", "weight": 1}]},
      "ramp": {"stages": [1, 5, 25, 100], "min_stage_duration": "10m", "max_stage_duration": "1d", "warmup": "1m",
               "on_regression": "kill",
               "guards": [{"metric": "errors", "category": "stability", "kind": "rate", "better": "lower", "tolerance": "5%", "min_samples": 100}]}
    },
    "layout": {
      "type": "object",
      "variants": {"a": {"columns": [1, 2, {"x": null}]}, "b": {}},
      "default_variant": "a",
      "rules": [{"when": [{"attribute": "path", "op": "matches", "values": ["^/shop/[a-z]+$"]}], "serve": {"variant": "b"}}]
    },
    "limit": {"type": "integer", "variants": {"low": 10, "high": 18446744073709551615}, "default_variant": "low"},
    "ratio": {"type": "float", "variants": {"x": 0.5}, "default_variant": "x", "enabled": false}
  }
}"#;

    pub const OFREP_BODY: &str = r#"{"context": {"targetingKey": "user-1", "email": "a@example.com", "track": "beta", "version": "2.3.0", "n": 12.5, "tags": ["x", {"y": null}]}}"#;

    pub const OBSERVATIONS_BODY: &str = r#"{"observations": [
  {"flag": "checkout", "metric": "errors", "value": 1, "cohort": "treatment", "stage": 0},
  {"flag": "checkout", "metric": "latency", "value": 12.5, "cohort": "control", "stage": 2, "unit": "ms", "timestamp": "2024-05-01T12:00:00Z"}
]}"#;

    pub const JUDGE_VALUES: &str = r#"{"treatment": [12.1, 13.4, 11.9, 12.8], "control": [11.8, 12.0, 12.2, 11.7], "better": "lower", "alternative": "greater", "method": "auto", "continuity": true, "confidence": 0.95, "tolerance": "5%"}"#;

    pub const JUDGE_HISTOGRAMS: &str = r#"{"treatment": {"bins": [1, 2, 4, 8], "counts": [10, 20, 5, 1]}, "control": {"bins": [1, 2, 4, 8], "counts": [12, 18, 6, 0]}, "tolerance": 0.5}"#;

    /// An `EvaluateRequest` with a context of every kind of value, encoded.
    pub fn evaluate_request() -> Vec<u8> {
        use prost::Message;
        use prost_types::value::Kind;
        let value = |kind| prost_types::Value { kind: Some(kind) };
        let fields = [
            ("targetingKey", value(Kind::StringValue("user-1".into()))),
            ("n", value(Kind::NumberValue(12.5))),
            ("ok", value(Kind::BoolValue(true))),
            ("none", value(Kind::NullValue(0))),
            (
                "list",
                value(Kind::ListValue(prost_types::ListValue {
                    values: vec![value(Kind::StringValue("x".into()))],
                })),
            ),
        ];
        super::pb::ripcord::v1::EvaluateRequest {
            flag_key: "checkout".into(),
            context: Some(prost_types::Struct {
                fields: fields
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value))
                    .collect(),
            }),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    /// Tokens that open, close or change the meaning of what follows in JSON, YAML or a
    /// field of ours: spliced into a valid input, they make the near misses a person or an
    /// attacker would send.
    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        "\"",
        "'",
        ":",
        ": ",
        ",",
        "-",
        "- ",
        "\n",
        "\n  ",
        "#",
        "&a ",
        "*a",
        "!!binary ",
        "|",
        ">",
        "?",
        "\\u0000",
        "\\ud800",
        "null",
        "true",
        "1e308",
        "-1.7e308",
        "1e999",
        "NaN",
        "18446744073709551616",
        "-0",
        "0.0000001",
        "\u{feff}",
        "\u{0}",
        "213503982334600d",
        "9999999999999s",
        "%",
        "100%",
        "<<: *a",
        "~",
        "\"flags\"",
        "\"variants\"",
        "\"context\"",
        "\"treatment\"",
        "\"bins\"",
    ];

    /// A mangling: each step changes the text at a position, chosen by the fraction `at`.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(f64, usize),
        Delete(f64, usize),
        Replace(f64, u8),
        Repeat(f64, usize, usize),
        Truncate(f64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0.0..1.0, 0..TOKENS.len()).prop_map(|(at, token)| Step::Insert(at, token)),
            (0.0..1.0, 1usize..32).prop_map(|(at, length)| Step::Delete(at, length)),
            (0.0..1.0, any::<u8>()).prop_map(|(at, byte)| Step::Replace(at, byte)),
            (0.0..1.0, 1usize..16, 2usize..64)
                .prop_map(|(at, length, times)| Step::Repeat(at, length, times)),
            (0.0..1.0).prop_map(Step::Truncate),
        ]
    }

    fn mangle(seed: &[u8], steps: &[Step]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for step in steps {
            let position = |at: f64, length: usize| ((at * length as f64) as usize).min(length);
            match *step {
                Step::Insert(at, token) => {
                    let at = position(at, bytes.len());
                    bytes.splice(at..at, TOKENS[token].bytes());
                }
                Step::Delete(at, length) => {
                    let at = position(at, bytes.len());
                    let end = (at + length).min(bytes.len());
                    bytes.drain(at..end);
                }
                Step::Replace(at, byte) => {
                    if !bytes.is_empty() {
                        let at = position(at, bytes.len() - 1);
                        bytes[at] = byte;
                    }
                }
                Step::Repeat(at, length, times) => {
                    let at = position(at, bytes.len());
                    let end = (at + length).min(bytes.len());
                    let piece = bytes[at..end].to_vec();
                    for _ in 1..times {
                        bytes.splice(end..end, piece.iter().copied());
                    }
                }
                Step::Truncate(at) => {
                    let at = position(at, bytes.len());
                    bytes.truncate(at);
                }
            }
        }
        bytes
    }

    fn yaml_seed() -> String {
        Document::from_json(seeds::DOCUMENT_JSON)
            .expect("the seed document reads")
            .to_yaml()
    }

    #[test]
    fn the_seeds_are_accepted() {
        assert!(document_json(seeds::DOCUMENT_JSON.as_bytes()));
        assert!(document_yaml(yaml_seed().as_bytes()));
        assert!(ofrep_body(seeds::OFREP_BODY.as_bytes()));
        assert!(evaluation_context(
            &serde_json::to_vec(
                &serde_json::from_str::<serde_json::Value>(seeds::OFREP_BODY).unwrap()["context"]
            )
            .unwrap()
        ));
        assert!(observations_body(seeds::OBSERVATIONS_BODY.as_bytes()));
        assert!(judge_input(seeds::JUDGE_VALUES.as_bytes()));
        assert!(judge_input(seeds::JUDGE_HISTOGRAMS.as_bytes()));
        assert!(protobuf(&seeds::evaluate_request()));
    }

    fn every_entry_point(bytes: &[u8]) {
        document_json(bytes);
        document_yaml(bytes);
        document_any(bytes);
        evaluation_context(bytes);
        ofrep_body(bytes);
        observations_body(bytes);
        judge_input(bytes);
        protobuf(bytes);
    }

    /// The files under `fuzz/<kind>/<target>/`, with the target's entry point.
    fn kept_inputs(kind: &str) -> Vec<(std::path::PathBuf, String, EntryPoint)> {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz")
            .join(kind);
        let mut inputs = Vec::new();
        for entry in std::fs::read_dir(&folder).expect("the fuzz folder") {
            let directory = entry.expect("an entry").path();
            if !directory.is_dir() {
                continue;
            }
            let name = directory
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_string();
            let entry_point = target(&name)
                .unwrap_or_else(|| panic!("{} names no fuzz target", directory.display()));
            for file in std::fs::read_dir(&directory).expect("a target's folder") {
                inputs.push((file.expect("a file").path(), name.clone(), entry_point));
            }
        }
        inputs
    }

    /// Every fuzz target has seeds, and each seed is accepted: the fuzzer starts from
    /// inputs that reach past the first refusal.
    #[test]
    fn every_target_has_seeds_that_are_accepted() {
        let seeds = kept_inputs("seeds");
        for name in [
            "document_json",
            "document_yaml",
            "document_any",
            "evaluation_context",
            "ofrep_body",
            "observations_body",
            "judge_input",
            "protobuf",
        ] {
            assert!(
                seeds.iter().any(|(_, seeded, _)| seeded == name),
                "no seed for {name}"
            );
        }
        for (path, _, entry_point) in seeds {
            let bytes = std::fs::read(&path).expect("a seed");
            assert!(entry_point(&bytes), "{} is refused", path.display());
        }
    }

    /// Every input a fuzzer or a property test once crashed on, kept under
    /// `fuzz/regressions/<target>/`, is answered without a panic.
    #[test]
    fn every_kept_crash_is_handled() {
        for (path, _, entry_point) in kept_inputs("regressions") {
            let bytes = std::fs::read(&path).expect("a kept input");
            entry_point(&bytes);
        }
    }

    /// `default` cases, or `PROPTEST_CASES` for a longer search (scripts/fuzz.sh sets it).
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

        #[test]
        fn no_entry_point_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            every_entry_point(&bytes);
        }

        #[test]
        fn no_entry_point_panics_on_mangled_inputs(
            seed in 0usize..7,
            steps in prop::collection::vec(step(), 1..6),
        ) {
            let seeds = [
                seeds::DOCUMENT_JSON.as_bytes().to_vec(),
                yaml_seed().into_bytes(),
                seeds::OFREP_BODY.as_bytes().to_vec(),
                seeds::OBSERVATIONS_BODY.as_bytes().to_vec(),
                seeds::JUDGE_VALUES.as_bytes().to_vec(),
                seeds::JUDGE_HISTOGRAMS.as_bytes().to_vec(),
                seeds::evaluate_request(),
            ];
            every_entry_point(&mangle(&seeds[seed], &steps));
        }
    }

    /// A mangled import that is refused leaves the environment as it was: the same document
    /// and the same revision. One that is accepted becomes the document.
    #[test]
    fn a_refused_import_changes_nothing() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let directory = tempfile::tempdir().expect("a directory");
        let store = crate::store::sled::SledStore::open(directory.path()).expect("a store");
        let service = runtime
            .block_on(crate::service::Service::open(
                Arc::new(store),
                Limits::default(),
                None,
            ))
            .expect("a service");
        let actor = crate::principal::Principal {
            name: "admin".to_string(),
            scope: crate::store::Scope::Admin,
            environment: None,
            event_channel: None,
        };
        runtime
            .block_on(service.create_environment("default", &actor))
            .expect("an environment");
        let handle = runtime.handle().clone();
        let import = |bytes: Vec<u8>, format| {
            crate::http::admin::document::import(
                &handle,
                &service,
                "default",
                &actor,
                bytes.into(),
                format,
            )
        };
        import(seeds::DOCUMENT_JSON.as_bytes().to_vec(), None).expect("the seed imports");
        let state = || {
            (
                service.export("default").expect("the environment"),
                service
                    .environment("default")
                    .map(|environment| environment.revision),
            )
        };
        let before = std::cell::RefCell::new(state());
        let seeds = [seeds::DOCUMENT_JSON.to_string(), yaml_seed()];
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: cases(96).min(2_000),
            ..ProptestConfig::default()
        });
        let refused = std::cell::Cell::new(0);
        runner
            .run(
                &(0usize..2, prop::collection::vec(step(), 1..4)),
                |(seed, steps)| {
                    let format =
                        [Some(Format::Json), Some(Format::Yaml), None][(seed + steps.len()) % 3];
                    match import(mangle(seeds[seed].as_bytes(), &steps), format) {
                        Ok(_) => *before.borrow_mut() = state(),
                        Err(_) => {
                            refused.set(refused.get() + 1);
                            prop_assert_eq!(&state(), &*before.borrow());
                        }
                    }
                    Ok(())
                },
            )
            .expect("refusals change nothing");
        assert!(refused.get() > 0, "no mangled import was refused");
    }
}
