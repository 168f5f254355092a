//! Online inserts (`aminsert`), safe with any number of backends inserting at once.
//!
//! Locking discipline (what makes it deadlock-free): a backend holds at most one buffer lock at
//! a time — except when a back-link pushes an entry out of a full list, where the page of the
//! entry's witness is share-locked too, the two taken in block order (see [`Connect::link`]) —
//! and takes the meta page's lock only on its own. Neighbour lists are updated optimistically:
//! read the list and its version under a share lock, compute the new list with no lock held
//! (this may read other pages), then take the exclusive lock and write only if the version is
//! unchanged, else start over.
//! The very first element of an empty index is placed under a heavyweight lock so that two
//! first inserts cannot both become unconnected entry points. Every insert holds a share lock
//! on a second heavyweight lock that VACUUM takes exclusively for a moment after marking
//! elements deleted: after that barrier no insert can still link to an element it saw alive,
//! so once VACUUM has removed the links to deleted elements it may free them for reuse.
//!
//! A row whose vector equals an existing live element's joins that element (its heap TID is
//! added) instead of becoming an element of its own: duplicates would otherwise fill each
//! other's neighbour lists and fall out of reach.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use half::f16;
use hnsw_core::graph::build::{random_level, splitmix64};
use hnsw_core::graph::heuristic::select_neighbors;
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{Candidate, SearchScratch};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::filter::Attrs;
use super::graph::{prepare_stored, DiskWalk, Elem, Extent, Node};
use super::mem::TempContext;
use super::opclass::{self, Kind};
use crate::storage::attr::{self, encode_record};
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::{maxalign, page_capacity, ItemRef, ITEM_ID_SIZE, PAGE_DATA};
use crate::storage::tuple::{
    encode_tid_list, encode_vector, layer_capacity, node_tuple_size, node_tuples, set_vector_node, vector_tuple_size, NodeTuple,
    NodeTupleMut, TidList, TidListMut, VectorTuple, FLAG_CLAIMED, FLAG_DELETED, FLAG_FREE, HEAP_TIDS, KIND_NODE,
};

/// Heavyweight page lock (on the meta block number) serializing inserts into an empty index.
const FIRST_INSERT_LOCK: u32 = 0;
/// Heavyweight page lock (on a block number no page has) that inserts share and VACUUM takes
/// exclusively; see the module docs.
pub const INSERT_LOCK: u32 = 0xFFFF_FFFE;

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
    // SAFETY: values/isnull have an entry per key column (the vector first); heap_tid is valid.
    let (datum, null, tid) = unsafe { (*values, *isnull, *heap_tid) };
    if null {
        return false;
    }
    let kind = opclass::cached(index);
    let tid = crate::storage::tuple::from_tid(&tid);
    // The executor calls us in its per-query context: without a context of our own, every
    // row's detoasted vector and filter values would stay until the statement ends.
    TempContext::new(c"hnsw insert").run(|| {
        // SAFETY: as above.
        let attrs = unsafe { opclass::columns(index).encode_row(values, isnull) };
        match kind.elem {
            ElemType::F16 => insert_datum::<f16>(index, &kind, datum, &attrs, tid, Logging::Wal),
            ElemType::F32 => insert_datum::<f32>(index, &kind, datum, &attrs, tid, Logging::Wal),
        }
    });
    false
}

