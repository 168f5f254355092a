//! Index scans: `ORDER BY col <op> $1 LIMIT k` answered by a beam search of width
//! `hnsw.ef_search`, nearest first.
//!
//! The whole search runs on the first `amgettuple`; later calls hand out the heap TIDs of the
//! results in order. Deleted elements route the walk but are never returned. The executor
//! rechecks heap visibility (MVCC), so a dead row is skipped and the next result returned.
//! A scan with no usable query (NULL, or a zero vector for cosine) has no order to follow and
//! returns every indexed row in physical order, which is what a sequential scan sorting by an
//! all-NULL/NaN key would give.

use std::cell::RefCell;

use half::f16;
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{Candidate, SearchScratch, Visited};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use super::graph::{prepare_query, DiskWalk, Elem, Node};
use super::opclass::{self, Kind};
use super::options;
use crate::storage::buffer::{Buffer, Lock};
use crate::storage::meta::{Meta, ELEM_F16};
use crate::storage::page::PAGE_DATA;
use crate::storage::tuple::{NodeTuple, KIND_NODE};

thread_local! {
    /// Visited sets kept between scans of this backend: a set is sized to the index and cleared
    /// in time proportional to what a search touched, so reusing it avoids allocating (and
    /// page-faulting) a fresh bitmap per query.
    static VISITED_POOL: RefCell<Vec<Visited>> = const { RefCell::new(Vec::new()) };
}

fn take_visited() -> Visited {
    VISITED_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

fn return_visited(mut v: Visited) {
    v.clear();
    VISITED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 4 {
            pool.push(v);
        }
    });
}

enum Mode {
    /// Not started since the last rescan.
    Pending,
    /// Ordered results of the graph search.
    Ordered { results: Vec<Candidate<Node>>, next: usize, m: usize },
    /// No order to follow: walk every page.
    Physical { block: u32, nblocks: u32, m: usize },
    Done,
}

struct ScanState {
    kind: Kind,
    mode: Mode,
    /// Heap TIDs of the current element (or page, in physical mode) still to return.
    tids: Vec<pg_sys::ItemPointerData>,
    visited: Option<Visited>,
}

impl Drop for ScanState {
    fn drop(&mut self) {
        if let Some(v) = self.visited.take() {
            return_visited(v);
        }
    }
}

