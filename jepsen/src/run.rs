//! One run: cluster up, workload under the nemesis, heal, recover, final
//! reads, check, and the results folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::checker::{self, Verdict};
use crate::client::{Client, Store};
use crate::cluster::{self, Cluster, ClusterSpec};
use crate::history::{FaultInterval, Op, Recorder, Status};
use crate::nemesis::{self, Fault, Schedule};
use crate::workload::{Ctx, Kind, Locks, Registers, SetAdds};

/// Where registers live, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreChoice {
    /// kv when the nodes serve `/v1/kv`, else artifacts.
    Auto,
    /// Always artifacts.
    Artifact,
    /// Always kv.
    Kv,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workload.
    pub workload: Kind,
    /// The faults to draw from.
    pub nemesis: Vec<Fault>,
    /// How long the workload runs.
    pub time: Duration,
    /// `?consistency=` of register reads.
    pub read_consistency: String,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// The `cairn` binary.
    pub binary: PathBuf,
    /// Parent of the results folder.
    pub results: PathBuf,
    /// Where registers live.
    pub store: StoreChoice,
    /// Live register keys at a time.
    pub keys: usize,
    /// Operations per key before it is retired.
    pub ops_per_key: u64,
    /// Quiet time before each fault.
    pub quiet: Duration,
    /// How long each fault is held.
    pub hold: Duration,
    /// How long the healed cluster gets to become ready again.
    pub recovery: Duration,
    /// Time budget of the linearizability check.
    pub check_budget: Duration,
    /// Client request timeout.
    pub client_timeout: Duration,
    /// Random seed (the schedule and the operations).
    pub seed: u64,
    /// Extra `cairn serve` flags.
    pub node_args: Vec<String>,
}

/// Latency percentiles of acknowledged operations, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The workload.
    pub workload: Kind,
    /// The faults drawn from.
    pub nemesis: Vec<Fault>,
    /// Where registers lived.
    pub store: Store,
    /// `?consistency=` of reads.
    pub read_consistency: String,
    /// Workload duration.
    pub time_s: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Operations in the history (final reads included).
    pub ops: usize,
    /// Acknowledged.
    pub ok: usize,
    /// Definitely failed.
    pub fail: usize,
    /// Indeterminate.
    pub info: usize,
    /// `[ok, fail, info]` per operation kind.
    pub by_f: BTreeMap<String, [usize; 3]>,
    /// The faults injected.
    pub faults: Vec<FaultInterval>,
    /// Whether every node was ready again after the final heal.
    pub recovered: bool,
    /// How long that took.
    pub recovery_ms: u64,
    /// Acknowledged operations per second during the workload.
    pub throughput: f64,
    /// Latency of acknowledged operations.
    pub latency_ms: Latency,
    /// The checkers' verdict.
    pub verdict: Verdict,
    /// The results folder.
    pub dir: PathBuf,
}

/// Clusters of runs in progress, for teardown on a signal.
pub type Live = Arc<Mutex<Vec<Arc<Cluster>>>>;

