//! Conditions compiled for evaluation: regexes, versions, times and value sets are parsed
//! once per snapshot, so evaluating a condition parses nothing but the context's value.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::context::same_bytes;
use crate::document::{Condition, Operator};

/// The largest compiled regex we accept. `regex` matches in linear time, but a pattern can
/// still compile to a large automaton; this keeps one flag from taking the server's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct CompiledCondition {
    attribute: crate::context::AttributeName,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    Equal(ValueSet),
    NotEqual(ValueSet),
    StartsWith(Vec<Box<str>>),
    EndsWith(Vec<Box<str>>),
    Contains(Vec<Box<str>>),
    Matches(Vec<Regex>),
    Number(Ordering, f64),
    Semver(Ordering, semver::Version),
    Time(Ordering, i128),
    Exists,
    NotExists,
}

/// How the context's value must compare with the condition's one value.
#[derive(Debug, Clone, Copy)]
enum Ordering {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
}

impl Ordering {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Ordering::Less => ordering == Less,
            Ordering::LessOrEqual => ordering != Greater,
            Ordering::Greater => ordering == Greater,
            Ordering::GreaterOrEqual => ordering != Less,
            Ordering::Equal => ordering == Equal,
        }
    }
}

/// The values of `eq`/`in`: strings in a hash set, the few numbers and booleans in lists.
#[derive(Debug, Default)]
struct ValueSet {
    strings: crate::context::StringSet,
    numbers: Vec<f64>,
    booleans: Vec<bool>,
}

impl ValueSet {
    fn contains(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => self.strings.contains(text),
            Value::Number(number) => number
                .as_f64()
                .is_some_and(|number| self.numbers.contains(&number)),
            Value::Bool(boolean) => self.booleans.contains(boolean),
            _ => false,
        }
    }
}

