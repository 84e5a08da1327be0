//! Change events: what the watch stream carries. Events are written into the
//! replicated state next to the change that caused them, so the history is
//! identical on every replica and survives snapshots and failover.

use serde::{Deserialize, Serialize};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted by a client.
    Delete,
    /// Removed because its TTL or lease ran out on the replicated clock.
    Expire,
}

/// One change, as stored and as streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Log index of the entry that made the change.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// The namespaced key: `artifacts/<id>`, `kv/<key>`, `locks/<name>`, `instances/<id>`.
    pub key: String,
    /// The object's version after a put, or the last version before a delete
    /// or expiry (for locks: the fencing token).
    pub version: u64,
    /// Replicated time of the change.
    pub at_ms: u64,
}

/// Bookkeeping of the stored history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStats {
    /// Events currently stored.
    pub count: u64,
    /// Highest revision whose events were trimmed (0: none). A watch from a
    /// revision at or below it cannot be served.
    pub floor: u64,
}
