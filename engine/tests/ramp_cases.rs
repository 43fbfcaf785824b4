//! Ramp controller cases as data: each `tests/ramp_cases/*.yaml` holds scenarios, each a
//! ramp block and a list of steps on a virtual clock. A step is a tick of the controller or
//! a manual operation at a time (`at`, a duration since the scenario began), optionally with
//! new cumulative data for some guards, and what the state and the decisions must be after.
//!
//! Data stay in place from step to step until a step replaces a metric's stages, and are
//! dropped on `restart` (a new generation has no data yet). Expected decisions are compared
//! as subsets of their JSON: a fixture names the fields it cares about.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use ripcord_engine::document::Ramp;
use ripcord_engine::ramp::{
    self, GuardObservations, Observations, RampState, Settings, StageUnits, Status, Step,
};
use ripcord_engine::snapshot::parse_duration;
use ripcord_engine::stats::{Histogram, Proportion, StageData};
use ripcord_engine::Stage;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    ramp: Ramp,
    #[serde(default)]
    settings: Option<Settings>,
    steps: Vec<StepCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepCase {
    at: String,
    #[serde(default = "tick")]
    op: String,
    #[serde(default)]
    reason: String,
    /// The generation the data claim to be from; the state's when absent.
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    data: BTreeMap<String, Vec<StageSpec>>,
    /// Distinct units per stage, replacing the previous ones when present.
    #[serde(default)]
    units: Option<Vec<StageUnits>>,
    #[serde(default)]
    expect: Expect,
}

