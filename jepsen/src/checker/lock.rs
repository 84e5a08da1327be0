//! Lock safety judged through fencing: tokens grow, and once a newer holder
//! is known to exist no older token is honoured.
//!
//! Lease expiry is decided on the store's replicated clock, which a client
//! cannot observe, so the checker never reasons about lease lengths; it uses
//! only real-time order between completed and invoked operations:
//! - a grant that completed before another grant was invoked carries a
//!   smaller token (tokens are unique and increase), and a token is granted
//!   at most once;
//! - once a grant of token `t` has completed, no operation invoked later may
//!   succeed with an older token of the same lock: neither a fenced write to
//!   the guarded key nor a release (either would mean two holders at once);
//! - acknowledged fenced writes, in real-time order, never go back to an
//!   older token.

use std::collections::BTreeMap;

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Status};

/// Checks a lock history.
pub fn check(ops: &[Op]) -> Verdict {
    let mut by_lock: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        let lock = match &op.call {
            Call::Acquire { lock, .. } | Call::Release { lock, .. } => lock,
            Call::FencedWrite { lock, .. } => lock,
            _ => continue,
        };
        by_lock.entry(lock.as_str()).or_default().push(op);
    }
    let mut anomalies = Vec::new();
    for (lock, ops) in &by_lock {
        let grants: Vec<(&Op, u64)> = ops
            .iter()
            .filter(|o| o.status == Status::Ok)
            .filter_map(|o| match o.call {
                Call::Acquire { token: Some(t), .. } => Some((*o, t)),
                _ => None,
            })
            .collect();
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        for (g, t) in &grants {
            if let Some(first) = seen.insert(*t, g.id) {
                anomalies.push(Anomaly {
                    kind: "double-grant".into(),
                    detail: format!(
                        "lock {lock}: token {t} granted twice (ops {first} and {})",
                        g.id
                    ),
                });
            }
        }
        for (a, ta) in &grants {
            for (b, tb) in &grants {
                if a.complete_ms < b.invoke_ms && ta >= tb && a.id != b.id {
                    anomalies.push(Anomaly {
                        kind: "token-order".into(),
                        detail: format!(
                            "lock {lock}: grant {} (token {ta}) completed before grant {} \
                             (token {tb}) began, yet its token is not smaller",
                            a.id, b.id
                        ),
                    });
                }
            }
        }
        // Acknowledged uses of a token: fenced writes and releases.
        let uses: Vec<(&Op, u64, &str)> = ops
            .iter()
            .filter(|o| o.status == Status::Ok)
            .filter_map(|o| match o.call {
                Call::FencedWrite { token, .. } => Some((*o, token, "fenced write")),
                Call::Release { token, .. } => Some((*o, token, "release")),
                _ => None,
            })
            .collect();
        for (u, tu, what) in &uses {
            if let Some((g, tg)) = grants
                .iter()
                .find(|(g, tg)| g.complete_ms < u.invoke_ms && *tg > *tu)
            {
                anomalies.push(Anomaly {
                    kind: "two-holders".into(),
                    detail: format!(
                        "lock {lock}: {what} {} with token {tu} succeeded after grant {} of \
                         token {tg} completed",
                        u.id, g.id
                    ),
                });
            }
        }
        let writes: Vec<&(&Op, u64, &str)> = uses
            .iter()
            .filter(|(_, _, w)| *w == "fenced write")
            .collect();
        for (a, ta, _) in &writes {
            for (b, tb, _) in &writes {
                if a.complete_ms < b.invoke_ms && ta > tb {
                    anomalies.push(Anomaly {
                        kind: "fence-regressed".into(),
                        detail: format!(
                            "lock {lock}: fenced write {} (token {tb}) accepted after fenced \
                             write {} (token {ta}) had completed",
                            b.id, a.id
                        ),
                    });
                }
            }
        }
    }
    Verdict::from_parts(anomalies, Vec::new(), by_lock.len())
}
