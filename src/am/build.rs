//! Index builds (`ambuild`, `ambuildempty`).
//!
//! The backend's thread reads the heap into an in-memory graph ([`hnsw_core::graph::Graph`]),
//! links it on a rayon pool of `max_parallel_maintenance_workers + 1` threads (bounded by the
//! cores) while it checks for interrupts and reports progress, then writes all pages in one
//! sequential pass and WAL-logs them with `log_newpage_range`. The pool threads touch only Rust
//! memory: no palloc, elog, buffer or interrupt call happens off the backend's thread.
//!
//! When the graph would outgrow `maintenance_work_mem`, what has been read so far is linked and
//! written, a NOTICE says so, and the remaining rows go through the on-disk insert path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use half::f16;
use hnsw_core::graph::{Graph, Params};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::filter::Columns;
use super::graph::{prepare_stored, Elem};
use super::insert::{check_row_size, insert_vector};
use super::mem::TempContext;
use super::opclass::{self, Kind};
use super::options;
use crate::storage::attr::{encode_record, record_ref, records_per_page, PAGE_ATTR};
use crate::storage::buffer::{relation_needs_wal, Buffer, Logging, Wal};
use crate::storage::meta::{ElemType, Meta, FORMAT_VERSION};
use crate::storage::page::{page_capacity, ItemRef, ITEM_ID_SIZE, MAX_ITEMS, PAGE_DATA};
use crate::storage::tuple::{
    encode_tid_list, encode_vector, from_tid, node_tuple_size, tid_list_size, vector_tuple_size, NodeTupleMut, HEAP_TIDS, TID_LIST_CAPACITY,
};
use crate::types::raise;

/// Build phases shown in pg_stat_progress_create_index.
pub const PHASE_LOAD: i64 = 2;
pub const PHASE_LINK: i64 = 3;
pub const PHASE_WRITE: i64 = 4;
/// Highest level an element may get (a node tuple of that level must fit a page; see
/// [`max_level`]). With m = 2, reaching 32 takes 2^32 draws.
const LEVEL_CAP: usize = 32;

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut core::ffi::c_char {
    let name: &'static core::ffi::CStr = match phase {
        1 => c"initializing",
        PHASE_LOAD => c"loading tuples",
        PHASE_LINK => c"building graph",
        PHASE_WRITE => c"writing index pages",
        _ => return core::ptr::null_mut(),
    };
    name.as_ptr().cast_mut()
}

fn progress(param: u32, value: i64) {
    // SAFETY: progress reporting on the backend's own thread; a no-op outside CREATE INDEX.
    unsafe { pg_sys::pgstat_progress_update_param(param as i32, value) };
}

/// The highest level whose node tuple still fits a page, capped at [`LEVEL_CAP`].
pub fn max_level(m: usize) -> usize {
    (0..=LEVEL_CAP).take_while(|&l| node_tuple_size(m, l) + 4 <= page_capacity()).last().unwrap_or(0)
}

fn base_meta(kind: &Kind, columns: &Columns, m: usize, efc: usize, dims: u32) -> Meta {
    Meta {
        version: FORMAT_VERSION,
        dims,
        m: m as u16,
        ef_construction: efc as u16,
        metric: kind.metric,
        elem: kind.elem,
        max_level: max_level(m) as u8,
        entry_vector: ItemRef::INVALID,
        entry_node: ItemRef::INVALID,
        entry_level: 0,
        insert_page: 0,
        filters: columns.len() as u8,
        attr_record: if columns.is_empty() { 0 } else { columns.record_size() as u16 },
        attr_first: 0,
        attr_last: 0,
    }
}

