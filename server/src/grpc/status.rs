//! The one place where a refused gRPC call becomes a `tonic::Status`. Messages say what the
//! caller can fix; nothing of the server's internals reaches them.

use tonic::{Code, Status};

/// Why a call was refused.
#[derive(Debug)]
pub enum Refusal {
    /// No key, or one that is unknown or revoked.
    Unauthenticated(String),
    /// A valid key that may not make this call.
    PermissionDenied(String),
    /// The context (or, for flagd, the flag's type) does not fit the call.
    InvalidArgument(String),
    /// The flag or environment does not exist (or may not be seen with this key).
    NotFound(String),
    /// The flag's value cannot be read as the call needs it (flagd's PARSE_ERROR).
    DataLoss(String),
    /// The server is not set up for this call.
    FailedPrecondition(String),
    /// The server is stopping: try again, elsewhere or later.
    Unavailable(String),
    /// The server failed. The details go to the log, not to the caller.
    Internal(String),
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        let (code, message) = match refusal {
            Refusal::Unauthenticated(message) => (Code::Unauthenticated, message),
            Refusal::PermissionDenied(message) => (Code::PermissionDenied, message),
            Refusal::InvalidArgument(message) => (Code::InvalidArgument, message),
            Refusal::NotFound(message) => (Code::NotFound, message),
            Refusal::DataLoss(message) => (Code::DataLoss, message),
            Refusal::FailedPrecondition(message) => (Code::FailedPrecondition, message),
            Refusal::Unavailable(message) => (Code::Unavailable, message),
            Refusal::Internal(details) => {
                tracing::error!(%details, "a gRPC call failed");
                (Code::Internal, "the server failed; see its log".to_string())
            }
        };
        Status::new(code, message)
    }
}

impl From<crate::access::Denied> for Refusal {
    fn from(denied: crate::access::Denied) -> Refusal {
        Refusal::PermissionDenied(denied.message())
    }
}

/// The server's domain errors, for calls that go through the service's plain functions.
impl From<crate::error::Error> for Refusal {
    fn from(error: crate::error::Error) -> Refusal {
        use crate::error::Error;
        match error {
            Error::NotFound { .. } => Refusal::NotFound(error.to_string()),
            Error::Conflict(message) => Refusal::FailedPrecondition(message),
            Error::Invalid(_)
            | Error::BadRequest { .. }
            | Error::LimitExceeded { .. }
            | Error::Timeout { .. } => Refusal::InvalidArgument(error.to_string()),
            Error::Unauthorized(message) => Refusal::Unauthenticated(message.to_string()),
            Error::Forbidden(message) => Refusal::PermissionDenied(message),
            Error::Store(error) => {
                tracing::error!(%error, "storage error");
                Refusal::Unavailable(crate::error::STORE_UNAVAILABLE.to_string())
            }
            Error::Internal(message) => Refusal::Internal(message),
        }
    }
}

pub type Result<T, E = Refusal> = std::result::Result<T, E>;
