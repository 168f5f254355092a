//! VACUUM's phases 1, 2 and 4: drop dead heap TIDs, mark the elements left without rows
//! deleted, release elements an insert claimed and abandoned, replace a deleted entry point,
//! and free the deleted elements once nothing links to them.

use std::collections::HashMap;

use pgrx::pg_sys;

use super::delay_point;
use crate::storage::attr;
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::element::{nblocks, Elements, Extent};
use crate::storage::meta::Meta;
use crate::storage::page::{ItemRef, PAGE_DATA};
use crate::storage::tuple::{NodeTuple, NodeTupleMut, TidList, TidListMut, FLAG_CLAIMED, FLAG_DELETED, FLAG_FREE, KIND_NODE, KIND_TIDS};

/// What phase 1 learned about the index.
#[derive(Default)]
pub(crate) struct Scan {
    pub(super) removed: f64,
    pub(super) remaining: f64,
    /// Deleted, not yet freed elements: vector ref -> node ref.
    pub(super) deleted: HashMap<ItemRef, ItemRef>,
    /// Freed elements an insert was reusing when this VACUUM saw them: (node ref, vector ref).
    pub(super) claimed: Vec<(ItemRef, ItemRef)>,
    /// The live element with the highest level: (level, vector ref, node ref).
    pub(super) top: Option<(usize, ItemRef, ItemRef)>,
}

/// Phase 1: drop dead TIDs; mark elements without TIDs deleted.
pub(super) fn remove_dead(
    index: pg_sys::Relation,
    meta: &Meta,
    strategy: pg_sys::BufferAccessStrategy,
    is_dead: impl Fn(&pg_sys::ItemPointerData) -> bool,
) -> Scan {
    let (mut scan, rowless) = find_rowless(index, meta, strategy, is_dead);
    mark_rowless(index, meta, &mut scan, &rowless);
    scan
}

/// Phase 1 up to the marking: drop dead TIDs, and find the elements left without any. The
/// pages are read through VACUUM's buffer access `strategy` (null: the default), so a pass
/// over a large index does not flush shared buffers.
pub(crate) fn find_rowless(
    index: pg_sys::Relation,
    meta: &Meta,
    strategy: pg_sys::BufferAccessStrategy,
    is_dead: impl Fn(&pg_sys::ItemPointerData) -> bool,
) -> (Scan, Vec<Rowless>) {
    let m = meta.m as usize;
    let mut scan = Scan::default();
    // Elements whose inline TIDs are gone but that have TID lists: alive iff a list is not empty.
    // (node ref, vector ref, first list, attribute record, level)
    let mut check_lists: Vec<(ItemRef, ItemRef, ItemRef, ItemRef, usize)> = Vec::new();
    // Elements left without rows.
    let mut newly_deleted: Vec<Rowless> = Vec::new();
    for block in 1..nblocks(index) {
        delay_point();
        let buf = Buffer::read_with(index, block, Lock::Exclusive, strategy);
        let page = buf.page();
        if page.is_new() || page.opaque().kind != PAGE_DATA {
            continue;
        }
        let mut changes: Vec<u16> = Vec::new();
        for off in 1..=page.max_offset() {
            let Some(data) = page.item(off) else { continue };
            let dead = match data.first() {
                Some(&KIND_NODE) => {
                    let t = NodeTuple::parse(data, m);
                    if t.is_claimed() {
                        scan.claimed.push((ItemRef::new(block, off), t.vector()));
                        continue;
                    }
                    if t.is_deleted() {
                        if !t.is_free() {
                            scan.deleted.insert(t.vector(), ItemRef::new(block, off));
                        }
                        continue;
                    }
                    let dead = t.heap_tids().filter(|tid| is_dead(tid)).count();
                    scan.remaining += (t.heap_tid_count() - dead) as f64;
                    let at = ItemRef::new(block, off);
                    if dead == t.heap_tid_count() {
                        if t.overflow().is_valid() {
                            check_lists.push((at, t.vector(), t.overflow(), t.attr(), t.level()));
                        } else {
                            newly_deleted.push((at, t.vector(), t.attr(), None));
                        }
                    }
                    if scan.top.is_none_or(|(l, _, _)| t.level() > l) && dead < t.heap_tid_count() && t.vector().is_valid() {
                        scan.top = Some((t.level(), t.vector(), at));
                    }
                    dead
                }
                Some(&KIND_TIDS) => {
                    let list = TidList::parse(data);
                    let dead = list.tids().filter(|tid| is_dead(tid)).count();
                    scan.remaining += (list.count() - dead) as f64;
                    dead
                }
                _ => 0,
            };
            if dead > 0 {
                changes.push(off);
                scan.removed += dead as f64;
            }
        }
        if changes.is_empty() {
            continue;
        }
        Wal::edit(index, &buf, Logging::Wal, false, |page| {
            for off in changes {
                let data = page.item_mut(off).expect("item seen under the same lock");
                if data[0] == KIND_NODE {
                    NodeTupleMut::edit(data, m).retain_heap_tids(|tid| !is_dead(tid));
                } else {
                    TidListMut::edit(data).retain(|tid| !is_dead(tid));
                }
            }
        });
    }
    rowless_by_lists(index, m, &mut scan, check_lists, &mut newly_deleted);
    (scan, newly_deleted)
}

