//! cairn-jepsen: chaos and partition testing for Cairn, in the manner of
//! Jepsen. It starts a cluster of real `cairn` processes, each in its own
//! network namespace on a private bridge, runs a workload through random
//! nodes while a nemesis injects faults (partitions, kill -9, pauses, clock
//! skew, packet loss, leader transfers, membership changes), heals, waits
//! for recovery, and checks the recorded
//! history: linearizability per key, lost acknowledged writes, lock safety.
//!
//! It talks to the cluster only over HTTP and through process and network
//! control, as a user would; it does not link the store's crates.
//!
//! ```no_run
//! // The checkers work on any recorded history:
//! let ops = cairn_jepsen::history::load("history.jsonl".as_ref()).unwrap();
//! let verdict = cairn_jepsen::checker::register::check(&ops, std::time::Duration::from_secs(10));
//! println!("{:?}", verdict.validity);
//! ```

pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod plot;
pub mod run;
pub mod tools;
pub mod watch;
pub mod workload;
