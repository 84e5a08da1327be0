//! Artifact content in files of its own, one immutable file per version.
//!
//! The state tree keeps an artifact's metadata; its content (as stored:
//! lz4 block or raw bytes) lives in `content/<name>`, where the name follows
//! from the metadata alone ([`file_name`]), so every replica names the same
//! version the same way and nothing in the tree points at a file. sled 0.34
//! counts a value it keeps in a blob file at the size of its pointer, so
//! content kept in sled stayed resident whatever its page cache allowed;
//! files are read through the OS page cache and cost the process nothing.
//!
//! # Why a file is always there when the state names it
//!
//! - A version's file is written under a temporary name and renamed into
//!   place before the batch that records the metadata is applied
//!   ([`ContentDir::write`]): no state that names it exists before it does.
//!   Apply does not sync it: the entry that wrote it is durable in the Raft
//!   log, and a node that restarts re-applies every entry after its newest
//!   snapshot, writing such files again.
//! - Before a snapshot is written, one sync of the whole file system makes
//!   every file its state names durable ([`crate::state_machine`]); the
//!   snapshot also carries the content itself, and a file it names that is
//!   missing when the node opens is written again from it.
//! - A file is deleted right after the batch that dropped its version
//!   ([`ContentDir::remove`]): the state in memory no longer names it, and
//!   a state recovered after a crash is the newest snapshot (which carries
//!   its own copy) plus entries re-applied after it.
//! - Names are never reused: they carry the log index of the version's write.
//! - Files no state names (a crash between a write and its batch, content
//!   replaced by a snapshot) are removed when the store opens and after
//!   every install ([`ContentDir::sweep`]).
//! - While a snapshot is written from a state taken earlier
//!   ([`crate::image`]), the files it still has to read are not deleted:
//!   every deletion waits until the last such snapshot is done
//!   ([`ContentDir::pin`]).
//!
//! Snapshots and digests still carry content as `blob/<id>` records of
//! [`StoredContent`] in key order ([`crate::state_machine`]), so their format
//! did not change with where content is kept.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::artifact::{ArtifactMeta, StoredContent};
use crate::error::StoreError;

/// The folder of content files, inside a store's folder.
pub const CONTENT_DIR: &str = "content";
/// Prefix of a file being written; such files are never named by the state.
const TMP_PREFIX: &str = "tmp-";

/// The file name of the content of `meta`'s version: the id's hash (ids are
/// arbitrary text), the log index that wrote the version and the version.
/// A version deleted and created again in one entry gets the same name, and
/// the overlay keeps only the last of such writes.
pub fn file_name(meta: &ArtifactMeta) -> String {
    let id_hash = Sha256::digest(meta.id.as_bytes());
    format!(
        "{}-{:016x}-{:x}",
        hex::encode(&id_hash[..16]),
        meta.revision,
        meta.version
    )
}

/// What one applied batch does to content files: the versions it wrote
/// (by file name, only the last write of a name) and the files of versions
/// that existed before the batch and that it replaced or deleted.
#[derive(Debug, Default)]
pub struct ContentChanges {
    /// Files to write, by name.
    pub written: BTreeMap<String, StoredContent>,
    /// Files no longer named once the batch is applied.
    pub dropped: Vec<String>,
}

impl ContentChanges {
    /// Records the content of a new version.
    pub fn write(&mut self, name: String, content: StoredContent) {
        self.written.insert(name, content);
    }

    /// Records that the version named `name` is replaced or deleted. A
    /// version written by this same batch is simply not written.
    pub fn drop_file(&mut self, name: String) {
        if self.written.remove(&name).is_none() {
            self.dropped.push(name);
        }
    }
}

/// The content folder of one state machine.
pub(crate) struct ContentDir {
    dir: PathBuf,
    pins: Arc<Mutex<Pins>>,
}

/// Deletions held back while snapshots are written from captured states.
#[derive(Default)]
struct Pins {
    /// Snapshots being written that may still read a file.
    open: usize,
    /// Files to delete once `open` is back to zero.
    deferred: Vec<PathBuf>,
}

/// Keeps every content file in place while it lives (see
/// [`ContentDir::pin`]); deletions asked for meanwhile happen when the last
/// pin goes.
pub(crate) struct ContentPin {
    pins: Arc<Mutex<Pins>>,
}

impl Drop for ContentPin {
    fn drop(&mut self) {
        let deferred = {
            let mut pins = lock(&self.pins);
            pins.open -= 1;
            if pins.open > 0 {
                return;
            }
            std::mem::take(&mut pins.deferred)
        };
        for path in deferred {
            // A file left behind is unnamed and swept when the store opens.
            if let Err(e) = remove_if_present(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a content file");
            }
        }
    }
}

fn lock(pins: &Mutex<Pins>) -> MutexGuard<'_, Pins> {
    // Every update under the lock is a counter or a push, complete or not
    // begun when a panic unwinds.
    pins.lock().unwrap_or_else(|p| p.into_inner())
}

