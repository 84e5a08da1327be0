//! Key/value entries with optional TTL.

use super::{check, Ctx};
use crate::command::{KvMeta, Precondition, Rejection, Response};
use crate::error::StoreError;
use crate::event::EventKind;
use crate::keys;
use crate::records::KvRecord;

fn event_key(key: &str) -> String {
    format!("kv/{key}")
}

pub(super) fn put(
    ctx: &mut Ctx<'_, '_>,
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    precondition: Precondition,
) -> Result<Response, StoreError> {
    let skey = keys::kv(key);
    let current: Option<KvRecord> = ctx.load(&skey)?;
    if let Err(rejection) = check(precondition, current.as_ref().map(|r| r.version)) {
        return Ok(Response::Rejected(rejection));
    }
    if let Some(at) = current.as_ref().and_then(|r| r.expires_ms) {
        ctx.unschedule(at, &skey);
    }
    let expires_ms = ttl_ms.map(|t| ctx.now.saturating_add(t));
    if let Some(at) = expires_ms {
        ctx.schedule(at, &skey);
    }
    let record = KvRecord {
        key: key.to_string(),
        value: value.to_vec(),
        version: current.as_ref().map_or(1, |r| r.version + 1),
        revision: ctx.index,
        created_ms: current.as_ref().map_or(ctx.now, |r| r.created_ms),
        updated_ms: ctx.now,
        expires_ms,
    };
    ctx.store(skey, &record)?;
    ctx.emit(EventKind::Put, event_key(key), record.version)?;
    Ok(Response::Kv(KvMeta {
        key: record.key,
        version: record.version,
        revision: record.revision,
        expires_ms,
    }))
}

pub(super) fn delete(
    ctx: &mut Ctx<'_, '_>,
    key: &str,
    precondition: Precondition,
) -> Result<Response, StoreError> {
    let skey = keys::kv(key);
    let Some(current) = ctx.load::<KvRecord>(&skey)? else {
        return Ok(Response::Rejected(Rejection::NotFound));
    };
    if let Err(rejection) = check(precondition, Some(current.version)) {
        return Ok(Response::Rejected(rejection));
    }
    if let Some(at) = current.expires_ms {
        ctx.unschedule(at, &skey);
    }
    ctx.view.delete(skey);
    ctx.emit(EventKind::Delete, event_key(key), current.version)?;
    Ok(Response::Deleted {
        revision: ctx.index,
    })
}

/// Removes `key` if its TTL is the one that fell due at `at_ms`.
pub(super) fn expire(ctx: &mut Ctx<'_, '_>, key: &str, at_ms: u64) -> Result<(), StoreError> {
    let skey = keys::kv(key);
    if let Some(record) = ctx.load::<KvRecord>(&skey)? {
        if record.expires_ms == Some(at_ms) {
            ctx.view.delete(skey);
            ctx.emit(EventKind::Expire, event_key(key), record.version)?;
        }
    }
    Ok(())
}
