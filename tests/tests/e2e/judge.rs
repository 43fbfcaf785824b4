//! The judge: `POST /api/v1/judge` and `ripcord judge` on the scipy fixtures of
//! `engine/tests/fixtures/stats` (the same numbers from the endpoint, the command and the
//! engine), keys, every bad input and limit, the report and the exit statuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use reqwest::Method;
use ripcord_engine::stats::{judge, JudgeRequest};
use serde_json::{json, Value};

use crate::harness::{Body, Server};

const JUDGE: &str = "/api/v1/judge";

/// Every fixture case, labelled `file / name`.
fn fixtures() -> Vec<(String, Value)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/stats");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("the engine's fixtures")
        .map(|entry| entry.expect("a fixture").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("a fixture file"))
                .expect("a JSON fixture");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        for case in file["cases"].as_array().expect("cases") {
            cases.push((format!("{name} / {}", case["name"]), case.clone()));
        }
    }
    cases
}

/// The request a fixture case stands for.
fn request_of(case: &Value) -> Value {
    json!({
        "treatment": case["treatment"],
        "control": case["control"],
        "alternative": case["alternative"],
        "method": case["method"],
        "continuity": case["continuity"],
        "confidence": case["confidence"],
    })
}

fn number(value: &Value, label: &str, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{label}: {what} is not a number: {value}"))
}

#[track_caller]
fn assert_close(actual: &Value, expected: &Value, relative: f64, label: &str, what: &str) {
    let (actual, expected) = (number(actual, label, what), number(expected, label, what));
    assert!(
        actual == expected || (actual - expected).abs() <= relative * expected.abs().max(1e-300),
        "{label}: {what} {actual:e}, scipy {expected:e}"
    );
}

/// The answer against scipy's, with the tolerances of the engine's own fixture test.
fn assert_matches_scipy(reply: &Value, expected: &Value, label: &str) {
    assert_close(&reply["u"], &expected["u"], 1e-9, label, "u");
    assert_close(&reply["u2"], &expected["u2"], 1e-9, label, "u2");
    assert_close(
        &reply["p_value"],
        &expected["p_value"],
        1e-6,
        label,
        "p_value",
    );
    assert_eq!(reply["method"], expected["method"], "{label}: method");
    let z = |answer: &Value| answer.get("z").filter(|z| !z.is_null()).cloned();
    match (z(reply), z(expected)) {
        (Some(z), Some(want)) => assert_close(&z, &want, 1e-9, label, "z"),
        (None, None) => {}
        (got, want) => panic!("{label}: z {got:?}, scipy {want:?}"),
    }
    assert_eq!(reply["medians"], expected["medians"], "{label}: medians");
    if let Some(hl) = expected.get("hodges_lehmann") {
        let got = &reply["hodges_lehmann"];
        assert_close(&got["estimate"], &hl["estimate"], 1e-12, label, "HL");
        assert_eq!(got["ci"], hl["ci"], "{label}: HL interval");
    }
}

