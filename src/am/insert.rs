//! Online inserts (`aminsert`), safe with any number of backends inserting at once.
//!
//! Locking discipline (what makes it deadlock-free): a backend holds at most one buffer lock at
//! a time, never waits for a buffer lock while holding another, and takes the meta page's lock
//! only on its own. Neighbour lists are updated optimistically: read the list and its version
//! under a share lock, compute the new list with no lock held (this may read other pages), then
//! take the exclusive lock and write only if the version is unchanged, else start over.
//! The very first element of an empty index is placed under a heavyweight lock so that two
//! first inserts cannot both become unconnected entry points.

use std::cell::Cell;

use half::f16;
use hnsw_core::graph::build::{random_level, splitmix64};
use hnsw_core::graph::heuristic::select_neighbors;
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{Candidate, SearchScratch, Visited};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::graph::{prepare_stored, DiskWalk, Elem, Node};
use super::opclass::{self, Kind};
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::meta::{Meta, ELEM_F16};
use crate::storage::page::{maxalign, page_capacity, ItemRef, ITEM_ID_SIZE, PAGE_DATA};
use crate::storage::tuple::{
    encode_vector, layer_capacity, node_tuple_size, set_vector_node, vector_tuple_size, NodeTuple, NodeTupleMut,
    VectorTuple,
};

/// Heavyweight page lock (on the meta block number) serializing inserts into an empty index.
const FIRST_INSERT_LOCK: u32 = 0;

#[pg_guard]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _index_info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: one key column: values/isnull have at least one entry; heap_tid is valid.
    let (datum, null, tid) = unsafe { (*values, *isnull, *heap_tid) };
    if null {
        return false;
    }
    let kind = opclass::cached(index);
    let tid = crate::storage::tuple::from_tid(&tid);
    match kind.elem {
        ELEM_F16 => insert_datum::<f16>(index, &kind, datum, tid, Logging::Wal),
        _ => insert_datum::<f32>(index, &kind, datum, tid, Logging::Wal),
    }
    false
}

pub fn insert_datum<E: Elem>(index: pg_sys::Relation, kind: &Kind, datum: pg_sys::Datum, tid: ItemRef, logging: Logging) {
    let meta = Meta::read(index);
    let Some(vector) = prepare_stored::<E>(datum, kind, meta.dims) else { return };
    insert_vector(index, &vector, tid, logging);
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// Random bits for levels: seeded per backend from its pid and the clock.
fn random_u64() -> u64 {
    RNG.with(|r| {
        let mut s = r.get();
        if s == 0 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
            s = nanos ^ ((std::process::id() as u64) << 32);
        }
        s = splitmix64(s);
        r.set(s);
        s
    })
}

/// Heavyweight page lock, released on drop.
struct PageLock(pg_sys::Relation, u32, pg_sys::LOCKMODE);

impl PageLock {
    fn exclusive(rel: pg_sys::Relation, block: u32) -> PageLock {
        let mode = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;
        // SAFETY: the relation is open; released in drop.
        unsafe { pg_sys::LockPage(rel, block, mode) };
        PageLock(rel, block, mode)
    }
}

impl Drop for PageLock {
    fn drop(&mut self) {
        // SAFETY: taken in `exclusive`.
        unsafe { pg_sys::UnlockPage(self.0, self.1, self.2) };
    }
}

