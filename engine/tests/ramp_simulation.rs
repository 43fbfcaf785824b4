//! The simulation harness (`examples/simulate.rs`) in miniature, so CI runs the real
//! controller and guard on generated streams: a few hundred ramps, cheap cases, fixed
//! seeds. The bounds leave binomial slack around what the full run measures
//! (docs/ramps.md, "Simulation"), so they test the method, not one lucky seed.

#[path = "../examples/simulate.rs"]
mod simulate;

use simulate::{ideal, simulate, Case, Control, Metric, Schedule};

const SAME_ERRORS: Metric = Metric::Errors {
    control: 0.01,
    treatment: 0.01,
};
const TRIPLED_ERRORS: Metric = Metric::Errors {
    control: 0.01,
    treatment: 0.03,
};

/// The most kills out of `ramps` a true rate `rate` gives but for a 1-in-3,000 chance
/// (mean + 3.5 standard deviations).
fn at_most(ramps: usize, rate: f64) -> usize {
    let n = ramps as f64;
    (n * rate + 3.5 * (n * rate * (1.0 - rate)).sqrt()).floor() as usize
}

#[test]
fn a_a_ramps_rarely_kill_over_the_whole_schedule() {
    // Tolerance 0 and the forced schedule: the sequential test alone over all 180 looks of
    // the 1% → 50% ramp, the worst case for false kills. Ville's inequality bounds the rate
    // by alpha = 5%; on exactly normal data the same looks give about 2.6%. Testing p < 0.05
    // at every look would kill about 37% of these ramps.
    let case = Case {
        metric: SAME_ERRORS,
        per_minute: 2_000.0,
        schedule: Schedule::ForcedZero,
        control: Control::Equal,
    };
    let ramps = 400;
    let summary = simulate(case, ramps, 7, 2);
    assert!(
        summary.kills <= at_most(ramps, 0.05),
        "{} false kills in {ramps} A/A ramps",
        summary.kills
    );
    assert_eq!(
        summary.reached_last + summary.kills,
        ramps,
        "every A/A ramp not killed is forced to the last stage"
    );
    let reference = ideal(case, 20_000, 7);
    let rate = reference.kills as f64 / reference.paths as f64;
    assert!(
        rate > 0.015 && rate < 0.05,
        "the method on ideal data: {rate}"
    );
    assert!(
        summary.kills <= at_most(ramps, rate),
        "{} false kills in {ramps} ramps where ideal data give {:.1}%",
        summary.kills,
        100.0 * rate
    );
}

#[test]
fn ten_percent_slower_is_killed_in_the_first_stage_in_about_the_target_time() {
    // The target at 2,000 a minute (docs/statistics.md, "Targets"): median ≈ 11 minutes,
    // ≈ 220 treated units, with the control = all other traffic. Ripcord's equal-size control
    // has half the information per treated unit at 1%; the full run measures 1.75× the
    // exposure (ideal normal data: 1.67×).
    let case = |control| Case {
        metric: Metric::Latency { slowdown: 1.10 },
        per_minute: 2_000.0,
        schedule: Schedule::Controller,
        control,
    };
    let ramps = 100;
    let reference = simulate(case(Control::Rest), ramps, 11, 2);
    let contract = simulate(case(Control::Equal), ramps, 11, 2);
    for (name, summary) in [("rest", &reference), ("equal", &contract)] {
        assert!(
            summary.killed_in_first_stage >= ramps - 1,
            "control = {name}: {} of {ramps} killed at 1%",
            summary.killed_in_first_stage
        );
    }
    let minute = reference.median_minute.expect("kills");
    assert!((9.0..=15.0).contains(&minute), "reference: median {minute}");
    let treated = reference.median_treated.expect("kills");
    assert!((180.0..=300.0).contains(&treated), "reference: {treated}");
    let slower = contract.median_treated.expect("kills") / treated;
    assert!(
        (1.3..=2.3).contains(&slower),
        "the equal control needs {slower}× the exposure"
    );
}

#[test]
fn tripled_errors_are_killed_once_the_burn_in_allows() {
    // The target: median ≈ 25 minutes, ≈ 500 treated units at 2,000 a minute, set by the
    // burn-in (min(n1, n2)·p̄ ≥ 5 with p̄ ≈ 1.02% and 20 treated units a minute).
    let case = |control| Case {
        metric: TRIPLED_ERRORS,
        per_minute: 2_000.0,
        schedule: Schedule::Controller,
        control,
    };
    let ramps = 200;
    let reference = simulate(case(Control::Rest), ramps, 13, 2);
    assert_eq!(reference.killed_in_first_stage, ramps);
    let minute = reference.median_minute.expect("kills");
    assert!(
        (24.0..=28.0).contains(&minute),
        "reference: median {minute}"
    );
    let contract = simulate(case(Control::Equal), ramps, 13, 2);
    assert_eq!(contract.killed_in_first_stage, ramps);
    let minute = contract.median_minute.expect("kills");
    assert!((28.0..=40.0).contains(&minute), "contract: median {minute}");
}

#[test]
fn an_equal_error_rate_advances_through_the_stages() {
    // At 20,000 a minute an equal error rate passes each stage at its minimum duration
    // (PASS: the always-valid bound below 0.5 pp), so the controller reaches 50% in time.
    let case = Case {
        metric: SAME_ERRORS,
        per_minute: 20_000.0,
        schedule: Schedule::Controller,
        control: Control::Equal,
    };
    let ramps = 40;
    let summary = simulate(case, ramps, 17, 2);
    assert!(summary.kills <= 2, "{} false kills", summary.kills);
    assert!(
        summary.reached_last >= ramps - 3,
        "{} of {ramps} reached the last stage",
        summary.reached_last
    );
}
