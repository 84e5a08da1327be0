//! A cluster of real `cairn` processes, one per network namespace, with the
//! process-level faults: kill -9 and restart, SIGSTOP/SIGCONT, and a skewed
//! wall clock through libfaketime.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::net::{Net, NetError};

/// The API port every node listens on, inside its own namespace.
pub const API_PORT: u16 = 7000;
const RAFT_PORT: u16 = 7001;

/// A cluster operation failed.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// Network setup or a fault rule.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Starting or signalling a process.
    #[error("node {node}: {detail}")]
    Process {
        /// The node.
        node: usize,
        /// What went wrong.
        detail: String,
    },
}

/// How to start the nodes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `cairn` binary.
    pub binary: PathBuf,
    /// Where data directories and logs go.
    pub dir: PathBuf,
    /// How many nodes.
    pub nodes: usize,
    /// libfaketime, when clocks may be skewed.
    pub faketime: Option<PathBuf>,
    /// Extra `cairn serve` flags.
    pub extra_args: Vec<String>,
}

struct Proc {
    child: Option<Child>,
    paused: bool,
}

/// The running cluster. Dropping it kills every node and removes the network.
pub struct Cluster {
    spec: ClusterSpec,
    net: Mutex<Net>,
    procs: Mutex<Vec<Proc>>,
}

/// The part of `GET /v1/cluster` the harness reads.
#[derive(Debug, Deserialize)]
pub struct ClusterStatus {
    /// The leader this node knows.
    pub leader: Option<u64>,
    /// Its term.
    pub term: u64,
}

impl Cluster {
    /// Creates the network and starts every node.
    pub fn start(spec: ClusterSpec) -> Result<Self, ClusterError> {
        let net = Net::create(spec.nodes)?;
        let procs = (0..spec.nodes)
            .map(|_| Proc {
                child: None,
                paused: false,
            })
            .collect();
        let cluster = Self {
            spec,
            net: Mutex::new(net),
            procs: Mutex::new(procs),
        };
        for i in 1..=cluster.spec.nodes {
            cluster.set_clock(i, 0)?;
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    fn net(&self) -> std::sync::MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the network (for partitions and packet loss).
    pub fn with_net<T>(&self, f: impl FnOnce(&Net) -> T) -> T {
        f(&self.net())
    }

    /// How many nodes.
    pub fn size(&self) -> usize {
        self.spec.nodes
    }

    /// The run's name prefix.
    pub fn tag(&self) -> String {
        self.net().tag().to_string()
    }

    /// Node `i`'s API base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}:{API_PORT}", self.net().ip(i))
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("n{i}.faketime"))
    }

    /// Sets node `i`'s wall clock `offset_s` seconds off (libfaketime reads
    /// the file again within a second). Only with `faketime`.
    pub fn set_clock(&self, i: usize, offset_s: i64) -> Result<(), ClusterError> {
        if self.spec.faketime.is_none() {
            return Ok(());
        }
        std::fs::write(self.clock_file(i), format!("{offset_s:+}s\n")).map_err(|e| {
            ClusterError::Process {
                node: i,
                detail: format!("writing its clock file: {e}"),
            }
        })
    }

    /// Starts node `i` (again), keeping its data directory.
    pub fn start_node(&self, i: usize) -> Result<(), ClusterError> {
        let err = |detail: String| ClusterError::Process { node: i, detail };
        let node_dir = self.spec.dir.join(format!("n{i}"));
        std::fs::create_dir_all(&node_dir).map_err(|e| err(e.to_string()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("cairn.log"))
            .map_err(|e| err(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| err(e.to_string()))?;
        let (ns, ip, initial) = {
            let net = self.net();
            let initial: Vec<String> = (1..=self.spec.nodes)
                .map(|j| format!("{j}={}:{RAFT_PORT}", net.ip(j)))
                .collect();
            (net.namespace(i), net.ip(i), initial.join(","))
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(&self.spec.binary)
            .arg("serve")
            .args(["--id", &i.to_string()])
            .arg("--data-dir")
            .arg(node_dir.join("data"))
            .args(["--api-addr", &format!("{ip}:{API_PORT}")])
            .args(["--raft-addr", &format!("{ip}:{RAFT_PORT}")])
            .args(["--initial-cluster", &initial])
            .args(&self.spec.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some(lib) = &self.spec.faketime {
            // Only the wall clock is skewed: the node's timers and leases
            // run on the monotonic clock, the replicated clock on wall time.
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", self.clock_file(i))
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd.spawn().map_err(|e| err(format!("spawn: {e}")))?;
        self.procs()[i - 1] = Proc {
            child: Some(child),
            paused: false,
        };
        Ok(())
    }

    /// kill -9 node `i`.
    pub fn kill(&self, i: usize) {
        let mut procs = self.procs();
        let p = &mut procs[i - 1];
        if let Some(mut child) = p.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        p.paused = false;
    }

    /// Whether node `i` runs (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.procs()[i - 1].child.is_some()
    }

    fn signal(&self, i: usize, sig: &str) -> Result<(), ClusterError> {
        let pid = match &self.procs()[i - 1].child {
            Some(c) => c.id().to_string(),
            None => return Ok(()),
        };
        crate::net::run(&["kill", sig, &pid])?;
        Ok(())
    }

    /// SIGSTOP node `i`.
    pub fn pause(&self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, "-STOP")?;
        self.procs()[i - 1].paused = true;
        Ok(())
    }

    /// Resumes every paused node, restarts every killed one, resets clocks
    /// and removes network faults.
    pub fn heal(&self) -> Result<(), ClusterError> {
        self.net().heal()?;
        for i in 1..=self.spec.nodes {
            self.set_clock(i, 0)?;
            let paused = self.procs()[i - 1].paused;
            if paused {
                self.signal(i, "-CONT")?;
                self.procs()[i - 1].paused = false;
            }
            if !self.is_running(i) {
                self.start_node(i)?;
            }
        }
        Ok(())
    }

    /// Kills every node and removes the network; idempotent.
    pub fn teardown(&self) {
        for i in 1..=self.spec.nodes {
            self.kill(i);
        }
        self.net().teardown();
    }

    /// The data and log directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Asks node `url` for its view of the cluster.
pub async fn status(http: &reqwest::Client, url: &str) -> Option<ClusterStatus> {
    let resp = http
        .get(format!("{url}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// Whether node `url` reports ready.
pub async fn ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(format!("{url}/health/ready"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
