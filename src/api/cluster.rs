//! `/v1/cluster`: the cluster as this node sees it.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::status::ClusterView;

/// A member as `GET /v1/cluster` shows it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    id: u64,
    api_addr: String,
    raft_addr: String,
    role: &'static str,
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
    members: Vec<MemberView>,
}

/// `GET /v1/cluster`.
pub async fn status(State(core): State<AppState>) -> Result<Json<ClusterStatus>, ApiError> {
    let view = ClusterView::read(&core).await;
    let members = view
        .members
        .iter()
        .map(|m| MemberView {
            id: m.id,
            api_addr: m.node.api_addr.clone(),
            raft_addr: m.node.raft_addr.clone(),
            role: if m.voter { "voter" } else { "learner" },
            reachable: m.reachable,
            matched_index: m.matched_index,
            lag: m.lag,
        })
        .collect();
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
        members,
    }))
}
