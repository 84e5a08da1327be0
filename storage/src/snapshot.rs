//! Snapshot files: the whole state at one applied log id, as a stream of
//! records closed by a SHA-256 trailer.
//!
//! Layout: `MAGIC`, a u32-length-prefixed encoded [`SnapshotMeta`], then
//! records of (u32 key length, key, u32 value length, value), an end marker
//! (`u32::MAX`), and the SHA-256 of every byte before it. A file is written
//! under a temporary name, fsynced, then renamed into place, so a crash never
//! leaves a half-written snapshot under a valid name.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::types::SnapshotMeta;
use crate::write_behind::WriteBehind;

const MAGIC: &[u8; 8] = b"CAIRNSN1";
const END: u32 = u32::MAX;

/// A snapshot as a file on disk, open for reading (or, while being received,
/// for writing). Holding the open handle keeps the bytes readable even if a
/// newer snapshot replaces the file meanwhile.
#[derive(Debug)]
pub struct SnapshotFile {
    /// Where the file is.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
}

impl SnapshotFile {
    /// Opens an existing snapshot for reading.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            file: File::open(path)?,
        })
    }

    /// Creates an empty file to receive a snapshot into.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }
}

/// Writes records into a new snapshot file while hashing them.
pub struct SnapshotWriter {
    out: BufWriter<WriteBehind>,
    hasher: Sha256,
    tmp: PathBuf,
}

impl SnapshotWriter {
    /// Starts a snapshot for `meta` under a temporary name in `dir`.
    pub fn create(dir: &Path, meta: &SnapshotMeta) -> Result<Self, StoreError> {
        let tmp = dir.join(format!("tmp-{}.snap", meta.snapshot_id));
        let mut w = Self {
            out: BufWriter::new(WriteBehind::new(File::create(&tmp)?)),
            hasher: Sha256::new(),
            tmp,
        };
        w.write(MAGIC)?;
        let header = encode(meta)?;
        w.write(&(header.len() as u32).to_be_bytes())?;
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)?;
        Ok(())
    }

    /// Appends one key/value record.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        record_pieces(key, value, |piece| self.write(piece))
    }

    /// Appends records already laid out by [`encode_record`].
    pub fn encoded_records(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(bytes)
    }

    /// Closes the file with its checksum, fsyncs it and renames it to `dest`.
    pub fn finish(mut self, dest: &Path) -> Result<(), StoreError> {
        self.write(&END.to_be_bytes())?;
        let digest = self.hasher.finalize_reset();
        self.out.write_all(&digest)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_inner();
        file.sync_all()?;
        fs::rename(&self.tmp, dest)?;
        sync_dir(dest)?;
        Ok(())
    }
}

/// The bytes [`encode_record`] adds to a record's key and value: their
/// two lengths.
pub const RECORD_OVERHEAD: usize = 8;

/// Appends one key/value record to `out` as a snapshot file holds it: the
/// key's length, the key, the value's length, the value (lengths as
/// big-endian u32).
pub fn encode_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let appended: Result<(), std::convert::Infallible> = record_pieces(key, value, |piece| {
        out.extend_from_slice(piece);
        Ok(())
    });
    let Ok(()) = appended;
}

/// Hands `f` the pieces of one record in file order: the one place that
/// knows the layout, so a record is written without being copied first.
fn record_pieces<E>(
    key: &[u8],
    value: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    f(&(key.len() as u32).to_be_bytes())?;
    f(key)?;
    f(&(value.len() as u32).to_be_bytes())?;
    f(value)
}

/// fsyncs the directory holding `path`, making a rename durable.
pub fn sync_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a snapshot file, verifying its checksum, and hands each record to
/// `on_record`. Returns the meta. Nothing is handed out before the checksum
/// is known to be good: the file is verified in a first pass.
pub fn read_snapshot(
    path: &Path,
    mut on_record: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), StoreError>,
) -> Result<SnapshotMeta, StoreError> {
    verify(path)?;
    let mut r = BufReader::new(File::open(path)?);
    let meta = read_header(&mut r)?;
    loop {
        let klen = read_u32(&mut r)?;
        if klen == END {
            return Ok(meta);
        }
        let key = read_exact_vec(&mut r, klen)?;
        let vlen = read_u32(&mut r)?;
        let value = read_exact_vec(&mut r, vlen)?;
        on_record(key, value)?;
    }
}

/// Reads only the meta of a snapshot file (after verifying it).
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, StoreError> {
    verify(path)?;
    read_header(&mut BufReader::new(File::open(path)?))
}

fn read_header(r: &mut impl Read) -> Result<SnapshotMeta, StoreError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(StoreError::Snapshot("not a Cairn snapshot".into()));
    }
    let len = read_u32(r)?;
    Ok(decode(&read_exact_vec(r, len)?)?)
}

/// Checks that the trailing SHA-256 matches the content.
fn verify(path: &Path) -> Result<(), StoreError> {
    let mut r = BufReader::new(File::open(path)?);
    let total = fs::metadata(path)?.len();
    if total < (MAGIC.len() + 4 + 4 + 32) as u64 {
        return Err(StoreError::Snapshot("file too short".into()));
    }
    let mut hasher = Sha256::new();
    let mut remaining = total - 32;
    let mut buf = vec![0u8; 1 << 16];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..want])?;
        hasher.update(&buf[..want]);
        remaining -= want as u64;
    }
    let mut trailer = [0u8; 32];
    r.read_exact(&mut trailer)?;
    if hasher.finalize().as_slice() != trailer {
        return Err(StoreError::Snapshot("checksum mismatch".into()));
    }
    Ok(())
}

fn read_u32(r: &mut impl Read) -> Result<u32, StoreError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_exact_vec(r: &mut impl Read, len: u32) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut v)?;
    if v.len() != len as usize {
        return Err(StoreError::Snapshot("truncated record".into()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LogId, StoredMembership};

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "t".into(),
        }
    }

    fn write(dir: &Path, records: &[(&[u8], &[u8])]) -> PathBuf {
        let dest = dir.join("s.snap");
        let mut w = SnapshotWriter::create(dir, &meta()).unwrap();
        for (k, v) in records {
            w.record(k, v).unwrap();
        }
        w.finish(&dest).unwrap();
        dest
    }

    #[test]
    fn records_and_meta_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &[(b"a", b"1"), (b"b", &[0u8; 100_000])]);
        let mut seen = Vec::new();
        let m = read_snapshot(&path, |k, v| {
            seen.push((k, v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(m, meta());
        assert_eq!(seen, vec![(b"a".to_vec(), 1), (b"b".to_vec(), 100_000)]);
    }

    #[test]
    fn a_corrupted_snapshot_is_refused_before_any_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &[(b"a", b"1"), (b"b", b"2")]);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        let mut handed_out = 0;
        assert!(read_snapshot(&path, |_, _| {
            handed_out += 1;
            Ok(())
        })
        .is_err());
        assert_eq!(handed_out, 0);
    }
}
