//! Errors of the storage layer.

use crate::codec::CodecError;

/// A failure to read or write the store. These are not client errors: they
/// mean the disk or the stored bytes are not what they must be.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Stored or received bytes did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// File I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot file is malformed or fails its checksum.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// Wraps a storage failure into openraft's error type for `subject`/`verb`.
pub(crate) fn raft_io_error(
    subject: openraft::ErrorSubject<crate::NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::error::Error + 'static,
) -> crate::types::StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}
