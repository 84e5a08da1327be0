//! The watch history's records, kept apart from the state's map.
//!
//! A busy store holds up to `--watch-history-events` of them (100,000 by
//! default), each a small value under `ev/<u64 BE revision><u32 BE seq>`.
//! They arrive in key order and leave oldest first, so a sorted ring of
//! fixed-size keys holds them with neither the map's half-empty nodes nor a
//! heap allocation per key: about 40 bytes less per event than the map.
//! Keys of any other shape stay in the map.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;

use crate::keys::EVENT_PREFIX;

/// The part of an event's key after [`EVENT_PREFIX`]: revision and seq.
type Suffix = [u8; 12];

/// The suffix of `key` if it is an event key of the usual shape.
pub(super) fn suffix(key: &[u8]) -> Option<Suffix> {
    key.strip_prefix(EVENT_PREFIX)?.try_into().ok()
}

fn full_key(suffix: &Suffix) -> Vec<u8> {
    [EVENT_PREFIX, suffix.as_slice()].concat()
}

/// Orders a record's full key against `key` without building it.
fn compare(suffix: &Suffix, key: &[u8]) -> Ordering {
    EVENT_PREFIX.iter().chain(suffix.iter()).cmp(key.iter())
}

/// Event records in key order.
#[derive(Default)]
pub(super) struct History {
    records: VecDeque<(Suffix, Box<[u8]>)>,
}

impl History {
    fn find(&self, suffix: &Suffix) -> Result<usize, usize> {
        self.records.binary_search_by(|(s, _)| s.cmp(suffix))
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn get(&self, suffix: &Suffix) -> Option<&[u8]> {
        let i = self.find(suffix).ok()?;
        self.records.get(i).map(|(_, v)| &**v)
    }

    pub(super) fn insert(&mut self, suffix: Suffix, value: Box<[u8]>) {
        // New events come last, so the common case is a push at the back.
        if self.records.back().is_none_or(|(last, _)| *last < suffix) {
            self.records.push_back((suffix, value));
            return;
        }
        match self.find(&suffix) {
            Ok(i) => self.records[i].1 = value,
            Err(i) => self.records.insert(i, (suffix, value)),
        }
    }

    pub(super) fn remove(&mut self, suffix: &Suffix) -> Option<Box<[u8]>> {
        let i = self.find(suffix).ok()?;
        self.records.remove(i).map(|(_, v)| v)
    }

    /// Up to `limit` pairs with full keys within the bounds, in order.
    pub(super) fn range(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
        // How many records sort before `b`, or before or at it.
        let before = |b: &[u8]| self.records.partition_point(|(s, _)| compare(s, b).is_lt());
        let through = |b: &[u8]| self.records.partition_point(|(s, _)| compare(s, b).is_le());
        let start = match lower {
            Bound::Included(b) => before(b),
            Bound::Excluded(b) => through(b),
            Bound::Unbounded => 0,
        };
        let end = match upper {
            Bound::Included(b) => through(b),
            Bound::Excluded(b) => before(b),
            Bound::Unbounded => self.records.len(),
        };
        self.records
            .range(start..end.max(start))
            .take(limit)
            .map(|(s, v)| (full_key(s), v.to_vec()))
    }

    /// Takes the usual event keys out of `map` into a history.
    pub(super) fn split_from(map: &mut super::Map) -> Self {
        let mut events = map.split_off(EVENT_PREFIX);
        if let Some(end) = crate::keys::prefix_end(EVENT_PREFIX) {
            map.append(&mut events.split_off(end.as_slice()));
        }
        let mut history = Self::default();
        for (k, v) in events {
            match suffix(&k) {
                // In key order, so each is a push at the back.
                Some(s) => history.insert(s, v),
                None => {
                    map.insert(k, v);
                }
            }
        }
        history
    }
}
