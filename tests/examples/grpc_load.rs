//! Load for gRPC `Evaluate`: a fixed number of requests in flight over a few HTTP/2
//! connections for a fixed time, then throughput and latency percentiles. Each request
//! carries a new unit, so the server buckets a new user every time, as under real traffic.
//!
//! Run by `scripts/bench-delivery.sh`, pinned to the core the server does not use:
//! `grpc_load <url> <key> <flag> <connections> <in-flight per connection> <seconds>`.

use std::time::{Duration, Instant};

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use ripcord_proto::pb::ripcord::v1::{ripcord_client::RipcordClient, EvaluateRequest};
use tonic::metadata::MetadataValue;

fn text(value: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(value)),
    }
}

fn context(unit: u64) -> Struct {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("targetingKey".to_string(), text(format!("user-{unit}")));
    fields.insert("userId".to_string(), text(format!("user-{unit}")));
    fields.insert("country".to_string(), text("CA".to_string()));
    fields.insert("appVersion".to_string(), text("3.1.0".to_string()));
    fields.insert("plan".to_string(), text("free".to_string()));
    fields.insert("email".to_string(), text(format!("u{unit}@mail.test")));
    Struct {
        fields: fields.into_iter().collect(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, flag, connections, in_flight, seconds] = args.as_slice() else {
        return Err("usage: grpc_load <url> <key> <flag> <connections> <in-flight per connection> <seconds>".into());
    };
    let connections: usize = connections.parse()?;
    let in_flight: usize = in_flight.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    let authorization: MetadataValue<_> = format!("Bearer {key}").parse()?;

    let mut workers = Vec::new();
    for connection in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await?;
        for slot in 0..in_flight {
            let mut client = RipcordClient::new(channel.clone());
            let (flag, authorization) = (flag.clone(), authorization.clone());
            let worker = (connection * in_flight + slot) as u64;
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let started = Instant::now();
                let mut unit = worker << 40;
                while started.elapsed() < duration {
                    unit += 1;
                    let mut request = tonic::Request::new(EvaluateRequest {
                        flag_key: flag.clone(),
                        context: Some(context(unit)),
                    });
                    request
                        .metadata_mut()
                        .insert("authorization", authorization.clone());
                    let sent = Instant::now();
                    match client.evaluate(request).await {
                        Ok(response) if response.get_ref().error_code.is_empty() => {
                            latencies.push(sent.elapsed())
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mine, failed) = worker.await?;
        latencies.extend(mine);
        errors += failed;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "requests: {}  errors: {errors}  throughput: {:.0} req/s",
        latencies.len(),
        latencies.len() as f64 / duration.as_secs_f64()
    );
    println!(
        "latency p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}
