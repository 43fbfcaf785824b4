//! What handlers read from any request: its key, its body, its `If-None-Match`.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use actix_web::HttpRequest;
use futures_util::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;

use super::state::State;
use crate::error::{Error, Result};
use crate::principal::Principal;

/// The key a request carries, as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn principal(request: &HttpRequest, state: &State) -> Result<Arc<Principal>> {
    let token = api_key(request)?;
    state.service.authenticate(token).ok_or(Error::Unauthorized(
        "the API key is not valid: unknown or revoked",
    ))
}

/// The token a request carries, not yet checked.
pub fn api_key(request: &HttpRequest) -> Result<&str> {
    let headers = request.headers();
    headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(Error::Unauthorized(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))
}

/// Whether `If-None-Match` names `etag` (weakly compared, as RFC 9110 asks for this header)
/// or is `*`.
pub fn if_none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case, as RFC 9110 has it: clients and proxies do send `bearer` and `BEARER`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The request's key, which must be an admin key.
pub fn require_admin(request: &HttpRequest, state: &State) -> Result<Arc<Principal>> {
    let principal = principal(request, state)?;
    crate::access::check(&principal, crate::access::Action::Administer)?;
    Ok(principal)
}

/// Reads a request body within `RIPCORD_MAX_BODY_BYTES`, the limit of every body that has
/// no larger one of its own.
pub async fn read_body(state: &State, payload: web::Payload) -> Result<Bytes> {
    read_body_up_to(payload, state.max_body_bytes, "RIPCORD_MAX_BODY_BYTES").await
}

/// Reads a request body of at most `limit` bytes; a larger one is refused with an error
/// that names the limit, before it is read whole.
pub async fn read_body_up_to(
    mut payload: web::Payload,
    limit: usize,
    setting: &'static str,
) -> Result<Bytes> {
    let too_large = || Error::LimitExceeded {
        limit: setting,
        message: format!("the request body is over the limit of {limit} bytes ({setting})"),
    };
    // A body that arrives in one chunk, as an evaluation's small context does, is that
    // chunk: copied into a buffer of its own only once a second one follows.
    let mut first: Option<Bytes> = None;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| match error {
            PayloadError::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                Error::Timeout {
                    limit: BODY_TIMEOUT_SETTING,
                    message: format!("the request body did not arrive in time: {error}"),
                }
            }
            error => Error::bad_request(format!("reading the request body failed: {error}"), None),
        })?;
        let held = first.as_ref().map_or(0, Bytes::len) + body.len();
        if held + chunk.len() > limit {
            return Err(too_large());
        }
        if first.is_none() && body.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(first) = first.take() {
            body.reserve(first.len() + chunk.len());
            body.extend_from_slice(&first);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(match first {
        Some(only) => only,
        None => body.freeze(),
    })
}

const BODY_TIMEOUT_SETTING: &str = "RIPCORD_BODY_TIMEOUT";

/// The body of a request, which fails with `TimedOut` when it has not all arrived within
/// `timeout` of the handler starting to read it. Headers have their own timeout in actix;
/// without this, a client with a valid key could hold a connection and a worker's memory
/// for as long as it trickles a body. The time counts from the first read, not from the
/// headers: an import waiting its turn behind another has its body waiting in the socket,
/// sent in time, and must not be refused for the wait.
pub fn with_deadline(payload: Payload, timeout: Duration) -> Payload {
    let deadline: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Deadline {
        payload,
        sleep: None,
        timeout,
        expired: false,
    });
    Payload::from(deadline)
}

struct Deadline {
    payload: Payload,
    /// Started on the first read.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.payload.poll_next_unpin(cx) {
            return Poll::Ready(item);
        }
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let message = format!(
                "the body took longer than {:?} ({BODY_TIMEOUT_SETTING})",
                self.timeout
            );
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                message,
            )))));
        }
        Poll::Pending
    }
}