struct BuildState<E: Elem> {
    index: pg_sys::Relation,
    kind: Kind,
    columns: Columns,
    /// Filter values of each node: payloads back to back (node i's from `payload_at[i]` to
    /// `payload_at[i + 1]`), condensed slots (`columns.len()` per node) and NULL bitmaps.
    payloads: Vec<u8>,
    payload_at: Vec<u32>,
    slots: Vec<u64>,
    nulls: Vec<u8>,
    m: usize,
    efc: usize,
    dims: u32,
    graph: Option<Graph<E>>,
    /// The first heap TID of each node, and the others of nodes whose vector several rows share.
    tids: Vec<ItemRef>,
    more_tids: HashMap<u32, Vec<ItemRef>>,
    /// Node of each distinct vector seen, by content hash (duplicates join it).
    by_hash: HashMap<u64, u32>,
    mem_limit: usize,
    /// The graph was written; remaining rows are inserted on disk.
    on_disk: bool,
    indexed: f64,
    threads: usize,
    /// Reset after every row: the detoasted vector and filter values (see [`TempContext`]).
    row_cx: TempContext,
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let kind = opclass::resolve(index);
    let (m, efc) = options::index_options(index);
    if let Some(d) = kind.typmod_dims {
        kind.check_dims(d as usize);
    }
    let (heap_tuples, index_tuples) = match kind.elem {
        ElemType::F16 => build::<f16>(heap, index, index_info, kind, m, efc),
        ElemType::F32 => build::<f32>(heap, index, index_info, kind, m, efc),
    };
    if relation_needs_wal(index) {
        // SAFETY: the index is ours, exclusively, for the whole build.
        unsafe {
            let nblocks = pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM);
            pg_sys::log_newpage_range(index, pg_sys::ForkNumber::MAIN_FORKNUM, 0, nblocks, true);
        }
    }
    // SAFETY: palloc0 of the result struct Postgres expects back.
    unsafe {
        let result = pg_sys::palloc0(core::mem::size_of::<pg_sys::IndexBuildResult>()).cast::<pg_sys::IndexBuildResult>();
        (*result).heap_tuples = heap_tuples;
        (*result).index_tuples = index_tuples;
        result
    }
}

fn build<E: Elem>(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
    kind: Kind,
    m: usize,
    efc: usize,
) -> (f64, f64) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // SAFETY: plain reads of GUC variables on the backend's thread.
    let (workers, mwm_kb) = unsafe { (pg_sys::max_parallel_maintenance_workers, pg_sys::maintenance_work_mem) };
    let columns = Columns::of(index);
    let mut state = BuildState::<E> {
        index,
        kind,
        columns,
        payloads: Vec::new(),
        payload_at: vec![0],
        slots: Vec::new(),
        nulls: Vec::new(),
        m,
        efc,
        dims: kind.typmod_dims.unwrap_or(0),
        graph: None,
        tids: Vec::new(),
        more_tids: HashMap::new(),
        by_hash: HashMap::new(),
        mem_limit: mwm_kb as usize * 1024,
        on_disk: false,
        indexed: 0.0,
        threads: (workers.max(0) as usize + 1).min(cores).max(1),
        row_cx: TempContext::new(c"hnsw build row"),
    };
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_LOAD);
    // SAFETY: the standard heap scan for index builds; the callback gets `state` back.
    let reltuples = unsafe {
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(build_callback::<E>),
            (&mut state as *mut BuildState<E>).cast(),
            core::ptr::null_mut(),
        )
    };
    if !state.on_disk {
        flush(&mut state);
    }
    (reltuples, state.indexed)
}

