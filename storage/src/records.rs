//! The stored records of the coordination primitives.

use serde::{Deserialize, Serialize};

/// A key/value entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRecord {
    /// The key.
    pub key: String,
    /// The value bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// 1 on create, +1 on every update.
    pub version: u64,
    /// Log index of the last change.
    pub revision: u64,
    /// Replicated time of creation.
    pub created_ms: u64,
    /// Replicated time of the last change.
    pub updated_ms: u64,
    /// When it expires on the replicated clock, if it has a TTL.
    pub expires_ms: Option<u64>,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The lock's name.
    pub name: String,
    /// Who holds it.
    pub owner: String,
    /// The fencing token: the log index of the entry that granted the lock
    /// (or just above the last token when one entry granted several).
    pub token: u64,
    /// When the lease runs out on the replicated clock.
    pub expires_ms: u64,
    /// Replicated time of the grant.
    pub acquired_ms: u64,
    /// Lock id of the acquire request this grant answers (equal to `token`
    /// unless the requester waited in the queue).
    pub request: u64,
}

/// A client waiting for a held lock, first come first served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockWaiter {
    /// Lock id of its acquire request (its place in the queue).
    pub request: u64,
    /// Who wants the lock.
    pub owner: String,
    /// Lease length once granted.
    pub ttl_ms: u64,
    /// When it stops waiting, on the replicated clock.
    pub deadline_ms: u64,
}

/// A registered application instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its id.
    pub id: String,
    /// Its metadata, a serialized JSON object.
    pub meta_json: String,
    /// +1 whenever its metadata changes.
    pub version: u64,
    /// Replicated time of registration.
    pub registered_ms: u64,
    /// Replicated time of its last heartbeat.
    pub last_seen_ms: u64,
    /// When it is dropped unless it heartbeats again.
    pub expires_ms: u64,
}
