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
    let case = Case::new(SAME_ERRORS, 2_000.0, Schedule::ForcedZero, Control::Equal);
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
    // ≈ 220 treated units, with `control: rest` (the default). `control: equal` has half
    // the information per treated unit at 1%; the full run measures about 1.75× the
    // exposure (ideal normal data: 1.67×).
    let case = |control| {
        Case::new(
            Metric::Latency { slowdown: 1.10 },
            2_000.0,
            Schedule::Controller,
            control,
        )
    };
    let ramps = 100;
    let rest = simulate(case(Control::Rest), ramps, 11, 2);
    let equal = simulate(case(Control::Equal), ramps, 11, 2);
    for (name, summary) in [("rest", &rest), ("equal", &equal)] {
        assert!(
            summary.killed_in_first_stage >= ramps - 1,
            "control = {name}: {} of {ramps} killed at 1%",
            summary.killed_in_first_stage
        );
    }
    let minute = rest.median_minute.expect("kills");
    assert!((9.0..=15.0).contains(&minute), "rest: median {minute}");
    let treated = rest.median_treated.expect("kills");
    assert!((180.0..=300.0).contains(&treated), "rest: {treated}");
    let slower = equal.median_treated.expect("kills") / treated;
    assert!(
        (1.3..=2.3).contains(&slower),
        "the equal control needs {slower}× the exposure"
    );
}

#[test]
fn tripled_errors_are_killed_once_the_burn_in_allows() {
    // The target: median ≈ 25 minutes, ≈ 500 treated units at 2,000 a minute, set by the
    // burn-in (min(n1, n2)·p̄ ≥ 5 with p̄ ≈ 1.02% and 20 treated units a minute).
    let case = |control| Case::new(TRIPLED_ERRORS, 2_000.0, Schedule::Controller, control);
    let ramps = 200;
    // Almost every ramp is killed at 1%; a rare one draws a stream where the two rates
    // stay close for the whole 180 minutes (one of these 200 equal-control seeds does).
    let rest = simulate(case(Control::Rest), ramps, 13, 2);
    assert!(
        rest.killed_in_first_stage >= ramps - 2,
        "{}",
        rest.killed_in_first_stage
    );
    let minute = rest.median_minute.expect("kills");
    assert!((24.0..=28.0).contains(&minute), "rest: median {minute}");
    let equal = simulate(case(Control::Equal), ramps, 13, 2);
    assert!(
        equal.killed_in_first_stage >= ramps - 2,
        "{}",
        equal.killed_in_first_stage
    );
    let minute = equal.median_minute.expect("kills");
    assert!((28.0..=40.0).contains(&minute), "equal: median {minute}");
}

#[test]
fn an_equal_error_rate_advances_through_the_stages() {
    // At 20,000 a minute an equal error rate passes each stage at its minimum duration
    // (PASS: the always-valid bound below 0.5 pp), so the controller reaches 50% in time.
    let case = Case::new(SAME_ERRORS, 20_000.0, Schedule::Controller, Control::Equal);
    let ramps = 40;
    let summary = simulate(case, ramps, 17, 2);
    assert!(summary.kills <= 2, "{} false kills", summary.kills);
    assert!(
        summary.reached_last >= ramps - 3,
        "{} of {ramps} reached the last stage",
        summary.reached_last
    );
}

#[test]
fn the_sample_ratio_check_pauses_a_ramp_whose_treatment_loses_reports() {
    // A/A at 2,000 a minute with `control: rest` (the default) and `on_srm: pause`: every
    // cohort's count is a random draw from the bands' shares, so the check sees the noise
    // real counts have. Healthy, it may pause at most alpha = 1% of ramps (Ville's bound;
    // the full run measures about 0.5%). A treatment that loses 20% of its reports is 3.5
    // standard deviations short after 15 minutes; the full run (latency) pauses 99.7% of
    // the ramps in the 1% stage, at a median of minute 16. The check sees only the counts, so the
    // error metric, cheap to simulate, stands in for latency here.
    let healthy = Case::new(SAME_ERRORS, 2_000.0, Schedule::Controller, Control::Rest);
    let ramps = 300;
    let summary = simulate(healthy, ramps, 19, 2);
    assert!(
        summary.srm_pauses <= at_most(ramps, 0.01),
        "{} of {ramps} healthy ramps paused on a sample-ratio mismatch",
        summary.srm_pauses
    );
    let losing = Case {
        treatment_loss: 0.2,
        ..healthy
    };
    let ramps = 100;
    let summary = simulate(losing, ramps, 23, 2);
    assert!(
        summary.srm_in_first_stage >= 90,
        "{} of {ramps} ramps losing 20% of the treatment's reports paused at 1% \
         ({} at any stage)",
        summary.srm_in_first_stage,
        summary.srm_pauses
    );
    let minute = summary.srm_median_minute.expect("pauses");
    assert!((8.0..=30.0).contains(&minute), "median minute {minute}");
}
