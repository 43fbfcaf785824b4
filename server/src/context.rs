//! The evaluation context as every protocol receives it: checked against the limits, then
//! built into the engine's `Context`. OFREP, gRPC and flagd's services all call this, so a
//! context is refused for the same reasons whichever way it came.

use ripcord_engine::Context;
use serde_json::{Map, Value};

/// Builds the context from its attributes, or says what is wrong with them.
pub fn build(
    attributes: Map<String, Value>,
    max_attributes: usize,
    max_name: usize,
) -> Result<Context, String> {
    // Checked before the names go into the `Context`, whose hasher is unkeyed: filling it
    // with thousands of names a caller chose to collide is the flood the limits prevent.
    if attributes.len() > max_attributes {
        return Err(format!(
            "the context has {} attributes, over the limit of {max_attributes} (RIPCORD_MAX_CONTEXT_ATTRIBUTES)",
            attributes.len()
        ));
    }
    if let Some(name) = attributes
        .keys()
        .find(|name| name.chars().count() > max_name)
    {
        return Err(format!(
            "the attribute name `{}…` is over the limit of {max_name} characters (RIPCORD_MAX_KEY_LENGTH)",
            name.chars().take(32).collect::<String>()
        ));
    }
    let context: Context = attributes.into_iter().collect();
    // `null` is a missing attribute, as it is to every condition and to a rollout's unit:
    // OpenFeature's flagd provider sends `"targetingKey": null` when the app has none.
    if context
        .get("targetingKey")
        .is_some_and(|targeting_key| !targeting_key.is_string() && !targeting_key.is_null())
    {
        return Err("`targetingKey` must be a string".to_string());
    }
    Ok(context)
}
