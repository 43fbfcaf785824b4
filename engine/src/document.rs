//! The flag document (docs/flags.md): the types people write in YAML or JSON.
//!
//! Optional fields stay `Option` rather than taking their default at parse time, so that a
//! document exported after an import is the document that was imported, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DocumentError, Problem};

/// Refuses a text nested deeper than [`MAX_NESTING`], before any parser reads it.
pub fn check_nesting(text: &str) -> Result<(), DocumentError> {
    crate::nesting::check(text, MAX_NESTING).map_err(|line| {
        DocumentError::Parse(Problem::new(
            "",
            format!(
                "line {line}: the document nests deeper than {MAX_NESTING} levels, the most \
                 Ripcord reads"
            ),
        ))
    })
}

/// The whole document of one environment: its segments and its flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub segments: BTreeMap<String, Segment>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub flags: BTreeMap<String, Flag>,
}

/// A named set of conditions that rules refer to, such as a release track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every condition must hold for a context to be in the segment.
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    #[serde(deserialize_with = "unique_keys")]
    pub variants: BTreeMap<String, Value>,
    pub default_variant: String,
    /// The kill switch: `false` serves `default_variant` to everyone. Absent means `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Whether client keys (shipped inside apps) may evaluate the flag. Absent means `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_visible: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

impl Flag {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    pub fn is_client_visible(&self) -> bool {
        self.client_visible.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Integer => "integer",
            FlagType::Float => "float",
            FlagType::Object => "object",
        }
    }

    /// Whether `value` is a value of this type. Integers are accepted as floats, as JSON
    /// does not tell `1` from `1.0`.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Integer => value.is_i64() || value.is_u64(),
            FlagType::Float => value.is_number(),
            FlagType::Object => value.is_object(),
        }
    }
}

/// A targeting rule: when its conditions (and its segment, if named) hold, it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub serve: Serve,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    pub variant: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub attribute: String,
    pub op: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Eq,
    Neq,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    SemverEq,
    Before,
    After,
    Exists,
    NotExists,
}

/// Everyone who matched no rule: a percentage of units, split between variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// The context attribute that names the unit: the dimension the application caches on.
    /// Absent means `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    pub percentage: f64,
    pub split: Vec<SplitEntry>,
    /// Absent means the flag key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

pub const DEFAULT_STICKINESS: &str = "targetingKey";

impl Rollout {
    pub fn stickiness(&self) -> &str {
        self.stickiness.as_deref().unwrap_or(DEFAULT_STICKINESS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub variant: String,
    pub weight: u32,
}

/// A gradual rollout guarded by metrics. The controller that walks it is not part of the
/// document; the document only says how it should walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub stages: Vec<f64>,
    /// Durations are written as a number and a unit: `30s`, `10m`, `24h`.
    pub min_stage_duration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stage_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_regression: Option<OnRegression>,
    /// Which units the treatment is compared with; [`Control::Rest`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// What a sample-ratio mismatch does; [`OnSrm::Pause`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_srm: Option<OnSrm>,
    /// How long a running stage may go without an observation before the ramp raises an
    /// alert; 30m when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silence: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
}

impl Ramp {
    pub fn control(&self) -> Control {
        self.control.unwrap_or(Control::Rest)
    }

    pub fn on_srm(&self) -> OnSrm {
        self.on_srm.unwrap_or(OnSrm::Pause)
    }
}

/// The control cohort of a ramp (docs/bucketing.md, "Cohorts").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// Every unit of the rollout population outside the treatment.
    Rest,
    /// As many units as the treatment.
    Equal,
    /// This many times the treatment's units, at most every unit outside it.
    Times(f64),
}

impl Control {
    /// The bands this control takes. Validation refuses a multiple that is not positive or
    /// has more than three decimals; anything else is clamped here.
    pub fn band(self) -> crate::bucketing::ControlBand {
        use crate::bucketing::ControlBand;
        match self {
            Control::Rest => ControlBand::Rest,
            Control::Equal => ControlBand::EQUAL,
            Control::Times(times) => ControlBand::Times {
                thousandths: (times * 1000.0).round().clamp(1.0, f64::from(u32::MAX)) as u32,
            },
        }
    }
}

impl Serialize for Control {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Control::Rest => serializer.serialize_str("rest"),
            Control::Equal => serializer.serialize_str("equal"),
            Control::Times(times) => serializer.serialize_f64(*times),
        }
    }
}

