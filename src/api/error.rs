//! The one error type of the HTTP API, rendered as API.md's error body:
//! `{"error": {"code", "message", ...}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use cairn_storage::Rejection;

use crate::forward::Unavailable;
use crate::ops;

/// An API error; each variant is one documented code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// 401: a bearer token is required.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such object or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not with this method (code `invalid`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a version or create-only precondition failed.
    #[error("{message}")]
    Conflict {
        /// Human explanation.
        message: String,
        /// The object's version at the time (absent: the object does not exist).
        current_version: Option<u64>,
    },
    /// 412: a fencing token or lock token that no longer holds.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 423: the lock is held by another owner.
    #[error("{message}")]
    Locked {
        /// Human explanation.
        message: String,
        /// The holder.
        holder: String,
        /// When the holder's lease runs out.
        expires_ms: u64,
    },
    /// 413: a body, content or metadata over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// 416: a `Range` outside the content (code `invalid`).
    #[error("{message}")]
    RangeNotSatisfiable {
        /// Human explanation.
        message: String,
        /// The content length, for `Content-Range: bytes */len`.
        size: u64,
    },
    /// 503: no leader or quorum within the deadline.
    #[error("{0}")]
    Unavailable(String),
    /// 504: the operation did not finish within its deadline.
    #[error("{0}")]
    Timeout(String),
    /// 500: a bug, or stored data that is not what it must be.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid"),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::Locked { .. } => (StatusCode::LOCKED, "locked"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "invalid"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> Self {
        ApiError::Unavailable(e.0)
    }
}

impl From<ops::Error> for ApiError {
    fn from(e: ops::Error) -> Self {
        let message = e.to_string();
        match e {
            ops::Error::Invalid(m) => ApiError::Invalid(m),
            ops::Error::TooLarge(m) => ApiError::TooLarge(m),
            ops::Error::Unavailable(m) | ops::Error::Corrupt(m) => ApiError::Unavailable(m),
            ops::Error::Storage(e) => e.into(),
            ops::Error::Unexpected(m) => ApiError::Internal(m),
            ops::Error::Rejected(r) => match r {
                Rejection::Conflict { current_version } => ApiError::Conflict {
                    message,
                    current_version,
                },
                Rejection::NotFound => ApiError::NotFound(message),
                Rejection::Locked { holder, expires_ms } => ApiError::Locked {
                    message,
                    holder,
                    expires_ms,
                },
                Rejection::TokenStale { .. } | Rejection::Fenced { .. } => {
                    ApiError::PreconditionFailed(message)
                }
                // Not applied, so the client may safely try again.
                Rejection::Abandoned { .. } => ApiError::Unavailable(message),
            },
        }
    }
}

impl From<cairn_storage::StoreError> for ApiError {
    fn from(e: cairn_storage::StoreError) -> Self {
        tracing::error!(error = %e, "storage error while serving a request");
        ApiError::Internal(format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({ "code": code, "message": self.to_string() });
        if let ApiError::Conflict {
            current_version, ..
        } = &self
        {
            body["current_version"] = json!(current_version);
        }
        if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(%status, message = %self, "request failed");
        }
        let mut response = (status, Json(json!({ "error": body }))).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RangeNotSatisfiable { size, .. } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}
