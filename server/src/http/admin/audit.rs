//! The audit log: who changed what, when, from what to what.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::input::parse_query;
use crate::error::{Error, Result};
use crate::http::errors::ErrorBody;
use crate::http::request::require_admin;
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::store::{AuditQuery, AuditRecord};

/// The audit page size when the request names none.
pub const DEFAULT_AUDIT_LIMIT: usize = 50;
/// The largest audit page: bounds the work and the response of one request.
pub const MAX_AUDIT_LIMIT: usize = 500;

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// The `before` of the next page; `null` on the last page.
    pub next: Option<u64>,
}

/// Query parameters are read as text and converted here, so that a bad one is reported with
/// its name in our error shape.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries about this environment.
    pub environment: Option<String>,
    /// Only entries about this flag.
    pub flag: Option<String>,
    /// Entries per page: 1 to 500, 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Only entries older than this id: the `next` of the previous page.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_i64)]
    pub before: Option<String>,
}

/// Reads the audit log, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn audit(request: HttpRequest, state: web::Data<State>) -> Result<HttpResponse> {
    require_admin(&request, &state)?;
    let query = audit_query(parse_query(&request)?)?;
    let limit = query.limit;
    let entries = state.service.audit(&query).await?;
    // A short page is the last one; a full one may be, and the next request finds out.
    let next = if entries.len() >= limit {
        entries.last().map(|entry| entry.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage { entries, next }))
}

fn audit_query(params: AuditParams) -> Result<AuditQuery> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_AUDIT_LIMIT,
        Some(limit) => {
            let limit: usize = limit.trim().parse().map_err(|_| {
                Error::bad_request(
                    format!(
                        "`limit` must be a whole number from 1 to {MAX_AUDIT_LIMIT}, not `{limit}`"
                    ),
                    Some("limit".to_string()),
                )
            })?;
            if limit == 0 || limit > MAX_AUDIT_LIMIT {
                return Err(Error::bad_request(
                    format!(
                        "`limit` is {limit}; the limit is 1 to {MAX_AUDIT_LIMIT} entries per page"
                    ),
                    Some("limit".to_string()),
                ));
            }
            limit
        }
    };
    let before = params
        .before
        .as_deref()
        .map(|before| {
            // Entry ids are the store's row ids, which are signed 64-bit: none is above
            // `i64::MAX`, and the document says so.
            before
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|before| i64::try_from(*before).is_ok())
                .ok_or_else(|| {
                    Error::bad_request(
                        format!(
                            "`before` must be an audit entry id (a whole number from 0 to {}), not `{before}`",
                            i64::MAX
                        ),
                        Some("before".to_string()),
                    )
                })
        })
        .transpose()?;
    let non_empty = |value: Option<String>| value.filter(|value| !value.is_empty());
    Ok(AuditQuery {
        environment: non_empty(params.environment),
        flag: non_empty(params.flag),
        before,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_limits_are_checked() {
        let params = |limit: &str| AuditParams {
            limit: Some(limit.to_string()),
            ..AuditParams::default()
        };
        assert_eq!(
            audit_query(AuditParams::default()).unwrap().limit,
            DEFAULT_AUDIT_LIMIT
        );
        assert_eq!(audit_query(params("500")).unwrap().limit, 500);
        for bad in ["501", "0", "-1", "many"] {
            match audit_query(params(bad)) {
                Err(Error::BadRequest { path, .. }) => assert_eq!(path.as_deref(), Some("limit")),
                other => panic!("limit={bad} gave {other:?}"),
            }
        }
    }

    /// Entry ids are signed 64-bit, as the document says: a larger `before` is refused
    /// rather than read as a page before every entry.
    #[test]
    fn before_is_a_whole_number_up_to_the_largest_id() {
        let params = |before: &str| AuditParams {
            before: Some(before.to_string()),
            ..AuditParams::default()
        };
        assert_eq!(
            audit_query(params("9223372036854775807")).unwrap().before,
            Some(i64::MAX as u64)
        );
        for bad in ["9223372036854775808", "-1", "1.5", "many"] {
            match audit_query(params(bad)) {
                Err(Error::BadRequest { path, .. }) => assert_eq!(path.as_deref(), Some("before")),
                other => panic!("before={bad} gave {other:?}"),
            }
        }
    }
}
