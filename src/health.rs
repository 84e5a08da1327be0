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
    /// `healthy` (score ≥ 80), `degraded` (≥ 50) or `critical`.
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
pub async fn assess(core: &NodeCore) -> Assessment {
    let view = ClusterView::read(core).await;
    let lag = view.commit_index.saturating_sub(view.applied_index);
    let max_lag = core.config.ready_max_lag;
    let (reachable, voters) = (view.reachable_voters(), view.voters());
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
            weight: 40,
            gates_ready: true,
        },
        Check {
            name: "quorum_reachable",
            ok: voters > 0 && reachable > voters / 2,
            detail: format!("{reachable} of {voters} voters reachable"),
            weight: 30,
            gates_ready: false,
        },
        Check {
            name: "replication_lag",
            ok: lag <= max_lag,
            detail: format!("{lag} entries committed but not applied (limit {max_lag})"),
            weight: 20,
            gates_ready: true,
        },
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

/// Bands a score into a status.
pub fn band(score: u32) -> &'static str {
    match score {
        80.. => "healthy",
        50..=79 => "degraded",
        _ => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::band;

    #[test]
    fn scores_band_into_statuses() {
        assert_eq!(band(100), "healthy");
        assert_eq!(band(80), "healthy");
        assert_eq!(band(79), "degraded");
        assert_eq!(band(50), "degraded");
        assert_eq!(band(49), "critical");
        assert_eq!(band(0), "critical");
    }
}
