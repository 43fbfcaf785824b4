//! An app phoning home: the server evaluates its flags for this device, the answer is
//! cached in a file, and the next start serves from that file at once, even offline. The
//! app then reports whether its session crashed, for the guards of a ramp.
//!
//! `RIPCORD_URL=http://localhost:8080 RIPCORD_CLIENT_KEY=... cargo run -p ripcord-sdk --example phone_home -- flags-cache.json`

use std::time::Duration;

use ripcord_sdk::{Context, Details, Refreshed, RemoteClient, Source};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RIPCORD_URL").map_err(|_| "set RIPCORD_URL")?;
    let key = std::env::var("RIPCORD_CLIENT_KEY").map_err(|_| "set RIPCORD_CLIENT_KEY")?;
    let cache = std::env::args()
        .nth(1)
        .ok_or("usage: phone_home <cache file>")?;
    let device: Context = [
        ("targetingKey", json!("device-7")),
        ("platform", json!("ios")),
        ("appVersion", json!("4.3.1")),
    ]
    .into_iter()
    .collect();
    let client = RemoteClient::builder(url, key)
        .context(device)
        .cache_file(&cache)
        .request_timeout(Duration::from_secs(3))
        .build()?;
    if client.status().source == Some(Source::Cache) {
        println!(
            "start: serving {} flags from the cache",
            client.flag_keys().len()
        );
    } else {
        println!("start: no cache yet");
    }
    // The start-up refresh runs in the background; this one waits, and tells.
    match client.refresh().await {
        Ok(Refreshed::Updated) => println!("refresh: updated"),
        Ok(Refreshed::NotModified) => println!("refresh: not modified"),
        Err(error) => println!("refresh failed: {error}"),
    }
    if !client.is_ready() {
        return Err("no cache and no server: nothing to serve".into());
    }
    for key in client.flag_keys() {
        println!("flag {key} = {}", describe(&client, &key));
    }

    // Reported against the cohort the app was last served for the flag (read above); a
    // session without a crash is reported too, as `false`.
    client.track_rate("new-checkout", "app_crashed", false);
    if let Err(error) = client.flush().await {
        println!("tracking: not sent: {error}");
    }
    let tracking = client.status().tracking;
    println!(
        "tracking: {} sent, {} untagged; instance {}",
        tracking.sent,
        tracking.untagged,
        client.instance_id()
    );
    Ok(())
}

/// The flag's value in whichever type it has.
fn describe(client: &RemoteClient, key: &str) -> String {
    fn shown<T: serde::Serialize>(details: Details<T>) -> Option<String> {
        details.error_code.is_none().then(|| {
            format!(
                "{} ({}, revision {})",
                serde_json::to_string(&details.value).unwrap_or_default(),
                details.reason.as_str(),
                details.metadata.revision
            )
        })
    }
    let fallback = client.get_bool_details(key, false);
    shown(fallback.clone())
        .or_else(|| shown(client.get_int_details(key, 0)))
        .or_else(|| shown(client.get_float_details(key, 0.0)))
        .or_else(|| shown(client.get_string_details(key, "")))
        .or_else(|| shown(client.get_json_details(key, json!({}))))
        .unwrap_or_else(|| {
            format!(
                "error {}",
                fallback.error_code.map_or("GENERAL", |code| code.as_str())
            )
        })
}
