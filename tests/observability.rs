//! Observability and self-repair on clusters of real processes: health
//! scores and `diagnose` under a dead follower, detection and repair of
//! damaged content, consistency digests, re-installing a diverged member,
//! and the metrics families.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, serial, Cluster};
use serde_json::Value;

async fn health(c: &Cluster, id: u64) -> Option<Value> {
    let resp = c.http.get(c.node(id).url("/health")).send().await.ok()?;
    resp.json().await.ok()
}

fn check<'a>(h: &'a Value, name: &str) -> &'a Value {
    h["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {h}"))
}

fn diagnose(c: &Cluster, json: bool) -> (i32, String) {
    let endpoints = c
        .nodes
        .iter()
        .map(|n| n.base_url())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args([
        "diagnose",
        "--endpoints",
        &endpoints,
        "--timeout-ms",
        "2000",
    ]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run cairn diagnose");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn all_perfect(c: &Cluster) {
    eventually("every node scores 100", Duration::from_secs(30), || async {
        for n in c.nodes.iter() {
            let h = health(c, n.id).await?;
            if h["score"] != 100 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_follower_lowers_the_others_scores_and_diagnose_fails_until_it_returns() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &["--min-free-disk-percent", "1"]).await;
    all_perfect(&c).await;
    let (code, text) = diagnose(&c, false);
    assert_eq!(code, 0, "diagnose of a healthy cluster:\n{text}");
    assert!(text.contains("cluster: HEALTHY"), "{text}");

    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = c.others(leader)[0];
    c.node_mut(follower).kill();
    let killed = Instant::now();
    for id in c.others(follower) {
        let h = eventually(
            "a survivor's score drops and names the dead member",
            Duration::from_secs(15),
            || async {
                let h = health(&c, id).await?;
                let check = check(&h, "members_reachable");
                (check["ok"] == false && check["detail"].as_str()?.contains(&follower.to_string()))
                    .then_some(h)
            },
        )
        .await;
        assert!(h["score"].as_u64().unwrap() < 100, "{h}");
        assert_eq!(h["status"], "degraded", "{h}");
        // A quorum remains: leader and quorum checks still pass.
        assert_eq!(check(&h, "leader_known")["ok"], true, "{h}");
        assert_eq!(check(&h, "quorum_reachable")["ok"], true, "{h}");
    }
    eprintln!("scores dropped {:?} after the kill", killed.elapsed());

    let (code, text) = diagnose(&c, false);
    assert_ne!(code, 0, "diagnose must fail while a node is down:\n{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(text.contains("[FAIL] members_reachable"), "{text}");
    assert!(text.contains("hint:"), "{text}");
    eprintln!("diagnose with node {follower} down:\n{text}");
    let (code, json) = diagnose(&c, true);
    assert_ne!(code, 0);
    let report: Value = serde_json::from_str(&json).expect("diagnose --json is JSON");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 3);

    c.node_mut(follower).start();
    all_perfect(&c).await;
    let (code, text) = diagnose(&c, false);
    assert_eq!(code, 0, "diagnose after the restart:\n{text}");
}

async fn metrics_text(c: &Cluster, id: u64) -> String {
    c.http
        .get(c.node(id).url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn stale_read(c: &Cluster, via: u64, id: &str) -> (u16, Option<String>) {
    let resp = c
        .http
        .get(
            c.node(via)
                .url(&format!("/v1/artifacts/{id}?consistency=stale")),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (status, body["content"].as_str().map(String::from))
}

async fn consistency(c: &Cluster, via: u64) -> Value {
    let resp = c
        .http
        .get(c.node(via).url("/v1/cluster/consistency"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_content_is_found_by_the_scrub_never_served_and_repaired() {
    let _g = serial().await;
    let c = Cluster::start(3, &["--enable-test-hooks", "--scrub-interval-ms", "1000"]).await;
    let body = "a report worth keeping\n".repeat(200);
    for i in 0..5 {
        assert!(c
            .put_text(1, &format!("doc-{i}"), &body)
            .await
            .status()
            .is_success());
    }
    let victim = 2;
    eventually(
        "the victim applied every write",
        Duration::from_secs(10),
        || async { (stale_read(&c, victim, "doc-4").await.0 == 200).then_some(()) },
    )
    .await;
    let before = metrics_text(&c, victim).await;
    let found_before =
        sample(&before, "cairn_checksum_failures_total{found_by=\"scrub\"}").unwrap();

    let resp = c
        .http
        .post(c.node(victim).url("/v1/test/damage/doc-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let damaged = Instant::now();
    // No read touches the damaged item: the scrub alone must find it.
    let repaired_after = eventually(
        "the scrub finds and repairs the damage",
        Duration::from_secs(20),
        || async {
            let m = metrics_text(&c, victim).await;
            let found = sample(&m, "cairn_checksum_failures_total{found_by=\"scrub\"}")?;
            let repaired = sample(&m, "cairn_content_repairs_total{outcome=\"repaired\"}")?;
            (found > found_before && repaired >= 1.0).then(|| damaged.elapsed())
        },
    )
    .await;
    eprintln!("damage to scrub repair: {repaired_after:?} (scrub interval 1 s)");
    assert_eq!(
        stale_read(&c, victim, "doc-3").await,
        (200, Some(body.clone()))
    );
    let integrity: Value = c
        .http
        .get(c.node(victim).url("/v1/cluster/integrity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        integrity["corrupt"].as_array().unwrap().len(),
        0,
        "{integrity}"
    );
    let report = consistency(&c, 3).await;
    assert_eq!(report["consistent"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_repairs_a_member_whose_digest_disagrees() {
    let _g = serial().await;
    // No periodic scrub: only the consistency check can see the damage.
    let c = Cluster::start(3, &["--enable-test-hooks", "--scrub-interval-ms", "0"]).await;
    let body = "x".repeat(5000);
    for i in 0..4 {
        assert!(c
            .put_text(1, &format!("art-{i}"), &body)
            .await
            .status()
            .is_success());
    }
    let report = consistency(&c, 1).await;
    assert_eq!(report["consistent"], true, "{report}");
    let digests: Vec<&Value> = report["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["digest"])
        .collect();
    assert_eq!(digests.len(), 3);
    assert!(digests.iter().all(|d| *d == digests[0] && d.is_string()));

    let victim = 3;
    let resp = c
        .http
        .post(c.node(victim).url("/v1/test/damage/art-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let report = consistency(&c, 1).await;
    assert_eq!(report["consistent"], false, "{report}");
    let bad: Vec<u64> = report["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "mismatch")
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![victim], "{report}");

    let started = Instant::now();
    let resp = c
        .http
        .post(c.node(2).url("/v1/cluster/recovery"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recovery: Value = resp.json().await.unwrap();
    eprintln!("recovery took {:?}", started.elapsed());
    let victim_run = recovery["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == victim)
        .unwrap();
    assert_eq!(
        victim_run["scrub"]["repaired"],
        serde_json::json!(["art-1"]),
        "{recovery}"
    );
    assert_eq!(recovery["consistency"]["consistent"], true, "{recovery}");
    assert_eq!(
        stale_read(&c, victim, "art-1").await,
        (200, Some(body.clone()))
    );

    // A read that meets damage refuses it and triggers the repair at once.
    let resp = c
        .http
        .post(c.node(victim).url("/v1/test/damage/art-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = c
        .http
        .get(c.node(victim).url("/v1/artifacts/art-2?consistency=stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unavailable");
    eventually(
        "the read-triggered repair",
        Duration::from_secs(10),
        || async {
            (stale_read(&c, victim, "art-2").await == (200, Some(body.clone()))).then_some(())
        },
    )
    .await;
    assert_eq!(consistency(&c, victim).await["consistent"], true);
}

async fn put_kv(c: &Cluster, via: u64, key: &str, value: &str) -> bool {
    c.http
        .put(c.node(via).url(&format!("/v1/kv/{key}")))
        .body(value.to_string())
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn stale_kv(c: &Cluster, via: u64, key: &str) -> Option<String> {
    let resp = c
        .http
        .get(c.node(via).url(&format!("/v1/kv/{key}?consistency=stale")))
        .send()
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.text().await.ok()
}

/// Removes one record from a stopped node's newest snapshot (the durable
/// image of its state), bypassing Raft, and writes the snapshot again with
/// a valid checksum: a divergence no checksum can see.
fn lose_record_on_disk(node: &common::TestNode, key: &[u8]) {
    use cairn_storage::snapshot::{read_meta, read_snapshot, SnapshotWriter};
    let dir = node.dir.join("data").join("snapshots");
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap-"))
        })
        .max()
        .expect("the node has a snapshot");
    let meta = read_meta(&newest).unwrap();
    let mut writer = SnapshotWriter::create(&dir, &meta).unwrap();
    let mut found = false;
    read_snapshot(&newest, |k, v| {
        if k == key {
            found = true;
            return Ok(());
        }
        writer.record(&k, &v)
    })
    .unwrap();
    assert!(found, "no such record");
    writer.finish(&newest).unwrap();
}

fn member(report: &Value, id: u64) -> &Value {
    report["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("no member {id} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_reinstalls_a_member_whose_state_diverged_with_intact_checksums() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &["--scrub-interval-ms", "0"]).await;
    for i in 0..20 {
        assert!(put_kv(&c, 1, &format!("session-{i}"), &format!("v{i}")).await);
    }
    assert!(c
        .put_text(1, "report", &"y".repeat(3000))
        .await
        .status()
        .is_success());
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let victim = c.others(leader)[0];
    eventually(
        "the victim applied every write",
        Duration::from_secs(10),
        || async { (stale_kv(&c, victim, "session-19").await? == "v19").then_some(()) },
    )
    .await;

    // The victim's snapshot holds the record, so no entry after it writes
    // the record again when the victim re-applies its log.
    let (status, body) = c
        .admin(victim, reqwest::Method::POST, "/v1/cluster/snapshot", None)
        .await;
    assert_eq!(status, 200, "{body}");
    c.node_mut(victim).terminate();
    lose_record_on_disk(c.node(victim), &cairn_storage::keys::kv("session-7"));
    c.node_mut(victim).start();
    c.wait_for_leader(Duration::from_secs(30)).await;
    assert_eq!(stale_kv(&c, victim, "session-7").await, None);

    let report = eventually(
        "the check sees the victim's digest differ",
        Duration::from_secs(30),
        || async {
            let r = consistency(&c, leader).await;
            (member(&r, victim)["status"] == "mismatch").then_some(r)
        },
    )
    .await;
    assert_eq!(report["consistent"], false, "{report}");
    for id in c.others(victim) {
        assert_eq!(member(&report, id)["status"], "match", "{report}");
    }

    // Writes keep arriving while the victim is re-installed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, stop) = (c.http.clone(), c.node(leader).base_url(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http
                    .put(format!("{url}/v1/kv/during-{}", n % 10))
                    .body(n.to_string())
                    .send()
                    .await;
                n += 1;
            }
            n
        })
    };
    let started = Instant::now();
    let resp = c
        .http
        .post(c.node(victim).url("/v1/cluster/recovery"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recovery: Value = resp.json().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    eprintln!(
        "recovery took {:?} with {writes} concurrent writes",
        started.elapsed()
    );
    let run = member(&recovery, victim);
    assert_eq!(run["action"], "reinstalled", "{recovery}");
    assert!(run["reinstalled"]["from"] != victim, "{recovery}");
    assert!(
        run["reinstalled"]["index"].as_u64().unwrap() > 0,
        "{recovery}"
    );
    assert!(
        run["summary"]
            .as_str()
            .unwrap()
            .starts_with("reinstalled from node "),
        "{recovery}"
    );
    for id in c.others(victim) {
        assert_eq!(member(&recovery, id)["action"], "scrubbed", "{recovery}");
    }
    assert_eq!(recovery["consistency"]["consistent"], true, "{recovery}");
    assert_eq!(
        stale_kv(&c, victim, "session-7").await.as_deref(),
        Some("v7")
    );

    // The re-installed member keeps following the log.
    assert!(put_kv(&c, leader, "after", "still replicated").await);
    eventually(
        "a later write reaches the re-installed member",
        Duration::from_secs(10),
        || async { (stale_kv(&c, victim, "after").await? == "still replicated").then_some(()) },
    )
    .await;
    let report = consistency(&c, victim).await;
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(report["members"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_hooks_are_off_by_default() {
    let _g = serial().await;
    let c = Cluster::start(1, &[]).await;
    assert!(c.put_text(1, "a", "b").await.status().is_success());
    let resp = c
        .http
        .post(c.node(1).url("/v1/test/damage/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(c.get_text(1, "a", "stale").await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_family_appears_after_a_short_load() {
    let _g = serial().await;
    let c = Cluster::start(
        3,
        &["--snapshot-every", "40", "--min-free-disk-percent", "1"],
    )
    .await;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = c.others(leader)[0];
    let text = "compressible text ".repeat(300);
    for i in 0..60 {
        let via = if i % 2 == 0 { leader } else { follower };
        assert!(c
            .put_text(via, &format!("m-{i}"), &text)
            .await
            .status()
            .is_success());
    }
    for i in 0..10 {
        assert!(c
            .get_text(follower, &format!("m-{i}"), "linearizable")
            .await
            .is_some());
    }
    // Locks: an acquisition, a write refused for a stale fence, an expiry.
    let lock: Value = c
        .http
        .post(c.node(leader).url("/v1/locks/metrics-lock/acquire"))
        .json(&serde_json::json!({"owner": "t", "ttl_ms": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = lock["token"].as_u64().expect("lock granted");
    let fenced = c
        .http
        .put(c.node(leader).url("/v1/artifacts/fenced"))
        .header("X-Cairn-Fence", format!("metrics-lock:{}", token + 1))
        .json(&serde_json::json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fenced.status(), 412);
    // Watch: a stream from the first revision delivers the history.
    let mut watch = c
        .http
        .get(
            c.node(leader)
                .url("/v1/watch?prefix=artifacts/&from_revision=1"),
        )
        .send()
        .await
        .unwrap();
    assert!(watch.chunk().await.unwrap().is_some());
    let families_leader = [
        "cairn_raft_term ",
        "cairn_raft_is_leader 1",
        "cairn_raft_leader_changes_total ",
        "cairn_raft_commit_index ",
        "cairn_raft_applied_index ",
        "cairn_raft_last_log_index ",
        "cairn_raft_replication_lag_entries{peer=",
        "cairn_raft_log_append_duration_seconds_bucket",
        "cairn_raft_log_append_entries_bucket",
        "cairn_raft_snapshots_total{op=\"build\"}",
        "cairn_raft_snapshot_size_bytes ",
        "cairn_raft_snapshot_duration_seconds_bucket",
        "cairn_raft_snapshot_index ",
        "cairn_http_requests_total{route=\"/v1/artifacts/{id}\",method=\"PUT\",status=\"201\"}",
        "cairn_http_request_duration_seconds_bucket{route=\"/v1/artifacts/{id}\"",
        "cairn_storage_disk_bytes ",
        "cairn_storage_disk_free_bytes ",
        "cairn_storage_artifacts 60",
        "cairn_storage_content_bytes ",
        "cairn_storage_stored_bytes ",
        "cairn_storage_compression_ratio ",
        "cairn_checksum_failures_total{found_by=\"read\"} 0",
        "cairn_content_repairs_total{outcome=\"repaired\"} 0",
        "cairn_corrupt_content 0",
        "cairn_health_score 100",
        "cairn_locks_held ",
        "cairn_watch_subscribers 1",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
    ];
    let m = eventually(
        "every family on the leader (storage gauges refresh every 10 s)",
        Duration::from_secs(30),
        || async {
            let m = metrics_text(&c, leader).await;
            families_leader
                .iter()
                .all(|f| m.lines().any(|l| l.starts_with(f)))
                .then_some(m)
        },
    )
    .await;
    // The process family describes this node's own process: its resident
    // memory is what the kernel reports for it (within what one second of
    // sampling can move), not the test runner's or a neighbour's.
    let reported = sample(&m, "process_resident_memory_bytes").unwrap();
    let status = std::fs::read_to_string(format!(
        "/proc/{}/status",
        c.node(leader).pid().expect("leader runs")
    ))
    .unwrap();
    let kernel_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status");
    let kernel = kernel_kib * 1024.0;
    assert!(
        reported > kernel / 2.0 && reported < kernel * 2.0,
        "process_resident_memory_bytes {reported} vs VmRSS {kernel}"
    );
    for counter in [
        "cairn_lock_acquisitions_total",
        "cairn_lock_fenced_rejections_total",
        "cairn_watch_events_total",
    ] {
        assert!(sample(&m, counter).unwrap() >= 1.0, "{counter}:\n{m}");
    }
    eventually(
        "the lease expires on the replicated clock",
        Duration::from_secs(15),
        || async {
            let m = metrics_text(&c, leader).await;
            (sample(&m, "cairn_lock_expiries_total")? >= 1.0).then_some(())
        },
    )
    .await;
    drop(watch);
    let ratio = sample(&m, "cairn_storage_compression_ratio").unwrap();
    assert!(
        ratio > 5.0,
        "repetitive text compresses well: ratio {ratio}"
    );
    let fm = metrics_text(&c, follower).await;
    for f in [
        "cairn_forwarded_requests_total{kind=\"write\"}",
        "cairn_forwarded_requests_total{kind=\"read_index\"}",
        "cairn_raft_is_leader 0",
    ] {
        assert!(
            fm.lines().any(|l| l.starts_with(f)),
            "{f} missing on the follower:\n{fm}"
        );
    }
    // Every family carries HELP text for Prometheus and Grafana.
    assert!(m.contains("# HELP cairn_raft_term"), "{m}");
}
