//! cairn-storage: Cairn's durable storage: the Raft log in a write-ahead
//! log of its own, the state machine in memory with snapshots as its
//! durable image.
//!
//! This crate holds the Raft log store and the state machine that openraft
//! drives, the replicated command model and its deterministic apply, the
//! snapshot file format, re-installing a diverged replica from a healthy
//! member's image, artifact content (compression, checksums, one file per
//! version), and the
//! one codec that owns every byte on disk and between peers.
//!
//! It does not talk to the network or decide anything about Raft: it stores
//! what openraft asks it to, and answers reads for the API.
//!
//! ```no_run
//! # fn main() -> Result<(), cairn_storage::StoreError> {
//! let store = cairn_storage::Store::open(std::path::Path::new("./cairn-data"))?;
//! let reader = store.state_machine.reader();
//! println!("applied up to {}", reader.applied_index());
//! # Ok(()) }
//! ```

pub mod apply;
pub mod artifact;
pub mod codec;
pub mod command;
pub mod content;
pub mod durable;
pub mod error;
pub mod event;
mod image;
pub mod integrity;
pub mod keys;
pub mod log_migration;
pub mod log_store;
pub mod records;
pub mod reinstall;
pub mod snapshot;
pub mod state_machine;
pub mod state_tree;
pub mod telemetry;
pub mod types;
pub mod view;
mod write_behind;

use std::path::Path;

pub use artifact::{ArtifactMeta, Corrupt, StoredContent};
pub use command::{
    ArtifactFields, Command, Fence, Idempotency, KvMeta, Precondition, Rejection, Request,
    Response, SessionWrite,
};
pub use durable::Durable;
pub use error::StoreError;
pub use event::{Event, EventKind};
pub use log_store::LogStore;
pub use records::{InstanceRecord, KvRecord, LockRecord, LockWaiter};
pub use reinstall::{ApplyPause, ExportedImage, ReinstallOutcome};
pub use snapshot::SnapshotFile;
pub use state_machine::{Page, StateMachine, StateReader};
pub use types::{NodeId, PeerNode, TypeConfig};

/// The page cache a store keeps by default: 32 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A node's storage: the Raft log and vote in their own write-ahead log,
/// the state machine in memory (durable as its newest snapshot), and a sled
/// database for this replica's local records.
pub struct Store {
    /// The database of local records ([`Durable::db`]), with its durable
    /// flushes (used on shutdown).
    pub durable: Durable,
    /// The Raft log and vote.
    pub log: LogStore,
    /// The state machine.
    pub state_machine: StateMachine,
}

impl Store {
    /// Opens (or creates) the storage under `dir`, with the default page
    /// cache ([`DEFAULT_CACHE_BYTES`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the storage under `dir`, keeping about
    /// `cache_bytes` of the local database's pages in memory. sled's own
    /// default (1 GiB) would let an embedded node grow far past its host's
    /// expectations. The applied state itself is held in memory
    /// ([`state_tree`]) and artifact content in files of its own
    /// ([`content`]); neither is part of this budget.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db_dir = dir.join("db");
        let db = sled::Config::new()
            .path(&db_dir)
            .cache_capacity(cache_bytes)
            // Flushed durably with every snapshot and on shutdown: sled's
            // timed flush would not sync its blob files.
            .flush_every_ms(None)
            .open()?;
        let durable = Durable::new(db.clone(), &db_dir)?;
        let state_machine = StateMachine::open(
            durable.clone(),
            &dir.join("snapshots"),
            &dir.join(content::CONTENT_DIR),
        )?;
        Ok(Self {
            log: LogStore::open(
                &dir.join(log_store::LOG_DIR),
                &db,
                state_machine.durable_applied(),
            )?,
            state_machine,
            durable,
        })
    }
}
