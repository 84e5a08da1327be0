//! Bearer-token guard: `--admin-token` protects `/v1/cluster*`,
//! `--api-token` the rest of `/v1/*`; health, metrics and the status page
//! stay open for probes. Tokens are compared in constant time (over their
//! SHA-256, so the length does not leak either) and never logged.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::Secret;

/// Which token, if any, guards `path`.
fn guard_for<'a>(
    path: &str,
    admin: Option<&'a Secret>,
    api: Option<&'a Secret>,
) -> Option<(&'a Secret, &'static str)> {
    if path == "/v1/cluster" || path.starts_with("/v1/cluster/") {
        admin.map(|t| (t, "admin"))
    } else if path.starts_with("/v1/") {
        api.map(|t| (t, "API"))
    } else {
        None
    }
}

/// Whether `presented` equals `expected`, in time independent of both.
fn token_matches(presented: &[u8], expected: &Secret) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected.0.as_bytes());
    a.ct_eq(&b).into()
}

/// The bearer token of a request, if it carries one.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(token)
        .filter(|t| !t.is_empty())
}

/// The layer: 401 `unauthorized` unless the request carries the token its
/// path requires.
pub async fn require_token(State(core): State<AppState>, req: Request, next: Next) -> Response {
    let config = &core.config;
    let Some((expected, which)) = guard_for(
        req.uri().path(),
        config.admin_token.as_ref(),
        config.api_token.as_ref(),
    ) else {
        return next.run(req).await;
    };
    match bearer(&req) {
        Some(token) if token_matches(token, expected) => next.run(req).await,
        presented => {
            metrics::counter!("cairn_unauthorized_requests_total").increment(1);
            let mut response = ApiError::Unauthorized(if presented.is_some() {
                format!("the {which} token is not valid")
            } else {
                format!("this endpoint requires the {which} token: Authorization: Bearer <token>")
            })
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_paths_take_the_admin_token_and_data_paths_the_api_token() {
        let admin = Secret("a".into());
        let api = Secret("b".into());
        let g = |p| guard_for(p, Some(&admin), Some(&api)).map(|(t, _)| t.0.clone());
        assert_eq!(g("/v1/cluster").as_deref(), Some("a"));
        assert_eq!(g("/v1/cluster/learners").as_deref(), Some("a"));
        assert_eq!(g("/v1/clusters").as_deref(), Some("b"));
        assert_eq!(g("/v1/artifacts/x").as_deref(), Some("b"));
        assert_eq!(g("/health/ready"), None);
        assert_eq!(g("/metrics"), None);
        assert_eq!(g("/"), None);
        assert_eq!(guard_for("/v1/artifacts", Some(&admin), None), None);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let t = Secret("s3cret".into());
        assert!(token_matches(b"s3cret", &t));
        assert!(!token_matches(b"s3cre", &t));
        assert!(!token_matches(b"s3cret ", &t));
        assert!(!token_matches(b"", &t));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
    }
}
