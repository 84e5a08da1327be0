//! Watch: every change under a prefix, in revision order with no gaps,
//! from the stored history and then live. Served from this node's applied
//! state, so it works on every node and resumes across restarts.

use std::sync::Arc;

use cairn_storage::state_machine::Notice;
use cairn_storage::Event;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{validate, Error};
use crate::node::NodeCore;

/// Events read from the history per page.
const PAGE: usize = 1000;
/// Items buffered per watcher before the producer waits for the client.
const BUFFER: usize = 1024;

/// One item of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// A change, and whether it is the last one of its revision this watch
    /// sends. One revision can hold several changes (a batch of writes, a
    /// release that grants to a waiter), so a client that resumes after a
    /// revision must have seen all of them: resume only from a change that
    /// ends its revision.
    Change {
        /// The change.
        event: Event,
        /// No later change of this watch has the same revision.
        ends_revision: bool,
    },
    /// The requested start was trimmed from the history; the stream ends.
    Compacted {
        /// The oldest revision still available.
        oldest_revision: u64,
    },
}

/// Starts a watch of keys under `prefix` from `from_revision` (default: the
/// next revision to be applied here).
pub fn watch(
    core: Arc<NodeCore>,
    prefix: String,
    from_revision: Option<u64>,
) -> Result<ReceiverStream<WatchItem>, Error> {
    validate::len("prefix", &prefix, validate::MAX_ID_BYTES + 16)?;
    let from = from_revision
        .unwrap_or_else(|| core.state.applied_index() + 1)
        .max(1);
    let (tx, rx) = mpsc::channel(BUFFER);
    // Subscribe before reading the history so nothing falls in between.
    let notices = core.state.subscribe();
    tokio::spawn(async move {
        let gauge = metrics::gauge!(cairn_storage::telemetry::WATCH_SUBSCRIBERS);
        gauge.increment(1.0);
        if let Err(e) = pump(&core, &prefix, from, notices, &tx).await {
            tracing::warn!(error = %e, "watch ended on a storage error");
        }
        gauge.decrement(1.0);
    });
    Ok(ReceiverStream::new(rx))
}

/// Sends history then live events until the client goes away.
async fn pump(
    core: &NodeCore,
    prefix: &str,
    from: u64,
    mut notices: tokio::sync::broadcast::Receiver<Notice>,
    tx: &mpsc::Sender<WatchItem>,
) -> Result<(), Error> {
    let mut next = from;
    if !replay(core, prefix, &mut next, tx).await? {
        return Ok(());
    }
    loop {
        let events = match notices.recv().await {
            Ok(Notice::Events(events)) => events,
            Ok(Notice::Reset) | Err(RecvError::Lagged(_)) => {
                if !replay(core, prefix, &mut next, tx).await? {
                    return Ok(());
                }
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        if !send_all(tx, prefix, &events, next).await {
            return Ok(());
        }
        if let Some(last) = events.last() {
            next = next.max(last.revision + 1);
        }
    }
}

/// Sends stored events from `*next` on; false when the watch must end.
async fn replay(
    core: &NodeCore,
    prefix: &str,
    next: &mut u64,
    tx: &mpsc::Sender<WatchItem>,
) -> Result<bool, Error> {
    let floor = core.state.history()?.floor;
    if *next <= floor {
        let _ = tx
            .send(WatchItem::Compacted {
                oldest_revision: floor + 1,
            })
            .await;
        return Ok(false);
    }
    loop {
        let page = core.state.events_from(*next, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(true);
        };
        let after = last.revision + 1;
        // A page holds whole revisions (see `events_from`).
        if !send_all(tx, prefix, &page, *next).await {
            return Ok(false);
        }
        *next = after;
    }
}

/// Sends the events of whole revisions that are under `prefix` and at or
/// after revision `from`, in order; false when the watch must end.
async fn send_all(tx: &mpsc::Sender<WatchItem>, prefix: &str, events: &[Event], from: u64) -> bool {
    let wanted = |e: &Event| e.revision >= from && e.key.starts_with(prefix);
    for (i, e) in events.iter().enumerate() {
        if !wanted(e) {
            continue;
        }
        let ends_revision = events[i + 1..]
            .iter()
            .find(|n| wanted(n))
            .is_none_or(|n| n.revision != e.revision);
        metrics::counter!(cairn_storage::telemetry::WATCH_EVENTS).increment(1);
        let item = WatchItem::Change {
            event: e.clone(),
            ends_revision,
        };
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    true
}
