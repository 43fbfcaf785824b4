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

use std::sync::Arc;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use ripcord_engine::{evaluate_flag_with, Document, Limits, Memo, Snapshot};
use ripcord_server::answers::OfrepPieces;
use ripcord_server::evaluation::Evaluated;
use ripcord_server::http::ofrep::BulkWriter;

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

/// A compiled flag document with what the floor needs of it.
struct Flags {
    snapshot: Snapshot,
    pieces: OfrepPieces,
    client_visible: Vec<usize>,
}

impl Flags {
    fn load(path: &str) -> std::io::Result<Flags> {
        let text = std::fs::read_to_string(path)?;
        let document = Document::from_json(&text)
            .map_err(|error| std::io::Error::other(format!("{path}: {error}")))?;
        let snapshot = Snapshot::compile(&document, 1, |_| 1, &Limits::default())
            .map_err(|error| std::io::Error::other(format!("{path}: {error}")))?;
        let client_visible = snapshot
            .flags()
            .enumerate()
            .filter(|(_, flag)| flag.is_client_visible())
            .map(|(position, _)| position)
            .collect();
        Ok(Flags {
            pieces: OfrepPieces::new(&snapshot),
            snapshot,
            client_visible,
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
        let mut memo = Memo::default();
        let mut writer = BulkWriter::new(&self.pieces, self.client_visible.len());
        for &position in &self.client_visible {
            if let Some(flag) = self.snapshot.flag_at(position) {
                writer.flag(&Evaluated {
                    position,
                    flag,
                    evaluation: evaluate_flag_with(flag, &context, &mut memo),
                });
            }
        }
        match writer.finish("0123456789abcdef0123456789abcdef") {
            Ok(answer) => {
                let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&answer));
                HttpResponse::Ok()
                    .insert_header(("etag", etag))
                    .content_type("application/json")
                    .body(answer)
            }
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
