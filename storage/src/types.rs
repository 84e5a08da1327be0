//! The openraft type configuration shared by the whole workspace.
//!
//! It lives here, not in `cairn-raft`, because this crate implements
//! openraft's storage traits for these concrete types; `cairn-raft`
//! re-exports it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Request, Response};
use crate::snapshot::SnapshotFile;

/// A node's id, unique within a cluster.
pub type NodeId = u64;

/// How to reach a member: its client-facing HTTP API and its gRPC peer port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// `host:port` of the HTTP API.
    pub api_addr: String,
    /// `host:port` of the gRPC peer service.
    pub raft_addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api={} raft={}", self.api_addr, self.raft_addr)
    }
}

openraft::declare_raft_types!(
    /// Cairn's Raft types: commands in, responses out, file-backed snapshots.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of Cairn.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of Cairn.
pub type LogId = openraft::LogId<NodeId>;
/// Errors openraft's storage traits return.
pub type StorageError = openraft::StorageError<NodeId>;
/// The membership as stored with the state.
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
/// Metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
