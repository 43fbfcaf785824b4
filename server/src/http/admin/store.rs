//! The store itself: putting back into a shared store that lost its data (a Redis
//! restarted without persistence) what this node still serves.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::Result;
use crate::http::errors::ErrorBody;
use crate::http::request::require_admin;
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::service::Restored;

/// Writes this node's environments (flags, segments, revisions) and keys into the store,
/// which must be empty: the way back after a shared Redis lost its data while the nodes
/// kept serving. The audit log, ramps, incidents and metric counts lived only in the store
/// and are not in a node's memory; the store's log gets one `store.restore` entry. Every
/// node reads the restored store and takes writes again.
#[utoipa::path(
    post,
    path = "/api/v1/store/restore",
    tag = "store",
    responses(
        (status = 200, description = "What was written", body = Restored),
        (status = 409, description = "The store holds data: nothing was written", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn restore(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
    let restored = state.service.restore_store(&actor).await?;
    Ok(HttpResponse::Ok().json(restored))
}
