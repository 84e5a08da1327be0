//! The maintenance gRPC service on the peer port (digests, verified content
//! copies, scrub runs, state images and re-installs) and the client calls
//! other members make to it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_raft::pb::maintenance::maintenance_client::MaintenanceClient;
use cairn_raft::pb::maintenance::maintenance_server::{Maintenance, MaintenanceServer};
use cairn_raft::pb::maintenance::Blob;
use cairn_raft::MAX_MESSAGE_BYTES;
use cairn_storage::codec::{decode, encode};
use cairn_storage::integrity::DigestRecord;
use cairn_storage::{NodeId, SnapshotFile, StoredContent};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status};

use super::reinstall::Reinstalled;
use super::ScrubOutcome;
use crate::node::NodeCore;

/// The longest a member waits to apply a marker before answering `Digest`.
const DIGEST_WAIT_MAX: Duration = Duration::from_secs(10);
/// The longest a member waits to reach the wanted index before answering
/// `FetchState`.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(10);
/// The deadline of a whole state transfer (a store of many large artifacts
/// streams for a while).
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// The chunks of a state image, as `FetchState` streams them.
type ImageStream = Pin<Box<dyn Stream<Item = Result<Blob, Status>> + Send>>;

/// Serves maintenance requests from other members.
pub struct MaintenanceService {
    core: Arc<NodeCore>,
}

impl MaintenanceService {
    /// The tonic service for `core`, with Cairn's message size limits.
    pub fn server(core: Arc<NodeCore>) -> MaintenanceServer<Self> {
        MaintenanceServer::new(Self { core })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Blob>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Blob { data }))
}

fn arg<T: DeserializeOwned>(req: Request<Blob>) -> Result<T, Status> {
    decode(&req.into_inner().data).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// This node's digest at marker `index`, waiting up to `wait` until it has
/// applied the marker.
pub async fn local_digest(
    core: &NodeCore,
    index: u64,
    wait: Duration,
) -> Result<Option<DigestRecord>, String> {
    if core.state.applied_index() < index {
        core.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "consistency marker")
            .await
            .map_err(|e| format!("not applied up to the marker {index}: {e}"))?;
    }
    core.state.digest_at(index).map_err(|e| e.to_string())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn digest(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let index: u64 = arg(req)?;
        reply(&local_digest(&self.core, index, DIGEST_WAIT_MAX).await)
    }

    async fn fetch_content(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let id: String = arg(req)?;
        let copy = self
            .core
            .state
            .verified_content(&id)
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&copy)
    }

    async fn scrub(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let repair: bool = arg(req)?;
        let outcome: Result<ScrubOutcome, String> = Ok(super::scrub(&self.core, repair).await);
        reply(&outcome)
    }

    type FetchStateStream = ImageStream;

    async fn fetch_state(
        &self,
        req: Request<Blob>,
    ) -> Result<Response<Self::FetchStateStream>, Status> {
        let min_index: u64 = arg(req)?;
        if self.core.state.applied_index() < min_index {
            self.core
                .raft
                .wait(Some(FETCH_WAIT_MAX))
                .applied_index_at_least(Some(min_index), "state image")
                .await
                .map_err(|e| Status::unavailable(format!("not applied up to {min_index}: {e}")))?;
        }
        let image = self
            .core
            .state
            .export_image()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(
            index = image.index,
            "streaming a state image to a member re-installing"
        );
        let (chunks, reader) =
            cairn_raft::network::read_chunks(image.file, |data| Ok(Blob { data }));
        // A read error ends the stream with an error instead of a short
        // image (which the receiver's checksum would refuse anyway).
        let outcome = futures::stream::once(async move {
            match reader.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Err(Status::internal(format!("reading the image: {e}")))),
                Err(e) => Some(Err(Status::internal(format!("reading the image: {e}")))),
            }
        })
        .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(chunks.chain(outcome))))
    }

    async fn reinstall(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let source: NodeId = arg(req)?;
        reply(&super::reinstall::reinstall_from(&self.core, source).await)
    }
}

