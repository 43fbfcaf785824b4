//! The one mapping from domain errors to HTTP responses:
//! `{"error": ..., "message": ..., "path": ...}`, plus `problems` for invalid documents.
//! Storage failures are logged here and answered without their internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::Error;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, such as `invalid_document` or `not_found`.
    pub error: &'static str,
    /// What was wrong, for people.
    pub message: String,
    /// Where: the path in the request body or document, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every problem, for an invalid document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<ripcord_engine::Problem>,
}

impl Error {
    fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Invalid(_) => "invalid_document",
            Error::BadRequest { .. } => "bad_request",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::Timeout { .. } => "request_timeout",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::Store(_) => "storage_unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) | Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::LimitExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            // Nothing of the store's internals, but this is what the operator must act on.
            Error::Store(error @ crate::store::StoreError::Lost) => {
                tracing::error!(%error, "storage error");
                error.to_string()
            }
            Error::Store(error) => {
                tracing::error!(%error, "storage error");
                crate::error::STORE_UNAVAILABLE.to_string()
            }
            Error::Internal(error) => {
                tracing::error!(%error, "internal error");
                "the server failed; the details are in its log".to_string()
            }
            other => other.to_string(),
        };
        let problems = self.problems().to_vec();
        let path = match self {
            Error::BadRequest { path, .. } => path.clone(),
            Error::Invalid(_) => problems
                .first()
                .map(|problem| problem.path.clone())
                .filter(|path| !path.is_empty()),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Error::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorBody {
            error: self.code(),
            message,
            path,
            problems,
        })
    }
}

pub async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    Error::NotFound {
        what: "route",
        key: format!("{} {}", request.method(), request.path()),
    }
    .error_response()
}

/// Turns actix-web's bare 405 into the error shape every other error has. The bare answer's
/// headers are kept: its `Allow` lists the methods the resource has, which RFC 9110 requires
/// of every 405 and which only the router knows.
pub fn method_not_allowed<B>(
    response: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let (request, bare) = response.into_parts();
    let body = ErrorBody {
        error: "method_not_allowed",
        message: format!("{} is not allowed on {}", request.method(), request.path()),
        path: None,
        problems: Vec::new(),
    };
    let mut response = HttpResponse::MethodNotAllowed();
    for (name, value) in bare.headers() {
        if name != actix_web::http::header::CONTENT_LENGTH
            && name != actix_web::http::header::CONTENT_TYPE
        {
            response.append_header((name.clone(), value.clone()));
        }
    }
    let response = response.json(body);
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(request, response).map_into_right_body(),
    ))
}
