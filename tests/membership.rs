//! Cluster membership through the admin API, against real processes:
//! growing and shrinking under load, replacing a dead node, leadership
//! transfer (also under continuous writes), removing the leader, the admin
//! token, and graceful shutdown.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, serial, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// Writes artifacts `{prefix}-{i}` through the given nodes in turn until
/// `stop` (at most `max` writes); returns the indexes acknowledged.
fn spawn_writer(
    http: reqwest::Client,
    urls: Vec<String>,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    max: usize,
) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..max {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let url = format!("{}/v1/artifacts/{prefix}-{i}", urls[i % urls.len()]);
            let sent = http
                .put(url)
                .header("Idempotency-Key", format!("{prefix}-{i}"))
                .json(&json!({ "content": format!("value {i}") }))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    acked.push(i);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => assert_eq!(r.status(), 503, "a failed write must be a clean 503"),
                Err(_) => {}
            }
        }
        acked
    })
}

/// Every acknowledged write is readable, with its value, through `via`.
async fn assert_all_present(c: &Cluster, via: u64, prefix: &str, acked: &[usize]) {
    for i in acked {
        assert_eq!(
            c.get_text(via, &format!("{prefix}-{i}"), "linearizable")
                .await
                .as_deref(),
            Some(format!("value {i}").as_str()),
            "acknowledged write {prefix}-{i} through node {via}"
        );
    }
}

