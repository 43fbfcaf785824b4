//! The start of a blameless postmortem for every halt the guard made: what was halted and
//! when, the ramp's timeline, each guard's evidence, the kill's reach, and the sections the
//! team fills in. A halted ramp is a production issue where the team got lucky; writing it
//! down starts from what the server knows.

use std::fmt::Write as _;

use ripcord_engine::ramp::GuardReport;

use crate::store::{AuditRecord, IncidentRecord, Reach};

/// What the postmortem is drawn from, besides the incident.
pub struct Facts<'a> {
    /// The audit entries of the flag's ramp in the incident's generation, oldest first.
    pub timeline: &'a [AuditRecord],
    /// For a kill the ramp still records: how many instances have fetched it.
    pub reach: Option<Reach>,
    /// The environment revision that carried the kill, if it is known.
    pub kill_revision: Option<u64>,
}

/// The postmortem of `incident`, in Markdown.
pub fn render(incident: &IncidentRecord, facts: &Facts<'_>) -> String {
    let mut text = String::new();
    let halted = if incident.action == "kill" {
        "killed"
    } else {
        "paused"
    };
    // `write!` into a String cannot fail.
    let _ = writeln!(
        text,
        "# Postmortem: `{}` {halted} in `{}` (incident {})\n",
        incident.flag, incident.environment, incident.id
    );
    let _ = writeln!(text, "## What happened\n");
    let _ = writeln!(
        text,
        "At {}, the guard {halted} the ramp of flag `{}` in environment `{}` (generation {}) \
         at stage {} ({}% of the rollout population).\n",
        incident.time,
        incident.flag,
        incident.environment,
        incident.generation,
        u32::from(incident.stage) + 1,
        number(incident.percentage)
    );
    let _ = writeln!(text, "> {}\n", incident.reason);
    if let Some(revision) = facts.kill_revision {
        let _ = writeln!(
            text,
            "The kill switch went off at environment revision {revision}.\n"
        );
    }

    let _ = writeln!(text, "## Timeline\n");
    if facts.timeline.is_empty() {
        let _ = writeln!(text, "The audit log holds no decision of this ramp.\n");
    } else {
        let _ = writeln!(text, "| time | what | by | why |");
        let _ = writeln!(text, "|---|---|---|---|");
        for entry in facts.timeline {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} |",
                entry.time,
                cell(entry.action.strip_prefix("ramp.").unwrap_or(&entry.action)),
                cell(&entry.actor),
                cell(entry.reason.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(text);
    }

    let _ = writeln!(text, "## Evidence\n");
    evidence(&mut text, &incident.evidence);
    if let Some(srm) = &incident.srm {
        sample_ratio(&mut text, srm);
    }

    let _ = writeln!(text, "## Reach of the kill\n");
    match facts.reach {
        Some(reach) => {
            let _ = writeln!(
                text,
                "{} of the {} app and SDK instances seen in the last hour have fetched the \
                 kill.\n",
                reach.fetched, reach.active
            );
        }
        None if incident.action == "kill" => {
            let _ = writeln!(
                text,
                "Not known: the ramp has been restarted since, or the kill has not reached \
                 the flag yet.\n"
            );
        }
        None => {
            let _ = writeln!(text, "Nothing was killed: the ramp was paused.\n");
        }
    }
    for section in ["Impact", "Root cause", "What went well", "Actions"] {
        let _ = writeln!(text, "## {section}\n\n_To be written by the team._\n");
    }
    text
}

/// The sample-ratio check: were the data sound enough to judge on?
fn sample_ratio(text: &mut String, srm: &ripcord_engine::ramp::SrmReport) {
    let evidence = &srm.evidence;
    let ratio = |ratio: Option<f64>| ratio.map_or_else(|| "—".to_string(), number);
    let verdict = match evidence.verdict {
        ripcord_engine::stats::SrmVerdict::Ok => "as the bands imply",
        ripcord_engine::stats::SrmVerdict::Mismatch => {
            "**not** as the bands imply (sample-ratio mismatch)"
        }
    };
    let _ = writeln!(
        text,
        "**Sample ratio** (`{}`): the cohorts reported {verdict}: {} treatment and {} control \
         {}, a treatment : control ratio of {} against {} expected (always-valid \
         p-value {}).\n",
        cell(&srm.metric),
        evidence.treatment,
        evidence.control,
        match srm.counts {
            ripcord_engine::ramp::SrmCounts::Units => "distinct units",
            ripcord_engine::ramp::SrmCounts::Observations => "observations",
        },
        ratio(evidence.observed_ratio),
        ratio(evidence.expected_ratio),
        number(evidence.p_value)
    );
}

/// One row per guard: its verdict and the numbers behind it.
fn evidence(text: &mut String, guards: &[GuardReport]) {
    if guards.is_empty() {
        let _ = writeln!(text, "No guard evidence was recorded.\n");
        return;
    }
    let _ = writeln!(
        text,
        "| guard | verdict | treatment | control | effect (interval) | tolerance | p-value (threshold) |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|---|");
    for guard in guards {
        let critical = if guard.critical { " (critical)" } else { "" };
        let Some(evidence) = &guard.evidence else {
            let _ = writeln!(
                text,
                "| {}{critical} | not judged: {} | | | | | |",
                cell(&guard.metric),
                cell(guard.error.as_deref().unwrap_or("no data"))
            );
            continue;
        };
        let level = |median: Option<f64>, rate: Option<f64>| match (median, rate) {
            (Some(median), _) => format!("median {}", number(median)),
            (None, Some(rate)) => format!("rate {}", number(rate)),
            (None, None) => String::new(),
        };
        let effect = evidence.effect.as_ref().map_or_else(String::new, |effect| {
            let unit = if effect.relative { " (relative)" } else { "" };
            format!(
                "{} [{}, {}]{unit}",
                number(effect.estimate),
                number(effect.ci[0]),
                number(effect.ci[1])
            )
        });
        let verdict = serde_json::to_value(evidence.verdict)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default();
        let tolerance = match evidence.tolerance {
            ripcord_engine::stats::Tolerance::Absolute(points) => number(points),
            ripcord_engine::stats::Tolerance::Relative(share) => {
                format!("{}%", number(share * 100.0))
            }
        };
        let _ = writeln!(
            text,
            "| {}{critical} | {} | n = {}, {} | n = {}, {} | {} | {} | {} ({}) |",
            cell(&guard.metric),
            verdict,
            evidence.n_treatment,
            level(evidence.median_treatment, evidence.rate_treatment),
            evidence.n_control,
            level(evidence.median_control, evidence.rate_control),
            effect,
            cell(&tolerance),
            number(evidence.p_value),
            number(evidence.threshold)
        );
    }
    let _ = writeln!(text);
}

/// A number as people read it: up to six decimals without trailing zeros, and very small
/// or very large ones (p-values) in scientific notation.
fn number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() < 1e-3 || value.abs() >= 1e9 {
        return format!("{value:.3e}");
    }
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Text safe in a table cell: a `|` would end the cell, a line break the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::{cell, number};

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(10.0), "10");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(-0.0123456789), "-0.012346");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(3.2e-9), "3.200e-9");
    }

    #[test]
    fn a_cell_cannot_end_its_row_or_its_cell() {
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }
}
