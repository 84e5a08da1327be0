//! `/v1/artifacts` and `/v1/conversations/{cid}/artifacts`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use cairn_storage::{ArtifactFields, ArtifactMeta, Precondition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::request::{
    delete_precondition, parse_json, precondition, read_body, write_options, ApiPath, ApiQuery,
};
use super::{consistency, no_content, page_limit, AppState, REVISION_HEADER};
use crate::ops::{artifacts, validate};

/// The JSON body of POST and PUT.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactInput {
    id: Option<String>,
    conversation_id: Option<String>,
    kind: Option<String>,
    title: Option<String>,
    content_type: Option<String>,
    metadata: Option<Value>,
    content: Option<String>,
    content_base64: Option<String>,
}

/// An artifact as the API shows it.
#[derive(Debug, Serialize)]
pub struct ArtifactView {
    id: String,
    conversation_id: String,
    kind: String,
    title: String,
    content_type: String,
    metadata: Value,
    version: u64,
    revision: u64,
    size: u64,
    stored_size: u64,
    compressed: bool,
    checksum: String,
    created_ms: u64,
    updated_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
}

impl ArtifactView {
    fn new(meta: ArtifactMeta) -> Self {
        let metadata =
            serde_json::from_str(&meta.metadata_json).unwrap_or_else(|_| Value::Object(Map::new()));
        Self {
            checksum: etag_value(&meta.checksum),
            id: meta.id,
            conversation_id: meta.conversation_id,
            kind: meta.kind,
            title: meta.title,
            content_type: meta.content_type,
            metadata,
            version: meta.version,
            revision: meta.revision,
            size: meta.size,
            stored_size: meta.stored_size,
            compressed: meta.compressed,
            created_ms: meta.created_ms,
            updated_ms: meta.updated_ms,
            content: None,
            content_base64: None,
        }
    }

    /// Adds the content: as text when it is UTF-8, else base64.
    fn with_content(mut self, data: Vec<u8>) -> Self {
        match String::from_utf8(data) {
            Ok(text) => self.content = Some(text),
            Err(e) => {
                self.content_base64 =
                    Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
            }
        }
        self
    }
}

fn etag_value(checksum: &str) -> String {
    format!("sha256:{checksum}")
}

fn quoted_etag(checksum: &str) -> String {
    format!("\"sha256:{checksum}\"")
}

fn revision_header(revision: u64) -> [(axum::http::HeaderName, HeaderValue); 1] {
    [(REVISION_HEADER, HeaderValue::from(revision))]
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// 201 for a new artifact, 200 for a replacement, with its metadata.
fn written(meta: ArtifactMeta) -> Result<Response, ApiError> {
    let status = if meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let etag = [(
        header::ETAG,
        HeaderValue::from_str(&quoted_etag(&meta.checksum)).map_err(internal)?,
    )];
    Ok((
        status,
        revision_header(meta.revision),
        etag,
        Json(ArtifactView::new(meta)),
    )
        .into_response())
}

/// Splits the JSON body into descriptive fields and content bytes.
fn fields_from_input(
    state: &AppState,
    input: ArtifactInput,
) -> Result<(ArtifactFields, Vec<u8>), ApiError> {
    let metadata_json = match &input.metadata {
        None => None,
        Some(v) => Some(validate::json_object(
            "metadata",
            v,
            state.config.max_metadata_bytes,
        )?),
    };
    let data = match (input.content, input.content_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| ApiError::Invalid(format!("content_base64 is not base64: {e}")))?,
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(
                "give content or content_base64, not both".into(),
            ))
        }
        (None, None) => {
            return Err(ApiError::Invalid(
                "content or content_base64 is required".into(),
            ))
        }
    };
    let fields = ArtifactFields {
        conversation_id: input.conversation_id,
        kind: input.kind,
        title: input.title,
        content_type: input.content_type,
        metadata_json,
    };
    Ok((fields, data))
}

