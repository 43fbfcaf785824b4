//! The evaluation context as every protocol receives it: checked against the limits, then
//! built into the engine's `Context`. OFREP, gRPC and flagd's services all go through
//! [`Builder`], so a context is refused for the same reasons whichever way it came.

use std::fmt;

use ripcord_engine::Context;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// How many attributes a context is given room for before its first is read.
const TYPICAL_ATTRIBUTES: usize = 8;

/// Builds the context from its attributes, or says what is wrong with them.
pub fn build(
    attributes: Map<String, Value>,
    max_attributes: usize,
    max_name: usize,
) -> Result<Context, String> {
    let mut builder = Builder::new(max_attributes, max_name);
    for (name, value) in attributes {
        builder.add(name, value);
    }
    builder.finish()
}

/// A context built one attribute at a time, as its JSON is read, with the limits checked
/// as it grows: a context over the limits is refused without having been held whole.
pub struct Builder {
    context: Context,
    max_attributes: usize,
    max_name: usize,
    /// Attributes seen past the limit, counted but not kept.
    over: usize,
    /// The first name over the length limit.
    long_name: Option<String>,
}

impl Builder {
    pub fn new(max_attributes: usize, max_name: usize) -> Builder {
        Builder {
            // Room for a typical context (a targeting key and a few attributes), so that
            // reading one does not regrow the table as it fills.
            context: Context::with_capacity(max_attributes.min(TYPICAL_ATTRIBUTES)),
            max_attributes,
            max_name,
            over: 0,
            long_name: None,
        }
    }

    /// Whether `name` may go into the context; one more attribute than the limit allows is
    /// counted instead. A name seen before replaces its value, as in a JSON object, and is
    /// not one more. Checked before the name goes into the `Context`, whose hasher is
    /// unkeyed: filling it with thousands of names a caller chose to collide is the flood
    /// the limit prevents.
    fn admits(&mut self, name: &str) -> bool {
        let over = self.over > 0
            || (self.context.len() >= self.max_attributes && self.context.get(name).is_none());
        if over {
            self.over += 1;
        } else {
            self.check_name(name);
        }
        !over
    }

    pub fn add(&mut self, name: impl Into<Box<str>> + AsRef<str>, value: Value) {
        if self.admits(name.as_ref()) {
            self.context.insert(name, value);
        }
    }

    fn check_name(&mut self, name: &str) {
        if self.long_name.is_none() && name.chars().count() > self.max_name {
            self.long_name = Some(name.chars().take(32).collect());
        }
    }

    pub fn finish(self) -> Result<Context, String> {
        if self.over > 0 {
            return Err(format!(
                "the context has {} attributes, over the limit of {} (RIPCORD_MAX_CONTEXT_ATTRIBUTES)",
                self.context.len() + self.over,
                self.max_attributes
            ));
        }
        if let Some(name) = self.long_name {
            return Err(format!(
                "the attribute name `{name}…` is over the limit of {} characters (RIPCORD_MAX_KEY_LENGTH)",
                self.max_name
            ));
        }
        // `null` is a missing attribute, as it is to every condition and to a rollout's
        // unit: OpenFeature's flagd provider sends `"targetingKey": null` when the app has
        // none.
        if self
            .context
            .get("targetingKey")
            .is_some_and(|targeting_key| !targeting_key.is_string() && !targeting_key.is_null())
        {
            return Err("`targetingKey` must be a string".to_string());
        }
        Ok(self.context)
    }
}

/// What a JSON `context` field held, read straight into a [`Builder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// An object, whose attributes are in the builder.
    Object,
    /// `null`: no attributes.
    Null,
    /// Anything else, read and set aside.
    NotAnObject,
}

/// Reads a JSON `context` value into the builder: an object attribute by attribute, with
/// no map of its own in between.
pub struct Attributes<'b>(pub &'b mut Builder);

