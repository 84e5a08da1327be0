//! Self-repair of stored content: what this node knows to be damaged, the
//! background scrub that re-verifies every checksum, the repair that
//! fetches a verified copy from a healthy member, and (for a member whose
//! state diverged otherwise) re-installing the whole state from one.
//!
//! Damaged content is never served (reads verify before answering and
//! answer 503 `unavailable` instead); it is counted, shows in the
//! `checksum_failures` health check, and is rewritten from a member whose
//! copy matches the replicated checksum.

pub mod consistency;
pub mod reinstall;
pub mod service;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_storage::integrity::{CorruptItem, RepairOutcome};
use cairn_storage::telemetry as names;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::node::NodeCore;

/// Where damage was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// A client read failed verification.
    Read,
    /// The scrub found it.
    Scrub,
}

impl FoundBy {
    fn label(self) -> &'static str {
        match self {
            FoundBy::Read => "read",
            FoundBy::Scrub => "scrub",
        }
    }
}

/// The last completed scrub pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubSummary {
    /// When it finished (ms since the Unix epoch, this node's clock).
    pub finished_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Content items verified.
    pub checked: u64,
    /// Items found damaged.
    pub corrupt: u64,
    /// Of those, items repaired.
    pub repaired: u64,
}

/// What one scrub-and-repair run did (also the answer of the `Scrub` RPC).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrubOutcome {
    /// Content items verified.
    pub checked: u64,
    /// Items that failed verification.
    pub corrupt: Vec<CorruptItem>,
    /// Ids rewritten from a healthy member.
    pub repaired: Vec<String>,
    /// Ids still damaged, with why they could not be repaired.
    pub unrepaired: Vec<CorruptItem>,
    /// How long the run took.
    pub duration_ms: u64,
}

#[derive(Default)]
struct Known {
    /// Damaged content not yet repaired: id → reason.
    corrupt: BTreeMap<String, String>,
    last_scrub: Option<ScrubSummary>,
    repaired_total: u64,
}

/// This node's knowledge of damaged content, shared by reads, the scrub
/// and the health checks.
#[derive(Clone, Default)]
pub struct Integrity {
    known: Arc<Mutex<Known>>,
    wake: Arc<Notify>,
}

/// A snapshot of [`Integrity`] for the API and the health checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntegrityStatus {
    /// Damaged items not yet repaired.
    pub corrupt: Vec<CorruptItem>,
    /// The last scrub pass.
    pub last_scrub: Option<ScrubSummary>,
    /// Items repaired since this process started.
    pub repaired_total: u64,
}

impl Integrity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records damaged content, counts it, and wakes the repairer.
    pub fn report(&self, id: &str, reason: &str, found_by: FoundBy) {
        let fresh = self
            .lock()
            .corrupt
            .insert(id.to_string(), reason.to_string())
            .is_none();
        if fresh {
            metrics::counter!(names::CHECKSUM_FAILURES, "found_by" => found_by.label())
                .increment(1);
            tracing::error!(
                artifact = id,
                reason,
                found_by = found_by.label(),
                "stored content failed verification"
            );
        }
        self.publish();
        self.wake.notify_one();
    }

    fn resolved(&self, id: &str, repaired: bool) {
        let mut k = self.lock();
        k.corrupt.remove(id);
        if repaired {
            k.repaired_total += 1;
        }
        drop(k);
        self.publish();
    }

    fn publish(&self) {
        let n = self.lock().corrupt.len();
        metrics::gauge!(names::CORRUPT_CONTENT).set(n as f64);
    }

    /// The current state.
    pub fn status(&self) -> IntegrityStatus {
        let k = self.lock();
        IntegrityStatus {
            corrupt: k
                .corrupt
                .iter()
                .map(|(id, reason)| CorruptItem {
                    id: id.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            last_scrub: k.last_scrub.clone(),
            repaired_total: k.repaired_total,
        }
    }

    fn corrupt_ids(&self) -> Vec<String> {
        self.lock().corrupt.keys().cloned().collect()
    }
}

/// Verifies every stored checksum on this node and, with `repair`, rewrites
/// each damaged item from a healthy member.
pub async fn scrub(core: &Arc<NodeCore>, repair: bool) -> ScrubOutcome {
    let started = Instant::now();
    let state = core.state.clone();
    let report = match tokio::task::spawn_blocking(move || state.scrub()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "scrub could not read the store");
            return ScrubOutcome::default();
        }
        Err(e) => {
            tracing::error!(error = %e, "scrub task failed");
            return ScrubOutcome::default();
        }
    };
    // Items known damaged but no longer found (rewritten or deleted by a
    // later entry) are resolved.
    for id in core.integrity.corrupt_ids() {
        if !report.corrupt.iter().any(|c| c.id == id) {
            core.integrity.resolved(&id, false);
        }
    }
    for item in &report.corrupt {
        core.integrity
            .report(&item.id, &item.reason, FoundBy::Scrub);
    }
    let mut outcome = ScrubOutcome {
        checked: report.checked,
        corrupt: report.corrupt.clone(),
        ..Default::default()
    };
    if repair {
        for item in &report.corrupt {
            match repair_one(core, &item.id).await {
                Ok(()) => outcome.repaired.push(item.id.clone()),
                Err(reason) => outcome.unrepaired.push(CorruptItem {
                    id: item.id.clone(),
                    reason,
                }),
            }
        }
    }
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    metrics::counter!(names::SCRUB_RUNS).increment(1);
    metrics::histogram!(names::SCRUB_SECONDS).record(started.elapsed().as_secs_f64());
    core.integrity.lock().last_scrub = Some(ScrubSummary {
        finished_ms: cairn_raft::leader::wall_clock_ms(),
        duration_ms: outcome.duration_ms,
        checked: outcome.checked,
        corrupt: outcome.corrupt.len() as u64,
        repaired: outcome.repaired.len() as u64,
    });
    tracing::info!(
        checked = outcome.checked,
        corrupt = outcome.corrupt.len(),
        repaired = outcome.repaired.len(),
        duration_ms = outcome.duration_ms,
        "scrub finished"
    );
    outcome
}

