//! Online inserts (`aminsert`), safe with any number of backends inserting at once, in three
//! steps: **search** for the new element's neighbours as the build does (here), **place** its
//! tuples (`place.rs`), **link** its neighbours back to it (`link.rs`).
//!
//! Locking discipline (what makes it deadlock-free): a backend holds at most one buffer lock at
//! a time — except when a back-link pushes an entry out of a full list, where the page of the
//! entry's witness is share-locked too, the two taken in block order (see
//! [`crate::storage::element::Elements::write_list`]) — and takes the meta page's lock only on
//! its own. Neighbour lists are updated optimistically (read with a version, write if
//! unchanged). The very first element of an empty index is placed under a heavyweight lock so
//! that two first inserts cannot both become unconnected entry points. Every insert holds a
//! share lock on a second heavyweight lock that VACUUM takes exclusively for a moment after
//! marking elements deleted: after that barrier no insert can still link to an element it saw
//! alive, so once VACUUM has removed the links to deleted elements it may free them for reuse
//! (both in [`crate::storage::lock`]).
//!
//! A row whose vector equals an existing live element's joins that element (its heap TID is
//! added) instead of becoming an element of its own: duplicates would otherwise fill each
//! other's neighbour lists and fall out of reach.

mod link;
mod place;
pub(crate) mod retrain;

use std::cell::Cell;

use half::f16;
use hnsw_core::graph::build::{random_level, splitmix64};
use hnsw_core::graph::heuristic::select_neighbors;
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{Candidate, SearchScratch};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::filter::Attrs;
use super::graph::{prepare_stored, scorer, DiskWalk, Elem, Node, Query};
use super::mem::TempContext;
use super::opclass::{self, Kind};
use crate::storage::buffer::{Buffer, Lock, Logging};
use crate::storage::lock::{HoldInterrupts, PageLock, FIRST_INSERT_LOCK, INSERT_LOCK};
use crate::storage::meta::{ElemType, Meta, Quant};
use crate::storage::page::{page_capacity, ItemRef, ITEM_ID_SIZE};
use crate::storage::quant::{with_full_at, write_params, Codec};
use crate::storage::tuple::{element_tuple_size, layer_capacity, VectorTuple};
pub(super) use link::Connect;
#[cfg(any(test, feature = "pg_test"))]
pub(super) use place::add_to_lists;
use place::{add_heap_tid, same_payload, NewElement, Writer};

// The signature is Postgres's `aminsert_function`.
#[allow(clippy::too_many_arguments)]
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
            ElemType::Bit => insert_datum::<u8>(index, &kind, datum, &attrs, tid, Logging::Wal),
            ElemType::Sparse => insert_datum::<hnsw_core::sparse::SparseWord>(index, &kind, datum, &attrs, tid, Logging::Wal),
        }
    });
    false
}