/// Insert a prepared vector (checked, normalized) for heap row `tid`.
pub fn insert_vector<E: Elem>(index: pg_sys::Relation, vector: &[E], tid: ItemRef, logging: Logging) {
    let mut meta = Meta::read(index);
    if !meta.has_entry() {
        let _first = PageLock::exclusive(index, FIRST_INSERT_LOCK);
        meta = Meta::read(index);
        if !meta.has_entry() {
            let level = random_level(random_u64(), meta.m as usize, meta.max_level as usize);
            let lists = vec![Vec::new(); level + 1];
            let (vref, nref) = place(index, &meta, vector, level, &lists, tid, logging);
            Meta::update(index, logging, |m| {
                m.dims = vector.len() as u32;
                m.entry_vector = vref;
                m.entry_node = nref;
                m.entry_level = level as u8;
                true
            });
            return;
        }
    }
    let metric = Metric::from_u8(meta.metric).expect("metric checked when the index was built");
    let (m, dims) = (meta.m as usize, meta.dims as usize);
    let level = random_level(random_u64(), m, meta.max_level as usize);
    let top = meta.entry_level as usize;

    // Search as the build does, keeping a copy of every measured vector for the heuristic.
    let mut walk = DiskWalk::new(index, &meta, |v: &[E]| E::distance(metric, vector, v), Visited::default(), true);
    let mut cur = walk.measure(meta.entry_vector);
    let mut buf = Vec::new();
    for layer in (level + 1..=top).rev() {
        cur = greedy_closest(&mut walk, cur, layer, &mut buf);
    }
    let mut entries = vec![cur];
    let mut found = Vec::new();
    let mut scratch = SearchScratch::default();
    let mut selected: Vec<Vec<Candidate<Node>>> = vec![Vec::new(); level + 1];
    for layer in (0..=level.min(top)).rev() {
        search_layer(&mut walk, &entries, meta.ef_construction as usize, layer, &mut scratch, &mut found);
        let cap = layer_capacity(m, layer);
        select_neighbors(
            &found,
            cap,
            true,
            |a: &Node, b: &Node| E::distance(metric, walk.arena_vector(a.slot), walk.arena_vector(b.slot)),
            &mut selected[layer],
        );
        core::mem::swap(&mut entries, &mut found);
    }
    let lists: Vec<Vec<ItemRef>> = selected.iter().map(|s| s.iter().map(|c| c.item.vector).collect()).collect();
    let (vref, nref) = place(index, &meta, vector, level, &lists, tid, logging);

    let mut connect = Connect { index, m, dims, metric, logging, new_vector: vector, scratch: Vec::new() };
    for (layer, sel) in selected.iter().enumerate() {
        for c in sel {
            connect.link(c.item, walk.arena_vector(c.item.slot), c.dist, vref, layer);
        }
    }
    if level > top {
        Meta::update(index, logging, |m| {
            if level > m.entry_level as usize {
                m.entry_vector = vref;
                m.entry_node = nref;
                m.entry_level = level as u8;
                true
            } else {
                false
            }
        });
    }
}

/// Write an element's two tuples: side by side on one page when they fit together (one lock,
/// one WAL record), else — vectors near the dimension limit fill a page alone — the vector on
/// a page of its own and the node tuple where there is room, then the vector pointed at it.
/// Until that last step the vector is unreachable: no neighbour links to it yet.
fn place<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    vector: &[E],
    level: usize,
    lists: &[Vec<ItemRef>],
    tid: ItemRef,
    logging: Logging,
) -> (ItemRef, ItemRef) {
    let m = meta.m as usize;
    let (vsize, nsize) = (vector_tuple_size::<E>(vector.len()), node_tuple_size(m, level));
    let node_tuple = |vref: ItemRef, out: &mut Vec<u8>| {
        let mut node = NodeTupleMut::init(out, m, level, vref, tid);
        for (layer, list) in lists.iter().enumerate() {
            node.set_neighbors(layer, list);
        }
    };
    if maxalign(vsize) + maxalign(nsize) + 2 * ITEM_ID_SIZE <= page_capacity() {
        let first = append(index, meta, &[vsize, nsize], logging, |block, first, out| {
            let (vref, nref) = (ItemRef::new(block, first), ItemRef::new(block, first + 1));
            encode_vector(vector, nref, 0, &mut out[0]);
            node_tuple(vref, &mut out[1]);
        });
        return (first, ItemRef::new(first.block, first.offset + 1));
    }
    let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    let vref = ItemRef::new(buf.block(), 1);
    let mut tuple = Vec::new();
    encode_vector(vector, ItemRef::INVALID, 0, &mut tuple);
    write_items(index, &buf, true, &[tuple], logging);
    drop(buf);
    let nref = append(index, meta, &[nsize], logging, |_, _, out| node_tuple(vref, &mut out[0]));
    let buf = Buffer::read(index, vref.block, Lock::Exclusive);
    let mut wal = Wal::start(index, &buf, logging, false);
    {
        let mut page = wal.page();
        let data = page.item_mut(vref.offset).expect("vector tuple written above");
        set_vector_node(data, nref);
    }
    wal.finish();
    (vref, nref)
}

/// Append items of the given sizes on the insert page if they fit there, else on a new page
/// that becomes the insert page. `fill(block, first_offset, tuples)` encodes them once their
/// addresses are known. Returns the address of the first.
fn append(
    index: pg_sys::Relation,
    meta: &Meta,
    sizes: &[usize],
    logging: Logging,
    fill: impl FnOnce(u32, u16, &mut [Vec<u8>]),
) -> ItemRef {
    let mut tuples = vec![Vec::new(); sizes.len()];
    // SAFETY: the index is open and locked by the caller.
    let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    if meta.insert_page > 0 && meta.insert_page < nblocks {
        let buf = Buffer::read(index, meta.insert_page, Lock::Exclusive);
        let page = buf.page();
        if !page.is_new() && page.opaque().kind == PAGE_DATA && page.fits(sizes) {
            let first = page.max_offset() + 1;
            fill(buf.block(), first, &mut tuples);
            write_items(index, &buf, false, &tuples, logging);
            return ItemRef::new(buf.block(), first);
        }
    }
    let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    let block = buf.block();
    fill(block, 1, &mut tuples);
    write_items(index, &buf, true, &tuples, logging);
    drop(buf);
    Meta::update(index, logging, |meta| {
        if meta.insert_page < block {
            meta.insert_page = block;
            true
        } else {
            false
        }
    });
    ItemRef::new(block, 1)
}

