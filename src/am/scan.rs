//! Index scans: `ORDER BY col <op> $1 LIMIT k` answered by a beam search of width
//! `hnsw.ef_search`, nearest first.
//!
//! The first `amgettuple` descends from the entry point and runs the first round of a
//! [`ResumableSearch`]: the `ef_search` nearest elements (or as many as the `LIMIT` above the
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

use std::cell::RefCell;

use half::f16;
use hnsw_core::graph::search::{greedy_closest, ResumableSearch};
use hnsw_core::graph::{Candidate, Visited};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use super::filter::{Columns, Filter};
use super::graph::{prepare_query, DiskWalk, Elem, Extent, Node, Switch};
use super::mem::Setting;
use super::opclass::{self, Kind};
use super::options::{self, FilterStrategy, IterativeScan};
use crate::storage::attr::{self, ATTR_DELETED};
use crate::storage::buffer::{Buffer, Lock};
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::ItemRef;
use crate::storage::tuple::{node_tuples, NodeTuple, TidList, VectorTuple, FLAG_DELETED};
use crate::types::ops::Aligned;

thread_local! {
    /// Visited sets kept between scans of this backend: a set is sized to the index and cleared
    /// in time proportional to what a search touched, so reusing it avoids allocating (and
    /// page-faulting) a fresh bitmap per query.
    static VISITED_POOL: RefCell<Vec<Visited>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn take_visited() -> Visited {
    VISITED_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Drop pooled visited sets beyond `keep` bytes in all (at transaction end, see
/// [`super::mem::release_caches`]): a set is sized to the largest index it searched, and a
/// backend that once scanned a huge index should not hold that memory until it exits.
pub(super) fn trim_visited_pool(keep: usize) -> usize {
    VISITED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let mut kept = 0;
        pool.retain(|v| {
            let fits = kept + v.bytes() <= keep;
            kept += if fits { v.bytes() } else { 0 };
            fits
        });
        kept
    })
}

pub(super) fn return_visited(mut v: Visited) {
    // A scan whose memory is freed by an abort returns its set after the transaction-end trim:
    // keep it only while it would be trimmed later.
    // SAFETY: reads the backend's transaction state.
    if !unsafe { pg_sys::IsTransactionState() } && v.bytes() > super::mem::CACHE_KEEP / 2 {
        return;
    }
    v.clear();
    VISITED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 4 {
            pool.push(v);
        }
    });
}

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
    fn into_visited(self: Box<Self>) -> Option<Visited>;
}

struct GraphSource<E: Elem, F: Fn(&[E]) -> f32> {
    walk: DiskWalk<E, F>,
    search: ResumableSearch<Node>,
}

impl<E: Elem, F: Fn(&[E]) -> f32> Source for GraphSource<E, F> {
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>) {
        if !self.search.is_exhausted() {
            self.search.next_round(&mut self.walk, 0, width, out);
        }
    }

    fn switched(&mut self) -> Option<Filter> {
        if self.walk.switched() {
            self.walk.take_filter()
        } else {
            // A switch in a later round would stop the walk with rows still to find, and an
            // exact scan started then would hand out again the rows already returned.
            self.walk.stay_on_graph();
            None
        }
    }

    fn into_visited(self: Box<Self>) -> Option<Visited> {
        Some(self.walk.into_visited())
    }
}

/// One pass of an exact scan, for the index's element type (see [`exact_pass`]).
type ExactPass = fn(pg_sys::Relation, &Meta, &mut Filter, Option<&[f32]>, Option<Key>, usize) -> (Vec<Candidate<Node>>, bool);

/// The matching elements of an exact scan, measured, handed out `ef` at a time nearest first.
/// Its memory is bounded by `work_mem`: a pass over the index keeps only the nearest matches
/// that fit (all of them, usually); when it had to leave some out, another pass starts after
/// the last one handed out once those are used up.
struct ExactSource {
    index: pg_sys::Relation,
    meta: Meta,
    filter: Filter,
    query: Option<Vec<f32>>,
    pass: ExactPass,
    /// The current pass's matches, nearest first; `kept[next..]` are still to hand out.
    kept: Vec<Candidate<Node>>,
    next: usize,
    /// Whether the last pass kept every match left.
    complete: bool,
    /// Matches a pass may keep.
    cap: usize,
}