fn state<'a>(scan: pg_sys::IndexScanDesc) -> &'a mut ScanState {
    // SAFETY: ambeginscan stored a ScanState in `opaque`; it lives in the scan's memory context
    // until that context is deleted, which outlives every call on the scan.
    unsafe { &mut *((*scan).opaque as *mut ScanState) }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(index: pg_sys::Relation, nkeys: i32, norderbys: i32) -> pg_sys::IndexScanDesc {
    // SAFETY: standard scan descriptor setup for an open index.
    let scan = unsafe { pg_sys::RelationGetIndexScan(index, nkeys, norderbys) };
    let state = ScanState { kind: opclass::cached(index), mode: Mode::Pending, tids: Vec::new(), visited: None };
    // Freed (and dropped) with the memory context, also when the query fails midway.
    let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
    // SAFETY: `scan` was just allocated.
    unsafe { (*scan).opaque = ptr.cast() };
    scan
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    keys: pg_sys::ScanKey,
    nkeys: i32,
    orderbys: pg_sys::ScanKey,
    norderbys: i32,
) {
    // SAFETY: the descriptor's key arrays were sized for nkeys/norderbys by RelationGetIndexScan.
    unsafe {
        if !keys.is_null() && nkeys > 0 {
            core::ptr::copy(keys, (*scan).keyData, nkeys as usize);
        }
        if !orderbys.is_null() && norderbys > 0 {
            core::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
    }
    let st = state(scan);
    st.mode = Mode::Pending;
    st.tids.clear();
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    let st = state(scan);
    // SAFETY: an open scan on an open index.
    let index = unsafe { (*scan).indexRelation };
    loop {
        if let Some(tid) = st.tids.pop() {
            // SAFETY: the executor reads these fields after we return true.
            unsafe {
                (*scan).xs_heaptid = tid;
                (*scan).xs_recheck = false;
                (*scan).xs_recheckorderby = false;
            }
            return true;
        }
        match &mut st.mode {
            Mode::Pending => st.mode = start(scan, index, st.kind, &mut st.visited),
            Mode::Ordered { results, next, m } => {
                let Some(c) = results.get(*next) else {
                    st.mode = Mode::Done;
                    continue;
                };
                *next += 1;
                if !c.item.deleted {
                    element_tids(index, c.item, *m, &mut st.tids);
                }
            }
            Mode::Physical { block, nblocks, m } => {
                if *block >= *nblocks {
                    st.mode = Mode::Done;
                    continue;
                }
                page_tids(index, *block, *m, &mut st.tids);
                *block += 1;
            }
            Mode::Done => return false,
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    let st = state(scan);
    if let Some(v) = st.visited.take() {
        return_visited(v);
    }
    st.mode = Mode::Done;
}

/// Run the search (or set up a physical walk) for the current ORDER BY value.
fn start(scan: pg_sys::IndexScanDesc, index: pg_sys::Relation, kind: Kind, visited: &mut Option<Visited>) -> Mode {
    count_index_scan(index);
    let meta = Meta::read(index);
    // SAFETY: orderByData has numberOfOrderBys keys, copied in by amrescan.
    let key = unsafe {
        if (*scan).numberOfOrderBys > 0 {
            let k = &*(*scan).orderByData;
            (k.sk_flags & pg_sys::SK_ISNULL as i32 == 0).then_some(k.sk_argument)
        } else {
            None
        }
    };
    let query = key.and_then(|d| match kind.elem {
        ELEM_F16 => prepare_query::<f16>(d, &kind, meta.dims),
        _ => prepare_query::<f32>(d, &kind, meta.dims),
    });
    let Some(query) = query else {
        // SAFETY: the index is open and locked by the executor.
        let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
        return Mode::Physical { block: 1, nblocks, m: meta.m as usize };
    };
    if !meta.has_entry() {
        return Mode::Done;
    }
    let v = visited.get_or_insert_with(take_visited);
    let results = match kind.elem {
        ELEM_F16 => search::<f16>(index, &meta, &query, options::ef_search(), v),
        _ => search::<f32>(index, &meta, &query, options::ef_search(), v),
    };
    Mode::Ordered { results, next: 0, m: meta.m as usize }
}

/// `pgstat_count_index_scan()`: the scan shows in pg_stat_user_indexes.idx_scan.
fn count_index_scan(index: pg_sys::Relation) {
    // SAFETY: the index is open; this is the macro's logic on the relation's stats fields.
    unsafe {
        if (*index).pgstat_info.is_null() && (*index).pgstat_enabled {
            pg_sys::pgstat_assoc_relation(index);
        }
        if !(*index).pgstat_info.is_null() {
            (*(*index).pgstat_info).t_counts.t_numscans += 1;
        }
    }
}

/// Greedy descent from the entry point to layer 1, then a beam search of width `ef` on
/// layer 0. Results nearest first.
pub fn search<E: Elem>(index: pg_sys::Relation, meta: &Meta, query: &[f32], ef: usize, visited: &mut Visited) -> Vec<Candidate<Node>> {
    let metric = Metric::from_u8(meta.metric).expect("metric checked when the index was built");
    let mut walk = DiskWalk::new(index, meta, |v: &[E]| E::distance_to(metric, query, v), visited, None);
    let mut cur = walk.measure(meta.entry_vector);
    let mut buf = Vec::new();
    for layer in (1..=meta.entry_level as usize).rev() {
        cur = greedy_closest(&mut walk, cur, layer, &mut buf);
    }
    let mut out = Vec::new();
    search_layer(&mut walk, &[cur], ef, 0, &mut SearchScratch::default(), &mut out);
    out
}

/// The heap TIDs of one element, reversed (they are popped).
fn element_tids(index: pg_sys::Relation, n: Node, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    let buf = Buffer::read(index, n.node.block, Lock::Share);
    let Some(data) = buf.page().item(n.node.offset) else { return };
    let t = NodeTuple::parse(data, m);
    if !t.is_deleted() {
        out.extend(t.heap_tids());
        out.reverse();
    }
}

/// Every live heap TID on one page (physical mode), reversed.
fn page_tids(index: pg_sys::Relation, block: u32, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    let buf = Buffer::read(index, block, Lock::Share);
    let page = buf.page();
    if page.is_new() || page.opaque().kind != PAGE_DATA {
        return;
    }
    for off in 1..=page.max_offset() {
        if let Some(data) = page.item(off) {
            if data.first() == Some(&KIND_NODE) {
                let t = NodeTuple::parse(data, m);
                if !t.is_deleted() {
                    out.extend(t.heap_tids());
                }
            }
        }
    }
    out.reverse();
}
