//! A write overlay over the sled state tree: apply reads through it and
//! writes into it, and the whole overlay is committed as one atomic batch.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::StoreError;
use crate::event::Event;

/// Key/value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Pending writes layered over a sled tree. `None` marks a delete.
pub struct Overlay<'a> {
    tree: &'a sled::Tree,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Change events recorded by this batch, in order, for live watchers.
    pub events: Vec<Event>,
}

impl<'a> Overlay<'a> {
    /// An empty overlay over `tree`.
    pub fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            pending: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The value of `key` as apply currently sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Live keys in `[start, end)`, in order, with pending writes merged in.
    pub fn range(&self, start: &[u8], end: &[u8]) -> Result<Pairs, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.tree.range(start..end) {
            let (k, v) = item?;
            merged.insert(k.to_vec(), v.to_vec());
        }
        let bounds = (
            Bound::Included(start.to_vec()),
            Bound::Excluded(end.to_vec()),
        );
        for (k, v) in self.pending.range(bounds) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// The pending writes as one sled batch, and the events they record.
    pub fn into_batch(self) -> (sled::Batch, Vec<Event>) {
        let mut batch = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        (batch, self.events)
    }
}
