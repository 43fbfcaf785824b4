//! Ramps on several nodes sharing one Redis: observations posted to any node are judged
//! together, one controller decides, and when the node holding its lease dies another node
//! goes on with the ramp and pulls the ripcord once; a kill's reach counts the instances
//! every node served.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Server;
use crate::ramps::{fetch_as, past_warm_up, post_errors_from, status, wait_for, RAMP, RAMPED};
use crate::redis::RedisServer;

/// A node on `redis` whose controller looks every second and holds its lease for three.
async fn node(redis: &RedisServer) -> Server {
    Server::builder()
        .env("RIPCORD_STORE", redis.url())
        .env("RIPCORD_RAMP_TICK", "1s")
        .env("RIPCORD_RAMP_LEASE", "3s")
        .start()
        .await
}

async fn kill_incidents(server: &Server) -> Vec<Value> {
    let incidents = server
        .admin_get("/api/v1/incidents?flag=new-checkout")
        .await
        .expect_status(200)
        .json();
    incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|incident| incident["action"] == "kill")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn observations_posted_to_every_node_are_judged_together_and_seen_on_all() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis).await;
    a.import_yaml("default", RAMPED).await.expect_status(200);
    let (b, c) = (node(&redis).await, node(&redis).await);
    let client = b.create_key("app", "client", Some("default")).await;
    b.admin_post(&format!("{RAMP}/start"), json!({"reason": "release 4.2"}))
        .await
        .expect_status(200);

    // Apps phone home through different nodes.
    fetch_as(&a, &client.token, "phone-a").await;
    fetch_as(&c, &client.token, "phone-c").await;

    past_warm_up(&c).await;
    // A third of the data through each node: 200 per cohort is under the guard's 500, so no
    // node's share could be judged alone.
    for (server, prefix) in [(&a, "a-"), (&b, "b-"), (&c, "c-")] {
        post_errors_from(server, &client.token, prefix, 0, 200, [60, 2]).await;
    }
    let killed = wait_for(&c, Duration::from_secs(20), |status| {
        status["status"] == "killed"
    })
    .await;
    let evidence = &killed["guards"][0]["evidence"];
    assert_eq!(evidence["n_treatment"], json!(600), "{killed:#}");
    assert_eq!(evidence["n_control"], json!(600), "{killed:#}");

    for server in [&a, &b, &c] {
        assert_eq!(status(server).await["status"], "killed");
        assert_eq!(kill_incidents(server).await.len(), 1);
        let evaluation = server
            .evaluate(&client.token, "new-checkout", json!({"targetingKey": "u"}))
            .await
            .expect_status(200)
            .json();
        assert_eq!(evaluation["reason"], "DISABLED", "{evaluation}");
    }

    // The reach counts both phones, whichever node served them, once the nodes have shared
    // what they saw (every 2 s).
    let started = Instant::now();
    loop {
        let reach = status(&b).await["reach"].clone();
        if reach == json!({"active": 2, "fetched": 0}) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the reach on node B counts the phones of A and C: {reach}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_holding_the_lease_dies_and_another_pulls_the_ripcord_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The first node's controller takes the lease at start and renews it every second;
    // the others start after it and only follow.
    let mut first = node(&redis).await;
    first
        .import_yaml("default", RAMPED)
        .await
        .expect_status(200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (second, third) = (node(&redis).await, node(&redis).await);
    let client = second.create_key("app", "client", Some("default")).await;
    second
        .admin_post(&format!("{RAMP}/start"), json!({"reason": "release 4.3"}))
        .await
        .expect_status(200);

    let exited = first.kill();
    assert!(
        exited
            .stdout
            .iter()
            .chain(&exited.stderr)
            .any(|line| line.contains("this node's ramp controller took the lease")),
        "the first node held the lease when it died"
    );
    past_warm_up(&second).await;
    let posted = Instant::now();
    post_errors_from(&second, &client.token, "second-", 0, 300, [90, 3]).await;
    post_errors_from(&third, &client.token, "third-", 0, 300, [90, 3]).await;
    wait_for(&third, Duration::from_secs(20), |status| {
        status["status"] == "killed"
    })
    .await;
    let took = posted.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "killed {took:?} after the data: the lease (3 s) and a few ticks should do"
    );

    let incidents = kill_incidents(&second).await;
    assert_eq!(incidents.len(), 1, "one kill, one incident: {incidents:#?}");
    let kills = second
        .admin_get("/api/v1/audit?flag=new-checkout")
        .await
        .expect_status(200)
        .json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "ramp.kill")
        .count();
    assert_eq!(kills, 1);

    // The dead node comes back: it finds the kill done and adds nothing.
    first.start_again().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(kill_incidents(&first).await.len(), 1);
    assert_eq!(status(&first).await["status"], "killed");
}
