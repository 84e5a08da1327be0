//! The server side of the peer protocol.

use std::time::Duration;

use cairn_storage::codec::{decode, encode};
use cairn_storage::types::SnapshotMeta;
use cairn_storage::{NodeId, Request, TypeConfig};
use futures::future::join_all;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{Snapshot, Vote};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Response, Status, Streaming};

use crate::leader;
use crate::pb::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::pb::{Empty, NodeInfo, Payload, ReadIndexRequest, SnapshotChunk};
use crate::propose::Proposer;
use crate::read_batch::ReadBatcher;
use crate::{Raft, MAX_MESSAGE_BYTES};

/// Serves Raft RPCs and leader-side client operations to peers.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
    info: NodeInfo,
    lease: Duration,
    reads: ReadBatcher,
    writes: Proposer,
}

impl PeerService {
    /// A service for `raft`, introducing itself as `info`, granting lease
    /// reads within `lease` of the last quorum acknowledgement, batching
    /// linearizable read-index rounds through `reads` and admitting
    /// forwarded writes through `writes`.
    pub fn new(
        raft: Raft,
        info: NodeInfo,
        lease: Duration,
        reads: ReadBatcher,
        writes: Proposer,
    ) -> Self {
        Self {
            raft,
            info,
            lease,
            reads,
            writes,
        }
    }

    /// The tonic service with Cairn's message size limits.
    pub fn into_server(self) -> RaftPeerServer<Self> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Payload { data }))
}

fn decode_arg<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: tonic::Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_arg(&req.into_inner().data)?;
        // openraft gives each AppendEntries one heartbeat interval, even for
        // a batch holding a 16 MiB artifact. Run the append in its own task
        // so that a caller who gave up does not cancel it: the append (and
        // its fsync) completes, and the leader's identical retry then finds
        // the entries in place and is answered at once. Appending entries
        // that are already present is a no-op in Raft.
        let raft = self.raft.clone();
        let appended = tokio::spawn(async move { raft.append_entries(rpc).await })
            .await
            .map_err(|e| Status::internal(format!("append task failed: {e}")))?;
        reply(&appended)
    }

    async fn vote(&self, req: tonic::Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<NodeId> = decode_arg(&req.into_inner().data)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Payload>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let (vote, meta): (Vote<NodeId>, SnapshotMeta) = decode_arg(&first.header)?;
        let target = self
            .raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let std_file = target
            .file
            .try_clone()
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut out = tokio::fs::File::from_std(std_file);
        let io = |e: std::io::Error| Status::internal(format!("writing snapshot: {e}"));
        out.write_all(&first.data).await.map_err(io)?;
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.data).await.map_err(io)?;
        }
        // Written through, not synced: the state machine syncs the file
        // when it installs it (and verifies its checksum first).
        out.flush().await.map_err(io)?;
        drop(out);
        let snapshot = Snapshot {
            meta,
            snapshot: target,
        };
        reply(&self.raft.install_full_snapshot(vote, snapshot).await)
    }

    async fn forward(&self, req: tonic::Request<Payload>) -> Result<Response<Payload>, Status> {
        let requests: Vec<Request> = decode_arg(&req.into_inner().data)?;
        // All of them queue at once, so the proposer puts them in one entry.
        let outcomes = join_all(requests.into_iter().map(|r| self.writes.write(r))).await;
        reply(&outcomes)
    }

    async fn read_index(
        &self,
        req: tonic::Request<ReadIndexRequest>,
    ) -> Result<Response<Payload>, Status> {
        let result = if req.into_inner().lease {
            leader::read_index(&self.raft, Some(self.lease)).await
        } else {
            self.reads.read_index().await
        };
        reply(&result)
    }

    async fn hello(&self, _req: tonic::Request<Empty>) -> Result<Response<NodeInfo>, Status> {
        let mut info = self.info.clone();
        info.initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(info))
    }

    async fn elect(&self, _req: tonic::Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::info!("asked to campaign for leadership");
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Empty {}))
    }
}