/// Parses a JSON body; a problem is reported with its path in the body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        Error::bad_request(
            format!("the request body is not valid: {}", error.inner()),
            (path != "." && path != "?").then_some(path),
        )
    })?;
    deserializer.end().map_err(|error| {
        Error::bad_request(format!("the request body is not valid: {error}"), None)
    })?;
    Ok(value)
}

/// The most characters a person's reason for a change may have: enough for a sentence and a
/// ticket link, and no more, since every audit entry and event carries it.
pub const MAX_REASON_CHARS: usize = 1000;

/// A person's reason as the audit log keeps it: trimmed, `None` when blank, refused when
/// over [`MAX_REASON_CHARS`].
pub fn reason(reason: Option<&str>) -> Result<Option<&str>> {
    let Some(reason) = reason.map(str::trim).filter(|reason| !reason.is_empty()) else {
        return Ok(None);
    };
    let length = reason.chars().count();
    if length > MAX_REASON_CHARS {
        return Err(Error::bad_request(
            format!("`reason` has {length} characters; at most {MAX_REASON_CHARS} are kept"),
            Some("reason".to_string()),
        ));
    }
    Ok(Some(reason))
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, read_body_up_to, reason, MAX_REASON_CHARS};
    use actix_web::dev::Payload;
    use actix_web::error::PayloadError;
    use actix_web::web::{self, Bytes};
    use actix_web::FromRequest as _;

    /// A request body that arrives in `chunks`.
    async fn payload(chunks: &[&'static str]) -> web::Payload {
        let chunks: Vec<Result<Bytes, PayloadError>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk.as_bytes())))
            .collect();
        let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>> =
            Box::pin(futures_util::stream::iter(chunks));
        let (request, _) = actix_web::test::TestRequest::default().to_http_parts();
        let mut payload = Payload::from(stream);
        web::Payload::from_request(&request, &mut payload)
            .await
            .expect("a payload is always extracted")
    }

    #[actix_web::test]
    async fn a_body_is_read_whole_in_one_chunk_or_several() {
        for chunks in [
            &[][..],
            &[""],
            &["{\"context\":{}}"],
            &["", "{\"context\"", ":{}}"],
            &["{\"con", "", "text\":", "{}}"],
        ] {
            let body = read_body_up_to(payload(chunks).await, 64, "LIMIT")
                .await
                .unwrap();
            assert_eq!(body, Bytes::from(chunks.concat()), "{chunks:?}");
        }
    }

    #[actix_web::test]
    async fn a_body_over_the_limit_is_refused_whether_it_came_in_one_chunk_or_several() {
        for chunks in [
            &["0123456789"][..],
            &["01234", "56789"],
            &["012345678", "9"],
        ] {
            let error = read_body_up_to(payload(chunks).await, 9, "LIMIT")
                .await
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("over the limit of 9 bytes (LIMIT)"),
                "{error}"
            );
        }
        let exactly = read_body_up_to(payload(&["01234", "5678"]).await, 9, "LIMIT").await;
        assert_eq!(exactly.unwrap(), Bytes::from_static(b"012345678"));
    }

    #[test]
    fn a_reason_is_trimmed_and_bounded() {
        assert_eq!(reason(None).unwrap(), None);
        assert_eq!(reason(Some("  ")).unwrap(), None);
        assert_eq!(reason(Some(" why ")).unwrap(), Some("why"));
        let longest = "é".repeat(MAX_REASON_CHARS);
        assert_eq!(reason(Some(&longest)).unwrap(), Some(longest.as_str()));
        let error = reason(Some(&format!("{longest}x"))).unwrap_err();
        assert!(error.to_string().contains("1001"), "{error}");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR k", "Bearer  k"] {
            assert_eq!(bearer_token(value).map(str::trim), Some("k"), "{value}");
        }
        for value in ["Basic k", "Bearerk", "Bearer", "", "Bear k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
