//! What only the leader can do for a client: commit a write, and fix a read
//! index for a linearizable read. Used by the local API when this node leads
//! and by the peer service for requests forwarded from followers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_storage::{NodeId, Request, Response};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, RwLockReadGuard};

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
    /// This leader is handing leadership over and takes no new writes
    /// until it has; retry shortly (on the new leader).
    #[error("leadership is being handed over; retry")]
    HandingOver,
}

/// Admission of client writes on this node while it leads.
///
/// A leadership transfer closes the gate (Raft thesis §3.10): as long as
/// the leader keeps appending, its successor never holds the whole log, and
/// a candidate with a shorter log loses the vote of every voter that has
/// more. Refused writes fail with [`LeaderError::HandingOver`], which the
/// forwarding path retries with backoff until the request deadline, by then
/// against the new leader.
#[derive(Clone, Default)]
pub struct WriteGate {
    inner: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Set while a transfer holds the gate, so new writes are refused at
    /// once instead of queueing behind it.
    closed: AtomicBool,
    /// Every admitted write holds a read guard until it is applied; closing
    /// takes the write side, so it returns once the writes in flight are
    /// done and the log has stopped growing.
    in_flight: Arc<RwLock<()>>,
}

/// The gate held shut; dropping it admits writes again.
pub struct ClosedGate {
    state: Arc<GateState>,
    _drained: OwnedRwLockWriteGuard<()>,
}

impl Drop for ClosedGate {
    fn drop(&mut self) {
        self.state.closed.store(false, Ordering::Release);
    }
}

impl WriteGate {
    /// Admits one write, or refuses it while a transfer holds the gate. The
    /// guard is to be held until the write is applied.
    pub(crate) fn admit(&self) -> Result<RwLockReadGuard<'_, ()>, LeaderError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(LeaderError::HandingOver);
        }
        self.inner
            .in_flight
            .try_read()
            .map_err(|_| LeaderError::HandingOver)
    }

    /// Refuses new writes and waits up to `timeout` for those in flight to
    /// be applied. `None` (and the gate open again) if they were not.
    pub async fn close(&self, timeout: Duration) -> Option<ClosedGate> {
        self.inner.closed.store(true, Ordering::Release);
        let drained = self.inner.in_flight.clone().write_owned();
        match tokio::time::timeout(timeout, drained).await {
            Ok(guard) => Some(ClosedGate {
                state: self.inner.clone(),
                _drained: guard,
            }),
            Err(_) => {
                self.inner.closed.store(false, Ordering::Release);
                None
            }
        }
    }
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

/// Proposes `req` as one log entry and waits until it is committed and
/// applied. Clients write through [`crate::propose::Proposer`], which admits,
/// stamps and batches.
pub(crate) async fn propose(raft: &Raft, req: Request) -> Result<WriteOutcome, LeaderError> {
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
