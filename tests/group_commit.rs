//! Group commit on a three-node cluster of real processes: concurrent writes
//! through every node share log entries, and every promise still holds per
//! write (acknowledged values read back, unique fencing tokens, a watch that
//! delivers each change once and resumes only at whole revisions).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, read_sse, serial, Cluster};
use serde_json::{json, Value};

const WRITERS: u64 = 24;
const WRITES_EACH: u64 = 15;
const LOCKERS: u64 = 12;
const LOCKS_EACH: u64 = 10;

/// Sum of a histogram's `_count` samples in a Prometheus text page.
fn histogram_count(page: &str, name: &str) -> f64 {
    histogram_total(page, name, "count")
}

/// Sum of a histogram's `_{part}` samples (`count` or `sum`) in a page.
fn histogram_total(page: &str, name: &str, part: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}_{part}")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_keep_every_promise() {
    let _g = serial().await;
    let c = Arc::new(Cluster::start(3, &[]).await);
    let leader = c.wait_for_leader(Duration::from_secs(20)).await;

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES_EACH {
                let url = c.node(1 + (w + i) % 3).url(&format!("/v1/kv/g/{w}-{i}"));
                let r = c.http.put(url).body(format!("v{w}-{i}")).send().await;
                let r = r.expect("put reaches the node");
                assert!(r.status().is_success(), "put answered {}", r.status());
            }
            Vec::new()
        }));
    }
    for l in 0..LOCKERS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for i in 0..LOCKS_EACH {
                let node = c.node(1 + (l + i) % 3);
                let grant: Value = c
                    .http
                    .post(node.url(&format!("/v1/locks/gl-{l}/acquire")))
                    .json(&json!({"owner": format!("o{l}"), "ttl_ms": 10_000}))
                    .send()
                    .await
                    .expect("acquire reaches the node")
                    .json()
                    .await
                    .expect("a grant");
                let token = grant["token"].as_u64().expect("a token");
                let r = c
                    .http
                    .post(node.url(&format!("/v1/locks/gl-{l}/release")))
                    .json(&json!({"token": token}))
                    .send()
                    .await
                    .expect("release reaches the node");
                assert_eq!(r.status().as_u16(), 204);
                tokens.push(token);
            }
            tokens
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.extend(t.await.expect("client task"));
    }

    // The leader proposed some of these writes together.
    let metrics = |id: u64| {
        let c = c.clone();
        async move {
            let r = c.http.get(c.node(id).url("/metrics")).send().await;
            r.expect("metrics").text().await.expect("a metrics page")
        }
    };
    let page = metrics(leader).await;
    assert!(
        histogram_count(&page, "cairn_raft_proposal_batch_size") > 0.0,
        "no batch was proposed"
    );
    // The followers sent their clients' writes to the leader, several to a
    // call: fewer calls than writes.
    let (mut calls, mut forwarded) = (0.0, 0.0);
    for id in (1..=3).filter(|&id| id != leader) {
        let page = metrics(id).await;
        calls += histogram_total(&page, "cairn_forward_batch_size", "count");
        forwarded += histogram_total(&page, "cairn_forward_batch_size", "sum");
    }
    assert!(calls > 0.0, "no write was forwarded");
    assert!(
        forwarded > calls,
        "{forwarded} forwarded writes took {calls} calls"
    );

    // Tokens are unique across all locks, even when one entry granted several.
    let distinct: HashSet<u64> = tokens.iter().copied().collect();
    assert_eq!(distinct.len(), tokens.len(), "a token was issued twice");
    assert_eq!(tokens.len() as u64, LOCKERS * LOCKS_EACH);

    // Every acknowledged value reads back, linearizably, through every node.
    for w in 0..WRITERS {
        for i in 0..WRITES_EACH {
            let url = c.node(1 + (w * i) % 3).url(&format!("/v1/kv/g/{w}-{i}"));
            let body = c.http.get(url).send().await.unwrap().text().await.unwrap();
            assert_eq!(body, format!("v{w}-{i}"));
        }
    }

    // The watch delivers every change once, revisions never step back, and
    // only a revision's last change carries the id clients resume after.
    let total = (WRITERS * WRITES_EACH) as usize;
    let mut resp = c
        .http
        .get(c.node(1).url("/v1/watch?prefix=kv/g/&from_revision=1"))
        .send()
        .await
        .unwrap();
    let events = read_sse(&mut resp, Duration::from_secs(20), |e| e.len() >= total).await;
    drop(resp);
    let revision = |e: &common::Sse| e.data["revision"].as_u64().unwrap();
    let keys: HashSet<&str> = events
        .iter()
        .map(|e| e.data["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), total, "each change exactly once");
    assert!(events
        .windows(2)
        .all(|p| revision(&p[0]) <= revision(&p[1])));
    for (i, e) in events.iter().enumerate() {
        let ends = events.get(i + 1).is_none_or(|n| revision(n) != revision(e));
        let want = ends.then(|| revision(e).to_string());
        assert_eq!(e.id, want, "event {i}: id only on a revision's last change");
    }
    let shared = events
        .windows(2)
        .filter(|p| revision(&p[0]) == revision(&p[1]))
        .count();
    assert!(shared > 0, "no two changes shared an entry");

    // Resuming after an id inside the history sends the next revisions whole.
    let cut = events
        .iter()
        .position(|e| e.id.is_some())
        .expect("some revision ended");
    let after = revision(&events[cut]);
    let rest_len = events.iter().filter(|e| revision(e) > after).count();
    let mut resumed = eventually(
        "a resumed watch on another node",
        Duration::from_secs(10),
        || async {
            c.http
                .get(c.node(2).url("/v1/watch?prefix=kv/g/"))
                .header("last-event-id", after.to_string())
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;
    let rest = read_sse(&mut resumed, Duration::from_secs(20), |e| {
        e.len() >= rest_len
    })
    .await;
    let want: Vec<&Value> = events[cut + 1..].iter().map(|e| &e.data).collect();
    let got: Vec<&Value> = rest.iter().take(rest_len).map(|e| &e.data).collect();
    assert_eq!(
        got, want,
        "the resumed watch continues exactly after the id"
    );
}
