//! `ripcord judge`: the judge of `POST /api/v1/judge` on two files, without a server.
//!
//! It reads the samples, builds the API's [`JudgeRequest`] and calls the same engine
//! function the endpoint calls, so both give the same numbers. `--json` prints the API's
//! answer; otherwise a report for people. The exit status tells the verdict.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ripcord_engine::document::Tolerance;
use ripcord_engine::stats::{
    judge, Alternative, Better, EffectMeasure, JudgeError, JudgeErrorKind, JudgeRequest,
    JudgeResponse, Method, SampleInput, Tolerance as StatsTolerance, Verdict,
};

/// The verdict is PASS, or no `--tolerance` asked for one.
pub const EXIT_PASS: u8 = 0;
/// The verdict is REGRESSION.
pub const EXIT_REGRESSION: u8 = 1;
/// The verdict is INCONCLUSIVE, with a `--tolerance`.
pub const EXIT_INCONCLUSIVE: u8 = 2;
/// The command line is wrong (sysexits' EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// A sample is not valid: not a number, NaN or infinite, empty, too many (EX_DATAERR).
pub const EXIT_DATA: u8 = 65;
/// A file cannot be read (EX_NOINPUT).
pub const EXIT_NO_INPUT: u8 = 66;

/// Shown by `ripcord judge --help`.
pub const EXIT_STATUS_HELP: &str = "\
Input: one number per line, or a CSV file whose first column holds them (a header line is
skipped). Empty lines and lines starting with # are ignored. `-` reads standard input.

Exit status:
   0  PASS, or no --tolerance given (the report is printed, no verdict is asked for)
   1  REGRESSION: the treatment is worse, significantly, by at least the tolerance
   2  INCONCLUSIVE: a --tolerance was given and the data decide neither way
  64  the command line is wrong
  65  a sample is not valid (not a number, NaN or infinite, empty, over 1,000,000 values)
  66  a file cannot be read

See docs/judge.md for how to read the report.";

/// The options of `ripcord judge`; each maps onto a field of the API's request.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct JudgeArgs {
    /// The treatment's values (the new version, the canary, flag on).
    #[arg(long, value_name = "FILE")]
    pub treatment: PathBuf,

    /// The control's values (the current version, the baseline, flag off).
    #[arg(long, value_name = "FILE")]
    pub control: PathBuf,

    /// Which way is better for the metric: `lower` (latency, errors) or `higher` (success,
    /// conversion). Sets the direction of "worse" and of the default alternative.
    #[arg(long, value_parser = ["lower", "higher"], default_value = "lower")]
    pub better: String,

    /// `greater`, `less` or `two-sided`, treatment first (scipy's `mannwhitneyu`). Default:
    /// the one-sided "treatment is worse".
    #[arg(long, value_parser = ["greater", "less", "two-sided"])]
    pub alternative: Option<String>,

    /// `auto` (exact when the smaller sample has at most 8 values and nothing is tied),
    /// `exact` or `asymptotic`.
    #[arg(long, value_parser = ["auto", "exact", "asymptotic"], default_value = "auto")]
    pub method: String,

    /// Leave out the continuity correction of the asymptotic method.
    #[arg(long)]
    pub no_continuity: bool,

    /// Of the Hodges–Lehmann interval, and 1 − alpha of the verdict.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,

    /// How much worse the treatment may be: an amount in the metric's unit (`0.5`) or a
    /// share of the control's median (`5%`). With it, the verdict is PASS, REGRESSION or
    /// INCONCLUSIVE, and the exit status tells which.
    #[arg(long, value_name = "AMOUNT|PERCENT")]
    pub tolerance: Option<String>,

    /// Print the answer `POST /api/v1/judge` would give, as JSON, instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: prints the report (or the JSON) on stdout, problems on stderr.
