//! VACUUM: remove dead rows, repair the graph around elements left without rows, and free
//! those elements for reuse.
//!
//! 1. **Remove.** One pass over the pages drops dead heap TIDs (inline and in TID lists). An
//!    element left with no TID is marked deleted in both its tuples: from then on searches
//!    route through it but never return it, and inserts never link to it.
//! 2. **Barrier.** Take and release the lock every insert holds in share mode: inserts that
//!    saw a now-deleted element alive (and might link to it) have finished.
//! 3. **Repair.** If the entry point died, the live element with the highest level replaces it.
//!    Every live element must be reachable through live elements alone (see [`reconnect`]).
//!    Then every live element with a deleted neighbour keeps its live neighbours and gives the
//!    deleted ones' places to the deleted neighbours' neighbours, chosen with the neighbour
//!    heuristic — a local repair that reconnects through the hole, not a fresh search — and
//!    each new neighbour is offered a link back, as an insert's neighbours are. Lists are
//!    written with the same optimistic version check as inserts, so both may run at once.
//! 4. **Free.** No live element links to a deleted one any more: mark them free and tell the
//!    free space map, so inserts reuse their tuples instead of growing the index.
//! 5. **Reconnect** (in `amvacuumcleanup`, so every VACUUM and autovacuum runs it, with or
//!    without dead rows): every live element must be reachable from the entry point; see
//!    [`reconnect`].
//!
//! `vacuum_delay_point()` runs for every page and every repair: VACUUM honours cost-based
//! delay and can be cancelled at any point; a cancelled run leaves deleted elements that the
//! next VACUUM repairs and frees.

use std::collections::{HashMap, HashSet, VecDeque};

use half::f16;
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{Candidate, SearchScratch, Visited};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::graph::{DiskWalk, Elem, Extent};
use super::insert::{Connect, PageLock, INSERT_LOCK};
use super::mem::{Budget, Setting};
use crate::storage::attr;
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::{ItemRef, PAGE_DATA};
use crate::storage::tuple::{
    layer_capacity, node_tuples, set_vector_flags, NodeTuple, NodeTupleMut, TidList, TidListMut, VectorTuple, FLAG_CLAIMED, FLAG_DELETED,
    FLAG_FREE, KIND_NODE, KIND_TIDS,
};

fn stats_or_new(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: palloc0 of the struct VACUUM expects back.
        unsafe { pg_sys::palloc0(core::mem::size_of::<pg_sys::IndexBulkDeleteResult>()).cast() }
    } else {
        stats
    }
}