fn harness(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn wait_ready(
    cluster: &Cluster,
    http: &reqwest::Client,
    within: Duration,
    membership: bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut all = true;
        for i in 1..=cluster.size() {
            if !cluster::ready(http, &cluster.url(i)).await {
                all = false;
                break;
            }
        }
        if all && nemesis::leader(cluster, http).await.is_some() {
            // After membership changes, every node must be a voter again.
            let full: Vec<u64> = (1..=cluster.size() as u64).collect();
            if !membership || nemesis::voters(cluster, http).await == Some(full) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

enum Work {
    Registers(Registers),
    Set(SetAdds),
    Locks(Locks),
}

/// Runs one test and writes its results folder.
pub async fn run(opts: Options, live: Live) -> anyhow::Result<Summary> {
    let clock = opts.nemesis.contains(&Fault::Clock);
    let faketime = tokio::task::spawn_blocking(move || crate::tools::ensure(clock))
        .await?
        .map_err(harness)?;
    let names: Vec<String> = opts
        .nemesis
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(String::from))
        .collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let dir = opts
        .results
        .join(format!("{stamp}-{:?}-{}", opts.workload, names.join("+")).to_lowercase());
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let spec = ClusterSpec {
        binary: opts.binary.clone(),
        dir: dir.clone(),
        nodes: opts.nodes,
        faketime,
        extra_args: opts.node_args.clone(),
    };
    let cluster = Arc::new(
        tokio::task::spawn_blocking(move || Cluster::start(spec))
            .await?
            .map_err(harness)?,
    );
    live.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(cluster.clone());
    let result = drive(&opts, &cluster, &dir).await;
    cluster.teardown();
    if result.is_ok() {
        // Keep the logs; the data directories are large and of no further use.
        for i in 1..=opts.nodes {
            let _ = std::fs::remove_dir_all(dir.join(format!("n{i}")).join("data"));
        }
    }
    result
}

async fn drive(
    opts: &Options,
    cluster: &Arc<Cluster>,
    dir: &std::path::Path,
) -> anyhow::Result<Summary> {
    let probe = Client::new(opts.client_timeout, "linearizable".into(), Store::Artifact)?;
    if !wait_ready(cluster, probe.http(), Duration::from_secs(60), false).await {
        anyhow::bail!(
            "the cluster did not become ready within 60 s (logs in {})",
            dir.display()
        );
    }
    let store = match (opts.workload, opts.store) {
        (Kind::Set | Kind::Artifact, _) | (_, StoreChoice::Artifact) => Store::Artifact,
        (Kind::Lock, _) | (_, StoreChoice::Kv) => Store::Kv,
        (_, StoreChoice::Auto) => {
            if probe.kv_supported(&cluster.url(1)).await {
                Store::Kv
            } else {
                Store::Artifact
            }
        }
    };
    if store == Store::Kv && !probe.kv_supported(&cluster.url(1)).await {
        anyhow::bail!("this workload needs /v1/kv and /v1/locks, which this cairn does not serve");
    }
    let client = Client::new(opts.client_timeout, opts.read_consistency.clone(), store)?;
    let final_client = Client::new(opts.client_timeout, "linearizable".into(), store)?;
    let recorder = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let tag = cluster.tag();
    let work = Arc::new(match opts.workload {
        Kind::Register => Work::Registers(Registers::new(&tag, opts.keys, opts.ops_per_key, false)),
        Kind::Artifact => Work::Registers(Registers::new(&tag, opts.keys, opts.ops_per_key, true)),
        Kind::Set => Work::Set(SetAdds::new(&tag)),
        Kind::Lock => Work::Locks(Locks::new(&tag, opts.keys.min(2))),
    });
    let urls: Arc<Vec<String>> = Arc::new((1..=cluster.size()).map(|i| cluster.url(i)).collect());
    // Follow the change stream of this run's kv keys for the whole run.
    let watched = Arc::new(Mutex::new(crate::watch::Watched::default()));
    let (watch_stop, watch_rx) = tokio::sync::watch::channel(false);
    let watcher = (store == Store::Kv).then(|| {
        tokio::spawn(crate::watch::follow(
            urls.to_vec(),
            format!("kv/{tag}-"),
            watched.clone(),
            watch_rx,
        ))
    });
    let deadline = Instant::now() + opts.time;

    let mut workers = Vec::new();
    for w in 0..opts.concurrency {
        let (client, recorder, work, urls) =
            (client.clone(), recorder.clone(), work.clone(), urls.clone());
        let concurrency = opts.concurrency as u64;
        let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(1 + w as u64));
        workers.push(tokio::spawn(async move {
            let mut process = w as u64;
            while Instant::now() < deadline {
                let node = rng.random_range(0..urls.len());
                let ctx = Ctx {
                    client: &client,
                    recorder: &recorder,
                    node: (node as u64 + 1, urls[node].clone()),
                    process,
                };
                let ops = match &*work {
                    Work::Registers(r) => vec![r.step(&ctx, &mut rng).await],
                    Work::Set(s) => vec![s.step(&ctx).await],
                    Work::Locks(l) => l.step(&ctx, &mut rng).await,
                };
                if ops.iter().any(|o| o.status == Status::Info) {
                    // The operation may still be in flight: a new process.
                    process += concurrency;
                }
                if ops.into_iter().any(|op| recorder.record(op).is_err()) {
                    break;
                }
                // A short pause keeps histories checkable and leaves the nodes
                // CPU on a shared machine.
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..10))).await;
            }
        }));
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let schedule = Schedule {
        faults: opts.nemesis.clone(),
        quiet: opts.quiet,
        hold: opts.hold,
    };
    let nemesis = tokio::spawn(nemesis::run(
        schedule,
        cluster.clone(),
        probe.http().clone(),
        recorder.clone(),
        StdRng::seed_from_u64(opts.seed),
        stop_rx,
    ));

    let bar = ProgressBar::new(opts.time.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(started.elapsed().as_secs().min(opts.time.as_secs()));
        bar.set_message(format!("{} ops", recorder.len()));
    }
    bar.finish_with_message(format!("{} ops; healing", recorder.len()));
    let _ = stop_tx.send(true);
    let faults = nemesis.await?.map_err(harness)?;
    for w in workers {
        w.await?;
    }
    let workload_ops = recorder.len();
    let healed = Instant::now();
    // Membership is restored within the recovery period, not on top of it.
    let membership = opts.nemesis.contains(&Fault::Membership);
    let restored = nemesis::heal(cluster, probe.http(), membership, opts.recovery)
        .await
        .map_err(harness)?;
    if let Err(e) = &restored {
        eprintln!("heal: {e}");
    }
    let left = opts.recovery.saturating_sub(healed.elapsed());
    let recovered = restored.is_ok() && wait_ready(cluster, probe.http(), left, membership).await;
    let recovery_ms = healed.elapsed().as_millis() as u64;

    // Final reads through the recovered cluster.
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed);
    match &*work {
        Work::Registers(r) => {
            for key in r.keys() {
                let node = rng.random_range(0..urls.len());
                let ctx = Ctx {
                    client: &final_client,
                    recorder: &recorder,
                    node: (node as u64 + 1, urls[node].clone()),
                    process: u64::MAX,
                };
                recorder.record(r.final_read(&ctx, &key).await)?;
            }
        }
        Work::Locks(l) => {
            for key in l.guards() {
                let node = rng.random_range(0..urls.len());
                let ctx = Ctx {
                    client: &final_client,
                    recorder: &recorder,
                    node: (node as u64 + 1, urls[node].clone()),
                    process: u64::MAX,
                };
                recorder.record(l.final_read(&ctx, &key).await)?;
            }
        }
        Work::Set(s) => {
            for (node, url) in urls.iter().enumerate() {
                let ctx = Ctx {
                    client: &final_client,
                    recorder: &recorder,
                    node: (node as u64 + 1, url.clone()),
                    process: u64::MAX,
                };
                recorder.record(s.final_read(&ctx).await)?;
            }
        }
    }
    let ops = recorder.finish()?;

    let mut watch_verdict = None;
    if let Some(watcher) = watcher {
        // Give the stream a bounded time to deliver the last writes.
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            let done = {
                let w = watched.lock().unwrap_or_else(|p| p.into_inner());
                checker::watch::complete(&ops, &w.events)
            };
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = watch_stop.send(true);
        watcher.await?;
        let w = watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = Vec::new();
        for e in &w.events {
            lines.extend(serde_json::to_vec(e)?);
            lines.push(b'\n');
        }
        std::fs::write(dir.join("watch.jsonl"), lines)?;
        watch_verdict = Some(checker::watch::check(&ops, &w.events, &w.errors));
    }

    let check_budget = opts.check_budget;
    let workload = opts.workload;
    let check_ops = ops.clone();
    let mut verdict =
        tokio::task::spawn_blocking(move || check(workload, &check_ops, check_budget)).await?;
    if let Some(w) = watch_verdict {
        verdict = verdict.merge(w);
    }

    let summary = summarize(
        opts,
        store,
        &ops,
        workload_ops,
        faults,
        recovered,
        recovery_ms,
        verdict,
        dir,
    );
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    std::fs::write(
        dir.join("nemesis.json"),
        serde_json::to_vec_pretty(&summary.faults)?,
    )?;
    let title = format!(
        "{:?} under {} ({} reads): {:?}",
        opts.workload,
        summary
            .nemesis
            .iter()
            .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(String::from))
            .collect::<Vec<_>>()
            .join(","),
        opts.read_consistency,
        summary.verdict.validity
    );
    if let Err(e) = crate::plot::write(&dir.join("perf.svg"), &title, &ops, &summary.faults) {
        anyhow::bail!("plot: {e}");
    }
    Ok(summary)
}

