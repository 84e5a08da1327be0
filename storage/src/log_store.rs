//! The Raft log and vote, in a write-ahead log of their own.
//!
//! The log lives in `raft-log`'s chunked WAL, not in sled: an append is a
//! sequential write of checksummed records plus one `fdatasync` of the open
//! chunk file, where a sled tree paid for its pages, its own log and a
//! `syncfs` of the whole file system on every append. Every append and every
//! vote is acknowledged to openraft only after its records are synced, by
//! the WAL's flush worker. (openraft 0.9 waits for each append to be synced
//! before it goes on, so the group commit that matters happens before the
//! log, in the proposer's batches.)
//!
//! The state machine is durable only as its newest snapshot
//! ([`crate::state_machine`]), whose index it publishes. A purge beyond
//! that index waits in memory until the state catches up: openraft purges
//! behind a snapshot it installs before the install is durable, and a crash
//! in between must not leave a log that lacks entries the durable state
//! lacks too.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, Vote};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::RaftLog;

use crate::codec::{decode, encode};
use crate::error::{raft_io_error, StoreError};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Largest chunk file. A chunk's payloads stay cached until the chunk is
/// closed and synced, and a whole chunk is read at once on start, so this
/// bounds the log's memory; purged chunks are deleted whole.
const CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Payloads of closed chunks kept in memory for replication reads. A
/// follower that is up to date is served from the open chunk's cache, so
/// this only spares a lagging one a read from the file; kept small because
/// an idle node holds it whole after a burst of large artifacts.
const CACHE_BYTES: usize = 1024 * 1024;
const CACHE_ITEMS: usize = 8192;
/// How long the flush worker waits for more writes before it syncs: not at
/// all, since openraft hands over one append at a time and waits for it.
const GROUP_WAIT: Duration = Duration::ZERO;
/// The largest record the WAL reads back: above the largest entry (a
/// 16 MiB artifact, or a batch of small writes), so that a damaged length
/// cannot ask for gigabytes before the record's checksum is checked.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// How long an append that needs a deferred purge waits for the state
/// machine to make the purged entries durable before it purges anyway.
const DEFERRED_PURGE_WAIT: Duration = Duration::from_secs(10);
/// The buffer that replays one chunk on start.
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// The folder of the log, inside a store's folder.
pub const LOG_DIR: &str = "raft-log";

/// Cairn's types for the WAL: openraft's log id and vote, each entry's
/// payload as the codec's bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = Coded<LogId>;
    type LogPayload = Payload;
    type Vote = Coded<Vote<NodeId>>;
    type UserData = ();
    type Callback = Flushed;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.0.len() as u64
    }
}

/// A value the WAL stores through the one codec ([`crate::codec`]), framed
/// by its length.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Coded<T>(pub T);

impl<T: serde::Serialize> Encode for Coded<T> {
    fn encode<W: io::Write>(&self, w: W) -> Result<usize, io::Error> {
        let bytes = encode(&self.0).map_err(io::Error::other)?;
        write_framed(w, &bytes)
    }
}

impl<T: serde::de::DeserializeOwned> Decode for Coded<T> {
    fn decode<R: io::Read>(r: R) -> Result<Self, io::Error> {
        let bytes = read_framed(r)?;
        Ok(Self(decode(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, e)
        })?))
    }
}

/// An entry's payload, encoded once on append and decoded on every read.
/// Cloning it (the WAL's cache hands out clones) shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(bytes::Bytes);

impl Encode for Payload {
    fn encode<W: io::Write>(&self, w: W) -> Result<usize, io::Error> {
        write_framed(w, &self.0)
    }
}

impl Decode for Payload {
    fn decode<R: io::Read>(r: R) -> Result<Self, io::Error> {
        Ok(Self(read_framed(r)?.into()))
    }
}

fn write_framed<W: io::Write>(mut w: W, bytes: &[u8]) -> Result<usize, io::Error> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "log record over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)?;
    Ok(4 + bytes.len())
}

fn read_framed<R: io::Read>(mut r: R) -> Result<Vec<u8>, io::Error> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log record of {len} bytes"),
        ));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// What the WAL's flush worker completes once a write is synced.
