//! Metrics: the process-wide Prometheus recorder, the HTTP layer that times
//! every request by its matched route, and the samplers that turn Raft and
//! storage state into gauges. The names are in [`cairn_storage::telemetry`],
//! except the standard `process_*` family (resident memory, CPU, open files,
//! threads), which keeps the names every Prometheus exporter gives it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use cairn_storage::state_machine::Notice;
use cairn_storage::telemetry as names;
use cairn_storage::EventKind;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::node::NodeCore;
use crate::status::ClusterView;

/// Latency buckets (seconds) of every `_seconds` histogram: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of entries per log append.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often Raft gauges are refreshed.
const RAFT_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often storage gauges are refreshed (they scan the artifact records).
const STORAGE_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The recorder's handle, or `None` when the host process had already
/// installed a recorder of its own (Cairn's metrics then go to that one).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs Cairn's Prometheus recorder once per process. An embedding
/// application that installed its own recorder first keeps it: Cairn then
/// records into the host's recorder and `/metrics` says so instead of
/// panicking.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let batch_sizes = [
                names::RAFT_LOG_APPEND_ENTRIES,
                names::RAFT_PROPOSAL_BATCH_SIZE,
                names::FORWARD_BATCH_SIZE,
            ];
            let builder = batch_sizes.into_iter().fold(
                PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS),
                |b, name| {
                    b.and_then(|b| {
                        b.set_buckets_for_metric(Matcher::Full(name.into()), BATCH_BUCKETS)
                    })
                },
            );
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "invalid metric buckets; metrics disabled");
                    return None;
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    metrics_process::Collector::default().describe();
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!(
                        "a metrics recorder is already installed by the host; \
                         GET /metrics is disabled and metrics go to the host's recorder"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text of every metric, or `None` (see [`install`]).
pub fn render() -> Option<String> {
    install().map(|h| h.render())
}

fn describe() {
    use names::*;
    describe_gauge!(RAFT_TERM, "Current Raft term");
    describe_gauge!(RAFT_IS_LEADER, "1 when this node is the Raft leader");
    describe_counter!(RAFT_LEADER_CHANGES, "Leader changes this node observed");
    describe_gauge!(RAFT_COMMIT_INDEX, "Highest log index known committed");
    describe_gauge!(RAFT_APPLIED_INDEX, "Highest log index applied here");
    describe_gauge!(RAFT_LAST_LOG_INDEX, "Last log index here");
    describe_gauge!(
        RAFT_REPLICATION_LAG,
        "Entries a follower trails the leader's log by (reported by the leader)"
    );
    describe_histogram!(
        RAFT_LOG_APPEND_SECONDS,
        Unit::Seconds,
        "Log append latency, including fsync"
    );
    describe_histogram!(RAFT_LOG_APPEND_ENTRIES, "Entries per log append");
    describe_histogram!(
        RAFT_PROPOSAL_BATCH_SIZE,
        "Client writes the leader proposed together as one log entry"
    );
    describe_counter!(RAFT_SNAPSHOTS, "Snapshots built or installed");
    describe_gauge!(
        RAFT_SNAPSHOT_BYTES,
        Unit::Bytes,
        "Size of the newest snapshot"
    );
    describe_histogram!(
        RAFT_SNAPSHOT_SECONDS,
        Unit::Seconds,
        "Snapshot build or install time"
    );
    describe_gauge!(RAFT_SNAPSHOT_INDEX, "Log index of the newest snapshot");
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by matched route, method and status"
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "HTTP request latency by matched route, method and status"
    );
    describe_counter!(FORWARDED_REQUESTS, "Requests forwarded to the leader");
    describe_histogram!(
        FORWARD_BATCH_SIZE,
        "Writes a follower forwarded to the leader in one call"
    );
    describe_gauge!(
        STORAGE_DISK_BYTES,
        Unit::Bytes,
        "Bytes the data directory takes"
    );
    describe_gauge!(
        STORAGE_DISK_FREE_BYTES,
        Unit::Bytes,
        "Bytes free on the data directory's file system"
    );
    describe_gauge!(STORAGE_ARTIFACTS, "Artifacts stored");
    describe_gauge!(
        STORAGE_CONTENT_BYTES,
        Unit::Bytes,
        "Artifact content bytes, uncompressed"
    );
    describe_gauge!(
        STORAGE_STORED_BYTES,
        Unit::Bytes,
        "Artifact content bytes as stored"
    );
    describe_gauge!(STORAGE_COMPRESSION_RATIO, "Content bytes / stored bytes");
    describe_counter!(
        CHECKSUM_FAILURES,
        "Stored content found failing its checksum"
    );
    describe_counter!(
        CONTENT_REPAIRS,
        "Damaged content rewritten from a healthy member"
    );
    describe_counter!(SCRUB_RUNS, "Scrub passes completed");
    describe_histogram!(SCRUB_SECONDS, Unit::Seconds, "Scrub pass duration");
    describe_gauge!(
        CORRUPT_CONTENT,
        "Content items known damaged and not yet repaired"
    );
    describe_gauge!(HEALTH_SCORE, "Health score, 0-100");
    describe_gauge!(LOCKS_HELD, "Locks currently held");
    describe_counter!(LOCK_ACQUISITIONS, "Successful lock acquisitions");
    describe_counter!(LOCK_EXPIRIES, "Lock leases expired on the replicated clock");
    describe_counter!(
        LOCK_FENCED_REJECTIONS,
        "Requests refused for a stale fencing token"
    );
    describe_gauge!(WATCH_SUBSCRIBERS, "Open watch streams");
    describe_counter!(WATCH_EVENTS, "Change events sent to watchers");
    // Counters that alerts watch exist from the start at 0, so `increase()`
    // sees their first increment.
    for found_by in ["read", "scrub"] {
        metrics::counter!(CHECKSUM_FAILURES, "found_by" => found_by).absolute(0);
    }
    for outcome in ["repaired", "failed"] {
        metrics::counter!(CONTENT_REPAIRS, "outcome" => outcome).absolute(0);
    }
    metrics::counter!(RAFT_LEADER_CHANGES).absolute(0);
    metrics::counter!(LOCK_ACQUISITIONS).absolute(0);
    metrics::counter!(LOCK_EXPIRIES).absolute(0);
    metrics::counter!(LOCK_FENCED_REJECTIONS).absolute(0);
    metrics::counter!(WATCH_EVENTS).absolute(0);
    metrics::gauge!(WATCH_SUBSCRIBERS).set(0.0);
    metrics::gauge!(CORRUPT_CONTENT).set(0.0);
}

