//! A linearizability checker: Wing & Gong's search with Lowe's memoisation
//! (the "WGL" algorithm, as in Knossos and Porcupine), run per key by the
//! callers (P-compositionality: a history is linearizable iff each key's
//! sub-history is). The search is bounded in time and says `Unknown` when
//! it runs out rather than passing.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// An operation with its observed output.
    type Op;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// Applies `op` to `state`: the next state, or `None` when the observed
    /// output is impossible from `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation for the search: its interval and whether it returned.
#[derive(Debug, Clone)]
pub struct Entry<O> {
    /// The operation id in the history (for reports).
    pub id: u64,
    /// The operation with its output.
    pub op: O,
    /// Invocation time.
    pub call: f64,
    /// Completion time; `None` for indeterminate operations, which may take
    /// effect at any point after their invocation (or never: linearized last,
    /// nothing observes them).
    pub ret: Option<f64>,
}

/// The verdict on one sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists; `op` is an acknowledged operation the search could never
    /// place (the deepest point it reached), `linearized` how many it placed.
    NotLinearizable {
        /// The id of the operation that could not be linearized.
        op: u64,
        /// The most operations placed in any partial linearization.
        linearized: usize,
    },
    /// The budget ran out first.
    Unknown,
}

const NONE: usize = usize::MAX;

/// Checks one sub-history within `budget`.
pub fn check<M: Model>(model: &M, entries: &[Entry<M::Op>], budget: Duration) -> Outcome {
    let started = Instant::now();
    let n = entries.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Events: (time, is_return, op index). Calls sort before returns at
    // equal times, so touching intervals count as concurrent (no false alarm).
    let mut events: Vec<(f64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.call, false, i));
        events.push((e.ret.unwrap_or(f64::INFINITY), true, i));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    // A doubly linked list over the events; node 0 is the head sentinel.
    let len = events.len() + 1;
    let mut next = vec![NONE; len];
    let mut prev = vec![NONE; len];
    let mut is_ret = vec![false; len];
    let mut op_of = vec![0usize; len];
    let mut ret_node = vec![NONE; n];
    for (pos, &(_, ret, i)) in events.iter().enumerate() {
        let node = pos + 1;
        is_ret[node] = ret;
        op_of[node] = i;
        if ret {
            ret_node[i] = node;
        }
        prev[node] = pos;
        next[pos] = node;
    }
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut placed = 0usize;
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut deepest = (0usize, NONE);
    let mut entry = next[0];
    let mut steps = 0u64;
    while next[0] != NONE {
        steps += 1;
        if steps % 4096 == 0 && started.elapsed() > budget {
            return Outcome::Unknown;
        }
        if entry == NONE {
            // Only indeterminate operations are left and none can be placed
            // here: backtrack as at a return.
            match stack.pop() {
                None => return not_linearizable(entries, deepest),
                Some((call, s)) => {
                    let i = op_of[call];
                    state = s;
                    linearized[i / 64] &= !(1 << (i % 64));
                    placed -= 1;
                    unlift(call, ret_node[i], &mut next, &mut prev);
                    entry = next[call];
                }
            }
            continue;
        }
        if !is_ret[entry] {
            let i = op_of[entry];
            if let Some(new_state) = model.step(&state, &entries[i].op) {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if cache.insert((lin.clone(), new_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, new_state)));
                    linearized = lin;
                    placed += 1;
                    lift(entry, ret_node[i], &mut next, &mut prev);
                    entry = next[0];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return: its operation must already be placed, so backtrack.
            if entries[op_of[entry]].ret.is_some() && placed >= deepest.0 {
                deepest = (placed, op_of[entry]);
            }
            match stack.pop() {
                None => return not_linearizable(entries, deepest),
                Some((call, s)) => {
                    let i = op_of[call];
                    state = s;
                    linearized[i / 64] &= !(1 << (i % 64));
                    placed -= 1;
                    unlift(call, ret_node[i], &mut next, &mut prev);
                    entry = next[call];
                }
            }
        }
    }
    Outcome::Linearizable
}

