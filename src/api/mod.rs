//! The HTTP API (API.md): one file per resource, one error type, shared
//! request helpers. Handlers are thin: validate, build a command or read,
//! let the node core do the rest.

mod admin;
mod artifacts;
pub mod auth;
mod cluster;
mod consistency;
pub mod error;
mod health;
mod instances;
mod kv;
mod locks;
mod metrics;
pub mod request;
mod status_page;
mod watch;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{from_fn_with_state, map_response_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use crate::forward::Consistency;
use crate::node::NodeCore;
use error::ApiError;

/// The shared state of every handler.
pub type AppState = Arc<NodeCore>;

/// Header naming the node that served a response.
pub const NODE_HEADER: HeaderName = HeaderName::from_static("x-cairn-node");
/// Header carrying the revision a read saw or a write made.
pub const REVISION_HEADER: HeaderName = HeaderName::from_static("x-cairn-revision");

/// The whole API as a router, ready to serve or to merge into a host app.
pub fn router(core: AppState) -> Router {
    Router::new()
        .route(
            "/v1/artifacts",
            post(artifacts::create).get(artifacts::list),
        )
        .route(
            "/v1/artifacts/{id}",
            put(artifacts::put_json)
                .get(artifacts::get)
                .head(artifacts::head)
                .delete(artifacts::delete),
        )
        .route(
            "/v1/artifacts/{id}/content",
            put(artifacts::put_content).get(artifacts::get_content),
        )
        .route(
            "/v1/conversations/{cid}/artifacts",
            get(artifacts::list_conversation),
        )
        .route("/v1/kv", get(kv::list))
        .route(
            "/v1/kv/{*key}",
            put(kv::put).get(kv::get).delete(kv::delete),
        )
        .route("/v1/locks", get(locks::list))
        .route("/v1/locks/{name}", get(locks::get))
        .route("/v1/locks/{name}/acquire", post(locks::acquire))
        .route("/v1/locks/{name}/renew", post(locks::renew))
        .route("/v1/locks/{name}/release", post(locks::release))
        .route("/v1/instances", get(instances::list))
        .route(
            "/v1/instances/{id}",
            put(instances::heartbeat).delete(instances::leave),
        )
        .route("/v1/watch", get(watch::stream))
        .route("/v1/cluster", get(cluster::status))
        .merge(admin::routes(core.clone()))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/cluster/consistency", get(consistency::consistency))
        .route("/v1/cluster/recovery", post(consistency::recovery))
        .route("/v1/cluster/integrity", get(consistency::integrity))
        .route("/", get(status_page::page))
        .merge(consistency::test_hooks(&core))
        // Times every matched route (labels are route patterns, not paths).
        .route_layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Each handler enforces its own documented limit (413 in our format).
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(core.clone(), auth::require_token))
        .layer(map_response_with_state(core.clone(), add_node_header))
        .with_state(core)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn add_node_header(State(core): State<AppState>, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(NODE_HEADER, HeaderValue::from(core.config.id));
    response
}

/// 204 for a change that leaves nothing to show, with its revision.
pub fn no_content(revision: u64) -> Response {
    (
        axum::http::StatusCode::NO_CONTENT,
        [(REVISION_HEADER, HeaderValue::from(revision))],
    )
        .into_response()
}

/// Parses `?consistency=`.
pub fn consistency(param: Option<&str>) -> Result<Consistency, ApiError> {
    param.map_or(Ok(Consistency::default()), |s| {
        s.parse().map_err(ApiError::Invalid)
    })
}

/// Page size of listings: default 100, at most 1000.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::Invalid(format!("limit must be 1-1000, not {n}"))),
    }
}
