//! Write-behind for large files written in one go (snapshots).
//!
//! Written at full speed, a snapshot of many MiB sits dirty in the page
//! cache until its closing fsync, and whatever syncs the file system
//! meanwhile waits for all of it: every snapshot build starts with a
//! `syncfs` ([`crate::durable`]), and all replicas snapshot at the same
//! index, so on a shared disk each waited for the others' images (up to
//! 77 ms of a 150 ms build for an 8 MB image). Handing each finished step
//! to the kernel's write-back at once, and waiting for the step before it,
//! keeps at most two steps dirty, so syncs beside it, and the file's own
//! fsync, find little left to write. (RocksDB's `bytes_per_sync` does the
//! same for its table files.)

use std::fs::File;
use std::io::{self, Write};

/// Bytes written between two write-back requests.
const STEP_BYTES: u64 = 1024 * 1024;

/// A file writer that keeps at most two steps of its writes dirty in the
/// page cache (on Linux; elsewhere it only writes).
pub struct WriteBehind {
    file: File,
    /// Bytes written so far.
    written: u64,
    /// Where the step not yet handed to write-back starts.
    step_start: u64,
}

impl WriteBehind {
    /// Writes to `file` from its start.
    pub fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            step_start: 0,
        }
    }

    /// The file, with every write handed to the kernel (not synced).
    pub fn into_inner(self) -> File {
        self.file
    }

    /// Starts write-back of the finished step and waits for the one before.
    fn hand_over_step(&mut self) -> io::Result<()> {
        let start = self.step_start;
        let len = self.written - start;
        self.step_start = self.written;
        start_write_back(&self.file, start, len)?;
        match start.checked_sub(STEP_BYTES) {
            Some(previous) => wait_write_back(&self.file, previous, start - previous),
            None => Ok(()),
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Before the write, so that an error is reported for bytes not yet
        // written; the last step is left to the file's fsync.
        if self.written - self.step_start >= STEP_BYTES {
            self.hand_over_step()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(target_os = "linux")]
fn sync_file_range(file: &File, start: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let (Ok(start), Ok(len)) = (libc::off64_t::try_from(start), libc::off64_t::try_from(len))
    else {
        return Ok(());
    };
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps
    // open for the whole call.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), start, len, flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to start writing `len` bytes from `start` to the device.
#[cfg(target_os = "linux")]
fn start_write_back(file: &File, start: u64, len: u64) -> io::Result<()> {
    sync_file_range(file, start, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Waits until the range is written to the device (not a durability
/// guarantee: the file's fsync still provides that).
#[cfg(target_os = "linux")]
fn wait_write_back(file: &File, start: u64, len: u64) -> io::Result<()> {
    sync_file_range(
        file,
        start,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )
}

#[cfg(not(target_os = "linux"))]
fn start_write_back(_: &File, _: u64, _: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn wait_write_back(_: &File, _: u64, _: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_arrive_whole_and_in_order_across_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let chunk: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        for _ in 0..12 {
            w.write_all(&chunk).unwrap();
        }
        assert!(w.step_start >= 2 * STEP_BYTES, "steps were handed over");
        w.into_inner().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 12 * chunk.len());
        assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    }
}
