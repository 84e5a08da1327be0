//! Membership changes, run on the leader: add a learner and wait until it
//! has caught up, promote it, remove a member, and hand leadership to
//! another voter. Voter changes go through openraft's joint consensus.
//!
//! openraft 0.9 has no leadership-transfer call: the leader asks the target
//! to campaign (the `Elect` peer RPC). The target, holding the whole log,
//! wins the votes whose leader lease has run out (the leader's own included),
//! and the old leader steps down on seeing the higher term.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_storage::{NodeId, PeerNode};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics};
use tokio::time::Instant;

use crate::network::PeerNetwork;
use crate::Raft;

/// Why a membership operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// This node does not lead; `leader` is who it believes does.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// Another membership change has not finished yet.
    #[error("another membership change is in progress: {0}")]
    InProgress(String),
    /// The member does not exist.
    #[error("node {0} is not a member")]
    NotFound(NodeId),
    /// The change is not allowed (e.g. removing the last voter).
    #[error("{0}")]
    Invalid(String),
    /// The operation did not finish within its deadline.
    #[error("{0}")]
    Timeout(String),
    /// Raft cannot serve right now (no quorum, shutting down).
    #[error("raft unavailable: {0}")]
    Unavailable(String),
}

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>;

fn from_write(e: WriteError) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(p) => MembershipError::InProgress(p.to_string()),
            other => MembershipError::Invalid(other.to_string()),
        },
        RaftError::Fatal(f) => MembershipError::Unavailable(f.to_string()),
    }
}

/// Fails unless this node leads.
fn ensure_leader(m: &RaftMetrics<NodeId, PeerNode>) -> Result<(), MembershipError> {
    if m.current_leader == Some(m.id) {
        Ok(())
    } else {
        Err(MembershipError::NotLeader {
            leader: m.current_leader,
        })
    }
}

/// The log index replicated to `id`, as the leader knows it.
pub fn matched_index(m: &RaftMetrics<NodeId, PeerNode>, id: NodeId) -> Option<u64> {
    if id == m.id {
        return m.last_log_index;
    }
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .map(|l| l.map_or(0, |l| l.index))
}

/// Waits until `check` finds what it looks for in the metrics.
async fn wait_for<T>(
    raft: &Raft,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&RaftMetrics<NodeId, PeerNode>) -> Option<T>,
) -> Result<T, MembershipError> {
    let mut rx = raft.metrics();
    let waited = tokio::time::timeout(timeout, async {
        loop {
            if let Some(v) = check(&rx.borrow_and_update()) {
                return Ok(v);
            }
            if rx.changed().await.is_err() {
                return Err(MembershipError::Unavailable("raft stopped".into()));
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        Err(MembershipError::Timeout(format!(
            "{what}: not done within {} ms",
            timeout.as_millis()
        )))
    })
}

/// Adds `id` as a learner (no-op if it already is a member with the same
/// addresses) and returns the log index it must reach to count as caught up.
pub async fn add_learner(raft: &Raft, id: NodeId, node: PeerNode) -> Result<u64, MembershipError> {
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    if let Some(existing) = m.membership_config.membership().get_node(&id) {
        if *existing != node {
            return Err(MembershipError::Invalid(format!(
                "node {id} is already a member with other addresses (api {}, raft {}); remove it first",
                existing.api_addr, existing.raft_addr
            )));
        }
        return Ok(m.last_log_index.unwrap_or(0));
    }
    let r = raft
        .add_learner(id, node, false)
        .await
        .map_err(from_write)?;
    Ok(r.log_id.index)
}

/// Waits until `id` has replicated the log up to `index`; returns its matched index.
pub async fn wait_caught_up(
    raft: &Raft,
    id: NodeId,
    index: u64,
    timeout: Duration,
) -> Result<u64, MembershipError> {
    wait_for(raft, timeout, &format!("node {id} catching up"), |m| {
        matched_index(m, id).filter(|&i| i >= index)
    })
    .await
}

/// Makes learner `id` a voter (joint consensus); no-op if it already votes.
pub async fn promote(raft: &Raft, id: NodeId) -> Result<(), MembershipError> {
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    let membership = m.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return Err(MembershipError::NotFound(id));
    }
    if membership.voter_ids().any(|v| v == id) {
        return Ok(());
    }
    let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
    raft.change_membership(change, false)
        .await
        .map_err(from_write)?;
    Ok(())
}

/// Removes member `id`, voter or learner. The leader may remove itself: it
/// leads until the change commits, then steps down.
pub async fn remove(raft: &Raft, id: NodeId) -> Result<(), MembershipError> {
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    let membership = m.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return Err(MembershipError::NotFound(id));
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let change: ChangeMembers<NodeId, PeerNode> = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(MembershipError::Invalid(format!(
                "node {id} is the last voter; a cluster cannot remove its last voter"
            )));
        }
        // retain = false below drops the removed voter's node record too.
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    raft.change_membership(change, false)
        .await
        .map_err(from_write)?;
    Ok(())
}

/// The voter (other than this leader) best placed to take over: the one
/// with the highest matched index.
pub fn successor(m: &RaftMetrics<NodeId, PeerNode>) -> Option<NodeId> {
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|&v| v != m.id)
        .max_by_key(|&v| (matched_index(m, v).unwrap_or(0), std::cmp::Reverse(v)))
}

