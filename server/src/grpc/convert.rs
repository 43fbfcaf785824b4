//! `google.protobuf.Struct` and `Value` to and from JSON, for contexts, object values and
//! metadata.

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

/// Integers up to this magnitude are exact in a double.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

pub fn struct_to_json(fields: prost_types::Struct) -> Map<String, Value> {
    fields
        .fields
        .into_iter()
        .map(|(name, value)| (name, value_to_json(value)))
        .collect()
}

pub fn value_to_json(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(value)) => Value::Bool(value),
        Some(Kind::StringValue(value)) => Value::String(value),
        Some(Kind::NumberValue(number)) => number_to_json(number),
        Some(Kind::StructValue(fields)) => Value::Object(struct_to_json(fields)),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
    }
}

/// A `Struct` has only doubles. Whole numbers become JSON integers, as an OFREP client
/// would have written them, so that a condition such as `eq: 42` and the stickiness unit of
/// a numeric attribute see the same value whichever protocol carried it.
fn number_to_json(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() <= EXACT_INTEGER {
        // Exact: the magnitude check keeps the cast lossless.
        return Value::Number(Number::from(number as i64));
    }
    // Not finite: JSON has no such number, and no condition could hold for it.
    Number::from_f64(number).map_or(Value::Null, Value::Number)
}

pub fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(value) => Kind::BoolValue(*value),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(value) => Kind::StringValue(value.clone()),
        Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.iter().map(json_to_value).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(json_to_struct(fields)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_to_struct(fields: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .iter()
            .map(|(name, value)| (name.clone(), json_to_value(value)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(value: f64) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::NumberValue(value)),
        }
    }

    #[test]
    fn whole_numbers_read_as_integers_as_json_clients_write_them() {
        assert_eq!(value_to_json(number(42.0)), serde_json::json!(42));
        assert_eq!(value_to_json(number(-3.0)), serde_json::json!(-3));
        assert_eq!(value_to_json(number(2.5)), serde_json::json!(2.5));
        // Beyond 2^53 a double is not an exact integer: it stays a float.
        assert!(value_to_json(number(1e300)).is_f64());
        assert_eq!(value_to_json(number(f64::NAN)), Value::Null);
        assert_eq!(value_to_json(number(f64::INFINITY)), Value::Null);
    }
}