#[pg_guard]
unsafe extern "C-unwind" fn build_callback<E: Elem>(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut core::ffi::c_void,
) {
    // SAFETY: `state` is the BuildState passed to table_index_build_scan; values/isnull have
    // one entry per key column.
    let (st, datum, null, tid) = unsafe { (&mut *(state as *mut BuildState<E>), *values, *isnull, from_tid(&*tid)) };
    if null {
        return;
    }
    // Detoasting (a vector of more than ~500 dimensions is stored out of line) pallocs a copy
    // of the row in the current context, which lives as long as the build: read the row in a
    // context of its own, reset after it; what is kept is copied into Rust memory.
    let row_cx = &st.row_cx;
    let (kind, dims, columns) = (&st.kind, st.dims, &st.columns);
    // SAFETY: as above, an entry per key column.
    let row = row_cx.run(|| prepare_stored::<E>(datum, kind, dims).map(|v| (v, unsafe { columns.encode_row(values, isnull) })));
    let Some((v, attrs)) = row else { return };
    check_row_size::<E>(v.len(), attrs.payload.len());
    st.indexed += 1.0;
    if st.on_disk {
        st.row_cx.run(|| insert_vector(st.index, &v, &attrs, tid, Logging::Build));
        return;
    }
    if st.dims == 0 {
        st.dims = v.len() as u32;
    }
    let graph = st.graph.get_or_insert_with(|| {
        let params = Params { m: st.m, ef_construction: st.efc, metric: st.kind.metric, max_level: max_level(st.m), seed: 0x5EED };
        Graph::new(v.len(), params)
    });
    // A row whose vector (and filter values) a node already has joins that node (see
    // insert.rs for why).
    let hash = hash_vector(&v) ^ hnsw_core::graph::build::splitmix64(super::filter::hash_bytes(&attrs.payload));
    if let Some(&id) = st.by_hash.get(&hash) {
        let payload = &st.payloads[st.payload_at[id as usize] as usize..st.payload_at[id as usize + 1] as usize];
        if graph.vector(id) == v.as_slice() && payload == attrs.payload.as_slice() {
            st.more_tids.entry(id).or_default().push(tid);
            return;
        }
    }
    let id = graph.push(&v);
    st.by_hash.insert(hash, id);
    st.tids.push(tid);
    st.payloads.extend_from_slice(&attrs.payload);
    st.payload_at.push(st.payloads.len() as u32);
    st.slots.extend_from_slice(&attrs.slots);
    st.nulls.push(attrs.nulls);
    let filter_bytes = st.payloads.len() + 8 * st.slots.len() + 5 * st.nulls.len();
    if graph.len() * Graph::<E>::bytes_per_node(v.len(), st.m) + filter_bytes > st.mem_limit {
        ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("hnsw graph no longer fits into maintenance_work_mem after {} tuples", graph.len()),
            "Building will take significantly more time. Increase maintenance_work_mem to speed up builds."
        );
        flush(st);
    }
}

/// Link the graph read so far and write it out; afterwards rows are inserted on disk.
fn flush<E: Elem>(st: &mut BuildState<E>) {
    let meta = base_meta(&st.kind, &st.columns, st.m, st.efc, st.dims);
    match st.graph.take() {
        None => write_empty(st.index, &meta),
        Some(graph) => {
            let t = std::time::Instant::now();
            link(&graph, st.threads);
            let linked = t.elapsed();
            let filters = Filters { payloads: &st.payloads, payload_at: &st.payload_at, slots: &st.slots, nulls: &st.nulls };
            write_graph(st.index, &graph, &st.tids, &st.more_tids, &filters, meta);
            debug1!(
                "hnsw build: {} elements linked on {} threads in {:.2?}, pages written in {:.2?}",
                graph.len(),
                st.threads,
                linked,
                t.elapsed() - linked
            );
        }
    }
    st.tids = Vec::new();
    st.payloads = Vec::new();
    st.payload_at = Vec::new();
    st.slots = Vec::new();
    st.nulls = Vec::new();
    st.more_tids = HashMap::new();
    st.by_hash = HashMap::new();
    st.on_disk = true;
}

