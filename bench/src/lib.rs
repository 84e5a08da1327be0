//! cairn-bench: Cairn measured side by side with etcd and Redis on one
//! machine, with the same closed-loop client code, concurrency and payloads
//! for each. Cairn and etcd run as local three-node clusters with fsync on;
//! Redis runs alone without persistence, as the upper bound for a cache or
//! lock that promises neither replication nor durability.
//!
//! The `cairn-bench` binary runs the whole matrix and writes a JSON report,
//! a Markdown table and an SVG plot; see `docs/BENCHMARKS.md`.

pub mod cairn;
pub mod driver;
pub mod etcd;
pub mod http1;
pub mod plot;
pub mod procs;
pub mod redis;
pub mod report;
pub mod run;
pub mod system;
pub mod workload;
