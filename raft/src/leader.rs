//! What only the leader can do for a client: commit a write, and fix a read
//! index for a linearizable read. Used by the local API when this node leads
//! and by the peer service for requests forwarded from followers.

use std::time::Duration;

use cairn_storage::{NodeId, Request, Response};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

use crate::{PeerNode, Raft};

/// Why the leader-side operation did not happen here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LeaderError {
    /// This node does not lead; `leader` is who it believes does.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// Raft cannot serve right now (no quorum, shutting down).
    #[error("raft unavailable: {0}")]
    Unavailable(String),
}

/// A committed write: its log index (the revision) and the state machine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Log index at which the command was applied.
    pub index: u64,
    /// The state machine's response.
    pub response: Response,
}

/// Milliseconds since the Unix epoch on this node's clock.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stamps `req` with this (leader) node's clock, proposes it and waits until
/// it is committed and applied. The stamp is the only way time enters the
/// state machine.
pub async fn write(raft: &Raft, mut req: Request) -> Result<WriteOutcome, LeaderError> {
    req.now_ms = wall_clock_ms();
    match raft.client_write(req).await {
        Ok(r) => Ok(WriteOutcome {
            index: r.log_id.index,
            response: r.data,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(LeaderError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(e) => Err(LeaderError::Unavailable(e.to_string())),
    }
}

/// Returns the index a linearizable read must wait for: every write
/// acknowledged before the call is at or below it.
///
/// Leadership is confirmed with a quorum round, unless `lease` is given and
/// this leader heard from a quorum within it and has applied an entry of its
/// own term (so everything committed before it took over is applied).
pub async fn read_index(raft: &Raft, lease: Option<Duration>) -> Result<u64, LeaderError> {
    if let Some(lease) = lease {
        let m = raft.metrics().borrow().clone();
        let fresh = m
            .millis_since_quorum_ack
            .is_some_and(|ms| u128::from(ms) < lease.as_millis());
        let own_term_applied = m
            .last_applied
            .is_some_and(|l| l.leader_id.term == m.current_term);
        if m.current_leader == Some(m.id) && fresh && own_term_applied {
            return Ok(m.last_applied.map_or(0, |l| l.index));
        }
    }
    match raft.get_read_log_id().await {
        Ok((read_log_id, _applied)) => Ok(read_log_id.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(LeaderError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(e) => Err(LeaderError::Unavailable(e.to_string())),
    }
}

/// The node record of `id` in the current membership, if it is a member.
pub fn member(raft: &Raft, id: NodeId) -> Option<PeerNode> {
    let metrics = raft.metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .cloned()
}
