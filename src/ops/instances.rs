//! Instances: heartbeats of the application nodes that use the store.

use cairn_storage::{Command, InstanceRecord, Response};

use super::{accepted, barrier, unexpected, validate, Error, Revisioned};
use crate::forward::{Consistency, WriteOptions};
use crate::node::NodeCore;

/// Longest instance TTL accepted (1 day).
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Registers or refreshes instance `id`; `meta` replaces its metadata when given.
pub async fn heartbeat(
    core: &NodeCore,
    id: &str,
    ttl_ms: u64,
    meta: Option<&serde_json::Value>,
) -> Result<InstanceRecord, Error> {
    validate::id("instance id", id)?;
    validate::duration("ttl_ms", ttl_ms, MAX_TTL_MS)?;
    let meta_json = match meta {
        Some(m) => Some(validate::json_object(
            "meta",
            m,
            core.config.max_metadata_bytes,
        )?),
        None => None,
    };
    let command = Command::InstanceHeartbeat {
        id: id.to_string(),
        ttl_ms,
        meta_json,
    };
    match accepted(core.write(command, WriteOptions::default()).await?)? {
        (Response::Instance(record), _) => Ok(record),
        (other, _) => Err(unexpected(other)),
    }
}

/// Every live instance.
pub async fn list(
    core: &NodeCore,
    consistency: Consistency,
) -> Result<Revisioned<Vec<InstanceRecord>>, Error> {
    let revision = barrier(core, consistency).await?;
    Ok(Revisioned {
        value: core.state.instances()?,
        revision,
    })
}

/// Deregisters instance `id`.
pub async fn leave(core: &NodeCore, id: &str) -> Result<u64, Error> {
    validate::id("instance id", id)?;
    let command = Command::InstanceLeave { id: id.to_string() };
    match accepted(core.write(command, WriteOptions::default()).await?)? {
        (Response::Deleted { revision }, _) => Ok(revision),
        (other, _) => Err(unexpected(other)),
    }
}
