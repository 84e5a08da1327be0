//! Reachability of the other members, as this node sees them: a Hello to
//! every member's peer port each second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_storage::NodeId;
use tokio_util::sync::CancellationToken;

use crate::node::NodeCore;

const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The last probe result per member.
#[derive(Clone, Default)]
pub struct Reachability {
    seen: Arc<Mutex<BTreeMap<NodeId, Probe>>>,
}

/// One member's last probe.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Whether it answered.
    pub reachable: bool,
    /// When it last answered, if ever.
    pub last_ok: Option<Instant>,
}

impl Reachability {
    /// Whether `id` answered the last probe (`None` if never probed).
    pub fn get(&self, id: NodeId) -> Option<Probe> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    fn record(&self, id: NodeId, ok: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(id).or_insert(Probe {
            reachable: false,
            last_ok: None,
        });
        entry.reachable = ok;
        if ok {
            entry.last_ok = Some(Instant::now());
        }
    }
}

/// Probes every member until `stop`.
pub async fn run(core: Arc<NodeCore>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let membership = core.raft.metrics().borrow().membership_config.clone();
        let members: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != core.config.id)
            .map(|(id, n)| (*id, n.raft_addr.clone()))
            .collect();
        let probes = members.into_iter().map(|(id, addr)| {
            let core = core.clone();
            async move {
                let ok = core.peers.hello(&addr, PROBE_TIMEOUT).await.is_ok();
                core.reachability.record(id, ok);
            }
        });
        futures::future::join_all(probes).await;
    }
}
