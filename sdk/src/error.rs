//! The SDK's one error type.

use std::time::Duration;

use serde_json::Value;

/// Why the SDK could not do what was asked.
///
/// Flag evaluations never return this: a getter answers its default with an error code in
/// its [`Details`](crate::Details). These errors come from building a client, waiting for
/// it, refreshing it, or from the connection behind it (see `last_error`). The type is
/// `Clone` so that a client can keep its last error and hand out copies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL does not parse.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The key cannot be sent as a header (it holds a control character, for example).
    #[error("the key is not a valid header value")]
    InvalidKey,
    /// The instance id is empty, longer than 128 characters, or not printable ASCII (the
    /// start of it is shown).
    #[error("invalid instance id `{0}`: use 1 to 128 printable ASCII characters")]
    InvalidInstanceId(String),
    /// The client was built outside a Tokio runtime, so its background task cannot start.
    #[error("the client must be built inside a Tokio runtime")]
    NoRuntime,
    /// A local client needs a server to follow, a bootstrap document, or both.
    #[error("a local client needs a server (gRPC URL and key), a bootstrap document, or both")]
    NothingToServe,
    /// The bootstrap document could not be read or is not a valid flag document.
    #[error("bootstrap document: {0}")]
    Bootstrap(String),
    /// The client had no flags to serve within the time given.
    #[error("not ready after {0:?}")]
    Timeout(Duration),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The server could not be reached, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The server refused the request: an unknown or revoked key, a key of the wrong
    /// scope, a context it will not evaluate.
    #[error("the server refused the request (status {status}): {message}")]
    Refused { status: u16, message: String },
    /// The server answered something the SDK cannot read.
    #[error("unreadable answer from the server: {0}")]
    InvalidResponse(String),
    /// A ruleset or delta from the server did not apply or compile; the client keeps the
    /// last ruleset that did.
    #[error("ruleset: {0}")]
    Ruleset(String),
    /// The cache file could not be read or written.
    #[error("cache file: {0}")]
    Cache(String),
}

/// The error with its causes: transport errors (tonic's, reqwest's) say little at the top.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A gRPC call's failure: a refusal keeps the HTTP status it stands for, so that both modes
/// report a wrong key alike.
pub(crate) fn status_error(status: &tonic::Status) -> Error {
    match status.code() {
        tonic::Code::Unauthenticated => Error::Refused {
            status: 401,
            message: status.message().to_string(),
        },
        tonic::Code::PermissionDenied => Error::Refused {
            status: 403,
            message: status.message().to_string(),
        },
        code => Error::Connection(format!("{code:?}: {}", status.message())),
    }
}

/// What an HTTP refusal says: OFREP's `errorDetails`, the `message` or `error` of Ripcord's
/// own APIs, or else the start of the body as it came.
pub(crate) fn refusal_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|body| {
        ["errorDetails", "message", "error"]
            .iter()
            .find_map(|field| body.get(*field).and_then(Value::as_str))
            .map(str::to_string)
    });
    message.unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}
