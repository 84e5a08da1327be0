//! Re-installing a replica's whole state from a healthy member's image.
//!
//! A replica whose state diverged (its digest differs from the majority's
//! while every stored checksum holds, e.g. a record edited or lost on disk)
//! cannot be repaired item by item: nothing says which items are wrong.
//! Instead a healthy member writes its whole state at its applied index `H`
//! in the snapshot format ([`StateReader::export_image`]), and this replica
//! replaces its state with that image when its own applied index is exactly
//! `H` ([`StateReader::reinstall`]). This replica's apply is held still
//! ([`StateReader::pause_apply`]) from before the image is asked for, with
//! `H` at least its applied index, so it cannot run past `H` meanwhile.
//!
//! # Why openraft and the state machine never disagree
//!
//! openraft remembers which entries it has handed to `apply` and never
//! re-reads that from the state machine while it runs. The image is
//! therefore installed only at the point where this replica has itself
//! applied entry `H`: either at once, under the apply gate, when the replica
//! already stands at `H`, or by `apply` itself right after it commits entry
//! `H` (when the replica is behind). Entries `<= H` were applied exactly once,
//! entries `> H` are applied exactly once on top of the image, and the
//! applied log id recorded with the state stays the one openraft last handed
//! over, so there is no entry to skip and none to replay. The image replaces
//! a state that, in a healthy replica, would be byte-identical, because every
//! replica applies the same committed entries deterministically; the image's
//! log id at `H` is checked against the entry this replica applied at `H`.
//! A replica already past `H` is refused (the caller fetches a newer image).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::image::Image;
use crate::snapshot::{read_meta, SnapshotFile};
use crate::state_machine::{Shared, StateReader};
use crate::types::{Entry, SnapshotMeta};
use crate::Response;

/// An image waiting for apply to reach its index.
pub(crate) struct PendingImage {
    meta: SnapshotMeta,
    path: PathBuf,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

impl PendingImage {
    fn index(&self) -> u64 {
        self.meta.last_log_id.map_or(0, |l| l.index)
    }
}

/// What [`StateReader::reinstall`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReinstallOutcome {
    /// The state was replaced by the image at `index`.
    Installed {
        /// The image's (and now this replica's) applied index.
        index: u64,
    },
    /// This replica had already applied past the image: fetch one at or
    /// after `applied`.
    Ahead {
        /// This replica's applied index.
        applied: u64,
    },
    /// This replica did not reach the image's index in time; nothing changed.
    NotReached {
        /// The image's index.
        index: u64,
        /// This replica's applied index when it gave up.
        applied: u64,
    },
}

/// This replica's apply, held still; see [`StateReader::pause_apply`].
pub struct ApplyPause<'a> {
    _gate: tokio::sync::MutexGuard<'a, ()>,
    /// The applied index it is held at.
    pub applied: u64,
}

/// A state image written for another member, open for reading. Its file is
/// already unlinked: the open handle keeps the bytes until it is dropped.
#[derive(Debug)]
pub struct ExportedImage {
    /// The applied index the image is of.
    pub index: u64,
    /// The image, in the snapshot format.
    pub file: std::fs::File,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn blocking_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

/// Applies `entries` (the caller holds the gate): on this task, or on a
/// blocking thread when they touch content files, whose writes (and
/// removals) must not hold a runtime worker that heartbeats and votes also need.
async fn apply_now(shared: &Arc<Shared>, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError> {
    let touches_files = entries.iter().any(|e| {
        matches!(&e.payload, openraft::EntryPayload::Normal(r) if r.command.touches_content_files())
    });
    if !touches_files {
        return shared.apply_entries(entries);
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || shared.apply_entries(entries))
        .await
        .map_err(blocking_failed)?
}

/// Applies `entries` (the caller holds the gate), installing a pending image
/// right after the entry at its index is committed.
pub(crate) async fn apply_entries(
    shared: &Arc<Shared>,
    mut entries: Vec<Entry>,
) -> Result<Vec<Response>, StoreError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(Vec::new());
    };
    let (first, last) = (first.log_id.index, last.log_id.index);
    let pending = {
        let mut slot = lock(&shared.pending_image);
        match slot.as_ref().map(PendingImage::index) {
            Some(h) if h <= last => slot.take(),
            _ => None,
        }
    };
    let Some(image) = pending else {
        return apply_now(shared, entries).await;
    };
    let h = image.index();
    if h < first {
        // Registered only while the replica stood below `h`, and entries
        // arrive in order: unreachable, but never install out of place.
        let _ = std::fs::remove_file(&image.path);
        let _ = image.done.send(Err(StoreError::Snapshot(format!(
            "apply passed index {h} before the image was installed"
        ))));
        return apply_now(shared, entries).await;
    }
    let tail = entries.split_off((h - first + 1) as usize);
    let mut responses = apply_now(shared, entries).await?;
    let installed = install_at_applied(shared, image.meta, image.path).await;
    if let Err(e) = &installed {
        // The replica keeps its own state at `h`, which openraft agrees
        // with; the caller is told and may try again.
        tracing::error!(index = h, error = %e, "could not install the state image");
    }
    let _ = image.done.send(installed);
    responses.extend(apply_now(shared, tail).await?);
    Ok(responses)
}

