//! `/v1/artifacts` and `/v1/conversations/{cid}/artifacts`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use cairn_raft::leader::WriteOutcome;
use cairn_storage::{
    ArtifactFields, ArtifactMeta, Command, Precondition, Rejection, Response as Outcome,
    StoredContent,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::request::{
    idempotency_key, parse_json, precondition, read_body, validate_id, validate_len, ApiPath,
    ApiQuery,
};
use super::{consistency, page_limit, AppState, REVISION_HEADER};

const MAX_KIND_BYTES: usize = 128;
const MAX_TITLE_BYTES: usize = 1024;
const MAX_CONTENT_TYPE_BYTES: usize = 256;

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

/// Turns a committed write into its HTTP answer.
fn write_response(outcome: WriteOutcome) -> Result<Response, ApiError> {
    let revision = revision_header(outcome.index);
    match outcome.response {
        Outcome::Artifact(meta) => {
            let status = if meta.version == 1 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let etag = [(
                header::ETAG,
                HeaderValue::from_str(&quoted_etag(&meta.checksum)).map_err(internal)?,
            )];
            Ok((status, revision, etag, Json(ArtifactView::new(*meta))).into_response())
        }
        Outcome::Deleted { .. } => Ok((StatusCode::NO_CONTENT, revision).into_response()),
        Outcome::Rejected(r) => Err(rejection(r)),
        Outcome::Noop => Err(ApiError::Internal("write produced no outcome".into())),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::Conflict { current_version } => ApiError::Conflict {
            message: match current_version {
                Some(v) => format!("precondition failed: the current version is {v}"),
                None => "precondition failed: the artifact does not exist".into(),
            },
            current_version,
        },
        Rejection::NotFound => ApiError::NotFound("no such artifact".into()),
    }
}

/// Validates the JSON body into fields and prepared content.
fn fields_from_input(
    state: &AppState,
    input: ArtifactInput,
) -> Result<(ArtifactFields, StoredContent), ApiError> {
    let config = &state.config;
    if let Some(cid) = &input.conversation_id {
        if !cid.is_empty() {
            validate_id("conversation_id", cid)?;
        }
    }
    validate_len("kind", input.kind.as_deref().unwrap_or(""), MAX_KIND_BYTES)?;
    validate_len(
        "title",
        input.title.as_deref().unwrap_or(""),
        MAX_TITLE_BYTES,
    )?;
    validate_len(
        "content_type",
        input.content_type.as_deref().unwrap_or(""),
        MAX_CONTENT_TYPE_BYTES,
    )?;
    let metadata_json = match input.metadata {
        None => None,
        Some(v @ Value::Object(_)) => {
            let s = v.to_string();
            if s.len() > config.max_metadata_bytes {
                return Err(ApiError::TooLarge(format!(
                    "metadata is {} bytes; the limit is {}",
                    s.len(),
                    config.max_metadata_bytes
                )));
            }
            Some(s)
        }
        Some(_) => return Err(ApiError::Invalid("metadata must be a JSON object".into())),
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
    check_content_size(state, data.len())?;
    let fields = ArtifactFields {
        conversation_id: input.conversation_id,
        kind: input.kind,
        title: input.title,
        content_type: input.content_type,
        metadata_json,
    };
    Ok((
        fields,
        StoredContent::prepare(&data, config.compression_threshold),
    ))
}

fn check_content_size(state: &AppState, len: usize) -> Result<(), ApiError> {
    if len > state.config.max_content_bytes {
        return Err(ApiError::TooLarge(format!(
            "content is {len} bytes; the limit is {}",
            state.config.max_content_bytes
        )));
    }
    Ok(())
}

/// The largest JSON body: base64 content (4/3 of the content limit) plus
/// metadata and field overhead.
fn json_body_limit(state: &AppState) -> usize {
    state.config.max_content_bytes / 3 * 4 + 4 + state.config.max_metadata_bytes + 64 * 1024
}

async fn put_artifact(
    state: &AppState,
    headers: &HeaderMap,
    id: String,
    fields: ArtifactFields,
    content: StoredContent,
    merge: bool,
    precondition: Precondition,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let command = Command::PutArtifact {
        id,
        fields,
        content,
        merge,
        precondition,
    };
    write_response(state.write(command, key).await?)
}

/// `POST /v1/artifacts`: create; the server assigns the id when absent.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, json_body_limit(&state)).await?;
    let mut input: ArtifactInput = parse_json(&bytes)?;
    let id = match input.id.take() {
        Some(id) => {
            validate_id("id", &id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    // POST creates: an existing id is a conflict, never a silent replace.
    if !matches!(
        precondition(&headers)?,
        Precondition::None | Precondition::IfAbsent
    ) {
        return Err(ApiError::Invalid(
            "POST creates; use PUT for conditional updates".into(),
        ));
    }
    let (fields, content) = fields_from_input(&state, input)?;
    put_artifact(
        &state,
        &headers,
        id,
        fields,
        content,
        false,
        Precondition::IfAbsent,
    )
    .await
}

/// `PUT /v1/artifacts/{id}`: create or replace from JSON.
pub async fn put_json(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    validate_id("id", &id)?;
    let pre = precondition(&headers)?;
    let bytes = read_body(&headers, body, json_body_limit(&state)).await?;
    let input: ArtifactInput = parse_json(&bytes)?;
    if input.id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::Invalid(
            "the id in the body differs from the path".into(),
        ));
    }
    let (fields, content) = fields_from_input(&state, input)?;
    put_artifact(&state, &headers, id, fields, content, false, pre).await
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
    validate_id("id", &id)?;
    let pre = precondition(&headers)?;
    if let Some(cid) = q.conversation_id.as_deref().filter(|c| !c.is_empty()) {
        validate_id("conversation_id", cid)?;
    }
    validate_len("kind", q.kind.as_deref().unwrap_or(""), MAX_KIND_BYTES)?;
    validate_len("title", q.title.as_deref().unwrap_or(""), MAX_TITLE_BYTES)?;
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::Invalid("Content-Type is not valid text".into()))?;
            validate_len("Content-Type", s, MAX_CONTENT_TYPE_BYTES)?;
            Some(s.to_string())
        }
        None => None,
    };
    let data = read_body(&headers, body, state.config.max_content_bytes).await?;
    let content = StoredContent::prepare(&data, state.config.compression_threshold);
    let fields = ArtifactFields {
        conversation_id: q.conversation_id,
        kind: q.kind,
        title: q.title,
        content_type,
        metadata_json: None,
    };
    put_artifact(&state, &headers, id, fields, content, true, pre).await
}