fn not_linearizable<O>(entries: &[Entry<O>], deepest: (usize, usize)) -> Outcome {
    Outcome::NotLinearizable {
        op: if deepest.1 == NONE {
            entries[0].id
        } else {
            entries[deepest.1].id
        },
        linearized: deepest.0,
    }
}

fn unlink(node: usize, next: &mut [usize], prev: &mut [usize]) {
    let (p, nx) = (prev[node], next[node]);
    next[p] = nx;
    if nx != NONE {
        prev[nx] = p;
    }
}

fn relink(node: usize, next: &mut [usize], prev: &mut [usize]) {
    let (p, nx) = (prev[node], next[node]);
    next[p] = node;
    if nx != NONE {
        prev[nx] = node;
    }
}

fn lift(call: usize, ret: usize, next: &mut [usize], prev: &mut [usize]) {
    unlink(call, next, prev);
    unlink(ret, next, prev);
}

fn unlift(call: usize, ret: usize, next: &mut [usize], prev: &mut [usize]) {
    relink(ret, next, prev);
    relink(call, next, prev);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain integer register: `Some(v)` writes, `None` reads `0`-based values.
    struct Reg;
    #[derive(Debug, Clone)]
    enum R {
        W(u32),
        R(u32),
    }
    impl Model for Reg {
        type State = u32;
        type Op = R;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, op: &R) -> Option<u32> {
            match op {
                R::W(v) => Some(*v),
                R::R(v) => (v == s).then_some(*s),
            }
        }
    }

    fn e(id: u64, op: R, call: f64, ret: Option<f64>) -> Entry<R> {
        Entry { id, op, call, ret }
    }

    #[test]
    fn concurrent_write_may_be_seen_or_not() {
        let h = vec![
            e(1, R::W(1), 0.0, Some(10.0)),
            e(2, R::R(0), 1.0, Some(2.0)),
            e(3, R::R(1), 3.0, Some(4.0)),
        ];
        assert_eq!(
            check(&Reg, &h, Duration::from_secs(5)),
            Outcome::Linearizable
        );
    }

    #[test]
    fn read_going_back_in_time_is_caught() {
        let h = vec![
            e(1, R::W(1), 0.0, Some(10.0)),
            e(2, R::R(1), 1.0, Some(2.0)),
            e(3, R::R(0), 3.0, Some(4.0)),
        ];
        assert!(matches!(
            check(&Reg, &h, Duration::from_secs(5)),
            Outcome::NotLinearizable { op: 3, .. }
        ));
    }

    #[test]
    fn indeterminate_write_may_apply_late_or_never() {
        let late = vec![
            e(1, R::W(1), 0.0, None),
            e(2, R::R(0), 5.0, Some(6.0)),
            e(3, R::R(1), 7.0, Some(8.0)),
        ];
        assert_eq!(
            check(&Reg, &late, Duration::from_secs(5)),
            Outcome::Linearizable
        );
        let never = vec![e(1, R::W(1), 0.0, None), e(2, R::R(0), 5.0, Some(6.0))];
        assert_eq!(
            check(&Reg, &never, Duration::from_secs(5)),
            Outcome::Linearizable
        );
        // But once seen, it cannot be unseen.
        let flicker = vec![
            e(1, R::W(1), 0.0, None),
            e(2, R::R(1), 5.0, Some(6.0)),
            e(3, R::R(0), 7.0, Some(8.0)),
        ];
        assert!(matches!(
            check(&Reg, &flicker, Duration::from_secs(5)),
            Outcome::NotLinearizable { .. }
        ));
    }

    #[test]
    fn out_of_budget_is_unknown_not_valid() {
        // Many concurrent writes and an impossible read: the search must
        // explore many orders; with no time at all it cannot conclude.
        let mut h: Vec<Entry<R>> = (0..40)
            .map(|i| e(i, R::W(i as u32 + 1), 0.0, None))
            .collect();
        h.push(e(100, R::R(999), 1.0, Some(2.0)));
        assert_eq!(check(&Reg, &h, Duration::ZERO), Outcome::Unknown);
    }
}