pub enum Flushed {
    /// An openraft append, with when it started (for the latency metric).
    Append {
        /// openraft's completion.
        callback: LogFlushed<TypeConfig>,
        /// When the append was handed to the log.
        started: Instant,
    },
    /// An async caller waiting for its records (a vote) to be durable.
    Wait(tokio::sync::oneshot::Sender<io::Result<()>>),
    /// A thread waiting for its records to be durable (the migration).
    Blocking(std::sync::mpsc::SyncSender<io::Result<()>>),
}

impl raft_log::Callback for Flushed {
    fn send(self, result: Result<(), io::Error>) {
        match self {
            Flushed::Append { callback, started } => {
                metrics::histogram!(crate::telemetry::RAFT_LOG_APPEND_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                callback.log_io_completed(result);
            }
            Flushed::Wait(done) => {
                let _ = done.send(result);
            }
            Flushed::Blocking(done) => {
                // Nobody waiting any more is not an error of the flush.
                let _ = std::sync::mpsc::SyncSender::send(&done, result);
            }
        }
    }
}

/// The log store handed to openraft (also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<Wal>>,
    /// The highest applied index the state machine has made durable.
    durable_applied: Arc<AtomicU64>,
}

/// The WAL and the purge it holds back.
struct Wal {
    log: RaftLog<WalTypes>,
    /// A purge openraft asked for past the durable applied index.
    deferred_purge: Option<LogId>,
}

impl Wal {
    fn purge_now(&mut self, upto: LogId) -> io::Result<()> {
        if self.log.log_state().purged().is_some_and(|p| p.0 >= upto) {
            return Ok(());
        }
        // The chunks behind the purge point are deleted by the flush
        // worker once the purge record is synced, off openraft's core loop.
        self.log.purge(Coded(upto))?;
        self.log.flush(true, None)
    }

    /// Carries out the deferred purge once the state covers it.
    fn settle(&mut self, durable_applied: u64) -> io::Result<()> {
        match self.deferred_purge {
            Some(upto) if upto.index <= durable_applied => {
                self.deferred_purge = None;
                self.purge_now(upto)
            }
            _ => Ok(()),
        }
    }

    /// Whether an append starting at `first` needs the deferred purge first
    /// (a snapshot installed past the end of the log).
    fn needs_purge_for(&self, first: u64) -> bool {
        self.deferred_purge.is_some() && first > self.next_index()
    }

    /// The index the WAL's next entry takes.
    fn next_index(&self) -> u64 {
        self.log.log_state().last().map_or(0, |l| l.0.index + 1)
    }
}

fn logs_err(verb: ErrorVerb, e: impl Into<StoreError>) -> StorageError {
    raft_io_error(ErrorSubject::Logs, verb, e.into())
}

fn vote_err(verb: ErrorVerb, e: impl Into<StoreError>) -> StorageError {
    raft_io_error(ErrorSubject::Vote, verb, e.into())
}

fn wal_config(dir: &Path) -> Result<raft_log::Config, StoreError> {
    let dir = dir
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log folder is not UTF-8"))?;
    let mut config = raft_log::Config::new(dir);
    config.log_cache_capacity = Some(CACHE_BYTES);
    config.log_cache_max_items = Some(CACHE_ITEMS);
    config.wal.chunk_max_size = Some(CHUNK_BYTES);
    config.wal.flush_batch_wait = Some(GROUP_WAIT);
    config.wal.read_buffer_size = Some(READ_BUFFER_BYTES);
    Ok(config)
}

