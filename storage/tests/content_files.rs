//! Artifact content kept in files of its own: written before the state
//! names it, deleted once the state drops it, carried by snapshots and
//! digests and written again from the newest snapshot on open, swept of
//! strays, and moved out of the sled tree of a store that kept its state
//! there.

use std::path::Path;
use std::sync::atomic::Ordering;

use cairn_storage::content::CONTENT_DIR;
use cairn_storage::types::{Entry, LogId};
use cairn_storage::{keys, ArtifactFields, Command, Precondition, Request, Store, StoredContent};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};

fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request::new(index * 10, command)),
    }
}

/// Content that does not compress, so the file holds it as given.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn put(index: u64, id: &str, data: &[u8]) -> Entry {
    let command = Command::PutArtifact {
        id: id.into(),
        fields: ArtifactFields::default(),
        content: StoredContent::prepare(data, 1024),
        merge: false,
        precondition: Precondition::None,
    };
    entry(index, command)
}

/// A record as the store's one codec encodes it.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    cairn_storage::codec::encode(value).unwrap()
}

fn content_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(CONTENT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read(store: &Store, id: &str) -> Option<Vec<u8>> {
    let (_, stored) = store
        .state_machine
        .reader()
        .artifact_with_content(id)
        .unwrap()?;
    Some(stored.open().unwrap())
}

#[tokio::test]
async fn a_replaced_version_loses_its_file_once_the_batch_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sm = store.state_machine.clone();
    let (one, two) = (noise(70_000, 1), noise(90_000, 2));
    sm.apply(vec![put(1, "a", &one)]).await.unwrap();
    assert_eq!(content_files(dir.path()).len(), 1);
    assert_eq!(read(&store, "a").unwrap(), one);

    sm.apply(vec![put(2, "a", &two)]).await.unwrap();
    assert_eq!(read(&store, "a").unwrap(), two);
    assert_eq!(content_files(dir.path()).len(), 1);

    let delete = Command::DeleteArtifact {
        id: "a".into(),
        precondition: Precondition::None,
    };
    sm.apply(vec![entry(3, delete)]).await.unwrap();
    assert_eq!(read(&store, "a"), None);
    assert_eq!(content_files(dir.path()).len(), 0);
}

/// Entries 3 to 5: "a" replaced by `data`, "b" deleted, "c" created.
fn after_snapshot(data: &[u8]) -> Vec<Entry> {
    let delete = Command::DeleteArtifact {
        id: "b".into(),
        precondition: Precondition::None,
    };
    vec![put(3, "a", data), entry(4, delete), put(5, "c", data)]
}

