//! Shapes the OpenAPI document names that are not a handler's own body: the refusals every
//! keyed route shares, and OFREP's request and failure bodies.

use super::errors::ErrorBody;

/// The refusals every keyed route can answer.
#[derive(utoipa::IntoResponses)]
pub enum KeyRefusals {
    /// No API key, or one that is unknown or revoked.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key's scope does not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// An OFREP evaluation request.
#[derive(utoipa::ToSchema)]
pub struct OfrepEvaluationRequest {
    /// The evaluation context: `targetingKey` and any other attributes.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

/// An OFREP failure: the flag is not found or the request is not valid.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OfrepFailure {
    /// The flag, for single evaluations.
    pub key: Option<String>,
    /// `FLAG_NOT_FOUND`, `PARSE_ERROR`, `INVALID_CONTEXT`, ...
    pub error_code: String,
    pub error_details: String,
}
