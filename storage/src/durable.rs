//! Durable flushes of the sled database, and of the file system it is on.
//!
//! sled 0.34 flushes with `sync_file_range(2)` on Linux. That writes its
//! pages out, but it neither persists the file's metadata (the log file grows
//! with every new segment) nor flushes the device's write cache, and sled
//! never syncs the separate files it writes for large pages (`blobs/`). Until
//! the file system itself has synced, a power loss can take back writes that
//! sled reports flushed. So every flush that something relies on goes
//! through [`Durable::flush`], which ends with `syncfs(2)` on the store's
//! folder. sled now keeps only this replica's digests; the same sync also
//! makes the artifact content files that apply wrote unsynced durable
//! before a snapshot names them, and the files an install or a migration
//! wrote before their state is durable ([`crate::content`]). (The Raft log
//! has a write-ahead log of its own, [`crate::log_store`]; the applied
//! state is durable as its newest snapshot, [`crate::state_machine`].)

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::StoreError;

/// A sled database and the handle that syncs the file system it lives on.
#[derive(Clone)]
pub struct Durable {
    db: sled::Db,
    /// An open handle inside the store's folder; `None` for a temporary
    /// database, which sled keeps off disk.
    anchor: Option<Arc<File>>,
}

impl Durable {
    /// Flushes of `db`, which lives in the folder `dir`, will be durable.
    pub fn new(db: sled::Db, dir: &Path) -> io::Result<Self> {
        Ok(Self {
            db,
            anchor: Some(Arc::new(File::open(dir)?)),
        })
    }

    /// For a temporary database (tests): flushes are sled's own.
    pub fn temporary(db: sled::Db) -> Self {
        Self { db, anchor: None }
    }

    /// The database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Writes out everything sled has buffered and makes it durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(anchor) = &self.anchor {
            sync_file_system(anchor)?;
        }
        Ok(())
    }

    /// [`Durable::flush`] off the async runtime's threads.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let durable = self.clone();
        tokio::task::spawn_blocking(move || durable.flush())
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }
}

/// Syncs the whole file system `anchor` is on: sled's log file with its
/// length, the blob files and the folder entries naming them.
#[cfg(target_os = "linux")]
fn sync_file_system(anchor: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `anchor` keeps open
    // for the whole call.
    if unsafe { libc::syncfs(anchor.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere sled fsyncs its log file itself; syncing the folder also makes
/// new files' entries durable. (Blob files are synced only on Linux.)
#[cfg(not(target_os = "linux"))]
fn sync_file_system(anchor: &File) -> io::Result<()> {
    anchor.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_an_error_not_a_silent_non_durable_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        assert!(Durable::new(db, &dir.path().join("absent")).is_err());
    }
}
