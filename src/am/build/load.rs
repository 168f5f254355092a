//! The heap scan of a build: rows into the in-memory graph (duplicates joining their node).
//! What the build holds is kept within `maintenance_work_mem`: when it would outgrow it, the
//! vectors move to a temporary file ([`super::spill`]) and the graph keeps its links; when the
//! links alone outgrow it, the graph is written and the rest go through the on-disk insert path.

use std::collections::HashMap;

use hnsw_core::graph::{Graph, Params};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::link::link;
use super::spill::SpillFile;
use super::write::{write_empty, write_graph, Filters};
use super::{base_meta, max_level, progress, PHASE_LOAD};
use crate::am::filter::Columns;
use crate::am::graph::{prepare_stored, Elem};
use crate::am::insert::{body_len, check_row_size, insert_vector};
use crate::am::mem::TempContext;
use crate::am::opclass::Kind;
use crate::storage::buffer::Logging;
use crate::storage::meta::{ElemType, Quant};
use crate::storage::page::ItemRef;
use crate::storage::quant::{Codec, Trained};
use crate::storage::tuple::from_tid;

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
    /// (32 bits of the hash: a rare false match is told apart by comparing the vectors, and
    /// only costs the earlier node its chance to be found again.)
    by_hash: HashMap<u32, u32>,
    mem_limit: usize,
    /// The graph was written; remaining rows are inserted on disk.
    on_disk: bool,
    indexed: f64,
    threads: usize,
    quant: Quant,
    /// Whether node tuples keep their neighbours' codes (the write phase keeps every
    /// element's code body in memory to copy them).
    neighbor_codes: bool,
    /// Reset after every row: the detoasted vector and filter values (see [`TempContext`]).
    row_cx: TempContext,
    /// The vectors, once they no longer fit in memory (the graph is then detached from them).
    spill: Option<SpillFile<E>>,
    /// A vector read back from `spill` to compare with a row of the same hash.
    dup: Vec<E>,
}

/// Bytes per element that the write phase allocates on top of the graph (page positions of
/// its tuples and the writing order; quantized, also its full-vector chunks), reserved up front.
const WRITE_BYTES_PER_NODE: usize = 32;
const WRITE_BYTES_PER_QUANTIZED_NODE: usize = 72;

impl<E: Elem> BuildState<E> {
    /// What the build holds in the backend's memory for the elements read so far, and will
    /// allocate to write them: what `maintenance_work_mem` bounds.
    fn memory(&self) -> usize {
        let Some(graph) = &self.graph else { return 0 };
        let filters = self.payloads.capacity() + 8 * self.slots.capacity() + self.nulls.capacity() + 4 * self.payload_at.capacity();
        // A HashMap<u32, u32> bucket is 8 bytes and a control byte; capacity() is 7/8 of them.
        let rows = 8 * self.tids.capacity() + 9 * 8 * self.by_hash.capacity() / 7 + 32 * self.more_tids.capacity();
        let spill = self.spill.as_ref().map_or(0, SpillFile::memory);
        // Writing the pages allocates less than the link bookkeeping it frees first.
        let write = if self.quant == Quant::None { WRITE_BYTES_PER_NODE } else { WRITE_BYTES_PER_QUANTIZED_NODE };
        // A code body's length does not depend on the element type.
        let codes = if self.neighbor_codes { Codec::untrained(self.quant, graph.dim(), ElemType::F32).body_len() } else { 0 };
        graph.bytes() + filters + rows + spill + (write + codes).saturating_sub(graph.bookkeeping_per_node()) * graph.len()
    }
}

