//! Coalesces concurrent linearizable reads into shared read-index rounds.
//!
//! A read index is only valid for reads that began before the leadership
//! check that produced it. So a read joins the next round to start, never
//! one already in flight: while a round runs, newcomers wait together and
//! are all answered by the following round. On the leader a round is a
//! quorum check; on a follower it is one ReadIndex call to the leader.
//! Under load this turns one round per read into one per batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::leader::{self, LeaderError};
use crate::Raft;

type Waiter = oneshot::Sender<Result<u64, LeaderError>>;
type RoundFuture = Pin<Box<dyn Future<Output = Result<u64, LeaderError>> + Send>>;
type Round = Arc<dyn Fn() -> RoundFuture + Send + Sync>;

#[derive(Default)]
struct Pending {
    running: bool,
    waiting: Vec<Waiter>,
}

/// A handle to the batcher of one node (cheap to clone).
#[derive(Clone)]
pub struct ReadBatcher {
    round: Round,
    pending: Arc<Mutex<Pending>>,
}

impl ReadBatcher {
    /// A batcher whose rounds call `round`.
    pub fn new<F, Fut>(round: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, LeaderError>> + Send + 'static,
    {
        Self {
            round: Arc::new(move || Box::pin(round())),
            pending: Arc::default(),
        }
    }

    /// Rounds that are quorum checks by this node as leader.
    pub fn on_leader(raft: Raft) -> Self {
        Self::new(move || {
            let raft = raft.clone();
            async move { leader::read_index(&raft, None).await }
        })
    }

    /// The read index for a read starting now (see [`leader::read_index`]).
    pub async fn read_index(&self) -> Result<u64, LeaderError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.waiting.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive());
        }
        rx.await
            .unwrap_or_else(|_| Err(LeaderError::Unavailable("read round abandoned".into())))
    }

    /// Runs rounds until nobody waits.
    async fn drive(self) {
        loop {
            let batch = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.waiting.is_empty() {
                    p.running = false;
                    return;
                }
                std::mem::take(&mut p.waiting)
            };
            let result = (self.round)().await;
            for waiter in batch {
                // A waiter that gave up (client gone) is fine to skip.
                let _ = waiter.send(result.clone());
            }
        }
    }
}
