//! VACUUM support: drop dead heap TIDs from elements; an element left without TIDs is marked
//! deleted in both of its tuples, so scans route through it but never return it.
//!
//! (Repairing the links around deleted elements and reusing their space comes with the
//! deletes/VACUUM work; until then deleted elements stay in the graph as tombstones.)

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::meta::Meta;
use crate::storage::page::{ItemRef, PAGE_DATA};
use crate::storage::tuple::{set_vector_flags, NodeTuple, NodeTupleMut, FLAG_DELETED, KIND_NODE};

fn stats_or_new(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: palloc0 of the struct VACUUM expects back.
        unsafe { pg_sys::palloc0(core::mem::size_of::<pg_sys::IndexBulkDeleteResult>()).cast() }
    } else {
        stats
    }
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
    let m = Meta::read(index).m as usize;
    // SAFETY: the index is open.
    let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    let (mut removed, mut remaining) = (0f64, 0f64);
    let mut newly_deleted: Vec<ItemRef> = Vec::new();
    for block in 1..nblocks {
        // SAFETY: honours vacuum_cost_delay and checks for interrupts, on our thread.
        unsafe { pg_sys::vacuum_delay_point() };
        let buf = Buffer::read(index, block, Lock::Exclusive);
        let page = buf.page();
        if page.is_new() || page.opaque().kind != PAGE_DATA {
            continue;
        }
        // Which node tuples lose TIDs: decide under the lock, then change them in one record.
        let mut changes: Vec<u16> = Vec::new();
        for off in 1..=page.max_offset() {
            let Some(data) = page.item(off) else { continue };
            if data.first() != Some(&KIND_NODE) {
                continue;
            }
            let t = NodeTuple::parse(data, m);
            let mut dead = 0;
            for mut tid in t.heap_tids() {
                // SAFETY: the callback VACUUM gave us, with its state.
                if unsafe { callback(&mut tid, callback_state) } {
                    dead += 1;
                }
            }
            if dead > 0 {
                changes.push(off);
            }
            remaining += (t.heap_tid_count() - dead) as f64;
            removed += dead as f64;
        }
        if changes.is_empty() {
            continue;
        }
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            for off in changes {
                let data = page.item_mut(off).expect("item seen under the same lock");
                let mut t = NodeTupleMut::edit(data, m);
                // SAFETY: as above.
                t.retain_heap_tids(|tid| !unsafe { callback(tid as *const _ as *mut _, callback_state) });
                if t.as_ref().heap_tid_count() == 0 && !t.as_ref().is_deleted() {
                    t.set_flags(t.as_ref().flags() | FLAG_DELETED);
                    newly_deleted.push(t.as_ref().vector());
                }
            }
        }
        wal.finish();
    }
    mark_vectors_deleted(index, &mut newly_deleted);
    // SAFETY: `stats` is ours (allocated above or passed in).
    unsafe {
        (*stats).tuples_removed += removed;
        (*stats).num_index_tuples = remaining;
        (*stats).num_pages = nblocks;
    }
    stats
}

/// Mirror the deleted flag into the vector tuples, which scans read while measuring.
fn mark_vectors_deleted(index: pg_sys::Relation, refs: &mut [ItemRef]) {
    refs.sort_unstable_by_key(|r| (r.block, r.offset));
    let mut i = 0;
    while i < refs.len() {
        let block = refs[i].block;
        let buf = Buffer::read(index, block, Lock::Exclusive);
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            while i < refs.len() && refs[i].block == block {
                if let Some(data) = page.item_mut(refs[i].offset) {
                    let flags = data[1];
                    set_vector_flags(data, flags | FLAG_DELETED);
                }
                i += 1;
            }
        }
        wal.finish();
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM passes a valid info.
    if unsafe { (*info).analyze_only } {
        return stats;
    }
    let stats = stats_or_new(stats);
    // SAFETY: the index is open; `stats` is ours.
    unsafe {
        (*stats).num_pages = pg_sys::RelationGetNumberOfBlocksInFork((*info).index, pg_sys::ForkNumber::MAIN_FORKNUM);
    }
    stats
}
