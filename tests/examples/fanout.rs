//! Fan-out: many `Watch` streams on one server, each on its own connection as separate SDK
//! instances would be. Reports the server's memory before and after they connect, then
//! makes changes through the admin API and reports how long every stream took to receive
//! each one.
//!
//! Run by `scripts/bench-delivery.sh`:
//! `fanout <grpc url> <http url> <server key> <admin key> <server pid> <streams> <changes>`.

use std::time::{Duration, Instant};

use ripcord_proto::pb::ripcord::v1::{
    ripcord_client::RipcordClient, watch_response::Event, WatchRequest,
};
use tokio::sync::mpsc;

fn rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, grpc, http, server_key, admin_key, pid, streams, changes] = args.as_slice() else {
        return Err("usage: fanout <grpc url> <http url> <server key> <admin key> <server pid> <streams> <changes>".into());
    };
    let streams: usize = streams.parse()?;
    let changes: usize = changes.parse()?;
    let before = rss_mib(pid);

    // (stream, revision, when it arrived)
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {server_key}").parse()?;
    for stream in 0..streams {
        let channel = tonic::transport::Endpoint::from_shared(grpc.clone())?
            .connect()
            .await?;
        let mut request = tonic::Request::new(WatchRequest { known_revision: 0 });
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
        let mut watch = RipcordClient::new(channel)
            .watch(request)
            .await?
            .into_inner();
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = watch.message().await {
                if !matches!(message.event, Some(Event::Heartbeat(_))) {
                    let _ = arrivals.send((stream, message.revision, Instant::now()));
                }
            }
        });
    }
    let mut revision = 0;
    for _ in 0..streams {
        let (_, first, _) = arrived.recv().await.ok_or("a stream ended")?;
        revision = revision.max(first);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mib(pid);
    println!(
        "{streams} streams open: server RSS {before:.1} MiB before, {after:.1} MiB after ({:.1} KiB per stream)",
        (after - before) * 1024.0 / streams as f64
    );

    let http_client = reqwest::Client::new();
    let mut worst = Vec::new();
    let mut within = 0usize;
    for change in 0..changes {
        let url = format!("{http}/api/v1/environments/default/flags/flag-00000/enabled");
        let started = Instant::now();
        let response = http_client
            .put(url)
            .bearer_auth(admin_key)
            .json(&serde_json::json!({ "enabled": change % 2 == 1 }))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("the admin write failed: {}", response.status()).into());
        }
        revision += 1;
        let mut seen = vec![false; streams];
        let mut latencies = Vec::with_capacity(streams);
        while latencies.len() < streams {
            let (stream, at, when) = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
                .await?
                .ok_or("a stream ended")?;
            if at >= revision && !seen[stream] {
                seen[stream] = true;
                latencies.push(when - started);
            }
        }
        latencies.sort_unstable();
        within += latencies
            .iter()
            .filter(|latency| **latency <= Duration::from_millis(200))
            .count();
        let slowest = latencies[latencies.len() - 1];
        println!(
            "change {change}: every stream had it after {slowest:?} (median {:?})",
            latencies[latencies.len() / 2]
        );
        worst.push(slowest);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worst.sort_unstable();
    println!(
        "{within} of {} deliveries within 200 ms; slowest change reached every stream in {:?}",
        streams * changes,
        worst.last().copied().unwrap_or_default()
    );
    Ok(())
}