fn nblocks(index: pg_sys::Relation) -> u32 {
    // SAFETY: the index is open.
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

fn delay_point() {
    // SAFETY: honours vacuum_cost_delay and checks for interrupts, on the backend's thread.
    unsafe { pg_sys::vacuum_delay_point() };
}

/// What phase 1 learned about the index.
#[derive(Default)]
pub(super) struct Scan {
    removed: f64,
    remaining: f64,
    /// Deleted, not yet freed elements: vector ref -> node ref.
    deleted: HashMap<ItemRef, ItemRef>,
    /// Freed elements an insert was reusing when this VACUUM saw them: (node ref, vector ref).
    claimed: Vec<(ItemRef, ItemRef)>,
    /// The live element with the highest level: (level, vector ref, node ref).
    top: Option<(usize, ItemRef, ItemRef)>,
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
    let scan = remove_dead(index, &meta, is_dead);
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
                reconnect::<f16>(index, &meta, true);
                repair::<f16>(index, &meta, &scan.deleted);
            }
            ElemType::F32 => {
                reconnect::<f32>(index, &meta, true);
                repair::<f32>(index, &meta, &scan.deleted);
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

/// Phase 1: drop dead TIDs; mark elements without TIDs deleted.
fn remove_dead(index: pg_sys::Relation, meta: &Meta, is_dead: impl Fn(&pg_sys::ItemPointerData) -> bool) -> Scan {
    let (mut scan, rowless) = find_rowless(index, meta, is_dead);
    mark_rowless(index, meta, &mut scan, &rowless);
    scan
}

/// Phase 1 up to the marking: drop dead TIDs, and find the elements left without any.
pub(super) fn find_rowless(
    index: pg_sys::Relation,
    meta: &Meta,
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
        let buf = Buffer::read(index, block, Lock::Exclusive);
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
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            for off in changes {
                let data = page.item_mut(off).expect("item seen under the same lock");
                if data[0] == KIND_NODE {
                    NodeTupleMut::edit(data, m).retain_heap_tids(|tid| !is_dead(tid));
                } else {
                    TidListMut::edit(data).retain(|tid| !is_dead(tid));
                }
            }
        }
        wal.finish();
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
pub(super) type Rowless = (ItemRef, ItemRef, ItemRef, Option<u16>);

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
    let mut extent = Extent::new(index);
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
pub(super) fn mark_rowless(index: pg_sys::Relation, meta: &Meta, scan: &mut Scan, rowless: &[Rowless]) {
    let elements: Vec<(ItemRef, ItemRef, Option<u16>)> = rowless.iter().map(|&(n, v, _, version)| (n, v, version)).collect();
    let marked = mark(index, meta.m as usize, &elements, FLAG_DELETED);
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

/// Set `flag` on both tuples of each (node ref, vector ref) element, a page at a time: node
/// tuples first, then the vector tuples of the elements whose node tuple took the flag. The
/// condition is rechecked under each node page's exclusive lock, since inserts run meanwhile:
/// FLAG_DELETED only goes on an element that still has no row (an insert of an equal vector
/// may have just added one), FLAG_FREE only on one that is deleted and not claimed for reuse.
/// Returns the node refs of the elements marked.
fn mark(index: pg_sys::Relation, m: usize, elements: &[(ItemRef, ItemRef, Option<u16>)], flag: u8) -> HashSet<ItemRef> {
    let mut marked = HashSet::new();
    let mut nodes: HashMap<u32, Vec<(u16, Option<u16>)>> = HashMap::new();
    for &(node, _, version) in elements {
        nodes.entry(node.block).or_default().push((node.offset, version));
    }
    let mut blocks: Vec<u32> = nodes.keys().copied().collect();
    blocks.sort_unstable();
    for block in blocks {
        delay_point();
        let buf = Buffer::read(index, block, Lock::Exclusive);
        let todo: Vec<u16> = nodes[&block]
            .iter()
            .filter(|&&(off, version)| {
                buf.page().item(off).is_some_and(|data| {
                    let t = NodeTuple::parse(data, m);
                    match flag {
                        // No row inline, and none in TID lists: see `Rowless`.
                        FLAG_DELETED => {
                            !t.is_deleted()
                                && t.heap_tid_count() == 0
                                && match version {
                                    None => !t.overflow().is_valid(),
                                    Some(v) => t.version() == v,
                                }
                        }
                        _ => t.is_deleted() && !t.is_claimed() && !t.is_free(),
                    }
                })
            })
            .map(|&(off, _)| off)
            .collect();
        if todo.is_empty() {
            continue;
        }
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            for &off in &todo {
                let data = page.item_mut(off).expect("checked under the same lock");
                let mut t = NodeTupleMut::edit(data, m);
                let flags = t.as_ref().flags();
                t.set_flags(flags | flag);
                marked.insert(ItemRef::new(block, off));
            }
        }
        wal.finish();
    }
    let vectors: Vec<ItemRef> = elements.iter().filter(|(n, _, _)| marked.contains(n)).map(|&(_, v, _)| v).collect();
    set_vector_flags_of(index, &vectors, flag);
    marked
}

/// Set `flag` on vector tuples, a page at a time.
fn set_vector_flags_of(index: pg_sys::Relation, vectors: &[ItemRef], flag: u8) {
    let mut by_page: HashMap<u32, Vec<u16>> = HashMap::new();
    let mut extent = Extent::new(index);
    for v in vectors.iter().filter(|&&v| extent.holds(v)) {
        by_page.entry(v.block).or_default().push(v.offset);
    }
    let mut blocks: Vec<u32> = by_page.keys().copied().collect();
    blocks.sort_unstable();
    for block in blocks {
        delay_point();
        let buf = Buffer::read(index, block, Lock::Exclusive);
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            for &off in &by_page[&block] {
                let Some(data) = page.item_mut(off) else { continue };
                let flags = VectorTuple::parse(data).flags();
                set_vector_flags(data, flags | flag);
            }
        }
        wal.finish();
    }
}

/// Elements an insert claimed for reuse and that are still claimed after the insert barrier:
/// that insert failed before finishing (nobody links to them yet); free them again.
fn release_abandoned(index: pg_sys::Relation, meta: &Meta, claimed: &[(ItemRef, ItemRef)]) {
    let m = meta.m as usize;
    let mut freed = Vec::new();
    for &(node, vector) in claimed {
        let buf = Buffer::read(index, node.block, Lock::Exclusive);
        let still = buf.page().item(node.offset).is_some_and(|d| NodeTuple::parse(d, m).is_claimed());
        if !still {
            continue;
        }
        let mut wal = Wal::start(index, &buf, Logging::Wal, false);
        {
            let mut page = wal.page();
            let mut t = NodeTupleMut::edit(page.item_mut(node.offset).expect("checked under the same lock"), m);
            let flags = t.as_ref().flags();
            t.set_flags((flags & !FLAG_CLAIMED) | FLAG_DELETED | FLAG_FREE);
        }
        wal.finish();
        freed.push((node, vector));
    }
    let vectors: Vec<ItemRef> = freed.iter().map(|&(_, v)| v).collect();
    set_vector_flags_of(index, &vectors, FLAG_DELETED | FLAG_FREE);
    // SAFETY: updating the open index's free space map (a hint, not WAL-logged).
    unsafe {
        for (node, _) in freed {
            pg_sys::RecordPageWithFreeSpace(index, node.block, pg_sys::BLCKSZ as usize / 2);
        }
    }
}

/// If the entry point was deleted, make the highest live element the entry point (or leave
/// the index without one if nothing is left).
fn replace_entry(index: pg_sys::Relation, scan: &Scan) {
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

/// Phase 3: re-select every neighbour list that holds a deleted element.
fn repair<E: Elem>(index: pg_sys::Relation, meta: &Meta, deleted: &HashMap<ItemRef, ItemRef>) {
    let m = meta.m as usize;
    let metric = meta.metric;
    let mut r = Repair::<E> { index, meta, m, dims: meta.dims as usize, metric, deleted, arena: Vec::new(), extent: Extent::new(index) };
    for block in 1..nblocks(index) {
        delay_point();
        // Which live elements on this page need work, and on which layers.
        let todo: Vec<(ItemRef, Vec<usize>)> = {
            let buf = Buffer::read(index, block, Lock::Share);
            node_tuples(buf.page(), m)
                .filter_map(|(off, t)| {
                    if t.is_deleted() {
                        return None;
                    }
                    let layers: Vec<usize> = (0..=t.level()).filter(|&l| t.neighbors(l).any(|n| deleted.contains_key(&n))).collect();
                    (!layers.is_empty()).then(|| (ItemRef::new(block, off), layers))
                })
                .collect()
        };
        for (node, layers) in todo {
            for layer in layers {
                delay_point();
                r.repair(node, layer);
            }
        }
    }
}

struct Repair<'a, E: Elem> {
    index: pg_sys::Relation,
    meta: &'a Meta,
    m: usize,
    dims: usize,
    metric: Metric,
    deleted: &'a HashMap<ItemRef, ItemRef>,
    /// Vectors of the element being repaired (slot 0) and of its candidates.
    arena: Vec<E>,
    extent: Extent,
}

impl<E: Elem> Repair<'_, E> {
    fn vector(&self, slot: usize) -> &[E] {
        &self.arena[slot * self.dims..(slot + 1) * self.dims]
    }

    /// Copy the vector at `r` into the arena; its slot and node ref, or None if it is gone.
    fn load(&mut self, r: ItemRef) -> Option<(usize, ItemRef)> {
        if !self.extent.holds(r) {
            return None;
        }
        let buf = Buffer::read_recent(self.index, r.block, Lock::Share);
        let data = buf.page().item(r.offset)?;
        let t = VectorTuple::parse(data);
        if t.flags() & FLAG_DELETED != 0 || !self.extent.holds(t.node()) {
            return None;
        }
        self.arena.extend_from_slice(t.values::<E>(self.dims));
        Some((self.arena.len() / self.dims - 1, t.node()))
    }

    fn repair(&mut self, node: ItemRef, layer: usize) {
        let cap = layer_capacity(self.m, layer);
        loop {
            let (version, own, list) = {
                let buf = Buffer::read(self.index, node.block, Lock::Share);
                let Some(data) = buf.page().item(node.offset) else { return };
                let t = NodeTuple::parse(data, self.m);
                if t.is_deleted() || t.level() < layer {
                    return;
                }
                (t.version(), t.vector(), t.neighbors(layer).collect::<Vec<_>>())
            };
            let dead: Vec<ItemRef> = list.iter().copied().filter(|n| self.deleted.contains_key(n)).collect();
            if dead.is_empty() {
                return;
            }
            // Candidates: the live neighbours, and the deleted ones' neighbours.
            let mut seen: HashSet<ItemRef> = list.iter().copied().collect();
            seen.insert(own);
            let mut refs: Vec<ItemRef> = list.iter().copied().filter(|n| !self.deleted.contains_key(n)).collect();
            for d in &dead {
                let dnode = self.deleted[d];
                let buf = Buffer::read(self.index, dnode.block, Lock::Share);
                let Some(data) = buf.page().item(dnode.offset) else { continue };
                for n in NodeTuple::parse(data, self.m).neighbors(layer) {
                    if !self.deleted.contains_key(&n) && seen.insert(n) {
                        refs.push(n);
                    }
                }
            }
            self.arena.clear();
            if self.load(own).is_none() {
                return;
            }
            let mut cands: Vec<Candidate<(ItemRef, usize, ItemRef)>> = Vec::with_capacity(refs.len());
            for r in refs {
                if let Some((slot, rnode)) = self.load(r) {
                    let d = E::distance(self.metric, self.vector(0), self.vector(slot));
                    cands.push(Candidate::new(d, (r, slot, rnode)));
                }
            }
            // The live neighbours all stay (so repair never takes away a way in: see
            // `reconnect`); the places of the deleted ones go to the candidates the heuristic
            // prefers, then to the nearest others.
            cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
            let (live, fresh): (Vec<_>, Vec<_>) = cands.into_iter().partition(|c| list.contains(&c.item.0));
            let room = cap.saturating_sub(live.len());
            let mut chosen: Vec<Candidate<(ItemRef, usize, ItemRef)>> = live.clone();
            let mut pruned = Vec::new();
            for c in fresh {
                if chosen.len() - live.len() >= room {
                    break;
                }
                if chosen.iter().any(|k| E::distance(self.metric, self.vector(c.item.1), self.vector(k.item.1)) < c.dist) {
                    pruned.push(c);
                } else {
                    chosen.push(c);
                }
            }
            chosen.extend(pruned.into_iter().take(room.saturating_sub(chosen.len() - live.len())));
            let new_list: Vec<ItemRef> = chosen.iter().map(|c| c.item.0).collect();

            {
                let buf = Buffer::read(self.index, node.block, Lock::Exclusive);
                let Some(data) = buf.page().item(node.offset) else { return };
                if NodeTuple::parse(data, self.m).version() != version {
                    continue;
                }
                let mut wal = Wal::start(self.index, &buf, Logging::Wal, false);
                {
                    let mut page = wal.page();
                    let data = page.item_mut(node.offset).expect("item checked under the same lock");
                    NodeTupleMut::edit(data, self.m).set_neighbors(layer, &new_list);
                }
                wal.finish();
            }
            // The new neighbours learn of this element too, as an insert's neighbours learn of
            // the new element. Without that, an element whose ways in all ran through deleted
            // ones stays reachable (`reconnect` sees to it) but only from far away, where a
            // search for its own neighbourhood does not look.
            let own_vec = self.vector(0).to_vec();
            let mut connect = Connect::new(self.index, self.meta, Logging::Wal, &own_vec, node);
            for c in &chosen[live.len()..] {
                connect.offer(c.item.0, c.item.2, self.vector(c.item.1), c.dist, own, layer);
            }
            return;
        }
    }
}