/// An element left without rows: (node ref, vector ref, attribute record, what its node tuple
/// must still be for the element to be marked deleted). `None`: it had no TID list when seen
/// (an insert adds a row inline, or starts a list, which changes its overflow ref). `Some`:
/// its version when its TID lists were found empty; an insert that adds a row to one of those
/// lists bumps the version afterwards (see `insert::add_heap_tid`), so a changed version means
/// the lists may hold a row again.
pub(crate) type Rowless = (ItemRef, ItemRef, ItemRef, Option<u16>);

/// Of the elements whose inline TIDs are all gone but that have TID lists
/// ((node ref, vector ref, first list, attribute record, level)), add those whose lists are
/// all empty to `rowless`; the others (alive through their lists only) are entry point
/// candidates like any live element.
fn rowless_by_lists(
    index: pg_sys::Relation,
    m: usize,
    scan: &mut Scan,
    check_lists: Vec<(ItemRef, ItemRef, ItemRef, ItemRef, usize)>,
    rowless: &mut Vec<Rowless>,
) {
    let extent = Extent::new(index);
    for (node, vector, _, attr, level) in check_lists {
        // Version and list head as they are now, before the lists are read.
        let seen = {
            let buf = Buffer::read(index, node.block, Lock::Share);
            buf.page().item(node.offset).map(|data| {
                let t = NodeTuple::parse(data, m);
                (t.is_deleted() || t.heap_tid_count() > 0, t.version(), t.overflow())
            })
        };
        let Some((has_rows, version, mut list)) = seen else { continue };
        let mut alive = has_rows;
        while !alive && extent.holds(list) {
            let buf = Buffer::read(index, list.block, Lock::Share);
            let Some(data) = buf.page().item(list.offset) else { break };
            let l = TidList::parse(data);
            alive = l.count() > 0;
            list = l.next();
        }
        if !alive {
            rowless.push((node, vector, attr, Some(version)));
        } else if scan.top.is_none_or(|(l, _, _)| level > l) && extent.holds(vector) {
            // Alive through its TID lists only (rows of an equal vector): as good an entry
            // point as any. Leaving it out could leave a live index without one.
            scan.top = Some((level, vector, node));
        }
    }
}

/// Mark the `rowless` elements deleted (those still without rows under their node page's
/// lock), with their attribute records, and add them to `scan.deleted`.
pub(crate) fn mark_rowless(index: pg_sys::Relation, meta: &Meta, scan: &mut Scan, rowless: &[Rowless]) {
    let elements: Vec<(ItemRef, ItemRef, Option<u16>)> = rowless.iter().map(|&(n, v, _, version)| (n, v, version)).collect();
    // Only on an element that still has no row under its page's lock (an insert of an equal
    // vector may have just added one): none inline, and none in TID lists (see `Rowless`).
    let still_rowless = |t: &NodeTuple<'_>, version: Option<u16>| {
        !t.is_deleted()
            && t.heap_tid_count() == 0
            && match version {
                None => !t.overflow().is_valid(),
                Some(v) => t.version() == v,
            }
    };
    let marked = Elements::new(index, meta.m as usize, Logging::Wal).mark(&elements, FLAG_DELETED, still_rowless, delay_point);
    if meta.filters > 0 {
        let mut attrs: Vec<ItemRef> =
            rowless.iter().filter(|(n, _, a, _)| a.is_valid() && marked.contains(n)).map(|&(_, _, a, _)| a).collect();
        attr::set_deleted(index, meta.attr_record as usize, &mut attrs);
    }
    for (node, vector, _) in elements {
        if marked.contains(&node) {
            scan.deleted.insert(vector, node);
        }
    }
}

