//! Nemeses: the faults, and the schedule that injects and heals them.
//!
//! Each cycle waits a quiet period, takes the next of the requested faults
//! (round-robin from a random start; targets and shapes are random), holds
//! it, then heals everything (network rules flushed, paused
//! nodes continued, killed nodes restarted, clocks reset). Composition is by
//! listing several: `--nemesis partition,kill,pause`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{self, Cluster, ClusterError};
use crate::history::{FaultInterval, Recorder};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Nothing: a baseline.
    None,
    /// Random halves: a minority cut off from a majority, both ways.
    Partition,
    /// The current leader cut off from everyone.
    PartitionLeader,
    /// One-way cuts in a ring: every node still hears a majority (itself
    /// and one peer), but no two nodes hear the same majority.
    PartitionRing,
    /// Two sides that only one bridge node connects.
    PartitionBridge,
    /// kill -9 a node (the leader half of the time); restarted at heal.
    Kill,
    /// SIGSTOP a node (the leader half of the time); SIGCONT at heal.
    Pause,
    /// Skew a node's wall clock by up to ±5 minutes (libfaketime).
    Clock,
    /// Drop 20-40% of the packets between replicas (iptables statistic).
    Loss,
}

/// The nemesis schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// Quiet time before each fault.
    pub quiet: Duration,
    /// How long each fault is held.
    pub hold: Duration,
}

/// Who leads, by a majority of the nodes' answers.
pub async fn leader(cluster: &Cluster, http: &reqwest::Client) -> Option<usize> {
    let mut votes = std::collections::HashMap::new();
    for i in 1..=cluster.size() {
        if let Some(s) = cluster::status(http, &cluster.url(i)).await {
            if let Some(l) = s.leader {
                *votes.entry(l as usize).or_insert(0) += 1;
            }
        }
    }
    votes.into_iter().max_by_key(|(_, n)| *n).map(|(l, _)| l)
}

async fn target(cluster: &Cluster, http: &reqwest::Client, rng: &mut StdRng) -> usize {
    if rng.random_bool(0.5) {
        if let Some(l) = leader(cluster, http).await {
            return l;
        }
    }
    rng.random_range(1..=cluster.size())
}

/// Injects `fault`; returns what it did.
pub async fn inject(
    fault: Fault,
    cluster: &Cluster,
    http: &reqwest::Client,
    rng: &mut StdRng,
) -> Result<String, ClusterError> {
    let n = cluster.size();
    let mut nodes: Vec<usize> = (1..=n).collect();
    match fault {
        Fault::None => Ok("nothing".into()),
        Fault::Partition => {
            nodes.shuffle(rng);
            let (a, b) = nodes.split_at(n / 2);
            cluster.with_net(|net| net.partition(a, b))?;
            Ok(format!("{a:?} | {b:?}"))
        }
        Fault::PartitionLeader => {
            let l = match leader(cluster, http).await {
                Some(l) => l,
                None => rng.random_range(1..=n),
            };
            let rest: Vec<usize> = nodes.iter().copied().filter(|&x| x != l).collect();
            cluster.with_net(|net| net.partition(&[l], &rest))?;
            Ok(format!("leader {l} isolated from {rest:?}"))
        }
        Fault::PartitionRing => {
            nodes.shuffle(rng);
            let mut cuts = Vec::new();
            for k in 0..n {
                let (from, to) = (nodes[k], nodes[(k + 1) % n]);
                cluster.with_net(|net| net.cut(from, to))?;
                cuts.push(format!("{from}->{to}"));
            }
            Ok(format!("one-way cuts {}", cuts.join(" ")))
        }
        Fault::PartitionBridge => {
            nodes.shuffle(rng);
            let bridge = nodes[0];
            let rest = &nodes[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cluster.with_net(|net| net.partition(a, b))?;
            Ok(format!("{a:?} | {b:?} bridged by {bridge}"))
        }
        Fault::Kill => {
            let t = target(cluster, http, rng).await;
            cluster.kill(t);
            Ok(format!("killed {t}"))
        }
        Fault::Pause => {
            let t = target(cluster, http, rng).await;
            cluster.pause(t)?;
            Ok(format!("paused {t}"))
        }
        Fault::Clock => {
            let t = target(cluster, http, rng).await;
            let magnitude = rng.random_range(5..=300i64);
            let offset = if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            };
            cluster.set_clock(t, offset)?;
            Ok(format!("node {t} clock {offset:+} s"))
        }
        Fault::Loss => {
            let p = rng.random_range(0.2..0.4);
            cluster.with_net(|net| (1..=n).try_for_each(|i| net.loss(i, p)))?;
            Ok(format!("{:.0}% loss between replicas", p * 100.0))
        }
    }
}

/// Runs the schedule until `stop` fires; returns the fault intervals. Heals
/// before returning, also on error.
pub async fn run(
    schedule: Schedule,
    cluster: Arc<Cluster>,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    mut rng: StdRng,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<FaultInterval>, ClusterError> {
    let mut intervals = Vec::new();
    if schedule.faults.iter().all(|f| *f == Fault::None) {
        return Ok(intervals);
    }
    // Round-robin from a random start, so every listed fault gets its turn
    // even in a short run.
    let mut turn = rng.random_range(0..schedule.faults.len());
    loop {
        if wait_or_stop(&mut stop, schedule.quiet).await {
            return Ok(intervals);
        }
        let fault = schedule.faults[turn % schedule.faults.len()];
        turn += 1;
        let start_ms = recorder.now_ms();
        let detail = match inject(fault, &cluster, &http, &mut rng).await {
            Ok(d) => d,
            Err(e) => {
                cluster.heal()?;
                return Err(e);
            }
        };
        let stopped = wait_or_stop(&mut stop, schedule.hold).await;
        cluster.heal()?;
        intervals.push(FaultInterval {
            nemesis: serde_json::to_value(fault)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            detail,
            start_ms,
            end_ms: recorder.now_ms(),
        });
        if stopped {
            return Ok(intervals);
        }
    }
}

/// Sleeps `d`, or returns true early when `stop` fires.
async fn wait_or_stop(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}