pub(super) fn build<E: Elem>(
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
        // Sized for the rows the table is expected to have (what fits the memory at most), so
        // that it does not double, and count twice, near the end of a large build.
        by_hash: HashMap::with_capacity(expected_rows(heap, mwm_kb as usize * 1024)),
        mem_limit: mwm_kb as usize * 1024,
        on_disk: false,
        indexed: 0.0,
        threads: (workers.max(0) as usize + 1).min(cores).max(1),
        quant: crate::am::options::index_quantization(index),
        neighbor_codes: crate::am::options::index_neighbor_codes(index),
        row_cx: TempContext::new(c"hnsw build row"),
        spill: None,
        dup: Vec::new(),
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
    let (kind, dims, columns, quant) = (&st.kind, st.dims, &st.columns, st.quant);
    // SAFETY: as above, an entry per key column.
    let row = row_cx.run(|| prepare_stored::<E>(datum, kind, dims, quant).map(|v| (v, unsafe { columns.encode_row(values, isnull) })));
    let Some((v, attrs)) = row else { return };
    check_row_size(body_len(st.quant, st.kind.elem, v.len()), attrs.payload.len());
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
        // Sparse vectors vary in length: a graph of vectors of any length.
        Graph::new(if st.kind.elem == ElemType::Sparse { 0 } else { v.len() }, params)
    });
    // A row whose vector (and filter values) a node already has joins that node (see
    // insert.rs for why).
    let hash = hash_vector(&v) ^ hnsw_core::graph::build::splitmix64(crate::am::filter::hash_bytes(&attrs.payload));
    let hash = (hash ^ (hash >> 32)) as u32;
    if let Some(&id) = st.by_hash.get(&hash) {
        let payload = &st.payloads[st.payload_at[id as usize] as usize..st.payload_at[id as usize + 1] as usize];
        let same = match &st.spill {
            Some(spill) => {
                spill.read(graph.vector_range(id), &mut st.dup);
                st.dup == v.as_slice()
            }
            None => graph.vector(id) == v.as_slice(),
        };
        if same && payload == attrs.payload.as_slice() {
            st.more_tids.entry(id).or_default().push(tid);
            return;
        }
    }
    let id = match &mut st.spill {
        Some(spill) => {
            spill.append(&v);
            graph.push_detached(v.len())
        }
        None => graph.push(&v),
    };
    st.by_hash.insert(hash, id);
    st.tids.push(tid);
    st.payloads.extend_from_slice(&attrs.payload);
    st.payload_at.push(st.payloads.len() as u32);
    st.slots.extend_from_slice(&attrs.slots);
    st.nulls.push(attrs.nulls);
    if st.memory() <= st.mem_limit {
        return;
    }
    if let (true, Some(graph)) = (st.spill.is_none(), st.graph.as_mut()) {
        let tuples = graph.len();
        let mut spill = SpillFile::create();
        spill.append(&graph.detach_vectors());
        st.spill = Some(spill);
        ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("hnsw graph's vectors no longer fit into maintenance_work_mem after {tuples} tuples"),
            "The build keeps them in a temporary file and reads them through the operating system's cache; it keeps \
             the links in memory. Increase maintenance_work_mem to keep the vectors in memory too."
        );
    }
    if st.memory() > st.mem_limit {
        let tuples = st.graph.as_ref().map_or(0, Graph::len);
        ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("hnsw graph no longer fits into maintenance_work_mem after {tuples} tuples"),
            "Building will take significantly more time. Increase maintenance_work_mem to speed up builds."
        );
        flush(st);
    }
}

/// Link the graph read so far and write it out; afterwards rows are inserted on disk.
fn flush<E: Elem>(st: &mut BuildState<E>) {
    let meta = base_meta(&st.kind, &st.columns, st.m, st.efc, st.dims, st.quant);
    let held = st.memory();
    match st.graph.take() {
        None => write_empty(st.index, &meta),
        Some(mut graph) => {
            // Only the scan looks for duplicates.
            st.by_hash = HashMap::new();
            if let Some(spill) = st.spill.take() {
                graph.attach(Box::new(spill.map()));
            }
            let t = std::time::Instant::now();
            link(&graph, st.threads);
            let linked = t.elapsed();
            graph.release_bookkeeping();
            let filters = Filters { payloads: &st.payloads, payload_at: &st.payload_at, slots: &st.slots, nulls: &st.nulls };
            let codec = match meta.quant {
                Quant::None => Codec::load(st.index, &meta),
                quant => Codec::with(&meta, graph.dim(), train(&graph, quant)),
            };
            write_graph(st.index, &graph, &st.tids, &st.more_tids, &filters, meta, &codec);
            debug1!(
                "hnsw build: {} elements linked on {} threads in {:.2?}, pages written in {:.2?}; {} MB held{}",
                graph.len(),
                st.threads,
                linked,
                t.elapsed() - linked,
                held >> 20,
                if graph.is_detached() { ", the vectors in a temporary file" } else { "" }
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

/// Quantizer parameters from the graph's vectors: SQ8 from their per-dimension ranges (one
/// vector converted at a time, so that a halfvec graph is never copied whole), RaBitQ's
/// centroid from an evenly spread sample of 20,000.
fn train<E: Elem>(graph: &Graph<E>, quant: Quant) -> Trained {
    let dims = graph.dim();
    if quant != Quant::Sq8 {
        let step = graph.len().div_ceil(20_000).max(1);
        let sample: Vec<Vec<f32>> = (0..graph.len() as u32)
            .step_by(step)
            .map(|i| {
                let mut f = vec![0.0f32; dims];
                <E as hnsw_core::metric::VectorElem>::to_f32(graph.vector(i), &mut f);
                f
            })
            .collect();
        return Codec::train(quant, dims, sample.iter().map(Vec::as_slice));
    }
    let (mut lo, mut hi) = (vec![f32::INFINITY; dims], vec![f32::NEG_INFINITY; dims]);
    let mut f = vec![0.0f32; dims];
    for i in 0..graph.len() as u32 {
        <E as hnsw_core::metric::VectorElem>::to_f32(graph.vector(i), &mut f);
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(&f) {
            *l = l.min(x);
            *h = h.max(x);
        }
    }
    Codec::train(quant, dims, [&lo[..], &hi[..]].into_iter())
}

/// The heap's row estimate, bounded by the nodes `mem_limit` could hold (at 300 bytes each,
/// less than any node takes).
fn expected_rows(heap: pg_sys::Relation, mem_limit: usize) -> usize {
    // SAFETY: the heap is open and locked for the build; rd_rel is its pg_class row.
    let reltuples = unsafe { (*(*heap).rd_rel).reltuples };
    if reltuples > 0.0 {
        (reltuples as usize).min(mem_limit / 300)
    } else {
        0
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
