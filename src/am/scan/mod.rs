//! Index scans: `ORDER BY col <op> $1 LIMIT k` answered by a beam search of width
//! `hnsw.ef_search`, nearest first.
//!
//! The first `amgettuple` descends from the entry point and runs the first round of a
//! [`ResumableSearch`](hnsw_core::graph::search::ResumableSearch): the `ef_search` nearest elements (or as many as the `LIMIT` above the
//! scan wants, if more: see [`first_round_width`]), handed out in order. If the executor asks
//! for more — rows it rejected: dead to its snapshot, or failing a condition the index does not
//! see — the walk goes on outward, `ef_search` more at a time, up to `hnsw.max_scan_tuples`
//! rows. `hnsw.iterative_scan` chooses what later rounds do, with pgvector 0.8's meanings:
//! `strict_order` (default) skips elements nearer than the last one handed out, so rows come
//! out in distance order; `relaxed_order` returns them, slightly out of order; `off` stops after
//! the first round. Deleted elements route the walk but never count as results, so they cannot
//! crowd out live ones.
//! A scan with no usable query (NULL, or a zero vector for cosine) has no order to follow and
//! returns every indexed row in physical order, which is what a sequential scan sorting by an
//! all-NULL/NaN key would give.
//!
//! Files by job: `search` (the graph walk), `exact` (an exact scan of the attribute
//! records, for selective filters), `tids` (heap TIDs of what either found), `visited` (the
//! backend's pool of visited sets, shared with inserts).

mod exact;
mod search;
mod tids;
mod visited;

use half::f16;
use hnsw_core::graph::{Candidate, Visited};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use super::filter::{Columns, Filter};
use super::graph::{prepare_query, Node, Switch};
use super::opclass::{self, Kind};
use super::options::{self, FilterStrategy, IterativeScan};
use crate::storage::meta::{ElemType, Meta};
use crate::types::ops::Aligned;
use exact::ExactSource;
use search::start_search;
use tids::{element_tids, page_tids};
pub(super) use visited::{return_visited, take_visited, trim_visited_pool};

/// The graph search of one scan, whatever the element type.
trait Source {
    /// Append the next round of up to `width` results (nearest first); nothing when the walk
    /// is done.
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>);
    /// The filter back, if the walk stopped to give way to an exact scan. Asked once, after
    /// the first round: a walk that did not switch then stays on the graph.
    fn switched(&mut self) -> Option<Filter> {
        None
    }
    /// Heap bytes the walk's state holds, for hnsw.scan_mem_multiplier.
    fn bytes(&self) -> usize {
        0
    }
    fn into_visited(self: Box<Self>) -> Option<Visited>;
}

enum Mode {
    /// Not started since the last rescan.
    Pending,
    /// Results of the graph search: `results[next..]` are still to hand out; `returned` counts
    /// heap TIDs handed out, for hnsw.max_scan_tuples; `last` is the distance of the last
    /// element handed out (strict_order skips nearer ones found by later rounds); later rounds
    /// are `ef` wide. `wanted`: the rows the query's LIMIT + OFFSET asks for (0 if unknown),
    /// which the memory bound never cuts short.
    Ordered {
        source: Box<dyn Source>,
        results: Vec<Candidate<Node>>,
        next: usize,
        m: usize,
        ef: usize,
        returned: usize,
        last: f32,
        wanted: usize,
    },
    /// No order to follow: walk every page.
    Physical {
        block: u32,
        nblocks: u32,
        m: usize,
    },
    Done,
}

struct ScanState {
    kind: Kind,
    columns: Columns,
    mode: Mode,
    /// Heap TIDs of the current element (or page, in physical mode) still to return.
    tids: Vec<pg_sys::ItemPointerData>,
}

impl ScanState {
    /// End the current search, keeping its visited set for the next one.
    fn finish(&mut self) {
        if let Mode::Ordered { source, .. } = core::mem::replace(&mut self.mode, Mode::Done) {
            if let Some(v) = source.into_visited() {
                return_visited(v);
            }
        }
    }
}