pub fn run(arguments: &JudgeArgs) -> ExitCode {
    match judge_files(arguments) {
        Ok((request, response)) => {
            let output = if arguments.json {
                serde_json::to_string_pretty(&response).unwrap_or_default()
            } else {
                report(arguments, &request, &response)
            };
            println!("{output}");
            ExitCode::from(exit_status(&request, &response))
        }
        Err(problem) => {
            eprintln!("ripcord judge: {}", problem.message);
            ExitCode::from(problem.status)
        }
    }
}

/// What went wrong, with the exit status that says so.
#[derive(Debug)]
struct Problem {
    status: u8,
    message: String,
}

impl Problem {
    fn new(status: u8, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
        }
    }
}

/// The exit status of a judged request (see [`EXIT_STATUS_HELP`]).
pub fn exit_status(request: &JudgeRequest, response: &JudgeResponse) -> u8 {
    match (request.tolerance.is_some(), response.verdict) {
        (false, _) | (true, Verdict::Pass) => EXIT_PASS,
        (true, Verdict::Regression) => EXIT_REGRESSION,
        (true, Verdict::Inconclusive) => EXIT_INCONCLUSIVE,
    }
}

/// A sample read from a file, and the line each value came from.
struct Sample {
    values: Vec<f64>,
    lines: Vec<usize>,
}

fn judge_files(arguments: &JudgeArgs) -> Result<(JudgeRequest, JudgeResponse), Problem> {
    if arguments.treatment == Path::new("-") && arguments.control == Path::new("-") {
        return Err(Problem::new(
            EXIT_USAGE,
            "--treatment and --control cannot both read standard input",
        ));
    }
    let treatment = read_sample(&arguments.treatment)?;
    let control = read_sample(&arguments.control)?;
    let request = JudgeRequest {
        better: Some(option("--better", &arguments.better)?),
        alternative: arguments
            .alternative
            .as_deref()
            .map(|alternative| option::<Alternative>("--alternative", alternative))
            .transpose()?,
        method: Some(option::<Method>("--method", &arguments.method)?),
        continuity: Some(!arguments.no_continuity),
        confidence: Some(arguments.confidence),
        tolerance: arguments.tolerance.as_deref().map(Tolerance::from_text),
        ..JudgeRequest::new(
            SampleInput::Values(treatment.values),
            SampleInput::Values(control.values),
        )
    };
    let response = judge(&request)
        .map_err(|error| judge_problem(error, arguments, &treatment.lines, &control.lines))?;
    Ok((request, response))
}

/// `--better lower` and friends, read as the API reads them, so the names cannot differ.
fn option<T: serde::de::DeserializeOwned>(flag: &str, value: &str) -> Result<T, Problem> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|error| Problem::new(EXIT_USAGE, format!("{flag}: {error}")))
}

/// Turns the engine's field (`treatment[17]`, `tolerance`) into where the user can fix it:
/// a file and line, or an option.
fn judge_problem(
    error: JudgeError,
    arguments: &JudgeArgs,
    treatment_lines: &[usize],
    control_lines: &[usize],
) -> Problem {
    let (name, index) = match error.field.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (error.field.as_str(), None),
    };
    let sample = match name {
        "treatment" => Some((&arguments.treatment, treatment_lines)),
        "control" => Some((&arguments.control, control_lines)),
        _ => None,
    };
    match (sample, index) {
        (Some((path, lines)), Some(index)) => {
            let line = lines.get(index).copied().unwrap_or(0);
            Problem::new(
                EXIT_DATA,
                format!("{}:{line}: {}", display(path), error.message),
            )
        }
        (Some((path, _)), None) => Problem::new(
            EXIT_DATA,
            format!("{} ({name}): {}", display(path), error.message),
        ),
        (None, _) => {
            let status = match error.kind {
                JudgeErrorKind::TooLarge if name == "method" => EXIT_DATA,
                _ => EXIT_USAGE,
            };
            Problem::new(status, format!("--{name}: {}", error.message))
        }
    }
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

