//! The ceiling of the OFREP load benchmark (`scripts/load.sh`): a bare actix-web handler
//! that reads the same POST as `/ofrep/v1/evaluate/flags` and answers one constant
//! single-flag evaluation. Run beside the server under the same load, it shows how much of
//! a request's cost is HTTP and TCP alone on this machine, so that the server's figures can
//! be read as a share of what is possible rather than as absolute numbers that move with
//! every other tenant of the machine.
//!
//! It also answers `POST /ceiling/bulk` with a constant body of fifty such items in a bulk
//! answer's shape: about the size of the bulk benchmark's answer, it shows how much of the
//! bulk's cost is only sending a larger answer.
//!
//! Given a flag document, it also answers `POST /ceiling/evaluate`: the floor. That is the
//! bulk evaluation's own work on the same bare handler: the context read by Ripcord's
//! reader, the client-visible flags evaluated by the engine, the answer written by the OFREP
//! writer and hashed for its `ETag`; no authentication, routing, middleware or counting.
//! What the server spends above the floor is what it does besides evaluating; what the
//! floor spends above the bulk-sized ceiling is the evaluation.
//!
//! Usage: `ceiling [address] [flags.json]` (default `127.0.0.1:18182`), one worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use ripcord_engine::{Document, DocumentError, Limits, Snapshot};
use ripcord_server::environment::Environment;
use ripcord_server::evaluation::Evaluator;
use ripcord_server::http::ofrep::{bulk_etag, BulkWriter};
use ripcord_server::store::Scope;

const BODY: &str = r#"{"key":"flag-00002","value":true,"reason":"SPLIT","variant":"on","metadata":{"revision":1,"cohort":"treatment"}}"#;

/// Fifty items and an event stream, as a bulk answer of fifty flags is laid out.
fn bulk_body() -> String {
    let items = vec![BODY; 50].join(",");
    format!(
        r#"{{"flags":[{items}],"eventStreams":[{{"type":"sse","endpoint":{{"requestUri":"/ofrep/v1/events?channel=0123456789abcdef0123456789abcdef"}},"inactivityDelaySec":120}}]}}"#
    )
}

async fn evaluate(body: Bytes) -> HttpResponse {
    // The body is read whole, as the server reads it, and its size kept so that the
    // compiler cannot leave the reading out.
    let _read = std::hint::black_box(body.len());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(BODY)
}

/// The benchmark's flag document as an environment, evaluated for a client key.
struct Flags {
    evaluator: Evaluator,
}

impl Flags {
    fn load(path: &str) -> std::io::Result<Flags> {
        let invalid = |error: DocumentError| std::io::Error::other(format!("{path}: {error}"));
        let document = Document::from_json(&std::fs::read_to_string(path)?).map_err(invalid)?;
        let snapshot =
            Snapshot::compile(&document, 1, |_| 1, &Limits::default()).map_err(invalid)?;
        let environment = Environment::new("floor", 1, snapshot, document, BTreeMap::new());
        Ok(Flags {
            evaluator: Evaluator::new(Arc::new(environment), Some(Scope::Client)),
        })
    }

    /// The client-visible flags evaluated for the request's context, as a bulk answer.
    fn evaluate(&self, body: &[u8]) -> HttpResponse {
        let mut builder = ripcord_server::context::Builder::new(100, 256);
        let context = match ripcord_server::context::read_request(body, &mut builder)
            .map_err(|error| error.to_string())
            .and_then(|_| builder.finish())
        {
            Ok(context) => context,
            Err(error) => return HttpResponse::BadRequest().body(error),
        };
        let evaluator = &self.evaluator;
        let mut writer = BulkWriter::new(evaluator.ofrep_pieces(), evaluator.flag_count());
        // Not counted, as the floor leaves out everything but evaluating.
        evaluator.explain(&context, |evaluated| writer.flag(&evaluated));
        match writer.finish("0123456789abcdef0123456789abcdef") {
            Ok(answer) => HttpResponse::Ok()
                .insert_header(("etag", bulk_etag(&answer)))
                .content_type("application/json")
                .body(answer),
            Err(error) => HttpResponse::InternalServerError().body(error.to_string()),
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:18182".to_string());
    let flags = match args.next() {
        Some(path) => Some(Arc::new(Flags::load(&path)?)),
        None => None,
    };
    let bulk = Bytes::from(bulk_body());
    HttpServer::new(move || {
        let bulk = bulk.clone();
        let flags = flags.clone();
        App::new()
            .route(
                "/ceiling/evaluate",
                web::post().to(move |body: Bytes| {
                    let flags = flags.clone();
                    async move {
                        match flags {
                            Some(flags) => flags.evaluate(&body),
                            None => {
                                HttpResponse::NotFound().body("started without a flag document")
                            }
                        }
                    }
                }),
            )
            .route(
                "/ceiling/bulk",
                web::post().to(move |body: Bytes| {
                    let bulk = bulk.clone();
                    async move {
                        let _read = std::hint::black_box(body.len());
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(bulk)
                    }
                }),
            )
            .route("/{path:.*}", web::post().to(evaluate))
    })
    .workers(1)
    .bind(address)?
    .run()
    .await
}