async fn post_judge(server: &Server, key: Option<&str>, body: Body) -> crate::harness::Reply {
    server.call(Method::POST, JUDGE, key, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_through_the_endpoint_matches_scipy_and_the_engine() {
    let server = Server::start().await;
    let cases = fixtures();
    // What the fixtures must hold (docs/statistics.md, "Fixtures"); a regeneration must not
    // drop any of it.
    for family in [
        "exact 6x20",
        "exact 1x7",
        "exact 8x400",
        "ties 40x55",
        "binary 900x1100",
        "p near 1e-60",
        "histogram millions per bin",
        "all tied",
    ] {
        assert!(
            cases.iter().any(|(label, _)| label.contains(family)),
            "no fixture of {family}"
        );
    }
    let mut smallest_p = 1.0f64;
    for (label, case) in &cases {
        let body = request_of(case);
        let reply = post_judge(&server, Some(&server.admin_key), Body::Json(body.clone()))
            .await
            .expect_status(200)
            .json();
        assert_matches_scipy(&reply, &case["expected"], label);
        // The engine in this process on the same request: the same answer, bit for bit.
        let request: JudgeRequest = serde_json::from_value(body).expect("a judge request");
        let engine = serde_json::to_value(judge(&request).expect("judged")).expect("JSON");
        assert_eq!(reply, engine, "{label}");
        smallest_p = smallest_p.min(number(&reply["p_value"], label, "p_value"));
    }
    assert!(cases.len() >= 80, "only {} fixtures", cases.len());
    assert!(
        smallest_p > 0.0 && smallest_p < 1e-190,
        "smallest p {smallest_p:e}: precision lost on the way"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issue_example_and_keys() {
    let mut server = Server::start().await;
    let example = json!({
        "treatment": [12.1, 13.4, 11.9], "control": [11.8, 12.0, 12.2], "better": "lower",
        "alternative": "greater", "method": "auto", "continuity": true, "confidence": 0.95,
        "tolerance": "5%"
    });
    let reply = post_judge(
        &server,
        Some(&server.admin_key),
        Body::Json(example.clone()),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(reply["n_treatment"], json!(3));
    assert_eq!(reply["n_control"], json!(3));
    assert_eq!(reply["u"], json!(6.0));
    assert_eq!(reply["u2"], json!(3.0));
    assert_close(&reply["p_value"], &json!(0.35), 1e-12, "example", "p");
    assert_eq!(reply["method"], json!("exact"));
    assert_eq!(reply["alternative"], json!("greater"));
    assert_eq!(reply.get("z"), None, "{reply}");
    let hl = &reply["hodges_lehmann"];
    assert_close(&hl["estimate"], &json!(0.1), 1e-9, "example", "HL");
    assert_close(&hl["ci"][0], &json!(-0.3), 1e-9, "example", "HL low");
    assert_close(&hl["ci"][1], &json!(1.6), 1e-9, "example", "HL high");
    assert_eq!(hl["confidence"], json!(0.95));
    assert_eq!(
        reply["medians"],
        json!({"treatment": 12.1, "control": 12.0})
    );
    assert_eq!(reply["verdict"], json!("INCONCLUSIVE"));

    // Admin and server keys judge; a client key, shipped inside apps, does not.
    let server_key = server
        .create_key("canary-ci", "server", Some("default"))
        .await;
    let client_key = server.create_key("app", "client", Some("default")).await;
    let by_server = post_judge(
        &server,
        Some(&server_key.token),
        Body::Json(example.clone()),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(by_server, reply);
    let refused = post_judge(
        &server,
        Some(&client_key.token),
        Body::Json(example.clone()),
    )
    .await
    .expect_status(403)
    .json();
    assert_eq!(refused["error"], json!("forbidden"), "{refused}");
    let refused = post_judge(&server, None, Body::Json(example.clone()))
        .await
        .expect_status(401)
        .json();
    assert_eq!(refused["error"], json!("unauthorized"), "{refused}");
    server
        .admin_delete(&format!("/api/v1/keys/{}", server_key.id))
        .await
        .expect_status(200);
    post_judge(&server, Some(&server_key.token), Body::Json(example))
        .await
        .expect_status(401);
    server
        .call(
            Method::GET,
            JUDGE,
            Some(&server.admin_key.clone()),
            Body::None,
        )
        .await
        .expect_status(405);

    let documented = server
        .call(Method::GET, "/api/v1/openapi.json", None, Body::None)
        .await
        .expect_status(200)
        .json();
    assert!(
        documented["paths"][JUDGE]["post"].is_object(),
        "the judge is not in the OpenAPI document"
    );
    // Nothing was written: judging is not a change.
    let exited = server.terminate();
    assert!(exited.status.success(), "{:?}", exited.stderr);
}

/// The shift of 0/1 data is always 0; an error rate that rose by 0.55 points must still
/// be a REGRESSION at a tolerance of 0.2 points, and the answer says what was weighed.
#[tokio::test(flavor = "multi_thread")]
async fn error_rates_are_judged_on_the_difference_of_rates() {
    let server = Server::start().await;
    let errors = |ok: u64, failed: u64| json!({"bins": [0, 1], "counts": [ok, failed]});
    let reply = post_judge(
        &server,
        Some(&server.admin_key),
        Body::Json(json!({
            "treatment": errors(97_050, 2_950),
            "control": errors(97_600, 2_400),
            "tolerance": 0.002
        })),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(reply["verdict"], json!("REGRESSION"), "{reply}");
    assert_eq!(reply["hodges_lehmann"]["estimate"], json!(0.0));
    let effect = &reply["effect"];
    assert_eq!(effect["measure"], json!("rate_difference"), "{reply}");
    assert_close(
        &effect["estimate"],
        &json!(0.0055),
        1e-9,
        "rates",
        "difference",
    );
    assert_close(
        &effect["control_level"],
        &json!(0.024),
        1e-12,
        "rates",
        "control rate",
    );
    assert_eq!(effect["tolerance"], json!(0.002));
}

/// Every kind of bad input gets a 400 whose `path` names the field.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_400_that_names_the_field() {
    let server = Server::start().await;
    let histogram = |bins: Value, counts: Value| json!({"bins": bins, "counts": counts});
    let good = histogram(json!([1, 2, 3]), json!([4, 5, 6]));
    let cases: Vec<(&str, Body, &str)> = vec![
        (
            "empty treatment",
            Body::Json(json!({"treatment": [], "control": [1, 2]})),
            "treatment",
        ),
        (
            "empty control",
            Body::Json(json!({"treatment": [1], "control": []})),
            "control",
        ),
        (
            "NaN",
            Body::raw_json(r#"{"treatment": [1, NaN], "control": [1]}"#),
            "treatment[1]",
        ),
        (
            "infinite",
            Body::raw_json(r#"{"treatment": [1], "control": [2, 3, 1e999]}"#),
            "control[2]",
        ),
        (
            "not a number",
            Body::Json(json!({"treatment": [1, "12ms"], "control": [1]})),
            "treatment[1]",
        ),
        (
            "bins not strictly increasing",
            Body::Json(json!({
                "treatment": histogram(json!([1, 3, 2]), json!([1, 1, 1])),
                "control": histogram(json!([1, 3, 2]), json!([1, 1, 1]))})),
            "treatment.bins[2]",
        ),
        (
            "repeated bin",
            Body::Json(
                json!({"treatment": good, "control": histogram(json!([1, 2, 2]), json!([1, 1, 1]))}),
            ),
            "control.bins[2]",
        ),
        (
            "counts not matching bins",
            Body::Json(
                json!({"treatment": histogram(json!([1, 2, 3]), json!([1, 1])), "control": good}),
            ),
            "treatment.counts",
        ),
        (
            "negative count",
            Body::Json(
                json!({"treatment": good, "control": histogram(json!([1, 2, 3]), json!([1, -1, 1]))}),
            ),
            "control.counts[1]",
        ),
        (
            "all counts zero",
            Body::Json(
                json!({"treatment": good, "control": histogram(json!([1, 2, 3]), json!([0, 0, 0]))}),
            ),
            "control.counts",
        ),
        (
            "different bins",
            Body::Json(
                json!({"treatment": good, "control": histogram(json!([1, 2, 4]), json!([1, 1, 1]))}),
            ),
            "control.bins",
        ),
        (
            "mismatched forms",
            Body::Json(json!({"treatment": good, "control": [1, 2, 3]})),
            "control",
        ),
        (
            "neither form",
            Body::Json(json!({"treatment": 3, "control": [1]})),
            "treatment",
        ),
        (
            "unknown alternative",
            Body::Json(json!({"treatment": [1], "control": [2], "alternative": "worse"})),
            "alternative",
        ),
        (
            "unknown method",
            Body::Json(json!({"treatment": [1], "control": [2], "method": "bootstrap"})),
            "method",
        ),
        (
            "unknown better",
            Body::Json(json!({"treatment": [1], "control": [2], "better": "faster"})),
            "better",
        ),
        (
            "confidence out of range",
            Body::Json(json!({"treatment": [1], "control": [2], "confidence": 95})),
            "confidence",
        ),
        (
            "bad tolerance",
            Body::Json(json!({"treatment": [1], "control": [2], "tolerance": "5 percent"})),
            "tolerance",
        ),
        (
            "negative tolerance",
            Body::Json(json!({"treatment": [1], "control": [2], "tolerance": -1})),
            "tolerance",
        ),
        (
            "relative tolerance on a zero median",
            Body::Json(json!({"treatment": [0, 1], "control": [0], "tolerance": "5%"})),
            "tolerance",
        ),
        (
            "unknown field",
            Body::Json(json!({"treatment": [1], "control": [2], "tolerence": "5%"})),
            "tolerence",
        ),
    ];
    for (what, body, field) in cases {
        let reply = post_judge(&server, Some(&server.admin_key), body)
            .await
            .expect_status(400)
            .json();
        assert_eq!(reply["error"], json!("bad_request"), "{what}: {reply}");
        assert_eq!(reply["path"], json!(field), "{what}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{what}: {reply}"
        );
    }
    let reply = post_judge(
        &server,
        Some(&server.admin_key),
        Body::raw_json("{\"treatment\": [1"),
    )
    .await
    .expect_status(400)
    .json();
    assert_eq!(reply["error"], json!("bad_request"), "{reply}");
}

/// A million values per sample are judged (far above the body limit of other routes);
/// one more, or more than 100,000 bins, is a 413 that says which.
#[tokio::test(flavor = "multi_thread")]
async fn limits_are_accepted_up_to_and_refused_past() {
    let server = Server::start().await;
    // Few distinct values keep the debug build quick; the size is what is tested.
    let sample = |count: usize, levels: &[&str]| {
        let values: Vec<&str> = (0..count)
            .map(|index| levels[index % levels.len()])
            .collect();
        format!("[{}]", values.join(","))
    };
    let limit = ripcord_engine::stats::MAX_JUDGE_VALUES;
    let body = format!(
        r#"{{"treatment": {}, "control": {}, "tolerance": 0}}"#,
        sample(limit, &["1", "2", "3", "4"]),
        sample(limit, &["1", "2", "3"])
    );
    let reply = post_judge(&server, Some(&server.admin_key), Body::raw_json(body))
        .await
        .expect_status(200)
        .json();
    assert_eq!(reply["n_treatment"], json!(limit));
    assert_eq!(reply["n_control"], json!(limit));
    assert_eq!(reply["medians"], json!({"treatment": 2.5, "control": 2.0}));
    assert_eq!(reply["verdict"], json!("REGRESSION"), "{reply}");

    let body = format!(
        r#"{{"treatment": [1, 2], "control": {}}}"#,
        sample(limit + 1, &["1", "2"])
    );
    let reply = post_judge(&server, Some(&server.admin_key), Body::raw_json(body))
        .await
        .expect_status(413)
        .json();
    assert_eq!(reply["error"], json!("limit_exceeded"), "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`control`") && message.contains("1000000"),
        "{reply}"
    );

    let bins = ripcord_engine::stats::MAX_JUDGE_BINS + 1;
    let histogram = json!({
        "bins": (0..bins).collect::<Vec<usize>>(),
        "counts": vec![1; bins],
    });
    let reply = post_judge(
        &server,
        Some(&server.admin_key),
        Body::Json(json!({"treatment": histogram, "control": histogram})),
    )
    .await
    .expect_status(413)
    .json();
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`treatment.bins`") && message.contains("100000 bins"),
        "{reply}"
    );
}

// ---- ripcord judge --------------------------------------------------------------------

/// Runs `ripcord judge` with `arguments`, and `stdin` on its standard input.
fn ripcord_judge(arguments: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"));
    command
        .arg("judge")
        .args(arguments)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("running ripcord judge");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    child.wait_with_output().expect("ripcord judge ends")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One value per line, as the shortest text that reads back to the same double.
fn write_values(path: &Path, values: &Value) {
    let text: String = values
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|value| format!("{}\n", value.as_f64().expect("a number")))
        .collect();
    std::fs::write(path, text).expect("writing a sample");
}

/// The command and the endpoint give the same answer on every fixture of raw samples.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_gives_the_endpoints_numbers() {
    let server = Server::start().await;
    let folder = tempfile::tempdir().expect("a folder");
    let (treatment, control) = (folder.path().join("t.txt"), folder.path().join("c.txt"));
    let mut compared = 0;
    for (label, case) in fixtures() {
        if !case["treatment"].is_array() {
            continue;
        }
        write_values(&treatment, &case["treatment"]);
        write_values(&control, &case["control"]);
        let confidence = case["confidence"].to_string();
        let mut arguments = vec![
            "--treatment",
            treatment.to_str().expect("a path"),
            "--control",
            control.to_str().expect("a path"),
            "--alternative",
            case["alternative"].as_str().expect("an alternative"),
            "--method",
            case["method"].as_str().expect("a method"),
            "--confidence",
            &confidence,
            "--json",
        ];
        if case["continuity"] == json!(false) {
            arguments.push("--no-continuity");
        }
        let output = ripcord_judge(&arguments, None);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{label}: {}",
            stderr(&output)
        );
        let printed: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("{label}: {error}: {}", stdout(&output)));
        let reply = post_judge(
            &server,
            Some(&server.admin_key),
            Body::Json(request_of(&case)),
        )
        .await
        .expect_status(200)
        .json();
        assert_eq!(printed, reply, "{label}");
        assert_matches_scipy(&printed, &case["expected"], &label);
        compared += 1;
    }
    assert!(compared >= 70, "only {compared} fixtures of raw samples");
}

#[test]
fn the_report_and_the_exit_status_tell_the_verdict() {
    let folder = tempfile::tempdir().expect("a folder");
    let path = |name: &str| folder.path().join(name).to_string_lossy().into_owned();
    let write =
        |name: &str, text: &str| std::fs::write(folder.path().join(name), text).expect("a file");
    let control: Vec<f64> = (0..400)
        .map(|index| 100.0 + f64::from(index % 40))
        .collect();
    let lines = |values: &[f64]| {
        values
            .iter()
            .map(|value| format!("{value}\n"))
            .collect::<String>()
    };
    write("control.txt", &lines(&control));
    write("same.txt", &lines(&control));
    let slower: Vec<f64> = control.iter().map(|value| value * 1.3).collect();
    write(
        "slower.csv",
        &format!(
            "latency_ms,region\n{}",
            slower
                .iter()
                .map(|value| format!("{value},eu\n"))
                .collect::<String>()
        ),
    );
    write("a.txt", "12.1\n13.4\n11.9\n");
    write("b.txt", "11.8\n12.0\n12.2\n");

    let run = |arguments: &[&str]| {
        let output = ripcord_judge(arguments, None);
        (output.status.code(), stdout(&output), stderr(&output))
    };
    let (slower, control, same) = (path("slower.csv"), path("control.txt"), path("same.txt"));

    // The request example of docs/judge.md, through the command, as a person reads it.
    let (code, report, _) = run(&[
        "--treatment",
        &path("a.txt"),
        "--control",
        &path("b.txt"),
        "--tolerance",
        "5%",
    ]);
    assert_eq!(code, Some(2), "{report}");
    for expected in [
        "3 values, median 12.1",
        "3 values, median 12",
        "U          6 (U2 = 3), exact",
        "p-value    0.3500",
        "shift      +0.1",
        "95% interval [-0.3, +1.6]",
        "INCONCLUSIVE",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }

    let (code, report, _) = run(&[
        "--treatment",
        &slower,
        "--control",
        &control,
        "--tolerance",
        "5%",
    ]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("REGRESSION"), "{report}");
    assert!(report.contains("400 values"), "{report}");
    let (code, report, _) = run(&[
        "--treatment",
        &same,
        "--control",
        &control,
        "--tolerance",
        "5%",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("PASS"), "{report}");
    // Higher is better: the slower sample is now the better one.
    let (code, report, _) = run(&[
        "--treatment",
        &slower,
        "--control",
        &control,
        "--tolerance",
        "5%",
        "--better",
        "higher",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("PASS"), "{report}");
    let (code, report, _) = run(&[
        "--treatment",
        &control,
        "--control",
        &slower,
        "--tolerance",
        "0.5",
        "--better",
        "higher",
    ]);
    assert_eq!(code, Some(1), "{report}");
    // No tolerance, no verdict to act on: 0, and the JSON says INCONCLUSIVE as the API does.
    let (code, printed, _) = run(&["--treatment", &slower, "--control", &control, "--json"]);
    assert_eq!(code, Some(0), "{printed}");
    let printed: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(printed["verdict"], json!("INCONCLUSIVE"));
    assert_eq!(printed["n_treatment"], json!(400));
    let (code, printed, _) = run(&[
        "--treatment",
        &slower,
        "--control",
        &control,
        "--json",
        "--tolerance",
        "5%",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(
        serde_json::from_str::<Value>(&printed).expect("JSON")["verdict"],
        json!("REGRESSION")
    );

    // Standard input.
    let output = ripcord_judge(
        &["--treatment", "-", "--control", &path("b.txt"), "--json"],
        Some("12.1\n13.4\n11.9\n"),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["u"], json!(6.0));
}

#[test]
fn bad_files_and_options_have_their_own_exit_status() {
    let folder = tempfile::tempdir().expect("a folder");
    let path = |name: &str| folder.path().join(name).to_string_lossy().into_owned();
    let write =
        |name: &str, text: &str| std::fs::write(folder.path().join(name), text).expect("a file");
    write("good.txt", "1\n2\n3\n");
    write("word.txt", "value\n1\n2\nthree\n");
    write("nan.txt", "1\n2\n\n NaN\n");
    write("infinite.txt", "1\ninf\n");
    write("empty.txt", "value\n");
    let good = path("good.txt");
    let cases: Vec<(Vec<String>, i32, Vec<String>)> = vec![
        (
            vec![
                "--treatment".into(),
                path("word.txt"),
                "--control".into(),
                good.clone(),
            ],
            65,
            vec![
                format!("{}:4:", path("word.txt")),
                "`three` is not a number".into(),
            ],
        ),
        (
            vec![
                "--treatment".into(),
                good.clone(),
                "--control".into(),
                path("nan.txt"),
            ],
            65,
            vec![format!("{}:4:", path("nan.txt")), "finite".into()],
        ),
        (
            vec![
                "--treatment".into(),
                path("infinite.txt"),
                "--control".into(),
                good.clone(),
            ],
            65,
            vec![format!("{}:2:", path("infinite.txt"))],
        ),
        (
            vec![
                "--treatment".into(),
                path("empty.txt"),
                "--control".into(),
                good.clone(),
            ],
            65,
            vec![path("empty.txt"), "empty".into()],
        ),
        (
            vec![
                "--treatment".into(),
                path("missing.txt"),
                "--control".into(),
                good.clone(),
            ],
            66,
            vec![path("missing.txt")],
        ),
        (
            vec!["--treatment".into(), good.clone()],
            64,
            vec!["--control".into()],
        ),
        (
            vec![
                "--treatment".into(),
                good.clone(),
                "--control".into(),
                good.clone(),
                "--better".into(),
                "faster".into(),
            ],
            64,
            vec!["faster".into()],
        ),
        (
            vec![
                "--treatment".into(),
                good.clone(),
                "--control".into(),
                good.clone(),
                "--confidence".into(),
                "95".into(),
            ],
            64,
            vec!["--confidence".into()],
        ),
        (
            vec![
                "--treatment".into(),
                good.clone(),
                "--control".into(),
                good.clone(),
                "--tolerance".into(),
                "5 percent".into(),
            ],
            64,
            vec!["--tolerance".into()],
        ),
        (
            vec![
                "--treatment".into(),
                "-".into(),
                "--control".into(),
                "-".into(),
            ],
            64,
            vec!["standard input".into()],
        ),
    ];
    for (arguments, code, mentions) in cases {
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let output = ripcord_judge(&arguments, None);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{arguments:?}: {message}");
        assert!(stdout(&output).is_empty(), "{arguments:?}");
        for mention in mentions {
            assert!(
                message.contains(&mention),
                "{arguments:?}: no {mention:?} in {message}"
            );
        }
    }

    let output = ripcord_judge(&["--help"], None);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for expected in [
        "Exit status",
        "REGRESSION",
        "INCONCLUSIVE",
        "--tolerance",
        "--json",
    ] {
        assert!(help.contains(expected), "no {expected:?} in:\n{help}");
    }
    // The server's settings are not the command's: a bad one does not break it.
    let output = Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"))
        .args(["judge", "--treatment", &good, "--control", &good])
        .env("RIPCORD_HEARTBEAT", "never")
        .env("RIPCORD_HTTP_ADDR", "not an address")
        .output()
        .expect("running ripcord judge");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Server options do not combine with the command.
    let output = Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"))
        .args([
            "--log",
            "debug",
            "judge",
            "--treatment",
            &good,
            "--control",
            &good,
        ])
        .output()
        .expect("running ripcord");
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
}
