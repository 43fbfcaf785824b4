//! Keys in gRPC metadata: `authorization: Bearer <key>`, the scheme in any case.

use std::sync::Arc;

use tonic::metadata::MetadataMap;

use super::status::{Refusal, Result};
use crate::access::{self, Action};
use crate::principal::Principal;
use crate::service::Service;

/// The key the call carries, if it carries one. A malformed header counts as a wrong key,
/// not as none: anonymous access must not be reached by sending garbage.
pub fn token(metadata: &MetadataMap) -> Result<Option<String>> {
    let headers: &http::HeaderMap = metadata.as_ref();
    token_of(headers.get(http::header::AUTHORIZATION))
}

/// The key in an `authorization` header's value, read as [`token`] reads it.
pub fn token_of(value: Option<&http::HeaderValue>) -> Result<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let malformed = || {
        Refusal::Unauthenticated("the `authorization` metadata must be `Bearer <key>`".to_string())
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Some(token.to_string()))
}

pub fn unknown_key() -> Refusal {
    Refusal::Unauthenticated("the key is unknown or revoked".to_string())
}

/// The principal of a key that evaluates flags: a client or server key, with its environment.
pub fn evaluating(service: &Service, token: &str) -> Result<(Arc<Principal>, String)> {
    let principal = service.authenticate(token).ok_or_else(unknown_key)?;
    let environment = access::environment(&principal, Action::Evaluate)?.to_string();
    Ok((principal, environment))
}

/// The call's key, which must be there.
pub fn required(metadata: &MetadataMap) -> Result<String> {
    token(metadata)?.ok_or_else(missing_key)
}

pub fn missing_key() -> Refusal {
    Refusal::Unauthenticated(
        "no key: send `authorization: Bearer <key>` in the call's metadata".to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().expect("ASCII"));
        metadata
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_anything_else_is_refused() {
        assert_eq!(token(&MetadataMap::new()).ok(), Some(None));
        assert_eq!(
            token(&with("Bearer abc")).ok(),
            Some(Some("abc".to_string()))
        );
        assert_eq!(
            token(&with("bEaReR  abc ")).ok(),
            Some(Some("abc".to_string()))
        );
        for malformed in ["abc", "Basic abc", "Bearer ", "Bearer"] {
            assert!(
                matches!(token(&with(malformed)), Err(Refusal::Unauthenticated(_))),
                "{malformed}"
            );
        }
    }
}
