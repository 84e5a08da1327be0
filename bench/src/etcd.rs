//! A local three-node etcd cluster (Debian's `etcd-server`, its defaults:
//! fsync on, heartbeat 100 ms, election timeout 1 s) driven through etcd's
//! native gRPC API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::procs::Proc;
use crate::workload::{self, Workload};

/// The slice of etcd's protocol compiled from `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// etcd's KV, Lease and Maintenance services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// etcd's lock service.
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}

use pb::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    LeaseGrantRequest, PutRequest, RangeRequest, StatusRequest,
};
use pb::v3lockpb::{lock_client::LockClient, LockRequest, UnlockRequest};

/// gRPC connections per node the workers share (streams multiplex on each).
const CONNS_PER_NODE: usize = 16;

/// The running cluster.
pub struct Etcd {
    /// One process per member, in order.
    pub procs: Vec<Proc>,
    endpoints: Vec<String>,
}

impl Etcd {
    /// Starts three members on loopback ports from `base_port`.
    pub fn start(bin: &Path, dir: &Path, base_port: u16) -> anyhow::Result<Self> {
        let peer = |i: u16| format!("http://127.0.0.1:{}", base_port + 100 + i);
        let initial = (1..=3)
            .map(|i| format!("e{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Vec::new();
        let mut endpoints = Vec::new();
        for i in 1..=3u16 {
            let client = format!("http://127.0.0.1:{}", base_port + i);
            let args = vec![
                "--name".to_string(),
                format!("e{i}"),
                "--data-dir".into(),
                dir.join(format!("etcd{i}")).display().to_string(),
                "--listen-client-urls".into(),
                client.clone(),
                "--advertise-client-urls".into(),
                client.clone(),
                "--listen-peer-urls".into(),
                peer(i),
                "--initial-advertise-peer-urls".into(),
                peer(i),
                "--initial-cluster".into(),
                initial.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                "cairn-bench".into(),
                "--logger".into(),
                "zap".into(),
            ];
            let mut p = Proc::new(
                &format!("etcd-{i}"),
                bin,
                args,
                dir.join(format!("etcd{i}.log")),
            );
            p.start()?;
            procs.push(p);
            endpoints.push(client);
        }
        Ok(Self { procs, endpoints })
    }

    fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.endpoints[i].clone())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy())
    }

    /// Member `i`'s status: (it is the leader, a leader is known, raft
    /// term, raft index).
    async fn status(&self, i: usize) -> Option<(bool, bool, u64, u64)> {
        let mut c = MaintenanceClient::new(self.channel(i).ok()?);
        let s = c.status(StatusRequest {}).await.ok()?.into_inner();
        let me = s.header.map(|h| h.member_id).unwrap_or(0);
        Some((
            s.leader != 0 && s.leader == me,
            s.leader != 0,
            s.raft_term,
            s.raft_index,
        ))
    }

    /// Each running member's raft index (None when it does not answer).
    pub async fn log_ends(&self) -> Vec<Option<u64>> {
        let mut ends = Vec::new();
        for i in 0..self.procs.len() {
            if self.procs[i].is_running() {
                ends.push(self.status(i).await.map(|s| s.3));
            }
        }
        ends
    }

    /// Whether member `i` answers and knows a leader.
    pub async fn ready(&self, i: usize) -> bool {
        matches!(self.status(i).await, Some((_, true, _, _)))
    }

    /// The leader's index and the highest term any running member reports.
    pub async fn leader(&self) -> (Option<usize>, u64) {
        let mut leader = None;
        let mut term = 0;
        for i in 0..self.procs.len() {
            if !self.procs[i].is_running() {
                continue;
            }
            if let Some((is_leader, _, t, _)) = self.status(i).await {
                term = term.max(t);
                if is_leader {
                    leader = Some(i);
                }
            }
        }
        (leader, term)
    }
}

