//! The `cairn` binary's allocator, and the task that hands its idle memory
//! back to the system.
//!
//! mimalloc frees lazily: memory a burst of requests released is returned to
//! the system only when the allocator runs again, so a node that goes quiet
//! after load keeps tens of MiB it no longer uses. A periodic forced collect
//! returns that memory (the arenas' pending purges are process-wide); on a
//! busy node it costs one short call per period.

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
