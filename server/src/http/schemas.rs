//! Shapes the OpenAPI document names that are not a handler's own body: the refusals every
//! keyed route shares, the store's, and OFREP's request and failure bodies.

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

/// The refusal of every route that reads or writes the store when the store fails.
#[derive(utoipa::IntoResponses)]
pub enum StoreUnavailable {
    /// The store is unavailable: the request was not acknowledged.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// An OFREP evaluation request: `{"context": {...}}`. Written by hand for the limits on the
/// context that a derived schema cannot state.
pub struct OfrepEvaluationRequest;

impl utoipa::PartialSchema for OfrepEvaluationRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        let context = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The evaluation context: `targetingKey` (a string; `null` or absent for \
                 none) and any other attributes. At most 200 attributes by default \
                 (`RIPCORD_MAX_CONTEXT_ATTRIBUTES`), each name at most 256 characters \
                 (`RIPCORD_MAX_KEY_LENGTH`).",
            ))
            .property(
                "targetingKey",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "The unit a rollout buckets by, unless a flag says another",
                    )),
            )
            .max_properties(Some(200))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(256)),
            ));
        ObjectBuilder::new()
            .property(
                "context",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(context),
            )
            .into()
    }
}

impl utoipa::ToSchema for OfrepEvaluationRequest {}

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
