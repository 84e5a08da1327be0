//! Reading requests: extractors whose rejections are API errors, and the
//! validation of ids, preconditions and bodies shared by every resource.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use cairn_storage::{Fence, Precondition};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::forward::WriteOptions;
use crate::ops::validate;

/// Query parameters; a malformed query is a 400 in the API's format.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::Invalid(format!("query: {}", e.body_text())))
    }
}

/// Path parameters; a malformed path is a 400 in the API's format.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::Invalid(format!("path: {}", e.body_text())))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::Invalid(format!("{name} is not valid text"))),
    }
}

/// The version precondition of a write, from `If-Match` / `If-None-Match`.
pub fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_match = header_str(headers, header::IF_MATCH.as_str())?;
    let if_none_match = header_str(headers, header::IF_NONE_MATCH.as_str())?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::Invalid(
            "use either If-Match or If-None-Match, not both".into(),
        )),
        (Some("*"), None) => Ok(Precondition::IfExists),
        (Some(v), None) => {
            let n = v.trim_start_matches("W/").trim_matches('"');
            n.parse::<u64>().map(Precondition::IfVersion).map_err(|_| {
                ApiError::Invalid(format!(
                    "If-Match must be a version like \"3\" or *, not {v}"
                ))
            })
        }
        (None, Some("*")) => Ok(Precondition::IfAbsent),
        (None, Some(v)) => Err(ApiError::Invalid(format!(
            "If-None-Match on a write must be *, not {v}"
        ))),
        (None, None) => Ok(Precondition::None),
    }
}

/// The version precondition of a DELETE: `If-Match` only.
pub fn delete_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    match precondition(headers)? {
        Precondition::IfAbsent => Err(ApiError::Invalid(
            "If-None-Match makes no sense on DELETE".into(),
        )),
        pre => Ok(pre),
    }
}

/// The client's `Idempotency-Key`, if any.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match header_str(headers, "idempotency-key")? {
        None => Ok(None),
        Some(k) if k.is_empty() || k.len() > validate::MAX_ID_BYTES => Err(ApiError::Invalid(
            format!("Idempotency-Key must be 1-{} bytes", validate::MAX_ID_BYTES),
        )),
        Some(k) => Ok(Some(k.to_string())),
    }
}

/// The write options from `Idempotency-Key` and `X-Cairn-Fence: <lock>:<token>`.
pub fn write_options(headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
    let fence = match header_str(headers, "x-cairn-fence")? {
        None => None,
        Some(v) => {
            let bad =
                || ApiError::Invalid(format!("X-Cairn-Fence must be <lock>:<token>, not {v}"));
            // Lock names may contain ':'; the token is after the last one.
            let (lock, token) = v.rsplit_once(':').ok_or_else(bad)?;
            validate::id("fence lock name", lock)?;
            let token = token.parse::<u64>().map_err(|_| bad())?;
            Some(Fence {
                lock: lock.to_string(),
                token,
            })
        }
    };
    Ok(WriteOptions {
        idempotency_key: idempotency_key(headers)?,
        fence,
    })
}

/// Reads a whole body of at most `limit` bytes; more is a 413 and is
/// refused before it is read when `Content-Length` announces it.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::TooLarge(format!("body exceeds the limit of {limit} bytes"));
    if let Some(len) = header_str(headers, header::CONTENT_LENGTH.as_str())? {
        if len.parse::<u64>().is_ok_and(|n| n > limit as u64) {
            return Err(too_large());
        }
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                Err(too_large())
            } else {
                Err(ApiError::Invalid(format!("reading the body: {e}")))
            }
        }
    }
}

/// Parses a JSON body into `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Invalid(format!("malformed JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn fences_parse_with_colons_in_lock_names() {
        let mut h = HeaderMap::new();
        h.insert("x-cairn-fence", HeaderValue::from_static("jobs:nightly:42"));
        let fence = write_options(&h).unwrap().fence.unwrap();
        assert_eq!((fence.lock.as_str(), fence.token), ("jobs:nightly", 42));
        h.insert("x-cairn-fence", HeaderValue::from_static("jobs"));
        assert!(write_options(&h).is_err());
        h.insert("x-cairn-fence", HeaderValue::from_static("jobs:x"));
        assert!(write_options(&h).is_err());
    }

    #[test]
    fn preconditions_parse_from_headers() {
        let h = |name: &'static str, v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(name, HeaderValue::from_static(v));
            m
        };
        assert_eq!(precondition(&HeaderMap::new()).unwrap(), Precondition::None);
        assert_eq!(
            precondition(&h("if-match", "\"3\"")).unwrap(),
            Precondition::IfVersion(3)
        );
        assert_eq!(
            precondition(&h("if-match", "4")).unwrap(),
            Precondition::IfVersion(4)
        );
        assert_eq!(
            precondition(&h("if-match", "*")).unwrap(),
            Precondition::IfExists
        );
        assert_eq!(
            precondition(&h("if-none-match", "*")).unwrap(),
            Precondition::IfAbsent
        );
        assert!(precondition(&h("if-match", "\"abc\"")).is_err());
        assert!(precondition(&h("if-none-match", "\"3\"")).is_err());
    }
}