/// Elements an insert claimed for reuse and that are still claimed after the insert barrier:
/// that insert failed before finishing (nobody links to them yet); free them again.
pub(super) fn release_abandoned(index: pg_sys::Relation, meta: &Meta, claimed: &[(ItemRef, ItemRef)]) {
    let m = meta.m as usize;
    let mut freed = Vec::new();
    for &(node, vector) in claimed {
        let buf = Buffer::read(index, node.block, Lock::Exclusive);
        let still = buf.page().item(node.offset).is_some_and(|d| NodeTuple::parse(d, m).is_claimed());
        if !still {
            continue;
        }
        Wal::edit(index, &buf, Logging::Wal, false, |page| {
            let mut t = NodeTupleMut::edit(page.item_mut(node.offset).expect("checked under the same lock"), m);
            let flags = t.as_ref().flags();
            t.set_flags((flags & !FLAG_CLAIMED) | FLAG_DELETED | FLAG_FREE);
        });
        freed.push((node, vector));
    }
    let vectors: Vec<ItemRef> = freed.iter().map(|&(_, v)| v).collect();
    Elements::new(index, m, Logging::Wal).set_vector_flags(&vectors, FLAG_DELETED | FLAG_FREE, delay_point);
    // SAFETY: updating the open index's free space map (a hint, not WAL-logged).
    unsafe {
        for (node, _) in freed {
            pg_sys::RecordPageWithFreeSpace(index, node.block, pg_sys::BLCKSZ as usize / 2);
        }
    }
}

/// If the entry point was deleted, make the highest live element the entry point (or leave
/// the index without one if nothing is left).
pub(super) fn replace_entry(index: pg_sys::Relation, scan: &Scan) {
    Meta::update(index, Logging::Wal, |meta| {
        // No entry while live elements remain is what an older VACUUM could leave behind:
        // give the index one again.
        let lost = if meta.has_entry() { scan.deleted.contains_key(&meta.entry_vector) } else { scan.top.is_some() };
        if !lost {
            return false;
        }
        match scan.top {
            Some((level, vector, node)) => {
                meta.entry_vector = vector;
                meta.entry_node = node;
                meta.entry_level = level as u8;
            }
            None => {
                meta.entry_vector = ItemRef::INVALID;
                meta.entry_node = ItemRef::INVALID;
                meta.entry_level = 0;
            }
        }
        true
    });
}

/// Phase 4: free the deleted elements and record their node pages in the free space map.
pub(super) fn free(index: pg_sys::Relation, meta: &Meta, deleted: &HashMap<ItemRef, ItemRef>) {
    let elements: Vec<(ItemRef, ItemRef, Option<u16>)> = deleted.iter().map(|(&v, &n)| (n, v, None)).collect();
    // Not one an insert has claimed for reuse meanwhile.
    let unclaimed = |t: &NodeTuple<'_>, _: Option<u16>| t.is_deleted() && !t.is_claimed() && !t.is_free();
    let marked = Elements::new(index, meta.m as usize, Logging::Wal).mark(&elements, FLAG_FREE, unclaimed, delay_point);
    let mut pages: Vec<u32> = marked.iter().map(|n| n.block).collect();
    pages.sort_unstable();
    pages.dedup();
    // SAFETY: updating the open index's free space map (a hint, not WAL-logged).
    unsafe {
        for block in pages {
            pg_sys::RecordPageWithFreeSpace(index, block, pg_sys::BLCKSZ as usize / 2);
        }
        pg_sys::IndexFreeSpaceMapVacuum(index);
    }
}
