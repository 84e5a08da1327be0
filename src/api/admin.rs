//! The membership endpoints of `/v1/cluster/*`. Changes run on the leader:
//! a layer forwards every call received by another node to the leader's
//! API, so admin calls work through any node or load balancer.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use cairn_raft::membership::MembershipError;
use cairn_storage::{NodeId, PeerNode};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::request::{ApiPath, ApiQuery};
use super::AppState;
use crate::admin::{self, AdminTarget, Removal};

/// Marks a request one node forwarded to the leader: the receiver serves
/// it itself and never forwards again, so a stale view of the leader cannot
/// bounce a request around.
pub(crate) const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-cairn-forwarded-by");

/// Largest admin request body accepted.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// How long a forwarded admin call may take (catching up may be slow; each
/// operation bounds itself below this).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(660);

/// The routes that change membership, behind the forward-to-leader layer.
pub fn routes(core: AppState) -> Router<AppState> {
    let at_leader = Router::new()
        .route("/v1/cluster/learners", post(add_learner))
        .route("/v1/cluster/members/{id}/promote", post(promote))
        .route("/v1/cluster/members/{id}", delete(remove))
        .route("/v1/cluster/leader/transfer", post(transfer))
        .route_layer(from_fn_with_state(core, at_leader));
    Router::new()
        .route("/v1/cluster/init", post(init))
        .route("/v1/cluster/snapshot", post(snapshot))
        .merge(at_leader)
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::InProgress(_) => ApiError::Conflict {
                message: e.to_string(),
                current_version: None,
            },
            MembershipError::NotFound(_) => ApiError::NotFound(e.to_string()),
            MembershipError::Invalid(m) => ApiError::Invalid(m),
            MembershipError::Timeout(m) => ApiError::Timeout(m),
            MembershipError::NotLeader { .. } | MembershipError::Unavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

/// Runs the handler when this node leads (or the call was forwarded to
/// it); otherwise relays the call to the leader and its answer back.
async fn at_leader(State(core): State<AppState>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(FORWARDED_HEADER) {
        return next.run(req).await;
    }
    match admin::leader_target(&core).await {
        Ok(AdminTarget::Here) => next.run(req).await,
        Ok(AdminTarget::Leader(addr)) => relay(&core, &addr, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Sends `req` to the API at `addr` and returns its answer.
pub async fn relay(core: &AppState, addr: &str, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!("admin bodies are at most {MAX_ADMIN_BODY} bytes"))
        })?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = core
        .ops
        .http
        .request(parts.method.clone(), format!("http://{addr}{path}"))
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_HEADER, core.config.id)
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    let answer = out
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("forwarding to the leader at {addr}: {e}")))?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the leader's answer: {e}")))?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// Parses a JSON body into `T`, with the API's error format.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("body: {e}")))
}

/// Checks a member's addresses look like `host:port`.
fn validate_node(id: NodeId, api_addr: &str, raft_addr: &str) -> Result<PeerNode, ApiError> {
    for (what, addr) in [("api_addr", api_addr), ("raft_addr", raft_addr)] {
        let ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(ApiError::Invalid(format!(
                "{what} of node {id} must be HOST:PORT, not `{addr}`"
            )));
        }
    }
    Ok(PeerNode {
        api_addr: api_addr.to_string(),
        raft_addr: raft_addr.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    id: NodeId,
    api_addr: String,
    raft_addr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitBody {
    #[serde(default)]
    members: Vec<MemberBody>,
}

/// `POST /v1/cluster/init`: `{"members": [{"id","api_addr","raft_addr"}]}`
/// (this node is always included).
async fn init(State(core): State<AppState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: InitBody = if body.is_empty() {
        InitBody { members: vec![] }
    } else {
        parse_body(&body)?
    };
    let mut others = Vec::new();
    for m in body.members.iter().filter(|m| m.id != core.config.id) {
        others.push((m.id, validate_node(m.id, &m.api_addr, &m.raft_addr)?));
    }
    let cluster_id = admin::init(&core, others).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "cluster_id": cluster_id, "node_id": core.config.id })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct LearnerQuery {
    /// Wait until the learner has caught up (default true).
    wait: Option<bool>,
    /// How long to wait, in ms (default 60000).
    timeout_ms: Option<u64>,
}

/// `POST /v1/cluster/learners`: `{"id","api_addr","raft_addr"}`.
async fn add_learner(
    State(core): State<AppState>,
    ApiQuery(q): ApiQuery<LearnerQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let m: MemberBody = parse_body(&body)?;
    let node = validate_node(m.id, &m.api_addr, &m.raft_addr)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(60_000));
    if timeout > admin::MAX_CATCH_UP_WAIT {
        return Err(ApiError::Invalid(format!(
            "timeout_ms may be at most {}",
            admin::MAX_CATCH_UP_WAIT.as_millis()
        )));
    }
    let wait = q.wait.unwrap_or(true).then_some(timeout);
    let started = std::time::Instant::now();
    let (index, caught_up) = admin::add_learner(&core, m.id, node, wait).await?;
    let status = if caught_up {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(json!({
            "id": m.id,
            "role": "learner",
            "caught_up": caught_up,
            "matched_index": if caught_up { Some(index) } else { None },
            "target_index": index,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })),
    )
        .into_response())
}

/// `POST /v1/cluster/members/{id}/promote`.
async fn promote(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, ApiError> {
    admin::promote(&core, id).await?;
    Ok(Json(json!({ "id": id, "role": "voter" })).into_response())
}

/// `DELETE /v1/cluster/members/{id}`: voter or learner, the leader included.
async fn remove(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<NodeId>,
    req: Request,
) -> Result<Response, ApiError> {
    match admin::remove(&core, id).await? {
        Removal::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::HandedOver { new_leader } => {
            let addr = cairn_raft::leader::member(&core.raft, new_leader)
                .map(|n| n.api_addr)
                .ok_or_else(|| {
                    ApiError::Unavailable(format!("new leader {new_leader} has no address"))
                })?;
            relay(&core, &addr, req).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: Option<NodeId>,
}

/// `POST /v1/cluster/leader/transfer`: `{"to": id}` or `{}` for any voter.
async fn transfer(
    State(core): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: TransferBody = if body.is_empty() {
        TransferBody::default()
    } else {
        parse_body(&body)?
    };
    let from = core.config.id;
    let (leader, took) = admin::transfer(&core, body.to).await?;
    Ok(Json(json!({
        "from": from,
        "leader": leader,
        "took_ms": took.as_millis() as u64,
    }))
    .into_response())
}

/// `POST /v1/cluster/snapshot`: this node builds a snapshot and compacts
/// its log.
async fn snapshot(State(core): State<AppState>) -> Result<Response, ApiError> {
    let (index, purged) = admin::snapshot(&core).await?;
    Ok(Json(json!({
        "node_id": core.config.id,
        "snapshot_index": index,
        "purged_index": purged,
    }))
    .into_response())
}
