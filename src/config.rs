//! A node's configuration: every knob is a flag with a `CAIRN_*` variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cairn_raft::config::{RaftSettings, DEFAULT_ELECTION_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS};
use cairn_storage::NodeId;

/// The founding members' raft addresses, from `--initial-cluster 1=host:port,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster(pub BTreeMap<NodeId, String>);

impl std::str::FromStr for InitialCluster {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut members = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not ID=HOST:PORT"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("`{id}` is not a node id (u64)"))?;
            let addr = addr.trim();
            if !addr.contains(':') {
                return Err(format!("`{addr}` is not HOST:PORT"));
            }
            if members.insert(id, addr.to_string()).is_some() {
                return Err(format!("node id {id} appears twice"));
            }
        }
        if members.is_empty() {
            return Err("no members given".into());
        }
        Ok(Self(members))
    }
}

/// A bearer token: its `Debug` never shows the value, so it cannot leak
/// into logs through a printed config.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a token may not be empty".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// Everything a node needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeConfig {
    /// This node's id (unique in the cluster).
    #[arg(long, env = "CAIRN_ID", default_value_t = 1)]
    pub id: NodeId,
    /// Where the log, state and snapshots live.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    #[arg(long, env = "CAIRN_API_ADDR", default_value = "127.0.0.1:7070")]
    pub api_addr: String,
    /// gRPC peer listen address.
    #[arg(long, env = "CAIRN_RAFT_ADDR", default_value = "127.0.0.1:7071")]
    pub raft_addr: String,
    /// The API address peers and clients are told (default: --api-addr).
    #[arg(long, env = "CAIRN_ADVERTISE_API_ADDR")]
    pub advertise_api_addr: Option<String>,
    /// The raft address peers are told (default: --raft-addr).
    #[arg(long, env = "CAIRN_ADVERTISE_RAFT_ADDR")]
    pub advertise_raft_addr: Option<String>,
    /// Founding members, `1=HOST:PORT,2=HOST:PORT,...` (raft addresses).
    /// Ignored once the data dir holds a cluster.
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER")]
    pub initial_cluster: Option<InitialCluster>,
    /// How long a request may wait for a leader or quorum before 503.
    #[arg(long, env = "CAIRN_REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_timeout_ms: u64,
    /// Content larger than this is stored lz4-compressed.
    #[arg(long, env = "CAIRN_COMPRESSION_THRESHOLD", default_value_t = 1024)]
    pub compression_threshold: usize,
    /// Largest artifact content accepted.
    #[arg(long, env = "CAIRN_MAX_CONTENT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_content_bytes: usize,
    /// Largest artifact metadata (serialized JSON) accepted.
    #[arg(long, env = "CAIRN_MAX_METADATA_BYTES", default_value_t = 64 * 1024)]
    pub max_metadata_bytes: usize,
    /// How long a client's Idempotency-Key remembers its first outcome.
    #[arg(long, env = "CAIRN_IDEMPOTENCY_RETENTION_MS", default_value_t = 60 * 60 * 1000)]
    pub idempotency_retention_ms: u64,
    /// Leader heartbeat interval.
    #[arg(long, env = "CAIRN_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    pub heartbeat_ms: u64,
    /// Election timeout lower bound (the upper bound is 1.5 times this).
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MS", default_value_t = DEFAULT_ELECTION_TIMEOUT_MS)]
    pub election_timeout_ms: u64,
    /// Page cache of the node's store, in MiB.
    #[arg(long, env = "CAIRN_CACHE_MB", default_value_t = 32)]
    pub cache_mb: u64,
    /// Build a snapshot and compact the log after this many entries.
    #[arg(long, env = "CAIRN_SNAPSHOT_EVERY", default_value_t = 20_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for lagging followers.
    #[arg(long, env = "CAIRN_KEEP_BEHIND_SNAPSHOT", default_value_t = 1_000)]
    pub keep_behind_snapshot: u64,
    /// How often the leader checks for due TTLs and leases (and ticks the
    /// replicated clock when one is due).
    #[arg(long, env = "CAIRN_TICK_MS", default_value_t = 250)]
    pub tick_ms: u64,
    /// Largest key/value value accepted.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_value_bytes: usize,
    /// Watch history kept: at most this many events...
    #[arg(long, env = "CAIRN_WATCH_HISTORY_EVENTS", default_value_t = 100_000)]
    pub watch_history_events: u64,
    /// ...and none older than this (replicated ms).
    #[arg(long, env = "CAIRN_WATCH_HISTORY_MS", default_value_t = 24 * 60 * 60 * 1000)]
    pub watch_history_ms: u64,
    /// `/health/ready` fails when this node's applied index trails the
    /// commit index by more than this many entries.
    #[arg(long, env = "CAIRN_READY_MAX_LAG", default_value_t = 1_000)]
    pub ready_max_lag: u64,
    /// Ask a running member (any node's API URL) to add this node as a
    /// learner on first start, instead of bootstrapping a cluster.
    #[arg(long, env = "CAIRN_JOIN")]
    pub join: Option<String>,
    /// With `--join`: once caught up, promote this node to voter.
    #[arg(long, env = "CAIRN_VOTER", requires = "join")]
    pub voter: bool,
    /// Bearer token required on `/v1/cluster*` (off when unset). Also sent
    /// by `--join`.
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Bearer token required on the data API, `/v1/*` except the cluster
    /// endpoints (off when unset).
    #[arg(long, env = "CAIRN_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// On SIGTERM, how long the node keeps serving while `/health/ready`
    /// fails, so load balancers stop sending before it stops accepting.
    #[arg(long, env = "CAIRN_SHUTDOWN_DRAIN_MS", default_value_t = 1_000)]
    pub shutdown_drain_ms: u64,
    /// On SIGTERM, the most the whole shutdown may take: leadership
    /// hand-off (at most half of it) and drain, then in-flight requests.
    #[arg(long, env = "CAIRN_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// How often the background scrub re-verifies every stored content
    /// checksum (0 disables the periodic pass; damage found by reads is
    /// still repaired).
    #[arg(long, env = "CAIRN_SCRUB_INTERVAL_MS", default_value_t = 5 * 60 * 1000)]
    pub scrub_interval_ms: u64,
    /// The `disk_space` health check fails below this share of free space
    /// on the data directory's file system.
    #[arg(long, env = "CAIRN_MIN_FREE_DISK_PERCENT", default_value_t = 10)]
    pub min_free_disk_percent: u8,
    /// Serve `POST /v1/test/damage/{id}`, which flips a byte of stored
    /// content on this node only, to exercise detection and repair. Never
    /// enable in production.
    #[arg(long, env = "CAIRN_ENABLE_TEST_HOOKS", default_value_t = false)]
    pub enable_test_hooks: bool,
}

