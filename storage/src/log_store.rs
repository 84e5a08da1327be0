//! The Raft log and vote on sled.
//!
//! Every append and every vote is acknowledged to openraft only after it is
//! durable ([`crate::durable`]). Appends return as soon as their entries are in
//! sled's buffers and hand their completion to one flusher thread, which
//! flushes once for every append that arrived while the previous flush ran:
//! the group commit. (openraft 0.9 waits for `append` to return before it
//! takes the next client write, so flushing inside `append` would cost one
//! flush per entry on the leader.)

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, Vote};

use crate::codec::{decode, encode};
use crate::durable::Durable;
use crate::error::{raft_io_error, StoreError};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The log store handed to openraft (also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    durable: Durable,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: mpsc::Sender<PendingAppend>,
    /// Held by the background deletion of purged entries, one at a time.
    purging: Arc<Mutex<()>>,
}

/// An append whose entries are in sled's buffers, waiting for a flush.
struct PendingAppend {
    callback: LogFlushed<TypeConfig>,
    started: Instant,
}

/// Flushes `db` once per group of pending appends and completes them in
/// order. A flush that starts after an append was queued covers its
/// entries, since they were inserted before it was queued. The thread ends
/// when the last log store handle is dropped.
fn run_flusher(durable: Durable, pending: mpsc::Receiver<PendingAppend>) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        group.extend(pending.try_iter());
        let flushed = durable.flush();
        metrics::histogram!(crate::telemetry::RAFT_LOG_FLUSH_APPENDS).record(group.len() as f64);
        for append in group {
            metrics::histogram!(crate::telemetry::RAFT_LOG_APPEND_SECONDS)
                .record(append.started.elapsed().as_secs_f64());
            let result = match &flushed {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            append.callback.log_io_completed(result);
        }
    }
}

fn logs_err(verb: ErrorVerb, e: impl Into<StoreError>) -> StorageError {
    raft_io_error(ErrorSubject::Logs, verb, e.into())
}

fn vote_err(verb: ErrorVerb, e: impl Into<StoreError>) -> StorageError {
    raft_io_error(ErrorSubject::Vote, verb, e.into())
}

impl LogStore {
    /// Opens the log in `durable`'s database.
    pub fn open(durable: Durable) -> Result<Self, StoreError> {
        let (flusher, pending) = mpsc::channel();
        let flush_with = durable.clone();
        std::thread::Builder::new()
            .name("cairn-log-flush".into())
            .spawn(move || run_flusher(flush_with, pending))?;
        let db = durable.db();
        Ok(Self {
            log: db.open_tree("log")?,
            meta: db.open_tree("raft")?,
            durable,
            flusher,
            purging: Arc::default(),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.meta.get(key)? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreError> {
        match self.log.last()? {
            Some((_, v)) => Ok(Some(decode::<Entry>(&v)?.log_id)),
            None => Ok(None),
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Deletes every entry whose key is in `keys`, in one batch.
fn delete_range<R: RangeBounds<[u8; 8]>>(log: &sled::Tree, keys: R) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for key in log.range(keys).keys() {
        batch.remove(key?);
    }
    log.apply_batch(batch)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let iter = match range.end_bound() {
            Bound::Included(&i) => self.log.range(index_key(start)..=index_key(i)),
            Bound::Excluded(&i) => self.log.range(index_key(start)..index_key(i)),
            Bound::Unbounded => self.log.range(index_key(start)..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(|e| logs_err(ErrorVerb::Read, e))?;
            entries.push(decode::<Entry>(&v).map_err(|e| logs_err(ErrorVerb::Read, e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self
            .get_meta::<Option<LogId>>(PURGED)
            .map_err(|e| logs_err(ErrorVerb::Read, e))?
            .flatten();
        // Purged entries may still wait for their deletion (see `purge`).
        let last = self
            .last_entry_log_id()
            .map_err(|e| logs_err(ErrorVerb::Read, e))?
            .max(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(|e| vote_err(ErrorVerb::Write, e))?;
        self.meta
            .insert(VOTE, bytes)
            .map_err(|e| vote_err(ErrorVerb::Write, e))?;
        self.durable
            .flush_async()
            .await
            .map_err(|e| vote_err(ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE)
            .map_err(|e| vote_err(ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: the committed index is a hint that speeds up restart;
        // losing it only means re-learning it from the leader.
        let bytes = encode(&committed).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        self.meta
            .insert(COMMITTED, bytes)
            .map_err(|e| logs_err(ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED)
            .map_err(|e| logs_err(ErrorVerb::Read, e))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let mut batch = sled::Batch::default();
        let mut count = 0u64;
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| logs_err(ErrorVerb::Write, e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
            count += 1;
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| logs_err(ErrorVerb::Write, e))?;
        metrics::histogram!(crate::telemetry::RAFT_LOG_APPEND_ENTRIES).record(count as f64);
        // Acknowledged only once the flusher has them on disk.
        self.flusher
            .send(PendingAppend { callback, started })
            .map_err(|_| {
                logs_err(
                    ErrorVerb::Write,
                    std::io::Error::other("log flusher stopped"),
                )
            })?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        delete_range(&self.log, index_key(log_id.index)..)
            .map_err(|e| logs_err(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&Some(log_id)).map_err(|e| logs_err(ErrorVerb::Write, e))?;
        self.meta
            .insert(PURGED, bytes)
            .map_err(|e| logs_err(ErrorVerb::Write, e))?;
        // openraft awaits this inside its core loop, and deleting a
        // snapshot's worth of entries (20,000 of a few KiB) takes about a
        // third of a second in sled: long enough for followers to miss
        // heartbeats and call an election. The purge mark above is what
        // counts (openraft never reads at or below it, and the next purge
        // covers whatever a crash left), so the entries go in the background.
        let (log, purging) = (self.log.clone(), self.purging.clone());
        let upto = index_key(log_id.index);
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = purging.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(error) = delete_range(&log, ..=upto) {
                tracing::warn!(%error, "deleting purged log entries failed; the next purge retries");
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn store_with(entries: u64) -> LogStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::open(Durable::temporary(db)).unwrap();
        for index in 1..=entries {
            let entry = Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            };
            store
                .log
                .insert(index_key(index), encode(&entry).unwrap())
                .unwrap();
        }
        store
    }

    async fn wait_for_len(store: &LogStore, len: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.log.len() != len {
            assert!(
                Instant::now() < deadline,
                "{} entries left",
                store.log.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn purge_marks_at_once_and_deletes_the_entries_behind_it() {
        let mut store = store_with(10);
        store.purge(log_id(6)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(6)));
        assert_eq!(state.last_log_id, Some(log_id(10)));
        wait_for_len(&store, 4).await;
        let rest = store.try_get_log_entries(7..=10).await.unwrap();
        assert_eq!(rest.len(), 4);

        // Purging the whole log leaves its last id as the last log id, before
        // and after the entries are gone.
        store.purge(log_id(10)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(10)));
        wait_for_len(&store, 0).await;
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(10)));
    }
}
