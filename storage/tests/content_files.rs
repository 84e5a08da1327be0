//! Artifact content kept in files of its own: written before the state
//! names it, deleted only after a durable flush drops it, carried by
//! snapshots and digests, swept of strays, and moved out of the tree of a
//! store that kept it there.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_storage::content::CONTENT_DIR;
use cairn_storage::types::{Entry, LogId};
use cairn_storage::{
    keys, ArtifactFields, ArtifactMeta, Command, Precondition, Request, Store, StoredContent,
};
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

/// Waits (with a deadline) until the store's content folder holds `count` files.
fn wait_for_files(dir: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while content_files(dir).len() != count {
        assert!(
            Instant::now() < deadline,
            "content files stayed {:?}, expected {count}",
            content_files(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_replaced_version_keeps_its_file_until_a_durable_flush_then_loses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sm = store.state_machine.clone();
    let (one, two) = (noise(70_000, 1), noise(90_000, 2));
    sm.apply(vec![put(1, "a", &one)]).await.unwrap();
    assert_eq!(content_files(dir.path()).len(), 1);
    assert_eq!(read(&store, "a").unwrap(), one);

    sm.apply(vec![put(2, "a", &two)]).await.unwrap();
    assert_eq!(read(&store, "a").unwrap(), two);
    // The timed durable flush deletes the first version's file.
    wait_for_files(dir.path(), 1);
    assert_eq!(read(&store, "a").unwrap(), two);

    let delete = Command::DeleteArtifact {
        id: "a".into(),
        precondition: Precondition::None,
    };
    sm.apply(vec![entry(3, delete)]).await.unwrap();
    assert_eq!(read(&store, "a"), None);
    wait_for_files(dir.path(), 0);
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
async fn opening_moves_content_out_of_the_tree_and_removes_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(100_000, 7);
    let stray = {
        let store = Store::open(dir.path()).unwrap();
        let mut sm = store.state_machine.clone();
        sm.apply(vec![put(1, "a", &data)]).await.unwrap();
        // Write the content back into the tree as a store that kept it
        // there would have it, and remove its file.
        let (meta, stored) = store
            .state_machine
            .reader()
            .artifact_with_content("a")
            .unwrap()
            .unwrap();
        let tree = store.durable.db().open_tree(keys::STATE_TREE).unwrap();
        let encoded = cairn_storage::codec::encode(&stored).unwrap();
        tree.insert(keys::blob("a"), encoded).unwrap();
        store.durable.flush().unwrap();
        let files = dir.path().join(CONTENT_DIR);
        std::fs::remove_file(files.join(cairn_storage::content::file_name(&meta))).unwrap();
        let stray = files.join("tmp-left-by-a-crash");
        std::fs::write(&stray, b"half").unwrap();
        stray
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read(&store, "a").unwrap(), data);
    assert!(!stray.exists());
    assert_eq!(content_files(dir.path()).len(), 1);
    let tree = store.durable.db().open_tree(keys::STATE_TREE).unwrap();
    assert!(tree.get(keys::blob("a")).unwrap().is_none());
    let meta: ArtifactMeta =
        cairn_storage::codec::decode(&tree.get(keys::artifact("a")).unwrap().unwrap()).unwrap();
    assert_eq!(meta.size, data.len() as u64);
}