/// Keeps this node from starting elections while it lives; with `stay`,
/// for the rest of the process (a node about to shut down).
struct Passive<'a> {
    raft: &'a Raft,
    stay: bool,
}

impl<'a> Passive<'a> {
    fn new(raft: &'a Raft, stay: bool) -> Self {
        raft.runtime_config().elect(false);
        Self { raft, stay }
    }
}

impl Drop for Passive<'_> {
    fn drop(&mut self) {
        if !self.stay {
            self.raft.runtime_config().elect(true);
        }
    }
}

/// Hands leadership from this leader to voter `to` (or the best placed
/// voter) and waits until it leads. Returns the new leader. With
/// `stay_passive`, this node never campaigns again (it is shutting down).
pub async fn transfer_leadership(
    raft: &Raft,
    peers: &PeerNetwork,
    to: Option<NodeId>,
    timeout: Duration,
    stay_passive: bool,
) -> Result<NodeId, MembershipError> {
    let deadline = Instant::now() + timeout;
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    let mut target = match to {
        Some(id) if id == m.id => return Ok(id),
        Some(id) => id,
        None => successor(&m).ok_or_else(|| {
            MembershipError::Invalid("no other voter to hand leadership to".into())
        })?,
    };
    let membership = m.membership_config.membership();
    let mut node = membership
        .get_node(&target)
        .cloned()
        .ok_or(MembershipError::NotFound(target))?;
    if !membership.voter_ids().any(|v| v == target) {
        return Err(MembershipError::Invalid(format!(
            "node {target} is a learner; only a voter can lead"
        )));
    }
    // This node must not campaign against its successor once it has
    // stepped down (dueling candidates split the votes for seconds).
    let _passive = Passive::new(raft, stay_passive);
    // A candidate whose log is behind loses the vote: let it catch up first.
    let last = m.last_log_index.unwrap_or(0);
    let remaining = deadline.saturating_duration_since(Instant::now());
    wait_caught_up(raft, target, last, remaining).await?;

    // The first campaign is usually refused: the voters' leader lease has
    // not run out. It still makes this leader see the higher term and step
    // down, which frees its vote; one more campaign a couple of heartbeats
    // later then wins. Asking again too soon would abort the target's own
    // campaign in flight, so while nobody leads the target is asked every
    // two heartbeats, and while this node still leads once per (minimum)
    // election timeout.
    let config = raft.config();
    let quick = Duration::from_millis((config.heartbeat_interval * 2).max(150));
    let slow = Duration::from_millis(config.election_timeout_min);
    let me = m.id;
    let mut rx = raft.metrics();
    let mut last_ask: Option<Instant> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(MembershipError::Timeout(format!(
                "node {target} did not take over within {} ms",
                timeout.as_millis()
            )));
        }
        let now = rx.borrow_and_update().clone();
        let leader = now.current_leader;
        if leader == Some(me) && to.is_none() {
            // Writes keep arriving until this node steps down: the voter
            // holding most of the log is the one that can win.
            if let Some(best) = successor(&now).filter(|&b| b != target) {
                if let Some(n) = now.membership_config.membership().get_node(&best) {
                    target = best;
                    node = n.clone();
                }
            }
        }
        let since = last_ask.map_or(Duration::MAX, |t| t.elapsed());
        let ask = match leader {
            Some(l) if l == target => return Ok(l),
            Some(l) if l != me => {
                if to.is_none() {
                    return Ok(l);
                }
                return Err(MembershipError::Unavailable(format!(
                    "node {l} took over instead of node {target}; retry on the new leader"
                )));
            }
            Some(_) => since >= slow,
            None => since >= quick,
        };
        if ask {
            last_ask = Some(Instant::now());
            if let Err(e) = peers
                .elect(&node.raft_addr, remaining.min(Duration::from_secs(1)))
                .await
            {
                tracing::warn!(target, error = %e, "asking the successor to campaign failed");
            }
        }
        let tick = remaining.min(Duration::from_millis(50));
        if let Ok(Err(_)) = tokio::time::timeout(tick, rx.changed()).await {
            return Err(MembershipError::Unavailable("raft stopped".into()));
        }
    }
}

/// Builds a snapshot now and purges the log behind it; returns the
/// snapshot's index and the highest purged index.
pub async fn snapshot_now(
    raft: &Raft,
    timeout: Duration,
) -> Result<(u64, Option<u64>), MembershipError> {
    let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    let fatal = |e: openraft::error::Fatal<NodeId>| MembershipError::Unavailable(e.to_string());
    raft.trigger().snapshot().await.map_err(fatal)?;
    let index = wait_for(raft, timeout, "building a snapshot", |m| {
        m.snapshot.map(|l| l.index).filter(|&i| i >= applied)
    })
    .await?;
    // openraft purges only what replication no longer needs, so this may
    // keep some entries for lagging members.
    raft.trigger().purge_log(index).await.map_err(fatal)?;
    let purged = raft.metrics().borrow().purged.map(|l| l.index);
    Ok((index, purged))
}
