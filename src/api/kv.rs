//! `/v1/kv`: key/value state with TTL.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use cairn_storage::{KvMeta, KvRecord};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::request::{
    delete_precondition, precondition, read_body, write_options, ApiPath, ApiQuery,
};
use super::{consistency, no_content, page_limit, AppState, REVISION_HEADER};
use crate::ops::kv;

/// Query of `PUT /v1/kv/{key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutQuery {
    ttl_ms: Option<u64>,
}

#[derive(Serialize)]
struct PutView {
    key: String,
    version: u64,
    revision: u64,
    expires_ms: Option<u64>,
}

impl From<KvMeta> for PutView {
    fn from(m: KvMeta) -> Self {
        Self {
            key: m.key,
            version: m.version,
            revision: m.revision,
            expires_ms: m.expires_ms,
        }
    }
}

fn quoted_version(version: u64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!("\"{version}\"")).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `PUT /v1/kv/{key}`: body = raw value; `?ttl_ms=`; If-Match / If-None-Match.
pub async fn put(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pre = precondition(&headers)?;
    let opts = write_options(&headers)?;
    crate::ops::validate::key(&key)?;
    let value = read_body(&headers, body, state.config.max_value_bytes).await?;
    let meta = kv::put(&state, &key, value, q.ttl_ms, pre, opts).await?;
    let status = if meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let headers = [
        (header::ETAG, quoted_version(meta.version)?),
        (REVISION_HEADER, HeaderValue::from(meta.revision)),
    ];
    Ok((status, headers, Json(PutView::from(meta))).into_response())
}

/// Query of reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
}

/// `GET /v1/kv/{key}`: the raw value, `ETag` = version.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let read = kv::get(&state, &key, consistency(q.consistency.as_deref())?).await?;
    let record = read
        .value
        .ok_or_else(|| ApiError::NotFound(format!("no key {key}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, quoted_version(record.version)?);
    headers.insert(REVISION_HEADER, HeaderValue::from(read.revision));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("x-cairn-version", HeaderValue::from(record.version));
    if let Some(at) = record.expires_ms {
        headers.insert("x-cairn-expires", HeaderValue::from(at));
    }
    Ok((StatusCode::OK, headers, record.value).into_response())
}

/// `DELETE /v1/kv/{key}`, honouring If-Match.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pre = delete_precondition(&headers)?;
    let revision = kv::delete(&state, &key, pre, write_options(&headers)?).await?;
    Ok(no_content(revision))
}

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    values: Option<bool>,
    consistency: Option<String>,
}

#[derive(Serialize)]
struct EntryView {
    key: String,
    version: u64,
    revision: u64,
    created_ms: u64,
    updated_ms: u64,
    expires_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

impl EntryView {
    fn new(r: KvRecord, with_value: bool) -> Self {
        let (value, value_base64) = match (with_value, String::from_utf8(r.value)) {
            (false, _) => (None, None),
            (true, Ok(text)) => (Some(text), None),
            (true, Err(e)) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            ),
        };
        Self {
            key: r.key,
            version: r.version,
            revision: r.revision,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            expires_ms: r.expires_ms,
            value,
            value_base64,
        }
    }
}

#[derive(Serialize)]
struct ListView {
    keys: Vec<EntryView>,
    next_cursor: Option<String>,
}

/// `GET /v1/kv?prefix=&limit=&cursor=&values=true`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let c = consistency(q.consistency.as_deref())?;
    let prefix = q.prefix.as_deref().unwrap_or("");
    let read = kv::list(&state, prefix, q.cursor.as_deref(), limit, c).await?;
    let with_values = q.values.unwrap_or(false);
    let view = ListView {
        keys: read
            .value
            .items
            .into_iter()
            .map(|r| EntryView::new(r, with_values))
            .collect(),
        next_cursor: read.value.next_cursor,
    };
    Ok((
        [(REVISION_HEADER, HeaderValue::from(read.revision))],
        Json(view),
    )
        .into_response())
}
