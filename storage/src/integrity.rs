//! Integrity of a replica's stored state: digests at consistency markers,
//! scrubbing stored content against its checksums, and rewriting content
//! that failed from a verified copy.
//!
//! A digest is taken by the state machine right after it applies a
//! [`crate::Command::DigestMarker`] entry, so every replica digests its state
//! at the same log position; the records are kept in a local tree that is
//! neither replicated nor part of a snapshot. Repairs write only content
//! whose checksum matches the replicated metadata, under the apply gate, so
//! they restore the replicated state and never invent a new one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::{ArtifactMeta, StoredContent};
use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::keys;
use crate::state_machine::{RecordSink, Shared, StateReader};

/// Name of the sled tree holding this replica's digest records.
pub const DIGEST_TREE: &str = "local/digests";
/// How many digest records a replica keeps.
const KEEP_DIGESTS: usize = 64;

/// A replica's digest of its replicated state at one log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRecord {
    /// The log index of the marker the digest was taken at.
    pub index: u64,
    /// SHA-256 over every replicated key and value, in key order, hex.
    pub digest: String,
    /// How many keys the state held.
    pub keys: u64,
}

/// Stored content that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptItem {
    /// The artifact id.
    pub id: String,
    /// What was wrong.
    pub reason: String,
}

/// What one scrub pass over stored content found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Content items verified.
    pub checked: u64,
    /// Items that failed verification.
    pub corrupt: Vec<CorruptItem>,
}

/// Totals over the stored artifacts, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentTotals {
    /// Artifacts stored.
    pub artifacts: u64,
    /// Their content bytes, uncompressed.
    pub content_bytes: u64,
    /// Their content bytes as stored.
    pub stored_bytes: u64,
}

/// The outcome of writing a verified copy over damaged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairOutcome {
    /// The copy was written.
    Repaired,
    /// The local content already verifies (someone repaired or rewrote it).
    AlreadyHealthy,
    /// The artifact no longer exists here.
    Gone,
    /// The copy does not match the current metadata (a newer or older
    /// version); nothing was written.
    Mismatch,
}

/// Digests the replicated state of `shared` and records it for `index`.
/// Called by the state machine, under the apply gate, right after the
/// marker at `index` is committed to the tree.
pub(crate) fn record_digest(shared: &Shared, index: u64) -> Result<(), StoreError> {
    let record = digest_records(index, |f| shared.for_each_replicated_record(f))?;
    shared
        .digests
        .insert(index.to_be_bytes(), encode(&record)?)?;
    while shared.digests.len() > KEEP_DIGESTS {
        match shared.digests.pop_min()? {
            Some(_) => {}
            None => break,
        }
    }
    tracing::debug!(index, digest = %record.digest, "recorded state digest");
    Ok(())
}

