//! Write sessions: how a node's retries of its own writes apply once.
//!
//! Every node numbers the writes it sends for its clients in a session of
//! its own, a fresh one each time it starts. The first apply of a
//! `(session, seq)` keeps its outcome, and a retry (the same write sent
//! again after a leader change) gets that outcome instead of applying twice.
//! Each write also carries the lowest seq its sender still waits for, so
//! outcomes below it are dropped within the next few writes, and a copy its
//! sender stopped waiting for is refused, not applied.
//!
//! That costs one outcome record per write, dropped a few writes later, and
//! the session's record, rewritten once per log entry. An idempotency key
//! per write instead kept a record and a housekeeping entry for a minute.

use serde::{Deserialize, Serialize};

use super::{fenced, Ctx, GC_PER_REQUEST, MAX_IDEMPOTENCY_RETENTION_MS};
use crate::command::{Fence, Rejection, Response, SessionWrite};
use crate::error::StoreError;
use crate::keys;

/// A session's record, the same size however many writes are awaited. Its
/// outcomes are records of their own, so that a large outcome (an
/// artifact's metadata) is not rewritten with every write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionRecord {
    /// The sender waits for no write below this seq any more: such writes
    /// are refused, and their outcomes dropped.
    acked_below: u64,
    /// How far the dropping has got: a bounded number per write, so that a
    /// long-awaited write, once answered, frees the many outcomes behind it
    /// over the next writes rather than all in one entry.
    dropped_below: u64,
    /// The replicated time of the session's last write.
    last_ms: u64,
    /// How long the session outlives its last write.
    retain_ms: u64,
}

impl SessionRecord {
    fn expires_ms(&self) -> u64 {
        self.last_ms.saturating_add(self.retain_ms)
    }
}

/// Applies `write` once per `(session, seq)`, checking `fence` only on the
/// first apply, so a retry gets the first outcome whatever holds the lock now.
pub(super) fn apply(
    ctx: &mut Ctx<'_, '_>,
    write: &SessionWrite,
    fence: Option<&Fence>,
) -> Result<Response, StoreError> {
    let key = keys::session(write.session);
    let retain_ms = write.retain_ms.min(MAX_IDEMPOTENCY_RETENTION_MS);
    let mut record = match ctx.load::<SessionRecord>(&key)? {
        Some(record) => record,
        None => {
            let expires_ms = ctx.now.saturating_add(retain_ms);
            ctx.view.put(keys::gc(expires_ms, &key), Vec::new());
            // Nothing of this session is stored yet (or any longer, once
            // its housekeeping dropped it), so there is nothing to drop.
            SessionRecord {
                acked_below: write.acked_below,
                dropped_below: write.acked_below,
                last_ms: ctx.now,
                retain_ms,
            }
        }
    };
    record.acked_below = record.acked_below.max(write.acked_below);
    let drop_end = record
        .acked_below
        .min(record.dropped_below.saturating_add(GC_PER_REQUEST as u64));
    for seq in record.dropped_below..drop_end {
        ctx.view.delete(keys::session_outcome(write.session, seq));
    }
    record.dropped_below = record.dropped_below.max(drop_end);

    let outcome_key = keys::session_outcome(write.session, write.seq);
    let response = if write.seq < record.acked_below {
        Response::Rejected(Rejection::Abandoned { seq: write.seq })
    } else if let Some(first) = ctx.load::<Response>(&outcome_key)? {
        first
    } else {
        let response = fenced(ctx, fence, &write.command)?;
        ctx.store(outcome_key, &response)?;
        response
    };
    record.last_ms = ctx.now;
    record.retain_ms = retain_ms;
    ctx.store(key, &record)?;
    Ok(response)
}

/// The housekeeping of session `key` fell due: drops the session and its
/// outcomes if it has been idle for its retention, or looks again when it
/// will have been.
pub(super) fn collect(ctx: &mut Ctx<'_, '_>, key: Vec<u8>) -> Result<(), StoreError> {
    let Some(record) = ctx.load::<SessionRecord>(&key)? else {
        return Ok(());
    };
    if record.expires_ms() > ctx.now {
        ctx.view
            .put(keys::gc(record.expires_ms(), &key), Vec::new());
        return Ok(());
    }
    let Some(id) = keys::parse_session(&key) else {
        return Ok(());
    };
    let start = keys::session_outcome(id, record.dropped_below);
    let end = keys::prefix_end(&keys::session_outcome_prefix(id)).unwrap_or_default();
    for (outcome, _) in ctx.view.range(&start, &end)? {
        ctx.view.delete(outcome);
    }
    ctx.view.delete(key);
    Ok(())
}