/// The largest JSON body: base64 content (4/3 of the content limit) plus
/// metadata and field overhead.
fn json_body_limit(state: &AppState) -> usize {
    state.config.max_content_bytes / 3 * 4 + 4 + state.config.max_metadata_bytes + 64 * 1024
}

/// `POST /v1/artifacts`: create; the server assigns the id when absent.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, json_body_limit(&state)).await?;
    let mut input: ArtifactInput = parse_json(&bytes)?;
    let id = input
        .id
        .take()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // POST creates: an existing id is a conflict, never a silent replace.
    if !matches!(
        precondition(&headers)?,
        Precondition::None | Precondition::IfAbsent
    ) {
        return Err(ApiError::Invalid(
            "POST creates; use PUT for conditional updates".into(),
        ));
    }
    let (fields, data) = fields_from_input(&state, input)?;
    let opts = write_options(&headers)?;
    written(
        artifacts::put(
            &state,
            &id,
            fields,
            &data,
            false,
            Precondition::IfAbsent,
            opts,
        )
        .await?,
    )
}

/// `PUT /v1/artifacts/{id}`: create or replace from JSON.
pub async fn put_json(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    validate::id("id", &id)?;
    let pre = precondition(&headers)?;
    let bytes = read_body(&headers, body, json_body_limit(&state)).await?;
    let input: ArtifactInput = parse_json(&bytes)?;
    if input.id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::Invalid(
            "the id in the body differs from the path".into(),
        ));
    }
    let (fields, data) = fields_from_input(&state, input)?;
    let opts = write_options(&headers)?;
    written(artifacts::put(&state, &id, fields, &data, false, pre, opts).await?)
}

/// Query of `PUT /v1/artifacts/{id}/content`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    conversation_id: Option<String>,
    kind: Option<String>,
    title: Option<String>,
}

/// `PUT /v1/artifacts/{id}/content`: raw bytes; descriptive fields are kept
/// from the existing artifact unless given in the query.
pub async fn put_content(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ContentQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    validate::id("id", &id)?;
    let pre = precondition(&headers)?;
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::Invalid("Content-Type is not valid text".into()))?
                .to_string(),
        ),
        None => None,
    };
    let fields = ArtifactFields {
        conversation_id: q.conversation_id,
        kind: q.kind,
        title: q.title,
        content_type,
        metadata_json: None,
    };
    // Refuse bad fields before reading a body of up to 16 MiB.
    artifacts::validate_fields(&fields)?;
    let opts = write_options(&headers)?;
    let data = read_body(&headers, body, state.config.max_content_bytes).await?;
    written(artifacts::put(&state, &id, fields, &data, true, pre, opts).await?)
}

/// Query of reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
    include_content: Option<bool>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no artifact {id}"))
}

/// `GET /v1/artifacts/{id}`: metadata and (unless `include_content=false`) content.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let with_content = q.include_content.unwrap_or(true);
    let read = artifacts::get(
        &state,
        &id,
        consistency(q.consistency.as_deref())?,
        with_content,
    )
    .await?;
    let found = read.value.ok_or_else(|| not_found(&id))?;
    let mut view = ArtifactView::new(found.meta);
    if let Some(data) = found.content {
        view = view.with_content(data);
    }
    Ok((revision_header(read.revision), Json(view)).into_response())
}

/// Headers describing an artifact's content.
fn content_headers(meta: &ArtifactMeta, revision: u64) -> Result<HeaderMap, ApiError> {
    let mut h = HeaderMap::new();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&quoted_etag(&meta.checksum)).map_err(internal)?,
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(REVISION_HEADER, HeaderValue::from(revision));
    h.insert("x-cairn-version", HeaderValue::from(meta.version));
    Ok(h)
}

/// `HEAD /v1/artifacts/{id}`: the content's headers, no body.
pub async fn head(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let read = artifacts::get(&state, &id, consistency(q.consistency.as_deref())?, false).await?;
    let meta = read.value.ok_or_else(|| not_found(&id))?.meta;
    let mut headers = content_headers(&meta, read.revision)?;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    Ok((StatusCode::OK, headers).into_response())
}

