//! The admin REST API under `/api/v1`: environments, flags, segments, whole documents, keys,
//! the audit log and the store's restore, one module per resource.
//!
//! Every route needs an admin key, checked before the body is read. Every change to flags and
//! segments goes through [`Service::change`](crate::service::Service::change), which
//! validates the whole resulting document and commits it all or nothing, so a handler never
//! validates anything itself.

pub mod audit;
pub mod document;
pub mod environments;
pub mod flags;
mod input;
pub mod keys;
pub mod segments;
pub mod store;

use actix_web::web;

// Routes are registered with their full paths rather than inside a `/api/v1` scope: a scope
// would swallow every other `/api/v1` route (SDK ruleset, metrics) registered after it.
// Each path is a resource, so a wrong method gets 405 rather than "no such route".
pub fn routes(config: &mut web::ServiceConfig) {
    use web::{delete, get, post, put, resource};
    config
        .service(
            resource("/api/v1/environments")
                .route(get().to(environments::list_environments))
                .route(post().to(environments::create_environment)),
        )
        .service(
            resource("/api/v1/environments/{environment}")
                .route(get().to(environments::get_environment))
                .route(delete().to(environments::delete_environment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags")
                .route(get().to(flags::list_flags))
                .route(post().to(flags::create_flag)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}")
                .route(get().to(flags::get_flag))
                .route(put().to(flags::replace_flag))
                .route(delete().to(flags::delete_flag)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/enabled")
                .route(put().to(flags::set_enabled)),
        )
        .service(
            resource("/api/v1/environments/{environment}/flags/{key}/rollout/percentage")
                .route(put().to(flags::set_percentage)),
        )
        .service(
            resource("/api/v1/environments/{environment}/segments")
                .route(get().to(segments::list_segments))
                .route(post().to(segments::create_segment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/segments/{key}")
                .route(get().to(segments::get_segment))
                .route(put().to(segments::replace_segment))
                .route(delete().to(segments::delete_segment)),
        )
        .service(
            resource("/api/v1/environments/{environment}/document")
                .route(get().to(document::export_document))
                .route(put().to(document::import_document)),
        )
        .service(
            resource("/api/v1/keys")
                .route(get().to(keys::list_keys))
                .route(post().to(keys::create_key)),
        )
        .service(resource("/api/v1/keys/{id}").route(delete().to(keys::revoke_key)))
        .service(resource("/api/v1/audit").route(get().to(audit::audit)))
        .service(resource("/api/v1/store/restore").route(post().to(store::restore)));
}
