//! The `cairn` binary's allocator, and the thread that hands its idle memory
//! back to the system.
//!
//! mimalloc returns freed memory lazily, when the allocator next runs in the
//! thread that freed it, so a node that goes quiet after load kept 10–15 MiB
//! it no longer used (docs/BENCHMARKS.md, "Memory at start and after load").
//! A periodic forced collect returns it: the arenas' pending purges are
//! process-wide, so one thread's call serves all of them.
//!
//! The collect did not reach what a restart leaves behind: a node that
//! replays a large log on start still held 6–10 MiB more than one that
//! purges every freed page at once, which the collector thread now also
//! asks for (docs/BENCHMARKS.md, "Purging freed memory at once").

use std::time::Duration;

use libmimalloc_sys::mi_option_t;

/// The `cairn` binary allocates with mimalloc: the request, replication and
/// apply paths make many short-lived allocations across threads, where glibc's
/// allocator spent about a fifth of a busy node's CPU. Transparent huge pages
/// are left off (`no_thp`) so that a quiet node stays small. Embedders choose
/// their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often freed memory is handed back.
const COLLECT_EVERY: Duration = Duration::from_secs(2);

/// mimalloc's `mi_option_purge_delay`, which `libmimalloc-sys` 0.1.49 does
/// not name: its place in `mi_option_e` (between the deprecated eager
/// commit delay, 14, and `mi_option_use_numa_nodes`, 16).
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Makes mimalloc purge freed memory at once (delay 0 ms instead of 1 s),
/// then starts the periodic collect on its own thread, so that it never
/// waits behind request tasks and they never wait behind it.
pub fn spawn_collector() -> std::io::Result<()> {
    // SAFETY: `mi_option_set` takes no pointers; options may be changed
    // while the allocator runs (each purge reads the delay afresh).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Only `mi_option_purge_delay` defaults to 1000 (ms) among its
        // neighbours, unless the environment overrides it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an option; no pointers.
            let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(delay, 1000);
        }
    }
}
