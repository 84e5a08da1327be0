//! The deterministic apply: a pure function of (state, log entry).
//!
//! No local clock, no randomness, no I/O but the [`Overlay`]. Time comes from
//! the entry (`now_ms`, made monotonic against the stored clock), revisions
//! are log indexes, and so are fencing tokens unless one entry (a batch, a
//! tick expiring several leases) issues several. Every replica applying the same
//! entries therefore holds byte-identical state. Each primitive's rules live
//! in its own file; this one holds what they share: the clock, expiry,
//! idempotency, fencing and the event history.

mod artifact;
mod instance;
mod kv;
mod lock;
mod session;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::command::{Command, Fence, Precondition, Rejection, Request, Response};
use crate::error::StoreError;
use crate::event::{Event, EventKind, HistoryStats};
use crate::keys;
use crate::view::Overlay;

/// The longest an idempotency key may remember its outcome (24 h), so that
/// the records cannot grow without bound.
pub const MAX_IDEMPOTENCY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Housekeeping records one request purges at most. Every write leaves one
/// record behind, so purging a few per request keeps up with any write
/// rate, while the first write after a long quiet spell does not purge all
/// that fell due meanwhile in one entry (hundreds of thousands of deletes
/// once stalled every replica's apply for seconds).
pub const GC_PER_REQUEST: usize = 64;

/// The remembered outcome of a write that carried an idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    expires_ms: u64,
    response: Response,
}

/// What one entry's apply works with.
pub(crate) struct Ctx<'v, 'a> {
    pub view: &'v mut Overlay<'a>,
    /// The entry's log index: the revision of every change.
    pub index: u64,
    /// The replicated clock for this entry.
    pub now: u64,
}

impl Ctx<'_, '_> {
    pub fn load<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.view.load(key)
    }

    pub fn store<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), StoreError> {
        self.view.put(key, encode(value)?);
        Ok(())
    }

    /// Records a change event in the history.
    pub fn emit(&mut self, kind: EventKind, key: String, version: u64) -> Result<(), StoreError> {
        // Events are recorded in log order, so this entry's are the last
        // ones: counting from the end keeps a batch of many writes linear.
        let seq = self
            .view
            .events
            .iter()
            .rev()
            .take_while(|e| e.revision == self.index)
            .count() as u32;
        let event = Event {
            revision: self.index,
            kind,
            key,
            version,
            at_ms: self.now,
        };
        self.store(keys::event(self.index, seq), &event)?;
        let mut stats: HistoryStats = self.load(keys::EVENT_STATS)?.unwrap_or_default();
        stats.count += 1;
        self.store(keys::EVENT_STATS.to_vec(), &stats)?;
        self.view.events.push(event);
        Ok(())
    }

    /// A new lock id (fencing token or queue place): the entry's index, or
    /// one above the last id issued if that is larger, which happens only
    /// when one entry issues several. Ids thus strictly increase
    /// across the whole log, and equal the granting index in the common case.
    pub fn next_lock_id(&mut self) -> Result<u64, StoreError> {
        let last: u64 = self.load(keys::LOCK_SEQ)?.unwrap_or(0);
        let id = self.index.max(last + 1);
        self.store(keys::LOCK_SEQ.to_vec(), &id)?;
        Ok(id)
    }

    /// Schedules `target` to expire at `at_ms` (or removes that schedule).
    pub fn schedule(&mut self, at_ms: u64, target: &[u8]) {
        self.view.put(keys::expiry(at_ms, target), Vec::new());
    }

    pub fn unschedule(&mut self, at_ms: u64, target: &[u8]) {
        self.view.delete(keys::expiry(at_ms, target));
    }
}

/// Applies one client request (or a batch of them, in order) at log index
/// `index`.
pub fn apply_request(
    view: &mut Overlay<'_>,
    index: u64,
    req: &Request,
) -> Result<Response, StoreError> {
    let now = advance_clock(view, req.now_ms)?;
    let mut ctx = Ctx { view, index, now };
    collect_garbage(&mut ctx)?;
    expire_due(&mut ctx)?;

    if let Some(idem) = &req.idempotency {
        // A record past its time may still wait for its purge; it no longer counts.
        if let Some(record) = ctx.load::<IdempotencyRecord>(&keys::idempotency(&idem.key))? {
            if record.expires_ms > now {
                return Ok(record.response);
            }
        }
    }

    let response = match &req.command {
        // The session decides first whether this is a retry, so that a retry
        // gets the first outcome whatever holds the fence's lock now.
        Command::InSession(write) => session::apply(&mut ctx, write, req.fence.as_ref())?,
        command => fenced(&mut ctx, req.fence.as_ref(), command)?,
    };

    if let Some(idem) = &req.idempotency {
        let retain = idem.retain_ms.min(MAX_IDEMPOTENCY_RETENTION_MS);
        let expires_ms = now.saturating_add(retain);
        let target = keys::idempotency(&idem.key);
        ctx.view.put(keys::gc(expires_ms, &target), Vec::new());
        let record = IdempotencyRecord {
            expires_ms,
            response: response.clone(),
        };
        ctx.store(target, &record)?;
    }
    Ok(response)
}