impl LogStore {
    /// Opens the log in the folder `dir` (created if missing). A store
    /// written by an older Cairn, whose log lived in the sled trees `log`
    /// and `raft` of `db`, is moved into the WAL first. `durable_applied`
    /// is the state machine's durable applied index
    /// ([`crate::StateMachine::durable_applied`]), which purges wait for.
    pub fn open(
        dir: &Path,
        db: &sled::Db,
        durable_applied: Arc<AtomicU64>,
    ) -> Result<Self, StoreError> {
        if !dir.exists() {
            crate::log_migration::migrate(db, dir)?;
        }
        crate::log_migration::drop_old_trees(db)?;
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            // The new folder's entry must outlive a power cut, or the next
            // start would take the node for a fresh one without its vote.
            if let Some(parent) = dir.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
        }
        let log = open_wal(dir)?;
        Ok(Self {
            wal: Arc::new(Mutex::new(Wal {
                log,
                deferred_purge: None,
            })),
            durable_applied,
        })
    }

    /// The WAL, locked. A panic while holding the lock may have left a
    /// record queued that the WAL's state does not show, so the log is
    /// then unusable and openraft, told so, stops the node.
    fn wal(&self) -> Result<MutexGuard<'_, Wal>, StoreError> {
        self.wal
            .lock()
            .map_err(|_| io::Error::other("the log's lock is poisoned").into())
    }

    fn durable_applied(&self) -> u64 {
        self.durable_applied.load(Ordering::Acquire)
    }

    /// Waits until everything written so far is synced.
    async fn sync(&self) -> Result<(), StoreError> {
        let (done, synced) = tokio::sync::oneshot::channel();
        self.wal()?.log.flush(true, Some(Flushed::Wait(done)))?;
        synced
            .await
            .map_err(|_| io::Error::other("log flush worker stopped"))??;
        Ok(())
    }

    /// Queues `records` for the flush worker, which completes `done` once
    /// they are synced. An append that needs a deferred purge first (past
    /// an installed snapshot) waits, bounded, for the state machine to make
    /// the purge safe; openraft appends there only after the install, which
    /// is durable when it returns, so this rarely waits. The common append
    /// takes the lock once.
    async fn write_entries(
        &self,
        records: Vec<(Coded<LogId>, Payload)>,
        done: Flushed,
    ) -> Result<(), StoreError> {
        let first = records.first().map(|(id, _)| id.0.index);
        let deadline = Instant::now() + DEFERRED_PURGE_WAIT;
        loop {
            {
                let mut wal = self.wal()?;
                wal.settle(self.durable_applied())?;
                let blocked = first.is_some_and(|first| wal.needs_purge_for(first));
                if blocked && Instant::now() >= deadline {
                    if let Some(upto) = wal.deferred_purge.take() {
                        tracing::warn!(
                            purge = %upto,
                            durable_applied = self.durable_applied(),
                            "purging the log before the state machine made it durable"
                        );
                        wal.purge_now(upto)?;
                    }
                }
                if !blocked || Instant::now() >= deadline {
                    wal.log.append(records)?;
                    wal.log.flush(true, Some(done))?;
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Opens a WAL at `dir` with Cairn's settings.
pub(crate) fn open_wal(dir: &Path) -> Result<RaftLog<WalTypes>, StoreError> {
    Ok(RaftLog::open(Arc::new(wal_config(dir)?))?)
}

/// The folder a migration writes into before it becomes the log.
pub(crate) fn staging_dir(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// The payload bytes of `entry`, for the WAL.
pub(crate) fn wal_record(entry: &Entry) -> Result<(Coded<LogId>, Payload), StoreError> {
    Ok((Coded(entry.log_id), Payload(encode(&entry.payload)?.into())))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let wal = self.wal().map_err(|e| logs_err(ErrorVerb::Read, e))?;
        let from = match wal.deferred_purge {
            Some(purged) => from.max(purged.index + 1),
            None => from,
        };
        let mut entries = Vec::new();
        if from >= to {
            return Ok(entries);
        }
        for item in wal.log.read(from, to) {
            let (log_id, payload) = item.map_err(|e| logs_err(ErrorVerb::Read, e))?;
            entries.push(Entry {
                log_id: log_id.0,
                payload: decode(&payload.0).map_err(|e| logs_err(ErrorVerb::Read, e))?,
            });
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let wal = self.wal().map_err(|e| logs_err(ErrorVerb::Read, e))?;
        let state = wal.log.log_state();
        // A deferred purge counts as done: openraft never needs those
        // entries again; they only stay on disk for a crash.
        let purged = state.purged().map(|l| l.0).max(wal.deferred_purge);
        Ok(LogState {
            last_purged_log_id: purged,
            // A purge past the last entry (a snapshot installed on a lagging
            // follower) moves the last log id with it.
            last_log_id: state.last().map(|l| l.0).max(purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.wal()
            .and_then(|mut wal| Ok(wal.log.save_vote(Coded(*vote))?))
            .map_err(|e| vote_err(ErrorVerb::Write, e))?;
        self.sync().await.map_err(|e| vote_err(ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let wal = self.wal().map_err(|e| vote_err(ErrorVerb::Read, e))?;
        Ok(wal.log.log_state().vote().map(|v| v.0))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the committed index is a hint that speeds up restart;
        // losing it only means re-learning it from the leader. The next
        // synced append covers it, since the WAL is written in order.
        let Some(committed) = committed else {
            return Ok(());
        };
        let mut wal = self.wal().map_err(|e| logs_err(ErrorVerb::Write, e))?;
        wal.settle(self.durable_applied())
            .and_then(|_| wal.log.commit(Coded(committed)).map(drop))
            .and_then(|_| wal.log.flush(false, None))
            .map_err(|e| logs_err(ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let wal = self.wal().map_err(|e| logs_err(ErrorVerb::Read, e))?;
        Ok(wal.log.log_state().committed().map(|l| l.0))
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
        let records = entries
            .into_iter()
            .map(|entry| wal_record(&entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| logs_err(ErrorVerb::Write, e))?;
        metrics::histogram!(crate::telemetry::RAFT_LOG_APPEND_ENTRIES).record(records.len() as f64);
        self.write_entries(records, Flushed::Append { callback, started })
            .await
            .map_err(|e| logs_err(ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Synced in the background: the appends that follow a truncation
        // are acknowledged only after a sync that covers it.
        let mut wal = self.wal().map_err(|e| logs_err(ErrorVerb::Delete, e))?;
        if log_id.index >= wal.next_index() {
            // Nothing at or after it (behind a deferred purge, the WAL may
            // end before openraft's view of the log does).
            return Ok(());
        }
        wal.log
            .truncate(log_id.index)
            .and_then(|_| wal.log.flush(true, None))
            .map_err(|e| logs_err(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let durable_applied = self.durable_applied();
        let mut wal = self.wal().map_err(|e| logs_err(ErrorVerb::Delete, e))?;
        if log_id.index <= durable_applied {
            return wal
                .purge_now(log_id)
                .map_err(|e| logs_err(ErrorVerb::Delete, e));
        }
        // Behind a snapshot being installed: openraft needs none of these
        // entries again, and they stay on disk until the install is durable.
        wal.deferred_purge = wal.deferred_purge.max(Some(log_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    /// A log whose state machine has made everything durable.
    fn open(dir: &Path) -> LogStore {
        open_with(dir, Arc::new(AtomicU64::new(u64::MAX)))
    }

    fn open_with(dir: &Path, durable_applied: Arc<AtomicU64>) -> LogStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        LogStore::open(&dir.join(LOG_DIR), &db, durable_applied).unwrap()
    }

    /// Appends and waits until the entries are durable. (openraft's own
    /// callback path is covered by its storage suite, in tests/.)
    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        let records: Vec<_> = entries.iter().map(|e| wal_record(e).unwrap()).collect();
        let (done, synced) = tokio::sync::oneshot::channel();
        store
            .write_entries(records, Flushed::Wait(done))
            .await
            .unwrap();
        synced.await.unwrap().unwrap();
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn entries_and_vote_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (0..5).map(|i| blank(1, i)).collect()).await;
        let vote = Vote::new_committed(1, 1);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(1, 3))).await.unwrap();
        drop(store);

        let mut store = open(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_purged_log_id, None);
        let entries = store.try_get_log_entries(1..=3).await.unwrap();
        assert_eq!(indexes(&entries), vec![1, 2, 3]);
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 3)));
    }

    #[tokio::test]
    async fn truncate_drops_the_entry_and_all_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (0..6).map(|i| blank(1, i)).collect()).await;
        store.truncate(log_id(1, 3)).await.unwrap();
        // A new leader's entries take the freed indexes.
        append(&mut store, vec![blank(2, 3)]).await;
        let entries = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(indexes(&entries), vec![0, 1, 2, 3]);
        assert_eq!(entries[3].log_id, log_id(2, 3));
        drop(store);
        let mut store = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 3)));
    }

    #[tokio::test]
    async fn purge_hides_the_entries_behind_it_and_may_pass_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (0..10).map(|i| blank(1, i)).collect()).await;
        store.purge(log_id(1, 6)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 6)));
        assert_eq!(state.last_log_id, Some(log_id(1, 9)));
        let rest = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(indexes(&rest), vec![7, 8, 9]);
        // An older purge point changes nothing.
        store.purge(log_id(1, 2)).await.unwrap();

        // A snapshot installed past the log purges beyond its last entry;
        // the log then continues right after the snapshot.
        store.purge(log_id(3, 20)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(3, 20)));
        append(&mut store, vec![blank(3, 21)]).await;
        drop(store);
        let mut store = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 20)));
        assert_eq!(state.last_log_id, Some(log_id(3, 21)));
        let rest = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(indexes(&rest), vec![21]);
    }

    #[tokio::test]
    async fn a_purge_past_the_durable_state_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let durable = Arc::new(AtomicU64::new(3));
        let mut store = open_with(dir.path(), durable.clone());
        append(&mut store, (0..10).map(|i| blank(1, i)).collect()).await;
        let on_disk = |store: &LogStore| store.wal().unwrap().log.log_state().purged().map(|p| p.0);
        // Up to the durable index: at once.
        store.purge(log_id(1, 3)).await.unwrap();
        assert_eq!(on_disk(&store), Some(log_id(1, 3)));
        // Past it: done as openraft sees it, but the entries stay on disk,
        // so a crash now finds them again.
        store.purge(log_id(1, 7)).await.unwrap();
        store.save_committed(Some(log_id(1, 9))).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 7)));
        assert_eq!(
            indexes(&store.try_get_log_entries(0..).await.unwrap()),
            vec![8, 9]
        );
        assert_eq!(on_disk(&store), Some(log_id(1, 3)));
        // Once the state is durable, the next write carries it out.
        durable.store(8, Ordering::Release);
        store.save_committed(Some(log_id(1, 9))).await.unwrap();
        assert_eq!(on_disk(&store), Some(log_id(1, 7)));
        drop(store);
        let mut store = open_with(dir.path(), durable);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 7)));
        assert_eq!(
            indexes(&store.try_get_log_entries(0..).await.unwrap()),
            vec![8, 9]
        );
    }

    #[tokio::test]
    async fn an_append_past_an_installed_snapshot_purges_once_it_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let durable = Arc::new(AtomicU64::new(4));
        let mut store = open_with(dir.path(), durable.clone());
        append(&mut store, (0..5).map(|i| blank(1, i)).collect()).await;
        // A snapshot at 20 is being installed: openraft sees the log end
        // there at once, the WAL only once the install is durable.
        store.purge(log_id(2, 20)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 20)));
        let on_disk = store.wal().unwrap().log.log_state().last().map(|l| l.0);
        assert_eq!(on_disk, Some(log_id(1, 4)));
        let install = {
            let durable = durable.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                durable.store(20, Ordering::Release);
            })
        };
        // The entry after the snapshot needs the purge, and gets it once
        // the install is durable.
        append(&mut store, vec![blank(2, 21)]).await;
        install.await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 20)));
        assert_eq!(state.last_log_id, Some(log_id(2, 21)));
        let on_disk = store.wal().unwrap().log.log_state().purged().map(|l| l.0);
        assert_eq!(on_disk, Some(log_id(2, 20)));
    }

    #[tokio::test]
    async fn purged_chunks_are_deleted_and_the_log_reopens_whole_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let log_dir = dir.path().join(LOG_DIR);
        let chunk_files = || {
            std::fs::read_dir(&log_dir)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some("wal".as_ref()))
                .count()
        };
        // 24 entries of 512 KiB fill several 2 MiB chunks.
        for i in 0..24 {
            let record = (Coded(log_id(1, i)), Payload(vec![7u8; 512 * 1024].into()));
            let (done, synced) = tokio::sync::oneshot::channel();
            store
                .write_entries(vec![record], Flushed::Wait(done))
                .await
                .unwrap();
            synced.await.unwrap().unwrap();
        }
        assert!(chunk_files() >= 6, "{} chunk files", chunk_files());
        store.purge(log_id(1, 20)).await.unwrap();
        // The chunks behind the purge go on a thread of their own, after
        // the purge is synced: wait for them, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while chunk_files() > 3 {
            assert!(Instant::now() < deadline, "{} chunk files", chunk_files());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Closing the log waits for any removal still under way, so the
        // next open sees every chunk whole or not at all.
        drop(store);
        let mut store = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
        assert_eq!(state.last_log_id, Some(log_id(1, 23)));
    }

    #[test]
    fn a_damaged_record_length_is_refused_before_allocating() {
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"short");
        let err = Payload::decode(&bytes[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
