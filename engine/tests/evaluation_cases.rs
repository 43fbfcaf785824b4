//! Evaluation cases as data: each `tests/cases/*.yaml` holds a flag document and what a list
//! of contexts gets from it. This one driver runs them all, so a new case is a line of YAML.
//!
//! A case names a flag, a context and the evaluation it must produce. A field the case leaves
//! out must be absent from the result too (no error, no cohort, no rule, no `unit_missing`),
//! with two exceptions taken from the fixture: `revision` is the flag's revision as the
//! fixture sets it (0 for a flag that does not exist), and the flag type is the one the
//! document declares. Rollout cases use buckets computed as docs/bucketing.md specifies,
//! so they are exact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use ripcord_engine::Stage;
use ripcord_engine::{
    evaluate, evaluate_typed, Context, Document, Evaluation, FlagType, Limits, Snapshot,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// The environment's revision, and the revision of every flag `flag_revisions` omits.
    revision: u64,
    #[serde(default)]
    flag_revisions: BTreeMap<String, u64>,
    document: serde_yaml_ng::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    flag: String,
    #[serde(default)]
    context: Context,
    /// Evaluates through `evaluate_typed`, as a typed SDK call (`get_boolean`, ...) does.
    #[serde(default, rename = "as")]
    requested_type: Option<FlagType>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    variant: Option<String>,
    reason: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    stage: Option<Stage>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    unit_missing: Option<String>,
}

impl Fixture {
    fn flag_revision(&self, key: &str) -> u64 {
        self.flag_revisions
            .get(key)
            .copied()
            .unwrap_or(self.revision)
    }
}

/// Everything an evaluation tells its caller, in a form a fixture can spell.
#[derive(Debug, PartialEq)]
struct Outcome {
    value: Option<Value>,
    variant: Option<String>,
    reason: String,
    error: Option<String>,
    flag_type: Option<FlagType>,
    revision: u64,
    cohort: Option<String>,
    stage: Option<Stage>,
    rule: Option<String>,
    unit_missing: Option<String>,
}

impl Outcome {
    fn of(evaluation: &Evaluation<'_>) -> Outcome {
        Outcome {
            value: evaluation.value.cloned(),
            variant: evaluation.variant.map(str::to_owned),
            reason: evaluation.reason.as_str().to_owned(),
            error: evaluation.error.map(|code| code.as_str().to_owned()),
            flag_type: evaluation.flag_type,
            revision: evaluation.metadata.revision,
            cohort: evaluation
                .metadata
                .cohort
                .map(|cohort| cohort.as_str().to_owned()),
            stage: evaluation.metadata.stage,
            rule: evaluation.metadata.rule.map(str::to_owned),
            unit_missing: evaluation.metadata.unit_missing.map(str::to_owned),
        }
    }

    fn expected(case: &Case, fixture: &Fixture, document: &Document) -> Outcome {
        let flag = document.flags.get(&case.flag);
        let revision = flag.map_or(0, |_| fixture.flag_revision(&case.flag));
        Outcome {
            value: case.value.clone(),
            variant: case.variant.clone(),
            reason: case.reason.clone(),
            error: case.error.clone(),
            flag_type: flag.map(|flag| flag.flag_type),
            revision: case.revision.unwrap_or(revision),
            cohort: case.cohort.clone(),
            stage: case.stage,
            rule: case.rule.clone(),
            unit_missing: case.unit_missing.clone(),
        }
    }
}

fn fixture_paths() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<PathBuf> = fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    paths.sort();
    paths
}

/// Runs one fixture file; returns how many cases ran and a message per failed case.
fn run_fixture(path: &Path) -> (usize, Vec<String>) {
    let file = path.file_name().expect("a file name").to_string_lossy();
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{file}: {error}"));
    let fixture: Fixture = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|error| panic!("{file}: not a fixture: {error}"));
    assert!(!fixture.cases.is_empty(), "{file} has no cases");
    // Through the text, as the server imports it, so a broken fixture says where it broke.
    let document_text = serde_yaml_ng::to_string(&fixture.document).expect("YAML serializes");
    let document = Document::from_yaml(&document_text)
        .unwrap_or_else(|error| panic!("{file}: document: {error}"));
    let snapshot = Snapshot::compile(
        &document,
        fixture.revision,
        |key| fixture.flag_revision(key),
        &Limits::default(),
    )
    .unwrap_or_else(|error| panic!("{file}: document: {error}"));

    let mut failures = Vec::new();
    for (index, case) in fixture.cases.iter().enumerate() {
        let evaluation = match case.requested_type {
            Some(requested) => evaluate_typed(&snapshot, &case.flag, &case.context, requested),
            None => evaluate(&snapshot, &case.flag, &case.context),
        };
        let actual = Outcome::of(&evaluation);
        let expected = Outcome::expected(case, &fixture, &document);
        if actual != expected {
            failures.push(format!(
                "{file} case {index} ({}): flag {} with context {}\n  expected {expected:?}\n  actual   {actual:?}",
                case.name,
                case.flag,
                serde_json::to_value(&case.context).unwrap_or_default(),
            ));
        }
    }
    // A flag no case evaluates is a fixture that tests nothing.
    let evaluated: BTreeSet<&str> = fixture
        .cases
        .iter()
        .map(|case| case.flag.as_str())
        .collect();
    for key in document.flags.keys() {
        if !evaluated.contains(key.as_str()) {
            failures.push(format!("{file}: no case evaluates flag {key}"));
        }
    }
    (fixture.cases.len(), failures)
}

#[test]
fn evaluation_cases() {
    let paths = fixture_paths();
    assert!(!paths.is_empty(), "no fixtures in tests/cases");
    let mut ran = 0;
    let mut failures = Vec::new();
    for path in &paths {
        let (count, mut fixture_failures) = run_fixture(path);
        ran += count;
        failures.append(&mut fixture_failures);
    }
    assert!(
        failures.is_empty(),
        "{} problems in {ran} evaluation cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
