//! The `cairn` binary's allocator, and how its threads hand idle memory back
//! to the system.
//!
//! mimalloc returns freed memory lazily, and a collect reaches only the
//! calling thread's pages (plus the arenas' pending purges, which are
//! process-wide). A thread that frees a burst of memory and then goes quiet
//! keeps those pages until it allocates again: after load, and above all
//! after a restart, whose log replay decodes and frees tens of MiB on the
//! main thread and the apply threads, a node kept 7–10 MiB it no longer
//! used (docs/BENCHMARKS.md, "Memory after a restart"). So every kind of
//! thread hands its pages back when it goes idle:
//! - runtime workers collect when they park, at most once a second;
//! - blocking threads (where entries are applied) exit after
//!   [`BLOCKING_KEEP_ALIVE`] idle, and an exiting thread's free pages go
//!   back to the arenas;
//! - the main thread collects once the node has started;
//! - a collector thread purges the arenas every [`COLLECT_EVERY`].

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The `cairn` binary allocates with mimalloc: the request, replication and
/// apply paths make many short-lived allocations across threads, where glibc's
/// allocator spent about a fifth of a busy node's CPU. Transparent huge pages
/// are left off (`no_thp`) so that a quiet node stays small. Embedders choose
/// their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the arenas' freed memory is handed back.
const COLLECT_EVERY: Duration = Duration::from_secs(2);

/// How often a runtime worker collects its own pages, at most.
const PARK_COLLECT_EVERY: Duration = Duration::from_secs(1);

/// How long an idle blocking thread waits for work before it exits (tokio's
/// default is 10 s). Under load the pool's threads never wait that long, so
/// this costs nothing there; idle, it returns their pages a second after the
/// last apply instead of never (a periodic task keeps one of them alive).
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Hands the calling thread's free pages back and purges the arenas.
pub fn collect_this_thread() {
    // SAFETY: `mi_collect` takes no pointers and is safe to call from any
    // thread at any time; `force` also frees retired pages and purges at once.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

thread_local! {
    static LAST_PARK_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// For the runtime's `on_thread_park`: collects this worker's pages, at most
/// once per [`PARK_COLLECT_EVERY`]. Workers park many times a second under
/// load; the check costs a clock read.
pub fn collect_on_park() {
    let now = Instant::now();
    let due = LAST_PARK_COLLECT
        .get()
        .is_none_or(|last| now.duration_since(last) >= PARK_COLLECT_EVERY);
    if due {
        LAST_PARK_COLLECT.set(Some(now));
        collect_this_thread();
    }
}

/// Starts the periodic collect on its own thread, so that it never waits
/// behind request tasks and they never wait behind it.
pub fn spawn_collector() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cairn-mem".into())
        .spawn(|| loop {
            std::thread::sleep(COLLECT_EVERY);
            collect_this_thread();
        })?;
    Ok(())
}
