//! Lost acknowledged writes: every element whose add was acknowledged must
//! be in every final read; no element may appear that was never added, nor
//! one whose add definitely failed.

use std::collections::{BTreeMap, BTreeSet};

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Status};

/// Checks a set history with its final reads.
pub fn check(ops: &[Op]) -> Verdict {
    let mut adds: BTreeMap<u64, Status> = BTreeMap::new();
    let mut reads: Vec<(&Op, BTreeSet<u64>)> = Vec::new();
    for op in ops {
        match &op.call {
            Call::Add { element } => {
                adds.insert(*element, op.status);
            }
            Call::ReadSet {
                elements: Some(elements),
            } if op.status == Status::Ok => {
                reads.push((op, elements.iter().copied().collect()));
            }
            _ => {}
        }
    }
    if reads.is_empty() {
        return Verdict::from_parts(
            Vec::new(),
            vec!["no final read of the set succeeded".into()],
            adds.len(),
        );
    }
    let mut anomalies = Vec::new();
    for (read, seen) in &reads {
        let lost: Vec<u64> = adds
            .iter()
            .filter(|(e, s)| **s == Status::Ok && !seen.contains(e))
            .map(|(e, _)| *e)
            .collect();
        if !lost.is_empty() {
            anomalies.push(Anomaly {
                kind: "lost-write".into(),
                detail: format!(
                    "final read {} through node {} misses {} acknowledged adds: {}",
                    read.id,
                    read.node,
                    lost.len(),
                    sample(&lost)
                ),
            });
        }
        let unexpected: Vec<u64> = seen
            .iter()
            .filter(|e| !adds.contains_key(e))
            .copied()
            .collect();
        if !unexpected.is_empty() {
            anomalies.push(Anomaly {
                kind: "unexpected-element".into(),
                detail: format!(
                    "final read {} holds elements never added: {}",
                    read.id,
                    sample(&unexpected)
                ),
            });
        }
        let failed: Vec<u64> = seen
            .iter()
            .filter(|e| adds.get(e) == Some(&Status::Fail))
            .copied()
            .collect();
        if !failed.is_empty() {
            anomalies.push(Anomaly {
                kind: "failed-add-applied".into(),
                detail: format!(
                    "final read {} holds adds that were reported as failed: {}",
                    read.id,
                    sample(&failed)
                ),
            });
        }
    }
    Verdict::from_parts(anomalies, Vec::new(), adds.len())
}

fn sample(v: &[u64]) -> String {
    let shown: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
    if v.len() > 10 {
        format!("{} ...", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
