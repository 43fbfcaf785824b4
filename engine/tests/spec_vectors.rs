//! The bucketing test vectors (`spec/bucketing.json`, the algorithm of docs/bucketing.md),
//! which every implementation in every language must pass: first against the bucketing
//! functions, then end to end through a compiled flag, where a user would notice a mismatch.

use std::fs;

use ripcord_engine::bucketing::{self, salt_prefix, Unit};
use ripcord_engine::{evaluate, Cohort, Context, Document, Limits, Reason, Snapshot};
use serde::Deserialize;
use serde_json::{json, Value};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/bucketing.json");

#[derive(Deserialize)]
struct Spec {
    hash: String,
    buckets: u64,
    cases: Vec<BucketCase>,
    splits: Vec<SplitCase>,
    cohorts: Vec<CohortCase>,
}

/// A unit at a percentage under one control design, and its cohort.
#[derive(Deserialize)]
struct CohortCase {
    salt: String,
    unit: Value,
    rollout_bucket: u32,
    percentage: f64,
    /// `"rest"`, `"equal"` or a multiple, as `ramp.control` is written.
    control: Value,
    cohort: Option<Cohort>,
}

#[derive(Deserialize)]
struct BucketCase {
    salt: String,
    /// A JSON string or integer, as it would arrive in a context.
    unit: Value,
    /// The text that is hashed: the string itself, or the integer's decimal form.
    unit_string: String,
    rollout_bucket: u32,
    variant_bucket: u32,
}

#[derive(Deserialize)]
struct SplitCase {
    variant_bucket: u32,
    split: Vec<SplitEntry>,
    variant: String,
}

#[derive(Deserialize)]
struct SplitEntry {
    variant: String,
    weight: u32,
}

fn spec() -> Spec {
    let text =
        fs::read_to_string(SPEC).unwrap_or_else(|error| panic!("cannot read {SPEC}: {error}"));
    let spec: Spec = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{SPEC}: {error}"));
    assert_eq!(spec.hash, "xxh3_64");
    assert_eq!(spec.buckets, bucketing::BUCKETS);
    // So that an emptied or truncated file cannot pass.
    assert!(
        spec.cases.len() >= 200,
        "only {} bucket cases",
        spec.cases.len()
    );
    assert!(
        spec.splits.len() >= 40,
        "only {} split cases",
        spec.splits.len()
    );
    assert!(
        spec.cohorts.len() >= 200,
        "only {} cohort cases",
        spec.cohorts.len()
    );
    spec
}

