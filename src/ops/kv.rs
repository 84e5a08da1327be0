//! Key/value entries with TTL (sessions, caches, flags).

use cairn_storage::{Command, KvMeta, KvRecord, Page, Precondition, Response};

use super::{accepted, barrier, unexpected, validate, Error, Revisioned};
use crate::forward::{Consistency, WriteOptions};
use crate::node::NodeCore;

/// Longest TTL accepted (30 days).
pub const MAX_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Sets `key` to `value`, with an optional TTL and version condition.
pub async fn put(
    core: &NodeCore,
    key: &str,
    value: Vec<u8>,
    ttl_ms: Option<u64>,
    precondition: Precondition,
    opts: WriteOptions,
) -> Result<KvMeta, Error> {
    validate::key(key)?;
    if let Some(ttl) = ttl_ms {
        validate::duration("ttl_ms", ttl, MAX_TTL_MS)?;
    }
    let max = core.config.max_value_bytes;
    if value.len() > max {
        return Err(Error::TooLarge(format!(
            "value is {} bytes; the limit is {max}",
            value.len()
        )));
    }
    let command = Command::KvPut {
        key: key.to_string(),
        value,
        ttl_ms,
        precondition,
    };
    match accepted(core.write(command, opts).await?)? {
        (Response::Kv(meta), _) => Ok(meta),
        (other, _) => Err(unexpected(other)),
    }
}

/// Reads `key`.
pub async fn get(
    core: &NodeCore,
    key: &str,
    consistency: Consistency,
) -> Result<Revisioned<Option<KvRecord>>, Error> {
    validate::key(key)?;
    let revision = barrier(core, consistency).await?;
    Ok(Revisioned {
        value: core.state.kv(key)?,
        revision,
    })
}

/// Deletes `key`; returns the revision of the delete.
pub async fn delete(
    core: &NodeCore,
    key: &str,
    precondition: Precondition,
    opts: WriteOptions,
) -> Result<u64, Error> {
    validate::key(key)?;
    let command = Command::KvDelete {
        key: key.to_string(),
        precondition,
    };
    match accepted(core.write(command, opts).await?)? {
        (Response::Deleted { revision }, _) => Ok(revision),
        (other, _) => Err(unexpected(other)),
    }
}

/// Lists entries by key.
pub async fn list(
    core: &NodeCore,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
    consistency: Consistency,
) -> Result<Revisioned<Page<KvRecord>>, Error> {
    validate::len("prefix", prefix, validate::MAX_ID_BYTES)?;
    let revision = barrier(core, consistency).await?;
    Ok(Revisioned {
        value: core.state.list_kv(prefix, cursor, limit)?,
        revision,
    })
}
