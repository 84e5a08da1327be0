//! Rolling restart of a three-node cluster behind a real HAProxy while a
//! client writes and reads through the balancer. Needs the `haproxy`
//! binary, so it is ignored by default; scripts/ci/40-rolling-restart.sh
//! installs HAProxy and runs it.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, free_port, serial, Cluster};
use serde_json::{json, Value};

/// The HAProxy process; killed when dropped, even if the test fails.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts HAProxy with the repository's config in front of `c`; returns the
/// process, the balancer URL and the stats URL.
fn start_haproxy(c: &Cluster) -> (Haproxy, String, String) {
    let (port, stats) = (free_port(), free_port());
    let servers: String = c
        .nodes
        .iter()
        .map(|n| format!("    server node{} {} check\n", n.id, n.api))
        .collect();
    let config = include_str!("../scripts/haproxy/cairn.cfg")
        .replace("@BIND@", &format!("127.0.0.1:{port}"))
        .replace("@STATS@", &format!("127.0.0.1:{stats}"))
        .replace("@SERVERS@", servers.trim_end());
    let path = c.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(c.path().join("haproxy.log")).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("haproxy must be installed (scripts/ci/40-rolling-restart.sh installs it)");
    (
        Haproxy(child),
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{stats}/;csv"),
    )
}

/// Which servers HAProxy's health checks hold UP.
async fn servers_up(http: &reqwest::Client, stats: &str) -> Option<Vec<String>> {
    let csv = http.get(stats).send().await.ok()?.text().await.ok()?;
    Some(
        csv.lines()
            .filter(|l| l.starts_with("cairn_nodes,node"))
            .filter(|l| l.split(',').nth(17) == Some("UP"))
            .map(|l| l.split(',').nth(1).unwrap_or_default().to_string())
            .collect(),
    )
}

/// What the client saw.
#[derive(Default, Debug)]
struct ClientReport {
    writes: usize,
    reads: usize,
    retried: usize,
    failed: Vec<String>,
    stale_reads: usize,
    longest_stall: Duration,
    acked: Vec<usize>,
}

/// One request, retried once after a short pause on any failure.
async fn with_one_retry<F, Fut>(report: &mut ClientReport, mut send: F) -> Result<Value, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    match send().await {
        Ok(v) => Ok(v),
        Err(_) => {
            report.retried += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            send().await
        }
    }
}

async fn call(req: reqwest::RequestBuilder) -> Result<Value, String> {
    let r = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("{status}: body: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Writes `rr-{i}` and reads it straight back, through the balancer, until
/// `stop` (bounded by `max` rounds).
async fn client(
    http: reqwest::Client,
    lb: String,
    stop: Arc<AtomicBool>,
    max: usize,
) -> ClientReport {
    let mut report = ClientReport::default();
    let mut last_ok = Instant::now();
    for i in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let url = format!("{lb}/v1/artifacts/rr-{i}");
        let want = format!("value {i}");
        let written = with_one_retry(&mut report, || {
            call(
                http.put(&url)
                    .header("Idempotency-Key", format!("rr-{i}"))
                    .json(&json!({ "content": want })),
            )
        })
        .await;
        report.writes += 1;
        match written {
            Ok(_) => report.acked.push(i),
            Err(e) => {
                report.failed.push(format!("write rr-{i}: {e}"));
                continue;
            }
        }
        report.longest_stall = report.longest_stall.max(last_ok.elapsed());
        last_ok = Instant::now();
        let read = with_one_retry(&mut report, || call(http.get(&url))).await;
        report.reads += 1;
        match read {
            Ok(v) if v["content"] == want.as_str() => {}
            Ok(v) => {
                report.stale_reads += 1;
                report
                    .failed
                    .push(format!("read rr-{i}: got {}", v["content"]));
            }
            Err(e) => report.failed.push(format!("read rr-{i}: {e}")),
        }
        report.longest_stall = report.longest_stall.max(last_ok.elapsed());
        last_ok = Instant::now();
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs haproxy; run by scripts/ci/40-rolling-restart.sh"]
async fn rolling_restart_behind_haproxy_loses_no_request() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &["--shutdown-drain-ms", "1500"]).await;
    let (_haproxy, lb, stats) = start_haproxy(&c);
    let all = vec!["node1".to_string(), "node2".into(), "node3".into()];
    eventually(
        "HAProxy sees every node UP",
        Duration::from_secs(30),
        || async { (servers_up(&c.http, &stats).await? == all).then_some(()) },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let running = tokio::spawn(client(http, lb.clone(), stop.clone(), 100_000));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    for id in 1..=3 {
        let was_leader = c.wait_for_leader(Duration::from_secs(10)).await == id;
        let t = Instant::now();
        c.node_mut(id).terminate(); // SIGTERM; asserts a clean exit
        let down_for = t.elapsed();
        let handover = c
            .node(id)
            .log()
            .lines()
            .rfind(|l| l.contains("leadership over"))
            .map(str::to_string);
        c.node_mut(id).start();
        eventually(
            "restarted node is back in the balancer",
            Duration::from_secs(30),
            || async { (servers_up(&c.http, &stats).await? == all).then_some(()) },
        )
        .await;
        eprintln!(
            "node {id}{} restarted: graceful stop took {down_for:?}, back in HAProxy after {:?}",
            if was_leader { " (leader)" } else { "" },
            t.elapsed()
        );
        if let Some(line) = handover.filter(|_| was_leader) {
            eprintln!("  {line}");
        }
    }
    // Let the client run a little against the fully restarted cluster.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    eprintln!(
        "rolling restart of 3 nodes in {:?}: {} writes and {} reads through HAProxy, \
         {} retried once, {} failed after the retry, longest stall {:?}",
        started.elapsed(),
        report.writes,
        report.reads,
        report.retried,
        report.failed.len(),
        report.longest_stall
    );
    assert!(report.failed.is_empty(), "failures: {:?}", report.failed);
    assert_eq!(report.stale_reads, 0);
    assert!(report.writes > 50, "the client barely ran: {report:?}");
    for i in report.acked.iter().step_by(5) {
        for via in 1..=3 {
            assert_eq!(
                c.get_text(via, &format!("rr-{i}"), "linearizable")
                    .await
                    .as_deref(),
                Some(format!("value {i}").as_str())
            );
        }
    }
}
