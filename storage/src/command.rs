//! The replicated command model: what a client asks the cluster to do
//! ([`Request`]), and what the state machine answers ([`Response`]).
//!
//! A request is built and validated at the edge (the HTTP API), stamped with
//! the leader's clock, replicated, and applied on every replica by
//! [`crate::apply`]. Everything here is plain data.

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactMeta, StoredContent};
use crate::records::{InstanceRecord, LockRecord};

/// One client command as it travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Milliseconds since the Unix epoch on the leader's clock when the
    /// command was proposed. Apply takes the max with the last applied time,
    /// so the replicated clock never runs backwards.
    pub now_ms: u64,
    /// Makes a retried write return the first outcome instead of applying
    /// twice. Clients may choose the key; otherwise the edge assigns one so
    /// that its own retries across leader changes are safe.
    pub idempotency: Option<Idempotency>,
    /// `X-Cairn-Fence`: apply only if this lock is held with this token.
    pub fence: Option<Fence>,
    /// What to do.
    pub command: Command,
}

impl Request {
    /// A request stamped with `now_ms` and no idempotency key.
    pub fn new(now_ms: u64, command: Command) -> Self {
        Self {
            now_ms,
            idempotency: None,
            fence: None,
            command,
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} @{}", self.command.name(), self.now_ms)
    }
}

/// A fencing condition: the named lock must be held with exactly `token`
/// when the write is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The lock's name.
    pub lock: String,
    /// The token the writer holds.
    pub token: u64,
}

/// An idempotency key and how long the store remembers its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// How long (replicated ms) the first outcome is remembered.
    pub retain_ms: u64,
}

/// A condition on an object's current version, checked at apply time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Precondition {
    /// Apply unconditionally.
    #[default]
    None,
    /// Apply only if the object exists with exactly this version (`If-Match`).
    IfVersion(u64),
    /// Apply only if the object does not exist (`If-None-Match: *`).
    IfAbsent,
    /// Apply only if the object exists (`If-Match: *`).
    IfExists,
}

/// Descriptive fields of an artifact. `None` means "keep the current value"
/// when [`Command::PutArtifact::merge`] is set, and "empty" otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFields {
    /// The conversation the artifact belongs to.
    pub conversation_id: Option<String>,
    /// A free-form kind (`document`, `image`, `llm_output`, ...).
    pub kind: Option<String>,
    /// A human title.
    pub title: Option<String>,
    /// The MIME type of the content.
    pub content_type: Option<String>,
    /// The user metadata as a JSON object, serialized.
    pub metadata_json: Option<String>,
}

/// What the store can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace an artifact.
    PutArtifact {
        /// The artifact id.
        id: String,
        /// Descriptive fields.
        fields: ArtifactFields,
        /// The content, already checksummed and (maybe) compressed at the edge.
        content: StoredContent,
        /// Keep current descriptive fields where `fields` has `None`.
        merge: bool,
        /// Version condition.
        precondition: Precondition,
    },
    /// Delete an artifact.
    DeleteArtifact {
        /// The artifact id.
        id: String,
        /// Version condition.
        precondition: Precondition,
    },
    /// Create or replace a key/value entry.
    KvPut {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Time to live from apply time; `None` keeps it forever.
        ttl_ms: Option<u64>,
        /// Version condition.
        precondition: Precondition,
    },
    /// Delete a key/value entry.
    KvDelete {
        /// The key.
        key: String,
        /// Version condition.
        precondition: Precondition,
    },
    /// Take a lock, or (with `wait_ms`) queue for it.
    LockAcquire {
        /// The lock.
        name: String,
        /// Who asks.
        owner: String,
        /// Lease length.
        ttl_ms: u64,
        /// How long to wait in the queue if it is held (0: do not queue).
        wait_ms: u64,
    },
    /// Leave a lock's queue (the waiter gave up); if the lock was granted to
    /// it meanwhile, the grant is returned instead.
    LockCancelWait {
        /// The lock.
        name: String,
        /// The waiter's id (its acquire request's lock id).
        request: u64,
    },
    /// Extend a held lock's lease.
    LockRenew {
        /// The lock.
        name: String,
        /// The holder's token.
        token: u64,
        /// New lease length from apply time.
        ttl_ms: u64,
    },
    /// Release a held lock.
    LockRelease {
        /// The lock.
        name: String,
        /// The holder's token.
        token: u64,
    },
    /// Register or refresh an application instance.
    InstanceHeartbeat {
        /// The instance id.
        id: String,
        /// Time to live from apply time.
        ttl_ms: u64,
        /// Its metadata (serialized JSON object); `None` keeps the current.
        meta_json: Option<String>,
    },
    /// Deregister an instance.
    InstanceLeave {
        /// The instance id.
        id: String,
    },
    /// Trim the event history to at most `keep_count` events and none older
    /// than `keep_ms` on the replicated clock.
    TrimEvents {
        /// Events to keep at most.
        keep_count: u64,
        /// Age limit of kept events.
        keep_ms: u64,
    },
    /// Records the cluster's id; only the first one ever applied counts.
    InitCluster {
        /// The id chosen by the bootstrapping node.
        cluster_id: String,
    },
    /// Advances the replicated clock; expires what is due.
    Tick,
    /// Changes nothing; every replica records a digest of its state right
    /// after applying it, so replicas can be compared at one log position.
    DigestMarker,
    /// Several client requests proposed together as one log entry, applied
    /// in order; the answer is a [`Response::Batch`] in the same order.
    ///
    /// The leader groups writes that arrive while earlier ones are being
    /// appended, so one log append and one flush serve many clients. Every
    /// change in the batch carries the entry's index as its revision; lock
    /// grants still get distinct, increasing tokens.
    Batch(Vec<Request>),
    /// A write sent by a node on behalf of its clients, numbered in that
    /// node's session so that its retries apply once (see [`SessionWrite`]).
    InSession(Box<SessionWrite>),
}