impl<'de> DeserializeSeed<'de> for Attributes<'_> {
    type Value = Read;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Read, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Attributes<'_> {
    type Value = Read;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object of attributes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        while let Some(Name(name)) = map.next_key::<Name>()? {
            // An attribute past the limit is read over, not kept.
            if self.0.admits(&name) {
                let value = map.next_value::<Value>()?;
                self.0.context.insert(name, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Read::Object)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Read, E> {
        Ok(Read::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Read, E> {
        Ok(Read::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Read, E> {
        Ok(Read::NotAnObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Read, E> {
        Ok(Read::NotAnObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Read, E> {
        Ok(Read::NotAnObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Read, E> {
        Ok(Read::NotAnObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Read, E> {
        Ok(Read::NotAnObject)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Read::NotAnObject)
    }
}

/// Reads an evaluation request, `{"context": {...}}`, with its context going straight into
/// `builder`; other fields are passed over, as OFREP lets providers send more. What the
/// `context` field held is told apart for the caller to word its refusal; JSON that does
/// not read is serde_json's error.
pub fn read_request(body: &[u8], builder: &mut Builder) -> Result<Read, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = Request(builder).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(read)
}

struct Request<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for Request<'_> {
    type Value = Read;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Read, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Request<'_> {
    type Value = Read;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(r#"an object such as {"context": {"targetingKey": "user-1"}}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        let mut read = None;
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if field != "context" {
                map.next_value::<IgnoredAny>()?;
            } else if read.is_some() {
                return Err(de::Error::duplicate_field("context"));
            } else {
                read = Some(map.next_value_seed(Attributes(&mut *self.0))?);
            }
        }
        Ok(read.unwrap_or(Read::Null))
    }
}

/// An attribute name, read once into the box the context keeps.
struct Name(Box<str>);

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an attribute name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                Ok(Name(name.into()))
            }

            fn visit_string<E: de::Error>(self, name: String) -> Result<Name, E> {
                Ok(Name(name.into_boxed_str()))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(json: &str, max_attributes: usize, max_name: usize) -> (Read, Result<Context, String>) {
        let mut builder = Builder::new(max_attributes, max_name);
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let read = Attributes(&mut builder)
            .deserialize(&mut deserializer)
            .expect("valid JSON");
        (read, builder.finish())
    }

    #[test]
    fn objects_read_as_a_map_would_build() {
        for text in [
            r#"{}"#,
            r#"{"targetingKey":"u-1","country":"CA","age":41,"beta":true,"groups":["a","b"],"nested":{"x":[1,null]},"gone":null}"#,
            r#"{"a":1,"a":2,"b\u00e9\n":"escaped \"name\""}"#,
        ] {
            let (read, built) = read(text, 100, 100);
            assert_eq!(read, Read::Object);
            let attributes: Map<String, Value> = serde_json::from_str(text).expect("an object");
            assert_eq!(built, build(attributes, 100, 100), "{text}");
        }
    }

    #[test]
    fn null_and_other_values_are_told_apart() {
        assert_eq!(read("null", 1, 1).0, Read::Null);
        for text in ["1", "-1", "1.5", "true", r#""text""#, "[1,[2],{}]"] {
            assert_eq!(read(text, 1, 1).0, Read::NotAnObject, "{text}");
        }
    }

    #[test]
    fn limits_refuse_as_building_from_a_map_refuses() {
        let many = (0..5).map(|index| (format!("a{index}"), json!(index)));
        let text = serde_json::to_string(&many.clone().collect::<Map<_, _>>()).expect("json");
        let expected =
            "the context has 5 attributes, over the limit of 3 (RIPCORD_MAX_CONTEXT_ATTRIBUTES)";
        assert_eq!(read(&text, 3, 100).1, Err(expected.to_string()));
        assert_eq!(build(many.collect(), 3, 100), Err(expected.to_string()));
        // A name given twice is one attribute.
        assert!(read(r#"{"a":1,"b":2,"a":3}"#, 2, 100).1.is_ok());

        let long = r#"{"short":1,"a-name-longer-than-ten":2}"#;
        let expected = "the attribute name `a-name-longer-than-ten…` is over the limit of 10 characters (RIPCORD_MAX_KEY_LENGTH)";
        assert_eq!(read(long, 10, 10).1, Err(expected.to_string()));

        assert_eq!(
            read(r#"{"targetingKey":7}"#, 10, 20).1,
            Err("`targetingKey` must be a string".to_string())
        );
        assert!(read(r#"{"targetingKey":null}"#, 10, 20).1.is_ok());
    }
}
