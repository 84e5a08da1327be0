//! Coalesces a follower's concurrent forwarded writes into shared calls.
//!
//! A follower sends its clients' writes to the leader. One call per write
//! costs an HTTP/2 stream, a task, an encode and a decode on both nodes and
//! a few socket writes, which under load was a fifth of the leader's CPU,
//! while the leader's proposer put those writes into one log entry anyway
//! ([`crate::propose`]). So writes bound for the same leader leave together:
//! a call carries every write queued for that leader when it leaves, and
//! at most [`MAX_CALLS_IN_FLIGHT`] calls to one leader are open at once.
//!
//! A write first lets the writes that arrive in the same scheduling round
//! join it (one yield), so a lone write waits for no timer. Each write
//! keeps its own deadline and its own answer; one that gave up while queued
//! is not sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_storage::Request;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::leader::WriteOutcome;
use crate::network::{PeerCallError, PeerNetwork};
use crate::propose::take_batch;

/// Calls open to one leader at once. Writes that arrive while all are open
/// wait for the next one, which then carries all of them.
pub const MAX_CALLS_IN_FLIGHT: usize = 4;

type Waiter = oneshot::Sender<Result<WriteOutcome, PeerCallError>>;

struct Queued {
    request: Request,
    deadline: Instant,
    waiter: Waiter,
}

#[derive(Default)]
struct Queue {
    in_flight: usize,
    waiting: Vec<Queued>,
}

/// The forwarding path of one node (cheap to clone).
#[derive(Clone)]
pub struct ForwardBatcher {
    peers: PeerNetwork,
    queues: Arc<Mutex<HashMap<String, Queue>>>,
}

impl ForwardBatcher {
    /// A batcher that calls leaders through `peers`.
    pub fn new(peers: PeerNetwork) -> Self {
        Self {
            peers,
            queues: Arc::default(),
        }
    }

    /// Sends `request` to the leader at `addr` (raft address) with the
    /// writes queued beside it, and waits up to `timeout` for its outcome.
    pub async fn forward(
        &self,
        addr: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<WriteOutcome, PeerCallError> {
        let deadline = Instant::now() + timeout;
        let (waiter, outcome) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let queue = match queues.get_mut(addr) {
                Some(q) => q,
                None => queues.entry(addr.to_string()).or_default(),
            };
            queue.waiting.push(Queued {
                request,
                deadline,
                waiter,
            });
            let start = queue.in_flight < MAX_CALLS_IN_FLIGHT;
            if start {
                queue.in_flight += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().drive(addr.to_string()));
        }
        match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(tonic::Status::unavailable("forwarded write abandoned").into()),
            Err(_) => Err(tonic::Status::deadline_exceeded("forwarded write timed out").into()),
        }
    }

    /// Makes calls to `addr` until nothing is queued for it.
    async fn drive(self, addr: String) {
        loop {
            // Writes made ready by the same wakeup (the answers of one batch
            // release many clients at once) queue up before the call leaves.
            tokio::task::yield_now().await;
            let batch = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = queues.get_mut(&addr) else {
                    return;
                };
                // A write whose caller gave up is answered by nobody.
                queue.waiting.retain(|q| !q.waiter.is_closed());
                if queue.waiting.is_empty() {
                    queue.in_flight -= 1;
                    if queue.in_flight == 0 {
                        queues.remove(&addr);
                    }
                    return;
                }
                take_batch(&mut queue.waiting, |q| q.request.command.payload_len())
            };
            self.call(&addr, batch).await;
        }
    }

    async fn call(&self, addr: &str, batch: Vec<Queued>) {
        metrics::histogram!(cairn_storage::telemetry::FORWARD_BATCH_SIZE)
            .record(batch.len() as f64);
        let last_deadline = batch.iter().map(|q| q.deadline).max();
        let timeout = last_deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let (requests, waiters): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|q| (q.request, q.waiter)).unzip();
        match self.peers.forward(addr, &requests, timeout).await {
            Ok(outcomes) if outcomes.len() == waiters.len() => {
                for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                    // A waiter that gave up meanwhile is fine to skip.
                    let _ = waiter.send(outcome.map_err(PeerCallError::from));
                }
            }
            Ok(outcomes) => {
                let error = tonic::Status::internal(format!(
                    "the leader answered {} forwarded writes with {} outcomes",
                    waiters.len(),
                    outcomes.len()
                ));
                tracing::error!(%error, "forwarded batch answer does not match the batch");
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone().into()));
                }
            }
            Err(error) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
}
