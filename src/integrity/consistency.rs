//! `GET /v1/cluster/consistency` and `POST /v1/cluster/recovery`: compare
//! every member's state digest at one log position, and repair members.
//!
//! The check commits a [`Command::DigestMarker`]; each replica digests its
//! state right after applying it (the same log position everywhere), and
//! the digests are then gathered over the maintenance RPC and compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_storage::{Command, NodeId};
use serde::Serialize;

use super::service::{local_digest, remote_digest, remote_scrub};
use super::{scrub, ScrubOutcome};
use crate::forward::{Unavailable, WriteOptions};
use crate::node::NodeCore;

/// One member's digest, compared with the others'.
#[derive(Debug, Clone, Serialize)]
pub struct MemberDigest {
    /// The member.
    pub id: NodeId,
    /// `match`, `mismatch`, `missing` (it installed a snapshot past the
    /// marker, so it never digested that position) or `unreachable`.
    pub status: &'static str,
    /// Its digest, when it has one.
    pub digest: Option<String>,
    /// Keys its state held at the marker.
    pub keys: Option<u64>,
    /// Why there is no digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `GET /v1/cluster/consistency`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyReport {
    /// True when every member digested the marker and all digests are equal.
    pub consistent: bool,
    /// The log index every digest was taken at.
    pub index: u64,
    /// The digest most members hold.
    pub digest: Option<String>,
    /// Each member.
    pub members: Vec<MemberDigest>,
}

/// Commits a marker and compares every member's digest at it.
pub async fn check(core: &Arc<NodeCore>) -> Result<ConsistencyReport, Unavailable> {
    let index = core
        .write(Command::DigestMarker, WriteOptions::default())
        .await?
        .index;
    let members: Vec<(NodeId, String)> = {
        let m = core.raft.metrics().borrow().membership_config.clone();
        m.nodes()
            .map(|(id, n)| (*id, n.raft_addr.clone()))
            .collect()
    };
    let lookups = members.iter().map(|(id, addr)| {
        let core = core.clone();
        let (id, addr) = (*id, addr.clone());
        async move {
            let found = if id == core.config.id {
                local_digest(&core, index, std::time::Duration::from_secs(10)).await
            } else {
                remote_digest(&core, &addr, index).await
            };
            (id, found)
        }
    });
    let found = futures::future::join_all(lookups).await;
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in &found {
        if let Ok(Some(d)) = r {
            *votes.entry(d.digest.clone()).or_default() += 1;
        }
    }
    let majority = votes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(d, _)| d.clone());
    let members: Vec<MemberDigest> = found
        .into_iter()
        .map(|(id, r)| match r {
            Ok(Some(d)) => MemberDigest {
                id,
                status: if Some(&d.digest) == majority.as_ref() {
                    "match"
                } else {
                    "mismatch"
                },
                digest: Some(d.digest),
                keys: Some(d.keys),
                error: None,
            },
            Ok(None) => MemberDigest {
                id,
                status: "missing",
                digest: None,
                keys: None,
                error: Some("installed a snapshot past the marker; check again".into()),
            },
            Err(e) => MemberDigest {
                id,
                status: "unreachable",
                digest: None,
                keys: None,
                error: Some(e),
            },
        })
        .collect();
    let consistent = members.iter().all(|m| m.status == "match");
    Ok(ConsistencyReport {
        consistent,
        index,
        digest: majority,
        members,
    })
}

/// What recovery did on one member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRecovery {
    /// The member.
    pub id: NodeId,
    /// Its scrub-and-repair run, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubOutcome>,
    /// Why it could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `POST /v1/cluster/recovery`.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// Each member's repair run.
    pub members: Vec<MemberRecovery>,
    /// The consistency check taken after the repairs.
    pub consistency: ConsistencyReport,
}

/// Has every member verify its stored content and rewrite what fails from a
/// healthy member, then checks consistency again.
pub async fn recover(core: &Arc<NodeCore>) -> Result<RecoveryReport, Unavailable> {
    let members: Vec<(NodeId, String)> = {
        let m = core.raft.metrics().borrow().membership_config.clone();
        m.nodes()
            .map(|(id, n)| (*id, n.raft_addr.clone()))
            .collect()
    };
    let runs = members.iter().map(|(id, addr)| {
        let core = core.clone();
        let (id, addr) = (*id, addr.clone());
        async move {
            let r = if id == core.config.id {
                Ok(scrub(&core, true).await)
            } else {
                remote_scrub(&core, &addr, true).await
            };
            match r {
                Ok(s) => MemberRecovery {
                    id,
                    scrub: Some(s),
                    error: None,
                },
                Err(e) => MemberRecovery {
                    id,
                    scrub: None,
                    error: Some(e),
                },
            }
        }
    });
    let members = futures::future::join_all(runs).await;
    let consistency = check(core).await?;
    Ok(RecoveryReport {
        members,
        consistency,
    })
}