impl ExactSource {
    /// `width`: the widest round it will be asked for (a pass keeps at least that many).
    fn new(index: pg_sys::Relation, meta: Meta, elem: ElemType, filter: Filter, query: Option<&[f32]>, width: usize) -> ExactSource {
        let pass: ExactPass = match elem {
            ElemType::F16 => exact_pass::<f16>,
            ElemType::F32 => exact_pass::<f32>,
        };
        let cap = (Setting::WorkMem.bytes() / 2 / core::mem::size_of::<Keyed>()).max(width).max(1);
        let (query, kept, next, complete) = (query.map(<[f32]>::to_vec), Vec::new(), 0, false);
        let mut s = ExactSource { index, meta, filter, query, pass, kept, next, complete, cap };
        s.run_pass(None);
        s
    }

    fn run_pass(&mut self, after: Option<Key>) {
        let (kept, complete) = (self.pass)(self.index, &self.meta, &mut self.filter, self.query.as_deref(), after, self.cap);
        (self.kept, self.next, self.complete) = (kept, 0, complete);
    }
}

impl Source for ExactSource {
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>) {
        if self.next == self.kept.len() && !self.complete {
            let Some(last) = self.kept.last() else { return };
            let after = Keyed(*last).key();
            self.run_pass(Some(after));
        }
        let k = width.max(1).min(self.kept.len() - self.next);
        out.extend_from_slice(&self.kept[self.next..self.next + k]);
        self.next += k;
    }

    fn into_visited(self: Box<Self>) -> Option<Visited> {
        None
    }
}

enum Mode {
    /// Not started since the last rescan.
    Pending,
    /// Results of the graph search: `results[next..]` are still to hand out; `returned` counts
    /// heap TIDs handed out, for hnsw.max_scan_tuples; `last` is the distance of the last
    /// element handed out (strict_order skips nearer ones found by later rounds); later rounds
    /// are `ef` wide.
    Ordered {
        source: Box<dyn Source>,
        results: Vec<Candidate<Node>>,
        next: usize,
        m: usize,
        ef: usize,
        returned: usize,
        last: f32,
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
            Mode::Ordered { source, results, next, m, ef, returned, last } => {
                if *next == results.len() {
                    if options::iterative_scan() == IterativeScan::Off || *returned >= options::max_scan_tuples() {
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
    });
    let query = query.map(|q| Aligned::new(&q));
    let m = meta.m as usize;
    let ef = options::ef_search();
    let width = first_round_width(scan, ef, m);
    let ordered = |source: Box<dyn Source>| {
        let mut source = source;
        let mut results = Vec::new();
        source.next_round(width, &mut results);
        Mode::Ordered { source, results, next: 0, m, ef, returned: 0, last: f32::NEG_INFINITY }
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
    };
    let mut results = Vec::new();
    source.next_round(width, &mut results);
    if let Some(filter) = source.switched() {
        if let Some(v) = source.into_visited() {
            return_visited(v);
        }
        return exact(filter, Some(query));
    }
    Mode::Ordered { source, results, next: 0, m, ef, returned: 0, last: f32::NEG_INFINITY }
}

/// Width of a scan's first round: `ef_search`, or the rows the `LIMIT` above the scan wants
/// (see [`limit`](super::limit)) if that is more, so that `LIMIT 200` at `ef_search = 40` finds
/// what `ef_search = 200` finds instead of relying on later rounds (whose nearer finds
/// strict_order has to drop). `off` keeps pgvector's meaning: `ef_search` rows at most.
/// Bounded by hnsw.max_scan_tuples and by work_mem: each unit of width keeps about 2m measured
/// neighbours on the search's two heaps.
fn first_round_width(scan: pg_sys::IndexScanDesc, ef: usize, m: usize) -> usize {
    if options::iterative_scan() == IterativeScan::Off {
        return ef;
    }
    let Some(wanted) = super::limit::rows_wanted(scan) else { return ef };
    // SAFETY: work_mem is a plain GUC variable of this backend.
    let work_mem = unsafe { pg_sys::work_mem }.max(64) as usize * 1024;
    let per_width = 2 * (2 * m.max(1)) * core::mem::size_of::<Candidate<Node>>();
    // The README and the differential tester state this bound as work_mem / (112 * m).
    const _: () = assert!(4 * core::mem::size_of::<Candidate<Node>>() == 112);
    let cap = options::max_scan_tuples().min(work_mem / per_width);
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

/// The order of an exact scan's results: distance, then vector ref (physical order, which is
/// also the whole order without a query).
type Key = (f32, u32, u16);

/// A candidate ordered by its [`Key`], for the bounded heap of [`exact_pass`].
#[derive(Clone, Copy)]
struct Keyed(Candidate<Node>);

impl Keyed {
    fn key(&self) -> Key {
        (self.0.dist, self.0.item.vector.block, self.0.item.vector.offset)
    }
}

fn key_cmp(a: &Key, b: &Key) -> core::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        key_cmp(&self.key(), &other.key())
    }
}

/// What one exact pass holds: vector refs of records that passed, waiting to be measured, and
/// the nearest measured matches so far (a max-heap of at most `cap`).
struct PassState<'a> {
    filter: &'a mut Filter,
    refs: Vec<ItemRef>,
    heap: std::collections::BinaryHeap<Keyed>,
    cap: usize,
    /// A match was left out for want of room.
    dropped: bool,
}