impl CompiledCondition {
    /// Compiles a condition, or says what is wrong with it. `path` is the condition's path
    /// in the document, for the messages.
    pub(crate) fn compile(
        condition: &Condition,
        path: &str,
        max_values: usize,
        problems: &mut Vec<crate::error::Problem>,
    ) -> Option<CompiledCondition> {
        use crate::error::Problem;
        let before = problems.len();
        let values = &condition.values;
        let values_path = format!("{path}.values");
        if condition.attribute.is_empty() {
            problems.push(Problem::new(
                format!("{path}.attribute"),
                "the attribute name is empty",
            ));
        }
        if values.len() > max_values {
            problems.push(Problem::new(
                &values_path,
                format!(
                    "{} values is over the limit of {max_values} values per condition",
                    values.len()
                ),
            ));
            return None;
        }
        let op = condition.op;
        let expect_count = |problems: &mut Vec<Problem>, wanted: Option<usize>| {
            let ok = match wanted {
                Some(count) => values.len() == count,
                None => !values.is_empty(),
            };
            if !ok {
                let wanted = match wanted {
                    Some(0) => "no values".to_string(),
                    Some(1) => "exactly one value".to_string(),
                    Some(count) => format!("{count} values"),
                    None => "at least one value".to_string(),
                };
                problems.push(Problem::new(
                    &values_path,
                    format!(
                        "`{}` takes {wanted}, got {}",
                        operator_name(op),
                        values.len()
                    ),
                ));
            }
        };
        let strings = |problems: &mut Vec<Problem>| -> Vec<Box<str>> {
            values
                .iter()
                .enumerate()
                .filter_map(|(index, value)| match value {
                    Value::String(text) => Some(text.as_str().into()),
                    _ => {
                        problems.push(Problem::new(
                            format!("{values_path}[{index}]"),
                            format!(
                                "`{}` compares strings; this is not a string",
                                operator_name(op)
                            ),
                        ));
                        None
                    }
                })
                .collect()
        };
        let matcher = match op {
            Operator::Eq | Operator::Neq | Operator::In | Operator::NotIn => {
                if matches!(op, Operator::Eq | Operator::Neq) {
                    expect_count(problems, Some(1));
                } else {
                    expect_count(problems, None);
                }
                let mut set = ValueSet::default();
                for (index, value) in values.iter().enumerate() {
                    match value {
                        Value::String(text) => {
                            set.strings.insert(text);
                        }
                        Value::Number(number) => {
                            set.numbers.push(number.as_f64().unwrap_or(f64::NAN));
                        }
                        Value::Bool(boolean) => set.booleans.push(*boolean),
                        _ => problems.push(Problem::new(
                            format!("{values_path}[{index}]"),
                            "only strings, numbers and booleans can be compared for equality",
                        )),
                    }
                }
                if matches!(op, Operator::Eq | Operator::In) {
                    Matcher::Equal(set)
                } else {
                    Matcher::NotEqual(set)
                }
            }
            Operator::StartsWith | Operator::EndsWith | Operator::Contains => {
                expect_count(problems, None);
                let strings = strings(problems);
                match op {
                    Operator::StartsWith => Matcher::StartsWith(strings),
                    Operator::EndsWith => Matcher::EndsWith(strings),
                    _ => Matcher::Contains(strings),
                }
            }
            Operator::Matches => {
                expect_count(problems, None);
                let mut regexes = Vec::new();
                for (index, pattern) in strings(problems).iter().enumerate() {
                    match RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                    {
                        Ok(regex) => regexes.push(regex),
                        Err(error) => problems.push(Problem::new(
                            format!("{values_path}[{index}]"),
                            format!("not a valid regular expression: {error}"),
                        )),
                    }
                }
                Matcher::Matches(regexes)
            }
            Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
                expect_count(problems, Some(1));
                let number = values.first().and_then(Value::as_f64);
                if values.len() == 1 && number.is_none() {
                    problems.push(Problem::new(
                        format!("{values_path}[0]"),
                        format!(
                            "`{}` compares numbers; this is not a number",
                            operator_name(op)
                        ),
                    ));
                }
                Matcher::Number(ordering_of(op), number.unwrap_or(f64::NAN))
            }
            Operator::SemverLt
            | Operator::SemverLte
            | Operator::SemverGt
            | Operator::SemverGte
            | Operator::SemverEq => {
                expect_count(problems, Some(1));
                let version = match values.first() {
                    Some(Value::String(text)) => match semver::Version::parse(text) {
                        Ok(version) => Some(version),
                        Err(error) => {
                            problems.push(Problem::new(
                                format!("{values_path}[0]"),
                                format!("`{text}` is not a semantic version (MAJOR.MINOR.PATCH): {error}"),
                            ));
                            None
                        }
                    },
                    Some(_) => {
                        problems.push(Problem::new(
                            format!("{values_path}[0]"),
                            "a version is written as a string, such as \"2.4.0\"",
                        ));
                        None
                    }
                    None => None,
                };
                Matcher::Semver(
                    ordering_of(op),
                    version.unwrap_or_else(|| semver::Version::new(0, 0, 0)),
                )
            }
            Operator::Before | Operator::After => {
                expect_count(problems, Some(1));
                let time = match values.first() {
                    Some(value) => {
                        let parsed = time_of(value);
                        if parsed.is_none() {
                            problems.push(Problem::new(
                                format!("{values_path}[0]"),
                                "not an RFC 3339 time, such as \"2026-12-01T09:00:00Z\"",
                            ));
                        }
                        parsed
                    }
                    None => None,
                };
                Matcher::Time(ordering_of(op), time.unwrap_or_default())
            }
            Operator::Exists | Operator::NotExists => {
                expect_count(problems, Some(0));
                if op == Operator::Exists {
                    Matcher::Exists
                } else {
                    Matcher::NotExists
                }
            }
        };
        (problems.len() == before).then(|| CompiledCondition {
            attribute: crate::context::AttributeName::new(condition.attribute.as_str()),
            matcher,
        })
    }

    /// Whether the context satisfies the condition. A condition on a missing attribute is
    /// false, whatever its operator — except `not_exists`, whose point is the absence.
    pub(crate) fn holds(&self, context: &crate::Context) -> bool {
        let Some(value) = context.attribute(&self.attribute) else {
            return matches!(self.matcher, Matcher::NotExists);
        };
        match (&self.matcher, value) {
            (Matcher::Exists, _) => !value.is_null(),
            (Matcher::NotExists, _) => value.is_null(),
            // A list-valued attribute (`groups: [beta, staff]`) is none of its elements'
            // values: it is out of the set only when every element is.
            (Matcher::NotEqual(set), Value::Array(elements)) => {
                !elements.is_empty()
                    && elements
                        .iter()
                        .all(|element| is_scalar(element) && !set.contains(element))
            }
            // Otherwise a list-valued attribute satisfies a condition when one element does.
            (_, Value::Array(elements)) => elements.iter().any(|element| self.holds_for(element)),
            _ => self.holds_for(value),
        }
    }

    /// Whether one (non-list) value satisfies the condition.
    fn holds_for(&self, value: &Value) -> bool {
        match &self.matcher {
            Matcher::Equal(set) => set.contains(value),
            Matcher::NotEqual(set) => is_scalar(value) && !set.contains(value),
            Matcher::StartsWith(prefixes) => value.as_str().is_some_and(|text| {
                let text = text.as_bytes();
                prefixes.iter().any(|prefix| {
                    text.len() >= prefix.len()
                        && same_bytes(&text[..prefix.len()], prefix.as_bytes())
                })
            }),
            Matcher::EndsWith(suffixes) => value.as_str().is_some_and(|text| {
                let text = text.as_bytes();
                suffixes.iter().any(|suffix| {
                    text.len() >= suffix.len()
                        && same_bytes(&text[text.len() - suffix.len()..], suffix.as_bytes())
                })
            }),
            Matcher::Contains(parts) => value
                .as_str()
                .is_some_and(|text| parts.iter().any(|part| text.contains(&**part))),
            Matcher::Matches(regexes) => value
                .as_str()
                .is_some_and(|text| regexes.iter().any(|regex| regex.is_match(text))),
            Matcher::Number(ordering, bound) => value
                .as_f64()
                .and_then(|number| number.partial_cmp(bound))
                .is_some_and(|found| ordering.holds(found)),
            // An app reporting "2.4.0+build.7" is on 2.4.0: SemVer precedence ignores build
            // metadata, which `Ord` on `semver::Version` compares.
            Matcher::Semver(ordering, bound) => value
                .as_str()
                .and_then(|text| compare_version(text, bound))
                .is_some_and(|found| ordering.holds(found)),
            Matcher::Time(ordering, bound) => {
                time_of(value).is_some_and(|time| ordering.holds(time.cmp(bound)))
            }
            Matcher::Exists => !value.is_null(),
            Matcher::NotExists => value.is_null(),
        }
    }
}

