//! `/v1/locks`: linearizable, leased, fenced locks.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_storage::LockRecord;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::request::{parse_json, ApiPath, ApiQuery};
use super::{consistency, no_content, AppState, REVISION_HEADER};
use crate::ops::locks;

/// Body of `acquire`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    owner: String,
    ttl_ms: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// Body of `renew`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    token: u64,
    ttl_ms: u64,
}

/// Body of `release`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    token: u64,
}

/// A held lock as the API shows it.
#[derive(Serialize)]
pub struct GrantView {
    name: String,
    token: u64,
    owner: String,
    expires_ms: u64,
    acquired_ms: u64,
}

impl From<LockRecord> for GrantView {
    fn from(l: LockRecord) -> Self {
        Self {
            name: l.name,
            token: l.token,
            owner: l.owner,
            expires_ms: l.expires_ms,
            acquired_ms: l.acquired_ms,
        }
    }
}

/// Small JSON bodies of the lock calls.
const BODY_LIMIT: usize = 64 * 1024;

async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    parse_json(&super::request::read_body(headers, body, BODY_LIMIT).await?)
}

fn granted(l: LockRecord) -> Response {
    let revision = [(REVISION_HEADER, HeaderValue::from(l.token))];
    (StatusCode::OK, revision, Json(GrantView::from(l))).into_response()
}

/// `POST /v1/locks/{name}/acquire`: 200 with the grant, or 423 if it stays held past `wait_ms`.
pub async fn acquire(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let b: AcquireBody = json_body(&headers, body).await?;
    Ok(granted(
        locks::acquire(&state, &name, &b.owner, b.ttl_ms, b.wait_ms).await?,
    ))
}

/// `POST /v1/locks/{name}/renew`: 200 with the new expiry; 412 if the token no longer holds.
pub async fn renew(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let b: RenewBody = json_body(&headers, body).await?;
    Ok(granted(
        locks::renew(&state, &name, b.token, b.ttl_ms).await?,
    ))
}

/// `POST /v1/locks/{name}/release`: 204; 412 if the token no longer holds.
pub async fn release(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let b: ReleaseBody = json_body(&headers, body).await?;
    Ok(no_content(locks::release(&state, &name, b.token).await?))
}

/// Query of reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
}

#[derive(Serialize)]
struct LockView {
    name: String,
    held: bool,
    owner: Option<String>,
    token: Option<u64>,
    expires_ms: Option<u64>,
    waiters: usize,
}

/// `GET /v1/locks/{name}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let read = locks::get(&state, &name, consistency(q.consistency.as_deref())?).await?;
    let holder = read.value.holder;
    let view = LockView {
        held: holder.is_some(),
        owner: holder.as_ref().map(|h| h.owner.clone()),
        token: holder.as_ref().map(|h| h.token),
        expires_ms: holder.as_ref().map(|h| h.expires_ms),
        waiters: read.value.waiters,
        name,
    };
    Ok((
        [(REVISION_HEADER, HeaderValue::from(read.revision))],
        Json(view),
    )
        .into_response())
}

#[derive(Serialize)]
struct ListView {
    locks: Vec<GrantView>,
}

/// `GET /v1/locks`: every held lock.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let read = locks::list(&state, consistency(q.consistency.as_deref())?).await?;
    let view = ListView {
        locks: read.value.into_iter().map(GrantView::from).collect(),
    };
    Ok((
        [(REVISION_HEADER, HeaderValue::from(read.revision))],
        Json(view),
    )
        .into_response())
}