/// Sets the flag when dropped: stops the pool if the backend's thread unwinds (an ERROR from
/// CHECK_FOR_INTERRUPTS) while the pool is still working.
struct CancelOnDrop<'a>(&'a AtomicBool);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Blocks every signal on the calling thread until dropped, so that the threads it starts
/// meanwhile inherit a full mask. Postgres' handlers (SIGINT for cancel, SIGALRM for
/// statement_timeout, SIGUSR1 for latches and barriers, SIGTERM...) set backend-local flags
/// and latches and must run on the backend's own thread; the kernel delivers a signal sent to
/// the process to any thread that does not block it. The backend's mask is restored on drop.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigfillset initializes `all`; pthread_sigmask changes only this thread's mask
        // and writes the previous one into `old` (it cannot fail with a valid `how`).
        unsafe {
            let mut all = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            let mut old = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
            SignalsBlocked(old.assume_init())
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on the same thread (the guard never leaves
        // the scope that made it); signals that arrived meanwhile are delivered now.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

/// Link every node on the pool, while this thread checks interrupts and reports progress.
fn link<E: Elem>(graph: &Graph<E>, threads: usize) {
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_LINK);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, graph.len() as i64);
    let pool = {
        // rayon starts its threads here, and they inherit this mask.
        let _blocked = SignalsBlocked::new();
        rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("hnsw-build-{i}")).build()
    }
    .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES, format!("could not start build threads: {e}")));
    let done = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let outcome = std::thread::scope(|s| {
        let backend = std::thread::current();
        let (pool, done, cancel) = (&pool, &done, &cancel);
        let worker = {
            let _blocked = SignalsBlocked::new();
            std::thread::Builder::new().name("hnsw-build".into()).spawn_scoped(s, move || {
                let r = graph.build(pool, done, cancel);
                backend.unpark();
                r
            })
        }
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES, format!("could not start build threads: {e}")));
        let _stop = CancelOnDrop(cancel);
        while !worker.is_finished() {
            check_for_interrupts!();
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, done.load(Ordering::Relaxed) as i64);
            std::thread::park_timeout(Duration::from_millis(20));
        }
        worker.join()
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => raise(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, "hnsw build cancelled"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The filter values gathered while reading the heap (see [`BuildState`]).
struct Filters<'a> {
    payloads: &'a [u8],
    payload_at: &'a [u32],
    slots: &'a [u64],
    nulls: &'a [u8],
}

impl Filters<'_> {
    fn payload(&self, i: usize) -> &[u8] {
        if self.payload_at.len() <= i + 1 {
            return &[];
        }
        &self.payloads[self.payload_at[i] as usize..self.payload_at[i + 1] as usize]
    }
}

/// An index without rows: the meta page, and for filter columns an empty attribute page.
fn write_empty(index: pg_sys::Relation, meta: &Meta) {
    let mut meta = *meta;
    if meta.filters > 0 {
        meta.attr_first = 1;
        meta.attr_last = 1;
    }
    let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    meta.init_page(index, &buf, Logging::Build);
    drop(buf);
    if meta.filters > 0 {
        let buf = new_page(index, 1);
        Wal::edit(index, &buf, Logging::Build, true, |page| page.init(PAGE_ATTR));
    }
}

