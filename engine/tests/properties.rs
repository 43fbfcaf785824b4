//! Properties of bucketing (docs/bucketing.md) that must hold for every unit, salt and
//! percentage, not only for the vectors: what a user relies on when a flag ramps.

use proptest::collection::vec;
use proptest::prelude::*;
use ripcord_engine::bucketing::{self, salt_prefix, ControlBand, Unit, BUCKETS};
use ripcord_engine::{evaluate, Cohort, Context, Document, Limits, Reason, Snapshot};
use serde_json::{json, Value};

/// One document with the same rollout at two thresholds, under one salt, so both flags see
/// the same buckets for a unit.
fn two_percentages(salt: &str, low: u32, high: u32, weights: &[u32]) -> Snapshot {
    let split: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(index, weight)| json!({"variant": format!("v{index}"), "weight": weight}))
        .collect();
    let mut variants: serde_json::Map<String, Value> = (0..weights.len())
        .map(|index| (format!("v{index}"), json!(index)))
        .collect();
    variants.insert("default".to_owned(), json!(-1));
    let flag = |threshold: u32| {
        json!({
            "type": "integer",
            "variants": variants,
            "default_variant": "default",
            "rollout": {"percentage": f64::from(threshold) / 1000.0, "split": split, "salt": salt},
        })
    };
    let document: Document =
        serde_json::from_value(json!({"flags": {"low": flag(low), "high": flag(high)}}))
            .expect("a document");
    Snapshot::compile(&document, 1, |_| 1, &Limits::default()).expect("a valid document")
}

fn unit() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{1,40}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ]
}

fn weights() -> impl Strategy<Value = Vec<u32>> {
    vec(0u32..10, 1..6).prop_filter("weights that add up to more than zero", |weights| {
        weights.iter().any(|&weight| weight > 0)
    })
}

proptest! {
    #[test]
    fn raising_the_percentage_keeps_every_unit_and_its_variant(
        unit in unit(),
        salt in "\\PC{0,30}",
        first in 0u32..=100_000,
        second in 0u32..=100_000,
        weights in weights(),
    ) {
        let (low, high) = (first.min(second), first.max(second));
        let snapshot = two_percentages(&salt, low, high, &weights);
        let context: Context = [("targetingKey".to_owned(), unit)].into_iter().collect();
        let at_low = evaluate(&snapshot, "low", &context);
        let at_high = evaluate(&snapshot, "high", &context);
        if at_low.reason == Reason::Split {
            prop_assert_eq!(at_high.reason, Reason::Split, "raising {} to {} took the change away", low, high);
            prop_assert_eq!(at_low.variant, at_high.variant, "the variant changed from {} to {}", low, high);
        } else {
            prop_assert_eq!(at_low.reason, Reason::Default);
        }
        // Whoever gets the split is in treatment, and nobody else is.
        for (threshold, evaluation) in [(low, &at_low), (high, &at_high)] {
            if threshold < 100_000 {
                prop_assert_eq!(
                    evaluation.metadata.cohort == Some(Cohort::Treatment),
                    evaluation.reason == Reason::Split
                );
            } else {
                prop_assert_eq!(evaluation.metadata.cohort, None);
            }
        }
    }

    #[test]
    fn integer_units_are_their_decimal_text(salt in "\\PC{0,30}", integer in any::<i64>()) {
        let prefix = salt_prefix(&salt);
        prop_assert_eq!(
            bucketing::buckets(&prefix, Unit::Integer(integer)),
            bucketing::buckets(&prefix, Unit::Text(&integer.to_string()))
        );
    }
}

