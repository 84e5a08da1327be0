//! Artifacts: their metadata record and their content as stored, with
//! compression and SHA-256 verification.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The metadata of one artifact, as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// Unique id.
    pub id: String,
    /// The conversation it belongs to (may be empty).
    pub conversation_id: String,
    /// Free-form kind.
    pub kind: String,
    /// Human title.
    pub title: String,
    /// MIME type of the content.
    pub content_type: String,
    /// User metadata, a serialized JSON object.
    pub metadata_json: String,
    /// 1 on create, +1 on every update.
    pub version: u64,
    /// Log index of the last change.
    pub revision: u64,
    /// Content length in bytes, uncompressed.
    pub size: u64,
    /// Content length as stored.
    pub stored_size: u64,
    /// Whether the stored content is lz4-compressed.
    pub compressed: bool,
    /// SHA-256 of the uncompressed content, lowercase hex.
    pub checksum: String,
    /// Replicated time of creation.
    pub created_ms: u64,
    /// Replicated time of the last change.
    pub updated_ms: u64,
}

/// Content prepared for storage: the bytes to keep plus what is needed to
/// verify them. Built once at the edge, so replicas do no compression work.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredContent {
    /// The bytes to store (lz4 block with size prefix when `compressed`).
    /// Encoded as one byte string, not a sequence of integers.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Whether `bytes` is compressed.
    pub compressed: bool,
    /// Uncompressed length.
    pub size: u64,
    /// SHA-256 of the uncompressed content, lowercase hex.
    pub checksum: String,
}

impl std::fmt::Debug for StoredContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredContent")
            .field("stored", &self.bytes.len())
            .field("compressed", &self.compressed)
            .field("size", &self.size)
            .field("checksum", &self.checksum)
            .finish()
    }
}

/// Stored content that does not match its checksum (or cannot be decompressed).
#[derive(Debug, thiserror::Error)]
#[error("stored content is corrupt: {0}")]
pub struct Corrupt(pub String);

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl StoredContent {
    /// Prepares `data` for storage: checksums it and compresses it when it is
    /// larger than `threshold` bytes and compression actually saves space.
    pub fn prepare(data: &[u8], threshold: usize) -> Self {
        let checksum = sha256_hex(data);
        let size = data.len() as u64;
        if data.len() > threshold {
            let packed = lz4_flex::compress_prepend_size(data);
            if packed.len() < data.len() {
                return Self {
                    bytes: packed,
                    compressed: true,
                    size,
                    checksum,
                };
            }
        }
        Self {
            bytes: data.to_vec(),
            compressed: false,
            size,
            checksum,
        }
    }

    /// The original content, verified against the checksum.
    pub fn open(&self) -> Result<Vec<u8>, Corrupt> {
        let data = if self.compressed {
            lz4_flex::decompress_size_prepended(&self.bytes)
                .map_err(|e| Corrupt(format!("lz4: {e}")))?
        } else {
            self.bytes.clone()
        };
        if data.len() as u64 != self.size {
            return Err(Corrupt(format!(
                "length {} != recorded {}",
                data.len(),
                self.size
            )));
        }
        let actual = sha256_hex(&data);
        if actual != self.checksum {
            return Err(Corrupt(format!(
                "sha256 {actual} != recorded {}",
                self.checksum
            )));
        }
        Ok(data)
    }
}

/// Maps a corrupt-content error into an `io::Error` for stream bodies.
impl From<Corrupt> for io::Error {
    fn from(e: Corrupt) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_content_is_kept_verbatim() {
        let c = StoredContent::prepare(b"hello", 1024);
        assert!(!c.compressed);
        assert_eq!(c.bytes, b"hello");
        assert_eq!(c.open().unwrap(), b"hello");
    }

    #[test]
    fn large_compressible_content_is_compressed_and_round_trips() {
        let data = "the same line again\n".repeat(1000).into_bytes();
        let c = StoredContent::prepare(&data, 1024);
        assert!(c.compressed);
        assert!(c.bytes.len() < data.len() / 4);
        assert_eq!(c.open().unwrap(), data);
    }

    #[test]
    fn incompressible_content_is_stored_raw() {
        // A xorshift stream does not compress.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let c = StoredContent::prepare(&data, 1024);
        assert!(!c.compressed);
        assert_eq!(c.open().unwrap(), data);
    }

    #[test]
    fn a_flipped_byte_is_never_served() {
        for data in [b"short".to_vec(), "abc".repeat(2000).into_bytes()] {
            let mut c = StoredContent::prepare(&data, 1024);
            let last = c.bytes.len() - 1;
            c.bytes[last] ^= 0x01;
            assert!(c.open().is_err());
        }
    }
}
