//! The names of every metric Cairn exports, in one place.
//!
//! They live in the lowest crate so that storage, the peer transport and the
//! node all record under the same names; `cairn::telemetry` describes them
//! and renders them at `GET /metrics`. Dashboards and alert rules in
//! `deploy/` use exactly these names.

/// Raft: current term (gauge).
pub const RAFT_TERM: &str = "cairn_raft_term";
/// Raft: 1 when this node leads, else 0 (gauge).
pub const RAFT_IS_LEADER: &str = "cairn_raft_is_leader";
/// Raft: times this node saw a new leader (counter).
pub const RAFT_LEADER_CHANGES: &str = "cairn_raft_leader_changes_total";
/// Raft: highest log index known committed (gauge).
pub const RAFT_COMMIT_INDEX: &str = "cairn_raft_commit_index";
/// Raft: highest log index applied to the state machine (gauge).
pub const RAFT_APPLIED_INDEX: &str = "cairn_raft_applied_index";
/// Raft: last log index (gauge).
pub const RAFT_LAST_LOG_INDEX: &str = "cairn_raft_last_log_index";
/// Raft: entries a follower trails the leader's log by, label `peer`
/// (gauge, reported by the leader; 0 elsewhere).
pub const RAFT_REPLICATION_LAG: &str = "cairn_raft_replication_lag_entries";
/// Raft: time from a log append to its fsync (histogram, seconds).
pub const RAFT_LOG_APPEND_SECONDS: &str = "cairn_raft_log_append_duration_seconds";
/// Raft: entries per log append (histogram).
pub const RAFT_LOG_APPEND_ENTRIES: &str = "cairn_raft_log_append_entries";
/// Raft: client writes the leader proposed as one log entry, for batches
/// of two or more (histogram).
pub const RAFT_PROPOSAL_BATCH_SIZE: &str = "cairn_raft_proposal_batch_size";
/// Raft: snapshots built or installed, label `op` = `build|install` (counter).
pub const RAFT_SNAPSHOTS: &str = "cairn_raft_snapshots_total";
/// Raft: size of the newest snapshot file (gauge, bytes).
pub const RAFT_SNAPSHOT_BYTES: &str = "cairn_raft_snapshot_size_bytes";
/// Raft: time to build or install a snapshot, label `op` (histogram, seconds).
pub const RAFT_SNAPSHOT_SECONDS: &str = "cairn_raft_snapshot_duration_seconds";
/// Raft: log index of the newest snapshot (gauge).
pub const RAFT_SNAPSHOT_INDEX: &str = "cairn_raft_snapshot_index";

/// API: requests served, labels `route`, `method`, `status` (counter).
pub const HTTP_REQUESTS: &str = "cairn_http_requests_total";
/// API: request latency, labels `route`, `method`, `status` (histogram, seconds).
pub const HTTP_REQUEST_SECONDS: &str = "cairn_http_request_duration_seconds";
/// API: requests a follower forwarded to the leader, label `kind` (counter).
pub const FORWARDED_REQUESTS: &str = "cairn_forwarded_requests_total";
/// API: writes a follower forwarded to the leader in one call (histogram).
pub const FORWARD_BATCH_SIZE: &str = "cairn_forward_batch_size";

/// Storage: bytes the data directory takes on disk (gauge).
pub const STORAGE_DISK_BYTES: &str = "cairn_storage_disk_bytes";
/// Storage: bytes free on the data directory's file system (gauge).
pub const STORAGE_DISK_FREE_BYTES: &str = "cairn_storage_disk_free_bytes";
/// Storage: artifacts stored (gauge).
pub const STORAGE_ARTIFACTS: &str = "cairn_storage_artifacts";
/// Storage: artifact bytes before compression (gauge).
pub const STORAGE_CONTENT_BYTES: &str = "cairn_storage_content_bytes";
/// Storage: artifact bytes as stored (gauge).
pub const STORAGE_STORED_BYTES: &str = "cairn_storage_stored_bytes";
/// Storage: content bytes / stored bytes (gauge, ≥ 1 when compression helps).
pub const STORAGE_COMPRESSION_RATIO: &str = "cairn_storage_compression_ratio";
/// Storage: stored content found not matching its checksum, label `found_by`
/// = `read|scrub` (counter).
pub const CHECKSUM_FAILURES: &str = "cairn_checksum_failures_total";
/// Storage: corrupt content rewritten from a healthy member, label `outcome`
/// = `repaired|failed` (counter).
pub const CONTENT_REPAIRS: &str = "cairn_content_repairs_total";
/// Storage: scrub passes completed (counter).
pub const SCRUB_RUNS: &str = "cairn_scrub_runs_total";
/// Storage: duration of one scrub pass (histogram, seconds).
pub const SCRUB_SECONDS: &str = "cairn_scrub_duration_seconds";
/// Storage: content items currently known corrupt and not yet repaired (gauge).
pub const CORRUPT_CONTENT: &str = "cairn_corrupt_content";

/// Health: this node's health score, 0-100 (gauge).
pub const HEALTH_SCORE: &str = "cairn_health_score";

/// Locks: locks currently held (gauge).
pub const LOCKS_HELD: &str = "cairn_locks_held";
/// Locks: successful acquisitions (counter).
pub const LOCK_ACQUISITIONS: &str = "cairn_lock_acquisitions_total";
/// Locks: leases that expired on the replicated clock (counter).
pub const LOCK_EXPIRIES: &str = "cairn_lock_expiries_total";
/// Locks: writes or renewals refused for a stale fencing token (counter).
pub const LOCK_FENCED_REJECTIONS: &str = "cairn_lock_fenced_rejections_total";

/// Watch: open watch streams on this node (gauge).
pub const WATCH_SUBSCRIBERS: &str = "cairn_watch_subscribers";
/// Watch: change events sent to watchers (counter).
pub const WATCH_EVENTS: &str = "cairn_watch_events_total";