/// Add `tuples` to an exclusively locked page (formatting it first if new), in one record.
fn write_items(index: pg_sys::Relation, buf: &Buffer, new_page: bool, tuples: &[Vec<u8>], logging: Logging) {
    let mut wal = Wal::start(index, buf, logging, new_page);
    {
        let mut page = wal.page();
        if new_page {
            page.init(PAGE_DATA);
        }
        let first = page.as_page().max_offset() + 1;
        for (i, t) in tuples.iter().enumerate() {
            if page.add_item(t) != Some(first + i as u16) {
                crate::types::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "hnsw: element did not fit the page chosen for it");
            }
        }
    }
    wal.finish();
}

/// Adds back-links from the new element's neighbours to it.
struct Connect<'a, E: Elem> {
    index: pg_sys::Relation,
    m: usize,
    dims: usize,
    metric: Metric,
    logging: Logging,
    new_vector: &'a [E],
    /// Vectors of a full list being re-selected.
    scratch: Vec<E>,
}

impl<E: Elem> Connect<'_, E> {
    /// Make `e` (whose vector is `e_vec`) link to the new element `new` at distance `d`.
    fn link(&mut self, e: Node, e_vec: &[E], d: f32, new: ItemRef, layer: usize) {
        let cap = layer_capacity(self.m, layer);
        // A retry happens only when another backend changed this list meanwhile, so some
        // backend always makes progress; interrupts are honoured while retrying.
        loop {
            check_for_interrupts!();
            let (version, list) = {
                let buf = Buffer::read(self.index, e.node.block, Lock::Share);
                let Some(data) = buf.page().item(e.node.offset) else { return };
                let t = NodeTuple::parse(data, self.m);
                if t.level() < layer {
                    return;
                }
                (t.version(), t.neighbors(layer).collect::<Vec<_>>())
            };
            if list.contains(&new) {
                return;
            }
            let new_list = if list.len() < cap {
                let mut l = list;
                l.push(new);
                l
            } else {
                match self.reselect(e_vec, &list, d, new, cap) {
                    Some(l) => l,
                    // The heuristic keeps the old list: nothing to write.
                    None => return,
                }
            };
            let buf = Buffer::read(self.index, e.node.block, Lock::Exclusive);
            let Some(data) = buf.page().item(e.node.offset) else { return };
            if NodeTuple::parse(data, self.m).version() != version {
                continue;
            }
            let mut wal = Wal::start(self.index, &buf, self.logging, false);
            {
                let mut page = wal.page();
                let data = page.item_mut(e.node.offset).expect("item checked under the same lock");
                NodeTupleMut::edit(data, self.m).set_neighbors(layer, &new_list);
            }
            wal.finish();
            return;
        }
    }

    /// Choose among a full list plus the new element with the heuristic; `None` if the new
    /// element is not chosen (then the list stays as it is).
    fn reselect(&mut self, e_vec: &[E], list: &[ItemRef], d_new: f32, new: ItemRef, cap: usize) -> Option<Vec<ItemRef>> {
        let dims = self.dims;
        self.scratch.clear();
        // (ref, slot of its vector in `scratch`); candidates point into this.
        let mut members: Vec<(ItemRef, usize)> = Vec::with_capacity(list.len() + 1);
        let mut cands: Vec<Candidate<usize>> = Vec::with_capacity(list.len() + 1);
        for r in list {
            let buf = Buffer::read(self.index, r.block, Lock::Share);
            let Some(data) = buf.page().item(r.offset) else { continue };
            let v = VectorTuple::parse(data).values::<E>(dims);
            cands.push(Candidate::new(E::distance(self.metric, e_vec, v), members.len()));
            members.push((*r, self.scratch.len() / dims));
            self.scratch.extend_from_slice(v);
        }
        cands.push(Candidate::new(d_new, members.len()));
        members.push((new, self.scratch.len() / dims));
        self.scratch.extend_from_slice(self.new_vector);
        cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        let scratch = &self.scratch;
        let vec_of = |i: usize| &scratch[members[i].1 * dims..(members[i].1 + 1) * dims];
        let mut kept = Vec::with_capacity(cap);
        select_neighbors(&cands, cap, true, |a, b| E::distance(self.metric, vec_of(*a), vec_of(*b)), &mut kept);
        if !kept.iter().any(|c| members[c.item].0 == new) {
            return None;
        }
        Some(kept.iter().map(|c| members[c.item].0).collect())
    }
}