fn read_sample(path: &Path) -> Result<Sample, Problem> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|read| text = read)
    };
    read.map_err(|error| {
        Problem::new(
            EXIT_NO_INPUT,
            format!("cannot read {}: {error}", display(path)),
        )
    })?;
    parse_sample(&text).map_err(|(line, message)| {
        Problem::new(EXIT_DATA, format!("{}:{line}: {message}", display(path)))
    })
}

/// One number per line, or the first column of a CSV. The first line that holds anything
/// may be a header: it is skipped if it is not a number. Errors carry the line (1-based).
fn parse_sample(text: &str) -> Result<Sample, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sample = Sample {
        values: Vec::new(),
        lines: Vec::new(),
    };
    let mut first = true;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let field = line.split(',').next().unwrap_or_default().trim();
        let field = field
            .strip_prefix('"')
            .and_then(|field| field.strip_suffix('"'))
            .unwrap_or(field)
            .trim();
        match field.parse::<f64>() {
            Ok(value) => {
                sample.values.push(value);
                sample.lines.push(index + 1);
            }
            Err(_) if first => {}
            Err(_) => {
                return Err((index + 1, format!("`{field}` is not a number")));
            }
        }
        first = false;
    }
    Ok(sample)
}

/// The report for people: what was compared, the test, the shift, the verdict.
fn report(arguments: &JudgeArgs, request: &JudgeRequest, response: &JudgeResponse) -> String {
    let mut out = String::new();
    let hl = &response.hodges_lehmann;
    let percent = |share: f64| format!("{}%", significant(share * 100.0, 3));
    let _ = writeln!(
        out,
        "treatment  {} values, median {}  ({})",
        response.n_treatment,
        number(response.medians.treatment),
        display(&arguments.treatment)
    );
    let _ = writeln!(
        out,
        "control    {} values, median {}  ({})",
        response.n_control,
        number(response.medians.control),
        display(&arguments.control)
    );
    let _ = writeln!(out);
    let method = match (response.method, response.z) {
        (Method::Exact, _) => "exact distribution".to_string(),
        (_, None) => "every value tied".to_string(),
        (_, Some(z)) if request.continuity == Some(false) => {
            format!("normal approximation, z = {}", number(z))
        }
        (_, Some(z)) => format!(
            "normal approximation, z = {} with continuity correction",
            number(z)
        ),
    };
    // U is a half-integer, shown whole: six digits would round 788124.5.
    let _ = writeln!(
        out,
        "U          {} (U2 = {}), {method}",
        response.u, response.u2
    );
    let direction = match response.alternative {
        Alternative::Greater => "treatment tends to be larger",
        Alternative::Less => "treatment tends to be smaller",
        Alternative::TwoSided => "treatment and control differ",
    };
    let _ = writeln!(
        out,
        "p-value    {} ({}: {direction})",
        p_value(response.p_value),
        response.alternative.as_str()
    );
    let control = response.medians.control;
    let relative = if control != 0.0 {
        let share = hl.estimate / control.abs();
        let sign = if share > 0.0 { "+" } else { "" };
        format!(" ({sign}{} of the control median)", percent(share))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "shift      {}{relative}, Hodges-Lehmann: the median of treatment - control",
        signed(hl.estimate)
    );
    let _ = writeln!(
        out,
        "           {} interval [{}, {}]",
        percent(hl.confidence),
        signed(hl.ci[0]),
        signed(hl.ci[1])
    );
    if let Some(effect) = response
        .effect
        .filter(|effect| effect.measure == EffectMeasure::RateDifference)
    {
        let _ = writeln!(
            out,
            "rates      {} vs {}: {} (0/1 data: the verdict weighs the difference of rates)",
            number(effect.control_level + effect.estimate),
            number(effect.control_level),
            signed(effect.estimate)
        );
    }
    let _ = writeln!(out);
    let better = match request.better.unwrap_or(Better::Lower) {
        Better::Lower => "lower is better",
        Better::Higher => "higher is better",
    };
    match &request.tolerance {
        None => {
            let _ = write!(
                out,
                "verdict    none asked for: --tolerance gives PASS, REGRESSION or INCONCLUSIVE"
            );
        }
        Some(tolerance) => {
            let level = percent(hl.confidence);
            let (verdict, meaning) = match response.verdict {
                Verdict::Regression => (
                    "REGRESSION",
                    format!(
                        "the treatment is worse, significantly (one-sided p <= {}) and by at \
                         least the tolerance",
                        number(1.0 - hl.confidence)
                    ),
                ),
                Verdict::Pass => (
                    "PASS",
                    "the treatment is worse by less than the tolerance, if at all".to_string(),
                ),
                Verdict::Inconclusive => (
                    "INCONCLUSIVE",
                    "the data decide neither way; more of them may".to_string(),
                ),
            };
            let amount = match (StatsTolerance::parse(tolerance), response.effect) {
                (Ok(StatsTolerance::Relative(share)), Some(effect)) => format!(
                    "{} of the control {} = {}",
                    percent(share),
                    match effect.measure {
                        EffectMeasure::Shift => "median",
                        EffectMeasure::RateDifference => "rate",
                    },
                    number(effect.tolerance)
                ),
                (Ok(parsed), _) => number(parsed.value()),
                (Err(_), _) => String::new(),
            };
            let bound = response
                .effect
                .map(|effect| {
                    let what = match effect.measure {
                        EffectMeasure::Shift => "shift",
                        EffectMeasure::RateDifference => "difference of rates",
                    };
                    format!(
                        "; one-sided {level} bound on the {what} {}",
                        signed(effect.worse_bound)
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "verdict    {verdict}: {meaning}\n           tolerance {amount}, {better}{bound}"
            );
        }
    }
    out
}

/// Six significant digits, without trailing zeros; scientific far from 1.
fn number(value: f64) -> String {
    significant(value, 6)
}

fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor();
    if !(-4.0..9.0).contains(&magnitude) {
        let decimals = (digits - 1).max(0) as usize;
        return format!("{value:.decimals$e}");
    }
    let decimals = (f64::from(digits - 1) - magnitude).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn signed(value: f64) -> String {
    if value > 0.0 {
        format!("+{}", number(value))
    } else {
        number(value)
    }
}

fn p_value(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_from_lines_and_csv_first_columns() {
        let sample =
            parse_sample("latency_ms,region\n12.5,eu\n\n# warm-up excluded\n13,us\n\"14.25\",eu\n")
                .unwrap();
        assert_eq!(sample.values, vec![12.5, 13.0, 14.25]);
        assert_eq!(sample.lines, vec![2, 5, 6]);
        let sample = parse_sample("\u{feff}1\n2\r\n3e2\n").unwrap();
        assert_eq!(sample.values, vec![1.0, 2.0, 300.0]);
        assert_eq!(
            parse_sample("value\n1\nabc\n").err(),
            Some((3, "`abc` is not a number".into()))
        );
        // NaN parses here; the engine refuses it and names the index, mapped to its line.
        assert!(parse_sample("1\nNaN\n").unwrap().values[1].is_nan());
        assert!(parse_sample("header only\n").unwrap().values.is_empty());
    }

    #[test]
    fn numbers_are_short_and_exact_enough() {
        assert_eq!(number(12.1), "12.1");
        assert_eq!(number(0.09999999999999964), "0.1");
        assert_eq!(number(-0.29999999999999893), "-0.3");
        assert_eq!(number(123456.789), "123457");
        assert_eq!(number(2.5e-7), "2.50000e-7");
        assert_eq!(number(0.0), "0");
        assert_eq!(p_value(0.35), "0.3500");
        assert_eq!(p_value(3.2e-61), "3.200e-61");
    }
}
