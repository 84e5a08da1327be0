//! One interface over the three systems: start, readiness, leader and term,
//! per-workload clients, resource use, and the leader-failover measurement.

use std::time::{Duration, Instant};

use futures::stream::{self, FuturesUnordered};
use futures::StreamExt;

use crate::cairn::{Cairn, CairnClient};
use crate::etcd::{Etcd, EtcdClient};
use crate::procs::{Proc, Usage};
use crate::redis::{Redis, RedisClient};
use crate::workload::{self, Workload};

/// A system to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// Cairn, three nodes.
    Cairn,
    /// etcd, three members.
    Etcd,
    /// Redis, one server.
    Redis,
}

impl SystemKind {
    /// Whether the workload means anything for this system: artifacts are
    /// Cairn's alone, and Redis offers no linearizable read.
    pub fn supports(self, w: Workload) -> bool {
        match self {
            SystemKind::Cairn => true,
            SystemKind::Etcd => !matches!(w, Workload::ArtifactPut(_) | Workload::ArtifactGet(_)),
            SystemKind::Redis => matches!(w, Workload::Put | Workload::GetStale | Workload::Lock),
        }
    }

    /// Whether it is replicated, so a leader failover can be measured.
    pub fn replicated(self) -> bool {
        self != SystemKind::Redis
    }
}

/// A running system under test.
pub enum Cluster {
    /// Three Cairn nodes.
    Cairn(Cairn),
    /// Three etcd members.
    Etcd(Etcd),
    /// One Redis server.
    Redis(Redis),
}

/// A client for one measured point, cheap to clone into every worker.
#[derive(Clone)]
pub enum Client {
    /// Over Cairn's HTTP API.
    Cairn(CairnClient),
    /// Over etcd's gRPC API.
    Etcd(EtcdClient),
    /// Over the Redis protocol.
    Redis(RedisClient),
}

impl Client {
    /// One operation of `w` by `worker`, its `seq`-th.
    pub async fn run(&self, w: Workload, worker: usize, seq: u64) -> Result<u64, String> {
        match self {
            Client::Cairn(c) => c.run(w, worker, seq).await,
            Client::Etcd(c) => c.run(w, worker, seq).await,
            Client::Redis(c) => c.run(w, worker, seq).await,
        }
    }

    /// A put of `key` through node `node`.
    async fn put_via(&self, node: usize, key: &str, value: Vec<u8>) -> Result<u64, String> {
        match self {
            Client::Cairn(c) => c.put_via(node, key, value).await,
            Client::Etcd(c) => c.put_via(node, key, value).await,
            Client::Redis(c) => c.put_via(node, key, value).await,
        }
    }
}

