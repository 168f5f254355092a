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
//!
//! The three phases have a file each: `load` (the heap scan into the graph), `link` (the
//! pool) and `write` (the page layout and the pages).

mod link;
mod load;
mod spill;
mod write;

use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::filter::Columns;
use super::opclass::{self, Kind};
use super::options;
use crate::storage::attr::PAGE_ATTR;
use crate::storage::buffer::{relation_needs_wal, Buffer, Logging, Wal};
use crate::storage::meta::{ElemType, Meta, Quant};
use crate::storage::page::{page_capacity, ItemRef};
use crate::storage::quant::Codec;
use crate::storage::tuple::node_tuple_size;
use load::build;

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

fn base_meta(kind: &Kind, columns: &Columns, m: usize, efc: usize, dims: u32, quant: Quant) -> Meta {
    Meta {
        version: quant.format(),
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
        quant,
        params: 0,
        cold_page: 0,
        params_first: 0,
        provisional: 0,
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let kind = opclass::resolve(index);
    let (m, efc) = options::index_options(index);
    let quant = options::index_quantization(index);
    kind.check_quant(quant);
    if let Some(d) = kind.declared_dims() {
        kind.check_dims(d, quant);
        if options::index_neighbor_codes(index) && quant != Quant::None {
            write::check_codes_fit(m, Codec::untrained(quant, d, kind.elem).body_len(), d);
        }
    }
    let (heap_tuples, index_tuples) = match kind.elem {
        ElemType::F16 => build::<f16>(heap, index, index_info, kind, m, efc),
        ElemType::F32 => build::<f32>(heap, index, index_info, kind, m, efc),
        ElemType::Bit => build::<u8>(heap, index, index_info, kind, m, efc),
        ElemType::Sparse => build::<hnsw_core::sparse::SparseWord>(heap, index, index_info, kind, m, efc),
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

/// The init fork of an unlogged index: an empty meta page, WAL-logged whole.
#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let kind = opclass::resolve(index);
    kind.check_quant(options::index_quantization(index));
    let columns = Columns::of(index);
    let (m, efc) = options::index_options(index);
    let mut meta = base_meta(&kind, &columns, m, efc, kind.typmod_dims.unwrap_or(0), options::index_quantization(index));
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
