//! What admin handlers read from a request: bodies, query strings, and flags and segments
//! sent on their own; and the change a handler makes.

use std::fmt::Display;

use actix_web::{web, HttpRequest};
use ripcord_engine::{DocumentError, Problem};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::service::Change;

pub fn change<'a>(
    environment: &'a str,
    actor: &'a Principal,
    operation: &'static str,
) -> Change<'a> {
    Change {
        environment,
        actor,
        operation,
        reason: None,
    }
}

/// Query strings go through our error shape, not actix's.
pub fn parse_query<T: DeserializeOwned>(request: &HttpRequest) -> Result<T> {
    web::Query::<T>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| {
            Error::bad_request(format!("the query string is not valid: {error}"), None)
        })
}

/// Parses a flag or segment sent on its own. Its problems are reported at their path in the
/// environment's document (`flags.<key>.rollout`), the path an import or a validation of the
/// same flag would name.
pub fn parse_item<T: DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let item = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| item_problem(prefix, &error.path().to_string(), error.inner()))?;
    deserializer
        .end()
        .map_err(|error| item_problem(prefix, ".", &error))?;
    Ok(item)
}

/// [`parse_item`] for a flag or segment nested in a request body.
pub fn parse_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| item_problem(prefix, &error.path().to_string(), error.inner()))
}

fn item_problem(prefix: &str, path: &str, error: &impl Display) -> Error {
    // serde_path_to_error writes "." for the root, `[0]` for sequence indexes, and "?" for
    // where a syntax error cut the input short: that place has no name worth reporting.
    let path = path.strip_suffix(".?").unwrap_or(path);
    let path = match path {
        "?" | "." | "" => prefix.to_string(),
        index if index.starts_with('[') => format!("{prefix}{index}"),
        path => format!("{prefix}.{path}"),
    };
    Error::Invalid(DocumentError::Parse(Problem::new(path, error.to_string())))
}

#[cfg(test)]
mod tests {
    use ripcord_engine::{Flag, Segment};

    use super::*;

    fn path_of(error: Error) -> String {
        error
            .problems()
            .first()
            .map(|problem| problem.path.clone())
            .unwrap_or_default()
    }

    #[test]
    fn problems_in_a_lone_flag_are_reported_at_their_document_path() {
        let error = parse_item::<Flag>(
            br#"{"type":"boolean","variants":{},"default_variant":"on","colour":1}"#,
            "flags.f",
        )
        .unwrap_err();
        assert_eq!(path_of(error), "flags.f.colour");
        let error = parse_item::<Flag>(b"[]", "flags.f").unwrap_err();
        assert_eq!(path_of(error), "flags.f");
        let error = parse_item::<Flag>(br#"{"type":"boolean","#, "flags.f").unwrap_err();
        assert_eq!(path_of(error), "flags.f");
        let error = parse_value::<Segment>(
            serde_json::json!({"when": [{"attribute": "a", "op": "nope"}]}),
            "segments.s",
        )
        .unwrap_err();
        assert_eq!(path_of(error), "segments.s.when[0].op");
    }
}
