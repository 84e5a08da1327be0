//! Deletes purged chunk files on a thread of its own (Cairn's patch).
//!
//! Unlinking a file frees its blocks inside the `unlink` call; on ext4 that
//! costs about a millisecond per MiB. Done on the flush worker, a purge of
//! tens of chunks held every write queued behind it for as long, so a Raft
//! log stalled for 100 ms and more after each snapshot. The worker now only
//! hands the paths over, after the purge record is synced as before; this
//! thread unlinks them and syncs the directory. A removal that a crash
//! interrupts is redone on the next open, which schedules every chunk
//! behind the purge point for removal again.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use crate::Config;
use std::sync::Arc;

/// The remover thread and the queue of paths it deletes.
pub(crate) struct ChunkRemover {
    tx: Option<Sender<Vec<String>>>,
    handle: Option<JoinHandle<io::Result<()>>>,
}

impl ChunkRemover {
    pub(crate) fn spawn(config: Arc<Config>) -> io::Result<Self> {
        let (tx, rx) = channel();
        let handle = std::thread::Builder::new()
            .name("chunked_wal_chunk_remover".to_string())
            .spawn(move || remove_all(&config, rx))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues `paths` for deletion. Fails with the thread's error if an
    /// earlier deletion failed and stopped it.
    pub(crate) fn remove(&mut self, paths: Vec<String>) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(paths).is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { self.finish() }
    }

    /// Deletes everything queued, then stops the thread and returns its
    /// result. Later calls return `Ok`.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.handle.take() {
            Some(handle) => handle.join().map_err(|_| {
                io::Error::other("chunk remover thread panicked")
            })?,
            None => Ok(()),
        }
    }
}

fn remove_all(config: &Config, rx: Receiver<Vec<String>>) -> io::Result<()> {
    while let Ok(mut paths) = rx.recv() {
        // Everything queued meanwhile goes under one directory sync.
        while let Ok(more) = rx.try_recv() {
            paths.extend(more);
        }
        log::info!("ChunkRemover: removing {:?}", paths);
        for path in &paths {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                // Removed already: by a removal a crash interrupted and the
                // next open scheduled again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // Commit the unlinks so a removed chunk cannot reappear after
        // power loss.
        config.sync_dir()?;
    }
    Ok(())
}
