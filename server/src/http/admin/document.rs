//! An environment's whole document: import and export, in JSON or YAML.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use ripcord_engine::Document;
use serde::Deserialize;

use super::input::{change, parse_query};
use crate::error::{Error, Result};
use crate::http::dry_run::ImportSummary;
use crate::http::errors::ErrorBody;
use crate::http::flag_schema::DocumentSchema;
use crate::http::request::require_admin;
use crate::http::schemas::{KeyRefusals, StoreUnavailable};
use crate::http::state::State;
use crate::principal::Principal;
use crate::service::Service;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `json` (the default) or `yaml`; without it, `Accept: application/yaml` asks for YAML.
    #[param(inline, value_type = Option<ExportFormat>)]
    pub format: Option<String>,
}

/// The formats of an export; `yml` is `yaml`.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Yaml,
    Yml,
}

/// Replaces the environment's whole document (flags and segments) with the body, YAML or
/// JSON. All or nothing: an invalid document changes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{environment}/document",
    tag = "documents",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"), crate::http::dry_run::ImportParams),
    request_body(
        description = "The flag document: `flags` and `segments` by key, as docs/flags.md describes",
        content((DocumentSchema = "application/json"), (DocumentSchema = "application/yaml"))
    ),
    responses(
        (status = 200, description = "Imported; with `dry_run=true`, what would change, and nothing changed", body = crate::http::dry_run::ImportAnswer),
        (status = 400, description = "The document is invalid; `problems` lists every problem", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 409, description = "`expected_revision` is not the environment's revision: the message says which it is now; nothing was changed", body = ErrorBody),
        (status = 413, description = "Over RIPCORD_MAX_IMPORT_BYTES", body = ErrorBody),
        (status = 500, description = "Parsing or validating failed in the server; nothing was changed, and the cause is in the server's log", body = ErrorBody),
        StoreUnavailable,
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn import_document(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let actor = require_admin(&request, &state)?;
    let crate::http::dry_run::Requested {
        dry_run,
        expected_revision,
    } = crate::http::dry_run::requested(&request)?;
    // Taken before the body is read and held until the import is done (by the blocking
    // task, should the client hang up), so that a burst of imports holds one body and one
    // parsed document at a time; the others wait here, holding nothing but their connection.
    let permit = Arc::clone(import_permits())
        .acquire_owned()
        .await
        .map_err(|error| Error::Internal(format!("the import queue is closed: {error}")))?;
    let body = crate::http::request::read_body_up_to(
        payload,
        state.max_import_bytes,
        "RIPCORD_MAX_IMPORT_BYTES",
    )
    .await?;
    let format = declared_format(&request);
    let service = Arc::clone(&state.service);
    let environment = environment.into_inner();
    // Reading, validating, diffing and compiling a document of tens of megabytes takes
    // hundreds of milliseconds of CPU, and the evaluations this worker serves would wait
    // that long behind it: the whole import runs on a blocking thread. The change still
    // runs on this worker's runtime (its timers and I/O), driven from that thread.
    if dry_run {
        let (imported, permit) = tokio::task::spawn_blocking(move || {
            read_document(&body, format).map(|read| (read, permit))
        })
        .await
        .map_err(|error| blocking_failed("dry run", error))??;
        // Held while the dry run validates and compares, as an import holds it: a burst of
        // dry runs holds one parsed document and one comparison at a time.
        let answered =
            crate::http::dry_run::answer(&state, &environment, expected_revision, imported).await;
        drop(permit);
        return answered;
    }
    let runtime = tokio::runtime::Handle::current();
    let imported = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        import_at(
            &runtime,
            &service,
            &environment,
            &actor,
            expected_revision,
            body,
            format,
        )
    })
    .await
    .map_err(|error| blocking_failed("import", error))??;
    Ok(HttpResponse::Ok().json(imported))
}

fn import_permits() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(1)))
}

/// What an import does once its body is in: reads it and, if it is a valid document,
/// makes it the environment's document, all or nothing. Blocks: call it where blocking is
/// allowed, with the runtime that drives the service.
pub fn import(
    runtime: &tokio::runtime::Handle,
    service: &Service,
    environment: &str,
    actor: &Principal,
    body: Bytes,
    format: Option<Format>,
) -> Result<ImportSummary> {
    import_at(runtime, service, environment, actor, None, body, format)
}

/// `import`, made only if the environment is at `expected_revision` (when given).
pub fn import_at(
    runtime: &tokio::runtime::Handle,
    service: &Service,
    environment: &str,
    actor: &Principal,
    expected_revision: Option<u64>,
    body: Bytes,
    format: Option<Format>,
) -> Result<ImportSummary> {
    let imported = read_document(&body, format)?;
    drop(body);
    let (flags, segments) = (imported.flags.len(), imported.segments.len());
    let revision = runtime.block_on(service.change_at(
        change(environment, actor, "import"),
        expected_revision,
        |document| {
            *document = imported.clone();
            Ok(())
        },
    ))?;
    Ok(ImportSummary {
        revision,
        flags,
        segments,
    })
}