/// A handle the workers share: connections to every member, and one lease
/// per worker for the lock workload.
#[derive(Clone)]
pub struct EtcdClient {
    /// `channels[node][k]`.
    channels: Arc<Vec<Vec<Channel>>>,
    leases: Arc<Vec<i64>>,
}

fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

impl EtcdClient {
    /// A client spreading workers over the members round-robin.
    pub fn new(cluster: &Etcd, concurrency: usize) -> anyhow::Result<Self> {
        let per_node = concurrency
            .div_ceil(cluster.endpoints.len())
            .clamp(1, CONNS_PER_NODE);
        let channels = (0..cluster.endpoints.len())
            .map(|i| {
                (0..per_node)
                    .map(|_| cluster.channel(i))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            channels: Arc::new(channels),
            leases: Arc::new(Vec::new()),
        })
    }

    fn conn(&self, worker: usize) -> Channel {
        let node = &self.channels[worker % self.channels.len()];
        node[(worker / self.channels.len()) % node.len()].clone()
    }

    /// A put through member `node`, used by failover probes too.
    pub async fn put_via(&self, node: usize, key: &str, value: Vec<u8>) -> Result<u64, String> {
        let len = value.len() as u64;
        let mut kv = KvClient::new(self.channels[node][0].clone());
        kv.put(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease: 0,
        })
        .await
        .map_err(status_text)?;
        Ok(len)
    }

    /// Grants the lock workload's leases, one per worker, as etcd's own
    /// concurrency package does (one per session).
    pub async fn prepare(&mut self, w: Workload, concurrency: usize) -> Result<(), String> {
        if w != Workload::Lock {
            return Ok(());
        }
        let mut leases = Vec::with_capacity(concurrency);
        for worker in 0..concurrency {
            let mut c = LeaseClient::new(self.conn(worker));
            let grant = c
                .lease_grant(LeaseGrantRequest {
                    ttl: workload::LEASE_TTL_S,
                    id: 0,
                })
                .await
                .map_err(status_text)?
                .into_inner();
            leases.push(grant.id);
        }
        self.leases = Arc::new(leases);
        Ok(())
    }

    async fn range(&self, worker: usize, key: String, serializable: bool) -> Result<u64, String> {
        let mut kv = KvClient::new(self.conn(worker));
        let r = kv
            .range(RangeRequest {
                key: key.into_bytes(),
                serializable,
                ..Default::default()
            })
            .await
            .map_err(status_text)?
            .into_inner();
        match r.kvs.first() {
            Some(kv) => Ok(kv.value.len() as u64),
            None => Err("key not found".into()),
        }
    }

    /// One operation of `w`.
    pub async fn run(&self, w: Workload, worker: usize, seq: u64) -> Result<u64, String> {
        match w {
            Workload::Put => {
                let mut kv = KvClient::new(self.conn(worker));
                let value = w.payload();
                let len = value.len() as u64;
                kv.put(PutRequest {
                    key: workload::put_key(worker, seq).into_bytes(),
                    value,
                    lease: 0,
                })
                .await
                .map_err(status_text)?;
                Ok(len)
            }
            Workload::GetLinearizable => {
                self.range(worker, workload::read_key(worker, seq), false)
                    .await
            }
            Workload::GetStale => {
                self.range(worker, workload::read_key(worker, seq), true)
                    .await
            }
            Workload::Lock => {
                let lease = *self.leases.get(worker).ok_or("no lease for this worker")?;
                let mut locks = LockClient::new(self.conn(worker));
                let held = locks
                    .lock(LockRequest {
                        name: workload::lock_name(worker).into_bytes(),
                        lease,
                    })
                    .await
                    .map_err(status_text)?
                    .into_inner();
                locks
                    .unlock(UnlockRequest { key: held.key })
                    .await
                    .map_err(status_text)?;
                Ok(0)
            }
            Workload::ArtifactPut(_) | Workload::ArtifactGet(_) => {
                Err("not an etcd workload".into())
            }
        }
    }
}
