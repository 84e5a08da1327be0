//! Every node serves every request: writes go to the leader (locally when
//! this node leads, otherwise over gRPC in calls shared with the writes
//! beside it) and linearizable reads wait for a read index fixed by the
//! leader. Both retry across leader changes until the request deadline.

use std::time::Duration;

use cairn_raft::leader::{self, LeaderError, WriteOutcome};
use cairn_raft::network::{PeerCallError, PeerNetwork};
use cairn_raft::read_batch::ReadBatcher;
use cairn_raft::Raft;
use cairn_storage::NodeId;
use cairn_storage::{Command, Fence, Idempotency, Request};
use tokio::time::Instant;

use crate::node::NodeCore;
use crate::write_session::Ticket;

/// Least time a write session outlives its last write. Every retry of a
/// write is sent within its request deadline, so the session must outlive
/// that deadline (and the commit of the last retry) with a wide margin.
const SESSION_MIN_RETENTION_MS: u64 = 60 * 1000;

/// How fresh a read must be (`?consistency=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (quorum round).
    #[default]
    Linearizable,
    /// Like linearizable, but the leader answers from its lease.
    Lease,
    /// This node's applied state, whatever it is.
    Stale,
}

impl std::str::FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Self::Linearizable),
            "lease" => Ok(Self::Lease),
            "stale" => Ok(Self::Stale),
            other => Err(format!(
                "consistency must be linearizable, lease or stale, not `{other}`"
            )),
        }
    }
}

/// How a write is made: the client's idempotency key and fence, if any.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `Idempotency-Key`: a retry with the same key returns the first outcome.
    pub idempotency_key: Option<String>,
    /// `X-Cairn-Fence`: apply only while this lock is held with this token.
    pub fence: Option<Fence>,
}

/// The cluster could not serve the request within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A batcher whose rounds ask the current leader for a read index, so the
/// concurrent linearizable reads of a follower share one call.
pub fn remote_read_batcher(
    raft: &Raft,
    peers: &PeerNetwork,
    me: NodeId,
    timeout: Duration,
) -> ReadBatcher {
    let (raft, peers) = (raft.clone(), peers.clone());
    ReadBatcher::new(move || {
        let (raft, peers) = (raft.clone(), peers.clone());
        async move {
            let leader = raft.metrics().borrow().current_leader;
            let addr = match leader {
                Some(id) if id != me => leader::member(&raft, id).map(|n| n.raft_addr),
                _ => None,
            };
            let Some(addr) = addr else {
                return Err(LeaderError::NotLeader { leader });
            };
            peers
                .read_index(&addr, false, timeout)
                .await
                .map_err(|e| match e {
                    PeerCallError::Leader(e) => e,
                    other => LeaderError::Unavailable(other.to_string()),
                })
        }
    })
}

/// Where the leader is, as this node sees it.
enum LeaderAt {
    Here,
    Peer(String),
    Unknown,
}

struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: Duration::from_millis(10),
        }
    }

    /// Sleeps before the next attempt, or returns false when the deadline
    /// would pass first.
    async fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now + self.next >= deadline {
            return false;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_millis(200));
        true
    }
}

impl NodeCore {
    fn leader_at(&self) -> LeaderAt {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(id) if id == self.config.id => LeaderAt::Here,
            Some(id) => match leader::member(&self.raft, id) {
                Some(node) => LeaderAt::Peer(node.raft_addr),
                None => LeaderAt::Unknown,
            },
            None => LeaderAt::Unknown,
        }
    }

    /// How a write is kept from applying twice when a retry after an
    /// ambiguous failure sends it again: by the client's idempotency key,
    /// or else as a write of this node's session (not needed for commands
    /// that are idempotent by nature). The ticket keeps it awaited.
    fn once(
        &self,
        client_key: Option<String>,
        command: Command,
    ) -> (Option<Idempotency>, Command, Option<Ticket<'_>>) {
        match client_key {
            Some(key) => {
                let idempotency = Idempotency {
                    key: format!("c/{key}"),
                    retain_ms: self.config.idempotency_retention_ms,
                };
                (Some(idempotency), command, None)
            }
            None if command.is_naturally_idempotent() => (None, command, None),
            None => {
                let retain_ms =
                    SESSION_MIN_RETENTION_MS.max(self.config.request_timeout_ms.saturating_mul(4));
                let (command, ticket) = self.session.begin(command, retain_ms);
                (None, command, Some(ticket))
            }
        }
    }

    /// Commits `command` through the leader and returns its outcome.
    pub async fn write(
        &self,
        command: Command,
        opts: WriteOptions,
    ) -> Result<WriteOutcome, Unavailable> {
        let deadline = Instant::now() + self.config.request_timeout();
        // Held until this function returns, whichever way: only then does
        // this node stop waiting for the write.
        let (idempotency, command, _ticket) = self.once(opts.idempotency_key, command);
        let req = Request {
            now_ms: leader::wall_clock_ms(),
            idempotency,
            fence: opts.fence,
            command,
        };
        let mut backoff = Backoff::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = match self.leader_at() {
                LeaderAt::Here => self
                    .writes
                    .write(req.clone())
                    .await
                    .map_err(PeerCallError::from),
                LeaderAt::Peer(addr) => {
                    metrics::counter!(cairn_storage::telemetry::FORWARDED_REQUESTS, "kind" => "write")
                        .increment(1);
                    self.forwarder.forward(&addr, req.clone(), remaining).await
                }
                LeaderAt::Unknown => Err(PeerCallError::Leader(LeaderError::NotLeader {
                    leader: None,
                })),
            };
            let error = match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e) => e,
            };
            tracing::debug!(%error, "write attempt failed; retrying");
            if !backoff.wait(deadline).await {
                return Err(Unavailable(format!(
                    "write not committed within {} ms: {error}",
                    self.config.request_timeout_ms
                )));
            }
        }
    }

    /// Waits until this node's state may serve a read at `consistency`.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), Unavailable> {
        let lease = match consistency {
            Consistency::Stale => return Ok(()),
            Consistency::Lease => Some(self.config.lease()),
            Consistency::Linearizable => None,
        };
        let deadline = Instant::now() + self.config.request_timeout();
        let mut backoff = Backoff::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let index = match self.leader_at() {
                LeaderAt::Here => match lease {
                    Some(_) => leader::read_index(&self.raft, lease).await,
                    None => self.reads.read_index().await,
                }
                .map_err(PeerCallError::from),
                LeaderAt::Peer(addr) => {
                    metrics::counter!(cairn_storage::telemetry::FORWARDED_REQUESTS, "kind" => "read_index")
                        .increment(1);
                    match lease {
                        Some(_) => self.peers.read_index(&addr, true, remaining).await,
                        None => self
                            .remote_reads
                            .read_index()
                            .await
                            .map_err(PeerCallError::from),
                    }
                }
                LeaderAt::Unknown => Err(PeerCallError::Leader(LeaderError::NotLeader {
                    leader: None,
                })),
            };
            let error = match index {
                Ok(index) => return self.wait_applied(index, deadline).await,
                Err(e) => e,
            };
            if !backoff.wait(deadline).await {
                return Err(Unavailable(format!(
                    "no read index within {} ms: {error}",
                    self.config.request_timeout_ms
                )));
            }
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), Unavailable> {
        if self.state.applied_index() >= index {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| Unavailable(format!("not caught up to read index {index}: {e}")))
    }
}
