//! A backend service evaluating locally: follows the server's ruleset over gRPC, waits
//! until it has one, evaluates every flag for a sample user and prints the answers; then
//! reports how the user's checkout went, for the guards of the flag's ramp.
//!
//! `RIPCORD_GRPC_URL=http://localhost:50051 RIPCORD_SERVER_KEY=... cargo run -p ripcord-sdk --example backend`

use std::time::Duration;

use ripcord_engine::FlagType;
use ripcord_sdk::{Context, Details, LocalClient, Tracked};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RIPCORD_GRPC_URL").map_err(|_| "set RIPCORD_GRPC_URL")?;
    let key = std::env::var("RIPCORD_SERVER_KEY").map_err(|_| "set RIPCORD_SERVER_KEY")?;
    let client = LocalClient::builder()
        .server(url, key)
        // Names this process in the ramp's kill reach; a pod name is a good choice.
        .instance_id(std::env::var("HOSTNAME").unwrap_or_else(|_| "backend-example".into()))
        .build()?;
    client.wait_ready(Duration::from_secs(10)).await?;
    let status = client.status();
    println!("ready at revision {}", status.revision.unwrap_or(0));

    let user: Context = [
        ("targetingKey", json!("user-42")),
        ("userId", json!("user-42")),
        ("email", json!("ana@example.com")),
        ("country", json!("DE")),
    ]
    .into_iter()
    .collect();
    let snapshot = client.snapshot().ok_or("ready means a snapshot")?;
    for flag in snapshot.flags() {
        let key = flag.key();
        let line = match flag.flag_type() {
            FlagType::Boolean => describe(client.get_bool_details(key, &user, false)),
            FlagType::String => describe(client.get_string_details(key, &user, "")),
            FlagType::Integer => describe(client.get_int_details(key, &user, 0)),
            FlagType::Float => describe(client.get_float_details(key, &user, 0.0)),
            FlagType::Object => describe(client.get_json_details(key, &user, json!({}))),
        };
        println!("flag {key} = {line}");
    }

    // What the user experienced, for the guards of `new-checkout`'s ramp: tagged with the
    // cohort the evaluation above put the user in, aggregated per user per flush window.
    // A user in no cohort (no ramp running, or outside both cohorts) is not reported.
    let outcomes = [
        client.track("new-checkout", &user, "checkout_latency_ms", 182.0),
        client.track("new-checkout", &user, "checkout_failed", 0.0),
    ];
    let recorded = outcomes
        .iter()
        .filter(|outcome| **outcome == Tracked::Recorded)
        .count();
    println!("tracking: {recorded} of {} recorded", outcomes.len());
    // Sent every 10 s in the background; a service that stops sends what is left first.
    if let Err(error) = client.flush().await {
        println!("tracking: not sent: {error}");
    }
    let tracking = client.status().tracking;
    println!(
        "tracking: {} sent, {} accepted, {} untagged",
        tracking.sent, tracking.accepted, tracking.untagged
    );
    client.close();
    Ok(())
}

fn describe<T: serde::Serialize>(details: Details<T>) -> String {
    let value = serde_json::to_string(&details.value).unwrap_or_default();
    match details.error_code {
        Some(code) => format!("{value} (error {})", code.as_str()),
        None => format!(
            "{value} ({}, variant {}, revision {})",
            details.reason.as_str(),
            details.variant.unwrap_or_default(),
            details.metadata.revision
        ),
    }
}