/// Write meta and data pages in one sequential pass (layout in the `storage` module docs).
///
/// Vectors fill pages in order; node tuples go first into the room those pages have left
/// (a 784-d float4 vector page keeps a quarter of its space free, enough for seven node
/// tuples), then onto pages of their own. TID lists follow, and the attribute pages (indexes
/// with filter columns) come last, one record per element in element order.
fn write_graph<E: Elem>(
    index: pg_sys::Relation,
    graph: &Graph<E>,
    tids: &[ItemRef],
    more_tids: &HashMap<u32, Vec<ItemRef>>,
    filters: &Filters<'_>,
    mut meta: Meta,
) {
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_WRITE);
    let n = graph.len();
    let (dims, m) = (graph.dim(), meta.m as usize);
    // Vector tuples in element order, a page filled before the next; their sizes differ only
    // when filter values do (text, arrays).
    let vsize = |i: usize| vector_tuple_size::<E>(dims, filters.payload(i).len()) + ITEM_ID_SIZE;
    let mut vrefs = Vec::with_capacity(n);
    // (bytes used, items) of each vector page, from block 1.
    let mut used: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        let size = vsize(i);
        match used.last_mut() {
            Some((bytes, items)) if *items < MAX_ITEMS && *bytes + size <= page_capacity() => {
                *bytes += size;
                *items += 1;
            }
            _ => used.push((size, 1)),
        }
        vrefs.push(ItemRef::new(used.len() as u32, used.last().expect("pushed").1 as u16));
    }
    let vector_pages = used.len() as u32;
    let vref = |i: usize| vrefs[i];
    // (bytes free, items) of a page before any node tuple goes on it.
    let room = |block: u32| match used.get(block as usize - 1) {
        Some(&(bytes, items)) => (page_capacity() - bytes, items),
        None => (page_capacity(), 0),
    };

    // Two cursors: the room left on vector pages, and node-only pages after them. A node that
    // does not fit the current room moves the cursor on to the next vector page; one bigger
    // than a vector page's usual room goes to a node page.
    let mut nrefs = vec![ItemRef::INVALID; n];
    let leftover = room(1).0;
    let (mut vblock, mut nblock) = (1u32, vector_pages + 1);
    let (mut vfree, mut vitems) = room(vblock);
    let (mut nfree, mut nitems) = room(nblock);
    for (i, nref) in nrefs.iter_mut().enumerate() {
        let size = node_tuple_size(m, graph.level(i as u32)) + ITEM_ID_SIZE;
        if size <= leftover && vblock <= vector_pages && (vitems == MAX_ITEMS || vfree < size) {
            vblock += 1;
            (vfree, vitems) = room(vblock);
        }
        if vblock <= vector_pages && vfree >= size && vitems < MAX_ITEMS {
            vfree -= size;
            vitems += 1;
            *nref = ItemRef::new(vblock, vitems as u16);
            continue;
        }
        if nitems == MAX_ITEMS || nfree < size {
            nblock += 1;
            (nfree, nitems) = room(nblock);
        }
        nfree -= size;
        nitems += 1;
        *nref = ItemRef::new(nblock, nitems as u16);
    }
    // Nodes in page order, for the writer.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&i| (nrefs[i as usize].block, nrefs[i as usize].offset));
    let block = if nitems > 0 { nblock } else { vector_pages };
    let nodes_end = block.max(vector_pages);
    // Rows beyond a node's inline TIDs go to TID lists on pages after everything else.
    let mut lists: Vec<(ItemRef, Vec<ItemRef>, ItemRef)> = Vec::new();
    let mut overflow: HashMap<u32, ItemRef> = HashMap::new();
    let (mut lblock, mut lfree, mut litems) = (nodes_end, 0usize, MAX_ITEMS);
    let lsize = tid_list_size() + ITEM_ID_SIZE;
    let mut ids: Vec<&u32> = more_tids.keys().collect();
    ids.sort();
    for &id in ids {
        let rest = more_tids[&id].get(HEAP_TIDS - 1..).unwrap_or(&[]);
        let first = lists.len();
        for chunk in rest.chunks(TID_LIST_CAPACITY) {
            if litems == MAX_ITEMS || lfree < lsize {
                lblock += 1;
                (lfree, litems) = (page_capacity(), 0);
            }
            lfree -= lsize;
            litems += 1;
            lists.push((ItemRef::new(lblock, litems as u16), chunk.to_vec(), ItemRef::INVALID));
        }
        for i in first..lists.len().saturating_sub(1) {
            lists[i].2 = lists[i + 1].0;
        }
        if first < lists.len() {
            overflow.insert(id, lists[first].0);
        }
    }
    let last = lblock;
    // Attribute pages after the data pages.
    let ncols = meta.filters as usize;
    let rsize = meta.attr_record as usize;
    let per_attr_page = if ncols > 0 { records_per_page(rsize) } else { 1 };
    let attr_pages = if ncols > 0 { n.div_ceil(per_attr_page) as u32 } else { 0 };
    let aref = |i: usize| record_ref(last + 1 + (i / per_attr_page) as u32, i % per_attr_page);
    if ncols > 0 {
        meta.attr_first = last + 1;
        meta.attr_last = last + attr_pages;
    }
    if let Some((ep, level)) = graph.entry() {
        meta.entry_vector = vref(ep as usize);
        meta.entry_node = nrefs[ep as usize];
        meta.entry_level = level as u8;
    }
    meta.insert_page = if n > 0 { last } else { 0 };
    {
        let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
        meta.init_page(index, &buf, Logging::Build);
    }

    let total = last + attr_pages;
    let (mut tuple, mut refs) = (Vec::new(), Vec::new());
    let mut next = 0usize;
    let mut next_vector = 0usize;
    let mut next_list = 0usize;
    for block in 1..=last {
        let buf = new_page(index, block);
        Wal::edit(index, &buf, Logging::Build, true, |page| {
            page.init(PAGE_DATA);
            while next_list < lists.len() && lists[next_list].0.block == block {
                let (at, ref list_tids, next_ref) = lists[next_list];
                encode_tid_list(list_tids, next_ref, &mut tuple);
                expect_offset(page.add_item(&tuple), at);
                next_list += 1;
            }
            while next_vector < n && vrefs[next_vector].block == block {
                let i = next_vector;
                encode_vector(graph.vector(i as u32), filters.payload(i), nrefs[i], 0, &mut tuple);
                expect_offset(page.add_item(&tuple), vref(i));
                next_vector += 1;
            }
            while next < n && nrefs[order[next] as usize].block == block {
                let id = order[next];
                let level = graph.level(id);
                let mut node = NodeTupleMut::init(&mut tuple, m, level, vref(id as usize), tids[id as usize]);
                if let Some(more) = more_tids.get(&id) {
                    more.iter().take(HEAP_TIDS - 1).for_each(|&t| {
                        node.push_heap_tid(t);
                    });
                    if let Some(&first) = overflow.get(&id) {
                        node.set_overflow(first);
                    }
                }
                if ncols > 0 {
                    node.set_attr(aref(id as usize));
                }
                for layer in 0..=level {
                    refs.clear();
                    refs.extend(graph.neighbors(id, layer).into_iter().map(|j| vref(j as usize)));
                    node.set_neighbors(layer, &refs);
                }
                expect_offset(page.add_item(&tuple), nrefs[id as usize]);
                next += 1;
            }
        });
        // A held content lock holds interrupts off (CHECK_FOR_INTERRUPTS would do nothing):
        // release the page first, so cancel and statement_timeout act between pages.
        drop(buf);
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, n as i64 * block as i64 / total as i64);
        check_for_interrupts!();
    }
    for p in 0..attr_pages {
        let block = last + 1 + p;
        let buf = new_page(index, block);
        Wal::edit(index, &buf, Logging::Build, true, |page| {
            page.init(PAGE_ATTR);
            if p + 1 < attr_pages {
                page.set_attr_next(block + 1);
            }
            let first = p as usize * per_attr_page;
            for i in first..n.min(first + per_attr_page) {
                encode_record(0, filters.nulls[i], vref(i), &filters.slots[i * ncols..(i + 1) * ncols], &mut tuple);
                if page.attr_push(&tuple).map(|at| record_ref(block, at)) != Some(aref(i)) {
                    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "hnsw build attribute page layout mismatch");
                }
            }
        });
        // A held content lock holds interrupts off (CHECK_FOR_INTERRUPTS would do nothing):
        // release the page first, so cancel and statement_timeout act between pages.
        drop(buf);
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, n as i64 * block as i64 / total as i64);
        check_for_interrupts!();
    }
}

