//! Group commit on the leader: concurrent client writes share log entries.
//!
//! openraft appends each proposal as its own log entry, and the leader
//! flushes its log once per append before it takes the next proposal, so
//! one entry per write caps the write rate at one over the append-and-flush
//! time, however many clients wait. The proposer therefore keeps at most
//! [`MAX_IN_FLIGHT`] proposals open; writes that arrive meanwhile queue and
//! leave together, as one [`Command::Batch`] entry, as soon as a proposal
//! finishes. A lone write goes out at once and unwrapped, so an idle
//! cluster's latency and log look as they would without batching.
//!
//! Every write is still acknowledged only once its entry is committed and
//! applied, and each keeps its own stamp, idempotency key and fence.

use std::sync::{Arc, Mutex};

use cairn_storage::{Command, Request, Response};
use tokio::sync::oneshot;

use crate::leader::{self, LeaderError, WriteGate, WriteOutcome};
use crate::Raft;

/// Proposals open at once. Two keep the leader's log busy (one appends
/// while the other replicates); more only shrink the batches.
pub const MAX_IN_FLIGHT: usize = 2;
/// Requests in one batch at most.
pub const MAX_BATCH_REQUESTS: usize = 512;
/// Payload bytes in one batch at most, so that a batch stays well inside
/// what one AppendEntries round carries. A larger write goes alone.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

type Waiter = oneshot::Sender<Result<WriteOutcome, LeaderError>>;

#[derive(Default)]
struct Pending {
    in_flight: usize,
    queue: Vec<(Request, Waiter)>,
}

/// The write path of one node while it leads (cheap to clone).
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    gate: WriteGate,
    pending: Arc<Mutex<Pending>>,
}

impl Proposer {
    /// A proposer for `raft`, admitting writes through a gate of its own.
    pub fn new(raft: Raft) -> Self {
        Self {
            raft,
            gate: WriteGate::default(),
            pending: Arc::default(),
        }
    }

    /// The admission gate a leadership transfer closes.
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    /// Stamps `req` with this (leader) node's clock, proposes it (alone or
    /// in a batch) and waits until it is committed and applied, unless the
    /// gate is closed for a leadership transfer. The stamp is the only way
    /// time enters the state machine.
    pub async fn write(&self, mut req: Request) -> Result<WriteOutcome, LeaderError> {
        // Held until the entry is applied: a transfer waits for it.
        let _admitted = self.gate.admit()?;
        req.now_ms = leader::wall_clock_ms();
        if !req.command.is_batchable() || req.command.payload_len() > MAX_BATCH_BYTES / 4 {
            return leader::propose(&self.raft, req).await;
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.queue.push((req, tx));
            let start = p.in_flight < MAX_IN_FLIGHT;
            if start {
                p.in_flight += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().drive());
        }
        rx.await
            .unwrap_or_else(|_| Err(LeaderError::Unavailable("proposal abandoned".into())))
    }

    /// Proposes what is queued, batch after batch, until the queue is empty.
    async fn drive(self) {
        loop {
            let batch = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.queue.is_empty() {
                    p.in_flight -= 1;
                    return;
                }
                take_batch(&mut p.queue, payload_len)
            };
            self.propose(batch).await;
        }
    }

    async fn propose(&self, mut batch: Vec<(Request, Waiter)>) {
        if batch.len() == 1 {
            let (req, waiter) = batch.remove(0);
            let _ = waiter.send(leader::propose(&self.raft, req).await);
            return;
        }
        let (requests, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        metrics::histogram!(cairn_storage::telemetry::RAFT_PROPOSAL_BATCH_SIZE)
            .record(requests.len() as f64);
        let now_ms = requests.iter().map(|r| r.now_ms).max().unwrap_or(0);
        let outcome =
            leader::propose(&self.raft, Request::new(now_ms, Command::Batch(requests))).await;
        match outcome {
            Ok(WriteOutcome {
                index,
                response: Response::Batch(responses),
            }) if responses.len() == waiters.len() => {
                for (waiter, response) in waiters.into_iter().zip(responses) {
                    // A waiter that gave up (client gone) is fine to skip.
                    let _ = waiter.send(Ok(WriteOutcome { index, response }));
                }
            }
            Ok(other) => {
                let error = LeaderError::Unavailable(format!(
                    "a batch of {} writes was answered with {:?}",
                    waiters.len(),
                    other.response
                ));
                tracing::error!(%error, "batch answer does not match the batch");
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
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

/// Takes the oldest queued writes that fit one batch: at most
/// [`MAX_BATCH_REQUESTS`] of them and [`MAX_BATCH_BYTES`] of payload, but
/// always at least one. `len` tells an item's payload size.
pub(crate) fn take_batch<T>(queue: &mut Vec<T>, len: impl Fn(&T) -> usize) -> Vec<T> {
    let mut bytes = 0;
    let mut count = 0;
    for item in queue.iter() {
        let len = len(item);
        if count == MAX_BATCH_REQUESTS || (count > 0 && bytes + len > MAX_BATCH_BYTES) {
            break;
        }
        bytes += len;
        count += 1;
    }
    let rest = queue.split_off(count);
    std::mem::replace(queue, rest)
}

fn payload_len((req, _): &(Request, Waiter)) -> usize {
    req.command.payload_len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(sizes: &[usize]) -> Vec<(Request, Waiter)> {
        sizes
            .iter()
            .map(|&n| {
                let command = Command::KvPut {
                    key: "k".into(),
                    value: vec![0; n],
                    ttl_ms: None,
                    precondition: Default::default(),
                };
                (Request::new(0, command), oneshot::channel().0)
            })
            .collect()
    }

    fn lens(batch: &[(Request, Waiter)]) -> Vec<usize> {
        batch.iter().map(|(r, _)| r.command.payload_len()).collect()
    }

    #[test]
    fn a_batch_takes_the_oldest_writes_up_to_its_byte_budget() {
        let half = MAX_BATCH_BYTES / 2;
        let mut queue = queued(&[half, half, 1, 2]);
        assert_eq!(lens(&take_batch(&mut queue, payload_len)), vec![half, half]);
        assert_eq!(lens(&take_batch(&mut queue, payload_len)), vec![1, 2]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_batch_takes_at_least_one_write_and_at_most_the_request_cap() {
        let mut queue = queued(&[MAX_BATCH_BYTES + 1, 3]);
        assert_eq!(
            lens(&take_batch(&mut queue, payload_len)),
            vec![MAX_BATCH_BYTES + 1]
        );
        let mut queue = queued(&vec![1; MAX_BATCH_REQUESTS + 5]);
        assert_eq!(
            take_batch(&mut queue, payload_len).len(),
            MAX_BATCH_REQUESTS
        );
        assert_eq!(queue.len(), 5);
    }
}
