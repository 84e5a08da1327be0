//! Locks, key/value TTLs and watches on a three-node cluster of real processes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, read_sse, serial, Cluster};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// What the contending clients observed.
#[derive(Default)]
struct Tally {
    /// (token, counter value written) of every acknowledged fenced write.
    fenced_writes: Vec<(u64, u64)>,
    acquisitions: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_exclusion_holds_under_contention_with_fenced_writes() {
    let _g = serial().await;
    let c = Arc::new(Cluster::start(3, &[]).await);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let run_for = Duration::from_secs(20);
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..20u64 {
        let (c, tally) = (c.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            let node = |step: u64| c.node(1 + (client + step) % 3).clone_url();
            let mut step = 0;
            while started.elapsed() < run_for {
                step += 1;
                let resp = c
                    .http
                    .post(format!("{}/v1/locks/counter/acquire", node(step)))
                    .json(&json!({"owner": format!("client-{client}"), "ttl_ms": 5000, "wait_ms": 2000}))
                    .send()
                    .await
                    .unwrap();
                if resp.status() != StatusCode::OK {
                    assert_eq!(resp.status(), StatusCode::LOCKED, "acquire: {}", resp.text().await.unwrap());
                    continue;
                }
                let token = resp.json::<Value>().await.unwrap()["token"].as_u64().unwrap();
                tally.lock().await.acquisitions += 1;
                // Read-modify-write of the guarded counter, fenced by the token.
                let read = c.http.get(format!("{}/v1/kv/counter", node(step + 1))).send().await.unwrap();
                let current: u64 = match read.status() {
                    StatusCode::OK => read.text().await.unwrap().parse().unwrap(),
                    _ => 0,
                };
                let write = c
                    .http
                    .put(format!("{}/v1/kv/counter", node(step + 2)))
                    .header("x-cairn-fence", format!("counter:{token}"))
                    .body((current + 1).to_string())
                    .send()
                    .await
                    .unwrap();
                if write.status() == StatusCode::OK || write.status() == StatusCode::CREATED {
                    tally.lock().await.fenced_writes.push((token, current + 1));
                }
                let release = c
                    .http
                    .post(format!("{}/v1/locks/counter/release", node(step)))
                    .json(&json!({ "token": token }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(release.status(), StatusCode::NO_CONTENT);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let tally = tally.lock().await;
    let counter: u64 = c
        .http
        .get(c.node(2).url("/v1/kv/counter"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "mutual exclusion: {} acquisitions, {} fenced writes, counter {counter} in {run_for:?}",
        tally.acquisitions,
        tally.fenced_writes.len()
    );
    assert!(
        tally.fenced_writes.len() >= 20,
        "too little progress: {}",
        tally.fenced_writes.len()
    );
    assert_eq!(
        counter,
        tally.fenced_writes.len() as u64,
        "a lost or doubled update"
    );
    // In counter order (the order the writes took effect), tokens strictly increase.
    let mut by_value = tally.fenced_writes.clone();
    by_value.sort_by_key(|&(_, value)| value);
    for pair in by_value.windows(2) {
        assert!(pair[0].0 < pair[1].0, "tokens not increasing: {pair:?}");
        assert_eq!(
            pair[0].1 + 1,
            pair[1].1,
            "counter values not consecutive: {pair:?}"
        );
    }
    // A write with a stale token is refused by the store itself.
    let stale = by_value[0].0;
    let resp = c
        .http
        .put(c.node(1).url("/v1/kv/counter"))
        .header("x-cairn-fence", format!("counter:{stale}"))
        .body("999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "precondition_failed"
    );
}

/// The expire event of `key` in node `id`'s history: (revision, at_ms).
async fn expire_event(c: &Cluster, id: u64, key: &str) -> (u64, u64) {
    let mut resp = c
        .http
        .get(
            c.node(id)
                .url(&format!("/v1/watch?prefix={key}&from_revision=1")),
        )
        .send()
        .await
        .unwrap();
    let events = read_sse(&mut resp, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e.data["kind"] == "expire")
    })
    .await;
    let e = events.iter().find(|e| e.data["kind"] == "expire").unwrap();
    (
        e.data["revision"].as_u64().unwrap(),
        e.data["at_ms"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_expires_at_the_same_replicated_time_everywhere_across_leader_kill() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let via = c.others(leader)[0];
    let resp = c
        .http
        .post(c.node(via).url("/v1/locks/lease/acquire"))
        .json(&json!({"owner": "short", "ttl_ms": 2000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let grant: Value = resp.json().await.unwrap();
    let renewed = c
        .http
        .post(c.node(via).url("/v1/locks/kept/acquire"))
        // Its lease outlasts a failover (about 2 s here), so renewals
        // through the failover keep it.
        .json(&json!({"owner": "renewer", "ttl_ms": 6000}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();

    c.node_mut(leader).kill();
    let survivors = c.others(leader);
    // Keep renewing the other lock through the failover.
    let renew_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < renew_until {
        let r = c
            .http
            .post(c.node(survivors[1]).url("/v1/locks/kept/renew"))
            .json(&json!({"token": renewed["token"], "ttl_ms": 6000}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == StatusCode::OK || r.status() == StatusCode::SERVICE_UNAVAILABLE,
            "renew: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for &id in &survivors {
        eventually(
            "the unrenewed lock is free",
            Duration::from_secs(10),
            || async {
                let s: Value = c
                    .http
                    .get(c.node(id).url("/v1/locks/lease?consistency=stale"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (s["held"] == false).then_some(())
            },
        )
        .await;
        let kept: Value = c
            .http
            .get(c.node(id).url("/v1/locks/kept"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            kept["held"], true,
            "a renewed lock must not expire (node {id})"
        );
        assert_eq!(kept["token"], renewed["token"]);
    }
    c.node_mut(leader).start();
    c.wait_for_leader(Duration::from_secs(20)).await;
    let mut seen = Vec::new();
    for id in 1..=3 {
        seen.push(expire_event(&c, id, "locks/lease").await);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "replicas disagree on the expiry: {seen:?}"
    );
    let expires_ms = grant["expires_ms"].as_u64().unwrap();
    assert!(
        seen[0].1 >= expires_ms,
        "expired at {} before its lease ended at {expires_ms}",
        seen[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ttl_keys_vanish_on_all_nodes_and_cas_conflicts_return_409() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let put = c
        .http
        .put(c.node(1).url("/v1/kv/session:abc?ttl_ms=1500"))
        .body("user-7")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let meta: Value = put.json().await.unwrap();
    assert!(meta["expires_ms"].as_u64().is_some());
    for id in 1..=3 {
        let r = c
            .http
            .get(c.node(id).url("/v1/kv/session:abc"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("x-cairn-expires"));
        assert_eq!(r.text().await.unwrap(), "user-7");
    }
    for id in 1..=3 {
        eventually("the TTL key vanishes", Duration::from_secs(10), || async {
            let r = c
                .http
                .get(c.node(id).url("/v1/kv/session:abc?consistency=stale"))
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }

    let v1 = c
        .http
        .put(c.node(2).url("/v1/kv/flag"))
        .body("on")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.headers()["etag"], "\"1\"");
    let conflict = c
        .http
        .put(c.node(3).url("/v1/kv/flag"))
        .header("if-match", "\"5\"")
        .body("off")
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    let body: Value = conflict.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(body["error"]["current_version"], 1);
    let create_only = c
        .http
        .put(c.node(1).url("/v1/kv/flag"))
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), StatusCode::CONFLICT);
    let ok = c
        .http
        .put(c.node(3).url("/v1/kv/flag"))
        .header("if-match", "\"1\"")
        .body("off")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        c.http
            .get(c.node(1).url("/v1/kv/flag"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "off"
    );
}

/// Keys of `kv/w*` change events, in stream order.
fn keys(events: &[common::Sse]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.data["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watcher_on_a_follower_sees_every_change_in_order_and_resumes_after_restart() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = c.others(leader)[0];
    let writer = c
        .others(follower)
        .into_iter()
        .find(|&i| i != follower)
        .unwrap();
    let mut resp = c
        .http
        .get(c.node(follower).url("/v1/watch?prefix=kv/w"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for i in 0..30 {
        let via = if i % 2 == 0 { leader } else { writer };
        let r = c
            .http
            .put(c.node(via).url(&format!("/v1/kv/w{i:02}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // Other prefixes are not delivered.
    c.http
        .put(c.node(leader).url("/v1/kv/other"))
        .body("x")
        .send()
        .await
        .unwrap();
    let first = read_sse(&mut resp, Duration::from_secs(20), |e| e.len() >= 30).await;
    let expected: Vec<String> = (0..30).map(|i| format!("kv/w{i:02}")).collect();
    assert_eq!(keys(&first), expected, "every change, in order");
    let revisions: Vec<u64> = first
        .iter()
        .map(|e| e.data["revision"].as_u64().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
    let last_id = first.last().unwrap().id.clone().unwrap();
    drop(resp);

    // The watched node restarts; changes made meanwhile are not lost.
    c.node_mut(follower).kill();
    for i in 30..50 {
        let r = c
            .http
            .put(c.node(leader).url(&format!("/v1/kv/w{i:02}")))
            .body("y")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    c.node_mut(follower).start();
    let mut resumed = eventually(
        "the restarted node serves the watch",
        Duration::from_secs(20),
        || async {
            let r = c
                .http
                .get(c.node(follower).url("/v1/watch?prefix=kv/w"))
                .header("last-event-id", &last_id)
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK).then_some(r)
        },
    )
    .await;
    let rest = read_sse(&mut resumed, Duration::from_secs(20), |e| e.len() >= 20).await;
    let expected: Vec<String> = (30..50).map(|i| format!("kv/w{i:02}")).collect();
    assert_eq!(keys(&rest), expected, "resumed without loss or repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compacted_start_gets_an_error_event_naming_the_oldest_revision() {
    let _g = serial().await;
    let c = Cluster::start(3, &["--watch-history-events", "10", "--tick-ms", "50"]).await;
    for i in 0..40 {
        c.http
            .put(c.node(1 + i % 3).url(&format!("/v1/kv/h{i}")))
            .body("x")
            .send()
            .await
            .unwrap();
    }
    let events = eventually(
        "the history is trimmed",
        Duration::from_secs(10),
        || async {
            let mut r = c
                .http
                .get(c.node(2).url("/v1/watch?from_revision=1"))
                .send()
                .await
                .ok()?;
            let evs = read_sse(&mut r, Duration::from_secs(5), |e| !e.is_empty()).await;
            (evs[0].event.as_deref() == Some("error")).then_some(evs)
        },
    )
    .await;
    assert!(events[0].data["error"]["oldest_revision"].as_u64().unwrap() > 1);
    assert_eq!(events[0].data["error"]["code"], "not_found");
    // Trims may still be applying on a lagging replica: ask one node for both
    // its oldest revision and a watch from it.
    eventually(
        "a watch from the named oldest revision is served",
        Duration::from_secs(10),
        || async {
            let mut r = c
                .http
                .get(c.node(3).url("/v1/watch?from_revision=1"))
                .send()
                .await
                .ok()?;
            let evs = read_sse(&mut r, Duration::from_secs(5), |e| !e.is_empty()).await;
            let oldest = evs[0].data["error"]["oldest_revision"].as_u64()?;
            let mut r = c
                .http
                .get(c.node(3).url(&format!("/v1/watch?from_revision={oldest}")))
                .send()
                .await
                .ok()?;
            let evs = read_sse(&mut r, Duration::from_secs(5), |e| !e.is_empty()).await;
            (evs[0].event.is_none() && evs[0].data["revision"].as_u64()? >= oldest).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_register_list_and_expire() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let beat = |id: &str, via: u64, ttl: u64| {
        c.http
            .put(c.node(via).url(&format!("/v1/instances/{id}")))
            .json(&json!({"ttl_ms": ttl, "meta": {"version": "1.2.3"}}))
            .send()
    };
    assert_eq!(
        beat("app-1", 1, 60_000).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        beat("app-2", 2, 1_000).await.unwrap().status(),
        StatusCode::OK
    );
    let list: Value = c
        .http
        .get(c.node(3).url("/v1/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["instances"].as_array().unwrap().len(), 2);
    assert_eq!(list["instances"][0]["meta"]["version"], "1.2.3");
    eventually("app-2 expires", Duration::from_secs(10), || async {
        let l: Value = c
            .http
            .get(c.node(1).url("/v1/instances"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (l["instances"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let leave = c
        .http
        .delete(c.node(2).url("/v1/instances/app-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), StatusCode::NO_CONTENT);
    let bad = c
        .http
        .put(c.node(1).url("/v1/instances/app-3"))
        .json(&json!({"ttl_ms": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
