//! The state machine's apply cost per 256 B put, by how retries are kept
//! from applying twice: not at all (`plain`), an idempotency key per write
//! (`key`), or a write session per sending node (`session`).
//!
//! `cargo run --release -p cairn-storage --example apply_cost -- session`
//!
//! It applies 4,000 log entries of 32 puts each, from three senders, to a
//! state tree the way the state machine does (one overlay and one batch per
//! entry), with the replicated clock one millisecond further
//! each entry, so remembered outcomes fall due and are purged as they would
//! under load. It prints the wall time per put, on one thread.

use std::time::Instant;

use cairn_storage::apply::apply_request;
use cairn_storage::state_tree::StateTree;
use cairn_storage::view::Overlay;
use cairn_storage::{Command, Idempotency, Precondition, Request, SessionWrite};

const ENTRIES: u64 = 4_000;
const PUTS_PER_ENTRY: u64 = 32;
const SENDERS: u64 = 3;
/// Writes each sender has in flight: outcomes below that are acknowledged.
const IN_FLIGHT: u64 = 40;
const RETAIN_MS: u64 = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "session".into());
    if !["plain", "key", "session"].contains(&mode.as_str()) {
        return Err(format!("mode must be plain, key or session, not `{mode}`").into());
    }
    let tree = StateTree::new();
    let mut next_seq = [0u64; SENDERS as usize];
    let start = Instant::now();
    for entry in 0..ENTRIES {
        let now_ms = 1_000 + entry;
        let requests = (0..PUTS_PER_ENTRY)
            .map(|i| {
                let sender = i % SENDERS;
                let command = Command::KvPut {
                    key: format!("bench-{i}-{}", entry % 500),
                    value: vec![7; 256],
                    ttl_ms: None,
                    precondition: Precondition::None,
                };
                let mut request = Request::new(now_ms, command);
                match mode.as_str() {
                    "key" => {
                        request.idempotency = Some(Idempotency {
                            key: format!("a/{sender}/{entry:016x}-{i:04x}-7000-8000-000000000000"),
                            retain_ms: RETAIN_MS,
                        });
                    }
                    "session" => {
                        let seq = &mut next_seq[sender as usize];
                        request.command = Command::InSession(Box::new(SessionWrite {
                            session: u128::from(sender) + 1,
                            seq: *seq,
                            acked_below: seq.saturating_sub(IN_FLIGHT),
                            retain_ms: RETAIN_MS,
                            command: request.command,
                        }));
                        *seq += 1;
                    }
                    _ => {}
                }
                request
            })
            .collect();
        let mut view = Overlay::new(&tree);
        apply_request(
            &mut view,
            entry + 1,
            &Request::new(now_ms, Command::Batch(requests)),
        )?;
        if entry % 100 == 0 {
            // What the leader's housekeeping proposes: keep the history bounded.
            let trim = Command::TrimEvents {
                keep_count: 10_000,
                keep_ms: 3_600_000,
            };
            apply_request(&mut view, entry + 1, &Request::new(now_ms, trim))?;
        }
        tree.apply_batch(view.into_batch().0);
    }
    let per_put = start.elapsed().as_secs_f64() * 1e6 / (ENTRIES * PUTS_PER_ENTRY) as f64;
    println!(
        "{mode}: {per_put:.1} µs per put, {} records left",
        tree.len()
    );
    Ok(())
}
