//! The key layout of the state tree. One tree holds everything so that each
//! applied batch is one atomic sled batch.
//!
//! | key | value |
//! | --- | --- |
//! | `sys/applied`, `sys/membership` | last applied log id, membership (not in snapshots: carried by the snapshot meta) |
//! | `clock` | the replicated clock (ms) |
//! | `cluster_id` | the cluster's id, set once at bootstrap |
//! | `art/<id>` | [`crate::ArtifactMeta`] |
//! | `blob/<id>` | [`crate::StoredContent`]: only in snapshots and digests; the state keeps content in files ([`crate::content`]) |
//! | `conv/<conversation>/<id>` | empty: the conversation index of artifacts |
//! | `kv/<key>` | [`crate::records::KvRecord`] |
//! | `lock/<name>` | [`crate::records::LockRecord`] (held locks only) |
//! | `lockq/<name>/<u64 BE request>` | [`crate::records::LockWaiter`], in arrival order |
//! | `inst/<id>` | [`crate::records::InstanceRecord`] |
//! | `ev/<u64 BE revision><u32 BE seq>` | [`crate::event::Event`]: the watch history |
//! | `evstat` | [`crate::event::HistoryStats`] |
//! | `lockseq` | the last lock id issued (fencing token or queue place) |
//! | `idem/<key>` | idempotency record |
//! | `sess/<u128 BE session>` | a node's write session: what its sender has been answered, when it was last used |
//! | `sout/<u128 BE session><u64 BE seq>` | the outcome of one session write, kept until its sender has it |
//! | `exp/<u64 BE ms><key>` | expiry index of user-visible TTLs and leases: `<key>` is due then; the leader ticks while it is not empty |
//! | `gc/<u64 BE ms><key>` | housekeeping index (idempotency records, sessions), purged by any entry, never ticked for |

/// Name of the sled tree in which stores written before the state moved
/// into memory kept it; read once when such a store opens, then dropped.
pub const STATE_TREE: &str = "state";
/// Last applied log id.
pub const APPLIED: &[u8] = b"sys/applied";
/// Last applied membership.
pub const MEMBERSHIP: &[u8] = b"sys/membership";
/// Prefix of keys that the snapshot meta carries instead of the snapshot body.
pub const SYS_PREFIX: &[u8] = b"sys/";
/// The replicated clock.
pub const CLOCK: &[u8] = b"clock";
/// The cluster id.
pub const CLUSTER_ID: &[u8] = b"cluster_id";
/// Prefix of artifact metadata.
pub const ARTIFACT_PREFIX: &[u8] = b"art/";
/// Prefix of artifact content records in snapshots and digests (and in
/// stores from before content moved into files).
pub const BLOB_PREFIX: &[u8] = b"blob/";
/// Prefix of the conversation index.
pub const CONVERSATION_PREFIX: &[u8] = b"conv/";
/// Prefix of idempotency records.
pub const IDEMPOTENCY_PREFIX: &[u8] = b"idem/";
/// Prefix of write sessions.
pub const SESSION_PREFIX: &[u8] = b"sess/";
/// Prefix of session write outcomes.
pub const SESSION_OUTCOME_PREFIX: &[u8] = b"sout/";
/// Prefix of the expiry index.
pub const EXPIRY_PREFIX: &[u8] = b"exp/";
/// Prefix of the housekeeping index.
pub const GC_PREFIX: &[u8] = b"gc/";
/// Prefix of key/value entries.
pub const KV_PREFIX: &[u8] = b"kv/";
/// Prefix of held locks.
pub const LOCK_PREFIX: &[u8] = b"lock/";
/// Prefix of lock wait queues.
pub const LOCK_QUEUE_PREFIX: &[u8] = b"lockq/";
/// Prefix of instances.
pub const INSTANCE_PREFIX: &[u8] = b"inst/";
/// Prefix of the event history.
pub const EVENT_PREFIX: &[u8] = b"ev/";
/// Statistics of the event history.
pub const EVENT_STATS: &[u8] = b"evstat";
/// The last lock id issued, so that ids stay unique within a batch.
pub const LOCK_SEQ: &[u8] = b"lockseq";

