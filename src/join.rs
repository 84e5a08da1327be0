//! `cairn serve --join URL [--voter]`: a fresh node asks a running member
//! to add it as a learner, waits until it has caught up, and with
//! `--voter` has itself promoted.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::{AdminClient, ClientError};
use crate::node::NodeCore;

/// How long one add-learner call waits for the catch-up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(300);

/// Repeats `call` while it fails transiently, until `stop`.
async fn retrying<T, F, Fut>(what: &str, stop: &CancellationToken, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            r = call() => r,
            _ = stop.cancelled() => return None,
        };
        match outcome {
            Ok(v) => return Some(v),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "{what} failed; retrying");
            }
            Err(e) => {
                tracing::error!(error = %e, "{what} refused; not joining");
                return None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Joins the cluster at `url` (see the module doc).
pub async fn run(core: Arc<NodeCore>, url: String, stop: CancellationToken) {
    let id = core.config.id;
    let client = AdminClient::new(&url, core.config.admin_token.as_ref().map(|t| t.0.clone()));
    let (api, raft) = (
        core.config.public_api_addr().to_string(),
        core.config.public_raft_addr().to_string(),
    );
    tracing::info!(id, %url, "asking the cluster to add this node as a learner");
    let added = retrying("adding this node as a learner", &stop, || {
        client.add_learner(id, &api, &raft, Some(CATCH_UP_WAIT))
    })
    .await;
    if added.is_none() {
        return;
    }
    tracing::info!(id, "joined as a learner and caught up");
    if !core.config.voter {
        return;
    }
    if retrying("promoting this node to voter", &stop, || client.promote(id))
        .await
        .is_some()
    {
        tracing::info!(id, "promoted to voter");
    }
}
