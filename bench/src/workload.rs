//! The workloads, named as they appear in the JSON report.

use std::fmt;

/// Value size of the key/value workloads.
pub const VALUE_BYTES: usize = 256;
/// Keys preloaded for the read workloads.
pub const READ_KEYS: u64 = 1_000;
/// Artifacts preloaded per size for the artifact read workloads.
pub const READ_ARTIFACTS: u64 = 16;
/// Lease or lock TTL: longer than any measured point, so nothing expires
/// mid-run and no keep-alive traffic is needed.
pub const LEASE_TTL_S: i64 = 600;

/// One kind of operation the driver repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 256 B put.
    Put,
    /// Linearizable get of a 256 B value.
    GetLinearizable,
    /// Stale (etcd: serializable) get of a 256 B value.
    GetStale,
    /// Lock acquire followed by its release.
    Lock,
    /// Artifact content put of the given size.
    ArtifactPut(usize),
    /// Artifact content get of the given size.
    ArtifactGet(usize),
}

impl Workload {
    /// The `workload` field of the report.
    pub fn name(self) -> String {
        match self {
            Workload::Put => "put".into(),
            Workload::GetLinearizable => "get_linearizable".into(),
            Workload::GetStale => "get_stale".into(),
            Workload::Lock => "lock".into(),
            Workload::ArtifactPut(n) | Workload::ArtifactGet(n) => {
                format!("artifact_{}", size_name(n))
            }
        }
    }

    /// The `op` field for workloads with more than one operation.
    pub fn op(self) -> Option<&'static str> {
        match self {
            Workload::ArtifactPut(_) => Some("put"),
            Workload::ArtifactGet(_) => Some("get"),
            _ => None,
        }
    }

    /// The payload of a put of this workload.
    pub fn payload(self) -> Vec<u8> {
        let n = match self {
            Workload::ArtifactPut(n) | Workload::ArtifactGet(n) => n,
            _ => VALUE_BYTES,
        };
        // Text-like bytes that compress about as LLM output does (poorly for
        // lz4 on short spans), so neither side gets a free ride.
        (0..n)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[(i * 7 + i / 37) % 37])
            .collect()
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op() {
            Some(op) => write!(f, "{} {op}", self.name()),
            None => f.write_str(&self.name()),
        }
    }
}

fn size_name(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}m", n >> 20)
    } else {
        format!("{}k", n >> 10)
    }
}

/// The key a put writes: each worker cycles over 100 keys of its own.
pub fn put_key(worker: usize, seq: u64) -> String {
    format!("bench/put/{worker}/{}", seq % 100)
}

/// The key a get reads, spread over the preloaded keys.
pub fn read_key(worker: usize, seq: u64) -> String {
    format!("bench/get/{}", (worker as u64 * 7_919 + seq) % READ_KEYS)
}

/// The artifact id a put writes (8 per worker) or a get reads.
pub fn artifact_id(size: usize, worker: usize, seq: u64, reading: bool) -> String {
    if reading {
        format!(
            "bench-{}-r{}",
            size_name(size),
            (worker as u64 + seq) % READ_ARTIFACTS
        )
    } else {
        format!("bench-{}-w{worker}-{}", size_name(size), seq % 8)
    }
}

/// The lock a worker cycles: its own, so the cycle measures the store, not
/// queueing behind other workers.
pub fn lock_name(worker: usize) -> String {
    format!("bench-lock-{worker}")
}