pub fn insert_datum<E: Elem>(index: pg_sys::Relation, kind: &Kind, datum: pg_sys::Datum, attrs: &Attrs, tid: ItemRef, logging: Logging) {
    let meta = Meta::read(index);
    let Some(vector) = prepare_stored::<E>(datum, kind, meta.dims, meta.quant) else { return };
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

/// Raise 54000 unless a row's vector tuple (its vector and filter values, stored together)
/// fits on a page. Checked before anything is written, so that a row too long leaves nothing
/// behind (no attribute record without an element), in a build as in an insert.
pub fn check_row_size(body: usize, payload: usize) {
    let need = element_tuple_size(body, payload) + ITEM_ID_SIZE;
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

/// Insert a prepared vector (checked, normalized) for heap row `tid`; then, in an index
/// trained on too few rows, count it (see [`retrain`]).
pub fn insert_vector<E: Elem>(index: pg_sys::Relation, vector: &[E], attrs: &Attrs, tid: ItemRef, logging: Logging) {
    if insert_one(index, vector, attrs, tid, logging) {
        retrain::count_insert::<E>(index, logging);
    }
}

/// Insert a prepared vector; whether the index is to count it (see [`retrain`]).
fn insert_one<E: Elem>(index: pg_sys::Relation, vector: &[E], attrs: &Attrs, tid: ItemRef, logging: Logging) -> bool {
    let _insert = PageLock::share(index, INSERT_LOCK);
    let mut meta = Meta::read(index);
    check_row_size(body_len(meta.quant, meta.elem, vector.len()), attrs.payload.len());
    if !meta.has_entry() {
        let _first = PageLock::exclusive(index, FIRST_INSERT_LOCK);
        meta = Meta::read(index);
        same_dims(&meta, vector.len());
        if !meta.has_entry() {
            let trains = meta.quant != Quant::None && meta.params == 0;
            if trains {
                meta = train_first(index, meta.quant, vector, logging);
            }
            let codec = Codec::load(index, &Meta { dims: vector_dims(&meta, vector.len()), ..meta });
            let level = random_level(random_u64(), meta.m as usize, meta.max_level as usize);
            let lists = vec![Vec::new(); level + 1];
            let codes = (codec.is_quantized() && super::options::index_neighbor_codes(index)).then(|| (codec.body_len(), &[][..]));
            let new = NewElement { vector, attrs, level, lists: &lists, tid, codes };
            let (vref, nref, level) = place::place(&Writer { index, meta: &meta, codec: &codec, logging }, &new);
            Meta::update(index, logging, |m| {
                m.dims = vector_dims(m, vector.len());
                m.entry_vector = vref;
                m.entry_node = nref;
                m.entry_level = level as u8;
                true
            });
            // One that trains the index starts the count at 1: itself.
            return !trains && meta.provisional > 0;
        }
    }
    let counted = meta.provisional > 0;
    same_dims(&meta, vector.len());
    let metric = meta.metric;
    let level = random_level(random_u64(), meta.m as usize, meta.max_level as usize);
    let top = meta.entry_level as usize;
    let codec = Codec::load(index, &meta);

    // 1. Search.
    let dist = scorer::<E>(&codec, metric, Query::Stored(vector));
    let neighbor_codes = codec.is_quantized() && super::options::index_neighbor_codes(index);
    let mut walk = DiskWalk::new(index, &meta, codec.clone(), dist, super::scan::take_visited(), true);
    if neighbor_codes {
        walk = walk.keeping_codes();
    }
    let (entries, selected) = search(&mut walk, &meta, metric, level);
    // `entries` holds the layer-0 results: an equal vector is among them. (Not always the
    // nearest: under inner product a longer vector can beat the vector itself.) In a
    // quantized index the walk saw codes: an equal code is confirmed on the full vector.
    // Rows with different filter values stay apart: their element answers different filters.
    let seen = seen_as::<E>(&codec, vector);
    for c in &entries {
        if walk.arena_vector(c.item.slot) == seen.as_slice()
            && (!codec.is_quantized() || !codec.decodes() || same_full(index, &codec, c.item.vector, vector))
            && same_payload(index, c.item.vector, &codec, &attrs.payload)
            && add_heap_tid(index, &meta, c.item.node, tid, logging)
        {
            return counted;
        }
    }
    let mut lists: Vec<Vec<ItemRef>> = selected.iter().map(|s| s.iter().map(|c| c.item.vector).collect()).collect();
    // An element that will become the entry point links to the old one on layer 0 (first in
    // its list, where the forced link below never takes a place): every element is reachable
    // from the old entry point by layer-0 links, so stays reachable from the new one, and
    // scans seed layer 0 with the entry point.
    if level > top && !lists[0].contains(&meta.entry_vector) {
        lists[0].truncate(layer_capacity(meta.m as usize, 0) - 1);
        lists[0].insert(0, meta.entry_vector);
    }

    // 2. Place. From here on the element exists on disk but nothing links to it yet: a cancel
    // before the links are in would leave it unreachable (and the checker complaining) until
    // the next VACUUM. The rest takes milliseconds, so interrupts wait for it.
    let _hold = HoldInterrupts::new();
    // The layer-0 neighbours' node refs and code bodies, as the walk read them, for a node
    // tuple that keeps them.
    let codes: Vec<place::KnownCode<'_>> = if neighbor_codes {
        let (_, arena_refs) = walk.arena();
        (lists[0].iter())
            .map(|r| {
                let slot = arena_refs.iter().position(|(v, _, _)| v == r)?;
                Some((arena_refs[slot].1, walk.code_of(slot as u32)?))
            })
            .collect()
    } else {
        Vec::new()
    };
    let new = NewElement { vector, attrs, level, lists: &lists, tid, codes: neighbor_codes.then(|| (codec.body_len(), &codes[..])) };
    let (vref, nref, level) = place::place(&Writer { index, meta: &meta, codec: &codec, logging }, &new);

    // 3. Link.
    {
        let (arena, arena_refs) = walk.arena();
        let mut connect = Connect::for_insert(index, &meta, &codec, logging, vector, nref, arena, arena_refs);
        if codec.is_quantized() && super::options::index_neighbor_codes(index) {
            if let Some(body) = code_body_of(index, &codec, vref) {
                connect = connect.with_new_code(body);
            }
        }
        connect.link_new(vref, &selected[..=level], &entries, |slot| walk.arena_vector(slot));
    }
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
    counted
}

/// The insert's search, as the build's: greedy descent to the new element's level, then a
/// beam search of width ef_construction on each layer below, every measured vector copied
/// into the walk's arena for the heuristic. Returns the layer-0 results and, per layer, the
/// neighbours the heuristic selects.
#[allow(clippy::type_complexity)]
fn search<E: Elem, F: Fn(&[u8]) -> f32>(
    walk: &mut DiskWalk<E, F>,
    meta: &Meta,
    metric: Metric,
    level: usize,
) -> (Vec<Candidate<Node>>, Vec<Vec<Candidate<Node>>>) {
    let top = meta.entry_level as usize;
    let mut cur = walk.measure(meta.entry_vector);
    let mut buf = Vec::new();
    for layer in (level + 1..=top).rev() {
        cur = greedy_closest(walk, cur, layer, &mut buf);
    }
    let mut entries = vec![cur];
    let mut found = Vec::new();
    let mut scratch = SearchScratch::default();
    let mut selected: Vec<Vec<Candidate<Node>>> = vec![Vec::new(); level + 1];
    for layer in (0..=level.min(top)).rev() {
        search_layer(walk, &entries, meta.ef_construction as usize, layer, &mut scratch, &mut found);
        walk.fill_arena();
        let cap = layer_capacity(meta.m as usize, layer);
        select_neighbors(
            &found,
            cap,
            true,
            |a: &Node, b: &Node| E::distance(metric, walk.arena_vector(a.slot), walk.arena_vector(b.slot)),
            &mut selected[layer],
        );
        core::mem::swap(&mut entries, &mut found);
    }
    (entries, selected)
}

/// Bytes of a vector tuple's body for `dims` dimensions (see [`Codec::body_len`]); for a
/// sparse vector, `dims` counts its stored words.
pub fn body_len(quant: Quant, elem: ElemType, dims: usize) -> usize {
    if elem == ElemType::Sparse {
        return dims * elem.size();
    }
    Codec::untrained(quant, dims, elem).body_len()
}

/// `vector` as the walk's arena holds it: itself, or its code decoded (8-bit codes).
fn seen_as<E: Elem>(codec: &Codec, vector: &[E]) -> Vec<E> {
    if !codec.is_quantized() || !codec.decodes() {
        return vector.to_vec();
    }
    let (mut body, mut out) = (Vec::new(), Vec::new());
    codec.encode_body(vector, ItemRef::INVALID, &mut body);
    codec.graph_vector(&body, &mut out);
    out
}

/// Whether the full vector of the element whose vector tuple is `vref` equals `vector`.
fn same_full<E: Elem>(index: pg_sys::Relation, codec: &Codec, vref: ItemRef, vector: &[E]) -> bool {
    let extent = crate::storage::element::Extent::new(index);
    let full = {
        let buf = crate::storage::buffer::Buffer::read_recent(index, vref.block, crate::storage::buffer::Lock::Share);
        let Some(data) = buf.page().item(vref.offset) else { return false };
        crate::storage::tuple::code_body_full(crate::storage::tuple::VectorTuple::parse(data).body(codec.body_len()))
    };
    with_full_at::<E, _>(&extent, full, codec.dims, |v| v == vector).unwrap_or(false)
}

/// Train a quantized index built without rows on its first vector (see
/// [`Codec::train_first`]), under FIRST_INSERT_LOCK; the meta page after.
fn train_first<E: Elem>(index: pg_sys::Relation, quant: Quant, vector: &[E], logging: Logging) -> Meta {
    let mut f = vec![0.0f32; vector.len()];
    <E as hnsw_core::metric::VectorElem>::to_f32(vector, &mut f);
    let first = write_params(index, logging, &Codec::train_first(quant, &f).to_bytes());
    Meta::update(index, logging, |m| {
        m.dims = vector.len() as u32;
        m.params = first;
        m.provisional = 1;
        true
    })
}

/// The index's dimensions once a vector of `len` elements is in: a sparse index's are its
/// column's from the start (`len` counts stored words there).
fn vector_dims(meta: &Meta, len: usize) -> u32 {
    if meta.elem == ElemType::Sparse {
        meta.dims
    } else {
        len as u32
    }
}

/// The caller checked the vector against the dimensions it read from the meta page; on a
/// column without declared dimensions, the first insert of another session may have fixed
/// them since (under FIRST_INSERT_LOCK, which the first-insert path holds when it checks).
fn same_dims(meta: &Meta, len: usize) {
    if meta.dims != 0 && meta.elem != ElemType::Sparse {
        crate::types::check_expected_dim(meta.dims as i32, len);
    }
}

/// The code body of the element whose vector tuple is `vref` (a quantized index's).
fn code_body_of(index: pg_sys::Relation, codec: &Codec, vref: ItemRef) -> Option<Vec<u8>> {
    let buf = Buffer::read_recent(index, vref.block, Lock::Share);
    let data = buf.page().item(vref.offset)?;
    Some(codec.body_of(&VectorTuple::parse(data)).to_vec())
}