fn assert_no_failures(what: &str, total: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bucket_vectors() {
    let spec = spec();
    let mut failures = Vec::new();
    for (index, case) in spec.cases.iter().enumerate() {
        let prefix = salt_prefix(&case.salt);
        let unit = Unit::from_value(Some(&case.unit))
            .unwrap_or_else(|| panic!("case {index}: {} is not a unit", case.unit));
        let expected = bucketing::Buckets {
            rollout: case.rollout_bucket,
            variant: case.variant_bucket,
        };
        let actual = bucketing::buckets(&prefix, unit);
        if actual != expected {
            failures.push(format!(
                "case {index} (salt {:?}, unit {}): expected {expected:?}, got {actual:?}",
                case.salt, case.unit
            ));
        }
        // An integer unit must hash exactly as its decimal text does.
        let as_text = bucketing::buckets(&prefix, Unit::Text(&case.unit_string));
        if as_text != expected {
            failures.push(format!(
                "case {index} (salt {:?}, unit text {:?}): expected {expected:?}, got {as_text:?}",
                case.salt, case.unit_string
            ));
        }
    }
    assert_no_failures("bucket cases", spec.cases.len(), failures);
}

#[test]
fn split_vectors() {
    let spec = spec();
    let mut failures = Vec::new();
    for (index, case) in spec.splits.iter().enumerate() {
        let weights: Vec<u32> = case.split.iter().map(|entry| entry.weight).collect();
        let actual = bucketing::split_index(case.variant_bucket, &weights)
            .map(|chosen| case.split[chosen].variant.as_str());
        if actual != Some(case.variant.as_str()) {
            failures.push(format!(
                "split {index} (variant bucket {}, weights {weights:?}): expected {}, got {actual:?}",
                case.variant_bucket, case.variant
            ));
        }
    }
    assert_no_failures("split cases", spec.splits.len(), failures);
}

/// Three flags on the vector's salt: one keyed by it and one naming it as an override, both
/// with the threshold right above the rollout bucket, and one with the threshold at it.
fn vector_document(case: &BucketCase) -> Document {
    let threshold_in = case.rollout_bucket + 1;
    let threshold_out = case.rollout_bucket;
    let flag = |threshold: u32, salt: Option<&str>| {
        let mut rollout = json!({
            "percentage": f64::from(threshold) / 1000.0,
            "split": [
                {"variant": "a", "weight": 1},
                {"variant": "b", "weight": 1},
                {"variant": "c", "weight": 1},
            ],
        });
        if let Some(salt) = salt {
            rollout["salt"] = json!(salt);
        }
        json!({
            "type": "string",
            "variants": {"a": "a", "b": "b", "c": "c", "none": "none"},
            "default_variant": "none",
            "rollout": rollout,
        })
    };
    serde_json::from_value(json!({
        "flags": {
            case.salt.as_str(): flag(threshold_in, None),
            "salted-in": flag(threshold_in, Some(&case.salt)),
            "salted-out": flag(threshold_out, Some(&case.salt)),
        }
    }))
    .expect("a valid document")
}

#[test]
fn vectors_through_evaluation() {
    let spec = spec();
    let mut failures = Vec::new();
    for (index, case) in spec.cases.iter().enumerate() {
        let document = vector_document(case);
        let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default())
            .unwrap_or_else(|error| panic!("case {index}: {error}"));
        let context: Context = [("targetingKey".to_owned(), case.unit.clone())]
            .into_iter()
            .collect();

        // Three equal weights: the variant is the third of the variant buckets it falls in.
        let expected_variant = ["a", "b", "c"][(case.variant_bucket as usize * 3) / 100_000];
        // At 100% there is no control to compare with, so no cohort.
        let cohort = (case.rollout_bucket + 1 < 100_000).then_some(Cohort::Treatment);
        for flag in [case.salt.as_str(), "salted-in"] {
            let evaluation = evaluate(&snapshot, flag, &context);
            let got = (
                evaluation.reason,
                evaluation.variant,
                evaluation.metadata.cohort,
            );
            let wanted = (Reason::Split, Some(expected_variant), cohort);
            if got != wanted {
                failures.push(format!(
                    "case {index}, flag {flag}: expected {wanted:?}, got {got:?}"
                ));
            }
        }

        // With the threshold at the bucket the unit is out. A rollout without a ramp compares
        // with every unit outside it, so the unit is in the control.
        let in_control = true;
        let evaluation = evaluate(&snapshot, "salted-out", &context);
        let got = (
            evaluation.reason,
            evaluation.variant,
            evaluation.metadata.cohort,
        );
        let wanted = (
            Reason::Default,
            Some("none"),
            in_control.then_some(Cohort::Control),
        );
        if got != wanted {
            failures.push(format!(
                "case {index}, flag salted-out: expected {wanted:?}, got {got:?}"
            ));
        }
    }
    assert_no_failures(
        "bucket cases through evaluation",
        spec.cases.len(),
        failures,
    );
}

/// The document of one cohort case: a flag keyed by the case's salt, at its percentage, with
/// a ramp whose control is the case's design.
fn cohort_document(case: &CohortCase) -> Document {
    serde_json::from_value(json!({
        "flags": {
            case.salt.as_str(): {
                "type": "boolean",
                "variants": {"on": true, "off": false},
                "default_variant": "off",
                "rollout": {"percentage": case.percentage, "split": [{"variant": "on", "weight": 1}]},
                "ramp": {
                    "stages": [case.percentage],
                    "min_stage_duration": "10m",
                    "control": case.control,
                },
            }
        }
    }))
    .expect("a valid document")
}

#[test]
fn cohort_vectors() {
    let spec = spec();
    let mut failures = Vec::new();
    let mut designs = std::collections::BTreeSet::new();
    for (index, case) in spec.cohorts.iter().enumerate() {
        designs.insert(case.control.to_string());
        let document = cohort_document(case);
        let Ok(snapshot) = Snapshot::compile(&document, 1, |_| 1, &Limits::default()) else {
            failures.push(format!(
                "cohort case {index}: the document does not compile"
            ));
            continue;
        };
        let context: Context = [("targetingKey".to_owned(), case.unit.clone())]
            .into_iter()
            .collect();
        let evaluation = evaluate(&snapshot, &case.salt, &context);
        let bucket = evaluation.metadata.bucket.map(|bucket| bucket.bucket);
        if bucket != Some(case.rollout_bucket) || evaluation.metadata.cohort != case.cohort {
            failures.push(format!(
                "cohort case {index} ({} at {}%, control {}): expected bucket {} in {:?}, got \
                 {bucket:?} in {:?}",
                case.unit,
                case.percentage,
                case.control,
                case.rollout_bucket,
                case.cohort,
                evaluation.metadata.cohort
            ));
        }
    }
    assert_no_failures("cohort cases", spec.cohorts.len(), failures);
    // Every design the document can name is pinned down.
    for design in ["\"rest\"", "\"equal\""] {
        assert!(designs.contains(design), "no cohort case for {design}");
    }
    assert!(
        designs.iter().any(|design| design.parse::<f64>().is_ok()),
        "no cohort case for a multiple"
    );
}
