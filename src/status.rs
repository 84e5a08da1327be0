//! One read of the cluster's state as this node sees it, shared by
//! `/v1/cluster` and the health checks.

use cairn_storage::{NodeId, PeerNode};
use openraft::ServerState;

use crate::node::NodeCore;

/// A member and what this node knows of it.
#[derive(Debug, Clone)]
pub struct MemberState {
    /// Its id.
    pub id: NodeId,
    /// Its addresses.
    pub node: PeerNode,
    /// Voter (else learner).
    pub voter: bool,
    /// Whether it answered this node's last probe (always true for itself).
    pub reachable: bool,
    /// Highest log index known replicated to it (known on the leader, and
    /// for this node itself).
    pub matched_index: Option<u64>,
    /// How far it trails the leader's log, where known.
    pub lag: Option<u64>,
}

/// This node's view of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: &'static str,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Highest index this node knows committed.
    pub commit_index: u64,
    /// Highest index applied here.
    pub applied_index: u64,
    /// Last log index here.
    pub last_log_index: u64,
    /// Index of the newest snapshot here.
    pub snapshot_index: Option<u64>,
    /// Highest log index removed from the log here (compacted behind a snapshot).
    pub purged_index: Option<u64>,
    /// Whether this node is in the membership at all.
    pub is_member: bool,
    /// The members.
    pub members: Vec<MemberState>,
}

impl ClusterView {
    /// Reads the view from Raft metrics and the reachability probes.
    pub async fn read(core: &NodeCore) -> Self {
        let m = core.raft.metrics().borrow().clone();
        let commit_index = core
            .raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
            .await
            .unwrap_or(0);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let applied_index = m.last_applied.map_or(0, |l| l.index);
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone();
        let members: Vec<MemberState> = membership
            .nodes()
            .map(|(&id, node)| {
                let is_self = id == core.config.id;
                let matched_index = if is_self {
                    Some(last_log_index)
                } else {
                    replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned())
                        .map(|l| l.map_or(0, |l| l.index))
                };
                let reachable = is_self || core.reachability.get(id).is_some_and(|p| p.reachable);
                MemberState {
                    id,
                    node: node.clone(),
                    voter: voters.contains(&id),
                    reachable,
                    lag: if is_self {
                        Some(commit_index.saturating_sub(applied_index))
                    } else {
                        matched_index.map(|i| last_log_index.saturating_sub(i))
                    },
                    matched_index,
                }
            })
            .collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterView {
            state,
            leader: m.current_leader,
            term: m.current_term,
            commit_index,
            applied_index,
            last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            is_member: members.iter().any(|x| x.id == core.config.id),
            members,
        }
    }

    /// Voters (this node included) that answered their last probe.
    pub fn reachable_voters(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.voter && m.reachable)
            .count()
    }

    /// Number of voters.
    pub fn voters(&self) -> usize {
        self.members.iter().filter(|m| m.voter).count()
    }
}
