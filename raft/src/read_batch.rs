//! Coalesces concurrent linearizable reads into shared quorum rounds.
//!
//! A read index is only valid for reads that began before the leadership
//! check that produced it. So a read joins the next round to start, never
//! one already in flight: while a round runs, newcomers wait together and
//! are all answered by the following round. Under load this turns one
//! quorum round per read into one per batch.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::leader::{self, LeaderError};
use crate::Raft;

type Waiter = oneshot::Sender<Result<u64, LeaderError>>;

#[derive(Default)]
struct Pending {
    running: bool,
    waiting: Vec<Waiter>,
}

/// A handle to the batcher of one node (cheap to clone).
#[derive(Clone)]
pub struct ReadBatcher {
    raft: Raft,
    pending: Arc<Mutex<Pending>>,
}

impl ReadBatcher {
    /// A batcher over `raft`.
    pub fn new(raft: Raft) -> Self {
        Self {
            raft,
            pending: Arc::default(),
        }
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
            let result = leader::read_index(&self.raft, None).await;
            for waiter in batch {
                // A waiter that gave up (client gone) is fine to skip.
                let _ = waiter.send(result.clone());
            }
        }
    }
}