/// One pass of an exact filtered scan: every element whose attribute record may pass the
/// filter, checked on its stored values and measured (distance 0 without a query). Returns the
/// nearest `cap` matches after `after` (nearest first) and whether that is all of them. Record
/// refs are measured in batches of at most `cap` (sorted by block, for locality), so the pass
/// holds O(`cap`) memory whatever the index's size.
fn exact_pass<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    filter: &mut Filter,
    query: Option<&[f32]>,
    after: Option<Key>,
    cap: usize,
) -> (Vec<Candidate<Node>>, bool) {
    let metric = meta.metric;
    let (dims, size) = (meta.dims as usize, meta.attr_record as usize);
    let single = filter.single_int_eq();
    let mut st = PassState { filter, refs: Vec::new(), heap: std::collections::BinaryHeap::new(), cap, dropped: false };
    let mut extent = Extent::new(index);
    let mut measure = |st: &mut PassState<'_>| {
        st.refs.sort_unstable_by_key(|r| (r.block, r.offset));
        st.refs.dedup();
        for group in st.refs.chunk_by(|a, b| a.block == b.block) {
            if !extent.holds(group[0]) {
                continue;
            }
            let buf = Buffer::read_recent(index, group[0].block, Lock::Share);
            let page = buf.page();
            for r in group {
                let Some(item) = page.item(r.offset) else { continue };
                let t = VectorTuple::parse(item);
                if t.flags() & FLAG_DELETED != 0 || !extent.holds(t.node()) || !st.filter.payload_matches(t.payload::<E>(dims)) {
                    continue;
                }
                let d = match query {
                    Some(q) => E::distance_to(metric, q, t.values::<E>(dims)),
                    None => 0.0,
                };
                let c = Keyed(Candidate::new(d, Node { vector: *r, node: t.node(), deleted: false, matches: true, slot: u32::MAX }));
                if after.is_some_and(|a| key_cmp(&c.key(), &a).is_le()) {
                    continue;
                }
                if st.heap.len() == st.cap {
                    st.dropped = true;
                    if st.heap.peek().is_some_and(|top| c < *top) {
                        st.heap.pop();
                    } else {
                        continue;
                    }
                }
                st.heap.push(c);
            }
            drop(buf);
            check_for_interrupts!();
        }
        st.refs.clear();
    };
    if size > 0 {
        attr::for_each_page_pausing(
            index,
            meta.attr_first,
            &mut st,
            |st, _, page| {
                for rec in page.attr_records(size) {
                    let pass = match single {
                        Some((col, want)) => rec.nulls() & (1 << col) == 0 && rec.slot(col) == want,
                        None => st.filter.record_may_match(rec.nulls(), rec.slots()),
                    };
                    if rec.flags() & ATTR_DELETED == 0 && pass && rec.vector().is_valid() {
                        st.refs.push(rec.vector());
                    }
                }
            },
            |st| {
                if st.refs.len() >= st.cap {
                    measure(st);
                }
            },
        );
        measure(&mut st);
    }
    let mut out: Vec<Candidate<Node>> = st.heap.into_sorted_vec().into_iter().map(|k| k.0).collect();
    // A record listed twice in different batches was measured twice.
    out.dedup_by_key(|c| c.item.vector);
    (out, !st.dropped)
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