impl ContentDir {
    /// Opens (creating) the content folder `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            pins: Arc::default(),
        })
    }

    /// Holds every file in place until the pin is dropped, for a snapshot
    /// that reads the content of a state taken earlier: a version that
    /// state names may be dropped by entries applied since.
    pub(crate) fn pin(&self) -> ContentPin {
        lock(&self.pins).open += 1;
        ContentPin {
            pins: self.pins.clone(),
        }
    }

    /// Deletes `path` now, or when the last pin goes.
    fn delete(&self, path: PathBuf) -> Result<(), StoreError> {
        {
            let mut pins = lock(&self.pins);
            if pins.open > 0 {
                pins.deferred.push(path);
                return Ok(());
            }
        }
        remove_if_present(&path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes each file, unsynced (see the module docs), before the caller
    /// applies the batch that names them.
    pub(crate) fn write(
        &self,
        written: &BTreeMap<String, StoredContent>,
    ) -> Result<(), StoreError> {
        for (name, content) in written {
            self.put_file(name, &content.bytes, false)?;
        }
        Ok(())
    }

    /// Whether the file `name` exists.
    pub(crate) fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Writes one file without syncing it, for an install or a migration
    /// that writes many: the caller syncs the whole file system once before
    /// the state that names them is durable.
    pub(crate) fn write_unsynced(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_file(name, bytes, false)
    }

    /// Writes `bytes` under a temporary name and renames it to `name`, so a
    /// reader never sees half a file.
    fn put_file(&self, name: &str, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
        let tmp = self.path(&format!("{TMP_PREFIX}{name}"));
        let dest = self.path(name);
        {
            // A file written again is no longer one to delete later.
            let mut pins = lock(&self.pins);
            if !pins.deferred.is_empty() {
                pins.deferred.retain(|p| *p != tmp && *p != dest);
            }
        }
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_data()?;
        }
        fs::rename(&tmp, &dest)?;
        Ok(())
    }

    /// The stored content of `meta`'s version. A missing file reads as
    /// empty bytes, which fail verification against `meta` (unless the
    /// content is empty anyway), so damage is reported, not hidden.
    pub(crate) fn read(&self, meta: &ArtifactMeta) -> Result<(StoredContent, bool), StoreError> {
        let (bytes, found) = match fs::read(self.path(&file_name(meta))) {
            Ok(bytes) => (bytes, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(e.into()),
        };
        let content = StoredContent {
            bytes,
            compressed: meta.compressed,
            size: meta.size,
            checksum: meta.checksum.clone(),
        };
        Ok((content, found))
    }

    /// Deletes the files of versions an applied batch dropped.
    pub(crate) fn remove(&self, dropped: &[String]) -> Result<(), StoreError> {
        for name in dropped {
            self.delete(self.path(name))?;
        }
        Ok(())
    }

    /// Deletes every file that `named` does not hold. Called when no apply
    /// runs and the state that `named` describes is durable.
    pub(crate) fn sweep(&self, named: &HashSet<String>) -> Result<u64, StoreError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !named.contains(name.to_string_lossy().as_ref()) {
                self.delete(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes `bytes` as the file of `meta`'s version in place of what is
    /// there (a verified copy repairing damage, or simulated damage).
    pub(crate) fn replace(&self, meta: &ArtifactMeta, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_file(&file_name(meta), bytes, true)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, revision: u64, version: u64, content: &StoredContent) -> ArtifactMeta {
        ArtifactMeta {
            id: id.into(),
            conversation_id: String::new(),
            kind: String::new(),
            title: String::new(),
            content_type: String::new(),
            metadata_json: "{}".into(),
            version,
            revision,
            size: content.size,
            stored_size: content.bytes.len() as u64,
            compressed: content.compressed,
            checksum: content.checksum.clone(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn names_differ_by_id_revision_and_version_and_are_plain_file_names() {
        let c = StoredContent::prepare(b"x", 1024);
        let names: HashSet<String> = [
            meta("a", 1, 1, &c),
            meta("b", 1, 1, &c),
            meta("a", 2, 1, &c),
            meta("a", 2, 2, &c),
            meta("../../etc/passwd", 1, 1, &c),
        ]
        .iter()
        .map(file_name)
        .collect();
        assert_eq!(names.len(), 5);
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_hexdigit() || c == '-')));
    }

    #[test]
    fn a_dropped_version_written_in_the_same_batch_is_never_written() {
        let c = StoredContent::prepare(b"x", 1024);
        let mut changes = ContentChanges::default();
        changes.write("new".into(), c.clone());
        changes.drop_file("new".into());
        changes.drop_file("old".into());
        assert!(changes.written.is_empty());
        assert_eq!(changes.dropped, vec!["old".to_string()]);
    }

    #[test]
    fn written_content_reads_back_and_a_removed_file_reads_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let files = ContentDir::open(dir.path()).unwrap();
        let c = StoredContent::prepare(&b"content ".repeat(500), 64);
        let m = meta("a", 7, 1, &c);
        files
            .write(&BTreeMap::from([(file_name(&m), c.clone())]))
            .unwrap();
        let (read, found) = files.read(&m).unwrap();
        assert!(found);
        assert_eq!(read, c);
        assert!(files.exists(&file_name(&m)));
        files.remove(&[file_name(&m)]).unwrap();
        let (missing, found) = files.read(&m).unwrap();
        assert!(!found);
        assert!(missing.open().is_err(), "a missing file must not verify");
    }

    #[test]
    fn sweep_keeps_named_files_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let files = ContentDir::open(dir.path()).unwrap();
        let c = StoredContent::prepare(b"x", 1024);
        let (keep, stray) = (meta("a", 1, 1, &c), meta("b", 2, 1, &c));
        for m in [&keep, &stray] {
            files
                .write(&BTreeMap::from([(file_name(m), c.clone())]))
                .unwrap();
        }
        fs::write(dir.path().join("tmp-half-written"), b"x").unwrap();
        let named = HashSet::from([file_name(&keep)]);
        assert_eq!(files.sweep(&named).unwrap(), 2);
        assert!(files.read(&keep).unwrap().1);
        assert!(!files.read(&stray).unwrap().1);
    }
}