/// Query of reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
    include_content: Option<bool>,
}

/// Waits for the read barrier and returns the revision the read will see.
async fn barrier(state: &AppState, param: Option<&str>) -> Result<u64, ApiError> {
    state.read_barrier(consistency(param)?).await?;
    Ok(state.state.applied_index())
}

/// Damaged content is never served: it is reported (counted, repaired from
/// a healthy member in the background) and the client is told to retry.
fn corrupt(state: &AppState, id: &str, e: cairn_storage::Corrupt) -> ApiError {
    state
        .integrity
        .report(id, &e.to_string(), crate::integrity::FoundBy::Read);
    ApiError::Unavailable(format!(
        "artifact {id}: stored content failed checksum verification on node {} and is not served; \
         it is being repaired from a healthy member, retry shortly",
        state.config.id
    ))
}

/// `GET /v1/artifacts/{id}`: metadata and (unless `include_content=false`) content.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    validate_id("id", &id)?;
    let revision = barrier(&state, q.consistency.as_deref()).await?;
    let not_found = || ApiError::NotFound(format!("no artifact {id}"));
    let view = if q.include_content.unwrap_or(true) {
        let (meta, content) = state
            .state
            .artifact_with_content(&id)?
            .ok_or_else(not_found)?;
        let data = content.open().map_err(|e| corrupt(&state, &id, e))?;
        ArtifactView::new(meta).with_content(data)
    } else {
        ArtifactView::new(state.state.artifact(&id)?.ok_or_else(not_found)?)
    };
    Ok((revision_header(revision), Json(view)).into_response())
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
    validate_id("id", &id)?;
    let revision = barrier(&state, q.consistency.as_deref()).await?;
    let meta = state
        .state
        .artifact(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no artifact {id}")))?;
    let mut headers = content_headers(&meta, revision)?;
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
    validate_id("id", &id)?;
    let revision = barrier(&state, q.consistency.as_deref()).await?;
    let (meta, content) = state
        .state
        .artifact_with_content(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no artifact {id}")))?;
    let mut headers = content_headers(&meta, revision)?;
    let etag = quoted_etag(&meta.checksum);
    let if_none_match = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    // Verify before serving anything: corrupt content is never sent.
    let data = content.open().map_err(|e| corrupt(&state, &id, e))?;
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
    validate_id("id", &id)?;
    let pre = precondition(&headers)?;
    if pre == Precondition::IfAbsent {
        return Err(ApiError::Invalid(
            "If-None-Match makes no sense on DELETE".into(),
        ));
    }
    let key = idempotency_key(&headers)?;
    let outcome = state
        .write(
            Command::DeleteArtifact {
                id,
                precondition: pre,
            },
            key,
        )
        .await?;
    write_response(outcome)
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
    validate_len("prefix", prefix, super::request::MAX_ID_BYTES)?;
    if let Some(cid) = conversation_id {
        validate_id("conversation_id", cid)?;
    }
    let revision = barrier(state, q.consistency.as_deref()).await?;
    let cursor = q.cursor.as_deref();
    let page = match conversation_id {
        Some(cid) => state.state.list_conversation(cid, prefix, cursor, limit)?,
        None => state.state.list_artifacts(prefix, cursor, limit)?,
    };
    let view = ListView {
        artifacts: page.items.into_iter().map(ArtifactView::new).collect(),
        next_cursor: page.next_cursor,
    };
    Ok((revision_header(revision), Json(view)).into_response())
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