/// Rewrites the content of `id` from the first member holding a copy that
/// verifies against the replicated checksum.
pub async fn repair_one(core: &Arc<NodeCore>, id: &str) -> Result<(), String> {
    let peers = service::other_members(core);
    if peers.is_empty() {
        metrics::counter!(names::CONTENT_REPAIRS, "outcome" => "failed").increment(1);
        return Err("no other member holds a copy".into());
    }
    let mut last_error = String::from("no member had a verified copy");
    for (peer, addr) in peers {
        let copy = match service::fetch_content(core, &addr, id).await {
            Ok(Some(copy)) => copy,
            Ok(None) => {
                last_error = format!("node {peer} has no verified copy");
                continue;
            }
            Err(e) => {
                last_error = format!("node {peer}: {e}");
                continue;
            }
        };
        match core.state.repair_content(id, &copy).await {
            Ok(RepairOutcome::Repaired) => {
                metrics::counter!(names::CONTENT_REPAIRS, "outcome" => "repaired").increment(1);
                tracing::info!(artifact = id, from = peer, "repaired stored content");
                core.integrity.resolved(id, true);
                return Ok(());
            }
            Ok(RepairOutcome::AlreadyHealthy) | Ok(RepairOutcome::Gone) => {
                core.integrity.resolved(id, false);
                return Ok(());
            }
            Ok(RepairOutcome::Mismatch) => {
                last_error = format!("node {peer} holds another version");
            }
            Err(e) => {
                last_error = format!("writing the copy: {e}");
                break;
            }
        }
    }
    metrics::counter!(names::CONTENT_REPAIRS, "outcome" => "failed").increment(1);
    tracing::warn!(artifact = id, error = %last_error, "repair failed; will retry");
    Err(last_error)
}

/// The background scrub: a full pass every `--scrub-interval-ms`, and a
/// repair of known-damaged items whenever a read reports one (retried each
/// second while some remain).
pub async fn run(core: Arc<NodeCore>, stop: CancellationToken) {
    let interval = (core.config.scrub_interval_ms > 0)
        .then(|| Duration::from_millis(core.config.scrub_interval_ms));
    let mut next_scrub = interval.map(|i| tokio::time::Instant::now() + i);
    loop {
        let retry = (!core.integrity.corrupt_ids().is_empty())
            .then(|| tokio::time::Instant::now() + Duration::from_secs(1));
        let wake_at = [next_scrub, retry].into_iter().flatten().min();
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = core.integrity.wake.notified() => {}
            _ = sleep => {}
        }
        if next_scrub.is_some_and(|t| t <= tokio::time::Instant::now()) {
            scrub(&core, true).await;
            next_scrub = interval.map(|i| tokio::time::Instant::now() + i);
            continue;
        }
        for id in core.integrity.corrupt_ids() {
            if stop.is_cancelled() {
                return;
            }
            // Failures are logged and retried on the next round.
            let _ = repair_one(&core, &id).await;
        }
    }
}
