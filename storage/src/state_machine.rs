//! The Raft state machine: applies committed entries through
//! [`crate::apply`] to the in-memory [`StateTree`], builds and installs
//! snapshots, and serves local reads. Artifact content lives in files beside
//! the tree ([`crate::content`]).
//!
//! # Durability
//!
//! The newest snapshot file is the durable image of the state; the Raft log
//! holds every entry after it, and is purged only behind a snapshot this
//! replica wrote or installed ([`StateMachine::durable_applied`]). A node
//! that restarts loads that snapshot and openraft re-applies the committed
//! entries after it. Applying an entry therefore writes nothing to disk but
//! the content files it names, and every acknowledged write is durable in
//! the log before it is applied anywhere.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot};

use crate::apply::{apply_request, read_clock};
use crate::artifact::{ArtifactMeta, StoredContent};
use crate::codec::{decode, encode};
use crate::content::{file_name, ContentDir};
use crate::error::{raft_io_error, StoreError};
use crate::event::{Event, HistoryStats};
use crate::image::Image;
use crate::records::{InstanceRecord, KvRecord, LockRecord};
use crate::snapshot::{read_meta, read_snapshot, sync_dir, SnapshotFile};
use crate::state_tree::{Map, Scan, StateTree};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::view::Overlay;
use crate::{keys, Response};

/// State shared by the state machine, its snapshot builders and readers.
pub(crate) struct Shared {
    /// The database of this replica's local records (digests), flushed
    /// with every snapshot.
    pub(crate) durable: crate::durable::Durable,
    /// The applied state.
    pub(crate) state: StateTree,
    /// Artifact content, one file per version.
    pub(crate) content: ContentDir,
    /// This replica's own digests at consistency markers: local, never
    /// replicated and never in a snapshot (see [`crate::integrity`]).
    pub(crate) digests: sled::Tree,
    snapshot_dir: PathBuf,
    /// Serialises apply against snapshot build and install, so a snapshot is
    /// the state at exactly one applied index.
    pub(crate) gate: tokio::sync::Mutex<()>,
    /// Last applied log index, for readers (0 before the first entry).
    pub(crate) applied: AtomicU64,
    /// The index of the newest snapshot this replica wrote or installed:
    /// the log may be purged up to here ([`crate::LogStore`]).
    durable_applied: Arc<AtomicU64>,
    /// The newest durable snapshot.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    pub(crate) receive_seq: AtomicU64,
    /// A verified image of a healthy member's state, to replace this
    /// replica's state once apply reaches its index (see [`crate::reinstall`]).
    pub(crate) pending_image: Mutex<Option<crate::reinstall::PendingImage>>,
    /// Tells live watchers (and lock waiters) what each batch changed.
    notices: tokio::sync::broadcast::Sender<Notice>,
}

/// Takes one replicated record (key, value) at a time, in key order.
pub(crate) type RecordSink<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// One item of [`Shared::walk_replicated`].
pub(crate) enum Replicated<'a> {
    /// A record of the tree, as it is.
    Record(&'a [u8], &'a [u8]),
    /// The `blob/<id>` record of this artifact version: its content.
    Content(ArtifactMeta),
}

/// What the state machine tells live subscribers after committing.
#[derive(Debug, Clone)]
pub enum Notice {
    /// The events of one applied batch, in order.
    Events(Arc<[Event]>),
    /// The state was replaced by a snapshot: re-read what you need.
    Reset,
}

/// Notices buffered per subscriber before it is told it lagged.
const NOTICE_BUFFER: usize = 4096;

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

/// Builds a snapshot of the state machine (handed to openraft).
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

/// Read access to the applied state, for the API.
#[derive(Clone)]
pub struct StateReader {
    pub(crate) shared: Arc<Shared>,
}

