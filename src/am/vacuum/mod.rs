//! VACUUM: remove dead rows, repair the graph around elements left without rows, and free
//! those elements for reuse.
//!
//! 1. **Remove.** One pass over the pages drops dead heap TIDs (inline and in TID lists). An
//!    element left with no TID is marked deleted in both its tuples: from then on searches
//!    route through it but never return it, and inserts never link to it.
//! 2. **Barrier.** Take and release the lock every insert holds in share mode: inserts that
//!    saw a now-deleted element alive (and might link to it) have finished.
//! 3. **Repair.** If the entry point died, the live element with the highest level replaces it.
//!    Every live element must be reachable through live elements alone (see `reconnect.rs`).
//!    Then every live element with a deleted neighbour keeps its live neighbours and gives the
//!    deleted ones' places to the deleted neighbours' neighbours, chosen with the neighbour
//!    heuristic — a local repair that reconnects through the hole, not a fresh search — and
//!    each new neighbour is offered a link back, as an insert's neighbours are. Lists are
//!    written with the same optimistic version check as inserts, so both may run at once.
//! 4. **Free.** No live element links to a deleted one any more: mark them free and tell the
//!    free space map, so inserts reuse their tuples instead of growing the index.
//! 5. **Reconnect** (in `amvacuumcleanup`, so every VACUUM and autovacuum runs it, with or
//!    without dead rows): every live element must be reachable from the entry point; see
//!    `reconnect.rs`.
//!
//! `vacuum_delay_point()` runs for every page and every repair: VACUUM honours cost-based
//! delay and can be cancelled at any point; a cancelled run leaves deleted elements that the
//! next VACUUM repairs and frees.
//!
//! The phases live in their own files: `remove.rs` (1, 2 and 4), `repair.rs` (3), `reconnect.rs`
//! (3 and 5); the neighbour-list policies they apply are the core's ([`hnsw_core::graph::maintain`]).

mod reconnect;
mod remove;
mod repair;

use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::storage::element::nblocks;
use crate::storage::lock::{PageLock, INSERT_LOCK};
use crate::storage::meta::{ElemType, Meta};
use reconnect::reconnect;
#[cfg(any(test, feature = "pg_test"))]
pub(crate) use remove::{find_rowless, mark_rowless};
use remove::{free, release_abandoned, remove_dead, replace_entry};
use repair::repair;

fn stats_or_new(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: palloc0 of the struct VACUUM expects back.
        unsafe { pg_sys::palloc0(core::mem::size_of::<pg_sys::IndexBulkDeleteResult>()).cast() }
    } else {
        stats
    }
}

pub(super) fn delay_point() {
    // SAFETY: honours vacuum_cost_delay and checks for interrupts, on the backend's thread.
    unsafe { pg_sys::vacuum_delay_point() };
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut core::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    let stats = stats_or_new(stats);
    // SAFETY: VACUUM passes a valid info with an open, locked index.
    let index = unsafe { (*info).index };
    let callback = callback.expect("ambulkdelete without a callback");
    // The callback is C (heap VACUUM's lazy_tid_reaped, or another AM's): an ERROR it raises
    // would longjmp over our frames, skipping the buffer guards' drops. Through the boundary it
    // comes back as a Rust panic that unwinds them, as for every pg_sys call.
    // SAFETY: the callback VACUUM gave us, with its state; called on the backend's thread, and
    // the closure holds nothing with a destructor.
    let is_dead = |tid: &pg_sys::ItemPointerData| unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| callback(tid as *const _ as *mut _, callback_state))
    };
    let meta = Meta::read(index);
    // SAFETY: as above; VACUUM's ring of buffers (or null), valid for the whole call.
    let strategy = unsafe { (*info).strategy };
    let scan = remove_dead(index, &meta, strategy, is_dead);
    if !scan.deleted.is_empty() || !scan.claimed.is_empty() {
        // Barrier: inserts that may have picked a now-deleted element as a neighbour are done,
        // and so are the inserts that were reusing freed elements.
        drop(PageLock::exclusive(index, INSERT_LOCK));
        release_abandoned(index, &meta, &scan.claimed);
    }
    if !scan.deleted.is_empty() {
        replace_entry(index, &scan);
        match meta.elem {
            ElemType::F16 => {
                reconnect::<f16>(index, &meta, strategy, true);
                repair::<f16>(index, &meta, strategy, &scan.deleted);
            }
            ElemType::F32 => {
                reconnect::<f32>(index, &meta, strategy, true);
                repair::<f32>(index, &meta, strategy, &scan.deleted);
            }
            ElemType::Bit => {
                reconnect::<u8>(index, &meta, strategy, true);
                repair::<u8>(index, &meta, strategy, &scan.deleted);
            }
            ElemType::Sparse => {
                reconnect::<hnsw_core::sparse::SparseWord>(index, &meta, strategy, true);
                repair::<hnsw_core::sparse::SparseWord>(index, &meta, strategy, &scan.deleted);
            }
        }
        free(index, &meta, &scan.deleted);
    } else if !meta.has_entry() && scan.top.is_some() {
        replace_entry(index, &scan);
    }
    // SAFETY: `stats` is ours (allocated above or passed in).
    unsafe {
        (*stats).tuples_removed += scan.removed;
        (*stats).num_index_tuples = scan.remaining;
        (*stats).num_pages = nblocks(index);
    }
    stats
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM passes a valid info; its strategy (or null) is valid for the whole call.
    let (index, analyze_only, strategy) = unsafe { ((*info).index, (*info).analyze_only, (*info).strategy) };
    if analyze_only {
        return stats;
    }
    let meta = Meta::read(index);
    let live = match meta.elem {
        ElemType::F16 => reconnect::<f16>(index, &meta, strategy, false),
        ElemType::F32 => reconnect::<f32>(index, &meta, strategy, false),
        ElemType::Bit => reconnect::<u8>(index, &meta, strategy, false),
        ElemType::Sparse => reconnect::<hnsw_core::sparse::SparseWord>(index, &meta, strategy, false),
    };
    let had_stats = !stats.is_null();
    let stats = stats_or_new(stats);
    // SAFETY: `stats` is ours (allocated above, or from ambulkdelete).
    unsafe {
        (*stats).num_pages = nblocks(index);
        if !had_stats {
            // No bulk delete ran: the count keeps pg_class.reltuples right.
            (*stats).num_index_tuples = live;
        }
    }
    stats
}
