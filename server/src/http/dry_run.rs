//! An import's dry run: what `PUT .../document` would change — flags and segments added,
//! changed and removed, each with its before and after — validated as the import would be,
//! and nothing changed.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse};
use ripcord_engine::Document;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::State;
use crate::error::{Error, Result};

/// What an import left in the environment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// The environment's revision after the import.
    pub revision: u64,
    /// How many flags the environment now has.
    pub flags: usize,
    /// How many segments the environment now has.
    pub segments: usize,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `true`: answer what the import would change, and change nothing.
    #[param(value_type = Option<bool>)]
    pub dry_run: Option<String>,
    /// Import only if the environment is at this revision (the one the document was read
    /// or dry-run at); otherwise 409 `conflict` and nothing changes. With `dry_run=true`,
    /// the same check, answered the same way.
    #[param(minimum = 0)]
    pub expected_revision: Option<u64>,
}

/// What the query string asks of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub dry_run: bool,
    pub expected_revision: Option<u64>,
}

/// Whether the request asks for a dry run, and at which revision. Anything but `true` or
/// `false` for `dry_run` is refused: an import meant as a try must not go through on a typo.
pub fn requested(request: &HttpRequest) -> Result<Requested> {
    let params: ImportParams = actix_web::web::Query::from_query(request.query_string())
        .map(actix_web::web::Query::into_inner)
        .map_err(|error| {
            Error::bad_request(format!("the query string is not valid: {error}"), None)
        })?;
    let dry_run = match params.dry_run.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::bad_request(
                format!("`dry_run` must be `true` or `false`, not `{other}`"),
                Some("dry_run".to_string()),
            ))
        }
    };
    Ok(Requested {
        dry_run,
        expected_revision: params.expected_revision,
    })
}

/// What an import would change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    /// Always `true`: nothing was changed.
    pub dry_run: bool,
    /// The environment's revision the document was compared with.
    pub revision: u64,
    /// Whether the import would change anything (an import of the same document makes no
    /// revision).
    pub changes: bool,
    pub flags: Changes,
    pub segments: Changes,
}

/// The items an import would add, change and remove, by key.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Changes {
    pub added: Vec<Change>,
    pub changed: Vec<Change>,
    pub removed: Vec<Change>,
    /// How many stay as they are.
    pub unchanged: usize,
}

/// One item's change: absent `before` for an addition, absent `after` for a removal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// The answer of `PUT .../document`: what was imported, or with `dry_run=true`, what would
/// change.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only the document names it: handlers answer one of its two shapes.
pub enum ImportAnswer {
    Imported(ImportSummary),
    DryRun(DryRun),
}

/// Validates `imported` as the import would, against the environment as it is, and answers
/// what would change.
pub async fn answer(
    state: &State,
    environment: &str,
    expected_revision: Option<u64>,
    imported: Document,
) -> Result<HttpResponse> {
    let current = state
        .service
        .environment(environment)
        .ok_or_else(|| Error::NotFound {
            what: "environment",
            key: environment.to_string(),
        })?;
    if let Some(expected) = expected_revision {
        if current.revision != expected {
            return Err(crate::service::stale_revision(
                environment,
                expected,
                current.revision,
            ));
        }
    }
    let limits = *state.service.limits();
    let (revision, before) = (current.revision, current.document.clone());
    // Validating compiles the document: milliseconds of CPU for a large one, kept off the
    // thread that answers requests, as the import's own is.
    let dry_run = tokio::task::spawn_blocking(move || -> Result<DryRun> {
        ripcord_engine::validate(&imported, &limits)?;
        let flags = compare(&before.flags, &imported.flags);
        let segments = compare(&before.segments, &imported.segments);
        Ok(DryRun {
            dry_run: true,
            revision,
            changes: !(flags.is_empty() && segments.is_empty()),
            flags,
            segments,
        })
    })
    .await
    .map_err(|error| Error::Internal(format!("validating did not finish: {error}")))??;
    Ok(HttpResponse::Ok().json(dry_run))
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

fn compare<T: PartialEq + Serialize>(
    before: &BTreeMap<String, T>,
    after: &BTreeMap<String, T>,
) -> Changes {
    let json = |item: &T| serde_json::to_value(item).unwrap_or(Value::Null);
    let mut changes = Changes::default();
    for (key, old) in before {
        match after.get(key) {
            None => changes.removed.push(Change {
                key: key.clone(),
                before: Some(json(old)),
                after: None,
            }),
            Some(new) if new != old => changes.changed.push(Change {
                key: key.clone(),
                before: Some(json(old)),
                after: Some(json(new)),
            }),
            Some(_) => changes.unchanged += 1,
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            changes.added.push(Change {
                key: key.clone(),
                before: None,
                after: Some(json(new)),
            });
        }
    }
    changes
}
