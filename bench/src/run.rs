//! A whole benchmark: start each system in turn, drive every workload at
//! every concurrency, measure failovers, and collect the report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cairn::Cairn;
use crate::driver;
use crate::etcd::Etcd;
use crate::redis::Redis;
use crate::report::{Report, Run, SystemInfo};
use crate::system::{Cluster, SystemKind};
use crate::workload::Workload;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Systems, in order.
    pub systems: Vec<SystemKind>,
    /// Workloads, in order (each only on the systems that support it).
    pub workloads: Vec<Workload>,
    /// Client counts.
    pub concurrency: Vec<usize>,
    /// Warm-up before each point.
    pub warmup: Duration,
    /// Measured window of each point.
    pub measure: Duration,
    /// Measured window of the put at the highest concurrency, the saturating
    /// run in which no election may happen.
    pub saturate: Duration,
    /// Failovers per replicated system.
    pub failovers: usize,
    /// The `cairn`, `etcd` and `redis-server` binaries.
    pub cairn_bin: PathBuf,
    /// See `cairn_bin`.
    pub etcd_bin: PathBuf,
    /// See `cairn_bin`.
    pub redis_bin: PathBuf,
    /// Extra `cairn serve` flags.
    pub cairn_args: Vec<String>,
    /// First of the loopback ports the systems use.
    pub base_port: u16,
    /// Whether this is the quick mode (recorded in the report).
    pub quick: bool,
}

impl Plan {
    fn points(&self) -> u64 {
        let per_system = |k: SystemKind| {
            let supported = self.workloads.iter().filter(|w| k.supports(**w)).count();
            supported * self.concurrency.len() + if k.replicated() { self.failovers } else { 0 }
        };
        self.systems.iter().map(|k| per_system(*k) as u64).sum()
    }
}

/// The first line a binary prints for `--version`.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn start(kind: SystemKind, plan: &Plan, dir: &Path) -> anyhow::Result<Cluster> {
    Ok(match kind {
        SystemKind::Cairn => Cluster::Cairn(Cairn::start(
            &plan.cairn_bin,
            dir,
            plan.base_port,
            &plan.cairn_args,
        )?),
        SystemKind::Etcd => Cluster::Etcd(Etcd::start(&plan.etcd_bin, dir, plan.base_port + 1000)?),
        SystemKind::Redis => {
            Cluster::Redis(Redis::start(&plan.redis_bin, dir, plan.base_port + 2000)?)
        }
    })
}

/// Runs the plan, keeping data and logs under `dir`.
pub async fn run(
    plan: &Plan,
    dir: &Path,
    started: String,
    machine: String,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let bar = ProgressBar::new(plan.points());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let mut report = Report {
        started,
        machine,
        quick: plan.quick,
        systems: Vec::new(),
        runs: Vec::new(),
        targets: Vec::new(),
    };
    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    for &kind in &plan.systems {
        let mut cluster = start(kind, plan, dir)?;
        bar.set_message(format!("starting {}", cluster.name()));
        cluster.wait_ready(&http, Duration::from_secs(60)).await?;
        // Let start-up work (elections, first snapshots, allocator warm-up)
        // settle before reading the idle footprint.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_rss_mib = cluster.usage().iter().map(|u| mib(u.rss)).collect();
        let bin = match kind {
            SystemKind::Cairn => &plan.cairn_bin,
            SystemKind::Etcd => &plan.etcd_bin,
            SystemKind::Redis => &plan.redis_bin,
        };
        let mut info = SystemInfo {
            system: cluster.name().into(),
            version: version(bin),
            idle_rss_mib,
            idle_rss_after_mib: Vec::new(),
        };
        for &w in plan
            .workloads
            .iter()
            .filter(|w| cluster.kind().supports(**w))
        {
            let mut preloaded = false;
            for &c in &plan.concurrency {
                bar.set_message(format!("{} {w} ×{c}", cluster.name()));
                let client = cluster.client(w, c).await?;
                if !preloaded {
                    cluster.preload(&client, w).await?;
                    preloaded = true;
                }
                let measure = if w == Workload::Put && c == top {
                    plan.saturate
                } else {
                    plan.measure
                };
                cluster.reset_peaks();
                let before = cluster.usage();
                let (_, term_before) = cluster.leader(&http).await;
                let out = driver::closed_loop(c, plan.warmup, measure, move |worker, seq| {
                    let client = client.clone();
                    async move { client.run(w, worker, seq).await }
                })
                .await;
                let after = cluster.usage();
                let (_, term_after) = cluster.leader(&http).await;
                let cpu: Vec<f64> = after
                    .iter()
                    .zip(&before)
                    .map(|(a, b)| (a.cpu_s - b.cpu_s).max(0.0))
                    .collect();
                report.runs.push(Run {
                    system: cluster.name().into(),
                    workload: w.name(),
                    op: w.op().map(str::to_string),
                    concurrency: c,
                    duration_s: out.elapsed.as_secs_f64(),
                    ops: out.ok,
                    errors: out.errors,
                    first_error: out.first_error.clone(),
                    ops_per_s: out.ops_per_s(),
                    p50_ms: out.quantile_ms(0.5),
                    p99_ms: out.quantile_ms(0.99),
                    p999_ms: out.quantile_ms(0.999),
                    mb_per_s: w
                        .op()
                        .map(|_| mib(out.bytes) / out.elapsed.as_secs_f64().max(1e-9)),
                    cpu_s: cpu.iter().sum(),
                    cpu_s_per_node: cpu,
                    peak_rss_mib: after.iter().map(|u| mib(u.peak_rss)).collect(),
                    elections: term_after.saturating_sub(term_before),
                    samples_ms: None,
                });
                bar.inc(1);
            }
        }
        if kind.replicated() && plan.failovers > 0 {
            let mut samples = Vec::new();
            let (_, term_before) = cluster.leader(&http).await;
            for i in 0..plan.failovers {
                bar.set_message(format!(
                    "{} failover {}/{}",
                    cluster.name(),
                    i + 1,
                    plan.failovers
                ));
                samples.push(cluster.failover(&http).await?.as_secs_f64() * 1000.0);
                bar.inc(1);
            }
            let (_, term_after) = cluster.leader(&http).await;
            let mut sorted = samples.clone();
            sorted.sort_by(f64::total_cmp);
            let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
            report.runs.push(Run {
                system: cluster.name().into(),
                workload: "failover".into(),
                op: None,
                concurrency: 1,
                duration_s: samples.iter().sum::<f64>() / 1000.0,
                ops: samples.len() as u64,
                errors: 0,
                first_error: None,
                ops_per_s: 0.0,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                p999_ms: q(0.999),
                mb_per_s: None,
                cpu_s: 0.0,
                cpu_s_per_node: Vec::new(),
                peak_rss_mib: Vec::new(),
                elections: term_after.saturating_sub(term_before),
                samples_ms: Some(samples),
            });
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        info.idle_rss_after_mib = cluster.usage().iter().map(|u| mib(u.rss)).collect();
        report.systems.push(info);
        drop(cluster);
    }
    bar.finish_with_message("done");
    report.judge();
    Ok(report)
}
