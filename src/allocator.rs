//! The `cairn` binary's allocator, and the thread that hands its idle memory
//! back to the system.
//!
//! mimalloc returns freed memory lazily, when the allocator next runs in the
//! thread that freed it, so a node that goes quiet after load kept 10–15 MiB
//! it no longer used (docs/BENCHMARKS.md, "Memory at start and after load").
//! A periodic forced collect returns it: the arenas' pending purges are
//! process-wide, so one thread's call serves all of them.

use std::time::Duration;

/// The `cairn` binary allocates with mimalloc: the request, replication and
/// apply paths make many short-lived allocations across threads, where glibc's
/// allocator spent about a fifth of a busy node's CPU. Transparent huge pages
/// are left off (`no_thp`) so that a quiet node stays small. Embedders choose
/// their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often freed memory is handed back.
const COLLECT_EVERY: Duration = Duration::from_secs(2);

/// Starts the periodic collect on its own thread, so that it never waits
/// behind request tasks and they never wait behind it.
pub fn spawn_collector() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cairn-mem".into())
        .spawn(|| loop {
            std::thread::sleep(COLLECT_EVERY);
            // SAFETY: `mi_collect` takes no pointers and is safe to call from
            // any thread at any time; `force` also purges freed arena memory.
            unsafe { libmimalloc_sys::mi_collect(true) };
        })?;
    Ok(())
}