/// Applies `command` if `fence` holds, and refuses it otherwise.
fn fenced(
    ctx: &mut Ctx<'_, '_>,
    fence: Option<&Fence>,
    command: &Command,
) -> Result<Response, StoreError> {
    match fence_holds(ctx, fence)? {
        Err(rejection) => Ok(Response::Rejected(rejection)),
        Ok(()) => apply_command(ctx, command),
    }
}

fn apply_command(ctx: &mut Ctx<'_, '_>, command: &Command) -> Result<Response, StoreError> {
    match command {
        Command::PutArtifact {
            id,
            fields,
            content,
            merge,
            precondition,
        } => artifact::put(ctx, id, fields, content, *merge, *precondition),
        Command::DeleteArtifact { id, precondition } => artifact::delete(ctx, id, *precondition),
        Command::KvPut {
            key,
            value,
            ttl_ms,
            precondition,
        } => kv::put(ctx, key, value, *ttl_ms, *precondition),
        Command::KvDelete { key, precondition } => kv::delete(ctx, key, *precondition),
        Command::LockAcquire {
            name,
            owner,
            ttl_ms,
            wait_ms,
        } => lock::acquire(ctx, name, owner, *ttl_ms, *wait_ms),
        Command::LockCancelWait { name, request } => lock::cancel_wait(ctx, name, *request),
        Command::LockRenew {
            name,
            token,
            ttl_ms,
        } => lock::renew(ctx, name, *token, *ttl_ms),
        Command::LockRelease { name, token } => lock::release(ctx, name, *token),
        Command::InstanceHeartbeat {
            id,
            ttl_ms,
            meta_json,
        } => instance::heartbeat(ctx, id, *ttl_ms, meta_json.as_deref()),
        Command::InstanceLeave { id } => instance::leave(ctx, id),
        Command::TrimEvents {
            keep_count,
            keep_ms,
        } => {
            trim_events(ctx, *keep_count, *keep_ms)?;
            Ok(Response::Noop)
        }
        Command::InitCluster { cluster_id } => {
            if ctx.view.get(keys::CLUSTER_ID)?.is_none() {
                ctx.view
                    .put(keys::CLUSTER_ID.to_vec(), cluster_id.as_bytes().to_vec());
            }
            Ok(Response::Noop)
        }
        Command::Tick | Command::DigestMarker => Ok(Response::Noop),
        // Each request keeps its own stamp, idempotency key and fence, and
        // sees the changes of those before it in the batch.
        Command::Batch(requests) => requests
            .iter()
            .map(|r| apply_request(ctx.view, ctx.index, r))
            .collect::<Result<Vec<_>, _>>()
            .map(Response::Batch),
        Command::InSession(write) => session::apply(ctx, write, None),
    }
}

/// Checks `X-Cairn-Fence`: the lock must be held with exactly that token now.
fn fence_holds(
    ctx: &Ctx<'_, '_>,
    fence: Option<&Fence>,
) -> Result<Result<(), Rejection>, StoreError> {
    let Some(fence) = fence else {
        return Ok(Ok(()));
    };
    let current = lock::holder(ctx, &fence.lock)?.map(|l| l.token);
    if current == Some(fence.token) {
        Ok(Ok(()))
    } else {
        Ok(Err(Rejection::Fenced {
            lock: fence.lock.clone(),
            token: fence.token,
            current,
        }))
    }
}

/// Moves the replicated clock to `max(stored, proposed)` and returns it.
pub fn advance_clock(view: &mut Overlay<'_>, proposed_ms: u64) -> Result<u64, StoreError> {
    let stored = read_clock(view)?;
    let now = stored.max(proposed_ms);
    if now != stored {
        view.put(keys::CLOCK.to_vec(), encode(&now)?);
    }
    Ok(now)
}