/// Reads an imported body as the document its content type declares (or, without one, as
/// its first character suggests).
pub fn read_document(body: &[u8], format: Option<Format>) -> Result<Document> {
    let text = std::str::from_utf8(body)
        .map_err(|error| Error::bad_request(format!("the document is not UTF-8: {error}"), None))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // An empty YAML text reads as the empty document, which would delete every flag: far
    // more likely a broken upload than an intent, which `{}` says plainly.
    if text.trim().is_empty() {
        return Err(Error::bad_request(
            "the document is empty; to remove every flag and segment, send `{}`",
            None,
        ));
    }
    Ok(match format {
        Some(Format::Json) => Document::from_json(text)?,
        Some(Format::Yaml) => Document::from_yaml(text)?,
        None => Document::from_text(text)?,
    })
}

/// A blocking task that did not finish: it panicked, or the runtime is shutting down.
fn blocking_failed(what: &str, error: tokio::task::JoinError) -> Error {
    Error::Internal(format!("the {what} did not finish: {error}"))
}

/// The header of an export that names the revision the document was read at.
pub const REVISION_HEADER: &str = "Ripcord-Revision";

/// The environment's whole document: JSON, or YAML when asked for.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{environment}/document",
    tag = "documents",
    params(("environment" = String, Path, description = "The environment's name", pattern = "^[a-z0-9_-]{1,64}$"), ExportParams),
    responses(
        (status = 200, description = "The flag document: `flags` and `segments` by key, as docs/flags.md describes",
            headers(("Ripcord-Revision" = u64, description = "The environment's revision the document was read at: send it as `expected_revision` when importing an edit of it")),
            content((DocumentSchema = "application/json"), (DocumentSchema = "application/yaml"))),
        (status = 400, description = "Not a known format", body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        KeyRefusals
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn export_document(
    request: HttpRequest,
    state: web::Data<State>,
    environment: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&request, &state)?;
    let params: ExportParams = parse_query(&request)?;
    let format = export_format(&request, params.format.as_deref())?;
    let service = Arc::clone(&state.service);
    // Copying and writing out a large document takes as long as reading one.
    let (revision, text) = tokio::task::spawn_blocking(move || -> Result<(u64, String)> {
        // The revision from the same snapshot as the text: a client that imports its edit
        // with `expected_revision` must name the revision the text was read at.
        let current = service
            .environment(&environment)
            .ok_or_else(|| Error::NotFound {
                what: "environment",
                key: environment.clone(),
            })?;
        let text = match format {
            Format::Json => current.document.to_json(),
            Format::Yaml => current.document.to_yaml(),
        };
        Ok((current.revision, text))
    })
    .await
    .map_err(|error| blocking_failed("export", error))??;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Yaml => "application/yaml",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((REVISION_HEADER, revision.to_string()))
        .body(text))
}

/// The format of an imported or exported document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn yaml_media_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
    )
}

/// The format the content type declares, if it names one; without it the body decides
/// (`Document::from_text`).
fn declared_format(request: &HttpRequest) -> Option<Format> {
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(media_type);
    match declared.as_deref() {
        Some("application/json") => Some(Format::Json),
        Some(declared) if yaml_media_type(declared) => Some(Format::Yaml),
        _ => None,
    }
}

/// `?format=` wins; otherwise the first of JSON or YAML that `Accept` lists; JSON by default.
fn export_format(request: &HttpRequest, format: Option<&str>) -> Result<Format> {
    match format.map(str::to_ascii_lowercase).as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("yaml" | "yml") => return Ok(Format::Yaml),
        Some(other) => {
            return Err(Error::bad_request(
                format!("`{other}` is not an export format: use `json` or `yaml`"),
                Some("format".to_string()),
            ))
        }
        None => {}
    }
    let accepted = request
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(media_type)
        .find_map(|media_type| match media_type.as_str() {
            "application/json" => Some(Format::Json),
            yaml if yaml_media_type(yaml) => Some(Format::Yaml),
            _ => None,
        });
    Ok(accepted.unwrap_or(Format::Json))
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;
    use actix_web::ResponseError as _;

    /// An import whose parsing task panicked is the server's failure, not the store's: a
    /// 500 that says so, with the panic kept for the log and out of the answer.
    #[tokio::test]
    async fn an_import_task_that_panicked_is_an_internal_error() {
        let joined = tokio::task::spawn_blocking(|| -> () { panic!("parser bug") }).await;
        let Err(error) = joined else {
            panic!("the task panicked");
        };
        let error = super::blocking_failed("import", error);
        let response = error.error_response();
        assert_eq!(response.status(), 500);
        let body = response.into_body().try_into_bytes().expect("a whole body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(body["error"], "internal");
        assert!(
            !body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("parser bug"),
            "{body}"
        );
    }
}
