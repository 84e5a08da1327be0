//! Cluster administration on a node: membership changes one at a time,
//! leadership hand-over, and the drain that precedes a graceful shutdown.
//! The Raft side of each change is in `cairn_raft::membership`; this module
//! adds what a node needs around it (serialisation of changes, deadlines,
//! finding the leader).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_raft::leader;
use cairn_raft::membership::{self, MembershipError};
use cairn_storage::{Command, NodeId, PeerNode};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::forward::Unavailable;
use crate::node::NodeCore;

/// The longest an admin call may wait for a learner to catch up.
pub const MAX_CATCH_UP_WAIT: Duration = Duration::from_secs(600);

/// Per-node state of administrative operations.
pub struct Operations {
    /// Held for the whole of a membership change on this leader, so a
    /// second change is refused (409) instead of queued behind the first.
    change: Mutex<()>,
    /// Set once shutdown has begun: readiness fails so balancers drain us.
    draining: AtomicBool,
    /// HTTP client for talking to other nodes' APIs (admin forwarding).
    pub http: reqwest::Client,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            change: Mutex::new(()),
            draining: AtomicBool::new(false),
            // A client with no TLS and no proxy can only fail to build on a
            // broken system; fall back to the default client then.
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Operations {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn begin_change(&self) -> Result<MutexGuard<'_, ()>, MembershipError> {
        self.change.try_lock().map_err(|_| {
            MembershipError::InProgress("this leader is still running another change".into())
        })
    }
}

/// Where admin calls must run.
pub enum AdminTarget {
    /// This node leads.
    Here,
    /// The leader's HTTP API address.
    Leader(String),
}

/// Finds the leader, waiting up to the request deadline for one.
pub async fn leader_target(core: &NodeCore) -> Result<AdminTarget, Unavailable> {
    let deadline = Instant::now() + core.config.request_timeout();
    loop {
        let leader = core.raft.metrics().borrow().current_leader;
        match leader {
            Some(id) if id == core.config.id => return Ok(AdminTarget::Here),
            Some(id) => {
                if let Some(node) = leader::member(&core.raft, id) {
                    return Ok(AdminTarget::Leader(node.api_addr));
                }
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(Unavailable(format!(
                "no leader known within {} ms",
                core.config.request_timeout_ms
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Forms a new cluster of this node and `others` (once: a node that already
/// belongs to a cluster refuses).
pub async fn init(
    core: &NodeCore,
    others: Vec<(NodeId, PeerNode)>,
) -> Result<String, MembershipError> {
    let unavailable = |e: &dyn std::fmt::Display| MembershipError::Unavailable(e.to_string());
    let _change = core.ops.begin_change()?;
    if core
        .raft
        .is_initialized()
        .await
        .map_err(|e| unavailable(&e))?
    {
        return Err(MembershipError::InProgress(
            "this node already belongs to a cluster".into(),
        ));
    }
    let mut members = std::collections::BTreeMap::from([(
        core.config.id,
        PeerNode {
            api_addr: core.config.public_api_addr().to_string(),
            raft_addr: core.config.public_raft_addr().to_string(),
        },
    )]);
    members.extend(others);
    core.raft
        .initialize(members)
        .await
        .map_err(|e| unavailable(&e))?;
    let cluster_id = uuid::Uuid::now_v7().to_string();
    core.write(
        Command::InitCluster {
            cluster_id: cluster_id.clone(),
        },
        crate::forward::WriteOptions::default(),
    )
    .await
    .map_err(|e| unavailable(&e))?;
    Ok(cluster_id)
}

/// Adds a learner; with `wait`, returns once it has caught up, with its
/// matched index. Without, returns the index it has to reach.
pub async fn add_learner(
    core: &NodeCore,
    id: NodeId,
    node: PeerNode,
    wait: Option<Duration>,
) -> Result<(u64, bool), MembershipError> {
    let _change = core.ops.begin_change()?;
    let target = membership::add_learner(&core.raft, id, node).await?;
    tracing::info!(id, target, "learner added");
    match wait {
        None => Ok((target, false)),
        Some(timeout) => {
            let matched = membership::wait_caught_up(&core.raft, id, target, timeout).await?;
            tracing::info!(id, matched, "learner caught up");
            Ok((matched, true))
        }
    }
}

/// Promotes learner `id` to voter.
pub async fn promote(core: &NodeCore, id: NodeId) -> Result<(), MembershipError> {
    let _change = core.ops.begin_change()?;
    membership::promote(&core.raft, id).await?;
    tracing::info!(id, "promoted to voter");
    Ok(())
}

/// What removing a member did.
pub enum Removal {
    /// The member is gone.
    Removed,
    /// The member is this leader: leadership went to `new_leader` first,
    /// which must now run the removal.
    HandedOver {
        /// The new leader.
        new_leader: NodeId,
    },
}

/// Removes member `id`. Removing this leader first hands leadership to
/// another voter, so the cluster never waits out an election for it.
pub async fn remove(core: &NodeCore, id: NodeId) -> Result<Removal, MembershipError> {
    let _change = core.ops.begin_change()?;
    let voters = core
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .count();
    if id == core.config.id && voters > 1 {
        let new_leader = membership::transfer_leadership(
            &core.raft,
            &core.peers,
            core.writes.gate(),
            None,
            core.config.request_timeout() * 2,
            false,
        )
        .await?;
        return Ok(Removal::HandedOver { new_leader });
    }
    membership::remove(&core.raft, id).await?;
    tracing::info!(id, "member removed");
    Ok(Removal::Removed)
}

/// Hands leadership to `to` (or the best placed voter); returns the new
/// leader and how long it took.
pub async fn transfer(
    core: &NodeCore,
    to: Option<NodeId>,
) -> Result<(NodeId, Duration), MembershipError> {
    let _change = core.ops.begin_change()?;
    let started = Instant::now();
    let new_leader = membership::transfer_leadership(
        &core.raft,
        &core.peers,
        core.writes.gate(),
        to,
        core.config.request_timeout() * 2,
        false,
    )
    .await?;
    let took = started.elapsed();
    tracing::info!(
        new_leader,
        took_ms = took.as_millis() as u64,
        "leadership handed over"
    );
    Ok((new_leader, took))
}

/// Builds a snapshot on this node and compacts its log.
pub async fn snapshot(core: &NodeCore) -> Result<(u64, Option<u64>), MembershipError> {
    membership::snapshot_now(&core.raft, core.config.request_timeout() * 6).await
}

/// The first half of a graceful shutdown: fail readiness, hand leadership
/// away if this node leads, and keep serving until the drain period is over
/// so load balancers have stopped sending here.
pub async fn drain(core: &NodeCore) {
    let started = Instant::now();
    core.ops.draining.store(true, Ordering::Relaxed);
    let m = core.raft.metrics().borrow().clone();
    let leads = m.current_leader == Some(core.config.id);
    if leads && membership::successor(&m).is_some() {
        // Half the shutdown budget for the hand-off, half for the requests
        // still in flight afterwards.
        match membership::transfer_leadership(
            &core.raft,
            &core.peers,
            core.writes.gate(),
            None,
            core.config.shutdown_timeout() / 2,
            true,
        )
        .await
        {
            Ok(to) => tracing::info!(
                to,
                took_ms = started.elapsed().as_millis() as u64,
                "handed leadership over before shutting down"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand leadership over; shutting down anyway")
            }
        }
    }
    let drain = Duration::from_millis(core.config.shutdown_drain_ms);
    tokio::time::sleep(drain.saturating_sub(started.elapsed())).await;
}
