//! The simulation harness (`examples/simulate.rs`) in miniature, so CI runs the real
//! controller and guard on generated streams: few ramps, cheap cases, fixed seeds.

#[path = "../examples/simulate.rs"]
mod simulate;

use simulate::{simulate, Case, Metric, Schedule};

#[test]
fn a_a_ramps_rarely_kill_over_the_whole_schedule() {
    // Tolerance 0 and a forced schedule: the worst case for false kills (STATS.md §10 wants
    // ≤ 3% per guard metric; with 60 seeded ramps, allow 3 kills).
    let case = Case {
        metric: Metric::Errors {
            control: 0.01,
            treatment: 0.01,
        },
        per_minute: 2_000.0,
        schedule: Schedule::Forced,
    };
    let summary = simulate(case, 60, 7, 2);
    assert!(
        summary.kills <= 3,
        "{} false kills in 60 A/A ramps",
        summary.kills
    );
    assert!(
        summary.reached_last >= 55,
        "A/A ramps reach the last stage unless killed"
    );
}

#[test]
fn ten_percent_slower_at_20000_a_minute_is_killed_in_the_first_stage() {
    let case = Case {
        metric: Metric::Latency { slowdown: 1.10 },
        per_minute: 20_000.0,
        schedule: Schedule::Controller,
    };
    let summary = simulate(case, 8, 11, 2);
    assert_eq!(summary.kills, 8, "every ramp is killed");
    assert_eq!(summary.killed_in_first_stage, 8);
    assert!(
        summary.median_minute.is_some_and(|minute| minute <= 10.0),
        "median {:?} minutes",
        summary.median_minute
    );
}

#[test]
fn a_tripled_error_rate_is_killed_and_an_equal_one_advances() {
    let worse = Case {
        metric: Metric::Errors {
            control: 0.01,
            treatment: 0.03,
        },
        per_minute: 20_000.0,
        schedule: Schedule::Controller,
    };
    let summary = simulate(worse, 20, 13, 2);
    assert_eq!(summary.kills, 20);
    let same = Case {
        metric: Metric::Errors {
            control: 0.01,
            treatment: 0.01,
        },
        ..worse
    };
    let summary = simulate(same, 20, 17, 2);
    // At 20,000 a minute an equal error rate passes the early stages at their minimum
    // duration, so the ramp reaches 50% within the 180 minutes.
    assert!(summary.kills <= 1, "{} false kills", summary.kills);
    assert!(
        summary.reached_last >= 17,
        "{} of 20 reached the last stage",
        summary.reached_last
    );
}
