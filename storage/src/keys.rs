//! The key layout of the state tree. One tree holds everything so that each
//! applied batch is one atomic sled batch.
//!
//! | key | value |
//! | --- | --- |
//! | `sys/applied`, `sys/membership` | last applied log id, membership (not in snapshots: carried by the snapshot meta) |
//! | `clock` | the replicated clock (ms) |
//! | `cluster_id` | the cluster's id, set once at bootstrap |
//! | `art/<id>` | [`crate::ArtifactMeta`] |
//! | `blob/<id>` | [`crate::StoredContent`] |
//! | `conv/<conversation>/<id>` | empty: the conversation index of artifacts |
//! | `idem/<key>` | idempotency record |
//! | `exp/<u64 BE ms><key>` | expiry index: `<key>` is due at that time |

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
/// Prefix of artifact content.
pub const BLOB_PREFIX: &[u8] = b"blob/";
/// Prefix of the conversation index.
pub const CONVERSATION_PREFIX: &[u8] = b"conv/";
/// Prefix of idempotency records.
pub const IDEMPOTENCY_PREFIX: &[u8] = b"idem/";
/// Prefix of the expiry index.
pub const EXPIRY_PREFIX: &[u8] = b"exp/";

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

/// Expiry index entry: `target` is due at `at_ms`.
pub fn expiry(at_ms: u64, target: &[u8]) -> Vec<u8> {
    let mut k = join(EXPIRY_PREFIX, &at_ms.to_be_bytes());
    k.extend_from_slice(target);
    k
}

/// The end (exclusive) of the expiry index range due at or before `now_ms`.
pub fn expiry_due_end(now_ms: u64) -> Vec<u8> {
    join(EXPIRY_PREFIX, &now_ms.saturating_add(1).to_be_bytes())
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
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"art/"), Some(b"art0".to_vec()));
        assert_eq!(prefix_end(&[0x61, 0xFF]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
