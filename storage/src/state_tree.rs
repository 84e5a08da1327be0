//! The applied state, held in memory as one ordered map (the watch
//! history's records apart, in a form of their own: [`history`]).
//!
//! Every replicated record is small (artifact content lives in files,
//! [`crate::content`]), so the whole state fits in memory, and applying an
//! entry is a few map updates instead of a page rewrite in an on-disk tree.
//! Durability does not come from here: the Raft log holds every entry past
//! the newest snapshot, and the snapshot file is the durable image of this
//! map ([`crate::state_machine`]).
//!
//! Readers and the one writer (apply) share the map behind a lock that is
//! held only for a lookup, one batch, or one short chunk of a scan. A batch
//! is applied under one lock, so a reader sees all of it or none of it; a
//! scan reads chunk by chunk and, like any scan beside a writer, may see
//! later batches in its later chunks.

mod history;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use history::History;
use serde::de::DeserializeOwned;

use crate::codec::{decode, CodecError};

/// Pairs read under one lock by a scan before it lets writers in again.
const SCAN_CHUNK: usize = 128;

/// Writes applied together: `None` removes the key.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The map behind a [`StateTree`]. Keys and values are boxed slices rather
/// than vectors: a `Vec`'s capacity word is 8 bytes per key and per value in
/// every B-tree slot, and a map filled in key order leaves its nodes about
/// half full, so the two words cost about 30 bytes per entry across the
/// hundreds of thousands of small records a busy store holds.
pub type Map = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// The applied state: keys to values, in key order.
#[derive(Clone, Default)]
pub struct StateTree {
    inner: Arc<RwLock<Inner>>,
}

/// The records, split by shape; every read sees them as one ordered map.
#[derive(Default)]
struct Inner {
    map: Map,
    history: History,
}

impl Inner {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match history::suffix(&key) {
            Some(s) => self.history.insert(s, value.into_boxed_slice()),
            None => {
                self.map
                    .insert(key.into_boxed_slice(), value.into_boxed_slice());
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Box<[u8]>> {
        match history::suffix(key) {
            Some(s) => self.history.remove(&s),
            None => self.map.remove(key),
        }
    }
}

impl StateTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic under the lock cannot leave the map half-updated: a batch
        // is a series of single inserts and removes, each complete.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// The value of `key`, decoded where it lies: nothing is copied first.
    pub fn load<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, CodecError> {
        self.get_with(key, |v| v.map(decode).transpose())
    }

    /// Calls `f` with the value of `key`, read in place under the lock. `f`
    /// must not touch the tree.
    pub(crate) fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let inner = self.read();
        match history::suffix(key) {
            Some(s) => f(inner.history.get(&s)),
            None => f(inner.map.get(key).map(|v| &**v)),
        }
    }

    /// Sets `key` to `value`.
    pub fn insert(&self, key: Vec<u8>, value: Vec<u8>) {
        self.write().insert(key, value);
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.write().remove(key).map(Vec::from)
    }

    /// Applies `batch` in order, seen by readers all at once.
    pub fn apply_batch(&self, batch: Batch) {
        let mut inner = self.write();
        for (key, value) in batch {
            match value {
                Some(value) => inner.insert(key, value),
                None => {
                    inner.remove(&key);
                }
            }
        }
    }

    /// Replaces the whole state with `map`.
    pub fn replace(&self, mut map: Map) {
        let history = History::split_from(&mut map);
        // The old state is dropped after the lock is released.
        let _old = std::mem::replace(&mut *self.write(), Inner { map, history });
    }

    /// How many keys the tree holds.
    pub fn len(&self) -> usize {
        let inner = self.read();
        inner.map.len() + inner.history.len()
    }

    /// Whether the tree holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pairs with keys in `[start, end)` (to the last key when `end` is
    /// `None`), in order, read lazily in chunks.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> Scan {
        Scan {
            tree: self.clone(),
            next: Bound::Included(start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            chunk: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Pairs whose key starts with `prefix`, in order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Scan {
        let end = crate::keys::prefix_end(prefix);
        self.range(prefix, end.as_deref())
    }

    /// Every pair, in order.
    pub fn iter(&self) -> Scan {
        self.range(&[], None)
    }

    /// Fills `out` with the next chunk after `from`, up to `end`.
    fn read_chunk(
        &self,
        from: &Bound<Vec<u8>>,
        end: Option<&[u8]>,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let inner = self.read();
        let upper = match end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let lower = match from {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u)) = (lower, upper) {
            // BTreeMap::range panics on an inverted range; it is simply empty.
            if l >= u {
                return;
            }
        }
        let mut pairs = inner
            .map
            .range::<[u8], _>((lower, upper))
            .take(SCAN_CHUNK)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .peekable();
        let mut events = inner.history.range(lower, upper, SCAN_CHUNK).peekable();
        // Merge the two ordered runs; keys are never in both.
        while out.len() < SCAN_CHUNK {
            let from_map = match (pairs.peek(), events.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if from_map {
                pairs.next()
            } else {
                events.next()
            });
        }
    }
}

/// A lazy, chunked scan of a [`StateTree`] ([`StateTree::range`]).
pub struct Scan {
    tree: StateTree,
    next: Bound<Vec<u8>>,
    end: Option<Vec<u8>>,
    chunk: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(pair) = self.chunk.next() {
            return Some(pair);
        }
        if self.done {
            return None;
        }
        let mut chunk = Vec::with_capacity(SCAN_CHUNK);
        self.tree
            .read_chunk(&self.next, self.end.as_deref(), &mut chunk);
        if chunk.len() < SCAN_CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = chunk.last() {
            self.next = Bound::Excluded(last.clone());
        }
        self.chunk = chunk.into_iter();
        self.chunk.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Vec<u8> {
        format!("k/{i:05}").into_bytes()
    }

