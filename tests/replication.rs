//! Replication guarantees of a three-node cluster of real processes.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, serial, Cluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_any_node_is_read_linearizably_through_every_other() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    for round in 0..5 {
        for via in 1..=3u64 {
            let id = format!("lin-{round}-{via}");
            let body = format!("written through {via} in round {round}");
            let resp = c.put_text(via, &id, &body).await;
            assert!(
                resp.status().is_success(),
                "write via {via}: {}",
                resp.status()
            );
            for reader in c.others(via) {
                assert_eq!(
                    c.get_text(reader, &id, "linearizable").await.as_deref(),
                    Some(body.as_str()),
                    "read of {id} through node {reader} right after the write through {via}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_writes_survive_leader_kill() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let survivors = c.others(leader);

    // A steady stream of writes through a follower, while the leader dies.
    let mut acked = Vec::new();
    for i in 0..40 {
        let resp = c
            .put_text(survivors[0], &format!("k{i}"), &format!("v{i}"))
            .await;
        if resp.status().is_success() {
            acked.push(i);
        }
    }
    c.node_mut(leader).kill();
    let killed_at = Instant::now();
    let mut first_write_after_kill = None;
    for i in 40..120 {
        let via = survivors[i % 2];
        let resp = c
            .put_text(via as u64, &format!("k{i}"), &format!("v{i}"))
            .await;
        if resp.status().is_success() {
            first_write_after_kill.get_or_insert_with(|| killed_at.elapsed());
            acked.push(i);
        } else {
            assert_eq!(resp.status(), 503, "a failed write must be a clean 503");
        }
    }
    let failover = first_write_after_kill.expect("writes resumed after the leader was killed");
    eprintln!("failover: first acknowledged write {failover:?} after SIGKILL of leader {leader}");

    let new_leader = c.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    assert!(
        acked.len() >= 100,
        "only {} of 120 writes acknowledged",
        acked.len()
    );
    for i in &acked {
        for via in &survivors {
            assert_eq!(
                c.get_text(*via, &format!("k{i}"), "linearizable").await,
                Some(format!("v{i}")),
                "acknowledged write k{i} read through node {via}"
            );
        }
    }

    // The killed node comes back and converges on the same state.
    c.node_mut(leader).start();
    c.wait_for_leader(Duration::from_secs(20)).await;
    let last = *acked.last().unwrap();
    let expect = format!("v{last}");
    eventually(
        "restarted node applies every acknowledged write",
        Duration::from_secs(20),
        || async {
            (c.get_text(leader, &format!("k{last}"), "stale").await == Some(expect.clone()))
                .then_some(())
        },
    )
    .await;
    for i in &acked {
        assert_eq!(
            c.get_text(leader, &format!("k{i}"), "stale").await,
            Some(format!("v{i}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_stop_and_restart_keeps_everything() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    for i in 0..30u64 {
        let resp = c
            .put_text(1 + i % 3, &format!("p{i}"), &format!("persisted {i}"))
            .await;
        assert!(resp.status().is_success());
    }
    for id in 1..=3 {
        c.node_mut(id).terminate();
    }
    for id in 1..=3 {
        c.node_mut(id).start();
    }
    c.wait_for_leader(Duration::from_secs(30)).await;
    for i in 0..30u64 {
        for via in 1..=3 {
            assert_eq!(
                c.get_text(via, &format!("p{i}"), "linearizable").await,
                Some(format!("persisted {i}")),
                "p{i} through {via} after restarting all three"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_down_during_compaction_catches_up_by_snapshot() {
    let _g = serial().await;
    let mut c = Cluster::start(
        3,
        &["--snapshot-every", "50", "--keep-behind-snapshot", "5"],
    )
    .await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let down = c.others(leader)[0];
    let up = c.others(leader).into_iter().find(|&i| i != down).unwrap();
    c.put_text(leader, "before", "x").await;
    let applied_when_killed = c.cluster_status(down).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    c.node_mut(down).kill();

    // Enough writes that the log the dead node needs is compacted away.
    for i in 0..300 {
        let resp = c
            .put_text(
                if i % 2 == 0 { leader } else { up },
                &format!("s{}", i % 40),
                &format!("value {i}"),
            )
            .await;
        assert!(resp.status().is_success(), "write {i}: {}", resp.status());
    }
    let purged = eventually(
        "leader compacts its log past the dead node",
        Duration::from_secs(20),
        || async {
            let s = c.cluster_status(leader).await?;
            let purged = s["purged_index"].as_u64()?;
            (purged > applied_when_killed + 1).then_some(purged)
        },
    )
    .await;

    c.node_mut(down).start();
    let target: Value = c.cluster_status(leader).await.unwrap();
    let target_index = target["applied_index"].as_u64().unwrap();
    eventually(
        "restarted node catches up",
        Duration::from_secs(30),
        || async {
            let s = c.cluster_status(down).await?;
            (s["applied_index"].as_u64()? >= target_index).then_some(())
        },
    )
    .await;
    assert!(
        c.node(down).log().contains("installing snapshot"),
        "node {down} must have caught up through a snapshot (leader purged to {purged}, node had {applied_when_killed})"
    );
    for i in 260..300 {
        assert_eq!(
            c.get_text(down, &format!("s{}", i % 40), "stale").await,
            Some(format!("value {i}"))
        );
    }
    assert_eq!(
        c.get_text(down, "before", "stale").await.as_deref(),
        Some("x")
    );
}