/// A satisfiable byte range `[start, end]` of content of length `size`.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || ApiError::RangeNotSatisfiable {
        message: format!("range {value} is outside the content (size {size})"),
        size,
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Err(ApiError::Invalid(format!(
            "unsupported Range unit: {value}"
        )));
    };
    if spec.contains(',') {
        // Multiple ranges are not supported; serving the whole body is allowed.
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::Invalid(format!("malformed Range: {value}")))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::Invalid(format!("malformed Range: {value}")))
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(ApiError::Invalid(format!("malformed Range: {value}"))),
        (true, false) => {
            let suffix = num(b)?;
            if suffix == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
    };
    if start >= size || start > end {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// `GET /v1/artifacts/{id}/content`: raw bytes with ETag, Range and 304.
pub async fn get_content(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
    req_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = consistency(q.consistency.as_deref())?;
    let if_none_match = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if let Some(tags) = if_none_match {
        // A conditional GET that matches needs no content read at all.
        let read = artifacts::get(&state, &id, c, false).await?;
        let meta = read.value.ok_or_else(|| not_found(&id))?.meta;
        let etag = quoted_etag(&meta.checksum);
        if tags.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            let headers = content_headers(&meta, read.revision)?;
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
    }
    // The content is verified against its checksum before anything is sent.
    let read = artifacts::get(&state, &id, c, true).await?;
    let found = read.value.ok_or_else(|| not_found(&id))?;
    let mut headers = content_headers(&found.meta, read.revision)?;
    let data = found.content.unwrap_or_default();
    let range = match req_headers.get(header::RANGE) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::Invalid("Range is not valid text".into()))?;
            parse_range(v, data.len() as u64)?
        }
    };
    match range {
        None => Ok((StatusCode::OK, headers, data).into_response()),
        Some((start, end)) => {
            let part = data[start as usize..=end as usize].to_vec();
            let cr = format!("bytes {start}-{end}/{}", data.len());
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(internal)?,
            );
            Ok((StatusCode::PARTIAL_CONTENT, headers, part).into_response())
        }
    }
}

/// `DELETE /v1/artifacts/{id}`, honouring `If-Match`.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pre = delete_precondition(&headers)?;
    let revision = artifacts::delete(&state, &id, pre, write_options(&headers)?).await?;
    Ok(no_content(revision))
}

/// Query of listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    conversation_id: Option<String>,
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    consistency: Option<String>,
}

#[derive(Serialize)]
struct ListView {
    artifacts: Vec<ArtifactView>,
    next_cursor: Option<String>,
}

async fn list_page(
    state: &AppState,
    conversation_id: Option<&str>,
    q: &ListQuery,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let prefix = q.prefix.as_deref().unwrap_or("");
    let c = consistency(q.consistency.as_deref())?;
    let read = artifacts::list(
        state,
        conversation_id,
        prefix,
        q.cursor.as_deref(),
        limit,
        c,
    )
    .await?;
    let view = ListView {
        artifacts: read
            .value
            .items
            .into_iter()
            .map(ArtifactView::new)
            .collect(),
        next_cursor: read.value.next_cursor,
    };
    Ok((revision_header(read.revision), Json(view)).into_response())
}

/// `GET /v1/artifacts?conversation_id=&prefix=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    list_page(&state, q.conversation_id.as_deref(), &q).await
}

/// `GET /v1/conversations/{cid}/artifacts`.
pub async fn list_conversation(
    State(state): State<AppState>,
    ApiPath(cid): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    if q.conversation_id.is_some() {
        return Err(ApiError::Invalid(
            "the conversation is given by the path".into(),
        ));
    }
    list_page(&state, Some(&cid), &q).await
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), Some((95, 99)));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-2", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert!(parse_range("bytes=-", 100).is_err());
    }
}
