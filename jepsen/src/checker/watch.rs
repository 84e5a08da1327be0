//! Watch completeness: the change stream delivers every acknowledged write
//! exactly once, in revision order, across reconnections.

use std::collections::HashSet;

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Status};
use crate::watch::WatchEvent;

/// The `(kv key, version)` pairs acknowledged writes produced.
fn acknowledged(ops: &[Op]) -> Vec<(u64, String, u64)> {
    ops.iter()
        .filter(|o| o.status == Status::Ok)
        .filter_map(|o| match &o.call {
            Call::Write {
                key,
                version: Some(v),
                ..
            }
            | Call::FencedWrite {
                key,
                version: Some(v),
                ..
            } => Some((o.id, key.clone(), *v)),
            Call::Cas { key, expect, .. } => Some((o.id, key.clone(), expect + 1)),
            _ => None,
        })
        .collect()
}

/// Whether `events` already hold every acknowledged kv write of `ops`.
pub fn complete(ops: &[Op], events: &[WatchEvent]) -> bool {
    let seen: HashSet<(&str, u64)> = events
        .iter()
        .filter_map(|e| Some((e.key.strip_prefix("kv/")?, e.version?)))
        .collect();
    acknowledged(ops)
        .iter()
        .all(|(_, k, v)| seen.contains(&(k.as_str(), *v)))
}

/// Checks the stream against the history; `errors` are the stream's error
/// events (a compacted revision makes the check undecidable).
pub fn check(ops: &[Op], events: &[WatchEvent], errors: &[String]) -> Verdict {
    let mut anomalies = Vec::new();
    // One revision may hold several changes (a batch of writes), so equal
    // neighbours are fine; a step back is not.
    for pair in events.windows(2) {
        if pair[1].revision < pair[0].revision {
            anomalies.push(Anomaly {
                kind: "watch-order".into(),
                detail: format!(
                    "revision {} delivered after revision {}",
                    pair[1].revision, pair[0].revision
                ),
            });
        }
    }
    let mut seen: HashSet<(&str, u64)> = HashSet::new();
    let mut repeated = Vec::new();
    for (key, version) in events
        .iter()
        .filter_map(|e| Some((e.key.strip_prefix("kv/")?, e.version?)))
    {
        if !seen.insert((key, version)) {
            repeated.push(format!("{key} v{version}"));
        }
    }
    if !repeated.is_empty() {
        anomalies.push(Anomaly {
            kind: "watch-repeated".into(),
            detail: format!(
                "{} changes delivered more than once: {}",
                repeated.len(),
                repeated
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let missed: Vec<String> = acknowledged(ops)
        .iter()
        .filter(|(_, k, v)| !seen.contains(&(k.as_str(), *v)))
        .map(|(id, k, v)| format!("op {id}: {k} v{v}"))
        .collect();
    if !missed.is_empty() {
        anomalies.push(Anomaly {
            kind: "watch-missed".into(),
            detail: format!(
                "{} acknowledged writes never delivered: {}",
                missed.len(),
                missed
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let unknown = if errors.is_empty() {
        Vec::new()
    } else {
        vec![format!("watch stream errors: {}", errors.join("; "))]
    };
    Verdict::from_parts(anomalies, unknown, events.len())
}