/// SHA-256 over every record `records` hands out (what a snapshot
/// carries, content included), each length-prefixed so the encoding is
/// unambiguous.
fn digest_records(
    index: u64,
    records: impl FnOnce(&mut RecordSink<'_>) -> Result<(), StoreError>,
) -> Result<DigestRecord, StoreError> {
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    records(&mut |k, v| {
        hasher.update((k.len() as u64).to_be_bytes());
        hasher.update(k);
        hasher.update((v.len() as u64).to_be_bytes());
        hasher.update(v);
        count += 1;
        Ok(())
    })?;
    Ok(DigestRecord {
        index,
        digest: hex::encode(hasher.finalize()),
        keys: count,
    })
}

/// Why one stored content item does not verify, if it does not.
fn verify(meta: Option<&ArtifactMeta>, blob: &[u8]) -> Option<String> {
    let content: StoredContent = match decode(blob) {
        Ok(c) => c,
        Err(e) => return Some(format!("undecodable record: {e}")),
    };
    if let Err(e) = content.open() {
        return Some(e.to_string());
    }
    match meta {
        None => Some("content without metadata".into()),
        Some(m) if m.checksum != content.checksum || m.size != content.size => Some(format!(
            "content checksum {} does not match the metadata's {}",
            content.checksum, m.checksum
        )),
        Some(_) => None,
    }
}

impl StateReader {
    /// This replica's digest at marker `index`, if it applied that marker
    /// (a replica that installed a snapshot past it has none).
    pub fn digest_at(&self, index: u64) -> Result<Option<DigestRecord>, StoreError> {
        match self.shared.digests.get(index.to_be_bytes())? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Verifies one artifact's stored content; `None` when it is healthy or absent.
    pub fn verify_content(&self, id: &str) -> Result<Option<CorruptItem>, StoreError> {
        let Some((meta, content)) = self.artifact_with_content(id)? else {
            return Ok(None);
        };
        let blob = encode(&content)?;
        Ok(verify(Some(&meta), &blob).map(|reason| CorruptItem {
            id: id.to_string(),
            reason,
        }))
    }

    /// Verifies every stored content item against its checksum and its
    /// metadata. Runs beside apply; an item that looks damaged is checked
    /// again as a consistent pair, so a concurrent update is not reported.
    pub fn scrub(&self) -> Result<ScrubReport, StoreError> {
        let mut report = ScrubReport::default();
        for (_, value) in self.shared.state.scan_prefix(keys::ARTIFACT_PREFIX) {
            let meta: ArtifactMeta = decode(&value)?;
            report.checked += 1;
            let (content, _) = self.shared.content.read(&meta)?;
            if verify(Some(&meta), &encode(&content)?).is_some() {
                if let Some(found) = self.verify_content(&meta.id)? {
                    report.corrupt.push(found);
                }
            }
        }
        Ok(report)
    }

    /// The stored content of `id` when it verifies against its checksum and
    /// metadata: what a healthy member hands to one repairing itself.
    pub fn verified_content(&self, id: &str) -> Result<Option<StoredContent>, StoreError> {
        let Some((meta, content)) = self.artifact_with_content(id)? else {
            return Ok(None);
        };
        let ok = content.open().is_ok()
            && content.checksum == meta.checksum
            && content.size == meta.size;
        Ok(ok.then_some(content))
    }

    /// Writes `copy` as the stored content of `id` if the local copy is
    /// damaged and `copy` verifies and matches the current metadata. Holds
    /// the apply gate, so no entry changes the artifact meanwhile.
    pub async fn repair_content(
        &self,
        id: &str,
        copy: &StoredContent,
    ) -> Result<RepairOutcome, StoreError> {
        let _gate = self.shared.gate.lock().await;
        let Some(meta) = self.artifact(id)? else {
            return Ok(RepairOutcome::Gone);
        };
        if self.verify_content(id)?.is_none() {
            return Ok(RepairOutcome::AlreadyHealthy);
        }
        if copy.open().is_err() || copy.checksum != meta.checksum || copy.size != meta.size {
            return Ok(RepairOutcome::Mismatch);
        }
        let (content, meta) = (copy.bytes.clone(), meta.clone());
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.content.replace(&meta, &content))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(RepairOutcome::Repaired)
    }

    /// Flips one byte of the stored content of `id` on this replica only,
    /// bypassing Raft: simulated disk corruption for tests of detection and
    /// repair. Returns false when there is no such content.
    pub async fn damage_content_for_tests(&self, id: &str) -> Result<bool, StoreError> {
        let _gate = self.shared.gate.lock().await;
        let Some(meta) = self.artifact(id)? else {
            return Ok(false);
        };
        let (mut content, _) = self.shared.content.read(&meta)?;
        match content.bytes.last_mut() {
            Some(b) => *b ^= 0x01,
            None => content.bytes.push(0),
        }
        self.shared.content.replace(&meta, &content.bytes)?;
        Ok(true)
    }

    /// Counts the artifacts and their content bytes (a scan of the
    /// metadata records).
    pub fn content_totals(&self) -> Result<ContentTotals, StoreError> {
        let mut t = ContentTotals::default();
        for (_, v) in self.shared.state.scan_prefix(keys::ARTIFACT_PREFIX) {
            let meta: ArtifactMeta = decode(&v)?;
            t.artifacts += 1;
            t.content_bytes += meta.size;
            t.stored_bytes += meta.stored_size;
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(records: &[(&[u8], &[u8])]) -> DigestRecord {
        digest_records(1, |f| {
            for (k, v) in records {
                f(k, v)?;
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn digest_counts_records_and_changes_with_any_value() {
        let a = digest(&[(b"art/x", b"1"), (b"blob/x", b"content")]);
        assert_eq!(a, digest(&[(b"art/x", b"1"), (b"blob/x", b"content")]));
        assert_eq!(a.keys, 2);
        let b = digest(&[(b"art/x", b"1"), (b"blob/x", b"contenu")]);
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn length_prefixes_keep_key_value_boundaries_apart() {
        assert_ne!(
            digest(&[(b"ab", b"c")]).digest,
            digest(&[(b"a", b"bc")]).digest
        );
    }

    #[test]
    fn a_flipped_content_byte_fails_verification() {
        let content = StoredContent::prepare(b"hello world", 1024);
        let meta_ok = |c: &StoredContent| ArtifactMeta {
            id: "x".into(),
            conversation_id: String::new(),
            kind: String::new(),
            title: String::new(),
            content_type: String::new(),
            metadata_json: "{}".into(),
            version: 1,
            revision: 1,
            size: c.size,
            stored_size: c.bytes.len() as u64,
            compressed: c.compressed,
            checksum: c.checksum.clone(),
            created_ms: 0,
            updated_ms: 0,
        };
        let meta = meta_ok(&content);
        assert_eq!(verify(Some(&meta), &encode(&content).unwrap()), None);
        let mut bad = content.clone();
        bad.bytes[0] ^= 1;
        assert!(verify(Some(&meta), &encode(&bad).unwrap()).is_some());
        assert!(verify(None, &encode(&content).unwrap()).is_some());
        assert!(verify(Some(&meta), b"\xff\xff").is_some());
    }
}