impl Drop for ScanState {
    fn drop(&mut self) {
        self.finish();
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
    let state = ScanState { kind: opclass::cached(index), columns: opclass::columns(index), mode: Mode::Pending, tids: Vec::new() };
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
    st.finish();
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
            Mode::Pending => st.mode = start(scan, index, st.kind, &st.columns),
            Mode::Ordered { source, results, next, m, ef, returned, last, wanted } => {
                if *next == results.len() {
                    // pgvector's two bounds on iterative scans: rows returned, and memory
                    // (work_mem x hnsw.scan_mem_multiplier). The memory bound does not cut
                    // short the rows the LIMIT asks for (the walk holds a few candidates per
                    // row returned; pgvector's visited hash makes it stop later than ours would).
                    if options::iterative_scan() == IterativeScan::Off
                        || *returned >= options::max_scan_tuples()
                        || (source.bytes() > options::scan_mem_limit() && *returned >= *wanted)
                    {
                        st.finish();
                        continue;
                    }
                    results.clear();
                    *next = 0;
                    source.next_round(*ef, results);
                    if results.is_empty() {
                        st.finish();
                    }
                    continue;
                }
                let c = results[*next];
                *next += 1;
                // Each round is sorted, but a later round can find elements nearer than ones an
                // earlier round handed out: strict_order drops them, as pgvector does.
                if c.item.deleted || !c.item.matches || (c.dist < *last && options::iterative_scan() == IterativeScan::StrictOrder) {
                    continue;
                }
                element_tids(index, c.item, *m, &mut st.tids);
                *returned += st.tids.len();
                if !st.tids.is_empty() {
                    *last = last.max(c.dist);
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
    state(scan).finish();
}

/// Run the search (or set up a physical walk) for the current ORDER BY value and quals.
fn start(scan: pg_sys::IndexScanDesc, index: pg_sys::Relation, kind: Kind, columns: &Columns) -> Mode {
    count_index_scan(index);
    let meta = Meta::read(index);
    // SAFETY: keyData has numberOfKeys keys on this index's columns, copied in by amrescan.
    let filter = unsafe {
        let n = (*scan).numberOfKeys.max(0) as usize;
        (n > 0).then(|| Filter::compile(columns, (*scan).keyData, n))
    };
    if filter.as_ref().is_some_and(|f| f.impossible) {
        return Mode::Done;
    }
    // SAFETY: orderByData has numberOfOrderBys keys, copied in by amrescan.
    let key = unsafe {
        if (*scan).numberOfOrderBys > 0 {
            let k = &*(*scan).orderByData;
            (k.sk_flags & pg_sys::SK_ISNULL as i32 == 0).then_some(k.sk_argument)
        } else {
            None
        }
    };
    // Aligned, so that distances are summed as the SQL operators sum them (see `Aligned`).
    let query = key.and_then(|d| match kind.elem {
        ElemType::F16 => prepare_query::<f16>(d, &kind, meta.dims),
        ElemType::F32 => prepare_query::<f32>(d, &kind, meta.dims),
        ElemType::Bit => prepare_query::<u8>(d, &kind, meta.dims),
        ElemType::Sparse => prepare_query::<hnsw_core::sparse::SparseWord>(d, &kind, meta.dims),
    });
    let query = query.map(|q| Aligned::new(&q));
    let m = meta.m as usize;
    let ef = options::ef_search();
    let width = first_round_width(scan, ef, m);
    let wanted = super::limit::rows_wanted(scan).unwrap_or(0).min(usize::MAX as u64) as usize;
    let ordered = |source: Box<dyn Source>| {
        let mut source = source;
        let mut results = Vec::new();
        source.next_round(width, &mut results);
        Mode::Ordered { source, results, next: 0, m, ef, returned: 0, last: f32::NEG_INFINITY, wanted }
    };
    let exact = |filter: Filter, query: Option<&[f32]>| ordered(Box::new(ExactSource::new(index, meta, kind.elem, filter, query, width)));
    let Some(query) = query.as_ref().map(Aligned::as_slice) else {
        if let Some(filter) = filter {
            return exact(filter, None);
        }
        // SAFETY: the index is open and locked by the executor.
        let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
        return Mode::Physical { block: 1, nblocks, m };
    };
    let strategy = options::filter_strategy();
    if strategy == FilterStrategy::Exact {
        if let Some(filter) = filter {
            // Reads the attribute records, not the graph: it needs no entry point.
            return exact(filter, Some(query));
        }
    }
    if !meta.has_entry() {
        return Mode::Done;
    }
    let switch = match strategy {
        FilterStrategy::Exact => None,
        FilterStrategy::Graph => None,
        FilterStrategy::Auto => Some(Switch::new(width, index_elements(index), RECORDS_PER_MEASURE, MEASURES_PER_RESULT)),
    };
    let mut source: Box<dyn Source> = match kind.elem {
        ElemType::F16 => start_search::<f16>(index, &meta, query, filter, switch),
        ElemType::F32 => start_search::<f32>(index, &meta, query, filter, switch),
        ElemType::Bit => start_search::<u8>(index, &meta, query, filter, switch),
        ElemType::Sparse => start_search::<hnsw_core::sparse::SparseWord>(index, &meta, query, filter, switch),
    };
    let mut results = Vec::new();
    source.next_round(width, &mut results);
    if let Some(filter) = source.switched() {
        if let Some(v) = source.into_visited() {
            return_visited(v);
        }
        return exact(filter, Some(query));
    }
    Mode::Ordered { source, results, next: 0, m, ef, returned: 0, last: f32::NEG_INFINITY, wanted }
}

/// Width of a scan's first round: `ef_search`, or the rows the `LIMIT` above the scan wants
/// (see [`limit`](super::limit)) if that is more, so that `LIMIT 200` at `ef_search = 40` finds
/// what `ef_search = 200` finds instead of relying on later rounds (whose nearer finds
/// strict_order has to drop). `off` keeps pgvector's meaning: `ef_search` rows at most.
/// Bounded by hnsw.max_scan_tuples and by work_mem × hnsw.scan_mem_multiplier: each unit of width keeps about 2m measured
/// neighbours on the search's two heaps.
fn first_round_width(scan: pg_sys::IndexScanDesc, ef: usize, m: usize) -> usize {
    if options::iterative_scan() == IterativeScan::Off {
        return ef;
    }
    let Some(wanted) = super::limit::rows_wanted(scan) else { return ef };
    let per_width = 2 * (2 * m.max(1)) * core::mem::size_of::<Candidate<Node>>();
    // The README and the differential tester state this bound as work_mem / (112 * m) (times
    // hnsw.scan_mem_multiplier, 1 by default).
    const _: () = assert!(4 * core::mem::size_of::<Candidate<Node>>() == 112);
    let cap = options::max_scan_tuples().min(options::scan_mem_limit() / per_width);
    (wanted.min(cap as u64) as usize).max(ef)
}

/// The exchange rates of the auto filter strategy (see [`Switch`]), measured on MiniLM-100k
/// (384-d) on 2 cores: an exact scan checks about 100 attribute records in the time of one
/// vector measurement, and a filtered walk measures about 10/s elements per result it finds
/// when a share s of the elements match (about 120 per result at s = 10%).
const RECORDS_PER_MEASURE: f64 = 100.0;
const MEASURES_PER_RESULT: f64 = 10.0;

/// Elements in the index, as VACUUM or the build last counted them (or guessed from its size).
fn index_elements(index: pg_sys::Relation) -> f64 {
    // SAFETY: an open index; rd_rel is its pg_class row.
    let tuples = unsafe { (*(*index).rd_rel).reltuples } as f64;
    if tuples > 0.0 {
        return tuples;
    }
    // SAFETY: as above.
    let blocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    blocks as f64 * 4.0
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
