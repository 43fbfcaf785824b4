//! Documents the engine must refuse, as data: each `tests/invalid/*.yaml` lists documents with
//! every problem they must be refused for — its exact path and a fragment of its reason. Each
//! document is read both as YAML and as JSON, which must agree. Also here: a document exported
//! after an import is the document that was imported.

use std::fs;
use std::path::{Path, PathBuf};

use ripcord_engine::{validate, Document, DocumentError, Limits, Problem};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// `parse` for problems found while reading (unknown fields, wrong types), which stop at
    /// the first; `validation` for the rest, which are all reported at once.
    stage: Stage,
    #[serde(default)]
    limits: LimitsOverride,
    document: serde_yaml_ng::Value,
    problems: Vec<ExpectedProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Stage {
    Parse,
    Validation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedProblem {
    path: String,
    /// A fragment of the message, so that rewording the rest does not break the case.
    reason: String,
}

/// The limits a case lowers, so that going over them takes a few lines of YAML.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsOverride {
    max_flags: Option<usize>,
    max_segments: Option<usize>,
    max_variants_per_flag: Option<usize>,
    max_rules_per_flag: Option<usize>,
    max_conditions_per_rule: Option<usize>,
    max_values_per_condition: Option<usize>,
    max_key_length: Option<usize>,
    max_list_length: Option<usize>,
}

impl LimitsOverride {
    fn limits(&self) -> Limits {
        let default = Limits::default();
        Limits {
            max_flags: self.max_flags.unwrap_or(default.max_flags),
            max_segments: self.max_segments.unwrap_or(default.max_segments),
            max_variants_per_flag: self
                .max_variants_per_flag
                .unwrap_or(default.max_variants_per_flag),
            max_rules_per_flag: self
                .max_rules_per_flag
                .unwrap_or(default.max_rules_per_flag),
            max_conditions_per_rule: self
                .max_conditions_per_rule
                .unwrap_or(default.max_conditions_per_rule),
            max_values_per_condition: self
                .max_values_per_condition
                .unwrap_or(default.max_values_per_condition),
            max_key_length: self.max_key_length.unwrap_or(default.max_key_length),
            max_list_length: self.max_list_length.unwrap_or(default.max_list_length),
        }
    }
}

fn fixture_paths(folder: &str) -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(folder);
    let mut paths: Vec<PathBuf> = fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", directory.display());
    paths
}

/// The stage that refused the document and its problems, or `None` if it was accepted.
fn refusal(
    result: Result<Document, DocumentError>,
    limits: &Limits,
) -> Option<(Stage, Vec<Problem>)> {
    match result.and_then(|document| validate(&document, limits)) {
        Ok(()) => None,
        Err(DocumentError::Parse(problem)) => Some((Stage::Parse, vec![problem])),
        Err(error) => Some((Stage::Validation, error.problems().to_vec())),
    }
}

/// Pairs each expected problem with one actual problem; describes whatever is left over.
fn unmatched(expected: &[ExpectedProblem], actual: &[Problem]) -> Vec<String> {
    let mut left: Vec<&Problem> = actual.iter().collect();
    let mut mismatches = Vec::new();
    for wanted in expected {
        let found = left.iter().position(|problem| {
            problem.path == wanted.path && problem.message.contains(&wanted.reason)
        });
        match found {
            Some(index) => {
                left.remove(index);
            }
            None => mismatches.push(format!("    missing {wanted:?}")),
        }
    }
    mismatches.extend(
        left.iter()
            .map(|problem| format!("    unexpected {problem:?}")),
    );
    mismatches
}

