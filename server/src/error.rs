//! The server's domain errors. `http::errors` turns them into responses in one place.

use ripcord_engine::{DocumentError, Problem};

use crate::store::StoreError;

/// What a caller is told when the store fails; the store's own error goes to the log only.
/// Not "nothing was changed": a write that ran past `RIPCORD_STORE_TIMEOUT` can still be
/// applied should the store get unstuck, and a failed flush may have committed.
pub const STORE_UNAVAILABLE: &str = "the store is unavailable: the request was not acknowledged (a write that timed out may still be applied if the store recovers: read it back before retrying)";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what} `{key}` does not exist")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    Conflict(String),
    /// The request's document, flag or segment is invalid; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] DocumentError),
    /// The request is malformed: the message says what, the path says where.
    #[error("{message}")]
    BadRequest {
        message: String,
        path: Option<String>,
    },
    /// The request is over one of the server's limits; the message names it.
    #[error("{message}")]
    LimitExceeded {
        limit: &'static str,
        message: String,
    },
    /// The request took longer than one of the server's time limits; the message names it.
    #[error("{message}")]
    Timeout {
        limit: &'static str,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
    /// The server failed (a task panicked, no randomness): the message goes to the log, and
    /// the caller is told only that the server failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>, path: Option<String>) -> Error {
        Error::BadRequest {
            message: message.into(),
            path,
        }
    }

    /// The problems behind an `Invalid` error, for the response body.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid(error) => error.problems(),
            _ => &[],
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::NoSuchEnvironment(name) => Error::NotFound {
                what: "environment",
                key: name,
            },
            StoreError::EnvironmentExists(name) => {
                Error::Conflict(format!("environment `{name}` already exists"))
            }
            error @ (StoreError::RampChanged { .. }
            | StoreError::LeaseLost
            | StoreError::NotEmpty(_)) => Error::Conflict(error.to_string()),
            other => Error::Store(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