fn join(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Key of an artifact's metadata.
pub fn artifact(id: &str) -> Vec<u8> {
    join(ARTIFACT_PREFIX, id.as_bytes())
}

/// Key of an artifact's content.
pub fn blob(id: &str) -> Vec<u8> {
    join(BLOB_PREFIX, id.as_bytes())
}

/// Prefix of one conversation's index entries (ids follow it).
pub fn conversation_prefix(conversation_id: &str) -> Vec<u8> {
    let mut k = join(CONVERSATION_PREFIX, conversation_id.as_bytes());
    k.push(b'/');
    k
}

/// Index entry of artifact `id` in a conversation. Ids and conversation ids
/// never contain `/`, so the split is unambiguous.
pub fn conversation(conversation_id: &str, id: &str) -> Vec<u8> {
    let mut k = conversation_prefix(conversation_id);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Key of an idempotency record.
pub fn idempotency(key: &str) -> Vec<u8> {
    join(IDEMPOTENCY_PREFIX, key.as_bytes())
}

/// Key of a write session.
pub fn session(id: u128) -> Vec<u8> {
    join(SESSION_PREFIX, &id.to_be_bytes())
}

/// The session id of a session key (the inverse of [`session`]).
pub fn parse_session(key: &[u8]) -> Option<u128> {
    let id = key.strip_prefix(SESSION_PREFIX)?;
    Some(u128::from_be_bytes(id.try_into().ok()?))
}

/// Prefix of one session's outcomes (seqs follow it, big-endian).
pub fn session_outcome_prefix(id: u128) -> Vec<u8> {
    join(SESSION_OUTCOME_PREFIX, &id.to_be_bytes())
}

/// Key of the outcome of write `seq` of session `id`.
pub fn session_outcome(id: u128, seq: u64) -> Vec<u8> {
    let mut k = session_outcome_prefix(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key/value entry key.
pub fn kv(key: &str) -> Vec<u8> {
    join(KV_PREFIX, key.as_bytes())
}

/// Held-lock key.
pub fn lock(name: &str) -> Vec<u8> {
    join(LOCK_PREFIX, name.as_bytes())
}

/// Prefix of one lock's wait queue. Lock names never contain `/`.
pub fn lock_queue_prefix(name: &str) -> Vec<u8> {
    let mut k = join(LOCK_QUEUE_PREFIX, name.as_bytes());
    k.push(b'/');
    k
}

/// Key of one waiter in a lock's queue.
pub fn lock_waiter(name: &str, request: u64) -> Vec<u8> {
    let mut k = lock_queue_prefix(name);
    k.extend_from_slice(&request.to_be_bytes());
    k
}

/// Instance key.
pub fn instance(id: &str) -> Vec<u8> {
    join(INSTANCE_PREFIX, id.as_bytes())
}

/// Key of the `seq`-th event of revision `revision`.
pub fn event(revision: u64, seq: u32) -> Vec<u8> {
    let mut k = join(EVENT_PREFIX, &revision.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// First event key at or after `revision`.
pub fn event_from(revision: u64) -> Vec<u8> {
    join(EVENT_PREFIX, &revision.to_be_bytes())
}

/// Expiry index entry: `target` is due at `at_ms`.
pub fn expiry(at_ms: u64, target: &[u8]) -> Vec<u8> {
    timed(EXPIRY_PREFIX, at_ms, target)
}

/// Housekeeping index entry: `target` may be dropped at `at_ms`.
pub fn gc(at_ms: u64, target: &[u8]) -> Vec<u8> {
    timed(GC_PREFIX, at_ms, target)
}

fn timed(prefix: &[u8], at_ms: u64, target: &[u8]) -> Vec<u8> {
    let mut k = join(prefix, &at_ms.to_be_bytes());
    k.extend_from_slice(target);
    k
}

/// The end (exclusive) of a timed index's range due at or before `now_ms`.
pub fn due_end(prefix: &[u8], now_ms: u64) -> Vec<u8> {
    join(prefix, &now_ms.saturating_add(1).to_be_bytes())
}

/// The end (exclusive) of the expiry index range due at or before `now_ms`.
pub fn expiry_due_end(now_ms: u64) -> Vec<u8> {
    due_end(EXPIRY_PREFIX, now_ms)
}

/// Splits a timed index key (`exp/` or `gc/`) into due time and target.
pub fn parse_timed(prefix: &[u8], key: &[u8]) -> Option<(u64, Vec<u8>)> {
    let rest = key.strip_prefix(prefix)?;
    if rest.len() < 8 {
        return None;
    }
    let (ms, target) = rest.split_at(8);
    Some((u64::from_be_bytes(ms.try_into().ok()?), target.to_vec()))
}

/// Splits an expiry index key into its due time and target key.
pub fn parse_expiry(key: &[u8]) -> Option<(u64, &[u8])> {
    let rest = key.strip_prefix(EXPIRY_PREFIX)?;
    if rest.len() < 8 {
        return None;
    }
    let (ms, target) = rest.split_at(8);
    Some((u64::from_be_bytes(ms.try_into().ok()?), target))
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` if there is none (prefix of all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_and_parse_back() {
        let a = expiry(5, b"idem/x");
        let b = expiry(300, b"idem/a");
        assert!(a < b);
        assert!(b < expiry_due_end(300));
        assert!(expiry_due_end(299) <= b);
        assert_eq!(parse_expiry(&b), Some((300, &b"idem/a"[..])));
    }

    #[test]
    fn session_keys_parse_back_to_their_id() {
        let id = u128::MAX - 7;
        assert_eq!(parse_session(&session(id)), Some(id));
        assert_eq!(parse_session(b"sess/short"), None);
        assert_eq!(parse_session(&kv("x")), None);
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"art/"), Some(b"art0".to_vec()));
        assert_eq!(prefix_end(&[0x61, 0xFF]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
