//! `/v1/instances`: heartbeats of the application nodes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_storage::InstanceRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::request::{parse_json, read_body, ApiPath, ApiQuery};
use super::{consistency, no_content, AppState, REVISION_HEADER};
use crate::ops::instances;

/// Body of a heartbeat.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    ttl_ms: u64,
    meta: Option<Value>,
}

#[derive(Serialize)]
struct InstanceView {
    id: String,
    meta: Value,
    version: u64,
    registered_ms: u64,
    last_seen_ms: u64,
    expires_ms: u64,
}

impl From<InstanceRecord> for InstanceView {
    fn from(r: InstanceRecord) -> Self {
        Self {
            meta: serde_json::from_str(&r.meta_json).unwrap_or(Value::Object(Default::default())),
            id: r.id,
            version: r.version,
            registered_ms: r.registered_ms,
            last_seen_ms: r.last_seen_ms,
            expires_ms: r.expires_ms,
        }
    }
}

/// `PUT /v1/instances/{id}`: register or refresh.
pub async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_metadata_bytes + 4096;
    let b: HeartbeatBody = parse_json(&read_body(&headers, body, limit).await?)?;
    let record = instances::heartbeat(&state, &id, b.ttl_ms, b.meta.as_ref()).await?;
    Ok(Json(InstanceView::from(record)).into_response())
}

/// Query of reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
}

#[derive(Serialize)]
struct ListView {
    instances: Vec<InstanceView>,
}

/// `GET /v1/instances`: the live ones.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let read = instances::list(&state, consistency(q.consistency.as_deref())?).await?;
    let view = ListView {
        instances: read.value.into_iter().map(InstanceView::from).collect(),
    };
    Ok((
        [(REVISION_HEADER, HeaderValue::from(read.revision))],
        Json(view),
    )
        .into_response())
}

/// `DELETE /v1/instances/{id}`: leave.
pub async fn leave(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(no_content(instances::leave(&state, &id).await?))
}
