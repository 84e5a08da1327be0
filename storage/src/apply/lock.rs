//! Locks: leased, fenced, and granted first come first served.
//!
//! A lock is held by at most one owner. Its fencing token is a lock id
//! ([`Ctx::next_lock_id`]): the log index of the entry that granted it, or
//! just above the last id when one entry grants several, so every token is
//! greater than every token issued before. A request that finds the lock
//! held may wait in the lock's queue (ordered by its own lock id); when the
//! holder releases, or its lease runs out on the replicated clock, the same
//! entry grants the lock to the first waiter whose deadline has not passed.

use super::Ctx;
use crate::command::{Rejection, Response};
use crate::error::StoreError;
use crate::event::EventKind;
use crate::keys;
use crate::records::{LockRecord, LockWaiter};

fn event_key(name: &str) -> String {
    format!("locks/{name}")
}

/// The current holder of `name`, if any.
pub(super) fn holder(ctx: &Ctx<'_, '_>, name: &str) -> Result<Option<LockRecord>, StoreError> {
    ctx.load(&keys::lock(name))
}

fn grant(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    owner: &str,
    ttl_ms: u64,
    request: Option<u64>,
) -> Result<LockRecord, StoreError> {
    let token = ctx.next_lock_id()?;
    let record = LockRecord {
        name: name.to_string(),
        owner: owner.to_string(),
        token,
        expires_ms: ctx.now.saturating_add(ttl_ms),
        acquired_ms: ctx.now,
        // An immediate grant answers its own request.
        request: request.unwrap_or(token),
    };
    let skey = keys::lock(name);
    ctx.schedule(record.expires_ms, &skey);
    ctx.store(skey, &record)?;
    ctx.emit(EventKind::Put, event_key(name), record.token)?;
    Ok(record)
}

pub(super) fn acquire(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    owner: &str,
    ttl_ms: u64,
    wait_ms: u64,
) -> Result<Response, StoreError> {
    let Some(held) = holder(ctx, name)? else {
        return Ok(Response::Lock(grant(ctx, name, owner, ttl_ms, None)?));
    };
    if wait_ms == 0 {
        return Ok(Response::Rejected(Rejection::Locked {
            holder: held.owner,
            expires_ms: held.expires_ms,
        }));
    }
    let waiter = LockWaiter {
        request: ctx.next_lock_id()?,
        owner: owner.to_string(),
        ttl_ms,
        deadline_ms: ctx.now.saturating_add(wait_ms),
    };
    let wkey = keys::lock_waiter(name, waiter.request);
    ctx.schedule(waiter.deadline_ms, &wkey);
    ctx.store(wkey, &waiter)?;
    Ok(Response::LockQueued {
        request: waiter.request,
    })
}

pub(super) fn cancel_wait(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    request: u64,
) -> Result<Response, StoreError> {
    let wkey = keys::lock_waiter(name, request);
    if let Some(waiter) = ctx.load::<LockWaiter>(&wkey)? {
        ctx.unschedule(waiter.deadline_ms, &wkey);
        ctx.view.delete(wkey);
    }
    // The grant may have raced the cancel: then the waiter holds the lock.
    match holder(ctx, name)? {
        Some(held) if held.request == request => Ok(Response::Lock(held)),
        Some(held) => Ok(Response::Rejected(Rejection::Locked {
            holder: held.owner,
            expires_ms: held.expires_ms,
        })),
        None => Ok(Response::Rejected(Rejection::NotFound)),
    }
}

fn stale(name: &str, token: u64) -> Response {
    Response::Rejected(Rejection::TokenStale {
        lock: name.to_string(),
        token,
    })
}

pub(super) fn renew(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    token: u64,
    ttl_ms: u64,
) -> Result<Response, StoreError> {
    let Some(mut held) = holder(ctx, name)?.filter(|h| h.token == token) else {
        return Ok(stale(name, token));
    };
    let skey = keys::lock(name);
    ctx.unschedule(held.expires_ms, &skey);
    held.expires_ms = ctx.now.saturating_add(ttl_ms);
    ctx.schedule(held.expires_ms, &skey);
    ctx.store(skey, &held)?;
    Ok(Response::Lock(held))
}

pub(super) fn release(
    ctx: &mut Ctx<'_, '_>,
    name: &str,
    token: u64,
) -> Result<Response, StoreError> {
    let Some(held) = holder(ctx, name)?.filter(|h| h.token == token) else {
        return Ok(stale(name, token));
    };
    free(ctx, &held, EventKind::Delete)?;
    Ok(Response::Released)
}

/// Frees the lock if the lease that fell due at `at_ms` is the current one.
pub(super) fn expire(ctx: &mut Ctx<'_, '_>, name: &str, at_ms: u64) -> Result<(), StoreError> {
    if let Some(held) = holder(ctx, name)?.filter(|h| h.expires_ms == at_ms) {
        free(ctx, &held, EventKind::Expire)?;
    }
    Ok(())
}

/// Removes the holder and hands the lock to the first live waiter.
fn free(ctx: &mut Ctx<'_, '_>, held: &LockRecord, kind: EventKind) -> Result<(), StoreError> {
    let skey = keys::lock(&held.name);
    ctx.unschedule(held.expires_ms, &skey);
    ctx.view.delete(skey);
    ctx.emit(kind, event_key(&held.name), held.token)?;
    let prefix = keys::lock_queue_prefix(&held.name);
    let end = keys::prefix_end(&prefix).unwrap_or_default();
    for (wkey, bytes) in ctx.view.range(&prefix, &end)? {
        let waiter: LockWaiter = crate::codec::decode(&bytes)?;
        ctx.unschedule(waiter.deadline_ms, &wkey);
        ctx.view.delete(wkey);
        // A waiter whose deadline has come gave up: drop it and ask the next.
        if waiter.deadline_ms > ctx.now {
            grant(
                ctx,
                &held.name,
                &waiter.owner,
                waiter.ttl_ms,
                Some(waiter.request),
            )?;
            break;
        }
    }
    Ok(())
}
