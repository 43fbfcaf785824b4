//! The OpenAPI document of the admin API, generated from the handlers.
