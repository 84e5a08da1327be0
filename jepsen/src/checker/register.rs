//! Per-key linearizability of versioned registers (the register and artifact
//! workloads): the store's object is `(version, value)`, created at version
//! 1 and incremented by every write; compare-and-set is on the version.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::linear::{self, Entry, Model, Outcome};
use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Status};

/// A register operation as the model sees it (values interned as numbers).
#[derive(Debug, Clone)]
pub enum RegOp {
    /// A read that saw `None` (absent) or `(version, value)`.
    Read(Option<(u64, u32)>),
    /// A write of `value`; `version` is what the store answered, when known.
    Write { value: u32, version: Option<u64> },
    /// Compare-and-set: applied iff the version is `expect` (0: absent,
    /// a create-only write). When
    /// `indeterminate`, a mismatch is a possible outcome too.
    Cas {
        expect: u64,
        value: u32,
        indeterminate: bool,
    },
}

/// The versioned register.
pub struct Register;

impl Model for Register {
    type State = Option<(u64, u32)>;
    type Op = RegOp;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &RegOp) -> Option<Self::State> {
        let version = state.map_or(0, |(v, _)| v);
        match op {
            RegOp::Read(seen) => (seen == state).then_some(*state),
            RegOp::Write { value, version: v } => match v {
                Some(v) if *v != version + 1 => None,
                _ => Some(Some((version + 1, *value))),
            },
            RegOp::Cas {
                expect,
                value,
                indeterminate,
            } => {
                if *expect == version {
                    Some(Some((version + 1, *value)))
                } else if *indeterminate {
                    Some(*state)
                } else {
                    None
                }
            }
        }
    }
}

/// Checks every key's sub-history; the whole check gets `budget`.
pub fn check(ops: &[Op], budget: Duration) -> Verdict {
    let started = Instant::now();
    let mut per_key: BTreeMap<&str, Vec<Entry<RegOp>>> = BTreeMap::new();
    let mut values: HashMap<&str, u32> = HashMap::new();
    let mut anomalies = Vec::new();
    for op in ops {
        let ret = match op.status {
            Status::Ok => Some(op.complete_ms),
            Status::Info => None,
            // Definitely not applied: no effect to explain.
            Status::Fail => continue,
        };
        let (key, reg) = match &op.call {
            Call::Read {
                key,
                output,
                corrupt,
            } => {
                if op.status != Status::Ok {
                    continue;
                }
                if let Some(why) = corrupt {
                    anomalies.push(Anomaly {
                        kind: "corrupt-read".into(),
                        detail: format!("op {} read {key}: {why}", op.id),
                    });
                }
                let seen = output
                    .as_ref()
                    .map(|o| (o.version, intern(&o.value, &mut values)));
                (key, RegOp::Read(seen))
            }
            Call::Write {
                key,
                value,
                version,
            } => (
                key,
                RegOp::Write {
                    value: intern(value, &mut values),
                    version: *version,
                },
            ),
            // A fenced write is a plain write to the guarded key: the lock
            // checker judges its token, this one its effect on the key.
            Call::FencedWrite {
                key,
                value,
                version,
                ..
            } => (
                key,
                RegOp::Write {
                    value: intern(value, &mut values),
                    version: *version,
                },
            ),
            Call::Cas { key, expect, value } => (
                key,
                RegOp::Cas {
                    expect: *expect,
                    value: intern(value, &mut values),
                    indeterminate: op.status == Status::Info,
                },
            ),
            _ => continue,
        };
        per_key.entry(key.as_str()).or_default().push(Entry {
            id: op.id,
            op: reg,
            call: op.invoke_ms,
            ret,
        });
    }
    let mut unknown = Vec::new();
    for (key, entries) in &per_key {
        let left = budget.saturating_sub(started.elapsed());
        match linear::check(&Register, entries, left) {
            Outcome::Linearizable => {}
            Outcome::Unknown => unknown.push(key.to_string()),
            Outcome::NotLinearizable { op, linearized } => anomalies.push(Anomaly {
                kind: "not-linearizable".into(),
                detail: format!(
                    "key {key}: no linearization of its {} operations; op {op} could not be \
                     placed (at most {linearized} placed)",
                    entries.len()
                ),
            }),
        }
    }
    Verdict::from_parts(anomalies, unknown, per_key.len())
}

/// Numbers each distinct value, so states hash cheaply.
fn intern<'a>(v: &'a str, values: &mut HashMap<&'a str, u32>) -> u32 {
    let next = values.len() as u32;
    *values.entry(v).or_insert(next)
}