/// Greedy descent from the entry point to layer 1, then a resumable beam search on layer 0
/// from where it landed and from the entry point (each round's width is chosen by the caller).
fn start_search<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    query: &[f32],
    filter: Option<Filter>,
    switch: Option<Switch>,
) -> Box<dyn Source> {
    let metric = meta.metric;
    let query = Aligned::new(query);
    let dist = move |v: &[E]| E::distance_to(metric, query.as_slice(), v);
    let mut walk = DiskWalk::new(index, meta, dist, take_visited(), false);
    if let Some(f) = filter {
        walk = walk.with_filter(f, switch);
    }
    let start = walk.measure(meta.entry_vector);
    let mut cur = start;
    let mut buf = Vec::new();
    for layer in (1..=meta.entry_level as usize).rev() {
        cur = greedy_closest(&mut walk, cur, layer, &mut buf);
    }
    // Layer 0 is seeded with the entry point as well (already measured): inserts, builds and
    // VACUUM keep every element reachable from it by layer-0 links, not from wherever the
    // descent lands, so only with it does a search wide enough return every row.
    let seeds = if cur.item.vector == start.item.vector { vec![cur] } else { vec![cur, start] };
    let search = ResumableSearch::new(&mut walk, &seeds);
    Box::new(GraphSource { walk, search })
}

/// The heap TIDs of one element (inline, then its TID lists), reversed: they are popped.
fn element_tids(index: pg_sys::Relation, n: Node, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    // Walks and exact scans check node refs against the index's extent when they measure.
    if !n.node.is_valid() {
        return;
    }
    let overflow = {
        let buf = Buffer::read(index, n.node.block, Lock::Share);
        let Some(data) = buf.page().item(n.node.offset) else { return };
        let t = NodeTuple::parse(data, m);
        if t.is_deleted() {
            return;
        }
        out.extend(t.heap_tids());
        t.overflow()
    };
    overflow_tids(index, overflow, out);
    out.reverse();
}

/// Append the TIDs of a chain of TID-list tuples.
fn overflow_tids(index: pg_sys::Relation, mut r: ItemRef, out: &mut Vec<pg_sys::ItemPointerData>) {
    if !r.is_valid() {
        return;
    }
    let mut extent = Extent::new(index);
    while extent.holds(r) {
        let buf = Buffer::read(index, r.block, Lock::Share);
        let Some(data) = buf.page().item(r.offset) else { return };
        let list = TidList::parse(data);
        out.extend(list.tids());
        r = list.next();
    }
}

/// Every live heap TID of the elements whose node tuples are on one page (physical mode),
/// reversed.
fn page_tids(index: pg_sys::Relation, block: u32, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    let mut chains = Vec::new();
    {
        let buf = Buffer::read(index, block, Lock::Share);
        for (_, t) in node_tuples(buf.page(), m) {
            if !t.is_deleted() {
                out.extend(t.heap_tids());
                chains.push(t.overflow());
            }
        }
    }
    for r in chains {
        overflow_tids(index, r, out);
    }
    out.reverse();
}
