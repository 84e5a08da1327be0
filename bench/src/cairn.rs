//! A local three-node Cairn cluster driven over its HTTP API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use crate::http1::Conn;
use crate::procs::Proc;
use crate::workload::{self, Workload};

/// The running cluster.
pub struct Cairn {
    /// One process per node, in id order (id = index + 1).
    pub procs: Vec<Proc>,
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct ClusterView {
    leader: Option<u64>,
    term: u64,
    applied_index: u64,
}

#[derive(Deserialize)]
struct Grant {
    token: u64,
}

impl Cairn {
    /// Starts three nodes on loopback ports from `base_port`.
    pub fn start(bin: &Path, dir: &Path, base_port: u16, extra: &[String]) -> anyhow::Result<Self> {
        let initial = (1..=3)
            .map(|i| format!("{i}=127.0.0.1:{}", base_port + 100 + i))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Vec::new();
        let mut urls = Vec::new();
        for i in 1..=3u16 {
            let api = format!("127.0.0.1:{}", base_port + i);
            let mut args = vec![
                "serve".to_string(),
                "--id".into(),
                i.to_string(),
                "--data-dir".into(),
                dir.join(format!("cairn{i}")).display().to_string(),
                "--api-addr".into(),
                api.clone(),
                "--raft-addr".into(),
                format!("127.0.0.1:{}", base_port + 100 + i),
                "--initial-cluster".into(),
                initial.clone(),
            ];
            args.extend(extra.iter().cloned());
            let mut p = Proc::new(
                &format!("cairn-{i}"),
                bin,
                args,
                dir.join(format!("cairn{i}.log")),
            );
            p.start()?;
            procs.push(p);
            urls.push(format!("http://{api}"));
        }
        Ok(Self { procs, urls })
    }

    /// Node `i`'s API URL.
    pub fn url(&self, i: usize) -> &str {
        &self.urls[i]
    }

    /// Whether node `i` answers `/health/ready` with 200.
    pub async fn ready(&self, http: &reqwest::Client, i: usize) -> bool {
        let url = format!("{}/health/ready", self.urls[i]);
        matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// What each running node reports of the cluster (None when it does
    /// not answer).
    async fn views(&self, http: &reqwest::Client) -> Vec<Option<ClusterView>> {
        let mut views = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            if !self.procs[i].is_running() {
                continue;
            }
            views.push(match http.get(format!("{url}/v1/cluster")).send().await {
                Ok(r) if r.status().is_success() => r.json::<ClusterView>().await.ok(),
                _ => None,
            });
        }
        views
    }

    /// Each running node's applied index (None when it does not answer).
    pub async fn log_ends(&self, http: &reqwest::Client) -> Vec<Option<u64>> {
        let views = self.views(http).await;
        views
            .into_iter()
            .map(|v| v.map(|v| v.applied_index))
            .collect()
    }

    /// The leader's index and the highest term any running node reports.
    pub async fn leader(&self, http: &reqwest::Client) -> (Option<usize>, u64) {
        let mut leader = None;
        let mut term = 0;
        for view in self.views(http).await.into_iter().flatten() {
            term = term.max(view.term);
            if let Some(id) = view.leader {
                leader = Some(id as usize - 1);
            }
        }
        (leader, term)
    }
}

/// A handle the workers share: each worker's own connection to its node
/// (round-robin over the nodes), and a pooled client for the failover
/// probes, which send several requests to one node at once.
#[derive(Clone)]
pub struct CairnClient {
    http: reqwest::Client,
    urls: Vec<String>,
    /// `conns[worker]`.
    conns: Arc<Vec<Conn>>,
}

fn expect_ok(r: reqwest::Result<reqwest::Response>) -> Result<reqwest::Response, String> {
    let r = r.map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(r)
    } else {
        Err(format!("HTTP {}", r.status()))
    }
}

impl CairnClient {
    /// A client spreading workers over the nodes round-robin.
    pub fn new(cluster: &Cairn, concurrency: usize) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let conns = (0..concurrency.max(1))
            .map(|worker| {
                let url = &cluster.urls[worker % cluster.urls.len()];
                Conn::new(url.trim_start_matches("http://").to_string())
            })
            .collect();
        Ok(Self {
            http,
            urls: cluster.urls.clone(),
            conns: Arc::new(conns),
        })
    }

    fn conn(&self, worker: usize) -> &Conn {
        &self.conns[worker % self.conns.len()]
    }

    /// A 256 B put through node `node`, for the failover probes.
    pub async fn put_via(&self, node: usize, key: &str, value: Vec<u8>) -> Result<u64, String> {
        let url = format!("{}/v1/kv/{key}", self.urls[node]);
        let len = value.len() as u64;
        expect_ok(self.http.put(url).body(value).send().await)?;
        Ok(len)
    }

    /// An artifact content put through worker `worker`'s connection.
    pub async fn put_artifact(
        &self,
        worker: usize,
        id: &str,
        body: Vec<u8>,
    ) -> Result<u64, String> {
        let path = format!("/v1/artifacts/{id}/content?kind=bench");
        let len = body.len() as u64;
        self.put_octets(worker, &path, body.into()).await?;
        Ok(len)
    }

    async fn put_octets(&self, worker: usize, path: &str, body: Bytes) -> Result<Bytes, String> {
        let body = Some((body, "application/octet-stream"));
        self.conn(worker).send(Method::PUT, path, body).await
    }

    async fn post_json(
        &self,
        worker: usize,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Bytes, String> {
        let body = Some((Bytes::from(body.to_string()), "application/json"));
        self.conn(worker).send(Method::POST, path, body).await
    }

    async fn get(&self, worker: usize, path: &str) -> Result<u64, String> {
        let body = self.conn(worker).send(Method::GET, path, None).await?;
        Ok(body.len() as u64)
    }

    /// One operation of `w`.
    pub async fn run(&self, w: Workload, worker: usize, seq: u64) -> Result<u64, String> {
        match w {
            Workload::Put => {
                let path = format!("/v1/kv/{}", workload::put_key(worker, seq));
                let value = Bytes::from(w.payload());
                let len = value.len() as u64;
                self.put_octets(worker, &path, value).await?;
                Ok(len)
            }
            Workload::GetLinearizable => {
                self.get(
                    worker,
                    &format!("/v1/kv/{}", workload::read_key(worker, seq)),
                )
                .await
            }
            Workload::GetStale => {
                self.get(
                    worker,
                    &format!(
                        "/v1/kv/{}?consistency=stale",
                        workload::read_key(worker, seq)
                    ),
                )
                .await
            }
            Workload::Lock => {
                let name = workload::lock_name(worker);
                let body = serde_json::json!({"owner": format!("w{worker}"), "ttl_ms": workload::LEASE_TTL_S * 1000});
                let grant = self
                    .post_json(worker, &format!("/v1/locks/{name}/acquire"), &body)
                    .await?;
                let grant: Grant = serde_json::from_slice(&grant).map_err(|e| e.to_string())?;
                let release = serde_json::json!({"token": grant.token});
                self.post_json(worker, &format!("/v1/locks/{name}/release"), &release)
                    .await?;
                Ok(0)
            }
            Workload::ArtifactPut(size) => {
                self.put_artifact(
                    worker,
                    &workload::artifact_id(size, worker, seq, false),
                    w.payload(),
                )
                .await
            }
            Workload::ArtifactGet(size) => {
                let id = workload::artifact_id(size, worker, seq, true);
                self.get(worker, &format!("/v1/artifacts/{id}/content"))
                    .await
            }
        }
    }
}