/// Every member (this node included) and its raft (peer) address.
pub fn all_members(core: &NodeCore) -> Vec<(NodeId, String)> {
    let m = core.raft.metrics().borrow().membership_config.clone();
    m.nodes()
        .map(|(id, n)| (*id, n.raft_addr.clone()))
        .collect()
}

/// The other members and their raft (peer) addresses.
pub fn other_members(core: &NodeCore) -> Vec<(NodeId, String)> {
    let mut members = all_members(core);
    members.retain(|(id, _)| *id != core.config.id);
    members
}

fn client(
    core: &NodeCore,
    addr: &str,
) -> Result<MaintenanceClient<tonic::transport::Channel>, String> {
    let channel = core.peers.channel(addr).map_err(|e| e.to_string())?;
    Ok(MaintenanceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn request<T: Serialize>(value: &T, timeout: Duration) -> Result<Request<Blob>, String> {
    let data = encode(value).map_err(|e| e.to_string())?;
    let mut req = Request::new(Blob { data });
    req.set_timeout(timeout);
    Ok(req)
}

fn status_text(s: Status) -> String {
    format!("{}: {}", s.code(), s.message())
}

fn answer<T: DeserializeOwned>(reply: Result<Response<Blob>, Status>) -> Result<T, String> {
    let reply = reply.map_err(status_text)?;
    decode(&reply.into_inner().data).map_err(|e| e.to_string())
}

/// A verified copy of `id`'s content from the member at `addr`.
pub async fn fetch_content(
    core: &NodeCore,
    addr: &str,
    id: &str,
) -> Result<Option<StoredContent>, String> {
    let req = request(&id.to_string(), Duration::from_secs(30))?;
    answer(client(core, addr)?.fetch_content(req).await)
}

/// The digest of the member at `addr` at marker `index`.
pub async fn remote_digest(
    core: &NodeCore,
    addr: &str,
    index: u64,
) -> Result<Option<DigestRecord>, String> {
    let req = request(&index, DIGEST_WAIT_MAX + Duration::from_secs(2))?;
    answer::<Result<Option<DigestRecord>, String>>(client(core, addr)?.digest(req).await)?
}

/// Asks the member at `addr` to scrub (and repair) its stored content.
pub async fn remote_scrub(
    core: &NodeCore,
    addr: &str,
    repair: bool,
) -> Result<ScrubOutcome, String> {
    let req = request(&repair, Duration::from_secs(300))?;
    answer::<Result<ScrubOutcome, String>>(client(core, addr)?.scrub(req).await)?
}

/// Receives the state image of the member at `addr`, at its applied index
/// of at least `min_index`, into `into`.
pub async fn fetch_state(
    core: &NodeCore,
    addr: &str,
    min_index: u64,
    into: SnapshotFile,
) -> Result<(), String> {
    let req = request(&min_index, FETCH_DEADLINE)?;
    let mut stream = client(core, addr)?
        .fetch_state(req)
        .await
        .map_err(status_text)?
        .into_inner();
    let mut out = tokio::fs::File::from_std(into.file);
    let io = |e: std::io::Error| format!("writing the image: {e}");
    while let Some(chunk) = stream.message().await.map_err(status_text)? {
        out.write_all(&chunk.data).await.map_err(io)?;
    }
    // Written through, not synced: installing the image syncs it.
    out.flush().await.map_err(io)
}

/// Asks the member at `addr` to re-install its state from member `source`.
pub async fn remote_reinstall(
    core: &NodeCore,
    addr: &str,
    source: NodeId,
) -> Result<Reinstalled, String> {
    let req = request(&source, FETCH_DEADLINE + Duration::from_secs(120))?;
    answer::<Result<Reinstalled, String>>(client(core, addr)?.reinstall(req).await)?
}
