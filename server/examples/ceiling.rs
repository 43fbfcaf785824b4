//! The ceiling of the OFREP load benchmark (`scripts/load.sh`): a bare actix-web handler
//! that reads the same POST as `/ofrep/v1/evaluate/flags` and answers one constant
//! single-flag evaluation. Run beside the server under the same load, it shows how much of
//! a request's cost is HTTP and TCP alone on this machine, so that the server's figures can
//! be read as a share of what is possible rather than as absolute numbers that move with
//! every other tenant of the machine.
//!
//! Usage: `ceiling <address>` (default `127.0.0.1:18182`), one worker.

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

const BODY: &str = r#"{"key":"flag-00002","value":true,"reason":"SPLIT","variant":"on","metadata":{"revision":1,"cohort":"treatment"}}"#;

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
    HttpServer::new(|| App::new().route("/{path:.*}", web::post().to(evaluate)))
        .workers(1)
        .bind(address)?
        .run()
        .await
}