/// Counts every bucket's cohort at `threshold` and checks it against docs/bucketing.md:
/// treatment is exactly the rollout; control is outside it and as large as the design says
/// (all the rest, as many, or k times as many, capped by what is left).
fn check_cohorts(threshold: u32, band: ControlBand) -> Result<(), TestCaseError> {
    let (mut treatment, mut control) = (0u32, 0u32);
    for bucket in 0..BUCKETS as u32 {
        match bucketing::cohort(bucket, threshold, band) {
            Some(Cohort::Treatment) => {
                prop_assert!(
                    bucket < threshold,
                    "bucket {} is treatment at {}",
                    bucket,
                    threshold
                );
                treatment += 1;
            }
            Some(Cohort::Control) => {
                prop_assert!(
                    bucket >= threshold,
                    "bucket {} is control and in the rollout at {}",
                    bucket,
                    threshold
                );
                control += 1;
            }
            None => {}
        }
    }
    if threshold == 0 || threshold == BUCKETS as u32 {
        // One side would be empty: nobody is in a cohort.
        prop_assert_eq!((treatment, control), (0, 0), "cohorts at {}", threshold);
        return Ok(());
    }
    prop_assert_eq!(treatment, threshold);
    let left = BUCKETS as u32 - threshold;
    let expected_control = match band {
        ControlBand::Rest => left,
        ControlBand::Times { thousandths } => {
            ((u64::from(threshold) * u64::from(thousandths) / 1000).min(u64::from(left))) as u32
        }
    };
    prop_assert_eq!(
        control,
        expected_control,
        "control size at {} for {:?}",
        threshold,
        band
    );
    Ok(())
}

fn control_bands() -> impl Strategy<Value = ControlBand> {
    prop_oneof![
        Just(ControlBand::Rest),
        Just(ControlBand::EQUAL),
        (1u32..=20_000).prop_map(|thousandths| ControlBand::Times { thousandths }),
    ]
}

proptest! {
    // Each case walks all 100,000 buckets.
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn treatment_and_control_are_disjoint_and_sized_as_the_design_says(
        threshold in 0u32..=100_000,
        band in control_bands(),
    ) {
        check_cohorts(threshold, band)?;
    }
}

#[test]
fn cohorts_at_the_edges() {
    for band in [
        ControlBand::Rest,
        ControlBand::EQUAL,
        ControlBand::Times { thousandths: 2000 },
        ControlBand::Times { thousandths: 500 },
    ] {
        for threshold in [0, 1, 33_333, 49_999, 50_000, 50_001, 99_999, 100_000] {
            check_cohorts(threshold, band).unwrap_or_else(|error| panic!("{error}"));
        }
    }
}

/// χ² critical value for 99 degrees of freedom at p = 0.001.
const CHI_SQUARE_CRITICAL_DF99: f64 = 148.23;

fn chi_square(counts: &[u32], expected: f64) -> f64 {
    counts
        .iter()
        .map(|&count| (f64::from(count) - expected).powi(2) / expected)
        .sum()
}

/// 100,000 sequential units — the kind of ids a real user table has — fall evenly into 100
/// bins of rollout buckets and of variant buckets, and the two are independent (10 × 10
/// joint bins): otherwise a 10% rollout would not get its split's proportions.
#[test]
fn buckets_are_uniform() {
    const UNITS: u32 = 100_000;
    let expected = f64::from(UNITS) / 100.0;
    let salts = ["new-checkout", "a", "ünïcode-flag", "pricing_experiment"];
    for (index, salt) in salts.iter().enumerate() {
        let prefix = salt_prefix(salt);
        let (mut rollout, mut variant, mut joint) = ([0u32; 100], [0u32; 100], [0u32; 100]);
        for number in 0..UNITS {
            let text;
            // The last salt takes integer units, as a numeric user id would be sent.
            let unit = if index == salts.len() - 1 {
                Unit::Integer(i64::from(number))
            } else {
                text = format!("user-{number}");
                Unit::Text(&text)
            };
            let buckets = bucketing::buckets(&prefix, unit);
            rollout[(buckets.rollout / 1000) as usize] += 1;
            variant[(buckets.variant / 1000) as usize] += 1;
            joint[(buckets.rollout / 10_000 * 10 + buckets.variant / 10_000) as usize] += 1;
        }
        for (name, counts) in [
            ("rollout", &rollout),
            ("variant", &variant),
            ("joint", &joint),
        ] {
            let statistic = chi_square(counts, expected);
            assert!(
                statistic < CHI_SQUARE_CRITICAL_DF99,
                "salt {salt:?}: {name} buckets are not uniform: χ² = {statistic:.1} ≥ {CHI_SQUARE_CRITICAL_DF99}"
            );
        }
    }
}

