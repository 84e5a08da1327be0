//! Membership changes, run on the leader: add a learner and wait until it
//! has caught up, promote it, remove a member, and hand leadership to
//! another voter. Voter changes go through openraft's joint consensus.
//!
//! openraft 0.9 has no leadership-transfer call: the leader stops taking
//! writes, waits until the target holds its whole log, and asks it to
//! campaign (the `Elect` peer RPC). The target wins the votes whose leader
//! lease has run out (the leader's own included), and the old leader steps
//! down on seeing the higher term.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_storage::{NodeId, PeerNode};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics};
use tokio::time::Instant;

use crate::leader::WriteGate;
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

/// The record of member `id`, which must be a voter to lead.
fn voter_node(m: &RaftMetrics<NodeId, PeerNode>, id: NodeId) -> Result<PeerNode, MembershipError> {
    let membership = m.membership_config.membership();
    let node = membership
        .get_node(&id)
        .cloned()
        .ok_or(MembershipError::NotFound(id))?;
    if !membership.voter_ids().any(|v| v == id) {
        return Err(MembershipError::Invalid(format!(
            "node {id} is a learner; only a voter can lead"
        )));
    }
    Ok(node)
}

/// Hands leadership from this leader to voter `to` (or the best placed
/// voter) and waits until it leads. Returns the new leader. With
/// `stay_passive`, this node never campaigns again (it is shutting down).
///
/// The target first catches up while writes still flow. Then `writes` is
/// closed: new client writes are refused (callers retry) until the target
/// holds this leader's whole log, it has been asked to campaign and won, or
/// a few election timeouts have passed. A transfer that cannot finish gives
/// up within a second or two instead of holding writes back.
pub async fn transfer_leadership(
    raft: &Raft,
    peers: &PeerNetwork,
    writes: &WriteGate,
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
    voter_node(&m, target)?;
    // A target far behind (just restarted, or fed a snapshot) catches up
    // while writes still flow: holding them back that long is an outage.
    let remaining = deadline.saturating_duration_since(Instant::now());
    wait_caught_up(raft, target, m.last_log_index.unwrap_or(0), remaining).await?;

    // Every later step is bounded by about an election timeout, so the
    // pause in writes stays short even when the transfer fails.
    let election = Duration::from_millis(raft.config().election_timeout_max);
    let within = |budget: Duration| budget.min(deadline.saturating_duration_since(Instant::now()));
    // This node must not campaign against its successor once it has
    // stepped down (dueling candidates split the votes).
    let _passive = Passive::new(raft, stay_passive);
    // While this leader keeps appending, the target is always a little
    // behind when it campaigns, and every voter with a longer log refuses
    // it. Stop taking writes (Raft thesis 3.10) until the transfer is over.
    let Some(_paused) = writes.close(within(election)).await else {
        return Err(MembershipError::Timeout(
            "writes in flight on the leader did not finish; transfer abandoned".into(),
        ));
    };
    let m = raft.metrics().borrow().clone();
    ensure_leader(&m)?;
    if to.is_none() {
        // Writes kept arriving while the first choice caught up: the voter
        // holding most of the log now is closest to holding all of it.
        target = successor(&m).unwrap_or(target);
    }
    let node = voter_node(&m, target)?;
    wait_caught_up(
        raft,
        target,
        m.last_log_index.unwrap_or(0),
        within(election),
    )
    .await?;
    campaign(
        raft,
        peers,
        (target, &node),
        to.is_none(),
        within(election * 3),
    )
    .await
}

/// Asks `target`, which holds this leader's whole log, to campaign, and
/// waits up to `budget` for it (or, with `any`, anyone else) to lead.
///
/// A voter grants the vote once its leader lease has run out, and this
/// leader's own lease counts from its election: a leader of longer standing
/// votes for the target at once, which makes it step down and gives the
/// target a majority in a three-node cluster. A leader elected less than a
/// lease ago refuses, but the target's higher term makes it step down at its
/// next heartbeat, which frees its vote, and one more campaign a couple of
/// heartbeats later wins. That is the only repeat: each campaign raises the
/// term, and asking again and again pre-empts the other voters' own
/// elections, so that nobody can win until the asking stops. The budget
/// covers the lease plus one election timeout, with room to spare; after
/// it, writes resume here if this node still leads, or the ordinary
/// election timers pick a leader.
async fn campaign(
    raft: &Raft,
    peers: &PeerNetwork,
    (target, node): (NodeId, &PeerNode),
    any: bool,
    budget: Duration,
) -> Result<NodeId, MembershipError> {
    const MAX_ASKS: u32 = 2;
    let config = raft.config();
    // Asking again while the target's campaign is still in flight would
    // abort it: wait two heartbeats once this node has stepped down, and a
    // whole election timeout while it still leads (the first ask was lost).
    let after_step_down = Duration::from_millis((config.heartbeat_interval * 2).max(150));
    let while_leading = Duration::from_millis(config.election_timeout_min);
    let deadline = Instant::now() + budget;
    let mut rx = raft.metrics();
    let me = rx.borrow().id;
    let (mut asks, mut asked) = (0, Instant::now());
    loop {
        let leader = rx.borrow_and_update().current_leader;
        match leader {
            Some(l) if l == target => return Ok(l),
            Some(l) if l != me && any => return Ok(l),
            Some(l) if l != me => {
                return Err(MembershipError::Unavailable(format!(
                    "node {l} took over instead of node {target}; retry on the new leader"
                )))
            }
            _ => {}
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let then = if leader == Some(me) {
                "this node keeps leading"
            } else {
                "an ordinary election follows"
            };
            return Err(MembershipError::Timeout(format!(
                "node {target} did not take over within {} ms; {then}",
                budget.as_millis()
            )));
        }
        let wait = if leader == Some(me) {
            while_leading
        } else {
            after_step_down
        };
        if asks == 0 || (asks < MAX_ASKS && asked.elapsed() >= wait) {
            asks += 1;
            asked = Instant::now();
            let call = remaining.min(Duration::from_secs(1));
            if let Err(e) = peers.elect(&node.raft_addr, call).await {
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
