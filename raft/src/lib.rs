//! cairn-raft: how Cairn nodes talk Raft to each other.
//!
//! This crate runs openraft over a tonic gRPC transport: the client side
//! ([`network::PeerNetwork`], one reused channel per peer, a deadline on every
//! call, snapshots streamed from their file in chunks), the server side
//! ([`server::PeerService`]: AppendEntries, Vote, InstallSnapshot, Forward,
//! ReadIndex, Hello, Elect), membership changes ([`membership`]), and the leader-side primitives that both the local API
//! and forwarded requests use ([`leader`]). Raft settings are in [`config`].
//!
//! It does not know HTTP or the shape of the API; it moves Raft messages and
//! client commands, and reports who leads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_raft::{config::RaftSettings, network::PeerNetwork, Raft};
//! let store = cairn_storage::Store::open(std::path::Path::new("./data"))?;
//! let network = PeerNetwork::default();
//! let raft = Raft::new(1, RaftSettings::default().to_config()?.into(), network,
//!     store.log, store.state_machine).await?;
//! # Ok(()) }
//! ```

// openraft's error types (RPCError, ConfigError, ...) are large and fixed by
// its traits; boxing them here would only add a conversion at every call.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod forward_batch;
pub mod leader;
pub mod membership;
pub mod network;
pub mod propose;
pub mod read_batch;
pub mod server;

/// Generated gRPC code of the peer protocol.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("cairn.peer.v1");

    /// The maintenance protocol (digests, content copies, scrubs, state
    /// images), served by the node and called through
    /// [`crate::network::PeerNetwork::channel`].
    pub mod maintenance {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("cairn.maintenance.v1");
    }
}

pub use cairn_storage::{NodeId, PeerNode, TypeConfig};

/// The Raft handle of a Cairn node.
pub type Raft = openraft::Raft<TypeConfig>;

/// The largest gRPC message a peer sends or accepts: one maximal artifact
/// (16 MiB of content plus metadata) with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
