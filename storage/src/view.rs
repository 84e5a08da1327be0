//! A write overlay over the state tree: apply reads through it and writes
//! into it, and the whole overlay is committed as one atomic batch (after
//! the content files it wrote, [`crate::content`]).

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::de::DeserializeOwned;

use crate::codec::decode;
use crate::content::ContentChanges;
use crate::error::StoreError;
use crate::event::Event;
use crate::state_tree::{Batch, StateTree};

/// Key/value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Pending writes layered over the state tree. `None` marks a delete.
pub struct Overlay<'a> {
    tree: &'a StateTree,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Change events recorded by this batch, in order, for live watchers.
    pub events: Vec<Event>,
    /// Artifact content files this batch writes and drops.
    pub content: ContentChanges,
}

impl<'a> Overlay<'a> {
    /// An empty overlay over `tree`.
    pub fn new(tree: &'a StateTree) -> Self {
        Self {
            tree,
            pending: BTreeMap::new(),
            events: Vec::new(),
            content: ContentChanges::default(),
        }
    }

    /// The value of `key` as apply currently sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_with(key, |v| v.map(<[u8]>::to_vec)))
    }

    /// The value of `key` as apply currently sees it, decoded where it lies
    /// (see [`StateTree::load`]).
    pub fn load<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        Ok(self.get_with(key, |v| v.map(decode).transpose())?)
    }

    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self.pending.get(key) {
            Some(v) => f(v.as_deref()),
            None => self.tree.get_with(key, f),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Live keys in `[start, end)`, in order, with pending writes merged in,
    /// all read at once (see [`Overlay::scan`]).
    pub fn range(&self, start: &[u8], end: &[u8]) -> Result<Pairs, StoreError> {
        self.scan(start, end).collect()
    }

    /// Live pairs in `[start, end)`, in order, with pending writes merged in,
    /// read lazily: a scan that stops early touches only what it read.
    pub fn scan<'s>(
        &'s self,
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 's {
        let mut tree = self.tree.range(start, Some(end)).peekable();
        let bounds = (
            Bound::Included(start.to_vec()),
            Bound::Excluded(end.to_vec()),
        );
        let mut pending = self.pending.range(bounds).peekable();
        std::iter::from_fn(move || loop {
            let tree_key = tree.peek().map(|(k, _)| k.clone());
            // A pending write at or before the tree's next key comes first,
            // and shadows a tree entry with the same key.
            let take_pending = match (&tree_key, pending.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(tk), Some((pk, _))) => pk.as_slice() <= tk.as_slice(),
            };
            if take_pending {
                let (k, v) = pending.next()?;
                if tree_key.as_deref() == Some(k.as_slice()) {
                    tree.next();
                }
                match v {
                    Some(v) => return Some(Ok((k.clone(), v.clone()))),
                    None => continue,
                }
            }
            return tree.next().map(Ok);
        })
    }

    /// The pending writes as one batch, the events they record and the
    /// content files to write before the batch is applied.
    pub fn into_batch(self) -> (Batch, Vec<Event>, ContentChanges) {
        (
            self.pending.into_iter().collect(),
            self.events,
            self.content,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_merges_pending_writes_in_order_and_matches_range() {
        let tree = StateTree::new();
        for k in ["a", "c", "e", "g"] {
            tree.insert(k.as_bytes().to_vec(), k.as_bytes().to_vec());
        }
        let mut view = Overlay::new(&tree);
        view.put(b"b".to_vec(), b"B".to_vec()); // new, between tree keys
        view.put(b"c".to_vec(), b"C".to_vec()); // shadows the tree's value
        view.delete(b"e".to_vec()); // hides a tree key
        view.put(b"h".to_vec(), b"H".to_vec()); // after the last tree key
        view.put(b"z".to_vec(), b"Z".to_vec()); // outside the range

        let scanned: Vec<_> = view.scan(b"a", b"y").map(|r| r.unwrap()).collect();
        let pairs = |v: &[(&str, &str)]| -> Pairs {
            v.iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            scanned,
            pairs(&[("a", "a"), ("b", "B"), ("c", "C"), ("g", "g"), ("h", "H")])
        );
        assert_eq!(scanned, view.range(b"a", b"y").unwrap());
        // Stopping early reads no further.
        let first: Vec<_> = view.scan(b"b", b"y").take(2).map(|r| r.unwrap()).collect();
        assert_eq!(first, pairs(&[("b", "B"), ("c", "C")]));
    }
}
