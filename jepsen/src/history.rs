//! The history of a run: every client operation with its invocation and
//! completion times and its outcome, written as JSON lines.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Acknowledged: it took effect (writes) or returned a value (reads).
    Ok,
    /// Definitely did not take effect (a refused connection, a 409, a 412).
    Fail,
    /// Indeterminate: it may or may not have taken effect (timeout, 503).
    Info,
}

/// A register's value as a read saw it: the store's per-object version and
/// the value written at that version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Versioned {
    /// `version`: 1 on create, +1 on every update.
    pub version: u64,
    /// The value (for artifacts: the SHA-256 of the content).
    pub value: String,
}

/// What an operation did, with its input and (when known) its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Read a register.
    Read {
        /// The register.
        key: String,
        /// What the read saw (`None`: absent, or not known when not ok).
        #[serde(default)]
        output: Option<Versioned>,
        /// Set when the content failed its checksum on the client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        corrupt: Option<String>,
    },
    /// Write a register unconditionally.
    Write {
        /// The register.
        key: String,
        /// The value written.
        value: String,
        /// The version the store answered with.
        #[serde(default)]
        version: Option<u64>,
    },
    /// Compare-and-set on the version.
    Cas {
        /// The register.
        key: String,
        /// The version the write requires (`If-Match`).
        expect: u64,
        /// The value written.
        value: String,
    },
    /// Add one element to the set.
    Add {
        /// The element.
        element: u64,
    },
    /// Read the whole set through one node (the final read).
    ReadSet {
        /// The elements seen.
        #[serde(default)]
        elements: Option<Vec<u64>>,
    },
    /// Acquire a lock.
    Acquire {
        /// The lock.
        lock: String,
        /// The fencing token granted.
        #[serde(default)]
        token: Option<u64>,
    },
    /// Release a lock.
    Release {
        /// The lock.
        lock: String,
        /// The token released.
        token: u64,
    },
    /// A write to the guarded key fenced with a lock's token.
    FencedWrite {
        /// The lock.
        lock: String,
        /// The token the write carries.
        token: u64,
        /// The guarded key.
        key: String,
        /// The value written.
        value: String,
        /// The version the store answered with.
        #[serde(default)]
        version: Option<u64>,
    },
}

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the run, in invocation order per process.
    pub id: u64,
    /// The logical client process (a new one after every `info`).
    pub process: u64,
    /// The node (1-based id) the request was sent to.
    pub node: u64,
    /// What it did.
    #[serde(flatten)]
    pub call: Call,
    /// How it ended.
    pub status: Status,
    /// Milliseconds since the run began, at invocation.
    pub invoke_ms: f64,
    /// Milliseconds since the run began, at completion.
    pub complete_ms: f64,
    /// The error, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A fault's interval, for the plot and the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultInterval {
    /// The nemesis name.
    pub nemesis: String,
    /// What exactly it did (which nodes, which cuts).
    pub detail: String,
    /// Milliseconds since the run began.
    pub start_ms: f64,
    /// Milliseconds since the run began, when healed.
    pub end_ms: f64,
}

/// Collects operations as they complete and streams them to a file.
pub struct Recorder {
    start: Instant,
    inner: Mutex<RecorderInner>,
}

struct RecorderInner {
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    next_id: u64,
}

impl Recorder {
    /// A recorder writing JSON lines to `path` (or only keeping them in memory).
    pub fn new(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(Self {
            start: Instant::now(),
            inner: Mutex::new(RecorderInner {
                ops: Vec::new(),
                file,
                next_id: 0,
            }),
        })
    }

    /// Milliseconds since the recorder was created.
    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// A fresh operation id.
    pub fn next_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderInner> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a completed operation.
    pub fn record(&self, op: Op) -> std::io::Result<()> {
        let mut inner = self.lock();
        if let Some(f) = inner.file.as_mut() {
            serde_json::to_writer(&mut *f, &op)?;
            f.write_all(b"\n")?;
        }
        inner.ops.push(op);
        Ok(())
    }

    /// How many operations completed so far.
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    /// True before the first operation completes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes the file and returns every operation recorded.
    pub fn finish(&self) -> std::io::Result<Vec<Op>> {
        let mut inner = self.lock();
        if let Some(f) = inner.file.as_mut() {
            f.flush()?;
        }
        let mut ops = inner.ops.clone();
        ops.sort_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
        Ok(ops)
    }
}

/// Reads a history written by a [`Recorder`].
pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        ops.push(op);
    }
    ops.sort_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_json_lines() {
        let dir = std::env::temp_dir().join(format!("cj-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let rec = Recorder::new(Some(&path)).unwrap();
        let op = Op {
            id: rec.next_id(),
            process: 3,
            node: 2,
            call: Call::Cas {
                key: "k".into(),
                expect: 2,
                value: "v".into(),
            },
            status: Status::Info,
            invoke_ms: 1.5,
            complete_ms: 9.0,
            error: Some("timeout".into()),
        };
        rec.record(op.clone()).unwrap();
        rec.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"f\":\"cas\""), "{text}");
        assert_eq!(load(&path).unwrap(), vec![op]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
