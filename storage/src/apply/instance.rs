//! Instances: heartbeats of the application nodes that use the store.

use super::Ctx;
use crate::command::{Rejection, Response};
use crate::error::StoreError;
use crate::event::EventKind;
use crate::keys;
use crate::records::InstanceRecord;

fn event_key(id: &str) -> String {
    format!("instances/{id}")
}

pub(super) fn heartbeat(
    ctx: &mut Ctx<'_, '_>,
    id: &str,
    ttl_ms: u64,
    meta_json: Option<&str>,
) -> Result<Response, StoreError> {
    let skey = keys::instance(id);
    let current: Option<InstanceRecord> = ctx.load(&skey)?;
    if let Some(c) = &current {
        ctx.unschedule(c.expires_ms, &skey);
    }
    let expires_ms = ctx.now.saturating_add(ttl_ms);
    ctx.schedule(expires_ms, &skey);
    // A refresh that changes nothing but the lease is not an event: watchers
    // see instances join, change and leave, not every heartbeat.
    let (record, is_news) = match current {
        None => {
            let record = InstanceRecord {
                id: id.to_string(),
                meta_json: meta_json.unwrap_or("{}").to_string(),
                version: 1,
                registered_ms: ctx.now,
                last_seen_ms: ctx.now,
                expires_ms,
            };
            (record, true)
        }
        Some(c) => {
            let changed = meta_json.is_some_and(|m| m != c.meta_json);
            let record = InstanceRecord {
                meta_json: meta_json.map_or(c.meta_json.clone(), str::to_string),
                version: if changed { c.version + 1 } else { c.version },
                last_seen_ms: ctx.now,
                expires_ms,
                ..c
            };
            (record, changed)
        }
    };
    ctx.store(skey, &record)?;
    if is_news {
        ctx.emit(EventKind::Put, event_key(id), record.version)?;
    }
    Ok(Response::Instance(record))
}

pub(super) fn leave(ctx: &mut Ctx<'_, '_>, id: &str) -> Result<Response, StoreError> {
    let skey = keys::instance(id);
    let Some(current) = ctx.load::<InstanceRecord>(&skey)? else {
        return Ok(Response::Rejected(Rejection::NotFound));
    };
    ctx.unschedule(current.expires_ms, &skey);
    ctx.view.delete(skey);
    ctx.emit(EventKind::Delete, event_key(id), current.version)?;
    Ok(Response::Deleted {
        revision: ctx.index,
    })
}

/// Drops the instance if its lease is the one that fell due at `at_ms`.
pub(super) fn expire(ctx: &mut Ctx<'_, '_>, id: &str, at_ms: u64) -> Result<(), StoreError> {
    let skey = keys::instance(id);
    if let Some(record) = ctx.load::<InstanceRecord>(&skey)? {
        if record.expires_ms == at_ms {
            ctx.view.delete(skey);
            ctx.emit(EventKind::Expire, event_key(id), record.version)?;
        }
    }
    Ok(())
}
