//! Every scipy-generated fixture in `tests/fixtures/stats/` (scripts/gen-stats-fixtures.py),
//! through the judge (the API's code path) and the library functions, which must agree.

use std::path::Path;

use ripcord_engine::stats::{
    judge, mann_whitney, mann_whitney_histograms, Alternative, Histogram, JudgeRequest, Method,
    SampleInput,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    treatment: SampleInput,
    control: SampleInput,
    alternative: Alternative,
    method: Method,
    continuity: bool,
    confidence: f64,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    u: f64,
    u2: f64,
    p_value: f64,
    z: Option<f64>,
    method: Method,
    medians: Medians,
    hodges_lehmann: Option<Hl>,
}

#[derive(Deserialize)]
struct Medians {
    treatment: f64,
    control: f64,
}

#[derive(Deserialize)]
struct Hl {
    estimate: f64,
    ci: [f64; 2],
}

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    actual == expected || (actual - expected).abs() <= relative * expected.abs().max(1e-300)
}

#[test]
fn every_fixture_matches_scipy() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut checked = 0;
    let mut smallest_p = 1.0f64;
    for path in &files {
        let file: File = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        for case in file.cases {
            let label = format!(
                "{} / {}",
                path.file_name().unwrap().to_string_lossy(),
                case.name
            );
            let request = JudgeRequest {
                alternative: Some(case.alternative),
                method: Some(case.method),
                continuity: Some(case.continuity),
                confidence: Some(case.confidence),
                ..JudgeRequest::new(case.treatment.clone(), case.control.clone())
            };
            let response = judge(&request).unwrap_or_else(|error| panic!("{label}: {error}"));
            let library = match (&case.treatment, &case.control) {
                (SampleInput::Values(x), SampleInput::Values(y)) => mann_whitney(
                    x,
                    y,
                    case.alternative,
                    case.method,
                    case.continuity,
                    case.confidence,
                ),
                (
                    SampleInput::Histogram { bins, counts },
                    SampleInput::Histogram {
                        bins: control_bins,
                        counts: control_counts,
                    },
                ) => mann_whitney_histograms(
                    &Histogram::from_parts(bins.clone(), counts.clone()).unwrap(),
                    &Histogram::from_parts(control_bins.clone(), control_counts.clone()).unwrap(),
                    case.alternative,
                    case.method,
                    case.continuity,
                    case.confidence,
                ),
                _ => panic!("{label}: mixed forms"),
            }
            .unwrap();
            assert_eq!(library.u, response.u, "{label}");
            assert_eq!(library.p_value, response.p_value, "{label}");
            assert_eq!(
                library.hodges_lehmann,
                Some(response.hodges_lehmann),
                "{label}"
            );

            let expected = &case.expected;
            assert!(
                close(response.u, expected.u, 1e-9),
                "{label}: u {} vs {}",
                response.u,
                expected.u
            );
            assert!(close(response.u2, expected.u2, 1e-9), "{label}: u2");
            assert_eq!(response.method, expected.method, "{label}: method");
            assert!(
                close(response.p_value, expected.p_value, 1e-6),
                "{label}: p {:e} vs {:e}",
                response.p_value,
                expected.p_value
            );
            match (response.z, expected.z) {
                (Some(z), Some(want)) => assert!(close(z, want, 1e-9), "{label}: z {z} vs {want}"),
                (None, None) => {}
                (got, want) => panic!("{label}: z {got:?} vs {want:?}"),
            }
            assert_eq!(
                response.medians.treatment, expected.medians.treatment,
                "{label}"
            );
            assert_eq!(
                response.medians.control, expected.medians.control,
                "{label}"
            );
            if let Some(hl) = &expected.hodges_lehmann {
                assert!(
                    close(response.hodges_lehmann.estimate, hl.estimate, 1e-12),
                    "{label}: HL {} vs {}",
                    response.hodges_lehmann.estimate,
                    hl.estimate
                );
                assert_eq!(response.hodges_lehmann.ci, hl.ci, "{label}: HL interval");
            }
            smallest_p = smallest_p.min(response.p_value);
            checked += 1;
        }
    }
    assert!(checked >= 80, "only {checked} fixtures");
    assert!(
        smallest_p > 0.0 && smallest_p < 1e-190,
        "smallest p {smallest_p:e}"
    );
}
