//! Load for `POST /api/v1/metrics`: a fixed number of connections, each posting batches of
//! observations back to back for a fixed time, then the accepted observations per second
//! and the latency of a batch (which includes the server's flush to disk).
//!
//! Run by `scripts/bench-ingest.sh`, pinned to the core the server does not use:
//! `ingest_load <url> <key> <flag> <stage> <connections> <batch size> <seconds> <timestamp>`,
//! the timestamp (RFC 3339) going into every observation.
//! The flag's ramp must be running at `stage`, guarding `checkout_latency_ms` (value) and
//! `crash_rate` (rate); otherwise every observation is rejected, and the run says so.

use std::time::{Duration, Instant};

/// Deterministic uniform numbers in [0, 1) (SplitMix64).
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A batch as an SDK sends it: 70% latencies, 30% crash flags, both cohorts, with units and
/// timestamps.
fn batch(seed: u64, flag: &str, stage: u64, size: usize, timestamp: &str) -> Vec<u8> {
    let mut numbers = Numbers(seed);
    let observations: Vec<serde_json::Value> = (0..size)
        .map(|index| {
            let cohort = if numbers.next() < 0.5 {
                "treatment"
            } else {
                "control"
            };
            let (metric, value) = if numbers.next() < 0.7 {
                let normal: f64 = (0..12).map(|_| numbers.next()).sum::<f64>() - 6.0;
                let latency = 100.0 * (0.5 * normal).exp();
                ("checkout_latency_ms", (latency * 10.0).round() / 10.0)
            } else {
                ("crash_rate", f64::from(u8::from(numbers.next() < 0.02)))
            };
            serde_json::json!({
                "flag": flag,
                "metric": metric,
                "value": value,
                "cohort": cohort,
                "stage": stage,
                "unit": format!("user-{}", seed * 1_000_000 + index as u64),
                "timestamp": timestamp,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "observations": observations }))
        .expect("JSON serializes")
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    accepted: u64,
    rejected: u64,
    failed: u64,
    reasons: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, flag, stage, connections, size, seconds, timestamp] = args.as_slice() else {
        return Err("usage: ingest_load <url> <key> <flag> <stage> <connections> <batch size> <seconds> <timestamp>".into());
    };
    let stage: u64 = stage.parse()?;
    let connections: usize = connections.parse()?;
    let size: usize = size.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    // Built before the clock starts, so that the load measures the server, not this.
    let bodies: Vec<Vec<u8>> = (0..32)
        .map(|seed| batch(seed, flag, stage, size, timestamp))
        .collect();
    let endpoint = format!("{url}/api/v1/metrics");

    let mut workers = Vec::new();
    for worker in 0..connections {
        // One client per connection: each keeps one HTTP/1.1 connection alive.
        let client = reqwest::Client::builder().no_proxy().build()?;
        let (endpoint, key, bodies) = (endpoint.clone(), key.clone(), bodies.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let started = Instant::now();
            let mut next = worker;
            while started.elapsed() < duration {
                let body = bodies[next % bodies.len()].clone();
                next += 1;
                let sent = Instant::now();
                let response = client
                    .post(&endpoint)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let answer = match response {
                    Ok(response) if response.status().is_success() => {
                        response.json::<serde_json::Value>().await.ok()
                    }
                    Ok(response) => {
                        if tally.reasons.len() < 3 {
                            let status = response.status();
                            let text = response.text().await.unwrap_or_default();
                            tally.reasons.push(format!("{status}: {text}"));
                        }
                        None
                    }
                    Err(error) => {
                        if tally.reasons.len() < 3 {
                            tally.reasons.push(error.to_string());
                        }
                        None
                    }
                };
                let Some(answer) = answer else {
                    tally.failed += 1;
                    continue;
                };
                tally.latencies.push(sent.elapsed());
                tally.accepted += answer["accepted"].as_u64().unwrap_or(0);
                let rejected = answer["rejected"].as_array().cloned().unwrap_or_default();
                tally.rejected += rejected.len() as u64;
                if let Some(first) = rejected.first() {
                    if tally.reasons.len() < 3 {
                        tally.reasons.push(first["reason"].to_string());
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        total.latencies.extend(tally.latencies);
        total.accepted += tally.accepted;
        total.rejected += tally.rejected;
        total.failed += tally.failed;
        total.reasons.extend(tally.reasons);
    }
    total.latencies.sort_unstable();
    let percentile = |p: f64| {
        total
            .latencies
            .get(
                ((total.latencies.len() as f64 * p) as usize)
                    .min(total.latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
    };
    println!(
        "batches: {} of {size}  failed: {}  accepted: {}  rejected: {}  throughput: {:.0} accepted observations/s",
        total.latencies.len(),
        total.failed,
        total.accepted,
        total.rejected,
        total.accepted as f64 / duration.as_secs_f64()
    );
    println!(
        "batch latency p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        total.latencies.last().copied().unwrap_or_default()
    );
    total.reasons.truncate(3);
    for reason in &total.reasons {
        println!("a refusal or rejection: {reason}");
    }
    if total.accepted == 0 {
        return Err(
            "no observation was accepted: is the flag's ramp running at that stage?".into(),
        );
    }
    Ok(())
}