/// A content hash of a vector, to find rows with identical vectors while reading the heap.
fn hash_vector<E: Elem>(v: &[E]) -> u64 {
    // SAFETY: f32/f16 are plain data; we hash their bytes.
    let bytes = unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) };
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}

fn new_page(index: pg_sys::Relation, expected: u32) -> Buffer {
    let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    if buf.block() != expected {
        raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("hnsw build expected to write block {expected}, got {}", buf.block()));
    }
    buf
}

fn expect_offset(got: Option<u16>, want: ItemRef) {
    if got != Some(want.offset) {
        raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "hnsw build page layout mismatch");
    }
}

/// The init fork of an unlogged index: an empty meta page, WAL-logged whole.
#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let kind = opclass::resolve(index);
    let columns = Columns::of(index);
    let (m, efc) = options::index_options(index);
    let mut meta = base_meta(&kind, &columns, m, efc, kind.typmod_dims.unwrap_or(0));
    if meta.filters > 0 {
        meta.attr_first = 1;
        meta.attr_last = 1;
    }
    let buf = Buffer::extend(index, pg_sys::ForkNumber::INIT_FORKNUM);
    meta.init_page(index, &buf, Logging::Build);
    // SAFETY: the buffer is pinned and exclusively locked; init forks are always WAL-logged.
    unsafe { pg_sys::log_newpage_buffer(buf.id(), true) };
    drop(buf);
    if meta.filters > 0 {
        let buf = Buffer::extend(index, pg_sys::ForkNumber::INIT_FORKNUM);
        Wal::edit(index, &buf, Logging::Build, true, |page| page.init(PAGE_ATTR));
        // SAFETY: as above.
        unsafe { pg_sys::log_newpage_buffer(buf.id(), true) };
    }
}