/// A write numbered in its sending node's session. The first apply of a
/// `(session, seq)` remembers its outcome, a retry gets that outcome back,
/// and a copy below `acked_below` (its sender stopped waiting) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionWrite {
    /// The sender's session: a fresh id each time a node starts.
    pub session: u128,
    /// The write's number in the session; retries repeat it.
    pub seq: u64,
    /// Every write of the session below this has been answered or given up.
    pub acked_below: u64,
    /// How long (replicated ms) the session outlives its last write.
    pub retain_ms: u64,
    /// The write itself.
    pub command: Command,
}

impl Command {
    /// Whether applying the command twice has the effect of applying it
    /// once, so that retries need no idempotency key.
    pub fn is_naturally_idempotent(&self) -> bool {
        matches!(
            self,
            Command::Tick
                | Command::TrimEvents { .. }
                | Command::InitCluster { .. }
                | Command::DigestMarker
        )
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::PutArtifact { .. } => "put_artifact",
            Command::DeleteArtifact { .. } => "delete_artifact",
            Command::KvPut { .. } => "kv_put",
            Command::KvDelete { .. } => "kv_delete",
            Command::LockAcquire { .. } => "lock_acquire",
            Command::LockCancelWait { .. } => "lock_cancel_wait",
            Command::LockRenew { .. } => "lock_renew",
            Command::LockRelease { .. } => "lock_release",
            Command::InstanceHeartbeat { .. } => "instance_heartbeat",
            Command::InstanceLeave { .. } => "instance_leave",
            Command::TrimEvents { .. } => "trim_events",
            Command::InitCluster { .. } => "init_cluster",
            Command::Tick => "tick",
            Command::DigestMarker => "digest_marker",
            Command::Batch(_) => "batch",
            Command::InSession(w) => w.command.name(),
        }
    }

    /// Whether the leader may group this command with others in one log
    /// entry. A digest marker must be an entry of its own (replicas digest
    /// their state right after it), and a batch is not nested.
    pub fn is_batchable(&self) -> bool {
        match self {
            Command::DigestMarker | Command::Batch(_) => false,
            Command::InSession(w) => w.command.is_batchable(),
            _ => true,
        }
    }

    /// Whether applying the command reads or writes artifact content files
    /// (a put writes one and syncs it; a digest marker reads them all).
    pub fn touches_content_files(&self) -> bool {
        match self {
            Command::PutArtifact { .. } | Command::DigestMarker => true,
            Command::Batch(requests) => requests.iter().any(|r| r.command.touches_content_files()),
            Command::InSession(w) => w.command.touches_content_files(),
            _ => false,
        }
    }

    /// Roughly how many bytes the command adds to a log entry: the payload
    /// it carries, which is what bounds a batch's size.
    pub fn payload_len(&self) -> usize {
        match self {
            Command::PutArtifact { content, .. } => content.bytes.len(),
            Command::KvPut { value, .. } => value.len(),
            Command::InstanceHeartbeat { meta_json, .. } => {
                meta_json.as_ref().map_or(0, String::len)
            }
            Command::Batch(requests) => requests.iter().map(|r| r.command.payload_len()).sum(),
            Command::InSession(w) => w.command.payload_len(),
            _ => 0,
        }
    }
}

/// Why a command was not applied. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// A version precondition failed; carries the current version (`None` if absent).
    Conflict {
        /// The object's version at apply time.
        current_version: Option<u64>,
    },
    /// The object does not exist.
    NotFound,
    /// The lock is held by someone else.
    Locked {
        /// Its holder.
        holder: String,
        /// When the holder's lease runs out.
        expires_ms: u64,
    },
    /// The token given no longer holds the lock (released, expired or superseded).
    TokenStale {
        /// The lock.
        lock: String,
        /// The token given.
        token: u64,
    },
    /// The write's `X-Cairn-Fence` did not hold at apply time.
    Fenced {
        /// The lock.
        lock: String,
        /// The token given.
        token: u64,
        /// The token holding the lock now, if any.
        current: Option<u64>,
    },
    /// A copy of a session write that arrived after its sender had stopped
    /// waiting for it (see [`SessionWrite::acked_below`]).
    Abandoned {
        /// The write's number in its session.
        seq: u64,
    },
}

/// The state machine's answer to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Entries with no client answer (blank, membership, tick).
    Noop,
    /// The artifact as stored by this entry.
    Artifact(Box<ArtifactMeta>),
    /// The object was deleted at this revision.
    Deleted {
        /// The revision of the delete.
        revision: u64,
    },
    /// The key/value entry as stored by this entry.
    Kv(KvMeta),
    /// A lock granted (or renewed).
    Lock(LockRecord),
    /// The lock was held; the request waits in the queue under this id.
    LockQueued {
        /// The waiter's id: a lock id, ordered like the queue.
        request: u64,
    },
    /// A lock released.
    Released,
    /// The instance as stored by this entry.
    Instance(InstanceRecord),
    /// The command was refused and changed nothing.
    Rejected(Rejection),
    /// The answers to a [`Command::Batch`], one per request, in order.
    Batch(Vec<Response>),
}

/// A key/value entry's metadata, as a write returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvMeta {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: u64,
    /// Log index of the change.
    pub revision: u64,
    /// When it expires, if it has a TTL.
    pub expires_ms: Option<u64>,
}
