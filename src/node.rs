//! The embeddable node: storage, Raft, the peer server and the HTTP API,
//! started together and stopped together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use cairn_raft::forward_batch::ForwardBatcher;
use cairn_raft::network::PeerNetwork;
use cairn_raft::pb::NodeInfo;
use cairn_raft::propose::Proposer;
use cairn_raft::read_batch::ReadBatcher;
use cairn_raft::server::PeerService;
use cairn_raft::Raft;
use cairn_storage::{Command, PeerNode, StateReader, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::NodeConfig;
use crate::forward::WriteOptions;
use crate::probe::Reachability;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Opening the data directory failed.
    #[error("storage: {0}")]
    Storage(#[from] cairn_storage::StoreError),
    /// The Raft configuration is invalid.
    #[error("raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    /// Raft failed fatally.
    #[error("raft: {0}")]
    Raft(#[from] openraft::error::Fatal<cairn_storage::NodeId>),
    /// A listener could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What every part of a running node shares.
pub struct NodeCore {
    /// The node's configuration.
    pub config: NodeConfig,
    /// The Raft handle.
    pub raft: Raft,
    /// Reads of the applied state.
    pub state: StateReader,
    /// Connections to peers.
    pub peers: PeerNetwork,
    /// Which members this node can reach.
    pub reachability: Reachability,
    /// What this node knows of damaged stored content.
    pub integrity: crate::integrity::Integrity,
    /// Shared quorum rounds for linearizable reads when this node leads.
    pub reads: ReadBatcher,
    /// Shared ReadIndex calls to the leader when this node follows.
    pub remote_reads: ReadBatcher,
    /// Shared Forward calls to the leader when this node follows.
    pub forwarder: ForwardBatcher,
    /// The write path while this node leads: admission (a leadership
    /// transfer closes it) and group commit.
    pub writes: Proposer,
    /// Membership changes in progress and the shutdown drain.
    pub ops: crate::admin::Operations,
    /// The numbering of the writes this node sends for its clients.
    pub session: crate::write_session::WriteSession,
}

/// A running Cairn node.
pub struct Node {
    core: Arc<NodeCore>,
    durable: cairn_storage::Durable,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    api_addr: std::net::SocketAddr,
}

async fn bind(addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl Node {
    /// Opens the data directory, starts Raft, the peer server and the HTTP
    /// API, and (on first start) bootstraps or joins the cluster.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        crate::telemetry::install();
        let store = Store::open_with_cache(&config.data_dir, config.cache_mb * 1024 * 1024)?;
        let state = store.state_machine.reader();
        let settings = config.raft_settings();
        let peers = PeerNetwork::new(settings.heartbeat);
        let raft_config = Arc::new(settings.to_config()?);
        let raft = Raft::new(
            config.id,
            raft_config,
            peers.clone(),
            store.log,
            store.state_machine,
        )
        .await?;
        let core = Arc::new(NodeCore {
            reachability: Reachability::default(),
            reads: ReadBatcher::on_leader(raft.clone()),
            remote_reads: crate::forward::remote_read_batcher(
                &raft,
                &peers,
                config.id,
                config.request_timeout(),
            ),
            writes: Proposer::new(raft.clone()),
            forwarder: ForwardBatcher::new(peers.clone()),
            ops: crate::admin::Operations::default(),
            session: crate::write_session::WriteSession::new(),
            integrity: crate::integrity::Integrity::default(),
            config,
            raft,
            state,
            peers,
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let raft_listener = bind(&core.config.raft_addr).await?;
        let info = NodeInfo {
            id: core.config.id,
            api_addr: core.config.public_api_addr().to_string(),
            raft_addr: core.config.public_raft_addr().to_string(),
            initialized: false,
        };
        let service = PeerService::new(
            core.raft.clone(),
            info,
            core.config.lease(),
            core.reads.clone(),
            core.writes.clone(),
        )
        .into_server();
        let maintenance = crate::integrity::service::MaintenanceService::server(core.clone());
        let grpc_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // Without TCP_NODELAY a reply's last HTTP/2 frames wait for the
            // ACK of its first ones, which the peer delays by up to 40 ms:
            // a Raft round (a write, a read index) then stalled that long.
            // tonic sets it only on listeners it binds itself.
            let incoming = TcpIncoming::from(raft_listener).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(maintenance)
                .serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "peer server failed");
            }
        }));

        let api_listener = bind(&core.config.api_addr).await?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| NodeError::Bind {
                addr: core.config.api_addr.clone(),
                source,
            })?;
        let app = crate::api::router(core.clone());
        let http_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // The same for the API: a response written in parts must not
            // wait for the client's delayed ACK.
            let api_listener = api_listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY on an API connection");
                }
            });
            let served = axum::serve(api_listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));

        tasks.push(tokio::spawn(crate::probe::run(core.clone(), stop.clone())));
        tasks.push(tokio::spawn(crate::telemetry::sample(
            core.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(crate::telemetry::watch_expiries(
            core.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(crate::telemetry::watch_leader(
            core.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(crate::integrity::run(
            core.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(crate::housekeeping::run(
            core.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(bootstrap(core.clone(), stop.clone())));
        tracing::info!(
            id = core.config.id,
            api = %core.config.public_api_addr(),
            raft = %core.config.public_raft_addr(),
            data = %core.config.data_dir.display(),
            "cairn node started"
        );
        Ok(Node {
            core,
            durable: store.durable,
            stop,
            tasks,
            api_addr,
        })
    }

    /// The shared core (Raft, state, config).
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    /// The address the HTTP API is bound to.
    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.api_addr
    }

    /// Fails readiness and hands leadership to another voter, keeps
    /// serving for the drain period, then stops accepting requests, gives
    /// those in flight until the shutdown deadline, stops Raft and flushes
    /// the store.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        tracing::info!(id = self.core.config.id, "shutting down");
        // One deadline bounds the whole shutdown: the hand-off and drain,
        // then the requests still in flight.
        let deadline = tokio::time::Instant::now() + self.core.config.shutdown_timeout();
        crate::admin::drain(&self.core).await;
        self.stop.cancel();
        for mut task in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "task ended abnormally"),
                Err(_) => {
                    tracing::warn!(
                        "requests still in flight at the shutdown deadline; dropping them"
                    );
                    task.abort();
                }
            }
        }
        if let Err(e) = self.core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.durable.flush_async().await?;
        Ok(())
    }
}

/// Forms the cluster on first start: alone, or, with `--initial-cluster`,
/// the lowest id gathers every founding member's addresses and initialises;
/// with `--join`, asks a running cluster to add this node instead.
async fn bootstrap(core: Arc<NodeCore>, stop: CancellationToken) {
    let id = core.config.id;
    match core.raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot tell whether raft is initialised");
            return;
        }
    }
    if let Some(url) = core.config.join.clone() {
        return crate::join::run(core, url, stop).await;
    }
    let me = PeerNode {
        api_addr: core.config.public_api_addr().to_string(),
        raft_addr: core.config.public_raft_addr().to_string(),
    };
    let members = match &core.config.initial_cluster {
        None => BTreeMap::from([(id, me)]),
        Some(initial) => {
            if !initial.0.contains_key(&id) {
                tracing::error!(
                    id,
                    "this node is not listed in --initial-cluster; not bootstrapping"
                );
                return;
            }
            if initial.0.keys().next() != Some(&id) {
                tracing::info!(id, "waiting for the lowest founding id to form the cluster");
                return;
            }
            tokio::select! {
                members = gather_founders(&core, &initial.0, me) => match members {
                    Some(m) => m,
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
    };
    tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising cluster");
    if let Err(e) = core.raft.initialize(members).await {
        tracing::error!(error = %e, "initialise failed");
        return;
    }
    let cluster_id = uuid::Uuid::now_v7().to_string();
    while !stop.is_cancelled() {
        let init = Command::InitCluster {
            cluster_id: cluster_id.clone(),
        };
        match core.write(init, WriteOptions::default()).await {
            Ok(_) => {
                tracing::info!(%cluster_id, "cluster formed");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "recording the cluster id; retrying"),
        }
    }
}

/// Asks every founding member who it is until all have answered. Returns
/// `None` if any of them already belongs to a cluster (never form a second).
async fn gather_founders(
    core: &NodeCore,
    founders: &BTreeMap<u64, String>,
    me: PeerNode,
) -> Option<BTreeMap<u64, PeerNode>> {
    let mut members = BTreeMap::from([(core.config.id, me)]);
    loop {
        for (&peer, addr) in founders {
            if members.contains_key(&peer) {
                continue;
            }
            match core.peers.hello(addr, Duration::from_secs(1)).await {
                Ok(info) if info.id != peer => {
                    tracing::error!(expected = peer, got = info.id, %addr, "founding member has another id");
                }
                Ok(info) if info.initialized => {
                    tracing::warn!(
                        peer,
                        "founding member already belongs to a cluster; not bootstrapping"
                    );
                    return None;
                }
                Ok(info) => {
                    members.insert(
                        peer,
                        PeerNode {
                            api_addr: info.api_addr,
                            raft_addr: addr.clone(),
                        },
                    );
                }
                Err(e) => {
                    tracing::debug!(peer, %addr, error = %e, "founding member not reachable yet")
                }
            }
        }
        if members.len() == founders.len() {
            return Some(members);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
