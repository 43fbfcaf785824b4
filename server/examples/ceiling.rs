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
//! Usage: `ceiling <address>` (default `127.0.0.1:18182`), one worker.

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

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

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18182".to_string());
    let bulk = Bytes::from(bulk_body());
    HttpServer::new(move || {
        let bulk = bulk.clone();
        App::new()
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
