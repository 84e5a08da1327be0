//! The leader's housekeeping: ticks the replicated clock when a TTL or lease
//! falls due, and trims the watch history to its configured bounds. Both
//! are ordinary log entries, so every replica expires and trims the same
//! things at the same log position.

use std::sync::Arc;
use std::time::Duration;

use cairn_raft::leader::wall_clock_ms;
use cairn_storage::Command;
use tokio_util::sync::CancellationToken;

use crate::forward::WriteOptions;
use crate::node::NodeCore;

/// Runs until `stop`.
pub async fn run(core: Arc<NodeCore>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(core.config.tick_ms.max(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        let leads = core.raft.metrics().borrow().current_leader == Some(core.config.id);
        if !leads {
            continue;
        }
        for command in due_commands(&core) {
            if let Err(e) = core.write(command, WriteOptions::default()).await {
                tracing::debug!(error = %e, "housekeeping write failed; next round retries");
            }
        }
    }
}

/// What is due now, judged on this leader's clock (the entry then carries it).
fn due_commands(core: &NodeCore) -> Vec<Command> {
    let mut due = Vec::new();
    let now = wall_clock_ms();
    match core.state.next_expiry_ms() {
        Ok(Some(at)) if at <= now => due.push(Command::Tick),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading the expiry index"),
    }
    let config = &core.config;
    let history = core.state.history();
    let oldest = core.state.oldest_event_ms();
    match (history, oldest) {
        (Ok(h), Ok(oldest)) => {
            let too_many = h.count > config.watch_history_events;
            let too_old = oldest.is_some_and(|ms| ms + config.watch_history_ms < now);
            if too_many || too_old {
                due.push(Command::TrimEvents {
                    keep_count: config.watch_history_events,
                    keep_ms: config.watch_history_ms,
                });
            }
        }
        (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "reading the watch history"),
    }
    due
}
