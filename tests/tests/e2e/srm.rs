//! A ramp whose data are not sound: the cohorts report in a ratio their bands cannot
//! explain, and the ramp stops instead of judging on them; and one whose data only look
//! unsound when counted in observations rather than units, which goes on.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Server;
use crate::ramps::{past_warm_up, wait_for, RAMP};

/// An A/A ramp at 20% whose control is every other unit (the default).
const A_A_AT_20: &str = r#"
flags:
  new-checkout:
    type: boolean
    client_visible: true
    variants: {"on": true, "off": false}
    default_variant: "off"
    rollout: {percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [20, 50, 100]
      min_stage_duration: 2s
      warmup: 1s
      guards:
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.02, min_samples: 100}
"#;

/// A server ticking every second with [`A_A_AT_20`]'s ramp started and past its warm-up,
/// and an app's client key.
async fn a_a_ramp_started() -> (Server, crate::harness::Key) {
    let server = Server::start_with(&[("RIPCORD_RAMP_TICK", "1s")], A_A_AT_20).await;
    let client = server.create_key("app", "client", Some("default")).await;
    server
        .admin_post(&format!("{RAMP}/start"), json!({}))
        .await
        .expect_status(200);
    past_warm_up(&server).await;
    (server, client)
}

/// The one `errors` observation of unit number `unit` (named `name`), tagged as it was
/// served: one unit in a hundred has an error, in either cohort.
fn errors_report(name: &str, cohort: &str, stage: &Value, unit: u32) -> Value {
    json!({
        "flag": "new-checkout",
        "metric": "errors",
        "value": u8::from(unit % 100 == 0),
        "cohort": cohort,
        "stage": stage,
        "unit": name,
    })
}