/// Flags whose rules name two segments that a context can be in, one, or neither; a flag
/// without a segment in between, and segments named again in a later flag and rule.
fn segmented() -> Snapshot {
    let document = Document::from_yaml(
        r#"
segments:
  beta: {when: [{attribute: track, op: in, values: [beta, canary]}]}
  staff: {when: [{attribute: email, op: ends_with, values: ["@example.com"]}]}
flags:
  a-beta:
    type: string
    variants: {beta: b, staff: s, none: n}
    default_variant: none
    rules:
      - {segment: beta, serve: {variant: beta}}
  b-plain:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - {when: [{attribute: track, op: eq, values: [beta]}], serve: {variant: "on"}}
  c-staff-then-beta:
    type: string
    variants: {beta: b, staff: s, none: n}
    default_variant: none
    rules:
      - {segment: staff, when: [{attribute: country, op: eq, values: [CA]}], serve: {variant: staff}}
      - {segment: beta, serve: {variant: beta}}
  d-staff:
    type: string
    variants: {beta: b, staff: s, none: n}
    default_variant: none
    rules:
      - {segment: staff, serve: {variant: staff}}
      - {segment: beta, serve: {variant: beta}}
  e-plain-again:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
    rules:
      - {when: [{attribute: country, op: eq, values: [CA]}], serve: {variant: "off"}}
      - {when: [{attribute: track, op: eq, values: [beta]}], serve: {variant: "off"}}
  f-country:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - {segment: beta, when: [{attribute: country, op: eq, values: [CA]}], serve: {variant: "on"}}
"#,
    )
    .expect("a document");
    Snapshot::compile(&document, 1, |_| 1, &Limits::default()).expect("a valid document")
}

proptest! {
    /// A bulk evaluation checks each segment, and each list of conditions that several rules
    /// repeat, once for all flags: every flag must get what it gets evaluated alone,
    /// whichever segments the context is in and whichever conditions it meets.
    #[test]
    fn segments_found_once_answer_as_each_flag_alone(
        track in prop_oneof![Just("beta"), Just("canary"), Just("stable"), Just("")],
        email in prop_oneof![Just("ana@example.com"), Just("bo@mail.test"), Just("")],
        country in prop_oneof![Just("CA"), Just("US")],
    ) {
        let snapshot = segmented();
        let context: Context = [("track", json!(track)), ("email", json!(email)), ("country", json!(country))]
            .into_iter()
            .collect();
        let mut segments = ripcord_engine::Memo::default();
        for flag in snapshot.flags() {
            let shared = ripcord_engine::evaluate_flag_with(flag, &context, &mut segments);
            prop_assert_eq!(&shared, &evaluate(&snapshot, flag.key(), &context), "{}", flag.key());
        }
    }
}

#[test]
fn a_segment_rule_serves_by_the_segment_it_names() {
    let snapshot = segmented();
    let context: Context = [("track", json!("beta")), ("email", json!("x@mail.test"))]
        .into_iter()
        .collect();
    let mut memo = ripcord_engine::Memo::default();
    let variants: Vec<_> = snapshot
        .flags()
        .map(|flag| ripcord_engine::evaluate_flag_with(flag, &context, &mut memo).variant)
        .collect();
    // In beta, not staff: a cached "beta" must not answer for "staff" in the later flags;
    // `track eq beta`, met for b-plain, is met again for e-plain-again's second rule; a
    // segment met does not make f-country's own condition met.
    assert_eq!(
        variants,
        [
            Some("beta"),
            Some("on"),
            Some("beta"),
            Some("beta"),
            Some("off"),
            Some("off")
        ]
    );
}

/// Two snapshots number their lists of conditions alike; what one memo learnt of the first
/// snapshot's lists must not answer for the second's.
#[test]
fn a_memo_kept_across_snapshots_answers_for_the_snapshot_evaluated() {
    let compile = |country: &str| {
        let document = Document::from_yaml(&format!(
            r#"
flags:
  x:
    type: boolean
    variants: {{on: true, off: false}}
    default_variant: "off"
    rules:
      - {{when: [{{attribute: country, op: eq, values: [{country}]}}], serve: {{variant: "on"}}}}
"#
        ))
        .expect("a document");
        Snapshot::compile(&document, 1, |_| 1, &Limits::default()).expect("a valid document")
    };
    let (canada, states) = (compile("CA"), compile("US"));
    let context: Context = [("country", json!("CA"))].into_iter().collect();
    let mut memo = ripcord_engine::Memo::default();
    let first = ripcord_engine::evaluate_flag_with(canada.flag("x").unwrap(), &context, &mut memo);
    assert_eq!(first.variant, Some("on"));
    let second = ripcord_engine::evaluate_flag_with(states.flag("x").unwrap(), &context, &mut memo);
    assert_eq!(second.variant, Some("off"));
}