#[tokio::test]
async fn a_reopened_store_is_its_newest_snapshot_with_the_content_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (noise(60_000, 8), noise(80_000, 9));
    {
        let store = Store::open(dir.path()).unwrap();
        let mut sm = store.state_machine.clone();
        sm.apply(vec![put(1, "a", &one), put(2, "b", &one)])
            .await
            .unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(sm.durable_applied().load(Ordering::Acquire), 2);
        // After the snapshot: "a" replaced (its snapshot version's file
        // deleted), "b" deleted, "c" new. None of it is in the snapshot.
        sm.apply(after_snapshot(&two)).await.unwrap();
        assert_eq!(content_files(dir.path()).len(), 2);
    }
    let store = Store::open(dir.path()).unwrap();
    let mut sm = store.state_machine.clone();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert_eq!(sm.durable_applied().load(Ordering::Acquire), 2);
    // The snapshot's versions, their files written again where missing.
    assert_eq!(read(&store, "a").unwrap(), one);
    assert_eq!(read(&store, "b").unwrap(), one);
    assert_eq!(read(&store, "c"), None);
    assert_eq!(content_files(dir.path()).len(), 2);
    let scrub = store.state_machine.reader().scrub().unwrap();
    assert_eq!((scrub.checked, scrub.corrupt.len()), (2, 0));
    // Re-applying the entries after it (as openraft does from the log)
    // gives the state the store had before it closed.
    sm.apply(after_snapshot(&two)).await.unwrap();
    assert_eq!(read(&store, "a").unwrap(), two);
    assert_eq!(read(&store, "b"), None);
    assert_eq!(read(&store, "c").unwrap(), two);
    assert_eq!(content_files(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_snapshot_carries_the_content_and_its_install_sweeps_the_old_files() {
    let (from_dir, to_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let from = Store::open(from_dir.path()).unwrap();
    let to = Store::open(to_dir.path()).unwrap();
    let (a, b) = (noise(200_000, 3), b"compressible ".repeat(10_000));
    let mut source = from.state_machine.clone();
    source
        .apply(vec![put(1, "a", &a), put(2, "b", &b)])
        .await
        .unwrap();
    // The receiving replica holds an artifact the snapshot does not.
    let mut target = to.state_machine.clone();
    target
        .apply(vec![put(1, "stray", &noise(1000, 4))])
        .await
        .unwrap();

    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut into = target.begin_receiving_snapshot().await.unwrap();
    let mut file = std::fs::File::open(&snapshot.snapshot.path).unwrap();
    std::io::copy(&mut file, &mut into.file).unwrap();
    target.install_snapshot(&snapshot.meta, into).await.unwrap();

    assert_eq!(read(&to, "a").unwrap(), a);
    assert_eq!(read(&to, "b").unwrap(), b);
    assert_eq!(read(&to, "stray"), None);
    assert_eq!(content_files(to_dir.path()), content_files(from_dir.path()));
}

#[tokio::test]
async fn digests_cover_the_content_in_the_files() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let stores: Vec<Store> = dirs
        .iter()
        .map(|d| Store::open(d.path()).unwrap())
        .collect();
    let data = noise(50_000, 5);
    for store in &stores {
        let mut sm = store.state_machine.clone();
        sm.apply(vec![put(1, "a", &data), entry(2, Command::DigestMarker)])
            .await
            .unwrap();
    }
    let digest = |store: &Store, index| {
        store
            .state_machine
            .reader()
            .digest_at(index)
            .unwrap()
            .unwrap()
    };
    assert_eq!(digest(&stores[0], 2), digest(&stores[1], 2));

    // One flipped byte in one replica's file changes its digest.
    let damaged = stores[1].state_machine.reader();
    assert!(damaged.damage_content_for_tests("a").await.unwrap());
    assert!(damaged.verify_content("a").unwrap().is_some());
    for store in &stores {
        let mut sm = store.state_machine.clone();
        sm.apply(vec![entry(3, Command::DigestMarker)])
            .await
            .unwrap();
    }
    assert_ne!(digest(&stores[0], 3).digest, digest(&stores[1], 3).digest);
    assert_eq!(damaged.scrub().unwrap().corrupt.len(), 1);
    assert!(stores[0]
        .state_machine
        .reader()
        .scrub()
        .unwrap()
        .corrupt
        .is_empty());
}

#[tokio::test]
async fn a_missing_file_reads_as_damage_not_as_an_absent_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sm = store.state_machine.clone();
    sm.apply(vec![put(1, "a", &noise(5000, 6))]).await.unwrap();
    for name in content_files(dir.path()) {
        std::fs::remove_file(dir.path().join(CONTENT_DIR).join(name)).unwrap();
    }
    let reader = store.state_machine.reader();
    let (_, stored) = reader.artifact_with_content("a").unwrap().unwrap();
    assert!(stored.open().is_err());
    assert_eq!(reader.scrub().unwrap().corrupt.len(), 1);
}

#[tokio::test]
async fn opening_a_store_that_kept_its_state_in_sled_moves_it_into_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(100_000, 7);
    let (meta, stored) = {
        let scratch = tempfile::tempdir().unwrap();
        let store = Store::open(scratch.path()).unwrap();
        let mut sm = store.state_machine.clone();
        sm.apply(vec![put(1, "a", &data)]).await.unwrap();
        store
            .state_machine
            .reader()
            .artifact_with_content("a")
            .unwrap()
            .unwrap()
    };
    let stray = {
        // The records a store of the previous layout held in its sled
        // `state` tree at applied index 2, content included, and no file.
        let store = Store::open(dir.path()).unwrap();
        let tree = store.durable.db().open_tree(keys::STATE_TREE).unwrap();
        let applied = Some(LogId::new(CommittedLeaderId::new(1, 1), 2));
        tree.insert(keys::APPLIED, encode(&applied)).unwrap();
        tree.insert(keys::artifact("a"), encode(&meta)).unwrap();
        tree.insert(keys::blob("a"), encode(&stored)).unwrap();
        let record = cairn_storage::KvRecord {
            key: "k".into(),
            value: b"v".to_vec(),
            version: 1,
            revision: 2,
            created_ms: 20,
            updated_ms: 20,
            expires_ms: None,
        };
        tree.insert(keys::kv("k"), encode(&record)).unwrap();
        store.durable.flush().unwrap();
        let stray = dir.path().join(CONTENT_DIR).join("tmp-left-by-a-crash");
        std::fs::write(&stray, b"half").unwrap();
        stray
    };
    let store = Store::open(dir.path()).unwrap();
    let mut sm = store.state_machine.clone();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert_eq!(read(&store, "a").unwrap(), data);
    let reader = store.state_machine.reader();
    assert_eq!(
        reader.kv("k").unwrap().map(|r| r.value),
        Some(b"v".to_vec())
    );
    assert!(!stray.exists());
    assert_eq!(content_files(dir.path()).len(), 1);
    // The old tree is gone, and the state is durable as a snapshot.
    let names = store.durable.db().tree_names();
    assert!(!names.iter().any(|n| n == keys::STATE_TREE.as_bytes()));
    let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snapshot.meta.last_log_id, applied);
    drop((sm, reader, store));
    // Opened again, the state comes from that snapshot.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read(&store, "a").unwrap(), data);
    let reader = store.state_machine.reader();
    assert_eq!(
        reader.kv("k").unwrap().map(|r| r.value),
        Some(b"v".to_vec())
    );
}