/// Phase 4: free the deleted elements and record their node pages in the free space map.
fn free(index: pg_sys::Relation, meta: &Meta, deleted: &HashMap<ItemRef, ItemRef>) {
    let elements: Vec<(ItemRef, ItemRef, Option<u16>)> = deleted.iter().map(|(&v, &n)| (n, v, None)).collect();
    let marked = mark(index, meta.m as usize, &elements, FLAG_FREE);
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

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: VACUUM passes a valid info.
    let (index, analyze_only) = unsafe { ((*info).index, (*info).analyze_only) };
    if analyze_only {
        return stats;
    }
    let meta = Meta::read(index);
    let live = match meta.elem {
        ElemType::F16 => reconnect::<f16>(index, &meta, false),
        ElemType::F32 => reconnect::<f32>(index, &meta, false),
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

/// Bytes per element the reachability pass holds besides its links: the graph map's entry
/// and the `reached` and in-degree sets', hash table slack included.
const REACH_BYTES: usize = 2 * core::mem::size_of::<(ItemRef, Reach)>() + 64;

/// One element as the reachability pass sees it.
struct Reach {
    node: ItemRef,
    live: bool,
    links: Vec<ItemRef>,
}

/// Make every live element reachable on layer 0 from the entry point again, and count the
/// live heap TIDs on the way. Neighbour selection prunes links without regard to in-degree, so
/// now and then (about once per 10^4 inserts or deletes here) an element loses its last
/// incoming link, and a row no search can return is as bad as a lost row. Each such element
/// gets a link from a reachable neighbour — its own nearest reachable neighbour, or the nearest
/// reachable element a search finds — taking, if that neighbour's list is full, the place of an
/// entry that other elements link to as well.
///
/// With `live_only`, deleted elements do not route: every live element must be reachable
/// through live ones alone. VACUUM establishes that before it repairs (which only adds links
/// between live elements, and takes a link away only where a live element kept in the same
/// list links on to it), so a VACUUM cancelled at any point leaves every row reachable.
fn reconnect<E: Elem>(index: pg_sys::Relation, meta: &Meta, live_only: bool) -> f64 {
    let m = meta.m as usize;
    let mut live_tids = 0f64;
    for _round in 0..4 {
        live_tids = 0.0;
        let mut graph: HashMap<ItemRef, Reach> = HashMap::new();
        // The layer-0 graph is held whole: within maintenance_work_mem (see [`REACH_BYTES`]),
        // or the pass is skipped (the rows are still counted), as a VACUUM that fails for want
        // of memory would leave the table's dead rows in place.
        let mut budget = Budget::new(Setting::MaintenanceWorkMem);
        let mut fits = true;
        for block in 1..nblocks(index) {
            delay_point();
            let buf = Buffer::read(index, block, Lock::Share);
            let page = buf.page();
            if page.is_new() || page.opaque().kind != PAGE_DATA {
                continue;
            }
            for off in 1..=page.max_offset() {
                let Some(data) = page.item(off) else { continue };
                match data.first() {
                    Some(&KIND_NODE) => {
                        let t = NodeTuple::parse(data, m);
                        if !t.is_deleted() {
                            live_tids += t.heap_tid_count() as f64;
                        }
                        if !fits {
                            continue;
                        }
                        // A freed element's lists are leftovers nobody follows.
                        let links: Vec<ItemRef> =
                            if t.is_free() || (live_only && t.is_deleted()) { Vec::new() } else { t.neighbors(0).collect() };
                        let bytes = REACH_BYTES + links.len() * core::mem::size_of::<ItemRef>();
                        if !budget.fits(bytes) {
                            fits = false;
                            graph = HashMap::new();
                            continue;
                        }
                        budget.used += bytes;
                        let r = Reach { node: ItemRef::new(block, off), live: !t.is_deleted(), links };
                        graph.insert(t.vector(), r);
                    }
                    Some(&KIND_TIDS) => live_tids += TidList::parse(data).count() as f64,
                    _ => {}
                }
            }
        }
        if !fits {
            ereport!(
                NOTICE,
                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                format!(
                    "hnsw index reachability check skipped: the graph does not fit into {} kB of maintenance_work_mem",
                    budget.limit / 1024
                ),
                "Increase maintenance_work_mem (or autovacuum_work_mem) so that VACUUM can check that every row is reachable."
            );
            return live_tids;
        }
        let meta = Meta::read(index);
        if !meta.has_entry() {
            return live_tids;
        }
        // Reached elements, each with the element it was first reached from: a spanning tree
        // of layer 0 (the entry point is its own parent). Room is made only by dropping a link
        // off that tree, so making room never orphans another element.
        // `order` lists them as they are reached, for the last resort below.
        let mut reached: HashMap<ItemRef, ItemRef> = HashMap::new();
        let mut order: Vec<ItemRef> = Vec::new();
        let spread = |from: ItemRef, via: ItemRef, reached: &mut HashMap<ItemRef, ItemRef>, order: &mut Vec<ItemRef>| {
            if reached.contains_key(&from) {
                return;
            }
            let mut stack = vec![from];
            reached.insert(from, via);
            order.push(from);
            while let Some(v) = stack.pop() {
                for &n in graph.get(&v).map(|e| e.links.as_slice()).unwrap_or_default() {
                    if !(live_only && graph.get(&n).is_some_and(|x| !x.live)) && !reached.contains_key(&n) {
                        reached.insert(n, v);
                        order.push(n);
                        stack.push(n);
                    }
                }
            }
        };
        spread(meta.entry_vector, meta.entry_vector, &mut reached, &mut order);
        // The last resort's cursor in `order`: an element it passed over has a full list of
        // tree links only (or is no live element), and stays so.
        let mut any = 0usize;
        let lost: Vec<ItemRef> = graph.iter().filter(|(v, e)| e.live && !reached.contains_key(v)).map(|(v, _)| *v).collect();
        if lost.is_empty() {
            return live_tids;
        }
        // As in the build's pass (`Graph::connect_unreachable`): an element of the graph gives
        // at most one place to a lost element, and once its neighbours have given theirs, a
        // lost element is linked from one reconnected earlier in this pass (which gives up to
        // a quarter of its places). Under inner product most lost elements lie inside the
        // data's hull, their nearest are the same few hull elements every search walks, and
        // taking places in those lists each time crowded them with interior elements (10k
        // uniform 3-d rows, 10% deleted: 1,335 lost, recall@20 at ef 40 0.95 -> 0.91).
        let spare_places = (layer_capacity(m, 0) / 4).clamp(1, u8::MAX as usize) as u8;
        let mut places: HashMap<ItemRef, u8> = HashMap::new();
        let mut spare: VecDeque<ItemRef> = VecDeque::new();
        for v in lost {
            delay_point();
            if reached.contains_key(&v) {
                continue;
            }
            let usable = |n: &ItemRef| reached.contains_key(n) && graph.get(n).is_some_and(|x| x.live);
            let mut from: Vec<ItemRef> = graph[&v].links.iter().copied().filter(usable).collect();
            from.extend(nearest_reachable::<E>(index, &meta, v).into_iter().filter(|n| *n != v && usable(n)));
            let left = |f: &ItemRef, places: &HashMap<ItemRef, u8>| places.get(f).copied().unwrap_or(1) > 0;
            // A free place first, as inserts do (see `insert_vector`).
            let mut by = from.iter().copied().find(|f| left(f, &places) && force_link(index, m, graph[f].node, *f, v, &reached, true));
            if by.is_none() {
                by = from.iter().copied().find(|f| left(f, &places) && force_link(index, m, graph[f].node, *f, v, &reached, false));
            }
            while by.is_none() {
                let Some(&e) = spare.front() else { break };
                if left(&e, &places) && force_link(index, m, graph[&e].node, e, v, &reached, false) {
                    by = Some(e);
                } else {
                    spare.pop_front();
                }
            }
            if by.is_none() {
                // Better a crowded list than a row no search returns.
                by = from.into_iter().find(|f| force_link(index, m, graph[f].node, *f, v, &reached, false));
            }
            // Any reached live element with a free place or a link off the tree takes it: one
            // exists (tree links are one fewer than the reached elements, each with 2m >= 4
            // places), so a single pass leaves every live element reachable.
            while by.is_none() && any < order.len() {
                let f = order[any];
                if graph.get(&f).is_some_and(|x| x.live) && force_link(index, m, graph[&f].node, f, v, &reached, false) {
                    by = Some(f);
                } else {
                    any += 1;
                }
            }
            if let Some(f) = by {
                let p = places.entry(f).or_insert(1);
                *p = p.saturating_sub(1);
                places.insert(v, spare_places);
                spare.push_back(v);
                spread(v, f, &mut reached, &mut order);
            }
        }
    }
    live_tids
}

/// Elements near `v`'s vector, nearest first, as a search from the entry point finds them.
fn nearest_reachable<E: Elem>(index: pg_sys::Relation, meta: &Meta, v: ItemRef) -> Vec<ItemRef> {
    let metric = meta.metric;
    if !Extent::new(index).holds(v) {
        return Vec::new();
    }
    let query: Vec<E> = {
        let buf = Buffer::read(index, v.block, Lock::Share);
        let Some(data) = buf.page().item(v.offset) else { return Vec::new() };
        VectorTuple::parse(data).values::<E>(meta.dims as usize).to_vec()
    };
    let mut walk = DiskWalk::new(index, meta, |x: &[E]| E::distance(metric, &query, x), Visited::default(), false);
    let mut cur = walk.measure(meta.entry_vector);
    let mut buf = Vec::new();
    for layer in (1..=meta.entry_level as usize).rev() {
        cur = greedy_closest(&mut walk, cur, layer, &mut buf);
    }
    let mut found = Vec::new();
    search_layer(&mut walk, &[cur], meta.ef_construction as usize, 0, &mut SearchScratch::default(), &mut found);
    found.iter().map(|c| c.item.vector).collect()
}

/// Put `target` (a vector ref) into the layer-0 list of the element whose node tuple is
/// `node` (and vector `vector`). A full list gives up its last entry that is not on the
/// spanning tree `reached` (one reached through another element, which still links to it),
/// so no element loses its way in (an in-degree test is not enough: the other link may come
/// from an element reachable only through the dropped one); if there is none the link is
/// not made; nor is it with `free_only`, which takes only a free place.
fn force_link(
    index: pg_sys::Relation,
    m: usize,
    node: ItemRef,
    vector: ItemRef,
    target: ItemRef,
    reached: &HashMap<ItemRef, ItemRef>,
    free_only: bool,
) -> bool {
    let cap = layer_capacity(m, 0);
    let buf = Buffer::read(index, node.block, Lock::Exclusive);
    let Some(data) = buf.page().item(node.offset) else { return false };
    let mut list: Vec<ItemRef> = NodeTuple::parse(data, m).neighbors(0).collect();
    if list.contains(&target) {
        return true;
    }
    if list.len() >= cap {
        if free_only {
            return false;
        }
        let Some(victim) = list.iter().rposition(|l| reached.get(l) != Some(&vector)) else {
            return false;
        };
        list.remove(victim);
    }
    list.push(target);
    let mut wal = Wal::start(index, &buf, Logging::Wal, false);
    {
        let mut page = wal.page();
        let data = page.item_mut(node.offset).expect("item checked under the same lock");
        NodeTupleMut::edit(data, m).set_neighbors(0, &list);
    }
    wal.finish();
    true
}
