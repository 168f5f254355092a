//! Memory discipline of the access method: short-lived Postgres memory contexts for per-row
//! work (detoasted values), and budgets that keep Rust-heap structures within the setting
//! Postgres would use (`maintenance_work_mem`, `work_mem`).

use core::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::types::raise_hint;

/// A memory context for the work of one row, as pgvector's build and insert keep one:
/// whatever is palloc'd while [`TempContext::run`] runs (detoasted vectors and filter values,
/// deconstructed arrays) is freed when it returns. Deleted (with all it holds) on drop.
pub struct TempContext(pg_sys::MemoryContext);

impl TempContext {
    /// A new context under the current one.
    pub fn new(name: &'static CStr) -> TempContext {
        // SAFETY: on the backend's thread; the name is static, as AllocSetContextCreate wants.
        let cx = unsafe {
            pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                name.as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            )
        };
        TempContext(cx)
    }

    /// Run `f` with this context current, then free what it allocated there. `f` must not
    /// return (or store anywhere) a pointer to memory it palloc'd: copy into Rust memory.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Switches back (and resets) also when `f` raises an ERROR, so the caller's context
        /// is current again while the error unwinds.
        struct Switched(pg_sys::MemoryContext, pg_sys::MemoryContext);
        impl Drop for Switched {
            fn drop(&mut self) {
                // SAFETY: `self.0` was current when `run` was called, so it is alive until
                // `run` returns; `self.1` is our context, no longer current once switched back.
                unsafe {
                    pg_sys::CurrentMemoryContext = self.0;
                    pg_sys::MemoryContextReset(self.1);
                }
            }
        }
        // SAFETY: on the backend's thread; restored by `Switched` on every exit.
        let _switched = Switched(unsafe { pg_sys::MemoryContextSwitchTo(self.0) }, self.0);
        f()
    }
}

impl Drop for TempContext {
    fn drop(&mut self) {
        // SAFETY: the context is ours and not current (`run` switched back); deleting it frees
        // what is left in it.
        unsafe { pg_sys::MemoryContextDelete(self.0) };
    }
}

/// The settings a budget can come from, named in the error's hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    MaintenanceWorkMem,
    WorkMem,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::MaintenanceWorkMem => "maintenance_work_mem",
            Setting::WorkMem => "work_mem",
        }
    }

    /// The setting's current value in bytes (`autovacuum_work_mem`, when set, in an autovacuum
    /// worker, as Postgres' own VACUUM does).
    pub fn bytes(self) -> usize {
        // SAFETY: plain reads of GUC variables and of the process kind on the backend's thread.
        let kb = unsafe {
            match self {
                Setting::MaintenanceWorkMem if IsAutoVacuumWorkerProcess() && autovacuum_work_mem != -1 => autovacuum_work_mem,
                Setting::MaintenanceWorkMem => pg_sys::maintenance_work_mem,
                Setting::WorkMem => pg_sys::work_mem,
            }
        };
        (kb.max(64) as usize).saturating_mul(1024)
    }
}

// Postgres' own (autovacuum.h, which pgrx's bindings leave out); neither can raise an error.
extern "C" {
    static autovacuum_work_mem: core::ffi::c_int;
    fn IsAutoVacuumWorkerProcess() -> bool;
}

/// Bytes a structure may hold, from a setting; [`Budget::charge`] raises 53200 beyond it.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub setting: Setting,
    pub limit: usize,
    pub used: usize,
}

impl Budget {
    pub fn new(setting: Setting) -> Budget {
        Budget { setting, limit: setting.bytes(), used: 0 }
    }

    /// Whether `bytes` more still fit.
    pub fn fits(&self, bytes: usize) -> bool {
        self.used.saturating_add(bytes) <= self.limit
    }

    /// Count `bytes` more, or raise `ERROR 53200` naming `what` and the setting.
    pub fn charge(&mut self, bytes: usize, what: &str) {
        if !self.fits(bytes) {
            self.exceeded(what);
        }
        self.used += bytes;
    }

    pub fn exceeded(&self, what: &str) -> ! {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
            format!("{what} needs more than {} = {} kB", self.setting.name(), self.limit / 1024),
            format!("Increase {} and try again.", self.setting.name()),
        )
    }
}

