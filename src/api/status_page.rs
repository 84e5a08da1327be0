//! `GET /`: the built-in status page, plain HTML/CSS/JS compiled into the
//! binary. It polls `/v1/cluster` and `/health` and, where the node serves
//! `/v1/watch`, shows change events live.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("status_page.html");

/// `GET /`.
pub async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response()
}