impl Cluster {
    /// The `system` field of the report.
    pub fn name(&self) -> &'static str {
        match self {
            Cluster::Cairn(_) => "cairn",
            Cluster::Etcd(_) => "etcd",
            Cluster::Redis(_) => "redis",
        }
    }

    /// Its processes.
    pub fn procs(&self) -> &[Proc] {
        match self {
            Cluster::Cairn(c) => &c.procs,
            Cluster::Etcd(c) => &c.procs,
            Cluster::Redis(c) => &c.procs,
        }
    }

    fn procs_mut(&mut self) -> &mut [Proc] {
        match self {
            Cluster::Cairn(c) => &mut c.procs,
            Cluster::Etcd(c) => &mut c.procs,
            Cluster::Redis(c) => &mut c.procs,
        }
    }

    /// Which system this is.
    pub fn kind(&self) -> SystemKind {
        match self {
            Cluster::Cairn(_) => SystemKind::Cairn,
            Cluster::Etcd(_) => SystemKind::Etcd,
            Cluster::Redis(_) => SystemKind::Redis,
        }
    }

    async fn node_ready(&self, http: &reqwest::Client, i: usize) -> bool {
        match self {
            Cluster::Cairn(c) => c.ready(http, i).await,
            Cluster::Etcd(c) => c.ready(i).await,
            Cluster::Redis(c) => c.ready().await,
        }
    }

    /// Waits until every running node is ready and a leader is known.
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        poll_until(within, Duration::from_millis(50), || async move {
            for (i, p) in self.procs().iter().enumerate() {
                if p.is_running() && !self.node_ready(http, i).await {
                    return Err(format!("node {} not ready", i + 1));
                }
            }
            match self.leader(http).await.0 {
                Some(_) => Ok(()),
                None => Err("no leader".into()),
            }
        })
        .await
        .map_err(|missing| {
            anyhow::anyhow!(
                "{} did not become ready within {within:?} ({missing}); see its logs",
                self.name()
            )
        })
    }

    /// The leader's index (Redis: its one node) and the highest term seen.
    pub async fn leader(&self, http: &reqwest::Client) -> (Option<usize>, u64) {
        match self {
            Cluster::Cairn(c) => c.leader(http).await,
            Cluster::Etcd(c) => c.leader().await,
            Cluster::Redis(_) => (Some(0), 0),
        }
    }

    /// A client for `concurrency` workers running `w`, with what `w` reads
    /// already written.
    pub async fn client(&self, w: Workload, concurrency: usize) -> anyhow::Result<Client> {
        let client = match self {
            Cluster::Cairn(c) => Client::Cairn(CairnClient::new(c, concurrency)?),
            Cluster::Etcd(c) => {
                let mut client = EtcdClient::new(c, concurrency)?;
                client
                    .prepare(w, concurrency)
                    .await
                    .map_err(anyhow::Error::msg)?;
                Client::Etcd(client)
            }
            Cluster::Redis(c) => Client::Redis(
                RedisClient::new(c, concurrency)
                    .await
                    .map_err(anyhow::Error::msg)?,
            ),
        };
        Ok(client)
    }

    /// Writes what the read workloads read: 1,000 values for the gets, 16
    /// artifacts of the size for artifact gets. Runs 32 writes at a time.
    pub async fn preload(&self, client: &Client, w: Workload) -> anyhow::Result<()> {
        let writes: Vec<(String, bool)> = match w {
            Workload::GetLinearizable | Workload::GetStale => (0..workload::READ_KEYS)
                .map(|k| (format!("bench/get/{k}"), false))
                .collect(),
            Workload::ArtifactGet(size) => (0..workload::READ_ARTIFACTS)
                .map(|k| (workload::artifact_id(size, k as usize, 0, true), true))
                .collect(),
            _ => return Ok(()),
        };
        let results: Vec<Result<u64, String>> = stream::iter(writes.into_iter().enumerate())
            .map(|(i, (key, artifact))| {
                let client = client.clone();
                async move {
                    match (&client, artifact) {
                        // Spread over the workers' connections, so that the
                        // uploads do not queue on one of them.
                        (Client::Cairn(c), true) => c.put_artifact(i, &key, w.payload()).await,
                        _ => client.put_via(0, &key, w.payload()).await,
                    }
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            anyhow::bail!("preloading {w} on {}: {e}", self.name());
        }
        Ok(())
    }

    /// Each process's resource use (zeroes for one not running).
    pub fn usage(&self) -> Vec<Usage> {
        self.procs()
            .iter()
            .map(|p| p.usage().unwrap_or_default())
            .collect()
    }

    /// Resets every process's peak-RSS mark.
    pub fn reset_peaks(&self) {
        self.procs().iter().for_each(Proc::reset_peak);
    }

    /// Waits until every running node holds the same log (a steady state),
    /// so a failover starts from followers that are all up to date, as in
    /// a cluster that has been running for a while.
    async fn wait_converged(&self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        poll_until(within, Duration::from_millis(20), || async move {
            let ends = match self {
                Cluster::Cairn(c) => c.log_ends(http).await,
                Cluster::Etcd(c) => c.log_ends().await,
                Cluster::Redis(_) => return Ok(()),
            };
            if ends.iter().all(|e| e.is_some() && *e == ends[0]) {
                Ok(())
            } else {
                Err(format!("{ends:?}"))
            }
        })
        .await
        .map_err(|ends| {
            anyhow::anyhow!(
                "{}: logs did not converge within {within:?}: {ends}",
                self.name()
            )
        })
    }

    /// SIGKILLs the leader and returns the time until a 256 B put succeeds
    /// through another node; then restarts the old leader and waits until
    /// the whole cluster is ready again.
    pub async fn failover(&mut self, http: &reqwest::Client) -> anyhow::Result<Duration> {
        self.wait_ready(http, Duration::from_secs(60)).await?;
        self.wait_converged(http, Duration::from_secs(30)).await?;
        let (Some(leader), _) = self.leader(http).await else {
            anyhow::bail!("{}: no leader before the failover", self.name());
        };
        let probe = self.client(Workload::Put, 1).await?;
        let others: Vec<usize> = (0..self.procs().len()).filter(|i| *i != leader).collect();
        let killed_at = Instant::now();
        self.procs_mut()[leader].kill();
        // A new probe every 50 ms, alternating survivors, each left to run:
        // a write that waits inside the store for the new leader counts from
        // when it was sent, and a store that refuses quickly is asked again.
        // So the time is when a write can first succeed, to within 50 ms,
        // whatever each system does with a request during the election.
        let mut probes = FuturesUnordered::new();
        let mut next_probe = Instant::now();
        let mut sent = 0usize;
        let took = loop {
            if killed_at.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "{}: no write succeeded within 60 s of killing the leader",
                    self.name()
                );
            }
            if Instant::now() >= next_probe {
                let node = others[sent % others.len()];
                sent += 1;
                let probe = probe.clone();
                probes.push(async move {
                    let put = probe.put_via(node, "bench/failover", Workload::Put.payload());
                    matches!(
                        tokio::time::timeout(Duration::from_secs(10), put).await,
                        Ok(Ok(_))
                    )
                });
                next_probe += Duration::from_millis(50);
            }
            tokio::select! {
                Some(ok) = probes.next(), if !probes.is_empty() => {
                    if ok {
                        break killed_at.elapsed();
                    }
                }
                _ = tokio::time::sleep_until(next_probe.into()) => {}
            }
        };
        self.procs_mut()[leader].start()?;
        self.wait_ready(http, Duration::from_secs(60)).await?;
        Ok(took)
    }
}

/// Asks `check` every `step` until it succeeds; after `within`, fails with
/// what its last answer said was missing.
async fn poll_until<F, Fut>(within: Duration, step: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let missing = match check().await {
            Ok(()) => return Ok(()),
            Err(missing) => missing,
        };
        if Instant::now() >= deadline {
            return Err(missing);
        }
        tokio::time::sleep(step).await;
    }
}
