//! Propagation: the time from an admin write to a watching client seeing it, over many
//! changes, through the SDK (gRPC `Watch`) or a server-sent events stream.
//!
//! Run by `scripts/bench-delivery.sh`:
//! `propagation <sdk|sse> <grpc url> <http url> <server key> <admin key> <changes> [watched
//! http url]`. The writes go to `http url`; the SDK follows `grpc url`, and the stream is read
//! from `watched http url` (by default `http url`): on nodes sharing a store, another node's
//! addresses time the propagation from node to node (`scripts/bench-nodes.sh`).
//! The clock starts before the admin request is sent, so the figure includes the write
//! itself (validated, committed and made durable by the store) as well as the delivery.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

async fn write(
    client: &reqwest::Client,
    http: &str,
    admin_key: &str,
    change: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let response = client
        .put(format!(
            "{http}/api/v1/environments/default/flags/flag-00000/enabled"
        ))
        .bearer_auth(admin_key)
        .json(&serde_json::json!({ "enabled": change % 2 == 1 }))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("the admin write failed: {}", response.status()).into());
    }
    Ok(())
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{what}: {} changes, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}

/// Reads server-sent events from `watched` and hands on the `id` of every `delta` or
/// `ruleset` event; writes to `http`.
async fn sse(
    http: &str,
    watched: &str,
    server_key: &str,
    changes: usize,
    admin_key: &str,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{watched}/api/v1/sdk/stream"))
        .bearer_auth(server_key)
        .send()
        .await?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    // Blocks until an event with an id arrives; returns that id.
    let mut next_revision = async || -> Result<u64, Box<dyn std::error::Error>> {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let id = event
                    .lines()
                    .find_map(|line| line.strip_prefix("id:"))
                    .and_then(|id| id.trim().parse().ok());
                let kind = event
                    .lines()
                    .find_map(|line| line.strip_prefix("event:"))
                    .map(str::trim);
                if let (Some(id), Some("delta" | "ruleset")) = (id, kind) {
                    return Ok(id);
                }
                continue;
            }
            let chunk = body.next().await.ok_or("the stream ended")??;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let mut current = next_revision().await?;
    let mut latencies = Vec::with_capacity(changes);
    for change in 0..changes {
        let started = Instant::now();
        write(&client, http, admin_key, change).await?;
        let target = current + 1;
        while current < target {
            current = next_revision().await?;
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

/// A local-mode SDK following the server; times each write until the SDK reports the flag
/// changed.
async fn sdk(
    grpc: &str,
    http: &str,
    server_key: &str,
    admin_key: &str,
    changes: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let sdk = ripcord_sdk::LocalClient::connect(grpc, server_key)?;
    sdk.wait_ready(Duration::from_secs(10)).await?;
    let mut flag = sdk.subscribe_flag("flag-00000");
    let mut latencies = Vec::with_capacity(changes);
    for change in 0..changes {
        let started = Instant::now();
        write(&client, http, admin_key, change).await?;
        tokio::time::timeout(Duration::from_secs(10), flag.next())
            .await?
            .ok_or("the SDK closed")?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, grpc, http, server_key, admin_key, changes, watched) = match args.as_slice() {
        [_, mode, grpc, http, server_key, admin_key, changes] => {
            (mode, grpc, http, server_key, admin_key, changes, http)
        }
        [_, mode, grpc, http, server_key, admin_key, changes, watched] => {
            (mode, grpc, http, server_key, admin_key, changes, watched)
        }
        _ => {
            return Err(
                "usage: propagation <sdk|sse> <grpc url> <http url> <server key> \
                        <admin key> <changes> [watched http url]"
                    .into(),
            )
        }
    };
    let changes: usize = changes.parse()?;
    match mode.as_str() {
        "sse" => report(
            "server-sent events",
            sse(http, watched, server_key, changes, admin_key).await?,
        ),
        "sdk" => report(
            "SDK over gRPC Watch",
            sdk(grpc, http, server_key, admin_key, changes).await?,
        ),
        other => return Err(format!("unknown mode `{other}`: use sdk or sse").into()),
    }
    Ok(())
}
