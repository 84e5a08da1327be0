//! The operations of the store, typed: what the HTTP handlers and the
//! embeddable [`crate::Node`] both call. Each validates its input, builds a
//! command or a read, and turns the state machine's answer into a value or
//! an [`Error`]. HTTP concerns (headers, status codes) stay in `api/`.

pub mod artifacts;
pub mod instances;
pub mod kv;
pub mod locks;
pub mod validate;
pub mod watch;

use cairn_raft::leader::WriteOutcome;
use cairn_storage::{Rejection, Response, StoreError};

use crate::forward::{Consistency, Unavailable};
use crate::node::NodeCore;

/// Why an operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The input is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// The state machine refused the command; nothing changed.
    #[error("{}", describe(.0))]
    Rejected(Rejection),
    /// No leader or quorum within the request deadline.
    #[error("{0}")]
    Unavailable(String),
    /// Stored content failed its checksum on this node and is not served.
    #[error("{0}")]
    Corrupt(String),
    /// The local store failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// The state machine answered something this operation cannot produce.
    #[error("unexpected outcome: {0}")]
    Unexpected(String),
}

fn describe(r: &Rejection) -> String {
    match r {
        Rejection::Conflict {
            current_version: Some(v),
        } => format!("precondition failed: the current version is {v}"),
        Rejection::Conflict {
            current_version: None,
        } => "precondition failed: it does not exist".into(),
        Rejection::NotFound => "not found".into(),
        Rejection::Locked { holder, expires_ms } => {
            format!("held by {holder} until {expires_ms}")
        }
        Rejection::TokenStale { lock, token } => {
            format!("token {token} no longer holds lock {lock}")
        }
        Rejection::Fenced {
            lock,
            token,
            current,
        } => match current {
            Some(c) => format!("fence {lock}:{token} is stale: the lock is held with token {c}"),
            None => format!("fence {lock}:{token} is stale: the lock is not held"),
        },
        Rejection::Abandoned { seq } => format!(
            "write {seq} of this node's session reached the leader after the node had given up \
             on it; it was not applied"
        ),
    }
}

impl From<Unavailable> for Error {
    fn from(e: Unavailable) -> Self {
        Error::Unavailable(e.0)
    }
}

/// A value with the revision it was written at, or the applied revision a
/// read saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revisioned<T> {
    /// The value.
    pub value: T,
    /// The revision.
    pub revision: u64,
}

/// The state machine's answer, with rejections as errors.
fn accepted(outcome: WriteOutcome) -> Result<(Response, u64), Error> {
    match outcome.response {
        Response::Rejected(r) => {
            if matches!(r, Rejection::Fenced { .. }) {
                metrics::counter!(cairn_storage::telemetry::LOCK_FENCED_REJECTIONS).increment(1);
            }
            Err(Error::Rejected(r))
        }
        other => Ok((other, outcome.index)),
    }
}

fn unexpected(r: Response) -> Error {
    Error::Unexpected(format!("{r:?}"))
}

/// Waits for the read barrier; returns the applied revision the read sees.
async fn barrier(core: &NodeCore, consistency: Consistency) -> Result<u64, Error> {
    core.read_barrier(consistency).await?;
    Ok(core.state.applied_index())
}