/// Compares a version from a context with a bound by SemVer precedence, or `None` when
/// the text is not a version. Apps mostly send plain `MAJOR.MINOR.PATCH`, which is read here
/// without a full parse: that parse would be the dearest step of a whole evaluation.
fn compare_version(text: &str, bound: &semver::Version) -> Option<std::cmp::Ordering> {
    if let Some(plain) = plain_version(text) {
        let ordering = plain.cmp(&(bound.major, bound.minor, bound.patch));
        // A release ranks above the pre-releases of the same version.
        return Some(if ordering.is_eq() && !bound.pre.is_empty() {
            std::cmp::Ordering::Greater
        } else {
            ordering
        });
    }
    semver::Version::parse(text)
        .ok()
        .map(|version| version.cmp_precedence(bound))
}

/// `MAJOR.MINOR.PATCH` with no pre-release or build part, as semver reads it (no leading
/// zeros), or `None` for anything else.
fn plain_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = [0u64; 3];
    let mut part = 0;
    let mut digits = 0;
    let mut leading_zero = false;
    for &byte in text.as_bytes() {
        match byte {
            b'0'..=b'9' => {
                if leading_zero {
                    return None;
                }
                leading_zero = digits == 0 && byte == b'0';
                digits += 1;
                parts[part] = parts[part]
                    .checked_mul(10)?
                    .checked_add(u64::from(byte - b'0'))?;
            }
            b'.' if digits > 0 && part < 2 => {
                part += 1;
                digits = 0;
                leading_zero = false;
            }
            _ => return None,
        }
    }
    (part == 2 && digits > 0).then_some((parts[0], parts[1], parts[2]))
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn ordering_of(op: Operator) -> Ordering {
    match op {
        Operator::Lt | Operator::SemverLt | Operator::Before => Ordering::Less,
        Operator::Lte | Operator::SemverLte => Ordering::LessOrEqual,
        Operator::Gt | Operator::SemverGt | Operator::After => Ordering::Greater,
        Operator::Gte | Operator::SemverGte => Ordering::GreaterOrEqual,
        _ => Ordering::Equal,
    }
}

/// A time as nanoseconds since the Unix epoch: an RFC 3339 string, or a number of seconds
/// since the epoch (what many apps keep).
fn time_of(value: &Value) -> Option<i128> {
    match value {
        Value::String(text) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|time| time.unix_timestamp_nanos())
        }
        Value::Number(number) => {
            let seconds = number.as_f64()?;
            seconds.is_finite().then_some((seconds * 1e9) as i128)
        }
        _ => None,
    }
}

pub(crate) fn operator_name(op: Operator) -> &'static str {
    match op {
        Operator::Eq => "eq",
        Operator::Neq => "neq",
        Operator::In => "in",
        Operator::NotIn => "not_in",
        Operator::StartsWith => "starts_with",
        Operator::EndsWith => "ends_with",
        Operator::Contains => "contains",
        Operator::Matches => "matches",
        Operator::Lt => "lt",
        Operator::Lte => "lte",
        Operator::Gt => "gt",
        Operator::Gte => "gte",
        Operator::SemverLt => "semver_lt",
        Operator::SemverLte => "semver_lte",
        Operator::SemverGt => "semver_gt",
        Operator::SemverGte => "semver_gte",
        Operator::SemverEq => "semver_eq",
        Operator::Before => "before",
        Operator::After => "after",
        Operator::Exists => "exists",
        Operator::NotExists => "not_exists",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_version_shortcut_agrees_with_a_full_parse() {
        let versions = [
            "0.0.0",
            "1.2.3",
            "2.4.0",
            "2.4.1",
            "2.10.0",
            "10.0.0",
            "2.4.0-rc.1",
            "2.4.0+build.7",
            "02.4.0",
            "2.4",
            "2.4.0.1",
            "2.4.x",
            "",
            "18446744073709551615.0.0",
        ];
        let bounds = ["2.4.0", "2.4.0-rc.1", "2.4.0-beta", "0.0.1", "10.0.0-alpha"];
        for bound in bounds {
            let bound = semver::Version::parse(bound).unwrap();
            for version in versions {
                let full = semver::Version::parse(version)
                    .ok()
                    .map(|parsed| parsed.cmp_precedence(&bound));
                assert_eq!(
                    compare_version(version, &bound),
                    full,
                    "{version} against {bound}"
                );
            }
        }
    }
}