pub fn insert_datum<E: Elem>(index: pg_sys::Relation, kind: &Kind, datum: pg_sys::Datum, attrs: &Attrs, tid: ItemRef, logging: Logging) {
    let meta = Meta::read(index);
    let Some(vector) = prepare_stored::<E>(datum, kind, meta.dims) else { return };
    insert_vector(index, &vector, attrs, tid, logging);
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

/// HOLD_INTERRUPTS() until dropped (RESUME_INTERRUPTS()); an ERROR's cleanup resets the count
/// anyway, and our drop then only brings it back down to where it was.
struct HoldInterrupts;

impl HoldInterrupts {
    fn new() -> HoldInterrupts {
        // SAFETY: a backend-local counter, touched only on the backend's thread.
        unsafe { pg_sys::InterruptHoldoffCount += 1 };
        HoldInterrupts
    }
}

impl Drop for HoldInterrupts {
    fn drop(&mut self) {
        // SAFETY: as in new(); never below zero.
        unsafe { pg_sys::InterruptHoldoffCount = pg_sys::InterruptHoldoffCount.saturating_sub(1) };
    }
}

/// Heavyweight page lock, released on drop.
pub struct PageLock(pg_sys::Relation, u32, pg_sys::LOCKMODE);

impl PageLock {
    pub fn exclusive(rel: pg_sys::Relation, block: u32) -> PageLock {
        Self::take(rel, block, pg_sys::ExclusiveLock as pg_sys::LOCKMODE)
    }

    pub fn share(rel: pg_sys::Relation, block: u32) -> PageLock {
        Self::take(rel, block, pg_sys::ShareLock as pg_sys::LOCKMODE)
    }

    fn take(rel: pg_sys::Relation, block: u32, mode: pg_sys::LOCKMODE) -> PageLock {
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

/// Raise 54000 unless a row's vector tuple (its vector and filter values, stored together)
/// fits on a page. Checked before anything is written, so that a row too long leaves nothing
/// behind (no attribute record without an element), in a build as in an insert.
pub fn check_row_size<E: Elem>(dims: usize, payload: usize) {
    let need = vector_tuple_size::<E>(dims, payload) + ITEM_ID_SIZE;
    if need > page_capacity() {
        crate::types::raise_detail(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "value too long for an hnsw filter column",
            format!(
                "The row's vector and filter values need {need} bytes in the index, more than the {} bytes a page holds.",
                page_capacity()
            ),
        );
    }
}

/// Insert a prepared vector (checked, normalized) for heap row `tid`.
pub fn insert_vector<E: Elem>(index: pg_sys::Relation, vector: &[E], attrs: &Attrs, tid: ItemRef, logging: Logging) {
    check_row_size::<E>(vector.len(), attrs.payload.len());
    let _insert = PageLock::share(index, INSERT_LOCK);
    let mut meta = Meta::read(index);
    if !meta.has_entry() {
        let _first = PageLock::exclusive(index, FIRST_INSERT_LOCK);
        meta = Meta::read(index);
        same_dims(&meta, vector.len());
        if !meta.has_entry() {
            let level = random_level(random_u64(), meta.m as usize, meta.max_level as usize);
            let lists = vec![Vec::new(); level + 1];
            let (vref, nref, level) = place(index, &meta, vector, attrs, level, &lists, tid, logging);
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
    same_dims(&meta, vector.len());
    let metric = meta.metric;
    let (m, dims) = (meta.m as usize, meta.dims as usize);
    let level = random_level(random_u64(), m, meta.max_level as usize);
    let top = meta.entry_level as usize;

    // Search as the build does, keeping a copy of every measured vector for the heuristic.
    let mut walk = DiskWalk::new(index, &meta, |v: &[E]| E::distance(metric, vector, v), super::scan::take_visited(), true);
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
    // `entries` now holds the layer-0 results: an equal vector is among them. (Not always the
    // nearest: under inner product a longer vector can beat the vector itself.)
    // Rows with different filter values stay apart: their element answers different filters.
    for c in &entries {
        if walk.arena_vector(c.item.slot) == vector
            && same_payload::<E>(index, c.item.vector, dims, &attrs.payload)
            && add_heap_tid(index, &meta, c.item.node, tid, logging)
        {
            return;
        }
    }
    let mut lists: Vec<Vec<ItemRef>> = selected.iter().map(|s| s.iter().map(|c| c.item.vector).collect()).collect();
    // An element that will become the entry point links to the old one on layer 0 (first in
    // its list, where the forced link below never takes a place): every element is reachable
    // from the old entry point by layer-0 links, so stays reachable from the new one, and
    // scans seed layer 0 with the entry point.
    if level > top && !lists[0].contains(&meta.entry_vector) {
        lists[0].truncate(layer_capacity(m, 0) - 1);
        lists[0].insert(0, meta.entry_vector);
    }
    // From here on the element exists on disk but nothing links to it yet: a cancel before
    // the links are in would leave it unreachable (and the checker complaining) until the next
    // VACUUM. The rest takes milliseconds, so interrupts wait for it.
    let _hold = HoldInterrupts::new();
    let (vref, nref, level) = place(index, &meta, vector, attrs, level, &lists, tid, logging);
    selected.truncate(level + 1);

    let (arena, arena_refs) = walk.arena();
    // Elements the walk met alive: their refs cannot be freed and reused before this insert
    // ends (VACUUM's barrier waits for it), so their copies stand in for buffer reads when a
    // full list is re-selected. Deleted ones may be freed and reused meanwhile: read afresh.
    let measured: Measured = arena_refs
        .iter()
        .enumerate()
        .filter(|(_, (_, _, deleted))| !deleted)
        .map(|(slot, (v, n, _))| (v.visited_key(), (slot as u32, *n)))
        .collect();
    let mut connect = Connect {
        index,
        m,
        dims,
        metric,
        logging,
        new_vector: vector,
        new_node: nref,
        scratch: Vec::new(),
        arena,
        measured,
        extent: Extent::new(index),
    };
    let mut reachable = false;
    for (layer, sel) in selected.iter().enumerate() {
        for c in sel {
            reachable |= connect.link(c.item, walk.arena_vector(c.item.slot), c.dist, vref, layer, LinkMode::Offer) && layer == 0;
        }
    }
    // If every neighbour's heuristic turned the new element down, nothing links to it and no
    // search could ever return its row. The nearest element the walk found alive with a free
    // place in its list takes it: the walk reached it, so it is reachable, and nothing is
    // given up. Only if none has one does the nearest neighbour take it regardless (making the
    // new element the witness of the entry it gives up, if it must; see
    // [`Connect::reselect`]). Under inner product most elements are turned down (a point
    // inside the data's hull is nobody's nearest by `-dot`), and their nearest neighbours are
    // the same few hull elements every search walks: forcing each into those lists filled
    // them with interior points (recall@20 at ef 40 on 10k uniform 3-d rows: 0.84; issue 9,
    // item 14), while interior elements, whose lists the heuristic leaves short, have room.
    if !reachable {
        reachable = entries
            .iter()
            .filter(|c| !c.item.deleted)
            .any(|c| connect.link(c.item, walk.arena_vector(c.item.slot), c.dist, vref, 0, LinkMode::IfRoom));
    }
    if !reachable {
        for c in &selected[0] {
            if connect.link(c.item, walk.arena_vector(c.item.slot), c.dist, vref, 0, LinkMode::Force) {
                break;
            }
        }
    }
    drop(connect);
    super::scan::return_visited(walk.into_visited());
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

/// The caller checked the vector against the dimensions it read from the meta page; on a
/// column without declared dimensions, the first insert of another session may have fixed
/// them since (under FIRST_INSERT_LOCK, which the first-insert path holds when it checks).
fn same_dims(meta: &Meta, len: usize) {
    if meta.dims != 0 {
        crate::types::check_expected_dim(meta.dims as i32, len);
    }
}

/// Write an element's two tuples: side by side on one page when they fit together (one lock,
/// one WAL record), else — vectors near the dimension limit fill a page alone — the vector on
/// a page of its own and the node tuple where there is room, then the vector pointed at it.
/// Until that last step the vector is unreachable: no neighbour links to it yet.
#[allow(clippy::too_many_arguments)]
fn place<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    vector: &[E],
    attrs: &Attrs,
    level: usize,
    lists: &[Vec<ItemRef>],
    tid: ItemRef,
    logging: Logging,
) -> (ItemRef, ItemRef, usize) {
    if let Some(refs) = reuse_free(index, meta, vector, attrs, level, lists, tid, logging) {
        return refs;
    }
    // With filter columns, the attribute record comes first, without its vector ref (scans
    // skip it until it has one); the node tuple can then point at it from the start.
    let mut record = Vec::new();
    let aref = if meta.filters > 0 {
        encode_record(0, attrs.nulls, ItemRef::INVALID, &attrs.slots, &mut record);
        attr::append(index, logging, &record)
    } else {
        ItemRef::INVALID
    };
    let (vref, nref) = place_new(index, meta, vector, &attrs.payload, level, lists, tid, aref, logging);
    if meta.filters > 0 {
        encode_record(0, attrs.nulls, vref, &attrs.slots, &mut record);
        attr::write(index, logging, aref, &record);
    }
    (vref, nref, level)
}

/// Write a new element's vector and node tuples.
#[allow(clippy::too_many_arguments)]
fn place_new<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    vector: &[E],
    payload: &[u8],
    level: usize,
    lists: &[Vec<ItemRef>],
    tid: ItemRef,
    aref: ItemRef,
    logging: Logging,
) -> (ItemRef, ItemRef) {
    let m = meta.m as usize;
    let (vsize, nsize) = (vector_tuple_size::<E>(vector.len(), payload.len()), node_tuple_size(m, level));
    let node_tuple = |vref: ItemRef, out: &mut Vec<u8>| {
        let mut node = NodeTupleMut::init(out, m, level, vref, tid);
        node.set_attr(aref);
        for (layer, list) in lists.iter().enumerate() {
            node.set_neighbors(layer, list);
        }
    };
    if maxalign(vsize) + maxalign(nsize) + 2 * ITEM_ID_SIZE <= page_capacity() {
        let first = append(index, &[vsize, nsize], logging, |block, first, out| {
            let (vref, nref) = (ItemRef::new(block, first), ItemRef::new(block, first + 1));
            encode_vector(vector, payload, nref, 0, &mut out[0]);
            node_tuple(vref, &mut out[1]);
        });
        return (first, ItemRef::new(first.block, first.offset + 1));
    }
    if vsize + ITEM_ID_SIZE > page_capacity() {
        crate::types::raise(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("hnsw index row needs {vsize} bytes, more than a page holds (long filter values?)"),
        );
    }
    let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    let vref = ItemRef::new(buf.block(), 1);
    let mut tuple = Vec::new();
    encode_vector(vector, payload, ItemRef::INVALID, 0, &mut tuple);
    write_items(index, &buf, true, &[tuple], logging);
    drop(buf);
    let nref = append(index, &[nsize], logging, |_, _, out| node_tuple(vref, &mut out[0]));
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

/// Whether the element whose vector tuple is `vref` has exactly these filter values.
fn same_payload<E: Elem>(index: pg_sys::Relation, vref: ItemRef, dims: usize, payload: &[u8]) -> bool {
    let buf = Buffer::read_recent(index, vref.block, Lock::Share);
    let Some(data) = buf.page().item(vref.offset) else { return false };
    let stored = VectorTuple::parse(data).payload::<E>(dims);
    // A reused tuple may be longer than its payload (zero padding after it).
    stored.len() >= payload.len() && &stored[..payload.len()] == payload && stored[payload.len()..].iter().all(|&b| b == 0)
}

/// The highest level a node tuple of `len` bytes can hold.
fn level_capacity(m: usize, len: usize) -> usize {
    (0..=u8::MAX as usize).take_while(|&l| node_tuple_size(m, l) <= len).last().unwrap_or(0)
}

/// Reuse the two tuples of an element VACUUM freed, if the free space map knows of one: claim
/// the node tuple (so no other insert can), write the vector, then the node. The element's
/// level drops to what the freed node tuple can hold when that is less; freed tuples have the
/// same level distribution as new ones, so this is rare and keeps the index from growing.
/// With filter columns of variable size, the freed vector tuple must also be long enough for
/// the new row's values; its attribute record is rewritten with them.
#[allow(clippy::too_many_arguments)]
fn reuse_free<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    vector: &[E],
    attrs: &Attrs,
    level: usize,
    lists: &[Vec<ItemRef>],
    tid: ItemRef,
    logging: Logging,
) -> Option<(ItemRef, ItemRef, usize)> {
    let m = meta.m as usize;
    let mut tuple = Vec::new();
    encode_vector(vector, &attrs.payload, ItemRef::INVALID, 0, &mut tuple);
    for _ in 0..4 {
        // SAFETY: the FSM lookup only reads the free space map of the open index.
        let block = unsafe { pg_sys::GetPageWithFreeSpace(index, 1) };
        if block == pg_sys::InvalidBlockNumber || block == 0 {
            return None;
        }
        // Free node tuples here: (offset, level capacity, vector ref).
        let free: Vec<(u16, usize, ItemRef)> = {
            let buf = Buffer::read(index, block, Lock::Share);
            node_tuples(buf.page(), m).filter(|(_, t)| t.is_free()).map(|(off, t)| (off, level_capacity(m, t.size()), t.vector())).collect()
        };
        if free.is_empty() {
            forget_free_page(index, block);
            continue;
        }
        // Only those whose vector tuple can take this row's (checked without the node page's
        // lock: one buffer lock at a time; rechecked when claiming). Every vector tuple of an
        // index has the same size unless filter values vary in length.
        let mut fitting: Vec<(u16, usize, ItemRef)> = free
            .iter()
            .copied()
            .filter(|&(_, _, vref)| {
                meta.filters == 0 || {
                    let buf = Buffer::read_recent(index, vref.block, Lock::Share);
                    buf.page().item(vref.offset).is_some_and(|d| d.len() >= tuple.len())
                }
            })
            .collect();
        // Best fit: the smallest that holds `level`, else the largest.
        fitting.sort_by_key(|f| (f.1 < level, if f.1 >= level { f.1 } else { usize::MAX - f.1 }));
        let buf = Buffer::read(index, block, Lock::Exclusive);
        let page = buf.page();
        let claimed = fitting
            .iter()
            .find(|&&(off, _, _)| page.item(off).is_some_and(|d| d.first() == Some(&KIND_NODE) && NodeTuple::parse(d, m).is_free()));
        let Some(&(off, cap, vref)) = claimed else {
            if fitting.len() == free.len() {
                forget_free_page(index, block);
            }
            continue;
        };
        let nref = ItemRef::new(block, off);
        let aref = NodeTuple::parse(page.item(off).expect("seen above"), m).attr();
        let level = level.min(cap);
        // Claim: no longer free, still deleted (never returned) until it is rewritten below,
        // and marked as claimed so that a VACUUM running meanwhile does not free it again.
        let mut wal = Wal::start(index, &buf, logging, false);
        {
            let mut page = wal.page();
            let mut t = NodeTupleMut::edit(page.item_mut(off).expect("seen above"), m);
            let flags = t.as_ref().flags();
            t.set_flags((flags & !FLAG_FREE) | FLAG_DELETED | FLAG_CLAIMED);
        }
        wal.finish();
        if free.len() == 1 {
            forget_free_page(index, block);
        }
        drop(buf);

        let vbuf = Buffer::read(index, vref.block, Lock::Exclusive);
        let mut wal = Wal::start(index, &vbuf, logging, false);
        {
            let mut page = wal.page();
            let data = page.item_mut(vref.offset).filter(|d| d.len() >= tuple.len());
            let Some(data) = data else {
                crate::types::raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw: freed vector tuple does not match its element");
            };
            set_vector_node(&mut tuple, nref);
            data[..tuple.len()].copy_from_slice(&tuple);
            data[tuple.len()..].fill(0);
        }
        wal.finish();
        drop(vbuf);

        // The attribute record: rewritten in place (a freed element keeps its record).
        let aref = if meta.filters > 0 {
            let mut record = Vec::new();
            encode_record(0, attrs.nulls, vref, &attrs.slots, &mut record);
            if aref.is_valid() {
                attr::write(index, logging, aref, &record);
                aref
            } else {
                attr::append(index, logging, &record)
            }
        } else {
            ItemRef::INVALID
        };

        let nbuf = Buffer::read(index, block, Lock::Exclusive);
        let mut wal = Wal::start(index, &nbuf, logging, false);
        {
            let mut page = wal.page();
            let mut t = NodeTupleMut::edit(page.item_mut(off).expect("claimed above"), m);
            t.reset(level, vref, tid);
            t.set_attr(aref);
            for (layer, list) in lists.iter().take(level + 1).enumerate() {
                t.set_neighbors(layer, list);
            }
        }
        wal.finish();
        return Some((vref, nref, level));
    }
    None
}

/// Tell the free space map a page has no free element left.
fn forget_free_page(index: pg_sys::Relation, block: u32) {
    // SAFETY: updating the open index's free space map.
    unsafe { pg_sys::RecordPageWithFreeSpace(index, block, 0) };
}

/// Add heap row `tid` to the live element whose node tuple is `node` (an exact duplicate of the
/// row's vector): inline if there is room, else in its TID lists. False if the element is gone
/// (deleted meanwhile), in which case the row becomes an element of its own.
fn add_heap_tid(index: pg_sys::Relation, meta: &Meta, node: ItemRef, tid: ItemRef, logging: Logging) -> bool {
    let m = meta.m as usize;
    loop {
        let head = {
            let buf = Buffer::read(index, node.block, Lock::Exclusive);
            let Some(data) = buf.page().item(node.offset) else { return false };
            let t = NodeTuple::parse(data, m);
            if t.is_deleted() {
                return false;
            }
            if t.heap_tid_count() < HEAP_TIDS {
                let mut wal = Wal::start(index, &buf, logging, false);
                {
                    let mut page = wal.page();
                    NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).push_heap_tid(tid);
                }
                wal.finish();
                return true;
            }
            t.overflow()
        };
        if let Some(added) = add_to_lists(index, meta, node, head, tid, logging) {
            return added;
        }
    }
}

/// Add `tid` to the TID lists of element `node`, whose inline places were full and whose first
/// list was `head`. Whether it was added (false: the element was deleted meanwhile); `None`
/// if another backend changed the chain meanwhile (start over).
pub(super) fn add_to_lists(
    index: pg_sys::Relation,
    meta: &Meta,
    node: ItemRef,
    head: ItemRef,
    tid: ItemRef,
    logging: Logging,
) -> Option<bool> {
    let m = meta.m as usize;
    let mut r = head;
    let mut extent = Extent::new(index);
    while extent.holds(r) {
        let buf = Buffer::read(index, r.block, Lock::Exclusive);
        let Some(data) = buf.page().item(r.offset) else { break };
        let list = TidList::parse(data);
        let next = list.next();
        if list.count() < list.capacity() {
            let mut wal = Wal::start(index, &buf, logging, false);
            {
                let mut page = wal.page();
                TidListMut::edit(page.item_mut(r.offset).expect("seen above")).push(tid);
            }
            wal.finish();
            drop(buf);
            return Some(confirm_list_row(index, m, node, logging));
        }
        r = next;
    }
    // Every list is full: a new one goes in front of them.
    let mut tuple = Vec::new();
    encode_tid_list(&[tid], head, &mut tuple);
    let new = append(index, &[tuple.len()], logging, |_, _, out| out[0] = tuple.clone());
    let buf = Buffer::read(index, node.block, Lock::Exclusive);
    let Some(data) = buf.page().item(node.offset) else { return Some(false) };
    let t = NodeTuple::parse(data, m);
    if t.is_deleted() {
        // The new list holds only this row and is unreachable; the row gets its own element.
        return Some(false);
    }
    if t.overflow() == head {
        // Setting the overflow ref bumps the version too (see `confirm_list_row`).
        let mut wal = Wal::start(index, &buf, logging, false);
        {
            let mut page = wal.page();
            NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).set_overflow(new);
        }
        wal.finish();
        return Some(true);
    }
    // Another backend changed the chain meanwhile: start over (the list made here stays
    // unreachable; duplicates racing this way are rare).
    None
}

/// After a row went into one of element `node`'s existing TID lists: bump the node tuple's
/// version, under its lock, unless the element is deleted by now (false: the row then gets an
/// element of its own; its copy in the deleted element's list is never returned). A VACUUM
/// that found the lists empty before this row arrived sees the version change and leaves the
/// element alone (see `vacuum::Rowless`); one that marks it first is seen here.
fn confirm_list_row(index: pg_sys::Relation, m: usize, node: ItemRef, logging: Logging) -> bool {
    let buf = Buffer::read(index, node.block, Lock::Exclusive);
    let Some(data) = buf.page().item(node.offset) else { return false };
    if NodeTuple::parse(data, m).is_deleted() {
        return false;
    }
    let mut wal = Wal::start(index, &buf, logging, false);
    {
        let mut page = wal.page();
        NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).bump_version();
    }
    wal.finish();
    true
}

/// Append items of the given sizes on the insert page if they fit there, else on a new page
/// that becomes the insert page. `fill(block, first_offset, tuples)` encodes them once their
/// addresses are known. Returns the address of the first.
fn append(index: pg_sys::Relation, sizes: &[usize], logging: Logging, fill: impl FnOnce(u32, u16, &mut [Vec<u8>])) -> ItemRef {
    let mut tuples = vec![Vec::new(); sizes.len()];
    // The insert page as it is now, not as it was when this insert began: with several
    // backends inserting, another one has often moved it on to a page it just added, and
    // appending to the stale one's successor would leave pages a few elements full.
    let insert_page = Meta::read(index).insert_page;
    // SAFETY: the index is open and locked by the caller.
    let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    if insert_page > 0 && insert_page < nblocks {
        let buf = Buffer::read(index, insert_page, Lock::Exclusive);
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

/// Adds back-links from the new element's neighbours to it (and, for VACUUM's repair, from a
/// repaired element's new neighbours to it).
pub(super) struct Connect<'a, E: Elem> {
    index: pg_sys::Relation,
    m: usize,
    dims: usize,
    metric: Metric,
    logging: Logging,
    new_vector: &'a [E],
    /// The new element's node tuple.
    new_node: ItemRef,
    /// Vectors of a full list being re-selected that the walk did not measure.
    scratch: Vec<E>,
    /// The insert walk's vector copies, and where each live element it measured has its copy
    /// (by [`ItemRef::visited_key`]) and its node tuple.
    arena: &'a [E],
    measured: Measured,
    /// For the references read from neighbour lists before they are followed.
    extent: Extent,
}

/// Where an insert's walk copied each live element it measured: (arena slot, node ref) by
/// [`ItemRef::visited_key`]. Built and probed about a thousand times per insert, so the
/// keys — distinct page positions — are hashed with one multiplication instead of SipHash.
type Measured = HashMap<u64, (u32, ItemRef), BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        // A multiplication mixes each key bit into the bits above it; folding the high half
        // down gives the low bits (the bucket) a share of all of them too: keys differ mostly
        // in their block, above the few offsets a page of vectors uses.
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// How [`Connect::link`] makes room in a full list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LinkMode {
    /// The neighbour heuristic decides whether the new element displaces an entry.
    Offer,
    /// The new element goes in even if the heuristic would rather keep the list.
    Force,
    /// Only into a free place: a full list stays as it is.
    IfRoom,
}

impl<'a, E: Elem> Connect<'a, E> {
    /// For links to the element with vector `vector` and node tuple `node`, outside an insert
    /// (no walk's copies to draw on).
    pub(super) fn new(index: pg_sys::Relation, meta: &Meta, logging: Logging, vector: &'a [E], node: ItemRef) -> Self {
        Connect {
            index,
            m: meta.m as usize,
            dims: meta.dims as usize,
            metric: meta.metric,
            logging,
            new_vector: vector,
            new_node: node,
            scratch: Vec::new(),
            arena: &[],
            measured: Measured::default(),
            extent: Extent::new(index),
        }
    }

    /// Make the element `e` (vector `e_vec`, at distance `d`) link to this element's vector
    /// `new` on `layer` if its list has room or the heuristic prefers it; whether it does.
    pub(super) fn offer(&mut self, e_vector: ItemRef, e_node: ItemRef, e_vec: &[E], d: f32, new: ItemRef, layer: usize) -> bool {
        let e = Node { vector: e_vector, node: e_node, deleted: false, matches: true, slot: u32::MAX };
        self.link(e, e_vec, d, new, layer, LinkMode::Offer)
    }

    /// Make `e` (whose vector is `e_vec`) link to the new element `new` at distance `d`.
    /// Make `e` link to `new`. When `e`'s list is full, the neighbour heuristic picks the entry
    /// to give up (with `force`, the list's last entries are candidates even if the heuristic
    /// would rather keep the list as it is); an entry is only given up if another element
    /// still links to it, so that making room never leaves a row unreachable. Returns whether
    /// `e` links to `new` afterwards.
    fn link(&mut self, e: Node, e_vec: &[E], d: f32, new: ItemRef, layer: usize, mode: LinkMode) -> bool {
        let cap = layer_capacity(self.m, layer);
        // A retry happens only when another backend changed this list (or the witness's)
        // meanwhile, so some backend always makes progress; interrupts are honoured while
        // retrying. Should a list keep changing (or a witness keep failing the check below),
        // the link is given up after a while: leaving the list as it is is always safe.
        for _ in 0..64 {
            check_for_interrupts!();
            let (version, list) = {
                let buf = Buffer::read_recent(self.index, e.node.block, Lock::Share);
                let Some(data) = buf.page().item(e.node.offset) else { return false };
                let t = NodeTuple::parse(data, self.m);
                if t.level() < layer || t.is_deleted() {
                    return false;
                }
                (t.version(), t.neighbors(layer).collect::<Vec<_>>())
            };
            if list.contains(&new) {
                return true;
            }
            let (new_list, dropped) = if list.len() < cap {
                let mut l = list;
                l.push(new);
                (l, None)
            } else if mode == LinkMode::IfRoom {
                return false;
            } else {
                match self.reselect(e_vec, &list, d, new, layer, mode == LinkMode::Force) {
                    Some((l, x, witness)) => (l, Some((x, witness))),
                    None => return false,
                }
            };
            // A dropped entry `x` stays reachable through `witness` (in the new list) only if
            // the witness still links to `x` when the list is written: its page is locked too,
            // in share mode, so that no other insert can drop that link meanwhile (two inserts
            // each dropping one of two links to `x`, each relying on the other's, would cut it
            // off). This is the only place that holds two buffer locks; it takes them in block
            // order, so two inserts doing it cannot deadlock. The list is one WAL record: a
            // crash either has the old list or the new one, and `x` is reachable in both.
            let witness_block = dropped.map(|(_, w)| w.block).filter(|&b| b != e.node.block);
            let before = witness_block.filter(|&b| b < e.node.block).map(|b| Buffer::read_recent(self.index, b, Lock::Share));
            let buf = Buffer::read_recent(self.index, e.node.block, Lock::Exclusive);
            let after = witness_block.filter(|&b| b > e.node.block).map(|b| Buffer::read_recent(self.index, b, Lock::Share));
            let Some(data) = buf.page().item(e.node.offset) else { return false };
            if NodeTuple::parse(data, self.m).version() != version {
                continue;
            }
            if let Some(((x, _), w)) = dropped {
                let wpage = before.as_ref().or(after.as_ref()).unwrap_or(&buf).page();
                let still = wpage.item(w.offset).is_some_and(|data| {
                    let t = NodeTuple::parse(data, self.m);
                    !t.is_deleted() && t.neighbors(layer).any(|n| n == x)
                });
                if !still {
                    continue;
                }
            }
            let mut wal = Wal::start(self.index, &buf, self.logging, false);
            {
                let mut page = wal.page();
                let data = page.item_mut(e.node.offset).expect("item checked under the same lock");
                NodeTupleMut::edit(data, self.m).set_neighbors(layer, &new_list);
            }
            wal.finish();
            return true;
        }
        false
    }

    /// Choose among a full list plus the new element: the heuristic's kept entries, then the
    /// pruned ones nearest first; the entry left over goes if it stays reachable without this
    /// link, else the next farthest one that does. `None`: the list stays as it is.
    #[allow(clippy::too_many_arguments)]
    fn reselect(
        &mut self,
        e_vec: &[E],
        list: &[ItemRef],
        d_new: f32,
        new: ItemRef,
        layer: usize,
        force: bool,
    ) -> Option<(Vec<ItemRef>, (ItemRef, ItemRef), ItemRef)> {
        let dims = self.dims;
        self.scratch.clear();
        // (vector ref, node ref, where its vector is: `Some(arena slot)`, `None` for scratch
        // slot `usize`); candidates point into this.
        let mut members: Vec<(ItemRef, ItemRef, Option<u32>, usize)> = Vec::with_capacity(list.len() + 1);
        let mut cands: Vec<Candidate<usize>> = Vec::with_capacity(list.len() + 1);
        for r in list {
            if let Some(&(slot, node)) = self.measured.get(&r.visited_key()) {
                let v = &self.arena[slot as usize * dims..(slot as usize + 1) * dims];
                cands.push(Candidate::new(E::distance(self.metric, e_vec, v), members.len()));
                members.push((*r, node, Some(slot), 0));
                continue;
            }
            if !self.extent.holds(*r) {
                continue;
            }
            let buf = Buffer::read_recent(self.index, r.block, Lock::Share);
            let Some(data) = buf.page().item(r.offset) else { continue };
            let t = VectorTuple::parse(data);
            if !self.extent.holds(t.node()) {
                continue;
            }
            let v = t.values::<E>(dims);
            cands.push(Candidate::new(E::distance(self.metric, e_vec, v), members.len()));
            members.push((*r, t.node(), None, self.scratch.len() / dims));
            self.scratch.extend_from_slice(v);
        }
        let new_at = members.len();
        cands.push(Candidate::new(d_new, new_at));
        members.push((new, self.new_node, None, self.scratch.len() / dims));
        self.scratch.extend_from_slice(self.new_vector);
        cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        // The heuristic's kept set, and the pruned ones (nearest first).
        let (mut kept, mut pruned): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        {
            let (scratch, arena) = (&self.scratch, self.arena);
            let vec_of = |i: usize| match members[i].2 {
                Some(slot) => &arena[slot as usize * dims..(slot as usize + 1) * dims],
                None => &scratch[members[i].3 * dims..(members[i].3 + 1) * dims],
            };
            // The usual outcome, settled without the pairwise distances: the new element is the
            // farthest candidate and the nearest one (always kept) is closer to it than `e` is,
            // so it is pruned, last in the order, and the one to go.
            if !force && cands.len() >= 2 && cands[cands.len() - 1].item == new_at {
                let first = cands[0].item;
                if E::distance(self.metric, vec_of(first), vec_of(new_at)) < d_new {
                    return None;
                }
            }
            for c in &cands {
                let closer = kept.iter().any(|&k| E::distance(self.metric, vec_of(c.item), vec_of(k)) < c.dist);
                if closer || kept.len() >= list.len() {
                    pruned.push(c.item);
                } else {
                    kept.push(c.item);
                }
            }
        }
        let order: Vec<usize> = kept.iter().chain(&pruned).copied().collect();
        // One entry must go: the last of `order`, or with `force` (when the heuristic would
        // drop the new element) any of the last few. Only one another element links to.
        let candidates: Vec<usize> = order.iter().rev().take(if force { 4 } else { 3 }).copied().collect();
        for &x in &candidates {
            if x == new_at {
                if force {
                    continue;
                }
                return None;
            }
            let rest: Vec<ItemRef> = order.iter().filter(|&&i| i != x).map(|&i| members[i].0).collect();
            if let Some(witness) = self.linked_from_elsewhere(members[x].0, members[x].1, &rest, layer) {
                return Some((rest, (members[x].0, members[x].1), witness));
            }
        }
        // A forced link with no witness to be found: the new element becomes the witness of
        // the farthest entry, linking to it itself. Nothing links to the new element on this
        // layer yet (every offer was turned down), so no element relies on the link of its
        // own that this may replace. (Under inner product this is common: the heuristic turns
        // an element down wherever a longer vector is in the list.)
        if force {
            if let Some(&x) = order.iter().rev().find(|&&i| i != new_at) {
                if self.adopt(members[x].0, layer) {
                    let rest: Vec<ItemRef> = order.iter().filter(|&&i| i != x).map(|&i| members[i].0).collect();
                    return Some((rest, (members[x].0, members[x].1), self.new_node));
                }
            }
        }
        None
    }

    /// Make the new element link to `x` on `layer`, taking the place of its farthest link
    /// when its list is full (never the first, the old entry point when the new element
    /// raised the top level). Whether it links to `x` afterwards.
    fn adopt(&mut self, x: ItemRef, layer: usize) -> bool {
        let cap = layer_capacity(self.m, layer);
        let buf = Buffer::read_recent(self.index, self.new_node.block, Lock::Exclusive);
        let Some(data) = buf.page().item(self.new_node.offset) else { return false };
        let t = NodeTuple::parse(data, self.m);
        if t.is_deleted() || t.level() < layer {
            return false;
        }
        let mut list: Vec<ItemRef> = t.neighbors(layer).collect();
        if list.contains(&x) {
            return true;
        }
        if list.len() >= cap {
            if cap < 2 {
                return false;
            }
            list.pop();
        }
        list.push(x);
        let mut wal = Wal::start(self.index, &buf, self.logging, false);
        {
            let mut page = wal.page();
            let data = page.item_mut(self.new_node.offset).expect("item checked under the same lock");
            NodeTupleMut::edit(data, self.m).set_neighbors(layer, &list);
        }
        wal.finish();
        true
    }

    /// Whether `x` stays reachable once `e` no longer links to it: some element of `via` (what
    /// `e` will link to, so reachable wherever `e` is) links to `x`; returns that witness's
    /// node ref. Looked for among `x`'s own neighbours (links are mostly mutual) that are in
    /// `via`, so a `None` can be wrong, never a witness. A weaker test — "something else links
    /// to `x`" — lets two elements that only link to each other drift off the graph together.
    fn linked_from_elsewhere(&mut self, x: ItemRef, x_node: ItemRef, via: &[ItemRef], layer: usize) -> Option<ItemRef> {
        // The new element first: it was placed near `e`, so its own list often holds `x`.
        {
            let buf = Buffer::read_recent(self.index, self.new_node.block, Lock::Share);
            if let Some(data) = buf.page().item(self.new_node.offset) {
                let t = NodeTuple::parse(data, self.m);
                if !t.is_deleted() && t.level() >= layer && t.neighbors(layer).any(|n| n == x) {
                    return Some(self.new_node);
                }
            }
        }
        let neighbours: Vec<ItemRef> = {
            let buf = Buffer::read_recent(self.index, x_node.block, Lock::Share);
            let data = buf.page().item(x_node.offset)?;
            NodeTuple::parse(data, self.m).neighbors(layer).filter(|n| *n != x && via.contains(n)).take(8).collect()
        };
        for y in neighbours {
            if !self.extent.holds(y) {
                continue;
            }
            let y_node = {
                let buf = Buffer::read_recent(self.index, y.block, Lock::Share);
                let Some(data) = buf.page().item(y.offset) else { continue };
                let t = VectorTuple::parse(data);
                if t.flags() & FLAG_DELETED != 0 {
                    continue;
                }
                t.node()
            };
            if !self.extent.holds(y_node) {
                continue;
            }
            let buf = Buffer::read_recent(self.index, y_node.block, Lock::Share);
            let Some(data) = buf.page().item(y_node.offset) else { continue };
            // The same test `link` repeats under the lock: a node tuple can be marked deleted
            // while its vector tuple is not (an insert reusing the slot, or a crash amid that).
            let t = NodeTuple::parse(data, self.m);
            if !t.is_deleted() && t.neighbors(layer).any(|n| n == x) {
                return Some(y_node);
            }
        }
        None
    }
}
