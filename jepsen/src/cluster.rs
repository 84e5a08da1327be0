//! A cluster of real `cairn` processes, one per network namespace, with the
//! process-level faults: kill -9 and restart, SIGSTOP/SIGCONT, a skewed
//! wall clock through libfaketime, and a node replaced by a fresh one that
//! joins through the admin API.

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
    /// Its data was wiped: it must start with `--join` (a node that holds
    /// no cluster and is started with `--initial-cluster` would try to
    /// found one), until it is seen as a voter again.
    rejoin: bool,
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
    /// The node whose view `members` is: the leader's when it answered.
    #[serde(default)]
    pub members_seen_by: Option<u64>,
    /// The members, as `members_seen_by` sees them.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// One member in `GET /v1/cluster`.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: String,
    /// How far it trails the leader's log, when the leader knows.
    #[serde(default)]
    pub lag: Option<u64>,
}

impl ClusterStatus {
    /// Whether `members` is the leader's own view (a follower's may be
    /// stale).
    pub fn leaders_view(&self) -> bool {
        self.leader.is_some() && self.members_seen_by == self.leader && !self.members.is_empty()
    }

    /// The voters' ids, sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .members
            .iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.id)
            .collect();
        v.sort_unstable();
        v
    }

    /// Member `id`, if it is one.
    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

impl Cluster {
    /// Creates the network and starts every node.
    pub fn start(spec: ClusterSpec) -> Result<Self, ClusterError> {
        let net = Net::create(spec.nodes)?;
        let procs = (0..spec.nodes)
            .map(|_| Proc {
                child: None,
                paused: false,
                rejoin: false,
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

    /// Node `i`'s addresses as a member record: `(api_addr, raft_addr)`.
    pub fn addrs(&self, i: usize) -> (String, String) {
        let ip = self.net().ip(i);
        (format!("{ip}:{API_PORT}"), format!("{ip}:{RAFT_PORT}"))
    }

    /// The admin token the nodes were started with (`--node-arg
    /// --admin-token=T`, or `CAIRN_ADMIN_TOKEN` inherited from here), which
    /// the membership calls and `GET /v1/cluster` need.
    pub fn admin_token(&self) -> Option<String> {
        flag_value(&self.spec.extra_args, "--admin-token")
            .or_else(|| std::env::var("CAIRN_ADMIN_TOKEN").ok())
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
        let rejoin = self.procs()[i - 1].rejoin;
        let (ns, ip, founding) = {
            let net = self.net();
            let founding = if rejoin {
                // Any other node's API: it forwards the change to the leader.
                let via = i % self.spec.nodes + 1;
                vec![
                    "--join".to_string(),
                    format!("http://{}:{API_PORT}", net.ip(via)),
                    "--voter".to_string(),
                ]
            } else {
                let initial: Vec<String> = (1..=self.spec.nodes)
                    .map(|j| format!("{j}={}:{RAFT_PORT}", net.ip(j)))
                    .collect();
                vec!["--initial-cluster".to_string(), initial.join(",")]
            };
            (net.namespace(i), net.ip(i), founding)
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
            .args(&founding)
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
        let mut procs = self.procs();
        procs[i - 1].child = Some(child);
        procs[i - 1].paused = false;
        Ok(())
    }

    /// kill -9 node `i` and delete its data: started again, it is a fresh
    /// node that joins the running cluster (`--join URL --voter`).
    pub fn wipe(&self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        let data = self.spec.dir.join(format!("n{i}")).join("data");
        match std::fs::remove_dir_all(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ClusterError::Process {
                    node: i,
                    detail: format!("wiping its data: {e}"),
                })
            }
        }
        self.procs()[i - 1].rejoin = true;
        Ok(())
    }

    /// Whether node `i` was wiped and has not been seen as a voter since.
    pub fn rejoining(&self, i: usize) -> bool {
        self.procs()[i - 1].rejoin
    }

    /// Node `i` is a voter again: later restarts keep its data as usual.
    pub fn rejoined(&self, i: usize) {
        self.procs()[i - 1].rejoin = false;
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

/// The value of `flag` in a command line, as `--flag=V` or `--flag V`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(k, a)| {
        let rest = a.strip_prefix(flag)?;
        match rest.strip_prefix('=') {
            Some(v) => Some(v.to_string()),
            None if rest.is_empty() => args.get(k + 1).cloned(),
            None => None,
        }
    })
}

/// Asks node `url` for its view of the cluster.
pub async fn status(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Option<ClusterStatus> {
    let mut req = http
        .get(format!("{url}/v1/cluster"))
        .timeout(Duration::from_secs(2));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admin_token_is_found_in_either_flag_form() {
        let joined = args(&["--tick-ms=100", "--admin-token=s3cret"]);
        assert_eq!(
            flag_value(&joined, "--admin-token").as_deref(),
            Some("s3cret")
        );
        let split = args(&["--admin-token", "s3cret", "--heartbeat-ms=50"]);
        assert_eq!(
            flag_value(&split, "--admin-token").as_deref(),
            Some("s3cret")
        );
        // A longer flag with the same beginning is another flag.
        let other = args(&["--admin-token-file=/x"]);
        assert_eq!(flag_value(&other, "--admin-token"), None);
        assert_eq!(flag_value(&args(&["--admin-token"]), "--admin-token"), None);
    }

    #[test]
    fn only_the_leaders_own_view_of_members_counts() {
        let body = r#"{"leader":2,"term":7,"members_seen_by":2,"members":[
            {"id":3,"role":"learner","lag":12},{"id":1,"role":"voter","lag":0},
            {"id":2,"role":"voter","lag":0}]}"#;
        let s: ClusterStatus = serde_json::from_str(body).unwrap();
        assert!(s.leaders_view());
        assert_eq!(s.voters(), vec![1, 2]);
        assert_eq!(s.member(3).and_then(|m| m.lag), Some(12));
        let follower = body.replace("\"members_seen_by\":2", "\"members_seen_by\":3");
        let s: ClusterStatus = serde_json::from_str(&follower).unwrap();
        assert!(!s.leaders_view(), "a follower's own view may be stale");
        // Nodes that predate the member list still parse.
        let old: ClusterStatus = serde_json::from_str(r#"{"leader":1,"term":2}"#).unwrap();
        assert!(!old.leaders_view() && old.voters().is_empty());
    }
}
