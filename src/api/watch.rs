//! `GET /v1/watch`: change events as Server-Sent Events.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::request::ApiQuery;
use super::AppState;
use crate::ops::watch::{watch, WatchItem};

/// Query of a watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    prefix: Option<String>,
    from_revision: Option<u64>,
}

fn to_sse(item: WatchItem) -> SseEvent {
    match item {
        WatchItem::Change {
            event: e,
            ends_revision,
        } => {
            let sse = SseEvent::default().data(
                json!({"revision": e.revision, "kind": e.kind, "key": e.key, "version": e.version, "at_ms": e.at_ms})
                    .to_string(),
            );
            // The id is what a reconnecting client resumes after, so only a
            // revision's last change carries it; a client cut off inside a
            // revision resumes from the one before and sees it whole again.
            if ends_revision {
                sse.id(e.revision.to_string())
            } else {
                sse
            }
        }
        WatchItem::Compacted { oldest_revision } => SseEvent::default().event("error").data(
            json!({"error": {
                "code": "not_found",
                "message": format!("the requested revision was compacted; the oldest available is {oldest_revision}"),
                "oldest_revision": oldest_revision,
            }})
            .to_string(),
        ),
    }
}

/// `GET /v1/watch?prefix=&from_revision=`, resumable with `Last-Event-ID`.
pub async fn stream(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::Invalid("Last-Event-ID must be a revision".into()))?,
        ),
    };
    // Resuming continues after the last event seen; it wins over the query.
    let from = last_event_id.map(|id| id + 1).or(q.from_revision);
    let events = watch(state, q.prefix.unwrap_or_default(), from)?;
    let sse = Sse::new(events.map(|item| Ok::<_, Infallible>(to_sse(item))))
        .keep_alive(KeepAlive::default());
    Ok(sse.into_response())
}