/// Installs the image at `path` if this replica's applied log id is the
/// image's. The caller holds the gate.
async fn install_at_applied(
    shared: &Arc<Shared>,
    meta: SnapshotMeta,
    path: PathBuf,
) -> Result<(), StoreError> {
    let applied = shared.read_applied()?;
    if applied != meta.last_log_id {
        let _ = std::fs::remove_file(&path);
        return Err(StoreError::Snapshot(format!(
            "the image is of {:?}, but this replica applied {:?} at that index",
            meta.last_log_id, applied
        )));
    }
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        s.install(&meta, &path)?;
        // A digest this replica took at `index` described the state just
        // replaced: take it again of the installed one.
        if s.digests.contains_key(index.to_be_bytes())? {
            crate::integrity::record_digest(&s, index)?;
        }
        Ok::<(), StoreError>(())
    })
    .await
    .map_err(blocking_failed)??;
    tracing::info!(index, "installed a state image from a healthy member");
    Ok(())
}

impl StateReader {
    /// Writes this replica's whole state at its current applied index in
    /// the snapshot format (SHA-256 trailer included), for a member that
    /// re-installs its state from it. Holds the apply gate while it copies
    /// the state ([`crate::image`]), so that the image is the state at
    /// exactly one index, and writes it after.
    pub async fn export_image(&self) -> Result<ExportedImage, StoreError> {
        let image = Image::capture_at_gate(&self.shared).await?;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let index = image.meta().last_log_id.map_or(0, |l| l.index);
            let dest = shared.scratch_path("tmp");
            image.write(shared.snapshot_dir(), &shared.content, &dest)?;
            let file = std::fs::File::open(&dest)?;
            std::fs::remove_file(&dest)?;
            Ok(ExportedImage { index, file })
        })
        .await
        .map_err(blocking_failed)?
    }

    /// A new file to receive a state image into (removed at startup if left
    /// behind).
    pub fn begin_receiving_image(&self) -> Result<SnapshotFile, StoreError> {
        SnapshotFile::create(&self.shared.scratch_path("recv"))
    }

    /// Holds this replica's apply still (the apply gate) and reads its
    /// applied index: the caller fetches an image at or after that index
    /// meanwhile, so that the replica cannot have applied past the image
    /// by the time it is handed to [`Self::reinstall`]. Raft keeps
    /// appending and committing entries meanwhile; only apply waits.
    pub async fn pause_apply(&self) -> Result<ApplyPause<'_>, StoreError> {
        let gate = self.shared.gate.lock().await;
        let applied = self.shared.read_applied()?.map_or(0, |l| l.index);
        Ok(ApplyPause {
            _gate: gate,
            applied,
        })
    }

    /// Replaces this replica's state with the image at `image` (as written
    /// by [`Self::export_image`] on a healthy member) once this replica's
    /// applied index equals the image's: at once if `paused` stands there,
    /// else when apply (resumed now) reaches it, waiting up to `wait`.
    /// Verifies the image's checksum first. Watchers are told to re-read,
    /// as after a snapshot install. The file is consumed.
    pub async fn reinstall(
        &self,
        paused: ApplyPause<'_>,
        image: &Path,
        wait: Duration,
    ) -> Result<ReinstallOutcome, StoreError> {
        let path = image.to_path_buf();
        let verified = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_meta(&path))
                .await
                .map_err(blocking_failed)?
        };
        let meta = match verified {
            Ok(meta) => meta,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let applied = paused.applied;
        if applied > index {
            let _ = std::fs::remove_file(&path);
            return Ok(ReinstallOutcome::Ahead { applied });
        }
        if applied == index {
            install_at_applied(&self.shared, meta, path).await?;
            return Ok(ReinstallOutcome::Installed { index });
        }
        let (done, mut installed) = tokio::sync::oneshot::channel();
        {
            let mut slot = lock(&self.shared.pending_image);
            if slot.is_some() {
                let _ = std::fs::remove_file(&path);
                return Err(StoreError::Snapshot(
                    "another re-install is in progress".into(),
                ));
            }
            *slot = Some(PendingImage {
                meta,
                path: path.clone(),
                done,
            });
        }
        drop(paused);
        let waited = tokio::time::timeout(wait, &mut installed).await;
        let result = match waited {
            Ok(result) => result.ok(),
            Err(_) => {
                // Under the gate, apply is not installing it right now: either
                // it already did (and sent the result) or it never will.
                let _gate = self.shared.gate.lock().await;
                if let Some(image) = lock(&self.shared.pending_image).take() {
                    let _ = std::fs::remove_file(&image.path);
                    return Ok(ReinstallOutcome::NotReached {
                        index,
                        applied: self.applied_index(),
                    });
                }
                installed.try_recv().ok()
            }
        };
        match result {
            Some(Ok(())) => Ok(ReinstallOutcome::Installed { index }),
            Some(Err(e)) => Err(e),
            None => Err(StoreError::Snapshot(
                "the state machine dropped the image".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::state_machine::Notice;
    use crate::types::LogId;
    use crate::{keys, Command, Precondition, Request, StateMachine};

    type Replica = (tempfile::TempDir, StateMachine);

    fn open() -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = sled::Config::new().path(&path).open().unwrap();
        let durable = crate::Durable::new(db, &path).unwrap();
        let sm = StateMachine::open(
            durable,
            &dir.path().join("snapshots"),
            &dir.path().join("content"),
        )
        .unwrap();
        (dir, sm)
    }

    fn entry(index: u64, command: Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request::new(index * 10, command)),
        }
    }

    fn put(index: u64) -> Entry {
        let command = Command::KvPut {
            key: format!("k{index}"),
            value: index.to_be_bytes().to_vec(),
            ttl_ms: None,
            precondition: Precondition::None,
        };
        entry(index, command)
    }

    async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) -> usize {
        sm.apply(entries).await.unwrap().len()
    }

    /// The healthy replica's image, copied into a receive file of `to`.
    async fn image_for(from: &StateMachine, to: &StateMachine) -> PathBuf {
        let mut image = from.reader().export_image().await.unwrap();
        let mut into = to.reader().begin_receiving_image().unwrap();
        std::io::copy(&mut image.file, &mut into.file).unwrap();
        into.path
    }

    async fn reinstall(
        sm: &StateMachine,
        path: &Path,
        wait: Duration,
    ) -> Result<ReinstallOutcome, StoreError> {
        let reader = sm.reader();
        let paused = reader.pause_apply().await?;
        reader.reinstall(paused, path, wait).await
    }

    /// A healthy and a soon diverged replica, both having applied
    /// `put(1..=upto)`.
    async fn twins(upto: u64) -> (Replica, Replica) {
        let (mut healthy, mut diverged) = (open(), open());
        for sm in [&mut healthy.1, &mut diverged.1] {
            apply(sm, (1..=upto).map(put).collect()).await;
        }
        (healthy, diverged)
    }

    fn digest(sm: &StateMachine, index: u64) -> String {
        sm.reader().digest_at(index).unwrap().unwrap().digest
    }

    #[tokio::test]
    async fn an_image_installs_when_apply_reaches_its_index_and_later_entries_apply_once() {
        let ((_a, mut healthy), (_b, mut diverged)) = twins(2).await;
        // A record lost on disk: checksums cannot see it.
        diverged.shared.state.remove(&keys::kv("k1"));
        apply(&mut healthy, vec![put(3), put(4)]).await;
        let path = image_for(&healthy, &diverged).await;
        let mut notices = diverged.reader().subscribe();

        let reader = diverged.reader();
        let waiting = tokio::spawn(async move {
            let paused = reader.pause_apply().await?;
            reader
                .reinstall(paused, &path, Duration::from_secs(10))
                .await
        });
        // Registered, not installed: apply has not reached index 4.
        while lock(&diverged.shared.pending_image).is_none() {
            assert!(!waiting.is_finished(), "the image was not registered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(diverged.reader().applied_index(), 2);
        let marker = entry(6, Command::DigestMarker);
        let n = apply(&mut diverged, vec![put(3), put(4), put(5), marker.clone()]).await;
        assert_eq!(n, 4, "one response per entry");
        assert_eq!(
            waiting.await.unwrap().unwrap(),
            ReinstallOutcome::Installed { index: 4 }
        );
        apply(&mut healthy, vec![put(5), marker]).await;

        assert_eq!(diverged.reader().applied_index(), 6);
        assert_eq!(digest(&diverged, 6), digest(&healthy, 6));
        assert!(diverged.reader().kv("k1").unwrap().is_some());
        let mut reset = false;
        while let Ok(n) = notices.try_recv() {
            reset |= matches!(n, Notice::Reset);
        }
        assert!(reset, "watchers are told to re-read");
    }

    #[tokio::test]
    async fn an_image_at_the_applied_index_installs_at_once() {
        let ((_a, mut healthy), (_b, mut diverged)) = twins(2).await;
        diverged.shared.state.remove(&keys::kv("k2"));
        let path = image_for(&healthy, &diverged).await;
        let outcome = reinstall(&diverged, &path, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(outcome, ReinstallOutcome::Installed { index: 2 });
        for sm in [&mut healthy, &mut diverged] {
            apply(sm, vec![entry(3, Command::DigestMarker)]).await;
        }
        assert_eq!(digest(&diverged, 3), digest(&healthy, 3));
    }

    #[tokio::test]
    async fn a_replica_past_the_image_is_sent_for_a_newer_one_and_keeps_its_state() {
        let (_a_dir, mut healthy) = open();
        let (_b_dir, mut diverged) = open();
        apply(&mut healthy, vec![put(1)]).await;
        apply(&mut diverged, vec![put(1), put(2)]).await;
        let path = image_for(&healthy, &diverged).await;
        let outcome = reinstall(&diverged, &path, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(outcome, ReinstallOutcome::Ahead { applied: 2 });
        assert!(diverged.reader().kv("k2").unwrap().is_some());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_image_never_reached_is_withdrawn() {
        let (_a_dir, mut healthy) = open();
        let (_b_dir, mut diverged) = open();
        apply(&mut healthy, vec![put(1), put(2)]).await;
        apply(&mut diverged, vec![put(1)]).await;
        let path = image_for(&healthy, &diverged).await;
        let outcome = reinstall(&diverged, &path, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ReinstallOutcome::NotReached {
                index: 2,
                applied: 1
            }
        );
        // Apply later passes index 2 on its own state, untouched.
        apply(&mut diverged, vec![put(2)]).await;
        assert!(lock(&diverged.shared.pending_image).is_none());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_damaged_image_is_refused_before_anything_changes() {
        let ((_a, healthy), (_b, diverged)) = twins(1).await;
        let path = image_for(&healthy, &diverged).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let refused = reinstall(&diverged, &path, Duration::from_secs(1)).await;
        assert!(refused.is_err());
        assert_eq!(diverged.reader().applied_index(), 1);
    }
}