/// Middleware recording every request under its matched route (the
/// pattern, e.g. `/v1/artifacts/{id}`, so labels stay bounded).
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(names::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(names::HTTP_REQUEST_SECONDS, &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts leader changes from Raft's metrics channel, so none is missed
/// between two samples.
pub async fn watch_leader(core: Arc<NodeCore>, stop: CancellationToken) {
    let mut rx = core.raft.metrics();
    let mut last = rx.borrow().current_leader;
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let leader = rx.borrow().current_leader;
        if leader.is_some() && leader != last {
            metrics::counter!(names::RAFT_LEADER_CHANGES).increment(1);
        }
        if leader.is_some() {
            last = leader;
        }
    }
}

/// Counts lock leases expiring on the replicated clock, from the change
/// events this replica applies (every replica counts the same expiries).
pub async fn watch_expiries(core: Arc<NodeCore>, stop: CancellationToken) {
    use tokio::sync::broadcast::error::RecvError;
    let mut notices = core.state.subscribe();
    loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = stop.cancelled() => return,
        };
        match notice {
            Ok(Notice::Events(events)) => {
                let expired = events
                    .iter()
                    .filter(|e| e.kind == EventKind::Expire && e.key.starts_with("locks/"))
                    .count();
                if expired > 0 {
                    metrics::counter!(names::LOCK_EXPIRIES).increment(expired as u64);
                }
            }
            // A snapshot install or a slow reader skips events: the counter
            // undercounts then, it never double counts.
            Ok(Notice::Reset) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Refreshes the Raft and storage gauges until `stop`.
pub async fn sample(core: Arc<NodeCore>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RAFT_SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_storage: Option<Instant> = None;
    let process = metrics_process::Collector::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        sample_raft(&core).await;
        match core.state.locks() {
            Ok(held) => metrics::gauge!(names::LOCKS_HELD).set(held.len() as f64),
            Err(e) => tracing::warn!(error = %e, "cannot count held locks"),
        }
        let health = crate::health::assess(&core).await;
        metrics::gauge!(names::HEALTH_SCORE).set(f64::from(health.score));
        if last_storage.is_none_or(|t| t.elapsed() >= STORAGE_SAMPLE_EVERY) {
            last_storage = Some(Instant::now());
            let c = core.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || sample_storage(&c)).await {
                tracing::warn!(error = %e, "storage sampling failed");
            }
        }
        if let Some(h) = install() {
            // Only into Cairn's own recorder: a host that brought its own
            // recorder reports its process as it sees fit, and two
            // collectors of the same `process_*` names would clash.
            process.collect();
            // Drains histogram samples into their buckets.
            h.run_upkeep();
        }
    }
}

