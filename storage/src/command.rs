//! The replicated command model: what a client asks the cluster to do
//! ([`Request`]), and what the state machine answers ([`Response`]).
//!
//! A request is built and validated at the edge (the HTTP API), stamped with
//! the leader's clock, replicated, and applied on every replica by
//! [`crate::apply`]. Everything here is plain data.

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactMeta, StoredContent};

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
    /// What to do.
    pub command: Command,
}

impl Request {
    /// A request stamped with `now_ms` and no idempotency key.
    pub fn new(now_ms: u64, command: Command) -> Self {
        Self {
            now_ms,
            idempotency: None,
            command,
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} @{}", self.command.name(), self.now_ms)
    }
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
}

impl Command {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::PutArtifact { .. } => "put_artifact",
            Command::DeleteArtifact { .. } => "delete_artifact",
            Command::InitCluster { .. } => "init_cluster",
            Command::Tick => "tick",
            Command::DigestMarker => "digest_marker",
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
    /// The command was refused and changed nothing.
    Rejected(Rejection),
}
