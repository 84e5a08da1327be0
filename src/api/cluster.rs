//! `/v1/cluster`: the cluster as this node sees it. Only the leader knows
//! how far each member has replicated, so a follower completes its members
//! from the leader's view when the leader answers.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::admin::FORWARDED_HEADER;
use super::error::ApiError;
use super::AppState;
use crate::status::ClusterView;

/// A member as `GET /v1/cluster` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberView {
    id: u64,
    api_addr: String,
    raft_addr: String,
    role: String,
    reachable: bool,
    matched_index: Option<u64>,
    lag: Option<u64>,
}

/// The body of `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    cluster_id: Option<String>,
    node_id: u64,
    state: &'static str,
    leader: Option<u64>,
    term: u64,
    commit_index: u64,
    applied_index: u64,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
    /// The node whose view `members` is: the leader's when it answered.
    members_seen_by: u64,
    members: Vec<MemberView>,
}

/// How long a follower waits for the leader's view of the members.
const LEADER_VIEW_TIMEOUT: Duration = Duration::from_millis(1_000);

#[derive(Deserialize)]
struct LeaderView {
    node_id: u64,
    members: Vec<MemberView>,
}

/// The members as the leader at `addr` sees them, if it answers in time.
async fn leader_members(core: &AppState, addr: &str, headers: &HeaderMap) -> Option<LeaderView> {
    let mut req = core
        .ops
        .http
        .get(format!("http://{addr}/v1/cluster"))
        .timeout(LEADER_VIEW_TIMEOUT)
        .header(FORWARDED_HEADER, core.config.id);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let answer = req.send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.json().await.ok()
}

/// `GET /v1/cluster`.
pub async fn status(
    State(core): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ClusterStatus>, ApiError> {
    let view = ClusterView::read(&core).await;
    let leader_addr = view
        .leader
        .filter(|&l| l != core.config.id && !headers.contains_key(FORWARDED_HEADER))
        .and_then(|l| view.members.iter().find(|m| m.id == l))
        .map(|m| m.node.api_addr.clone());
    let from_leader = match leader_addr {
        Some(addr) => leader_members(&core, &addr, &headers).await,
        None => None,
    };
    let (members_seen_by, members) = match from_leader {
        Some(v) => (v.node_id, v.members),
        None => (core.config.id, local_members(&view)),
    };
    Ok(Json(ClusterStatus {
        cluster_id: core.state.cluster_id()?,
        node_id: core.config.id,
        state: view.state,
        leader: view.leader,
        term: view.term,
        commit_index: view.commit_index,
        applied_index: view.applied_index,
        snapshot_index: view.snapshot_index,
        purged_index: view.purged_index,
        members_seen_by,
        members,
    }))
}

fn local_members(view: &ClusterView) -> Vec<MemberView> {
    view.members
        .iter()
        .map(|m| MemberView {
            id: m.id,
            api_addr: m.node.api_addr.clone(),
            raft_addr: m.node.raft_addr.clone(),
            role: if m.voter { "voter" } else { "learner" }.into(),
            reachable: m.reachable,
            matched_index: m.matched_index,
            lag: m.lag,
        })
        .collect()
}