fn sm_err(verb: ErrorVerb, e: StoreError) -> StorageError {
    raft_io_error(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb, e: StoreError) -> StorageError {
    raft_io_error(ErrorSubject::Snapshot(None), verb, e)
}

fn snapshot_path(dir: &Path, meta: &SnapshotMeta) -> PathBuf {
    let index = meta.last_log_id.map_or(0, |l| l.index);
    dir.join(format!("snap-{index:020}.snap"))
}

impl StateMachine {
    /// Opens the state machine: its state is the newest snapshot in
    /// `snapshot_dir` (or, once, the state tree an older store kept in
    /// `durable`'s database), with artifact content in `content_dir`.
    pub fn open(
        durable: crate::durable::Durable,
        snapshot_dir: &Path,
        content_dir: &Path,
    ) -> Result<Self, StoreError> {
        fs::create_dir_all(snapshot_dir)?;
        let content = ContentDir::open(content_dir)?;
        let digests = durable.db().open_tree(crate::integrity::DIGEST_TREE)?;
        let current = newest_snapshot(snapshot_dir)?;
        let shared = Arc::new(Shared {
            durable,
            state: StateTree::new(),
            content,
            digests,
            snapshot_dir: snapshot_dir.to_path_buf(),
            gate: tokio::sync::Mutex::new(()),
            applied: AtomicU64::new(0),
            durable_applied: Arc::default(),
            current: Mutex::new(current.clone()),
            receive_seq: AtomicU64::new(0),
            pending_image: Mutex::new(None),
            notices: tokio::sync::broadcast::channel(NOTICE_BUFFER).0,
        });
        if !shared.load_sled_state()? {
            if let Some((meta, path)) = current {
                let named = shared.load_image(&meta, &path, Existing::Keep)?;
                let removed = shared.content.sweep(&named)?;
                if removed > 0 {
                    tracing::info!(removed, "removed content files no state names");
                }
            } else {
                shared.content.sweep(&HashSet::new())?;
            }
        }
        let applied = shared.read_applied()?.map_or(0, |l| l.index);
        shared.applied.store(applied, Ordering::Release);
        shared.durable_applied.store(applied, Ordering::Release);
        Ok(Self { shared })
    }

    /// The index of the newest durable snapshot, shared with the log
    /// store, which purges no further.
    pub fn durable_applied(&self) -> Arc<AtomicU64> {
        self.shared.durable_applied.clone()
    }

    /// A reader of the applied state.
    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }
}

/// Finds the newest valid snapshot in `dir`, removing leftovers of
/// interrupted writes and receives.
fn newest_snapshot(dir: &Path) -> Result<Option<(SnapshotMeta, PathBuf)>, StoreError> {
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap-") {
            names.push(path);
        } else if name.starts_with("tmp-") || name.starts_with("recv-") {
            fs::remove_file(&path)?;
        }
    }
    names.sort();
    while let Some(path) = names.pop() {
        match read_meta(&path) {
            Ok(meta) => return Ok(Some((meta, path))),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring invalid snapshot")
            }
        }
    }
    Ok(None)
}

/// What loading an image does with a content file that already exists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Keep it: on open, a file the snapshot names was made durable by the
    /// file-system sync that came before the snapshot was written (or
    /// installed), and names are never reused.
    Keep,
    /// Write the image's copy over it: an install replaces a state that
    /// may have diverged, content included.
    Overwrite,
}

impl Shared {
    /// Applies one overlay: its content files first, then its batch, then
    /// removes the files of the versions it dropped. Returns the events it
    /// recorded. A dropped file is never needed again: the durable image
    /// (the newest snapshot) carries its own copy of the content it names,
    /// and entries after it write theirs again when they are re-applied.
    fn commit(&self, view: Overlay<'_>) -> Result<Vec<Event>, StoreError> {
        let (batch, events, content) = view.into_batch();
        self.content.write(&content.written)?;
        self.state.apply_batch(batch);
        self.content.remove(&content.dropped)?;
        Ok(events)
    }