fn check_case(case: &Case) -> Vec<String> {
    assert!(
        !case.problems.is_empty(),
        "case {}: lists no problems",
        case.name
    );
    assert!(
        case.stage == Stage::Validation || case.problems.len() == 1,
        "case {}: reading stops at the first problem",
        case.name
    );
    let limits = case.limits.limits();
    let yaml = serde_yaml_ng::to_string(&case.document).expect("YAML serializes");
    let json = serde_json::to_string(&case.document).expect("the document is plain JSON data");
    let mut failures = Vec::new();
    for (format, result) in [
        ("YAML", Document::from_yaml(&yaml)),
        ("JSON", Document::from_json(&json)),
    ] {
        match refusal(result, &limits) {
            None => failures.push(format!("  as {format}: accepted")),
            Some((stage, problems)) => {
                if stage != case.stage {
                    failures.push(format!("  as {format}: refused at {stage:?}: {problems:?}"));
                } else {
                    let mismatches = unmatched(&case.problems, &problems);
                    if !mismatches.is_empty() {
                        failures.push(format!("  as {format}:\n{}", mismatches.join("\n")));
                    }
                }
            }
        }
    }
    failures
}

#[test]
fn invalid_documents_are_refused_with_every_problem_and_its_path() {
    let mut ran = 0;
    let mut failures = Vec::new();
    for path in fixture_paths("invalid") {
        let file = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: {error}"));
        let cases: Vec<Case> = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|error| panic!("{file}: not a fixture: {error}"));
        assert!(!cases.is_empty(), "{file} has no cases");
        for (index, case) in cases.iter().enumerate() {
            let case_failures = check_case(case);
            if !case_failures.is_empty() {
                failures.push(format!(
                    "{file} case {index} ({}):\n{}",
                    case.name,
                    case_failures.join("\n")
                ));
            }
            ran += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} invalid documents were not refused as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The example flag document, with every part of a flag written out.
const EXAMPLE_DOCUMENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/example.yaml"
));

#[test]
fn the_example_document_is_valid() {
    let document = Document::from_yaml(EXAMPLE_DOCUMENT).expect("the example reads");
    validate(&document, &Limits::default()).expect("the example is valid");
    let flag = &document.flags["new-checkout"];
    assert_eq!(flag.variants["on"], serde_json::json!(true));
    assert_eq!(
        flag.rollout.as_ref().map(|rollout| rollout.stickiness()),
        Some("userId")
    );
    assert_eq!(flag.ramp.as_ref().map(|ramp| ramp.guards.len()), Some(3));
}

/// Every document these tests know: the example, and those of the evaluation fixtures.
fn known_documents() -> Vec<(String, Document)> {
    let mut documents = vec![(
        "the example document".to_owned(),
        Document::from_yaml(EXAMPLE_DOCUMENT).expect("the example reads"),
    )];
    for path in fixture_paths("cases") {
        let name = path.display().to_string();
        let fixture: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&fs::read_to_string(&path).expect("a readable fixture"))
                .expect("YAML");
        let text = serde_yaml_ng::to_string(&fixture["document"]).expect("YAML serializes");
        let document = Document::from_yaml(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
        documents.push((name, document));
    }
    documents
}

#[test]
fn export_then_import_gives_the_same_document() {
    for (name, document) in known_documents() {
        let from_yaml = Document::from_yaml(&document.to_yaml());
        assert_eq!(from_yaml.as_ref(), Ok(&document), "{name}: through YAML");
        let from_json = Document::from_json(&document.to_json());
        assert_eq!(from_json.as_ref(), Ok(&document), "{name}: through JSON");
        // YAML is a superset of JSON: a JSON export imports as YAML too.
        let json_as_yaml = Document::from_yaml(&document.to_json());
        assert_eq!(
            json_as_yaml.as_ref(),
            Ok(&document),
            "{name}: JSON read as YAML"
        );
    }
}

#[test]
fn export_adds_no_field_that_was_not_imported() {
    let document = Document::from_yaml(
        "flags:\n  plain:\n    type: boolean\n    variants: {\"on\": true}\n    default_variant: \"on\"\n",
    )
    .expect("a minimal document reads");
    let exported: serde_json::Value = serde_json::from_str(&document.to_json()).expect("JSON");
    assert_eq!(
        exported,
        serde_json::json!({
            "flags": {"plain": {"type": "boolean", "variants": {"on": true}, "default_variant": "on"}}
        })
    );
}
