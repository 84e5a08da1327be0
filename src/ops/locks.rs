//! Locks: linearizable, leased, fenced, first come first served.
//!
//! Waiting does not poll: the request is queued in the replicated state, and
//! the waiting call sleeps on the local state machine's change notices until
//! the entry that grants it the lock is applied here, or its wait runs out.

use std::time::Duration;

use cairn_storage::state_machine::Notice;
use cairn_storage::{Command, LockRecord, Rejection, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{accepted, barrier, unexpected, validate, Error, Revisioned};
use crate::forward::{Consistency, WriteOptions};
use crate::node::NodeCore;

/// Longest lease accepted (1 day).
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest wait accepted (5 minutes).
pub const MAX_WAIT_MS: u64 = 5 * 60 * 1000;
/// Longest owner name (bytes).
pub const MAX_OWNER_BYTES: usize = 256;

/// A lock's state as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// The holder, if held.
    pub holder: Option<LockRecord>,
    /// Requests waiting in its queue.
    pub waiters: usize,
}

/// Takes lock `name` for `owner` with a `ttl_ms` lease, waiting up to
/// `wait_ms` (0: do not wait) behind earlier requests.
pub async fn acquire(
    core: &NodeCore,
    name: &str,
    owner: &str,
    ttl_ms: u64,
    wait_ms: u64,
) -> Result<LockRecord, Error> {
    validate::id("lock name", name)?;
    validate::len("owner", owner, MAX_OWNER_BYTES)?;
    if owner.is_empty() {
        return Err(Error::Invalid("owner is required".into()));
    }
    validate::duration("ttl_ms", ttl_ms, MAX_TTL_MS)?;
    if wait_ms > MAX_WAIT_MS {
        return Err(Error::Invalid(format!(
            "wait_ms must be at most {MAX_WAIT_MS}"
        )));
    }
    // Subscribe before proposing, so the grant cannot slip past unseen.
    let notices = core.state.subscribe();
    let command = Command::LockAcquire {
        name: name.to_string(),
        owner: owner.to_string(),
        ttl_ms,
        wait_ms,
    };
    let result = match accepted(core.write(command, WriteOptions::default()).await?)? {
        (Response::Lock(granted), _) => Ok(granted),
        (Response::LockQueued { request }, _) => {
            wait_for_grant(core, name, request, wait_ms, notices).await
        }
        (other, _) => Err(unexpected(other)),
    };
    if result.is_ok() {
        metrics::counter!(cairn_storage::telemetry::LOCK_ACQUISITIONS).increment(1);
    }
    result
}

async fn wait_for_grant(
    core: &NodeCore,
    name: &str,
    request: u64,
    wait_ms: u64,
    mut notices: tokio::sync::broadcast::Receiver<Notice>,
) -> Result<LockRecord, Error> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let key = format!("locks/{name}");
    loop {
        if let Some(held) = core.state.lock(name)?.filter(|h| h.request == request) {
            return Ok(held);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, notices.recv()).await {
            Err(_) | Ok(Err(RecvError::Closed)) => break,
            Ok(Ok(Notice::Events(events))) if !events.iter().any(|e| e.key == key) => continue,
            // Our lock changed, the state was reset, or we fell behind: look again.
            Ok(_) => continue,
        }
    }
    // Out of time: leave the queue, unless the grant won the race.
    let cancel = Command::LockCancelWait {
        name: name.to_string(),
        request,
    };
    match accepted(core.write(cancel, WriteOptions::default()).await?) {
        Ok((Response::Lock(granted), _)) => Ok(granted),
        Ok((other, _)) => Err(unexpected(other)),
        Err(Error::Rejected(Rejection::NotFound)) => Err(Error::Rejected(Rejection::Locked {
            holder: String::new(),
            expires_ms: 0,
        })),
        Err(e) => Err(e),
    }
}

/// Extends the lease of the lock held with `token`.
pub async fn renew(
    core: &NodeCore,
    name: &str,
    token: u64,
    ttl_ms: u64,
) -> Result<LockRecord, Error> {
    validate::id("lock name", name)?;
    validate::duration("ttl_ms", ttl_ms, MAX_TTL_MS)?;
    let command = Command::LockRenew {
        name: name.to_string(),
        token,
        ttl_ms,
    };
    match accepted(core.write(command, WriteOptions::default()).await?)? {
        (Response::Lock(held), _) => Ok(held),
        (other, _) => Err(unexpected(other)),
    }
}

/// Releases the lock held with `token`.
pub async fn release(core: &NodeCore, name: &str, token: u64) -> Result<u64, Error> {
    validate::id("lock name", name)?;
    let command = Command::LockRelease {
        name: name.to_string(),
        token,
    };
    match accepted(core.write(command, WriteOptions::default()).await?)? {
        (Response::Released, revision) => Ok(revision),
        (other, _) => Err(unexpected(other)),
    }
}

/// Reads one lock.
pub async fn get(
    core: &NodeCore,
    name: &str,
    consistency: Consistency,
) -> Result<Revisioned<LockState>, Error> {
    validate::id("lock name", name)?;
    let revision = barrier(core, consistency).await?;
    Ok(Revisioned {
        value: LockState {
            holder: core.state.lock(name)?,
            waiters: core.state.lock_waiters(name),
        },
        revision,
    })
}

/// Every held lock.
pub async fn list(
    core: &NodeCore,
    consistency: Consistency,
) -> Result<Revisioned<Vec<LockRecord>>, Error> {
    let revision = barrier(core, consistency).await?;
    Ok(Revisioned {
        value: core.state.locks()?,
        revision,
    })
}
