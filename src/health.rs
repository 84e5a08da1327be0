//! The health checks behind `/health` and `/health/ready`: named checks
//! with weights adding up to a 0-100 score, banded into a status.

use serde::Serialize;

use crate::node::NodeCore;
use crate::status::ClusterView;

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// Whether it passes.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// Points it contributes to the score when passing.
    pub weight: u32,
    /// Whether it must pass for `/health/ready`.
    #[serde(skip)]
    pub gates_ready: bool,
}

/// The outcome of all checks.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// `healthy` (score ≥ 90), `degraded` (≥ 50) or `critical`.
    pub status: &'static str,
    /// Sum of the weights of passing checks, 0-100.
    pub score: u32,
    /// This node's Raft role.
    pub role: &'static str,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Entries committed but not yet applied here.
    pub lag: u64,
    /// Whether `/health/ready` passes.
    #[serde(skip)]
    pub ready: bool,
    /// Every check.
    pub checks: Vec<Check>,
}

/// Runs every check against this node's current view.
///
/// Weights (sum 100): member 10, leader_known 20, quorum_reachable 20,
/// members_reachable 15, replication_lag 10, disk_space 10,
/// checksum_failures 10, snapshot_age 5.
pub async fn assess(core: &NodeCore) -> Assessment {
    let view = ClusterView::read(core).await;
    let lag = view.commit_index.saturating_sub(view.applied_index);
    let max_lag = core.config.ready_max_lag;
    let (reachable, voters) = (view.reachable_voters(), view.voters());
    let unreachable: Vec<String> = view
        .members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.id.to_string())
        .collect();
    let checks = vec![
        Check {
            name: "member",
            ok: view.is_member,
            detail: if view.is_member {
                "this node is in the membership".into()
            } else {
                "this node is not (yet) a member of a cluster".into()
            },
            weight: 10,
            gates_ready: true,
        },
        Check {
            name: "leader_known",
            ok: view.leader.is_some(),
            detail: match view.leader {
                Some(l) => format!("leader is node {l}"),
                None => "no leader known".into(),
            },
            weight: 20,
            gates_ready: true,
        },
        Check {
            name: "quorum_reachable",
            ok: voters > 0 && reachable > voters / 2,
            detail: format!("{reachable} of {voters} voters reachable"),
            weight: 20,
            gates_ready: false,
        },
        Check {
            name: "members_reachable",
            ok: unreachable.is_empty(),
            detail: if unreachable.is_empty() {
                format!("all {} members answer", view.members.len())
            } else {
                format!("node(s) {} do not answer", unreachable.join(", "))
            },
            weight: 15,
            gates_ready: false,
        },
        Check {
            name: "replication_lag",
            ok: lag <= max_lag,
            detail: format!("{lag} entries committed but not applied (limit {max_lag})"),
            weight: 10,
            gates_ready: true,
        },
        disk_space(core),
        checksum_failures(core),
        snapshot_age(core, &view),
    ];
    let score = checks.iter().filter(|c| c.ok).map(|c| c.weight).sum();
    let ready = checks.iter().filter(|c| c.gates_ready).all(|c| c.ok);
    Assessment {
        status: band(score),
        score,
        role: view.state,
        leader: view.leader,
        term: view.term,
        lag,
        ready,
        checks,
    }
}

fn disk_space(core: &NodeCore) -> Check {
    let dir = &core.config.data_dir;
    let min = u64::from(core.config.min_free_disk_percent);
    let (ok, detail) = match (fs2::available_space(dir), fs2::total_space(dir)) {
        (Ok(free), Ok(total)) if total > 0 => {
            let pct = free.saturating_mul(100) / total;
            (
                pct >= min,
                format!(
                    "{pct}% free ({} MiB of {} MiB; minimum {min}%)",
                    free >> 20,
                    total >> 20
                ),
            )
        }
        (Err(e), _) | (_, Err(e)) => (false, format!("cannot read free space: {e}")),
        _ => (
            false,
            "the data directory's file system reports no size".into(),
        ),
    };
    Check {
        name: "disk_space",
        ok,
        detail,
        weight: 10,
        gates_ready: false,
    }
}

fn checksum_failures(core: &NodeCore) -> Check {
    let status = core.integrity.status();
    let n = status.corrupt.len();
    let detail = match (n, &status.last_scrub) {
        (0, Some(s)) => format!(
            "no damaged content; last scrub verified {} items",
            s.checked
        ),
        (0, None) => "no damaged content seen (no scrub pass yet)".into(),
        _ => format!(
            "{n} stored item(s) fail their checksum and await repair: {}",
            status
                .corrupt
                .iter()
                .take(5)
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Check {
        name: "checksum_failures",
        ok: n == 0,
        detail,
        weight: 10,
        gates_ready: false,
    }
}

/// Snapshots keep the log short and let lagging members catch up; the check
/// fails when the log has grown well past the snapshot policy.
fn snapshot_age(core: &NodeCore, view: &ClusterView) -> Check {
    let since = view
        .last_log_index
        .saturating_sub(view.snapshot_index.unwrap_or(0));
    let limit = core
        .config
        .snapshot_every
        .saturating_mul(2)
        .saturating_add(core.config.keep_behind_snapshot);
    Check {
        name: "snapshot_age",
        ok: since <= limit,
        detail: match view.snapshot_index {
            Some(i) => format!("{since} entries since the snapshot at {i} (limit {limit})"),
            None => format!("{since} entries, no snapshot yet (limit {limit})"),
        },
        weight: 5,
        gates_ready: false,
    }
}

/// Bands a score into a status, as seed 000 reads scores: 90-100 healthy,
/// 50-89 degraded (something needs a look), below 50 critical.
pub fn band(score: u32) -> &'static str {
    match score {
        90.. => "healthy",
        50..=89 => "degraded",
        _ => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::band;

    #[test]
    fn scores_band_into_statuses() {
        assert_eq!(band(100), "healthy");
        assert_eq!(band(90), "healthy");
        assert_eq!(band(89), "degraded");
        assert_eq!(band(50), "degraded");
        assert_eq!(band(49), "critical");
        assert_eq!(band(0), "critical");
    }
}