impl<'de> Deserialize<'de> for Control {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Control, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Control;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("`rest`, `equal` or a number such as 2")
            }

            fn visit_f64<E>(self, value: f64) -> Result<Control, E> {
                Ok(Control::Times(value))
            }

            fn visit_i64<E>(self, value: i64) -> Result<Control, E> {
                Ok(Control::Times(value as f64))
            }

            fn visit_u64<E>(self, value: u64) -> Result<Control, E> {
                Ok(Control::Times(value as f64))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Control, E> {
                match value {
                    "rest" => Ok(Control::Rest),
                    "equal" => Ok(Control::Equal),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What a ramp does when its cohorts report in a ratio their bands cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSrm {
    /// Hold the percentage for a person to look (the default).
    Pause,
    /// Turn the flag off and record an incident, as a regression does.
    Kill,
    /// Say so in the status, the audit log and a webhook, and go on judging.
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRegression {
    Kill,
    Pause,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub metric: String,
    pub category: MetricCategory,
    pub kind: MetricKind,
    pub better: Better,
    pub tolerance: Tolerance,
    pub min_samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricCategory {
    Stability,
    Performance,
    Business,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Rate,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// How much worse the treatment may be: an absolute amount (`0.002`) or a share of the
/// control's level written with a percent sign (`"5%"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Tolerance {
    Absolute(f64),
    Relative(String),
}

impl Tolerance {
    /// Reads a tolerance given as bare text (a command-line option) as a document reads the
    /// same scalar: a number is an amount, anything else stays text for
    /// [`crate::stats::Tolerance::parse`] to accept as a percentage or refuse.
    pub fn from_text(text: &str) -> Tolerance {
        let text = text.trim();
        match text.parse::<f64>() {
            Ok(amount) => Tolerance::Absolute(amount),
            Err(_) => Tolerance::Relative(text.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Tolerance {
    // By hand rather than `untagged`, whose error ("data did not match any variant") would
    // not tell a person what to write.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Tolerance, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Tolerance;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a number such as 0.002 or a percentage such as \"5%\"")
            }

            fn visit_f64<E>(self, value: f64) -> Result<Tolerance, E> {
                Ok(Tolerance::Absolute(value))
            }

            fn visit_i64<E>(self, value: i64) -> Result<Tolerance, E> {
                Ok(Tolerance::Absolute(value as f64))
            }

            fn visit_u64<E>(self, value: u64) -> Result<Tolerance, E> {
                Ok(Tolerance::Absolute(value as f64))
            }

            fn visit_str<E>(self, value: &str) -> Result<Tolerance, E> {
                Ok(Tolerance::Relative(value.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How deeply a document may nest, counting every bracket and every level of indentation.
/// Checked on the text before a parser sees it: the YAML parser's work grows with the square
/// of the nesting depth, so a small upload nested a hundred thousand levels deep would hold a
/// thread for many seconds before the parser's own limits refused it. A real document nests
/// about six levels, plus whatever its object variants hold.
pub const MAX_NESTING: usize = 400;

/// Reads a map, refusing a key it has read already. Serde's maps keep the last value of a
/// repeated key, which in a document silently drops a whole flag or segment that somebody
/// wrote.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a map of keys to values")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if entries.contains_key(&key) {
                    // Refused while reading the repeated key's value, so that the error's
                    // path ends in the key, as every other problem's does.
                    return map.next_value_seed(Repeated(key, std::marker::PhantomData));
                }
                let value = map.next_value()?;
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    struct Repeated<V>(String, std::marker::PhantomData<V>);

    impl<'de, V> serde::de::DeserializeSeed<'de> for Repeated<V> {
        type Value = BTreeMap<String, V>;

        fn deserialize<D: serde::Deserializer<'de>>(self, _: D) -> Result<Self::Value, D::Error> {
            Err(serde::de::Error::custom(format!(
                "`{}` appears twice: each key may appear once",
                self.0
            )))
        }
    }

    deserializer.deserialize_map(Visitor(std::marker::PhantomData))
}

impl Document {
    /// Parses a document from JSON. Structural problems (a wrong type, an unknown field)
    /// come back with the path where they were found; call [`crate::validate`] for the rest.
    pub fn from_json(text: &str) -> Result<Document, DocumentError> {
        check_nesting(text)?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let document = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| parse_problem(error.path().to_string(), error.inner().to_string()))?;
        deserializer
            .end()
            .map_err(|error| parse_problem(String::new(), error.to_string()))?;
        Ok(document)
    }

    /// Parses a document from YAML (a superset of JSON).
    pub fn from_yaml(text: &str) -> Result<Document, DocumentError> {
        check_nesting(text)?;
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let message = error.inner().to_string();
            // serde_yaml_ng starts its messages with the path of the enclosing value, which
            // the problem carries already.
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && path.starts_with(prefix) => {
                    rest.to_string()
                }
                _ => message,
            };
            parse_problem(path, message)
        })
    }

    /// Parses a document in either format, when nothing says which: JSON if it opens with
    /// `{` (YAML would read it too, but JSON's errors are clearer about JSON), YAML otherwise.
    pub fn from_text(text: &str) -> Result<Document, DocumentError> {
        if text.trim_start().starts_with('{') {
            Document::from_json(text)
        } else {
            Document::from_yaml(text)
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a document always serializes to JSON")
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a document always serializes to YAML")
    }
}

fn parse_problem(path: String, message: String) -> DocumentError {
    // serde_path_to_error writes "." for the root and "?" where it lost track (a document
    // cut short, say): neither is a path a person can follow.
    let path = path.trim_end_matches(".?");
    let path = if path == "." || path == "?" {
        String::new()
    } else {
        path.to_string()
    };
    DocumentError::Parse(Problem { path, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_cut_short_is_reported_where_it_stops() {
        let error = Document::from_json(r#"{"flags": {"x": {"type": "boolean""#).unwrap_err();
        let problem = &error.problems()[0];
        assert_eq!(problem.path, "flags.x", "{problem}");
        assert!(problem.message.contains("EOF"), "{problem}");
    }

    #[test]
    fn a_key_given_twice_is_refused_at_its_path_in_either_format() {
        let flag = r#"{"type": "boolean", "variants": {"on": true}, "default_variant": "on"}"#;
        let segment = r#"{"when": []}"#;
        let cases = [
            (
                format!(r#"{{"flags": {{"a": {flag}, "b": {flag}, "a": {flag}}}}}"#),
                "flags.a",
            ),
            (
                format!(r#"{{"segments": {{"s": {segment}, "s": {segment}}}}}"#),
                "segments.s",
            ),
            (
                r#"{"flags": {"a": {"type": "boolean", "variants": {"on": true, "on": false}, "default_variant": "on"}}}"#.to_string(),
                "flags.a.variants.on",
            ),
        ];
        for (json, path) in cases {
            for (format, parsed) in [
                ("JSON", Document::from_json(&json)),
                ("YAML", Document::from_yaml(&json)),
            ] {
                let error = parsed.expect_err(&format!("{format} {json}"));
                let problem = &error.problems()[0];
                assert_eq!(problem.path, path, "{format}: {problem}");
                assert!(problem.message.contains("appears twice"), "{problem}");
            }
        }
        let yaml = "flags:\n  a:\n    type: boolean\n    variants: {on: true}\n    default_variant: on\n  a:\n    type: boolean\n    variants: {on: true}\n    default_variant: on\n";
        let error = Document::from_yaml(yaml).unwrap_err();
        assert_eq!(error.problems()[0].path, "flags.a", "{error}");
    }

    #[test]
    fn a_document_nested_past_the_limit_is_refused_quickly_naming_the_limit() {
        let depth = 100_000;
        let yaml = format!("flags: {}{}", "[".repeat(depth), "]".repeat(depth));
        let json = format!(r#"{{"flags": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        let started = std::time::Instant::now();
        for parsed in [Document::from_yaml(&yaml), Document::from_json(&json)] {
            let error = parsed.unwrap_err();
            let message = &error.problems()[0].message;
            assert!(message.contains("400 levels"), "{message}");
            assert!(message.starts_with("line 1:"), "{message}");
        }
        // Unchecked, the YAML parser takes tens of seconds on this text.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Block nesting counts as much as brackets do.
        let yaml = format!("flags:\n  x:\n    {}1\n", "- ".repeat(depth));
        let error = Document::from_yaml(&yaml).unwrap_err();
        let message = &error.problems()[0].message;
        assert!(message.starts_with("line 3:"), "{message}");
    }

    #[test]
    fn a_document_nested_within_the_limit_reads_as_before() {
        let value = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let json = format!(
            r#"{{"flags": {{"a": {{"type": "object", "variants": {{"v": {{"x": {value}}}}}, "default_variant": "v"}}}}}}"#
        );
        let from_json = Document::from_json(&json).unwrap();
        assert_eq!(Document::from_yaml(&json).unwrap(), from_json);
        assert_eq!(
            Document::from_yaml(&from_json.to_yaml()).unwrap(),
            from_json
        );
    }

    #[test]
    fn a_tolerance_given_as_text_reads_as_the_same_scalar_in_a_document() {
        assert_eq!(Tolerance::from_text("5%"), Tolerance::Relative("5%".into()));
        assert_eq!(Tolerance::from_text(" 0.5 "), Tolerance::Absolute(0.5));
        assert_eq!(
            Tolerance::from_text("five"),
            Tolerance::Relative("five".into())
        );
        let from_yaml: Tolerance = serde_yaml_ng::from_str("0.5").unwrap();
        assert_eq!(Tolerance::from_text("0.5"), from_yaml);
    }
}