async fn sample_raft(core: &NodeCore) {
    let view = ClusterView::read(core).await;
    let is_leader = view.leader == Some(core.config.id);
    metrics::gauge!(names::RAFT_TERM).set(view.term as f64);
    metrics::gauge!(names::RAFT_IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
    metrics::gauge!(names::RAFT_COMMIT_INDEX).set(view.commit_index as f64);
    metrics::gauge!(names::RAFT_APPLIED_INDEX).set(view.applied_index as f64);
    metrics::gauge!(names::RAFT_LAST_LOG_INDEX).set(view.last_log_index as f64);
    if let Some(i) = view.snapshot_index {
        metrics::gauge!(names::RAFT_SNAPSHOT_INDEX).set(i as f64);
    }
    for m in view.members.iter().filter(|m| m.id != core.config.id) {
        // Only the leader knows followers' progress; elsewhere the gauge
        // reads 0 rather than a stale value from an earlier leadership.
        let lag = if is_leader { m.lag.unwrap_or(0) } else { 0 };
        metrics::gauge!(names::RAFT_REPLICATION_LAG, "peer" => m.id.to_string()).set(lag as f64);
    }
}

fn sample_storage(core: &NodeCore) {
    let dir = &core.config.data_dir;
    metrics::gauge!(names::STORAGE_DISK_BYTES).set(dir_size(dir) as f64);
    if let Ok(free) = fs2::available_space(dir) {
        metrics::gauge!(names::STORAGE_DISK_FREE_BYTES).set(free as f64);
    }
    match core.state.content_totals() {
        Ok(t) => {
            metrics::gauge!(names::STORAGE_ARTIFACTS).set(t.artifacts as f64);
            metrics::gauge!(names::STORAGE_CONTENT_BYTES).set(t.content_bytes as f64);
            metrics::gauge!(names::STORAGE_STORED_BYTES).set(t.stored_bytes as f64);
            let ratio = if t.stored_bytes == 0 {
                1.0
            } else {
                t.content_bytes as f64 / t.stored_bytes as f64
            };
            metrics::gauge!(names::STORAGE_COMPRESSION_RATIO).set(ratio);
        }
        Err(e) => tracing::warn!(error = %e, "cannot total stored content"),
    }
}

/// Total size of the files under `dir` (0 for what cannot be read).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
