//! The client side of the peer protocol: openraft's network factory plus the
//! calls Cairn itself makes to peers (forward a write, ask for a read index,
//! hello). Channels are created once per address and reused; every call has
//! a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_storage::codec::{decode, encode, CodecError};
use cairn_storage::{NodeId, PeerNode, Request, TypeConfig};
use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use tonic::transport::{Channel, Endpoint};

use crate::config::DEFAULT_HEARTBEAT_MS;
use crate::leader::{LeaderError, WriteOutcome};
use crate::pb::raft_peer_client::RaftPeerClient;
use crate::pb::{Empty, NodeInfo, Payload, ReadIndexRequest, SnapshotChunk};
use crate::MAX_MESSAGE_BYTES;

/// Bytes of snapshot file per stream message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Streams `file` as messages of up to [`SNAPSHOT_CHUNK_BYTES`] each, made
/// by `wrap`. The file is read off the async threads and the bounded
/// channel holds at most a few chunks, so a large snapshot never sits in
/// memory (nor in one gRPC message). Reading stops early when the receiver
/// is dropped; the handle reports a read error.
pub fn read_chunks<T: Send + 'static>(
    mut file: std::fs::File,
    mut wrap: impl FnMut(Vec<u8>) -> T + Send + 'static,
) -> (
    tokio_stream::wrappers::ReceiverStream<T>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<T>(4);
    let reader = tokio::task::spawn_blocking(move || loop {
        let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let n = file.read(&mut data)?;
        if n == 0 {
            return Ok(());
        }
        data.truncate(n);
        if tx.blocking_send(wrap(data)).is_err() {
            return Ok(());
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), reader)
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerCallError {
    /// The peer answered, but as a non-leader or without quorum.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The call did not complete (unreachable, deadline, refused).
    #[error("transport: {0}")]
    Transport(#[from] tonic::Status),
    /// The peer's answer did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Connections to peers, shared by Raft replication and request forwarding.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    retry_every: Duration,
}

impl Default for PeerNetwork {
    /// Retries unreachable peers every default heartbeat interval.
    fn default() -> Self {
        Self::new(Duration::from_millis(DEFAULT_HEARTBEAT_MS))
    }
}

impl PeerNetwork {
    /// Connections whose replication calls an unreachable peer again every
    /// `retry_every`; give it the heartbeat interval.
    ///
    /// openraft 0.9 pauses replication to a peer that was unreachable until
    /// a call succeeds, and by default for 500 ms at a time, also after each
    /// call that times out. A restarted follower whose first calls time
    /// out (it is still opening its store) then hears nothing for longer
    /// than its election timeout, campaigns, and its higher term deposes a
    /// healthy leader. Retrying as often as a heartbeat keeps a returning
    /// peer in touch like any follower; a call to a peer that is down costs
    /// one refused connection, or one connect timeout on a real network.
    pub fn new(retry_every: Duration) -> Self {
        Self {
            channels: Arc::default(),
            retry_every,
        }
    }

    /// A client for the peer at `addr` (`host:port`), reusing its channel.
    pub fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, tonic::Status> {
        Ok(RaftPeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// The (reused) channel to the peer at `addr`, for other services on
    /// the peer port.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| {
                        tonic::Status::invalid_argument(format!("peer address {addr}: {e}"))
                    })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5));
                let c = endpoint.connect_lazy();
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(channel)
    }

    /// Sends client writes to the leader at `addr` in one call; the
    /// outcomes come back in the order of `requests`. Writes are forwarded
    /// through [`crate::forward_batch::ForwardBatcher`], which fills the calls.
    pub async fn forward(
        &self,
        addr: &str,
        requests: &[Request],
        timeout: Duration,
    ) -> Result<Vec<Result<WriteOutcome, LeaderError>>, PeerCallError> {
        let payload = Payload {
            data: encode(requests)?,
        };
        let reply = self
            .client(addr)?
            .forward(with_timeout(payload, timeout))
            .await?;
        Ok(decode(&reply.into_inner().data)?)
    }

    /// Asks the leader at `addr` for a read index (from its lease if `lease`).
    pub async fn read_index(
        &self,
        addr: &str,
        lease: bool,
        timeout: Duration,
    ) -> Result<u64, PeerCallError> {
        let msg = ReadIndexRequest { lease };
        let reply = self
            .client(addr)?
            .read_index(with_timeout(msg, timeout))
            .await?;
        Ok(decode::<Result<u64, LeaderError>>(
            &reply.into_inner().data,
        )??)
    }

    /// Asks the node at `addr` who it is.
    pub async fn hello(&self, addr: &str, timeout: Duration) -> Result<NodeInfo, PeerCallError> {
        let reply = self
            .client(addr)?
            .hello(with_timeout(Empty {}, timeout))
            .await?;
        Ok(reply.into_inner())
    }

    /// Asks the node at `addr` to campaign for leadership now.
    pub async fn elect(&self, addr: &str, timeout: Duration) -> Result<(), PeerCallError> {
        self.client(addr)?
            .elect(with_timeout(Empty {}, timeout))
            .await?;
        Ok(())
    }
}

