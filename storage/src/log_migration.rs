//! Moves a log kept in sled (Cairn before the WAL) into the WAL.
//!
//! The old layout kept entries in the sled tree `log` (keyed by big-endian
//! index) and the vote, committed and purged ids in the tree `raft`. The
//! move writes a complete WAL into a staging folder, syncs it, and only then
//! renames it into place, so a crash at any point leaves either the old log
//! (moved again on the next start) or the whole new one.

use std::path::Path;

use openraft::Vote;
use raft_log::api::raft_log_writer::RaftLogWriter;

use crate::codec::decode;
use crate::error::StoreError;
use crate::log_store::{open_wal, staging_dir, wal_record, Coded};
use crate::types::{Entry, LogId, NodeId};

const OLD_LOG_TREE: &[u8] = b"log";
const OLD_META_TREE: &[u8] = b"raft";

/// Entries moved per append, so a large log never sits in memory at once.
const BATCH: usize = 256;

fn old_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match meta.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Writes the log held in `db`'s old trees, if any, as a WAL at `dir`.
pub(crate) fn migrate(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let names = db.tree_names();
    if !names.iter().any(|n| n.as_ref() == OLD_META_TREE) {
        return Ok(());
    }
    let meta = db.open_tree(OLD_META_TREE)?;
    let log = db.open_tree(OLD_LOG_TREE)?;
    if meta.is_empty() && log.is_empty() {
        return Ok(());
    }
    let staging = staging_dir(dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    {
        let mut wal = open_wal(&staging)?;
        if let Some(vote) = old_meta::<Vote<NodeId>>(&meta, b"vote")? {
            wal.save_vote(Coded(vote))?;
        }
        let purged = old_meta::<Option<LogId>>(&meta, b"purged")?.flatten();
        if let Some(purged) = purged {
            wal.purge(Coded(purged))?;
        }
        let mut batch = Vec::with_capacity(BATCH);
        for item in log.iter() {
            let (_, bytes) = item?;
            let entry: Entry = decode(&bytes)?;
            // Entries at or below the purge point may still have been
            // waiting for their background deletion.
            if purged.is_some_and(|p| entry.log_id.index <= p.index) {
                continue;
            }
            batch.push(wal_record(&entry)?);
            if batch.len() == BATCH {
                wal.append(std::mem::take(&mut batch))?;
            }
        }
        wal.append(batch)?;
        if let Some(committed) = old_meta::<Option<LogId>>(&meta, b"committed")?.flatten() {
            if wal.log_state().last().is_some_and(|l| l.0 >= committed) {
                wal.commit(Coded(committed))?;
            }
        }
        let (done, synced) = std::sync::mpsc::sync_channel(1);
        wal.flush(true, Some(crate::log_store::Flushed::Blocking(done)))?;
        synced
            .recv()
            .map_err(|_| std::io::Error::other("log flush worker stopped"))??;
    }
    std::fs::rename(&staging, dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    tracing::info!(log = %dir.display(), "moved the Raft log from sled into its own WAL");
    Ok(())
}

/// Removes the old trees once the WAL is in place (a crash between the
/// rename and this leaves them to the next start).
pub(crate) fn drop_old_trees(db: &sled::Db) -> Result<(), StoreError> {
    for name in [OLD_LOG_TREE, OLD_META_TREE] {
        if db.tree_names().iter().any(|n| n.as_ref() == name) {
            db.drop_tree(name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

    use super::*;
    use crate::codec::encode;
    use crate::log_store::{LogStore, LOG_DIR};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    #[tokio::test]
    async fn a_sled_log_moves_into_the_wal_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let log = db.open_tree(OLD_LOG_TREE).unwrap();
        let meta = db.open_tree(OLD_META_TREE).unwrap();
        // Entries 3..=4 were purged but not yet deleted.
        for index in 3..=9 {
            let entry = Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            };
            log.insert(index.to_be_bytes(), encode(&entry).unwrap())
                .unwrap();
        }
        let vote = Vote::new_committed(2, 1);
        meta.insert(b"vote", encode(&vote).unwrap()).unwrap();
        meta.insert(b"purged", encode(&Some(log_id(4))).unwrap())
            .unwrap();
        meta.insert(b"committed", encode(&Some(log_id(8))).unwrap())
            .unwrap();

        let wal_dir = dir.path().join(LOG_DIR);
        let mut store = LogStore::open(&wal_dir, &db, Default::default()).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == OLD_META_TREE));
        assert!(!staging_dir(&wal_dir).exists());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(8)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(4)));
        assert_eq!(state.last_log_id, Some(log_id(9)));
        let entries = store.try_get_log_entries(0..).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![5, 6, 7, 8, 9]);
        drop(store);

        // Reopening finds the WAL and does not move anything again.
        let mut store = LogStore::open(&wal_dir, &db, Default::default()).unwrap();
        assert_eq!(store.try_get_log_entries(0..).await.unwrap().len(), 5);
    }
}
