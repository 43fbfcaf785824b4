//! Stopping under load: requests that race SIGTERM on keep-alive connections are answered,
//! or refused before they are sent, never reset.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Server;

const DOCUMENT: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "on"
"#;

/// What one client saw: answers, and how its requests stopped.
struct Seen {
    answered: usize,
    /// Requests that failed in any way other than a refused connection.
    broken: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_racing_sigterm_on_keep_alive_connections_are_answered_or_refused() {
    let mut server = Server::start_with(&[], DOCUMENT).await;
    let key = server
        .create_key("backend", "server", Some("default"))
        .await;
    let url = server.url("/ofrep/v1/evaluate/flags/checkout");
    let signalled = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));

    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            let token = key.token.clone();
            let signalled = Arc::clone(&signalled);
            let busy = Arc::clone(&busy);
            tokio::spawn(async move {
                // One keep-alive connection per client, reused for every request.
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("an HTTP client");
                let mut seen = Seen {
                    answered: 0,
                    broken: Vec::new(),
                };
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(20) {
                    let sent = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"context": {"targetingKey": "user-1"}}))
                        .send()
                        .await;
                    match sent {
                        Ok(response) => {
                            let status = response.status();
                            match response.bytes().await {
                                Ok(_) if status.is_success() => {
                                    if seen.answered == 0 {
                                        busy.fetch_add(1, Ordering::SeqCst);
                                    }
                                    seen.answered += 1;
                                }
                                Ok(body) => {
                                    seen.broken.push(format!("answered {status}: {body:?}"))
                                }
                                Err(error) => seen.broken.push(format!("{error:?}")),
                            }
                        }
                        // The listening socket is shut: the request was never sent.
                        Err(error) if error.is_connect() => {
                            assert!(
                                signalled.load(Ordering::SeqCst),
                                "refused before the stop: {error:?}"
                            );
                            break;
                        }
                        Err(error) => {
                            seen.broken.push(format!("{error:?}"));
                            break;
                        }
                    }
                }
                seen
            })
        })
        .collect();

    // Every client is busy on its connection when the signal comes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while busy.load(Ordering::SeqCst) < clients.len() {
        assert!(
            Instant::now() < deadline,
            "the clients never all got answers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    signalled.store(true, Ordering::SeqCst);
    server.send_sigterm();
    let (_server, exited) = tokio::task::spawn_blocking(move || {
        let exited = server.wait_for_exit();
        (server, exited)
    })
    .await
    .expect("waiting for the server");
    assert!(
        exited.status.success(),
        "the server stops cleanly: {:?}",
        exited.status
    );

    let mut answered = 0;
    let mut broken = Vec::new();
    for client in clients {
        let seen = client.await.expect("a client");
        answered += seen.answered;
        broken.extend(seen.broken);
    }
    assert!(answered > 16, "the clients were busy: {answered} answers");
    assert!(
        broken.is_empty(),
        "{} requests failed other than by a refused connection: {broken:#?}",
        broken.len()
    );
}

/// A load balancer probing readiness on a kept-alive connection learns that the node is
/// stopping, and sends its traffic elsewhere, rather than finding it ready until the port
/// refuses connections.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_says_draining_once_the_server_is_stopping() {
    let mut server = Server::start_with(&[], DOCUMENT).await;
    let url = server.url("/readyz");
    // Two probes, each on a kept-alive connection of its own. A probe whose request is
    // answered just as the stop begins may get `ready` with `Connection: close` (the
    // handler answered before the stop, the answer left after it): its connection is then
    // gone, and the other probe, whose connection is still open, asks again.
    let mut probes = Vec::new();
    for _ in 0..2 {
        let probe = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let ready = probe.get(&url).send().await.expect("/readyz answers");
        assert_eq!(ready.status(), 200);
        ready.bytes().await.expect("the answer's body");
        probes.push(probe);
    }

    server.send_sigterm();
    let started = Instant::now();
    let mut probes = probes.into_iter();
    let mut probe = probes.next().expect("a probe");
    let draining = loop {
        // Until the stop begins the probe's connection is kept alive and answered `ready`;
        // the first answer after it must say `draining`, before any connection is refused.
        let answer =
            probe.get(&url).send().await.unwrap_or_else(|error| {
                panic!("/readyz failed before it said draining: {error:?}")
            });
        let status = answer.status();
        let closing = answer
            .headers()
            .get(reqwest::header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = answer.text().await.expect("the answer's body");
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        if closing {
            probe = probes
                .next()
                .expect("both probes' answers raced the start of the stop");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/readyz still says ready 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let draining: serde_json::Value = serde_json::from_str(&draining).expect("a JSON answer");
    assert_eq!(draining, json!({"status": "draining"}));
    server.wait_for_exit();
}