fn tick() -> String {
    "tick".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSpec {
    treatment: ArmSpec,
    control: ArmSpec,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ArmSpec {
    /// `events` out of `trials`.
    Rate(Proportion),
    /// Every value from `range[0]` to `range[1]` in steps of `step` (default 1), `each`
    /// times.
    Range {
        range: [f64; 2],
        #[serde(default)]
        step: Option<f64>,
        each: u64,
    },
    /// `[value, count]` pairs.
    Values(Vec<(f64, u64)>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<Status>,
    stage: Option<Stage>,
    percentage: Option<f64>,
    generation: Option<u64>,
    /// `null`-able: `pause_reason: ~` is not expressible, so `none` means absent.
    pause_reason: Option<String>,
    /// The operation must fail with a message containing this.
    error: Option<String>,
    /// The exact number of decisions, each matching as a subset of its JSON.
    decisions: Option<Vec<Value>>,
    /// Every string must appear in the first decision's reason.
    reason_contains: Option<Vec<String>>,
    /// Verdicts of the guards' last looks, by metric.
    verdicts: Option<BTreeMap<String, String>>,
    /// The metrics of the first decision's evidence, in order.
    evidence_metrics: Option<Vec<String>>,
    /// The last look's sample-ratio check: `metric`, `counts`, `verdict` and the other
    /// fields of its JSON, compared as a subset.
    srm: Option<Value>,
}

fn bins() -> Histogram {
    Histogram::log_spaced(1.0, 10_000.0, 0.01).unwrap()
}

enum Built {
    Values(Histogram, Histogram),
    Rate(Proportion, Proportion),
}

fn build(spec: &StageSpec) -> Built {
    let fill = |arm: &ArmSpec| -> Histogram {
        let mut histogram = bins();
        match arm {
            ArmSpec::Values(pairs) => {
                for (value, count) in pairs {
                    assert!(histogram.record_n(*value, *count));
                }
            }
            ArmSpec::Range { range, step, each } => {
                let step = step.unwrap_or(1.0);
                let mut value = range[0];
                while value <= range[1] + 1e-9 {
                    assert!(histogram.record_n(value, *each));
                    value += step;
                }
            }
            ArmSpec::Rate(_) => panic!("a stage mixes a rate and values"),
        }
        histogram
    };
    match (&spec.treatment, &spec.control) {
        (ArmSpec::Rate(treatment), ArmSpec::Rate(control)) => Built::Rate(*treatment, *control),
        _ => Built::Values(fill(&spec.treatment), fill(&spec.control)),
    }
}

fn seconds(text: &str) -> u64 {
    parse_duration(text)
        .unwrap_or_else(|| panic!("bad duration {text:?}"))
        .as_secs()
}

/// A fixed epoch so that times in states are not small numbers that could hide a bug.
const EPOCH: u64 = 1_700_000_000;

fn run(file: &str, scenario: &Scenario) {
    let settings = scenario.settings.clone().unwrap_or_default();
    let mut state: RampState = ramp::new(&scenario.ramp, &settings, 1);
    let mut data: BTreeMap<String, Vec<Built>> = BTreeMap::new();
    let mut units: Vec<StageUnits> = Vec::new();
    for (index, case) in scenario.steps.iter().enumerate() {
        let place = format!(
            "{file}: {} step {index} ({} at {})",
            scenario.name, case.op, case.at
        );
        let now = EPOCH + seconds(&case.at);
        for (metric, stages) in &case.data {
            data.insert(metric.clone(), stages.iter().map(build).collect());
        }
        if let Some(stages) = &case.units {
            units.clone_from(stages);
        }
        let config = &scenario.ramp;
        let outcome: Result<Step, String> = match case.op.as_str() {
            "tick" => {
                let observations = Observations {
                    generation: case.generation.unwrap_or(state.generation),
                    guards: data
                        .iter()
                        .map(|(metric, stages)| GuardObservations {
                            metric,
                            stages: stages
                                .iter()
                                .map(|built| match built {
                                    Built::Values(treatment, control) => {
                                        StageData::Values { treatment, control }
                                    }
                                    Built::Rate(treatment, control) => StageData::Rate {
                                        treatment: *treatment,
                                        control: *control,
                                    },
                                })
                                .collect(),
                        })
                        .collect(),
                    units: units.clone(),
                };
                Ok(ramp::step(config, &state, &observations, now))
            }
            "start" => ramp::start(config, &state, now).map_err(|e| e.to_string()),
            "pause" => ramp::pause(&state, &case.reason, now).map_err(|e| e.to_string()),
            "resume" => ramp::resume(&state, &case.reason, now).map_err(|e| e.to_string()),
            "advance" => {
                ramp::advance(config, &state, &case.reason, now).map_err(|e| e.to_string())
            }
            "abort" => ramp::abort(&state, &case.reason, now).map_err(|e| e.to_string()),
            "restart" => {
                data.clear();
                units.clear();
                ramp::restart(config, &settings, &state, now).map_err(|e| e.to_string())
            }
            other => panic!("{place}: unknown op {other}"),
        };
        let expect = &case.expect;
        let step = match (outcome, &expect.error) {
            (Err(error), Some(wanted)) => {
                assert!(error.contains(wanted.as_str()), "{place}: error {error:?}");
                continue;
            }
            (Err(error), None) => panic!("{place}: unexpected error {error}"),
            (Ok(step), Some(wanted)) => {
                panic!(
                    "{place}: expected error {wanted:?}, got {:?}",
                    step.decisions
                )
            }
            (Ok(step), None) => step,
        };
        state = step.state;
        // The state must survive the server's persistence unchanged at every step.
        let json = serde_json::to_string(&state).unwrap();
        let reloaded: RampState = serde_json::from_str(&json).unwrap();
        assert_eq!(reloaded, state, "{place}: state does not round-trip");

        let decisions: Vec<Value> = step
            .decisions
            .iter()
            .map(|decision| serde_json::to_value(decision).unwrap())
            .collect();
        let shown = || serde_json::to_string_pretty(&decisions).unwrap();
        if let Some(status) = expect.status {
            assert_eq!(
                state.status,
                status,
                "{place}: status; decisions {}",
                shown()
            );
        }
        if let Some(stage) = expect.stage {
            assert_eq!(state.stage, stage, "{place}: stage");
        }
        if let Some(percentage) = expect.percentage {
            assert_eq!(state.percentage, percentage, "{place}: percentage");
        }
        if let Some(generation) = expect.generation {
            assert_eq!(state.generation, generation, "{place}: generation");
        }
        if let Some(reason) = &expect.pause_reason {
            let actual = state
                .pause_reason
                .map(|reason| {
                    serde_json::to_value(reason)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .unwrap_or_else(|| "none".to_string());
            assert_eq!(&actual, reason, "{place}: pause_reason");
        }
        if let Some(wanted) = &expect.decisions {
            assert_eq!(
                decisions.len(),
                wanted.len(),
                "{place}: decisions {}",
                shown()
            );
            for (actual, wanted) in decisions.iter().zip(wanted) {
                let wanted = wanted.as_object().expect("a decision is a map");
                for (key, value) in wanted {
                    assert_eq!(
                        actual.get(key),
                        Some(value),
                        "{place}: decision field {key}; decisions {}",
                        shown()
                    );
                }
                assert!(
                    !actual["reason"].as_str().unwrap_or("").is_empty(),
                    "{place}: every decision explains itself"
                );
            }
        }
        if let Some(parts) = &expect.reason_contains {
            let reason = step.decisions.first().map(|d| d.reason()).unwrap_or("");
            for part in parts {
                assert!(
                    reason.contains(part.as_str()),
                    "{place}: reason {reason:?} lacks {part:?}"
                );
            }
        }
        if let Some(metrics) = &expect.evidence_metrics {
            let actual: Vec<String> = decisions
                .first()
                .and_then(|decision| decision["evidence"].as_array())
                .map(|evidence| {
                    evidence
                        .iter()
                        .map(|report| report["metric"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(&actual, metrics, "{place}: evidence");
        }
        if let Some(wanted) = &expect.srm {
            let actual = serde_json::to_value(&state.srm).unwrap();
            for (key, value) in wanted.as_object().expect("srm is a map") {
                assert_eq!(
                    actual.get(key),
                    Some(value),
                    "{place}: srm {key}: {actual:#}"
                );
            }
        }
        if let Some(verdicts) = &expect.verdicts {
            for (metric, verdict) in verdicts {
                let guard = state
                    .guards
                    .iter()
                    .find(|guard| &guard.metric == metric)
                    .unwrap_or_else(|| panic!("{place}: no guard {metric}"));
                let actual = guard
                    .last
                    .as_ref()
                    .map(|evidence| {
                        serde_json::to_value(evidence.verdict)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .unwrap_or_else(|| "none".to_string());
                assert_eq!(&actual, verdict, "{place}: verdict of {metric}");
            }
        }
    }
}

#[test]
fn ramp_cases() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ramp_cases");
    let mut files: Vec<PathBuf> = fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut count = 0;
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let scenarios: Vec<Scenario> =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
        for scenario in &scenarios {
            run(&name, scenario);
            count += 1;
        }
    }
    assert!(count >= 10, "only {count} scenarios");
}
