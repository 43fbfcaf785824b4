//! Streams at scale: many streams of one kind on one server, each on its own connection as
//! separate SDK instances or browsers would be. Reports what an idle stream costs the
//! server (resident memory before and after they connect and have read their opening), then
//! makes changes through the admin API and reports how long each stream took to receive
//! each one, over every delivery.
//!
//! Kinds: `sse` (`/api/v1/sdk/stream`, server key), `ofrep` (`/ofrep/v1/events`, the channel
//! a client key's bulk evaluation advertises), `watch` (gRPC `Watch`, server key), `flagd`
//! (flagd's `EventStream` on the gRPC port, server key; the server needs
//! `RIPCORD_FLAGD_ENVIRONMENT`). Two more
//! split what a `Watch` on a connection of its own costs, for idle measurements only (no
//! changes): `watch-shared` opens the `Watch` streams 100 to a connection (the server's
//! default limit), on connections opened before the first reading of memory, so the figure
//! is the stream's alone; `grpc-connection` opens HTTP/2 connections and no call.
//!
//! `STREAMS_HOLD=<seconds>` keeps the streams open that long after the memory reading, for
//! a heap profiler attached to the server to see them.
//!
//! Run by `scripts/bench-streams.sh`:
//! `streams <kind> <http url> <grpc url> <server key> <client key> <admin key> <server pid>
//! <streams> <changes>`. Every wait is bounded: a stream that does not deliver within 30 s
//! fails the run. For `sse`, the HTTP URL may be several, comma-separated (nodes sharing a
//! store, as `scripts/bench-redis.sh` runs them): the streams are spread over them and the
//! changes are made on the first.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use ripcord_proto::pb::flagd::evaluation::v1 as flagd_v1;
use ripcord_proto::pb::ripcord::v1::{
    ripcord_client::RipcordClient, watch_response::Event, WatchRequest,
};
use tokio::sync::mpsc;

type Arrivals = mpsc::UnboundedSender<(usize, u64, Instant)>;
type Error = Box<dyn std::error::Error + Send + Sync>;

const PATIENCE: Duration = Duration::from_secs(30);
/// Connections opened at once: the listen backlog would drop a burst of thousands.
const OPENING: usize = 200;
/// `watch-shared` streams on one connection: `RIPCORD_GRPC_MAX_STREAMS_PER_CONNECTION`'s
/// default.
const STREAMS_PER_CONNECTION: usize = 100;

fn rss_kib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Follows a server-sent events stream, telling `arrivals` the `id` of every event.
async fn sse(
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    stream: usize,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let mut response = request.send().await?;
    if !response.status().is_success() {
        return Err(format!("stream {stream}: {}", response.status()).into());
    }
    Ok(tokio::spawn(async move {
        // Only the start of each line is kept: a ruleset's data line need not be.
        let mut line = Vec::with_capacity(32);
        while let Ok(Some(chunk)) = response.chunk().await {
            for &byte in chunk.iter() {
                if byte != b'\n' {
                    if line.len() < 32 {
                        line.push(byte);
                    }
                    continue;
                }
                if let Some(id) = line.strip_prefix(b"id: ") {
                    if let Some(revision) = std::str::from_utf8(id)
                        .ok()
                        .and_then(|id| id.trim().parse().ok())
                    {
                        let _ = arrivals.send((stream, revision, Instant::now()));
                    }
                }
                line.clear();
            }
        }
    }))
}

async fn connect(grpc: String) -> Result<tonic::transport::Channel, Error> {
    Ok(tonic::transport::Endpoint::from_shared(grpc)?
        .connect()
        .await?)
}

/// A gRPC call's request, with the key.
fn with_key<T>(message: T, key: &str) -> Result<tonic::Request<T>, Error> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    Ok(request)
}

async fn watch(
    grpc: String,
    key: String,
    stream: usize,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    watch_on(connect(grpc).await?, key, stream, arrivals).await
}

async fn watch_on(
    channel: tonic::transport::Channel,
    key: String,
    stream: usize,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let request = with_key(WatchRequest { known_revision: 0 }, &key)?;
    let mut watch = RipcordClient::new(channel)
        .watch(request)
        .await?
        .into_inner();
    Ok(tokio::spawn(async move {
        while let Ok(Some(message)) = watch.message().await {
            if !matches!(message.event, Some(Event::Heartbeat(_))) {
                let _ = arrivals.send((stream, message.revision, Instant::now()));
            }
        }
    }))
}

/// Follows flagd's `EventStream` on a connection of its own. Its events carry no revision:
/// `provider_ready` counts as the opening (0) and each `configuration_change` as the next
/// change, which is what the changes made here are.
async fn flagd(
    grpc: String,
    key: String,
    stream: usize,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let request = with_key(flagd_v1::EventStreamRequest {}, &key)?;
    let mut events = flagd_v1::service_client::ServiceClient::new(connect(grpc).await?)
        .event_stream(request)
        .await?
        .into_inner();
    Ok(tokio::spawn(async move {
        let mut changes = 0;
        while let Ok(Some(event)) = events.message().await {
            let counted = match event.r#type.as_str() {
                "provider_ready" => Some(0),
                "configuration_change" => {
                    changes += 1;
                    Some(changes)
                }
                _ => None,
            };
            if let Some(at) = counted {
                let _ = arrivals.send((stream, at, Instant::now()));
            }
        }
    }))
}