/// Asks node `via` to hand leadership to `to`; returns the status, the body
/// and how long the call took.
async fn transfer(c: &Cluster, via: u64, to: u64) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = c
        .admin(
            via,
            Method::POST,
            "/v1/cluster/leader/transfer",
            Some(json!({ "to": to })),
        )
        .await;
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_grows_to_five_and_shrinks_to_three_without_losing_acked_writes() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let urls = (1..=3).map(|i| c.node(i).base_url()).collect();
    let count = Arc::new(AtomicUsize::new(0));
    let writer = spawn_writer(
        c.http.clone(),
        urls,
        "grow",
        stop.clone(),
        count.clone(),
        5_000,
    );
    let writes_acked_by_now = |at_least: usize| {
        let count = count.clone();
        async move {
            eventually("the writer makes progress", Duration::from_secs(30), || {
                let n = count.load(Ordering::Relaxed);
                async move { (n >= at_least).then_some(n) }
            })
            .await
        }
    };
    let before = writes_acked_by_now(10).await;

    // Two fresh nodes join as learners and catch up while writes continue.
    let started = Instant::now();
    let four = c.join_node(1, &[]);
    let five = c.join_node(2, &[]);
    for id in [four, five] {
        eventually(
            "learner joined and caught up",
            Duration::from_secs(60),
            || async {
                let members = c.members(1).await?;
                let (_, role, _) = members.iter().find(|(m, _, _)| *m == id)?;
                // The join's add-learner call returns once caught up.
                let done = c
                    .node(id)
                    .log()
                    .contains("joined as a learner and caught up");
                (role == "learner" && done).then_some(())
            },
        )
        .await;
    }
    eprintln!(
        "two learners joined and caught up in {:?}",
        started.elapsed()
    );

    // Promote both through a node that may well be a follower.
    for id in [four, five] {
        let (status, body) = c
            .admin(
                3,
                Method::POST,
                &format!("/v1/cluster/members/{id}/promote"),
                None,
            )
            .await;
        assert_eq!(status, 200, "promote {id}: {body}");
    }
    assert_eq!(c.voters(1).await.unwrap(), vec![1, 2, 3, 4, 5]);
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    assert_eq!(
        c.voters(five).await.unwrap(),
        vec![1, 2, 3, 4, 5],
        "seen from the new node"
    );

    // Shrink back to the founders, whoever leads.
    for id in [four, five] {
        let (status, body) = c
            .admin(
                2,
                Method::DELETE,
                &format!("/v1/cluster/members/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "remove {id}: {body}");
    }
    c.node_mut(four).kill();
    c.node_mut(five).kill();
    assert_eq!(c.voters(1).await.unwrap(), vec![1, 2, 3]);
    eprintln!("grew 3 -> 5 and shrank to 3; leader was {leader}");
    let during = count.load(Ordering::Relaxed) - before;
    // Writes keep being acknowledged after the shrink, too.
    writes_acked_by_now(before + during + 10).await;

    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    eprintln!("{during} writes acknowledged while the membership changed");
    c.wait_for_leader(Duration::from_secs(10)).await;
    for via in 1..=3 {
        assert_all_present(&c, via, "grow", &acked).await;
    }
    eprintln!(
        "{} acknowledged writes during the changes, none lost",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_node_is_replaced_by_a_fresh_node_that_catches_up_by_snapshot() {
    let _g = serial().await;
    let mut c = Cluster::start(
        3,
        &["--snapshot-every", "100", "--keep-behind-snapshot", "10"],
    )
    .await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let dead = c.others(leader)[1];
    let alive = c.others(dead);

    c.node_mut(dead).kill();
    std::fs::remove_dir_all(c.node(dead).dir.join("data")).unwrap();
    for i in 0..300 {
        let via = alive[i % 2];
        let resp = c
            .put_text(via, &format!("r-{i}"), &format!("value {i}"))
            .await;
        assert!(resp.status().is_success(), "write {i}: {}", resp.status());
    }
    // The log behind the snapshot is gone: a new member needs the snapshot.
    let purged = eventually("leader purged its log", Duration::from_secs(30), || async {
        let s = c.cluster_status(leader).await?;
        s["purged_index"].as_u64().filter(|&p| p > 100)
    })
    .await;

    let (status, body) = c
        .admin(
            alive[0],
            Method::DELETE,
            &format!("/v1/cluster/members/{dead}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "remove dead node {dead}: {body}");
    assert_eq!(c.voters(alive[1]).await.unwrap(), alive);

    let started = Instant::now();
    let fresh = c.join_node(alive[1], &["--voter"]);
    let mut want = alive.clone();
    want.push(fresh);
    eventually(
        "the fresh node is a voter",
        Duration::from_secs(60),
        || async { (c.voters(alive[0]).await? == want).then_some(()) },
    )
    .await;
    eprintln!(
        "fresh node {fresh} joined, caught up and was promoted in {:?} (leader log purged to {purged})",
        started.elapsed()
    );
    let status = c.cluster_status(fresh).await.unwrap();
    assert!(
        status["snapshot_index"].as_u64().is_some_and(|s| s >= 100),
        "the fresh node installed a snapshot: {status}"
    );
    for i in (0..300).step_by(7) {
        assert_eq!(
            c.get_text(fresh, &format!("r-{i}"), "stale")
                .await
                .as_deref(),
            Some(format!("value {i}").as_str())
        );
    }
    // The replaced cluster still has a quorum without one old member.
    c.node_mut(alive[0]).kill();
    let resp = c.put_text(fresh, "after-replace", "ok").await;
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_named_node_and_the_leader_can_be_removed() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let others = c.others(leader);
    let (target, bystander) = (others[0], others[1]);

    // Through a node that is neither the leader nor the target.
    let (status, body, took) = transfer(&c, bystander, target).await;
    assert_eq!(status, 200, "transfer: {body}");
    assert_eq!(body["leader"], target);
    assert_eq!(c.wait_for_leader(Duration::from_secs(10)).await, target);
    eprintln!(
        "leader transfer {leader} -> {target}: {} ms on the leader, {took:?} end to end",
        body["took_ms"]
    );
    let resp = c.put_text(leader, "after-transfer", "ok").await;
    assert!(resp.status().is_success());

    // Transferring to a node that is not a member is a clean 404.
    let (status, _, _) = transfer(&c, leader, 42).await;
    assert_eq!(status, 404);

    // Remove the current leader (the request arrives at another node).
    let (status, body) = c
        .admin(
            bystander,
            Method::DELETE,
            &format!("/v1/cluster/members/{target}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "remove the leader: {body}");
    c.node_mut(target).kill();
    let new_leader = c.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, target);
    let mut rest = vec![leader, bystander];
    rest.sort_unstable();
    assert_eq!(c.voters(leader).await.unwrap(), rest);
    let resp = c.put_text(bystander, "after-removal", "ok").await;
    assert!(resp.status().is_success());
    assert_eq!(
        c.get_text(leader, "after-transfer", "linearizable")
            .await
            .as_deref(),
        Some("ok")
    );
}

/// The longest stretch from `from` to `to` without an entry of `times`.
fn longest_gap(mut times: Vec<Instant>, from: Instant, to: Instant) -> Duration {
    times.retain(|t| (from..=to).contains(t));
    times.sort_unstable();
    let mut points = vec![from];
    points.extend(times);
    points.push(to);
    points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_transfers_under_continuous_writes_finish_quickly_and_barely_pause_writes() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked_at = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    // A bound on the writers even if the test fails before stopping them.
    let writers_until = Instant::now() + Duration::from_secs(120);
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let http = c.http.clone();
            let url = c.node(w % 3 + 1).base_url();
            let (stop, acked_at, failed) = (stop.clone(), acked_at.clone(), failed.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < writers_until {
                    let key = format!("xfer-{w}-{i}");
                    let sent = http
                        .put(format!("{url}/v1/kv/{key}"))
                        .body(format!("value {i}"))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            acked_at.lock().unwrap().push(Instant::now());
                            acked.push((key, format!("value {i}")));
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    let acked_count = || acked_at.lock().unwrap().len();
    let writes_acked = |at_least: usize| {
        eventually(
            "the writers make progress",
            Duration::from_secs(30),
            move || {
                let n = acked_count();
                async move { (n >= at_least).then_some(n) }
            },
        )
    };
    writes_acked(200).await;

    let first = Instant::now();
    for round in 0..5 {
        let leader = c.wait_for_leader(Duration::from_secs(10)).await;
        let others = c.others(leader);
        // Alternate between the lower and the higher follower, and ask
        // through the other one, so the call is forwarded to the leader.
        let (target, via) = (others[round % 2], others[(round + 1) % 2]);
        let (status, body, took) = transfer(&c, via, target).await;
        assert_eq!(status, 200, "transfer {leader} -> {target}: {body}");
        assert_eq!(body["leader"], target);
        assert!(
            took < Duration::from_secs(3),
            "transfer {leader} -> {target} took {took:?}"
        );
        assert_eq!(c.wait_for_leader(Duration::from_secs(10)).await, target);
        eprintln!(
            "transfer {leader} -> {target} under load: {} ms on the leader, {took:?} end to end",
            body["took_ms"]
        );
        // Writes go on under the new leader before the next transfer.
        writes_acked(acked_count() + 100).await;
    }
    let last = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.unwrap());
    }
    let gap = longest_gap(acked_at.lock().unwrap().clone(), first, last);
    let total: usize = acked.iter().map(Vec::len).sum();
    eprintln!(
        "{total} writes acknowledged by 8 writers over 5 transfers in {:?}; \
         longest gap between acknowledged writes {gap:?}",
        last - first
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "writes failed");
    assert!(
        gap < Duration::from_secs(3),
        "writes stalled for {gap:?} around the transfers"
    );

    // Every acknowledged write is readable, each writer's through another node.
    let readers: Vec<_> = acked
        .into_iter()
        .enumerate()
        .map(|(w, keys)| {
            let http = c.http.clone();
            let url = c.node((w as u64 + 1) % 3 + 1).base_url();
            tokio::spawn(async move {
                for (key, want) in keys {
                    let resp = http.get(format!("{url}/v1/kv/{key}")).send().await.unwrap();
                    assert_eq!(resp.status(), 200, "acknowledged write {key}");
                    assert_eq!(resp.text().await.unwrap(), want, "acknowledged write {key}");
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_membership_change_while_one_is_in_flight_gets_409() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    // A learner nobody runs never catches up: its add holds the change
    // slot until the wait runs out.
    let dead_port = common::free_port();
    let slow = {
        let http = c.http.clone();
        let url = c.node(leader).url("/v1/cluster/learners?timeout_ms=3000");
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(
                    &json!({ "id": 9, "api_addr": format!("127.0.0.1:{dead_port}"),
                               "raft_addr": format!("127.0.0.1:{dead_port}") }),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        })
    };
    eventually("learner 9 is added", Duration::from_secs(10), || async {
        let m = c.members(leader).await?;
        m.iter().any(|(id, _, _)| *id == 9).then_some(())
    })
    .await;
    let (status, body) = c
        .admin(leader, Method::POST, "/v1/cluster/members/9/promote", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    let (status, body) = c
        .admin(leader, Method::DELETE, "/v1/cluster/members/9", None)
        .await;
    assert_eq!(status, 204, "{body}");
    // Bad input changes nothing.
    let (status, _) = c
        .admin(
            leader,
            Method::POST,
            "/v1/cluster/learners",
            Some(json!({ "id": 8 })),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .admin(leader, Method::POST, "/v1/cluster/members/77/promote", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(c.voters(leader).await.unwrap(), vec![1, 2, 3]);
    assert_eq!(c.members(leader).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_calls_need_the_admin_token_and_data_calls_the_api_token() {
    let _g = serial().await;
    let (admin, api) = ("adm-7f3c1e", "dat-91b2d4");
    let c = Cluster::start(3, &["--admin-token", admin, "--api-token", api]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = c.others(leader)[0];
    let url = |p: &str| c.node(follower).url(p);

    for token in [None, Some("wrong"), Some(api)] {
        let mut req = c.http.get(url("/v1/cluster"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "cluster status with {token:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let resp = c
        .http
        .post(url("/v1/cluster/leader/transfer"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        c.wait_for_leader(Duration::from_secs(5)).await,
        leader,
        "nothing changed"
    );

    let put = |token: Option<&str>| {
        let mut req = c
            .http
            .put(url("/v1/artifacts/guarded"))
            .json(&json!({ "content": "x" }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 401);
    assert_eq!(put(Some(admin)).await.unwrap().status(), 401);
    assert!(put(Some(api)).await.unwrap().status().is_success());

    // With the admin token, admin calls work (through a follower, too).
    let resp = c
        .http
        .post(url("/v1/cluster/leader/transfer"))
        .bearer_auth(admin)
        .json(&json!({ "to": follower }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(c.wait_for_leader(Duration::from_secs(10)).await, follower);

    // Probes stay open.
    for path in ["/health/live", "/health/ready", "/health"] {
        let s = c.http.get(url(path)).send().await.unwrap().status();
        assert_eq!(s, 200, "{path}");
    }
    for n in &c.nodes {
        let log = n.log();
        assert!(
            !log.contains(admin) && !log.contains(api),
            "a token leaked into node {}'s log",
            n.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_hands_leadership_over_and_exits_cleanly() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &["--shutdown-drain-ms", "300"]).await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let resp = c.put_text(leader, "before-term", "ok").await;
    assert!(resp.status().is_success());
    let started = Instant::now();
    c.node_mut(leader).terminate(); // asserts exit status 0
    let took = started.elapsed();
    assert!(
        c.node(leader)
            .log()
            .contains("handed leadership over before shutting down"),
        "the leader handed over instead of leaving an election behind"
    );
    let new_leader = c.wait_for_leader(Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    eprintln!("leader {leader} shut down in {took:?}; node {new_leader} leads");
    let other = c.others(new_leader)[0];
    assert_eq!(
        c.get_text(other, "before-term", "linearizable")
            .await
            .as_deref(),
        Some("ok")
    );
}
