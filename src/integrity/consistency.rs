//! `GET /v1/cluster/consistency` and `POST /v1/cluster/recovery`: compare
//! every member's state digest at one log position, and repair members.
//!
//! The check commits a [`Command::DigestMarker`]; each replica digests its
//! state right after applying it (the same log position everywhere), and
//! the digests are then gathered over the maintenance RPC and compared.
//!
//! Recovery first has every member scrub (rewriting damaged content from a
//! verified copy), checks again, and then re-installs the whole state of
//! each member still disagreeing from a member holding the digest that a
//! majority of the members hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_storage::{Command, NodeId};
use serde::Serialize;

use super::reinstall::{reinstall_from, Reinstalled};
use super::service::{all_members, local_digest, remote_digest, remote_reinstall, remote_scrub};
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

impl ConsistencyReport {
    /// The members whose status is `status`.
    fn with_status(&self, status: &str) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| m.status == status)
            .map(|m| m.id)
            .collect()
    }
}

/// Commits a marker and compares every member's digest at it.
pub async fn check(core: &Arc<NodeCore>) -> Result<ConsistencyReport, Unavailable> {
    let index = core
        .write(Command::DigestMarker, WriteOptions::default())
        .await?
        .index;
    let members = all_members(core);
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
    /// `scrubbed` (its content was verified and damaged items rewritten),
    /// `reinstalled` (its whole state was replaced by a healthy member's)
    /// or `failed`.
    pub action: &'static str,
    /// What was done, in words: "scrubbed 12 items, repaired 1",
    /// "reinstalled from node 1 at index 57", or the error.
    pub summary: String,
    /// Its scrub-and-repair run, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubOutcome>,
    /// The re-install, when its state was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reinstalled: Option<Reinstalled>,
    /// Why it could not be repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MemberRecovery {
    fn scrubbed(id: NodeId, run: Result<ScrubOutcome, String>) -> Self {
        let mut r = Self {
            id,
            action: "scrubbed",
            summary: String::new(),
            scrub: None,
            reinstalled: None,
            error: None,
        };
        match run {
            Ok(s) => {
                r.summary = format!(
                    "scrubbed {} items, repaired {}",
                    s.checked,
                    s.repaired.len()
                );
                r.scrub = Some(s);
            }
            Err(e) => r.fail(e),
        }
        r
    }

    fn fail(&mut self, error: String) {
        self.action = "failed";
        self.summary.clone_from(&error);
        self.error = Some(error);
    }

    fn reinstalled(&mut self, done: Reinstalled) {
        self.action = "reinstalled";
        self.summary = format!(
            "reinstalled from node {} at index {}",
            done.from, done.index
        );
        self.reinstalled = Some(done);
    }
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
/// healthy member; re-installs each member whose digest still disagrees
/// from a member holding the majority's digest; then checks consistency
/// again.
pub async fn recover(core: &Arc<NodeCore>) -> Result<RecoveryReport, Unavailable> {
    let members = all_members(core);
    let runs = members.iter().map(|(id, addr)| {
        let core = core.clone();
        let (id, addr) = (*id, addr.clone());
        async move {
            let run = if id == core.config.id {
                Ok(scrub(&core, true).await)
            } else {
                remote_scrub(&core, &addr, true).await
            };
            MemberRecovery::scrubbed(id, run)
        }
    });
    let mut runs = futures::future::join_all(runs).await;
    let scrubbed = check(core).await?;
    let diverged = scrubbed.with_status("mismatch");
    if diverged.is_empty() {
        return Ok(RecoveryReport {
            members: runs,
            consistency: scrubbed,
        });
    }
    let source = healthy_source(core, &scrubbed);
    // One at a time: each re-install streams a whole store.
    for id in diverged {
        let Some(run) = runs.iter_mut().find(|r| r.id == id) else {
            continue;
        };
        let source = match &source {
            Ok(source) => *source,
            Err(why) => {
                run.fail(format!("its digest differs; not re-installed: {why}"));
                continue;
            }
        };
        let done = if id == core.config.id {
            reinstall_from(core, source).await
        } else {
            match members.iter().find(|(m, _)| *m == id) {
                Some((_, addr)) => remote_reinstall(core, addr, source).await,
                None => Err(format!("node {id} is no longer a member")),
            }
        };
        match done {
            Ok(done) => run.reinstalled(done),
            Err(e) => run.fail(format!("re-installing from node {source}: {e}")),
        }
    }
    let consistency = check(core).await?;
    Ok(RecoveryReport {
        members: runs,
        consistency,
    })
}

/// The member to copy a diverged member's state from: one whose digest is
/// the one a strict majority of all members hold (the leader if it is one,
/// since it has usually applied the furthest). Without such a majority,
/// nothing says which state is right, and nothing is re-installed.
fn healthy_source(core: &NodeCore, report: &ConsistencyReport) -> Result<NodeId, String> {
    let matching = report.with_status("match");
    if matching.len() * 2 <= report.members.len() {
        return Err(format!(
            "only {} of {} members agree on a digest; no majority to copy from",
            matching.len(),
            report.members.len()
        ));
    }
    let leader = core.raft.metrics().borrow().current_leader;
    leader
        .filter(|l| matching.contains(l))
        .or(matching.first().copied())
        .ok_or_else(|| "no member holds the majority's digest".into())
}
