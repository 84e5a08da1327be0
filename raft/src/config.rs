//! Raft timing and log-retention settings.

use std::time::Duration;

/// Default leader heartbeat interval, in milliseconds.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default election timeout lower bound, in milliseconds: two heartbeats.
/// openraft 0.9 gives an AppendEntries one heartbeat before it counts as
/// failed, and the leader's next call to that follower goes out only then;
/// at 1.5 heartbeats one such timeout under saturating load now and then
/// started an election while the leader was alive.
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 200;

/// The Raft knobs a node exposes.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout lower bound (the upper bound is 1.5 times this).
    pub election_timeout: Duration,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging
    /// follower catches up from the log instead of a snapshot.
    pub keep_behind_snapshot: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            election_timeout: Duration::from_millis(DEFAULT_ELECTION_TIMEOUT_MS),
            snapshot_every: 20_000,
            keep_behind_snapshot: 1_000,
        }
    }
}

impl RaftSettings {
    /// The openraft configuration for these settings, validated.
    pub fn to_config(&self) -> Result<openraft::Config, openraft::ConfigError> {
        let min = self.election_timeout.as_millis() as u64;
        openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: min,
            // openraft 0.9 makes followers refuse votes for election_timeout_max
            // after the last heartbeat (the leader lease) and then wait a random
            // timeout on top, so a failover takes max + [min, max). A narrow
            // band keeps that short at the defaults (500–600 ms plus up to
            // one tick of 1.5 heartbeats) while still spreading candidates
            // apart. The heartbeat stays at 100 ms because openraft 0.9 also
            // gives every AppendEntries one heartbeat interval to complete:
            // shorter, and a 16 MiB artifact cannot reach a busy follower in
            // time.
            election_timeout_max: min + min / 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            // A batch of appends is bounded in bytes by the transport, which
            // asks for fewer entries when a batch would be too large.
            max_payload_entries: 256,
            install_snapshot_timeout: 30_000,
            ..Default::default()
        }
        .validate()
    }
}
