//! `GET /v1/cluster/consistency`, `POST /v1/cluster/recovery`,
//! `GET /v1/cluster/integrity`, and the opt-in test hook that damages
//! stored content on one node.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::error::ApiError;
use super::request::ApiPath;
use super::AppState;
use crate::integrity::consistency::{check, recover};

/// `GET /v1/cluster/consistency`: every member's state digest at one
/// common log index, compared. 200 either way; `consistent` says which.
pub async fn consistency(State(core): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(check(&core).await?).into_response())
}

/// `POST /v1/cluster/recovery`: every member re-verifies its stored content
/// and rewrites damaged items from a healthy member; then a fresh
/// consistency check.
pub async fn recovery(State(core): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(recover(&core).await?).into_response())
}

/// `GET /v1/cluster/integrity`: this node's damaged content and last scrub.
pub async fn integrity(State(core): State<AppState>) -> Json<crate::integrity::IntegrityStatus> {
    Json(core.integrity.status())
}

/// The routes that exist only with `--enable-test-hooks`.
pub fn test_hooks(core: &AppState) -> Router<AppState> {
    if core.config.enable_test_hooks {
        Router::new().route("/v1/test/damage/{id}", post(damage))
    } else {
        Router::new()
    }
}

/// `POST /v1/test/damage/{id}` (test hook): flips a byte of the artifact's
/// stored content on this node only, bypassing Raft.
async fn damage(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    crate::ops::validate::id("id", &id)?;
    if core.state.damage_content_for_tests(&id).await? {
        tracing::warn!(artifact = %id, "test hook: damaged stored content on this node");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("no artifact {id}")))
    }
}