/// The replicated clock as of the overlay (0 before the first entry).
pub fn read_clock(view: &Overlay<'_>) -> Result<u64, StoreError> {
    match view.get(keys::CLOCK)? {
        Some(bytes) => Ok(decode(&bytes)?),
        None => Ok(0),
    }
}

/// Drops the oldest housekeeping records (idempotency outcomes, idle
/// sessions) whose time has come, at most [`GC_PER_REQUEST`] of them.
fn collect_garbage(ctx: &mut Ctx<'_, '_>) -> Result<(), StoreError> {
    let end = keys::due_end(keys::GC_PREFIX, ctx.now);
    let due = ctx
        .view
        .scan(keys::GC_PREFIX, &end)
        .take(GC_PER_REQUEST)
        .map(|item| item.map(|(key, _)| key))
        .collect::<Result<Vec<_>, _>>()?;
    for index_key in due {
        ctx.view.delete(index_key.clone());
        let Some((at_ms, target)) = keys::parse_timed(keys::GC_PREFIX, &index_key) else {
            continue;
        };
        if target.starts_with(keys::SESSION_PREFIX) {
            session::collect(ctx, target)?;
        } else {
            // A key reused since is remembered anew under a later time.
            let current = ctx.load::<IdempotencyRecord>(&target)?;
            if current.is_some_and(|r| r.expires_ms <= at_ms) {
                ctx.view.delete(target);
            }
        }
    }
    Ok(())
}

/// Expires every TTL and lease due at or before the replicated clock.
fn expire_due(ctx: &mut Ctx<'_, '_>) -> Result<(), StoreError> {
    let due = ctx
        .view
        .range(keys::EXPIRY_PREFIX, &keys::expiry_due_end(ctx.now))?;
    for (index_key, _) in due {
        ctx.view.delete(index_key.clone());
        let Some((at_ms, target)) = keys::parse_timed(keys::EXPIRY_PREFIX, &index_key) else {
            continue;
        };
        if let Some(key) = target.strip_prefix(keys::KV_PREFIX) {
            kv::expire(ctx, &String::from_utf8_lossy(key), at_ms)?;
        } else if let Some(name) = target.strip_prefix(keys::LOCK_PREFIX) {
            lock::expire(ctx, &String::from_utf8_lossy(name), at_ms)?;
        } else if target.starts_with(keys::LOCK_QUEUE_PREFIX) {
            // A waiter's deadline passed: it leaves the queue silently.
            ctx.view.delete(target);
        } else if let Some(id) = target.strip_prefix(keys::INSTANCE_PREFIX) {
            instance::expire(ctx, &String::from_utf8_lossy(id), at_ms)?;
        }
    }
    Ok(())
}

/// Drops the oldest events beyond `keep_count`, and any older than `keep_ms`.
fn trim_events(ctx: &mut Ctx<'_, '_>, keep_count: u64, keep_ms: u64) -> Result<(), StoreError> {
    let mut stats: HistoryStats = ctx.load(keys::EVENT_STATS)?.unwrap_or_default();
    let oldest_kept = ctx.now.saturating_sub(keep_ms);
    let end = keys::prefix_end(keys::EVENT_PREFIX).unwrap_or_default();
    // Read from the oldest event only as far as the trim goes: the leader
    // trims a few hundred events at a time from a history of 100,000, and
    // copying the whole history for each trim once took half the CPU.
    let mut doomed = Vec::new();
    for item in ctx.view.scan(keys::EVENT_PREFIX, &end) {
        let (key, bytes) = item?;
        let event: Event = decode(&bytes)?;
        if stats.count <= keep_count && event.at_ms >= oldest_kept {
            break;
        }
        doomed.push(key);
        stats.count -= 1;
        stats.floor = stats.floor.max(event.revision);
    }
    for key in doomed {
        ctx.view.delete(key);
    }
    ctx.store(keys::EVENT_STATS.to_vec(), &stats)
}

/// Checks a version precondition against the current version (`None` = absent).
pub(crate) fn check(pre: Precondition, current: Option<u64>) -> Result<(), Rejection> {
    let ok = match pre {
        Precondition::None => true,
        Precondition::IfVersion(v) => current == Some(v),
        Precondition::IfAbsent => current.is_none(),
        Precondition::IfExists => current.is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::Conflict {
            current_version: current,
        })
    }
}

#[cfg(test)]
mod tests;