/// The cohort and stage the unit `name` is served, as its app learns them when it phones home.
async fn served(server: &Server, key: &str, name: &str) -> (String, Value) {
    let answer = server
        .evaluate(key, "new-checkout", json!({"targetingKey": name}))
        .await
        .expect_status(200)
        .json();
    let metadata = &answer["metadata"];
    let cohort = metadata["cohort"]
        .as_str()
        .unwrap_or_else(|| panic!("at 20% with the rest as control, {answer} has a cohort"));
    (cohort.to_string(), metadata["stage"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_a_a_ramp_whose_treatment_drops_a_fifth_of_its_reports_pauses_and_never_completes() {
    let (server, client) = a_a_ramp_started().await;

    // Every unit phones home and reports one observation tagged with what it was served,
    // with the same 1% error rate in both cohorts; but a fifth of the treatment's reports
    // never arrive, as when the new code crashes before it reports.
    let mut observations = Vec::new();
    let (mut treated, mut lost) = (0u32, 0u32);
    for unit in 0..3000u32 {
        let name = format!("unit-{unit}");
        let (cohort, stage) = served(&server, &client.token, &name).await;
        let cohort = cohort.as_str();
        if cohort == "treatment" {
            treated += 1;
            if treated % 5 == 0 {
                lost += 1;
                continue;
            }
        }
        observations.push(errors_report(&name, cohort, &stage, unit));
    }
    assert!((450..=750).contains(&treated), "{treated} of 3000 treated");
    let answer = server.report(&client.token, &observations).await;
    assert_eq!(answer["accepted"], json!(3000 - lost), "{answer}");

    let paused = wait_for(&server, Duration::from_secs(20), |status| {
        status["status"] != "running"
    })
    .await;
    assert_eq!(paused["status"], "paused", "{paused:#}");
    assert_eq!(
        paused["pause_reason"], "sample_ratio_mismatch",
        "{paused:#}"
    );
    assert_eq!(paused["percentage"], json!(20.0), "{paused:#}");
    assert_eq!(paused["control"], "rest", "the default control: {paused:#}");
    let srm = &paused["srm"];
    assert_eq!(srm["verdict"], "MISMATCH", "{srm:#}");
    // Every observation named its unit: the check counts the distinct units.
    assert_eq!(srm["metric"], "units", "{srm:#}");
    assert_eq!(srm["counts"], "units", "{srm:#}");
    assert_eq!(srm["treatment"], json!(treated - lost), "{srm:#}");
    // 20% against the other 80%: a ratio of 0.25 expected, about 0.2 observed.
    let expected = srm["expected_ratio"].as_f64().expect("an expected ratio");
    let observed = srm["observed_ratio"].as_f64().expect("an observed ratio");
    assert!((expected - 0.25).abs() < 1e-9, "{srm:#}");
    assert!(observed < 0.22, "{srm:#}");
    assert!(
        srm["p_value"].as_f64().is_some_and(|p| p <= 0.01),
        "{srm:#}"
    );
    assert!(
        paused["alert"]
            .as_str()
            .is_some_and(|alert| alert.contains("sample-ratio mismatch")),
        "{paused:#}"
    );

    // The evidence stands: resumed, the ramp pauses again at the next look, and it never
    // advances or completes on these data.
    server
        .admin_post(&format!("{RAMP}/resume"), json!({"reason": "try again"}))
        .await
        .expect_status(200);
    let again = wait_for(&server, Duration::from_secs(20), |status| {
        status["status"] == "paused"
    })
    .await;
    assert_eq!(again["pause_reason"], "sample_ratio_mismatch", "{again:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Value = server.admin_get(RAMP).await.expect_status(200).json();
    assert_eq!(later["status"], "paused", "{later:#}");
    assert_eq!(later["stage"], json!(0), "{later:#}");
    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert!(!actions.contains(&"ramp.advance"), "{actions:?}");
    assert!(!actions.contains(&"ramp.complete"), "{actions:?}");
}

/// A healthy A/A ramp on long sessions: every unit reports once per reporting window, as the
/// SDK does, and some treatment units happen to stay far longer than the rest. Counted in
/// observations the treatment looks a third larger than its band; counted in distinct units,
/// which is what the bands split, it is exactly its share, and the ramp goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_a_a_ramp_on_long_sessions_is_judged_on_its_units_and_does_not_pause() {
    let (server, client) = a_a_ramp_started().await;

    // Every unit evaluates the flag once and then reports 30 windows of `errors`; one
    // treatment unit in ten is a long session of 130 windows.
    let mut units: Vec<(String, String, Value, u32)> = Vec::new();
    let (mut treated, mut controls) = (0u64, 0u64);
    for unit in 0..300u32 {
        let name = format!("session-{unit}");
        let (cohort, stage) = served(&server, &client.token, &name).await;
        let windows = if cohort == "treatment" {
            treated += 1;
            if treated % 10 == 0 {
                130
            } else {
                30
            }
        } else {
            controls += 1;
            30
        };
        units.push((name, cohort, stage, windows));
    }
    assert!((40..=80).contains(&treated), "{treated} of 300 treated");
    let mut sent = [0u64; 2];
    for window in 0..130u32 {
        let observations: Vec<Value> = units
            .iter()
            .filter(|(_, _, _, windows)| window < *windows)
            .map(|(name, cohort, stage, _)| {
                sent[usize::from(cohort == "control")] += 1;
                json!({
                    "flag": "new-checkout",
                    "metric": "errors",
                    "value": u8::from((window + name.len() as u32) % 100 == 0),
                    "cohort": cohort,
                    "stage": stage,
                    "unit": name,
                })
            })
            .collect();
        let answer = server.report(&client.token, &observations).await;
        assert_eq!(answer["accepted"], json!(observations.len()), "{answer}");
    }
    // What the observations alone would say: a ratio of about 1 : 3 where the bands imply
    // 1 : 4, over thousands of observations, far beyond what chance explains.
    let observed = sent[0] as f64 / sent[1] as f64;
    assert!(observed > 0.3, "{sent:?}");

    let judged = wait_for(&server, Duration::from_secs(20), |status| {
        status["srm"]["treatment"] == json!(treated) || status["status"] == "paused"
    })
    .await;
    // A few more looks on the same data.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Value = server.admin_get(RAMP).await.expect_status(200).json();
    for status in [&judged, &later] {
        assert_ne!(status["status"], "paused", "{status:#}");
        let srm = &status["srm"];
        assert_eq!(srm["verdict"], "OK", "{srm:#}");
        assert_eq!(srm["counts"], "units", "{srm:#}");
        assert_eq!(srm["metric"], "units", "{srm:#}");
        assert_eq!(srm["treatment"], json!(treated), "{srm:#}");
        assert_eq!(srm["control"], json!(controls), "{srm:#}");
    }
    let audit = server
        .admin_get("/api/v1/audit?flag=new-checkout&limit=100")
        .await
        .json();
    let reasons: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["reason"].as_str())
        .collect();
    assert!(
        !reasons
            .iter()
            .any(|reason| reason.contains("sample-ratio mismatch")),
        "{reasons:#?}"
    );
}

/// A started [`A_A_AT_20`] ramp whose treatment units came in short of their band: far
/// enough that the counts favour a mismatch, far short of proving one.
pub(crate) struct Leaning {
    pub server: Server,
    pub client: crate::harness::Key,
    /// The treatment units that reported.
    pub sent: usize,
    /// The treatment units' reports held back.
    pub held_back: Vec<Value>,
}

/// Every one of 3,000 units phones home; all report but as few treatment units as make
/// the counts lean (ln BF above 0.5 at the bands' 1 : 4, below 2, where ln(2/0.01), two
/// stages with cohorts, would prove a mismatch).
pub(crate) async fn a_ramp_with_leaning_counts() -> Leaning {
    let (server, client) = a_a_ramp_started().await;
    let (mut treatment, mut control) = (Vec::new(), Vec::new());
    for unit in 0..3000u32 {
        let name = format!("unit-{unit}");
        let (cohort, stage) = served(&server, &client.token, &name).await;
        let observation = errors_report(&name, &cohort, &stage, unit);
        if cohort == "treatment" {
            treatment.push(observation);
        } else {
            control.push(observation);
        }
    }
    let lean = |treated: usize| {
        ripcord_engine::stats::srm_log_bayes_factor(&ripcord_engine::stats::SrmStage {
            treatment: treated as u64,
            control: control.len() as u64,
            expected_share: 0.2,
        })
        .expect("counts to weigh")
    };
    assert!(
        lean(treatment.len()) < 0.0,
        "all {} treatment units against {}: the bands' ratio",
        treatment.len(),
        control.len()
    );
    let sent = (0..treatment.len())
        .rev()
        .find(|&sent| lean(sent) > 0.5)
        .expect("some shortfall leans");
    assert!(lean(sent) < 2.0, "ln BF {} at {sent}", lean(sent));
    let held_back = treatment.split_off(sent);
    let first: Vec<Value> = control.iter().chain(&treatment).cloned().collect();
    let answer = server.report(&client.token, &first).await;
    assert_eq!(answer["accepted"], json!(first.len()), "{answer}");
    Leaning {
        server,
        client,
        sent,
        held_back,
    }
}

/// A ramp whose treatment units come in short of their band, not yet far enough to prove a
/// mismatch: its guards pass, but it waits at its stage, saying why, and goes on once the
/// missing units report.
#[tokio::test(flavor = "multi_thread")]
async fn a_ramp_whose_counts_lean_towards_a_mismatch_waits_until_they_agree() {
    let Leaning {
        server,
        client,
        sent,
        held_back,
    } = a_ramp_with_leaning_counts().await;

    // min_stage_duration is 2 s: by 5 s the ramp would have advanced on its guards alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held: Value = server.admin_get(RAMP).await.expect_status(200).json();
    assert_eq!(held["status"], "running", "{held:#}");
    assert_eq!(held["stage"], json!(0), "{held:#}");
    assert_eq!(held["hold"], "sample_ratio", "{held:#}");
    assert_eq!(held["guards"][0]["verdict"], "PASS", "{held:#}");
    assert_eq!(held["srm"]["verdict"], "OK", "{held:#}");
    assert_eq!(held["srm"]["treatment"], json!(sent), "{held:#}");

    // The missing units report after all: the counts agree with the bands, and it advances.
    let answer = server.report(&client.token, &held_back).await;
    assert_eq!(answer["accepted"], json!(held_back.len()), "{answer}");
    let advanced = wait_for(&server, Duration::from_secs(20), |status| {
        status["stage"] != json!(0)
    })
    .await;
    assert_eq!(advanced["status"], "running", "{advanced:#}");
    assert_eq!(advanced["percentage"], json!(50.0), "{advanced:#}");
}