/// The OFREP event stream's URL, as a client key's bulk evaluation advertises it.
async fn ofrep_url(client: &reqwest::Client, http: &str, key: &str) -> Result<String, Error> {
    let bulk: serde_json::Value = client
        .post(format!("{http}/ofrep/v1/evaluate/flags"))
        .bearer_auth(key)
        .json(&serde_json::json!({"context": {"targetingKey": "bench"}}))
        .send()
        .await?
        .json()
        .await?;
    let uri = bulk["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .ok_or_else(|| format!("no event stream in {bulk}"))?;
    Ok(format!("{http}{uri}"))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, http, grpc, server_key, client_key, admin_key, pid, streams, changes] =
        args.as_slice()
    else {
        return Err(
            "usage: streams <sse|ofrep|watch|watch-shared|grpc-connection> <http url> <grpc url> <server key> \
                    <client key> <admin key> <server pid> <streams> <changes>"
                .into(),
        );
    };
    let streams: usize = streams.parse()?;
    let changes: usize = changes.parse()?;
    let nodes: Vec<String> = http.split(',').map(str::to_string).collect();
    let http = &nodes[0];
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()?;
    let ofrep = match kind.as_str() {
        "ofrep" => Some(ofrep_url(&client, http, client_key).await?),
        _ => None,
    };
    if changes > 0 && matches!(kind.as_str(), "watch-shared" | "grpc-connection") {
        return Err(format!("`{kind}` measures idle streams only").into());
    }
    let mut connections = Vec::new();
    if kind == "watch-shared" {
        for _ in 0..streams.div_ceil(STREAMS_PER_CONNECTION) {
            connections.push(connect(grpc.clone()).await?);
        }
    }
    let before = rss_kib(pid);

    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let opened = futures_util::stream::iter(0..streams)
        .map(|stream| {
            let arrivals = arrivals.clone();
            let client = client.clone();
            let connection = connections.get(stream / STREAMS_PER_CONNECTION).cloned();
            let (kind, http, grpc, key, ofrep) = (
                kind.clone(),
                nodes[stream % nodes.len()].clone(),
                grpc.clone(),
                server_key.clone(),
                ofrep.clone(),
            );
            async move {
                match kind.as_str() {
                    "sse" => {
                        let url = format!("{http}/api/v1/sdk/stream");
                        sse(client, url, Some(key), stream, arrivals).await
                    }
                    "ofrep" => {
                        let url = ofrep.ok_or("no OFREP stream URL")?;
                        sse(client, url, None, stream, arrivals).await
                    }
                    "watch" => watch(grpc, key, stream, arrivals).await,
                    "flagd" => flagd(grpc, key, stream, arrivals).await,
                    "watch-shared" => {
                        let connection = connection.ok_or("no connection")?;
                        watch_on(connection, key, stream, arrivals).await
                    }
                    "grpc-connection" => {
                        let connection = connect(grpc).await?;
                        // Open: nothing more to read.
                        let _ = arrivals.send((stream, 0, Instant::now()));
                        Ok(tokio::spawn(async move {
                            let _open = connection;
                            std::future::pending::<()>().await
                        }))
                    }
                    other => Err(format!("unknown kind `{other}`").into()),
                }
            }
        })
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await;
    let mut tasks = Vec::with_capacity(streams);
    for task in opened {
        tasks.push(task?);
    }
    drop(arrivals);
    // Every stream has read its opening.
    let mut revision = 0;
    let mut opened = vec![false; streams];
    let mut count = 0;
    while count < streams {
        let (stream, at, _) = tokio::time::timeout(PATIENCE, arrived.recv())
            .await?
            .ok_or("a stream ended")?;
        revision = revision.max(at);
        if !opened[stream] {
            opened[stream] = true;
            count += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "{kind}: {streams} idle streams: server RSS {:.1} MiB before, {:.1} MiB after: {:.1} KiB per stream",
        before / 1024.0,
        after / 1024.0,
        (after - before) / streams as f64
    );

    if let Some(hold) = std::env::var("STREAMS_HOLD")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
    {
        println!("holding the streams open for {hold} s");
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    let mut all = Vec::with_capacity(streams * changes);
    for change in 0..changes {
        let url = format!("{http}/api/v1/environments/default/flags/flag-00000/enabled");
        let started = Instant::now();
        let response = client
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
            let (stream, at, when) = tokio::time::timeout(PATIENCE, arrived.recv())
                .await?
                .ok_or("a stream ended")?;
            if at >= revision && !seen[stream] {
                seen[stream] = true;
                latencies.push(when - started);
            }
        }
        latencies.sort_unstable();
        println!(
            "change {change}: p50 {:?}, p99 {:?}, every stream after {:?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );
        all.extend(latencies);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    all.sort_unstable();
    if !all.is_empty() {
        println!(
            "{kind}: {} deliveries to {streams} streams: p50 {:?}, p99 {:?}, max {:?}",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all[all.len() - 1]
        );
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}