/// Runs the checkers that fit `workload`.
pub fn check(workload: Kind, ops: &[Op], budget: Duration) -> Verdict {
    match workload {
        Kind::Register | Kind::Artifact => checker::register::check(ops, budget),
        Kind::Set => checker::set::check(ops),
        // Tokens and holders, and the guarded keys as registers.
        Kind::Lock => checker::lock::check(ops).merge(checker::register::check(ops, budget)),
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    opts: &Options,
    store: Store,
    ops: &[Op],
    workload_ops: usize,
    faults: Vec<FaultInterval>,
    recovered: bool,
    recovery_ms: u64,
    verdict: Verdict,
    dir: &std::path::Path,
) -> Summary {
    let count = |s: Status| ops.iter().filter(|o| o.status == s).count();
    let mut by_f: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for o in ops {
        let f = serde_json::to_value(&o.call)
            .ok()
            .and_then(|v| v.get("f")?.as_str().map(String::from))
            .unwrap_or_default();
        let k = match o.status {
            Status::Ok => 0,
            Status::Fail => 1,
            Status::Info => 2,
        };
        by_f.entry(f).or_default()[k] += 1;
    }
    let mut lat: Vec<f64> = ops
        .iter()
        .filter(|o| o.status == Status::Ok)
        .map(|o| o.complete_ms - o.invoke_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let ok_in_workload = ops
        .iter()
        .take(workload_ops)
        .filter(|o| o.status == Status::Ok)
        .count();
    Summary {
        workload: opts.workload,
        nemesis: opts.nemesis.clone(),
        store,
        read_consistency: opts.read_consistency.clone(),
        time_s: opts.time.as_secs(),
        nodes: opts.nodes,
        concurrency: opts.concurrency,
        ops: ops.len(),
        ok: count(Status::Ok),
        fail: count(Status::Fail),
        info: count(Status::Info),
        by_f,
        faults,
        recovered,
        recovery_ms,
        throughput: ok_in_workload as f64 / opts.time.as_secs_f64().max(1.0),
        latency_ms: Latency {
            p50: pct(0.5),
            p95: pct(0.95),
            p99: pct(0.99),
            max: pct(1.0),
        },
        verdict,
        dir: dir.to_path_buf(),
    }
}
