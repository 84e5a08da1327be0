//! `GET /metrics`: every metric in the Prometheus text format.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// `GET /metrics`. When an embedding application installed its own metrics
/// recorder first, Cairn's metrics go there and this route answers 404.
pub async fn metrics() -> Result<Response, ApiError> {
    let text = crate::telemetry::render().ok_or_else(|| {
        ApiError::NotFound(
            "metrics are recorded by the host application's recorder, not served here".into(),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