fn with_timeout<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    req
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        PeerConnection {
            target,
            addr: node.raft_addr.clone(),
            network: self.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    network: PeerNetwork,
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, PeerNode, E>>;

/// Maps a failed gRPC call: an unreachable peer makes openraft back off.
fn rpc_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, PeerNode, E> {
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerConnection {
    fn client(&self) -> Result<RaftPeerClient<Channel>, tonic::Status> {
        self.network.client(&self.addr)
    }

    fn decode_reply<T, E>(&self, bytes: &[u8]) -> RpcResult<T, E>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let reply: Result<T, E> =
            decode(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Bytes of entries one AppendEntries call carries at most (a single larger
/// entry still goes alone). openraft 0.9 gives each call one heartbeat
/// interval to be answered, and the follower must write and sync it within
/// that: with 1 MiB artifacts, calls of up to 32 entries timed out, were
/// sent again and again, and let followers' election timers run out.
pub const APPEND_BYTES_PER_CALL: usize = 4 * 1024 * 1024;

/// When `n` entries encode to `bytes`, over [`APPEND_BYTES_PER_CALL`], how
/// many openraft should send per call instead (`None`: send them all).
fn entries_that_fit(n: u64, bytes: usize) -> Option<u64> {
    if n <= 1 || bytes <= APPEND_BYTES_PER_CALL {
        return None;
    }
    let per_entry = (bytes as u64).div_ceil(n);
    Some((APPEND_BYTES_PER_CALL as u64 / per_entry).clamp(1, n - 1))
}

/// The entry-less AppendEntries that asks whether a follower already holds
/// every entry of `rpc`, or `None` when `rpc` carries new entries.
///
/// A new leader in openraft 0.9 does not know how far each follower's log
/// matches its own, and finds out by bisecting its whole unpurged log,
/// sending the up to 256 entries after each midpoint: megabytes of old
/// entries (artifacts among them) that an in-sync follower already holds,
/// which delayed the new leader's first commit by about half a second.
/// Entries up to the leader's commit index are on a majority and most
/// likely on this follower too, so for those it first checks, in one small
/// call, whether the follower holds the last one. By Raft's log matching
/// property that answers for all of them. New entries (past the commit
/// index, the steady state) go at once, without the extra call.
fn holds_already_probe(
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Option<AppendEntriesRequest<TypeConfig>> {
    let last = rpc.entries.last()?.log_id;
    if rpc
        .leader_commit
        .is_none_or(|commit| last.index > commit.index)
    {
        return None;
    }
    Some(AppendEntriesRequest {
        vote: rpc.vote,
        prev_log_id: Some(last),
        entries: Vec::new(),
        leader_commit: rpc.leader_commit,
    })
}

impl PeerConnection {
    async fn send_append(
        &self,
        rpc: &AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let n = rpc.entries.len() as u64;
        let data = encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if let Some(fewer) = entries_that_fit(n, data.len()) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fewer),
            ));
        }
        let client = self.client().map_err(rpc_error)?;
        let reply = client
            .clone()
            .append_entries(with_timeout(Payload { data }, timeout))
            .await
            .map_err(rpc_error)?;
        self.decode_reply(&reply.into_inner().data)
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.network.retry_every))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        if let Some(probe) = holds_already_probe(&rpc) {
            match self.send_append(&probe, option.hard_ttl()).await? {
                // Success: the follower holds the last entry, hence all of
                // them. A higher vote ends this leader's replication anyway.
                answer
                @ (AppendEntriesResponse::Success | AppendEntriesResponse::HigherVote(_)) => {
                    return Ok(answer)
                }
                // It lacks some: send them.
                AppendEntriesResponse::Conflict | AppendEntriesResponse::PartialSuccess(_) => {}
            }
        }
        self.send_append(&rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let client = self.client().map_err(rpc_error)?;
        let reply = client
            .clone()
            .vote(with_timeout(Payload { data }, option.hard_ttl()))
            .await
            .map_err(rpc_error)?;
        self.decode_reply(&reply.into_inner().data)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let header = encode(&(vote, snapshot.meta.clone())).map_err(|e| NetworkError::new(&e))?;
        let mut header = Some(header);
        let (rx, reader) = read_chunks(snapshot.snapshot.file, move |data| SnapshotChunk {
            header: header.take().unwrap_or_default(),
            data,
        });
        let mut client = self.client().map_err(|e| Unreachable::new(&e))?;
        let mut request = tonic::Request::new(rx);
        request.set_timeout(option.hard_ttl().max(Duration::from_secs(60)));
        let call = client.install_snapshot(request);
        let reply = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NetworkError::new(&e).into()),
            Err(e) => return Err(NetworkError::new(&e).into()),
        }
        let reply = reply.map_err(|s| -> StreamingError<TypeConfig, Fatal<NodeId>> {
            match s.code() {
                tonic::Code::Unavailable => Unreachable::new(&s).into(),
                _ => NetworkError::new(&s).into(),
            }
        })?;
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            decode(&reply.into_inner().data).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RemoteError::new(self.target, e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn small_calls_and_single_entries_go_as_they_are() {
        assert_eq!(entries_that_fit(256, 2 * MIB), None);
        assert_eq!(entries_that_fit(1, 16 * MIB), None);
        assert_eq!(entries_that_fit(4, APPEND_BYTES_PER_CALL), None);
    }

    #[test]
    fn large_calls_are_cut_to_what_fits_the_byte_budget() {
        // 32 entries of 1 MiB: four per call.
        assert_eq!(entries_that_fit(32, 32 * MIB + 100), Some(3));
        assert_eq!(entries_that_fit(32, 32 * MIB), Some(4));
        // Entries larger than the budget go one at a time.
        assert_eq!(entries_that_fit(3, 3 * 16 * MIB), Some(1));
        // Never the same count again, so openraft always makes progress.
        assert_eq!(entries_that_fit(2, APPEND_BYTES_PER_CALL + 1), Some(1));
    }

    fn append(
        entries: std::ops::RangeInclusive<u64>,
        commit: Option<u64>,
    ) -> AppendEntriesRequest<TypeConfig> {
        let log_id = |index| openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), index);
        AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(entries.start() - 1)),
            entries: entries
                .map(|i| openraft::Entry {
                    log_id: log_id(i),
                    payload: openraft::EntryPayload::Blank,
                })
                .collect(),
            leader_commit: commit.map(log_id),
        }
    }

    #[test]
    fn committed_entries_are_first_checked_by_their_last_log_id() {
        let rpc = append(10..=20, Some(25));
        let probe = holds_already_probe(&rpc).expect("entries up to the commit index are probed");
        assert!(probe.entries.is_empty());
        assert_eq!(probe.prev_log_id, rpc.entries.last().map(|e| e.log_id));
        assert_eq!(probe.vote, rpc.vote);
        assert_eq!(probe.leader_commit, rpc.leader_commit);
        // The last entry at the commit index itself is still committed.
        assert!(holds_already_probe(&append(10..=25, Some(25))).is_some());
    }

    #[test]
    fn new_entries_and_heartbeats_go_without_a_probe() {
        // Steady state: the entries reach past the commit index.
        assert!(holds_already_probe(&append(20..=26, Some(25))).is_none());
        // Nothing committed yet.
        assert!(holds_already_probe(&append(1..=3, None)).is_none());
        // A heartbeat has nothing to check.
        let mut heartbeat = append(1..=1, Some(5));
        heartbeat.entries.clear();
        assert!(holds_already_probe(&heartbeat).is_none());
    }
}
