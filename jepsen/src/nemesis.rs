//! Nemeses: the faults, and the schedule that injects and heals them.
//!
//! Each cycle waits a quiet period, takes the next of the requested faults
//! (round-robin from a random start; targets and shapes are random), holds
//! it, then heals everything (network rules flushed, paused
//! nodes continued, killed nodes restarted, clocks reset, every node a
//! voter again). Composition is by listing several:
//! `--nemesis partition,kill,pause`.
//!
//! Most faults are set up once and then held. Two act for the whole hold
//! window through the admin API: `transfer` hands leadership around, and
//! `membership` removes a voter and has it rejoin as a fresh node.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use reqwest::Method;
use tokio::time::Instant;

use crate::cluster::{self, Cluster, ClusterError, ClusterStatus};
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
    /// Hand leadership to a random other voter every 1-2 s
    /// (`POST /v1/cluster/leader/transfer`).
    Transfer,
    /// Remove a voter (the leader half of the time) under load; it keeps
    /// serving, removed, for a third of the hold, then is wiped and
    /// restarted as a fresh node that rejoins with `--join URL --voter`.
    /// Heal makes every node a voter again.
    Membership,
}

/// How long a heal may take to make every node a voter again.
const RESTORE_WITHIN: Duration = Duration::from_secs(60);
/// How long one admin call may take (a transfer is bounded by twice the
/// node's request deadline; removing the leader hands leadership over first).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    let token = cluster.admin_token();
    for i in 1..=cluster.size() {
        if let Some(s) = cluster::status(http, &cluster.url(i), token.as_deref()).await {
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

/// What an injected fault left to do during its hold window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ongoing {
    /// Nothing: the fault is held as it is.
    Held,
    /// Hand leadership around until the window ends.
    Transfers,
    /// This node was removed; it rejoins as a fresh node in the window.
    Removed(usize),
}

/// Injects `fault`; returns what it did and what remains to do while it
/// is held.
pub async fn inject(
    fault: Fault,
    cluster: &Cluster,
    http: &reqwest::Client,
    rng: &mut StdRng,
) -> Result<(String, Ongoing), ClusterError> {
    let n = cluster.size();
    let mut nodes: Vec<usize> = (1..=n).collect();
    let held = |detail: String| Ok((detail, Ongoing::Held));
    match fault {
        Fault::None => held("nothing".into()),
        Fault::Partition => {
            nodes.shuffle(rng);
            let (a, b) = nodes.split_at(n / 2);
            cluster.with_net(|net| net.partition(a, b))?;
            held(format!("{a:?} | {b:?}"))
        }
        Fault::PartitionLeader => {
            let l = match leader(cluster, http).await {
                Some(l) => l,
                None => rng.random_range(1..=n),
            };
            let rest: Vec<usize> = nodes.iter().copied().filter(|&x| x != l).collect();
            cluster.with_net(|net| net.partition(&[l], &rest))?;
            held(format!("leader {l} isolated from {rest:?}"))
        }
        Fault::PartitionRing => {
            nodes.shuffle(rng);
            let mut cuts = Vec::new();
            for k in 0..n {
                let (from, to) = (nodes[k], nodes[(k + 1) % n]);
                cluster.with_net(|net| net.cut(from, to))?;
                cuts.push(format!("{from}->{to}"));
            }
            held(format!("one-way cuts {}", cuts.join(" ")))
        }
        Fault::PartitionBridge => {
            nodes.shuffle(rng);
            let bridge = nodes[0];
            let rest = &nodes[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cluster.with_net(|net| net.partition(a, b))?;
            held(format!("{a:?} | {b:?} bridged by {bridge}"))
        }
        Fault::Kill => {
            let t = target(cluster, http, rng).await;
            cluster.kill(t);
            held(format!("killed {t}"))
        }
        Fault::Pause => {
            let t = target(cluster, http, rng).await;
            cluster.pause(t)?;
            held(format!("paused {t}"))
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
            held(format!("node {t} clock {offset:+} s"))
        }
        Fault::Loss => {
            let p = rng.random_range(0.2..0.4);
            cluster.with_net(|net| (1..=n).try_for_each(|i| net.loss(i, p)))?;
            held(format!("{:.0}% loss between replicas", p * 100.0))
        }
        Fault::Transfer => Ok((String::new(), Ongoing::Transfers)),
        Fault::Membership => {
            let t = target(cluster, http, rng).await;
            // Through another node: it forwards to the leader, and when the
            // leader itself goes, it hands leadership over first.
            let via = t % n + 1;
            let admin = Admin::new(cluster, http);
            match admin
                .call(
                    Method::DELETE,
                    via,
                    &format!("/v1/cluster/members/{t}"),
                    None,
                )
                .await
            {
                Ok(_) => Ok((format!("removed {t}"), Ongoing::Removed(t))),
                // A refused removal (another change in flight, no quorum)
                // is an outcome worth recording, not a harness failure.
                Err(e) => held(format!("removing {t} refused: {e}")),
            }
        }
    }
}

/// Acts out the hold window of an injected fault until `hold` has passed or
/// `stop` fires; returns what it did (empty for a held fault) and whether
/// `stop` fired.
async fn hold_window(
    ongoing: Ongoing,
    cluster: &Cluster,
    http: &reqwest::Client,
    rng: &mut StdRng,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    hold: Duration,
) -> Result<(String, bool), ClusterError> {
    let until = Instant::now() + hold;
    let left = || until.saturating_duration_since(Instant::now());
    match ongoing {
        Ongoing::Held => Ok((String::new(), wait_or_stop(stop, hold).await)),
        Ongoing::Transfers => {
            let admin = Admin::new(cluster, http);
            let mut done = Vec::new();
            let mut stopped = false;
            while !left().is_zero() {
                done.push(transfer_once(&admin, rng).await);
                let pause = Duration::from_millis(rng.random_range(1000..=2000));
                if wait_or_stop(stop, pause.min(left())).await {
                    stopped = true;
                    break;
                }
            }
            let took = done.iter().filter(|d| !d.contains("refused")).count();
            let detail = format!(
                "{took} of {} leader transfers took: {}",
                done.len(),
                done.join(", ")
            );
            Ok((detail, stopped))
        }
        Ongoing::Removed(t) => {
            // The removed node keeps running and serving its clients for a
            // while: what it answers then must still be correct.
            if wait_or_stop(stop, hold / 3).await {
                return Ok(("; stopped while removed".into(), true));
            }
            cluster.wipe(t)?;
            cluster.start_node(t)?;
            let wiped = Instant::now();
            let mut detail = format!(
                "; wiped and restarted with --join after {:.1} s",
                (hold / 3).as_secs_f64()
            );
            loop {
                if voters(cluster, http).await == Some((1..=cluster.size() as u64).collect()) {
                    cluster.rejoined(t);
                    detail.push_str(&format!(
                        "; a voter again {:.1} s later",
                        wiped.elapsed().as_secs_f64()
                    ));
                    break;
                }
                if left().is_zero() {
                    detail.push_str("; not a voter yet when the window closed");
                    break;
                }
                if wait_or_stop(stop, Duration::from_millis(500).min(left())).await {
                    return Ok((detail, true));
                }
            }
            Ok((detail, wait_or_stop(stop, left()).await))
        }
    }
}

/// Asks the leader to hand leadership to a random other node; returns
/// what happened, e.g. `1->3` or `1->3 refused (503 unavailable)`.
async fn transfer_once(admin: &Admin<'_>, rng: &mut StdRng) -> String {
    let n = admin.cluster.size();
    let Some(from) = leader(admin.cluster, admin.http).await else {
        return "no leader to transfer from: refused".into();
    };
    let others: Vec<usize> = (1..=n).filter(|&i| i != from).collect();
    let Some(&to) = others.choose(rng) else {
        return "no other voter: refused".into();
    };
    let body = serde_json::json!({ "to": to });
    match admin
        .call(
            Method::POST,
            from,
            "/v1/cluster/leader/transfer",
            Some(body),
        )
        .await
    {
        Ok(v) => match v.get("leader").and_then(|l| l.as_u64()) {
            Some(l) if l == to as u64 => format!("{from}->{to}"),
            Some(l) => format!("{from}->{to} (now {l})"),
            None => format!("{from}->{to} (answer without a leader)"),
        },
        Err(e) => format!("{from}->{to} refused ({e})"),
    }
}

/// The voters, sorted, as the leader sees them (through the first node
/// that answers with the leader's view); `None` when no node does.
pub async fn voters(cluster: &Cluster, http: &reqwest::Client) -> Option<Vec<u64>> {
    view(cluster, http).await.map(|s| s.voters())
}

async fn view(cluster: &Cluster, http: &reqwest::Client) -> Option<ClusterStatus> {
    let token = cluster.admin_token();
    for i in 1..=cluster.size() {
        if let Some(s) = cluster::status(http, &cluster.url(i), token.as_deref()).await {
            if s.leaders_view() {
                return Some(s);
            }
        }
    }
    None
}

/// Heals every fault (see [`Cluster::heal`]), then, when membership may
/// have changed, waits up to `within` until every node is a voter again,
/// helping nodes along: a removed node that was never wiped is wiped and
/// rejoins, a caught-up learner is promoted, and a rejoining node whose
/// own join has not reached the leader after a while is added for it.
pub async fn heal(
    cluster: &Cluster,
    http: &reqwest::Client,
    membership: bool,
    within: Duration,
) -> Result<Result<(), String>, ClusterError> {
    cluster.heal()?;
    if !membership {
        return Ok(Ok(()));
    }
    let n = cluster.size();
    let all: Vec<u64> = (1..=n as u64).collect();
    let admin = Admin::new(cluster, http);
    let started = Instant::now();
    let deadline = started + within;
    loop {
        if let Some(s) = view(cluster, http).await {
            if s.voters() == all {
                (1..=n).for_each(|i| cluster.rejoined(i));
                return Ok(Ok(()));
            }
            for i in 1..=n {
                match s.member(i as u64) {
                    Some(m) if m.role == "voter" => cluster.rejoined(i),
                    // A caught-up learner. Its own join promotes it too;
                    // whichever comes second is a no-op.
                    Some(m) if m.lag.is_some_and(|l| l < 1000) => {
                        let path = format!("/v1/cluster/members/{i}/promote");
                        let _ = admin.call(Method::POST, i % n + 1, &path, None).await;
                    }
                    Some(_) => {}
                    None if !cluster.rejoining(i) => {
                        cluster.wipe(i)?;
                        cluster.start_node(i)?;
                    }
                    None if started.elapsed() > Duration::from_secs(10) => {
                        let (api, raft) = cluster.addrs(i);
                        let body =
                            serde_json::json!({ "id": i, "api_addr": api, "raft_addr": raft });
                        let path = "/v1/cluster/learners?wait=false";
                        let _ = admin.call(Method::POST, i % n + 1, path, Some(body)).await;
                    }
                    None => {}
                }
            }
        }
        if Instant::now() >= deadline {
            let seen = voters(cluster, http).await;
            return Ok(Err(format!(
                "not every node a voter within {} s (voters: {seen:?})",
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The admin API, called through one node (which forwards to the leader).
struct Admin<'a> {
    cluster: &'a Cluster,
    http: &'a reqwest::Client,
    token: Option<String>,
}

impl<'a> Admin<'a> {
    fn new(cluster: &'a Cluster, http: &'a reqwest::Client) -> Self {
        Self {
            cluster,
            http,
            token: cluster.admin_token(),
        }
    }

    /// Sends one call through node `via`; the answer's JSON (null when
    /// empty), or `status code` / the transport error.
    async fn call(
        &self,
        method: Method,
        via: usize,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.cluster.url(via)))
            .timeout(ADMIN_TIMEOUT);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                format!("transport: {e}")
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
        }
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(String::from))
            .unwrap_or_default();
        Err(format!("{} {code}", status.as_u16()).trim_end().to_string())
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
    let membership = schedule.faults.contains(&Fault::Membership);
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
        let window = match inject(fault, &cluster, &http, &mut rng).await {
            Ok((detail, ongoing)) => {
                hold_window(ongoing, &cluster, &http, &mut rng, &mut stop, schedule.hold)
                    .await
                    .map(|(more, stopped)| (detail + &more, stopped))
            }
            Err(e) => Err(e),
        };
        let healed = heal(&cluster, &http, membership, RESTORE_WITHIN).await;
        let (mut detail, stopped) = window?;
        if let Err(e) = healed? {
            detail.push_str(&format!("; heal: {e}"));
        }
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
