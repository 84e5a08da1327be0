//! A local three-node Cairn cluster driven over its HTTP API.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

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

/// A handle the workers share: one HTTP connection pool, the node URLs.
#[derive(Clone)]
pub struct CairnClient {
    http: reqwest::Client,
    urls: Vec<String>,
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
            .pool_max_idle_per_host(concurrency.max(1))
            .build()?;
        Ok(Self {
            http,
            urls: cluster.urls.clone(),
        })
    }

    fn node(&self, worker: usize) -> &str {
        &self.urls[worker % self.urls.len()]
    }

    /// A 256 B put through node `node`, used by failover probes too.
    pub async fn put_via(&self, node: usize, key: &str, value: Vec<u8>) -> Result<u64, String> {
        let url = format!("{}/v1/kv/{key}", self.urls[node]);
        let len = value.len() as u64;
        expect_ok(self.http.put(url).body(value).send().await)?;
        Ok(len)
    }

    /// An artifact content put through the node `worker` maps to.
    pub async fn put_artifact(
        &self,
        worker: usize,
        id: &str,
        body: Vec<u8>,
    ) -> Result<u64, String> {
        let url = format!("{}/v1/artifacts/{id}/content?kind=bench", self.node(worker));
        let len = body.len() as u64;
        let req = self
            .http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(body);
        expect_ok(req.send().await)?;
        Ok(len)
    }

    async fn get(&self, url: String) -> Result<u64, String> {
        let r = expect_ok(self.http.get(url).send().await)?;
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        Ok(body.len() as u64)
    }

    /// One operation of `w`.
    pub async fn run(&self, w: Workload, worker: usize, seq: u64) -> Result<u64, String> {
        let node = self.node(worker);
        match w {
            Workload::Put => {
                self.put_via(
                    worker % self.urls.len(),
                    &workload::put_key(worker, seq),
                    w.payload(),
                )
                .await
            }
            Workload::GetLinearizable => {
                self.get(format!("{node}/v1/kv/{}", workload::read_key(worker, seq)))
                    .await
            }
            Workload::GetStale => {
                self.get(format!(
                    "{node}/v1/kv/{}?consistency=stale",
                    workload::read_key(worker, seq)
                ))
                .await
            }
            Workload::Lock => {
                let name = workload::lock_name(worker);
                let body = serde_json::json!({"owner": format!("w{worker}"), "ttl_ms": workload::LEASE_TTL_S * 1000});
                let r = expect_ok(
                    self.http
                        .post(format!("{node}/v1/locks/{name}/acquire"))
                        .json(&body)
                        .send()
                        .await,
                )?;
                let grant: Grant = r.json().await.map_err(|e| e.to_string())?;
                expect_ok(
                    self.http
                        .post(format!("{node}/v1/locks/{name}/release"))
                        .json(&serde_json::json!({"token": grant.token}))
                        .send()
                        .await,
                )?;
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
                self.get(format!("{node}/v1/artifacts/{id}/content")).await
            }
        }
    }
}
