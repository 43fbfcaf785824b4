//! A client that tries to make the gRPC port hold memory: it opens connections and, on each,
//! as many calls as the server lets it, sending headers and never a body. It holds them
//! for a while, reports what the server did with them, and closes everything.
//!
//! Run by `scripts/grpc-abuse.sh`, which reads the server's memory meanwhile:
//! `grpc_abuse <host:port> <connections> <streams per connection> <hold seconds> [key]`.
//! Only for a server on a loopback address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Outcome {
    sent: usize,
    /// The server answered (a refusal or, for a key, the end of the call at its timeout).
    answered: usize,
    /// The server reset the stream (REFUSED_STREAM beyond its stream limit, say).
    reset: usize,
    /// The client had to wait for a free stream: the server's limit was reached.
    held_back: bool,
    failed: Option<String>,
}

async fn connection(
    address: SocketAddr,
    streams: usize,
    key: Option<String>,
    hold: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    let tcp = match tokio::net::TcpStream::connect(address).await {
        Ok(tcp) => tcp,
        Err(error) => {
            outcome.failed = Some(format!("connect: {error}"));
            return outcome;
        }
    };
    let (mut client, driver) = match h2::client::Builder::new()
        .max_concurrent_reset_streams(usize::MAX)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
    {
        Ok(pair) => pair,
        Err(error) => {
            outcome.failed = Some(format!("handshake: {error}"));
            return outcome;
        }
    };
    let driver = tokio::spawn(driver);
    let started = Instant::now();
    let mut pending = Vec::with_capacity(streams);
    for _ in 0..streams {
        client = match tokio::time::timeout(Duration::from_secs(1), client.clone().ready()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                outcome.failed = Some(format!("ready: {error}"));
                break;
            }
            Err(_) => {
                outcome.held_back = true;
                break;
            }
        };
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{address}/ripcord.v1.Ripcord/Evaluate"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(key) = &key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let Ok(request) = request.body(()) else {
            break;
        };
        match client.send_request(request, false) {
            Ok((response, body)) => {
                outcome.sent += 1;
                pending.push((response, body));
            }
            Err(error) => {
                outcome.failed = Some(format!("send: {error}"));
                break;
            }
        }
        if started.elapsed() > hold {
            break;
        }
    }
    let deadline = started + hold;
    let mut bodies = Vec::with_capacity(pending.len());
    for (response, body) in pending {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response).await {
            Ok(Ok(_)) => outcome.answered += 1,
            Ok(Err(_)) => outcome.reset += 1,
            Err(_) => {}
        }
        bodies.push(body);
    }
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    drop(bodies);
    drop(client);
    driver.abort();
    outcome
}

#[tokio::main]
async fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let usage = "usage: grpc_abuse <host:port> <connections> <streams per connection> \
                 <hold seconds> [key]";
    let (Some(address), Some(connections), Some(streams), Some(hold)) = (
        arguments.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        arguments.get(2).and_then(|a| a.parse::<usize>().ok()),
        arguments.get(3).and_then(|a| a.parse::<usize>().ok()),
        arguments.get(4).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    if !address.ip().is_loopback() {
        eprintln!("grpc_abuse only runs against a loopback address");
        std::process::exit(2);
    }
    let key = arguments.get(5).cloned();
    let hold = Duration::from_secs(hold);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(address, streams, key.clone(), hold)))
        .collect();
    let mut total = Outcome::default();
    let mut held_back = 0;
    for task in tasks {
        let Ok(outcome) = task.await else { continue };
        total.sent += outcome.sent;
        total.answered += outcome.answered;
        total.reset += outcome.reset;
        held_back += usize::from(outcome.held_back);
        if total.failed.is_none() {
            total.failed = outcome.failed;
        }
    }
    println!(
        "streams sent {} answered {} reset {} unanswered {}; connections held back by the \
         stream limit {held_back}/{connections}{}",
        total.sent,
        total.answered,
        total.reset,
        total.sent - total.answered - total.reset,
        total
            .failed
            .map(|failure| format!("; first failure: {failure}"))
            .unwrap_or_default()
    );
}