/// The least of per-backend caches (pooled visited sets, buffer hints) kept from one
/// transaction to the next; see [`cache_keep`].
pub const CACHE_KEEP: usize = 1 << 20;

/// Bytes of per-backend caches kept from one transaction to the next: `work_mem`, at least
/// [`CACHE_KEEP`]. Both caches grow with the index searched (a visited set 8 bytes, the buffer
/// hints 4 bytes per index page: 1.9 MB for a 1M-row, 160,000-page index), and both pay off
/// on every query: without hints each neighbour's page costs a buffer-mapping hash probe (a
/// cache miss at that size), without a pooled set each query allocates and page-faults a fresh
/// bitmap. At 1M rows a fixed 1 MB dropped both at every commit: wordllama-1m at ef_search
/// 200 ran 260 queries a second on one client with them dropped, 330 with them kept.
pub fn cache_keep() -> usize {
    Setting::WorkMem.bytes().max(CACHE_KEEP)
}

/// Register [`release_caches`] (once per backend, from `_PG_init`).
pub fn init() {
    // SAFETY: registering a transaction callback with no argument, on the backend's thread.
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), core::ptr::null_mut()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut core::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PARALLEL_ABORT) {
        release_caches();
    }
}

/// Shrink the per-backend caches to [`cache_keep`] bytes in all (a third at most for the
/// hints, half the visited sets' size); returns the bytes kept.
pub fn release_caches() -> usize {
    let keep = cache_keep();
    let hints = crate::storage::buffer::trim_recent(keep / 3);
    hints + super::scan::trim_visited_pool(keep - hints)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use hnsw_core::graph::Visited;
    use pgrx::prelude::*;

    use super::{xact_callback, CACHE_KEEP};
    use crate::am::scan::{return_visited, take_visited, trim_visited_pool};

    /// A visited set for a 200k-page index (1.6 MB) leaves the pool at transaction end when
    /// `work_mem` is 1 MB; one for a small index stays for the next transaction's scans. With
    /// `work_mem` at 64 MB the big one stays too (a 1M-row index's caches are about that size).
    #[pg_test]
    fn large_pooled_visited_sets_go_at_transaction_end() {
        Spi::run("SET work_mem = '1MB'").unwrap();
        assert_eq!(super::cache_keep(), CACHE_KEEP);
        trim_visited_pool(0);
        return_visited(Visited::with_capacity(64 * 1000));
        return_visited(Visited::with_capacity(64 * 200_000));
        assert!(trim_visited_pool(usize::MAX) > CACHE_KEEP);
        // SAFETY: the callback Postgres runs at commit; it only trims Rust caches.
        unsafe { xact_callback(pg_sys::XactEvent::XACT_EVENT_COMMIT, core::ptr::null_mut()) };
        let kept = trim_visited_pool(usize::MAX);
        assert!(kept > 0 && kept <= CACHE_KEEP / 2, "{kept} bytes kept");
        let small = take_visited();
        assert!(small.bytes() >= 8 * 1000 && small.bytes() < 64 * 1024, "{}", small.bytes());
        // Other events (PRE_COMMIT, PREPARE...) leave the pool alone.
        return_visited(Visited::with_capacity(64 * 200_000));
        // SAFETY: as above.
        unsafe { xact_callback(pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT, core::ptr::null_mut()) };
        assert!(trim_visited_pool(usize::MAX) > CACHE_KEEP);

        Spi::run("SET work_mem = '64MB'").unwrap();
        trim_visited_pool(0);
        return_visited(Visited::with_capacity(64 * 200_000));
        // SAFETY: as above.
        unsafe { xact_callback(pg_sys::XactEvent::XACT_EVENT_COMMIT, core::ptr::null_mut()) };
        assert!(trim_visited_pool(usize::MAX) > CACHE_KEEP, "kept under work_mem 64MB");
        // ... but not one bigger than work_mem: 80 MB for 10M pages.
        return_visited(Visited::with_capacity(64 * 10_000_000));
        // SAFETY: as above.
        unsafe { xact_callback(pg_sys::XactEvent::XACT_EVENT_COMMIT, core::ptr::null_mut()) };
        assert!(trim_visited_pool(usize::MAX) < 64 << 20);
        Spi::run("RESET work_mem").unwrap();
        trim_visited_pool(0);
    }
}