impl NodeConfig {
    /// A config with every default, for `id` and the given directory and addresses.
    pub fn new(id: NodeId, data_dir: PathBuf, api_addr: String, raft_addr: String) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: NodeConfig,
        }
        let mut config = Defaults::parse_from(["cairn"]).config;
        config.id = id;
        config.data_dir = data_dir;
        config.api_addr = api_addr;
        config.raft_addr = raft_addr;
        config
    }

    /// The API address advertised to peers and clients.
    pub fn public_api_addr(&self) -> &str {
        self.advertise_api_addr.as_deref().unwrap_or(&self.api_addr)
    }

    /// The raft address advertised to peers.
    pub fn public_raft_addr(&self) -> &str {
        self.advertise_raft_addr
            .as_deref()
            .unwrap_or(&self.raft_addr)
    }

    /// The bound on the whole graceful shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a leader may serve `lease` reads after a quorum
    /// acknowledgement: half the election timeout, so no other leader can
    /// have been elected meanwhile.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms / 2)
    }

    /// The Raft settings.
    pub fn raft_settings(&self) -> RaftSettings {
        RaftSettings {
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_timeout: Duration::from_millis(self.election_timeout_ms),
            snapshot_every: self.snapshot_every,
            keep_behind_snapshot: self.keep_behind_snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects_bad_lists() {
        let c: InitialCluster = "1=a:1, 2=b:2,3=c:3".parse().unwrap();
        assert_eq!(c.0.len(), 3);
        assert_eq!(c.0[&2], "b:2");
        for bad in ["", "1=a", "x=a:1", "1=a:1,1=b:2", "1"] {
            assert!(bad.parse::<InitialCluster>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_match_the_cli_contract() {
        let c = NodeConfig::new(
            1,
            "./cairn-data".into(),
            "127.0.0.1:7070".into(),
            "127.0.0.1:7071".into(),
        );
        assert_eq!(c.max_content_bytes, 16 * 1024 * 1024);
        assert_eq!(c.compression_threshold, 1024);
        assert_eq!(c.public_api_addr(), "127.0.0.1:7070");
        assert!(c.admin_token.is_none() && c.api_token.is_none() && c.join.is_none());
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let mut c = NodeConfig::new(1, "d".into(), "a:1".into(), "b:2".into());
        c.admin_token = Some("hunter2-admin".parse().unwrap());
        c.api_token = Some("hunter2-api".parse().unwrap());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!("".parse::<Secret>().is_err());
    }
}