    /// Loads the image in the snapshot file `path` (at `meta`) as the whole
    /// state, writing each content record to its file first. Returns the
    /// file names the new state holds. The caller holds the gate, or no
    /// apply runs yet.
    fn load_image(
        &self,
        meta: &SnapshotMeta,
        path: &Path,
        existing: Existing,
    ) -> Result<HashSet<String>, StoreError> {
        let mut map = Map::new();
        // Metadata sorts before content (`art/` < `blob/`), so each content
        // record finds the version it belongs to.
        let mut metas: std::collections::HashMap<String, ArtifactMeta> = Default::default();
        let mut wrote = 0u64;
        let file_meta = read_snapshot(path, |k, v| {
            if let Some(id) = k.strip_prefix(keys::BLOB_PREFIX) {
                let id = String::from_utf8_lossy(id);
                if let Some(meta) = metas.get(id.as_ref()) {
                    let name = file_name(meta);
                    if existing == Existing::Overwrite || !self.content.exists(&name) {
                        let content: StoredContent = decode(&v)?;
                        self.content.write_unsynced(&name, &content.bytes)?;
                        wrote += 1;
                    }
                }
                return Ok(());
            }
            if k.starts_with(keys::ARTIFACT_PREFIX) {
                let meta: ArtifactMeta = decode(&v)?;
                metas.insert(meta.id.clone(), meta);
            }
            map.insert(k.into_boxed_slice(), v.into_boxed_slice());
            Ok(())
        })?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(StoreError::Snapshot(format!(
                "file is at {:?}, expected {:?}",
                file_meta.last_log_id, meta.last_log_id
            )));
        }
        if wrote > 0 {
            // One sync of the file system makes every content file durable
            // before anything relies on the state that names them.
            self.durable.flush()?;
        }
        map.insert(keys::APPLIED.into(), encode(&meta.last_log_id)?.into());
        map.insert(
            keys::MEMBERSHIP.into(),
            encode(&meta.last_membership)?.into(),
        );
        self.state.replace(map);
        Ok(metas.values().map(file_name).collect())
    }

    /// A store that kept its state in sled (before the state moved into
    /// memory) has it loaded, once: its content moved into files, the
    /// state written as a snapshot (its durable image from now on), and
    /// only then the old tree dropped. Returns whether there was one.
    fn load_sled_state(&self) -> Result<bool, StoreError> {
        let db = self.durable.db();
        if !db
            .tree_names()
            .iter()
            .any(|n| n == keys::STATE_TREE.as_bytes())
        {
            return Ok(false);
        }
        let old = db.open_tree(keys::STATE_TREE)?;
        if old.is_empty() {
            db.drop_tree(keys::STATE_TREE)?;
            return Ok(false);
        }
        let mut map = Map::new();
        for item in old.iter() {
            let (k, v) = item?;
            map.insert(k.as_ref().into(), v.as_ref().into());
        }
        self.state.replace(map);
        self.move_content_out_of_the_tree()?;
        self.write_snapshot(self.capture()?)?;
        db.drop_tree(keys::STATE_TREE)?;
        self.durable.flush()?;
        let named = self.named_content_files()?;
        self.content.sweep(&named)?;
        tracing::info!(
            records = self.state.len(),
            "moved the state from sled into memory and a snapshot"
        );
        Ok(true)
    }

    /// The file names of every artifact version the tree holds.
    fn named_content_files(&self) -> Result<HashSet<String>, StoreError> {
        let mut named = HashSet::new();
        for (_, value) in self.state.scan_prefix(keys::ARTIFACT_PREFIX) {
            named.insert(file_name(&decode::<ArtifactMeta>(&value)?));
        }
        Ok(named)
    }

    /// Stores that kept content in the tree (`blob/<id>` records) get it
    /// moved into files, once, when they open. Each replica does this to
    /// its own state; the names follow from the metadata, so replicas
    /// agree whatever index each one stood at.
    fn move_content_out_of_the_tree(&self) -> Result<(), StoreError> {
        let mut moved = 0u64;
        let mut batch = Vec::new();
        for (key, value) in self.state.scan_prefix(keys::BLOB_PREFIX) {
            let id = String::from_utf8_lossy(&key[keys::BLOB_PREFIX.len()..]).into_owned();
            if let Some(meta) = self.state.load::<ArtifactMeta>(&keys::artifact(&id))? {
                let content: StoredContent = decode(&value)?;
                self.content
                    .write_unsynced(&file_name(&meta), &content.bytes)?;
                moved += 1;
            }
            batch.push((key, None));
        }
        if moved > 0 {
            // The files are durable before the snapshot naming them exists.
            self.durable.flush()?;
            tracing::info!(
                moved,
                "moved artifact content from the state tree into files"
            );
        }
        self.state.apply_batch(batch);
        Ok(())
    }

    /// Hands every replicated record to `f` in key order, as snapshots and
    /// digests carry them: the tree outside `sys/`, with each artifact's
    /// content as a `blob/<id>` record of its [`StoredContent`], read from
    /// its file, where that key sorts. The caller holds the gate.
    pub(crate) fn for_each_replicated_record(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.walk_replicated(|item| match item {
            Replicated::Record(key, value) => f(key, value),
            Replicated::Content(meta) => {
                let (content, _) = self.content.read(&meta)?;
                f(&keys::blob(&meta.id), &encode(&content)?)
            }
        })
    }

    /// Walks what [`Self::for_each_replicated_record`] hands out, in the
    /// same order, naming each content record by its version's metadata
    /// instead of reading it. The caller holds the gate.
    pub(crate) fn walk_replicated(
        &self,
        mut f: impl FnMut(Replicated<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut contents_done = false;
        let contents = |f: &mut dyn FnMut(Replicated<'_>) -> Result<(), StoreError>| {
            for (_, value) in self.state.scan_prefix(keys::ARTIFACT_PREFIX) {
                f(Replicated::Content(decode(&value)?))?;
            }
            Ok::<(), StoreError>(())
        };
        for (k, v) in self.state.iter() {
            if !contents_done && k.as_slice() > keys::BLOB_PREFIX {
                contents(&mut f)?;
                contents_done = true;
            }
            if !k.starts_with(keys::SYS_PREFIX) {
                f(Replicated::Record(&k, &v))?;
            }
        }
        if !contents_done {
            contents(&mut f)?;
        }
        Ok(())
    }

    pub(crate) fn read_applied(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self.state.load(keys::APPLIED)?.flatten())
    }

    fn read_membership(&self) -> Result<StoredMembership, StoreError> {
        Ok(self.state.load(keys::MEMBERSHIP)?.unwrap_or_default())
    }

    pub(crate) fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError> {
        let mut view = Overlay::new(&self.state);
        let mut responses = Vec::with_capacity(entries.len());
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            let log_id = entry.log_id;
            let is_marker = matches!(&entry.payload,
                EntryPayload::Normal(req) if req.command == crate::Command::DigestMarker);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Noop,
                EntryPayload::Normal(req) => apply_request(&mut view, entry.log_id.index, &req)?,
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    view.put(keys::MEMBERSHIP.to_vec(), encode(&stored)?);
                    Response::Noop
                }
            };
            responses.push(response);
            if is_marker {
                // The digest is of the state at exactly this entry: commit
                // what the batch holds so far (data and applied id together),
                // then read the tree. Only this replica's own record is written.
                view.put(keys::APPLIED.to_vec(), encode(&Some(log_id))?);
                let done = std::mem::replace(&mut view, Overlay::new(&self.state));
                let events = self.commit(done)?;
                // Recorded before the applied index moves: a reader that
                // sees the marker applied then always finds its digest.
                crate::integrity::record_digest(self, log_id.index)?;
                self.applied.store(log_id.index, Ordering::Release);
                if !events.is_empty() {
                    let _ = self.notices.send(Notice::Events(events.into()));
                }
            }
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        view.put(keys::APPLIED.to_vec(), encode(&Some(last))?);
        // One atomic batch: the data and the applied log id move together.
        let events = self.commit(view)?;
        self.applied.store(last.index, Ordering::Release);
        if !events.is_empty() {
            // No receivers is fine: nobody is watching.
            let _ = self.notices.send(Notice::Events(events.into()));
        }
        Ok(responses)
    }

    /// Copies the state as it stands, to be written as a snapshot after the
    /// gate is released ([`Image`]). The caller holds the gate.
    pub(crate) fn capture(&self) -> Result<Image, StoreError> {
        Image::capture(self)
    }

    /// The meta of a snapshot of the current state. The caller holds the
    /// gate.
    pub(crate) fn snapshot_meta(&self) -> Result<SnapshotMeta, StoreError> {
        let last = self.read_applied()?;
        Ok(SnapshotMeta {
            last_log_id: last,
            last_membership: self.read_membership()?,
            snapshot_id: match last {
                Some(l) => format!("{}-{}", l.leader_id.term, l.index),
                None => "empty".into(),
            },
        })
    }

    /// Writes `image` to a new snapshot file, the state's durable image from
    /// then on unless a newer snapshot was installed meanwhile, and returns
    /// its meta and the file, open. Needs no gate.
    pub(crate) fn write_snapshot(
        &self,
        image: Image,
    ) -> Result<(SnapshotMeta, SnapshotFile), StoreError> {
        // One sync of the file system first: the content files the image
        // names (apply does not sync them) and this replica's digests, all
        // written before the capture, are durable before the image that
        // relies on them exists.
        self.durable.flush()?;
        let meta = image.meta().clone();
        let path = snapshot_path(&self.snapshot_dir, &meta);
        image.write(&self.snapshot_dir, &self.content, &path)?;
        // Opened before it is recorded: a file that lost to a newer
        // snapshot is deleted, and stays readable through this handle.
        let file = SnapshotFile::open(&path)?;
        if self.set_current(meta.clone(), path)? {
            let index = meta.last_log_id.map_or(0, |l| l.index);
            self.durable_applied.fetch_max(index, Ordering::AcqRel);
        }
        Ok((meta, file))
    }

    /// The folder of snapshot files (and of transfers in progress).
    pub(crate) fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
    }

    /// A fresh file name in the snapshot directory for a transfer in
    /// progress. `prefix` is `recv` or `tmp`, whose leftovers
    /// [`newest_snapshot`] removes at startup.
    pub(crate) fn scratch_path(&self, prefix: &str) -> PathBuf {
        let n = self.receive_seq.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir.join(format!("{prefix}-{n}.snap"))
    }

    /// Replaces the whole state with the snapshot at `path`, which becomes
    /// the newest snapshot. The caller holds the gate.
    pub(crate) fn install(&self, meta: &SnapshotMeta, path: &Path) -> Result<(), StoreError> {
        let named = self.load_image(meta, path, Existing::Overwrite)?;
        // The image is durable (and the newest on open) once it is synced
        // and renamed into place; its content files were synced before.
        // Receivers only write the file: every received image is synced
        // here, before the log behind it is purged.
        fs::File::open(path)?.sync_all()?;
        let dest = snapshot_path(&self.snapshot_dir, meta);
        fs::rename(path, &dest)?;
        sync_dir(&dest)?;
        // The replaced state's files go; a version both states hold keeps
        // its (immutable) file.
        self.content.sweep(&named)?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.applied.store(index, Ordering::Release);
        self.durable_applied.fetch_max(index, Ordering::AcqRel);
        let _ = self.notices.send(Notice::Reset);
        self.set_current(meta.clone(), dest)?;
        Ok(())
    }

    /// Records the snapshot at `path` as the newest and removes the older
    /// file. A snapshot built from a capture older than one installed while
    /// it was written is removed instead (returns false).
    fn set_current(&self, meta: SnapshotMeta, path: PathBuf) -> Result<bool, StoreError> {
        let index = |m: &SnapshotMeta| m.last_log_id.map_or(0, |l| l.index);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((newest, old)) = current.as_ref() {
            if index(newest) > index(&meta) {
                fs::remove_file(&path)?;
                return Ok(false);
            }
            if *old != path {
                // An open SnapshotFile keeps the old bytes readable for a
                // transfer still in progress.
                fs::remove_file(old)?;
            }
        }
        *current = Some((meta, path));
        Ok(true)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = &self.shared;
        let applied = s.read_applied().map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let membership = s
            .read_membership()
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let _gate = self.shared.gate.lock().await;
        crate::reinstall::apply_entries(&self.shared, entries)
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.shared.scratch_path("recv");
        let file = SnapshotFile::create(&path).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let _gate = self.shared.gate.lock().await;
        let shared = self.shared.clone();
        let meta = meta.clone();
        let path = snapshot.path.clone();
        drop(snapshot);
        tracing::info!(snapshot = %meta.snapshot_id, "installing snapshot");
        let started = std::time::Instant::now();
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        let index = meta.last_log_id.map_or(0, |l| l.index);
        tokio::task::spawn_blocking(move || shared.install(&meta, &path))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, StoreError::Io(e.into())))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        record_snapshot("install", started, size, index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match current {
            None => Ok(None),
            Some((meta, path)) => {
                let file = SnapshotFile::open(&path).map_err(|e| snap_err(ErrorVerb::Read, e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(file),
                }))
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let image = Image::capture_at_gate(&self.shared)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let captured = started.elapsed();
        let shared = self.shared.clone();
        let (meta, file) = tokio::task::spawn_blocking(move || shared.write_snapshot(image))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, StoreError::Io(e.into())))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            apply_held_ms = captured.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        record_snapshot(
            "build",
            started,
            file.file.metadata().map_or(0, |m| m.len()),
            meta.last_log_id.map_or(0, |l| l.index),
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

/// Records a finished snapshot build or install in the metrics.
fn record_snapshot(op: &'static str, started: std::time::Instant, bytes: u64, index: u64) {
    use crate::telemetry as t;
    metrics::counter!(t::RAFT_SNAPSHOTS, "op" => op).increment(1);
    metrics::histogram!(t::RAFT_SNAPSHOT_SECONDS, "op" => op)
        .record(started.elapsed().as_secs_f64());
    metrics::gauge!(t::RAFT_SNAPSHOT_BYTES).set(bytes as f64);
    metrics::gauge!(t::RAFT_SNAPSHOT_INDEX).set(index as f64);
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// Where the next page starts (the last item's id), if there may be more.
    pub next_cursor: Option<String>,
}

impl StateReader {
    /// The last applied log index.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The replicated clock as last applied.
    pub fn clock_ms(&self) -> Result<u64, StoreError> {
        read_clock(&Overlay::new(&self.shared.state))
    }

    /// The cluster id, once bootstrap has recorded it.
    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .shared
            .state
            .get(keys::CLUSTER_ID)
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// An artifact's metadata.
    pub fn artifact(&self, id: &str) -> Result<Option<ArtifactMeta>, StoreError> {
        self.load(&keys::artifact(id))
    }

    /// An artifact's metadata together with its stored content. A version's
    /// file never changes, but it is deleted once a newer version is durable,
    /// so a read that misses it looks at the metadata again.
    pub fn artifact_with_content(
        &self,
        id: &str,
    ) -> Result<Option<(ArtifactMeta, StoredContent)>, StoreError> {
        loop {
            let Some(meta) = self.artifact(id)? else {
                return Ok(None);
            };
            let (content, found) = self.shared.content.read(&meta)?;
            if found || self.artifact(id)?.as_ref() == Some(&meta) {
                // A file missing under stable metadata is damage: the
                // caller's verification of the empty bytes reports it.
                return Ok(Some((meta, content)));
            }
        }
    }

    /// Artifacts whose id starts with `prefix`, after `cursor`, at most `limit`.
    pub fn list_artifacts(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ArtifactMeta>, StoreError> {
        let scan = self.scan_after(keys::ARTIFACT_PREFIX, prefix, cursor);
        collect_page(
            scan,
            limit,
            |_, v| Ok(Some(decode::<ArtifactMeta>(v)?)),
            |a| a.id.clone(),
        )
    }

    /// The artifacts of one conversation whose id starts with `prefix`, by
    /// id, after `cursor`, at most `limit`.
    pub fn list_conversation(
        &self,
        conversation_id: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ArtifactMeta>, StoreError> {
        let index = keys::conversation_prefix(conversation_id);
        let scan = self.scan_after(&index, prefix, cursor);
        // The index and the record are written in one batch; a record
        // deleted between the two reads is simply skipped.
        collect_page(
            scan,
            limit,
            |k, _| self.artifact(&String::from_utf8_lossy(&k[index.len()..])),
            |a| a.id.clone(),
        )
    }

    /// A key/value entry.
    pub fn kv(&self, key: &str) -> Result<Option<KvRecord>, StoreError> {
        self.load(&keys::kv(key))
    }

    /// Key/value entries whose key starts with `prefix`, after `cursor`.
    pub fn list_kv(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KvRecord>, StoreError> {
        let scan = self.scan_after(keys::KV_PREFIX, prefix, cursor);
        collect_page(
            scan,
            limit,
            |_, v| Ok(Some(decode::<KvRecord>(v)?)),
            |r| r.key.clone(),
        )
    }

    /// The holder of a lock, if it is held.
    pub fn lock(&self, name: &str) -> Result<Option<LockRecord>, StoreError> {
        self.load(&keys::lock(name))
    }

    /// How many requests wait for a lock.
    pub fn lock_waiters(&self, name: &str) -> usize {
        self.shared
            .state
            .scan_prefix(&keys::lock_queue_prefix(name))
            .count()
    }

    /// Every held lock, by name.
    pub fn locks(&self) -> Result<Vec<LockRecord>, StoreError> {
        self.decode_all(keys::LOCK_PREFIX)
    }

    /// Every live instance, by id.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.decode_all(keys::INSTANCE_PREFIX)
    }

    /// Stored events from `revision` on, in order: about `limit` of them,
    /// never ending in the middle of a revision (so that resuming after the
    /// last one loses nothing).
    pub fn events_from(&self, revision: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out: Vec<Event> = Vec::new();
        let from = keys::event_from(revision);
        for (k, v) in self.shared.state.range(&from, None) {
            if !k.starts_with(keys::EVENT_PREFIX) {
                break;
            }
            let event: Event = decode(&v)?;
            if out.len() >= limit && out.last().is_some_and(|l| l.revision != event.revision) {
                break;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// Size and floor of the event history.
    pub fn history(&self) -> Result<HistoryStats, StoreError> {
        Ok(self.load(keys::EVENT_STATS)?.unwrap_or_default())
    }

    /// The oldest stored event's replicated time, if any.
    pub fn oldest_event_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.events_from(0, 1)?.first().map(|e| e.at_ms))
    }

    /// The earliest TTL or lease deadline, if anything is pending.
    pub fn next_expiry_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .shared
            .state
            .scan_prefix(keys::EXPIRY_PREFIX)
            .next()
            .and_then(|(key, _)| keys::parse_expiry(&key).map(|(ms, _)| ms)))
    }

    /// Live notices of applied changes. Subscribe before reading the
    /// history, so that nothing falls between the two.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.shared.notices.subscribe()
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        Ok(self.shared.state.load(key)?)
    }

    fn decode_all<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for (_, value) in self.shared.state.scan_prefix(prefix) {
            out.push(decode(&value)?);
        }
        Ok(out)
    }

    /// Keys under `space` + `prefix`, strictly after `space` + `cursor`.
    fn scan_after(&self, space: &[u8], prefix: &str, cursor: Option<&str>) -> Scan {
        let mut from = space.to_vec();
        from.extend_from_slice(prefix.as_bytes());
        let end = keys::prefix_end(&from);
        if let Some(c) = cursor {
            let mut after = space.to_vec();
            after.extend_from_slice(c.as_bytes());
            // The first key greater than the cursor itself.
            after.push(0);
            from = from.max(after);
        }
        self.shared.state.range(&from, end.as_deref())
    }
}

/// Reads up to `limit` items from `scan`; `item` turns a pair into an item
/// (or skips it with `None`), `cursor_of` names the item for `next_cursor`.
fn collect_page<T>(
    scan: Scan,
    limit: usize,
    mut item: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    cursor_of: impl Fn(&T) -> String,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::new();
    for (k, v) in scan {
        if items.len() == limit {
            let next_cursor = items.last().map(&cursor_of);
            return Ok(Page { items, next_cursor });
        }
        if let Some(it) = item(&k, &v)? {
            items.push(it);
        }
    }
    Ok(Page {
        items,
        next_cursor: None,
    })
}
