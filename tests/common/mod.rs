//! Test harness: clusters of real `cairn` processes on loopback, each with
//! its own data directory and log file, and an HTTP client to drive them.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Cluster tests share two cores: run them one at a time so that elections
/// and deadlines are not starved by a neighbouring cluster.
/// (An async mutex: each test has its own runtime, and the guard is held
/// across awaits.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the serial lock for one test.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A free loopback port below the kernel's ephemeral range. A port from
/// inside it could be taken, between this call and the node's bind, as the
/// local end of any outgoing connection (the test's client, a node dialing
/// a peer), and the node would then fail to start.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let (low, span) = (10_000, ephemeral_low.saturating_sub(10_000).max(1));
    // Each test process starts at its own offset, so that processes run
    // side by side rarely try the same ports; the bind proves one free.
    let offset = std::process::id() % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (offset + n) % span;
        if let Ok(port) = u16::try_from(port) {
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    panic!("no free loopback port between {low} and {ephemeral_low}");
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `cairn` process.
pub struct TestNode {
    pub id: u64,
    pub api: String,
    pub raft: String,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl TestNode {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    /// The base URL, owned (for moving into tasks).
    pub fn clone_url(&self) -> String {
        self.base_url()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (again), appending to its log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .args(&self.args)
            .env("CAIRN_LOG", "info,openraft=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn cairn");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to flush or hand anything over.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(status.success(), "node {} exited with {status}", self.id);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("node {} did not exit within 20 s of SIGTERM", self.id);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of real processes.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub http: reqwest::Client,
    /// The `--admin-token` the nodes were started with, sent on `/v1/cluster`.
    pub admin_token: Option<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes forming one cluster through `--initial-cluster`,
    /// each with `extra` flags, and waits until they agree on a leader.
    pub async fn start(n: u64, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u64, u16, u16)> =
            (1..=n).map(|id| (id, free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .map(|(id, _, raft)| format!("{id}=127.0.0.1:{raft}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .map(|&(id, api, raft)| {
                let node_dir = dir.path().join(format!("node{id}"));
                std::fs::create_dir_all(&node_dir).unwrap();
                let mut args: Vec<String> = vec![
                    "--id".into(),
                    id.to_string(),
                    "--data-dir".into(),
                    node_dir.join("data").display().to_string(),
                    "--api-addr".into(),
                    format!("127.0.0.1:{api}"),
                    "--raft-addr".into(),
                    format!("127.0.0.1:{raft}"),
                ];
                if n > 1 {
                    args.push("--initial-cluster".into());
                    args.push(initial.clone());
                }
                // Tests check outcomes, not latency: a generous deadline keeps
                // them deterministic on a loaded machine.
                if !extra.contains(&"--request-timeout-ms") {
                    args.push("--request-timeout-ms".into());
                    args.push("15000".into());
                }
                args.extend(extra.iter().map(|s| s.to_string()));
                TestNode {
                    id,
                    api: format!("127.0.0.1:{api}"),
                    raft: format!("127.0.0.1:{raft}"),
                    dir: node_dir,
                    args,
                    child: None,
                }
            })
            .collect();
        let admin_token = extra
            .iter()
            .position(|f| *f == "--admin-token")
            .and_then(|i| extra.get(i + 1))
            .map(|t| t.to_string());
        let mut cluster = Cluster {
            admin_token,
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            dir,
        };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// `GET /v1/cluster` of node `id`, if it answers.
    pub async fn cluster_status(&self, id: u64) -> Option<Value> {
        let mut req = self.http.get(self.node(id).url("/v1/cluster"));
        if let Some(t) = &self.admin_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Waits until every running node names the same leader (itself running),
    /// and the cluster id is recorded; returns the leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        eventually(
            "all running nodes agree on a running leader",
            timeout,
            || async {
                let mut leader = None;
                for node in self.nodes.iter().filter(|n| n.is_running()) {
                    let status = self.cluster_status(node.id).await?;
                    let l = status["leader"].as_u64()?;
                    status["cluster_id"].as_str()?;
                    if leader.is_some_and(|x| x != l) {
                        return None;
                    }
                    leader = Some(l);
                }
                let l = leader?;
                self.node(l).is_running().then_some(l)
            },
        )
        .await
    }

    /// Ids of running nodes other than `id`.
    pub fn others(&self, id: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.id != id && n.is_running())
            .map(|n| n.id)
            .collect()
    }

    /// Creates or replaces artifact `id` with text `content` through node `via`.
    pub async fn put_text(&self, via: u64, id: &str, content: &str) -> reqwest::Response {
        self.http
            .put(self.node(via).url(&format!("/v1/artifacts/{id}")))
            .json(&serde_json::json!({ "content": content, "title": id }))
            .send()
            .await
            .unwrap()
    }

    /// Reads artifact `id` through node `via` at `consistency`; `None` if 404.
    pub async fn get_text(&self, via: u64, id: &str, consistency: &str) -> Option<String> {
        let resp = self
            .http
            .get(
                self.node(via)
                    .url(&format!("/v1/artifacts/{id}?consistency={consistency}")),
            )
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => Some(
                resp.json::<Value>().await.unwrap()["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            404 => None,
            other => panic!("GET {id} via {via}: {other} {}", resp.text().await.unwrap()),
        }
    }
}

impl Cluster {
    /// Starts a fresh node with the next id that joins the cluster through
    /// node `via` (`--join`), with `extra` flags; returns its id.
    pub fn join_node(&mut self, via: u64, extra: &[&str]) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let (api, raft) = (free_port(), free_port());
        let node_dir = self.dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            node_dir.join("data").display().to_string(),
            "--api-addr".into(),
            format!("127.0.0.1:{api}"),
            "--raft-addr".into(),
            format!("127.0.0.1:{raft}"),
            "--join".into(),
            self.node(via).base_url(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = TestNode {
            id,
            api: format!("127.0.0.1:{api}"),
            raft: format!("127.0.0.1:{raft}"),
            dir: node_dir,
            args,
            child: None,
        };
        node.start();
        self.nodes.push(node);
        id
    }

    /// Calls the admin API of node `via` with the cluster's admin token;
    /// returns the status and the JSON body (`Null` when empty).
    pub async fn admin(
        &self,
        via: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.node(via).url(path));
        if let Some(t) = &self.admin_token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// The members as node `via` reports them: id → (role, matched_index).
    pub async fn members(&self, via: u64) -> Option<Vec<(u64, String, Option<u64>)>> {
        let status = self.cluster_status(via).await?;
        Some(
            status["members"]
                .as_array()?
                .iter()
                .map(|m| {
                    (
                        m["id"].as_u64().unwrap(),
                        m["role"].as_str().unwrap().to_string(),
                        m["matched_index"].as_u64(),
                    )
                })
                .collect(),
        )
    }

    /// Ids of the voters node `via` reports, sorted.
    pub async fn voters(&self, via: u64) -> Option<Vec<u64>> {
        let mut v: Vec<u64> = self
            .members(via)
            .await?
            .into_iter()
            .filter(|(_, role, _)| role == "voter")
            .map(|(id, _, _)| id)
            .collect();
        v.sort_unstable();
        Some(v)
    }
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One Server-Sent Event: its `event:` name (if any), `id:` and JSON `data:`.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Value,
}

/// Reads SSE events from `resp` until `done` says so, or panics at `timeout`.
pub async fn read_sse(
    resp: &mut reqwest::Response,
    timeout: Duration,
    mut done: impl FnMut(&[Sse]) -> bool,
) -> Vec<Sse> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = String::new();
    let mut events = Vec::new();
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out after {timeout:?} with {} events", events.len()))
            .expect("stream error")
            .expect("stream ended early");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                });
            }
        }
    }
    events
}