    #[test]
    fn scans_cross_chunk_boundaries_in_order_and_stop_at_the_end() {
        let tree = StateTree::new();
        let n = SCAN_CHUNK * 3 + 7;
        for i in 0..n {
            tree.insert(key(i), i.to_le_bytes().to_vec());
        }
        tree.insert(b"l/after".to_vec(), Vec::new());
        let keys: Vec<_> = tree.scan_prefix(b"k/").map(|(k, _)| k).collect();
        assert_eq!(keys, (0..n).map(key).collect::<Vec<_>>());
        let middle: Vec<_> = tree
            .range(&key(5), Some(&key(SCAN_CHUNK + 9)))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(middle, (5..SCAN_CHUNK + 9).map(key).collect::<Vec<_>>());
        assert_eq!(tree.iter().count(), n + 1);
        // An inverted or empty range yields nothing rather than panicking.
        assert_eq!(tree.range(&key(9), Some(&key(3))).count(), 0);
        assert_eq!(tree.scan_prefix(b"m/").count(), 0);
    }

    #[test]
    fn a_batch_applies_its_writes_in_order_and_removes_with_none() {
        let tree = StateTree::new();
        tree.insert(b"a".to_vec(), b"1".to_vec());
        tree.insert(b"b".to_vec(), b"2".to_vec());
        tree.apply_batch(vec![
            (b"a".to_vec(), None),
            (b"c".to_vec(), Some(b"3".to_vec())),
            (b"c".to_vec(), Some(b"4".to_vec())),
        ]);
        assert_eq!(tree.get(b"a"), None);
        assert_eq!(tree.get(b"b"), Some(b"2".to_vec()));
        assert_eq!(tree.get(b"c"), Some(b"4".to_vec()));
        assert_eq!(tree.len(), 2);
    }

    fn event_key(revision: u64, seq: u32) -> Vec<u8> {
        crate::keys::event(revision, seq)
    }

    #[test]
    fn history_records_read_as_one_ordered_map_with_the_rest() {
        let tree = StateTree::new();
        let n = SCAN_CHUNK as u64 * 2 + 5;
        // Out of order on purpose, with a replacement and a removal.
        for r in (1..=n).rev() {
            tree.insert(event_key(r, 0), r.to_le_bytes().to_vec());
        }
        tree.insert(event_key(3, 0), b"again".to_vec());
        tree.insert(event_key(3, 1), b"second".to_vec());
        assert_eq!(
            tree.remove(&event_key(4, 0)),
            Some(4u64.to_le_bytes().to_vec())
        );
        assert_eq!(tree.remove(&event_key(4, 0)), None);
        // Neighbours on both sides, and an `ev/` key of another shape.
        tree.insert(b"ev".to_vec(), b"before".to_vec());
        tree.insert(b"ev/odd".to_vec(), b"map".to_vec());
        tree.insert(b"ew".to_vec(), b"after".to_vec());
        assert_eq!(tree.get(&event_key(3, 0)), Some(b"again".to_vec()));
        assert_eq!(tree.get(b"ev/odd"), Some(b"map".to_vec()));
        // n events, one more at revision 3, one removed, three others.
        assert_eq!(tree.len(), n as usize + 3);

        let mut expected: Vec<Vec<u8>> = (1..=n)
            .filter(|r| *r != 4)
            .map(|r| event_key(r, 0))
            .chain([
                event_key(3, 1),
                b"ev".to_vec(),
                b"ev/odd".to_vec(),
                b"ew".to_vec(),
            ])
            .collect();
        expected.sort();
        let keys: Vec<_> = tree.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, expected);
        let events: Vec<_> = tree
            .scan_prefix(crate::keys::EVENT_PREFIX)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(events, expected[1..expected.len() - 1]);
        let from: Vec<_> = tree
            .range(&crate::keys::event_from(n - 1), None)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            from,
            [
                event_key(n - 1, 0),
                event_key(n, 0),
                b"ev/odd".to_vec(),
                b"ew".to_vec()
            ]
        );

        // A whole image put in place reads back the same.
        let image: Map = tree
            .iter()
            .map(|(k, v)| (k.into_boxed_slice(), v.into_boxed_slice()))
            .collect();
        let copy = StateTree::new();
        copy.replace(image);
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            tree.iter().collect::<Vec<_>>()
        );
        assert_eq!(copy.len(), tree.len());
        copy.apply_batch(vec![
            (event_key(1, 0), None),
            (event_key(n + 1, 0), Some(Vec::new())),
        ]);
        assert_eq!(copy.get(&event_key(1, 0)), None);
        assert_eq!(copy.get(&event_key(n + 1, 0)), Some(Vec::new()));
    }

    #[test]
    fn a_scan_resumes_after_its_last_key_when_writes_land_between_chunks() {
        let tree = StateTree::new();
        for i in 0..SCAN_CHUNK * 2 {
            tree.insert(key(i * 2), Vec::new());
        }
        let mut scan = tree.scan_prefix(b"k/");
        let first: Vec<_> = scan.by_ref().take(SCAN_CHUNK).map(|(k, _)| k).collect();
        // A key before the scan's position and one after it.
        tree.insert(key(1), Vec::new());
        tree.insert(key(SCAN_CHUNK * 2 + 1), Vec::new());
        let rest: Vec<_> = scan.map(|(k, _)| k).collect();
        assert_eq!(first.len() + rest.len(), SCAN_CHUNK * 2 + 1);
        assert!(!rest.contains(&key(1)));
        assert!(rest.contains(&key(SCAN_CHUNK * 2 + 1)));
    }
}
