//! The write phase of a build: every element's place on the pages is decided first, then meta,
//! data and attribute pages are written in one sequential pass.

use std::collections::HashMap;

use hnsw_core::graph::Graph;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{progress, PHASE_WRITE};
use crate::am::graph::Elem;
use crate::am::options;
use crate::storage::attr::{encode_record, record_ref, records_per_page, PAGE_ATTR};
use crate::storage::buffer::{Buffer, Logging, Wal};
use crate::storage::meta::{ElemType, Meta, RETRAIN_AT};
use crate::storage::page::{page_capacity, ItemRef, ITEM_ID_SIZE, MAX_ITEMS, PAGE_DATA};
use crate::storage::quant::{write_params, Codec};
use crate::storage::tuple::{
    codes_size, element_tuple_size, encode_element, encode_full, encode_tid_list, full_chunks, node_tuple_size, tid_list_size,
    NodeTupleMut, HEAP_TIDS, TID_LIST_CAPACITY,
};
use crate::types::{raise, raise_hint};

/// The filter values gathered while reading the heap (see [`super::load::BuildState`]).
pub(super) struct Filters<'a> {
    pub(super) payloads: &'a [u8],
    pub(super) payload_at: &'a [u32],
    pub(super) slots: &'a [u64],
    pub(super) nulls: &'a [u8],
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
pub(super) fn write_empty(index: pg_sys::Relation, meta: &Meta) {
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
pub(super) fn write_graph<E: Elem>(
    index: pg_sys::Relation,
    graph: &Graph<E>,
    tids: &[ItemRef],
    more_tids: &HashMap<u32, Vec<ItemRef>>,
    filters: &Filters<'_>,
    mut meta: Meta,
    codec: &Codec,
) {
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_WRITE);
    let n = graph.len();
    let m = meta.m as usize;
    // Vector tuples in element order, a page filled before the next; their sizes differ only
    // when filter values (text, arrays) or sparse vectors do.
    let body_len = |i: usize| match meta.elem {
        // The vector itself, of its own length.
        ElemType::Sparse => graph.vector(i as u32).len() * ElemType::Sparse.size(),
        _ => codec.body_len(),
    };
    let vsize = |i: usize| element_tuple_size(body_len(i), filters.payload(i).len()) + ITEM_ID_SIZE;
    let placed = page_order(graph);
    let mut vrefs = vec![ItemRef::INVALID; n];
    // (bytes used, items) of each vector page, from block 1.
    let mut used: Vec<(usize, usize)> = Vec::new();
    for &id in &placed {
        let i = id as usize;
        let size = vsize(i);
        match used.last_mut() {
            Some((bytes, items)) if *items < MAX_ITEMS && *bytes + size <= page_capacity() => {
                *bytes += size;
                *items += 1;
            }
            _ => used.push((size, 1)),
        }
        vrefs[i] = ItemRef::new(used.len() as u32, used.last().expect("pushed").1 as u16);
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
    // Node tuples that keep their neighbours' codes: every one that fits a page (all, unless
    // an element's level makes its lists too long).
    let codes = if options::index_neighbor_codes(index) && codec.is_quantized() { codes_size(m, codec.body_len()) } else { 0 };
    if codes > 0 {
        check_codes_fit(m, codec.body_len(), graph.dim());
    }
    let node_size = |level: usize| {
        let plain = node_tuple_size(m, level);
        if codes > 0 && plain + codes + ITEM_ID_SIZE <= page_capacity() {
            plain + codes
        } else {
            plain
        }
    };
    let leftover = room(1).0;
    let (mut vblock, mut nblock) = (1u32, vector_pages + 1);
    let (mut vfree, mut vitems) = room(vblock);
    let (mut nfree, mut nitems) = room(nblock);
    for &id in &placed {
        let nref = &mut nrefs[id as usize];
        let size = node_size(graph.level(id)) + ITEM_ID_SIZE;
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
    // Quantized: the full-precision vectors on pages of their own after those the walk reads.
    let hot_last = lblock;
    // (element, chunk, where, next tuple of the chain) of each full-vector tuple, in page order.
    let mut chunks: Vec<(u32, usize, ItemRef, ItemRef)> = Vec::new();
    let mut frefs = Vec::new();
    if codec.is_quantized() {
        let sizes = codec.full_sizes::<E>();
        let (mut fblock, mut ffree, mut fitems) = (hot_last, 0usize, MAX_ITEMS);
        for i in 0..n {
            let first = chunks.len();
            for (k, &sz) in sizes.iter().enumerate() {
                let size = sz + ITEM_ID_SIZE;
                if fitems == MAX_ITEMS || ffree < size {
                    fblock += 1;
                    (ffree, fitems) = (page_capacity(), 0);
                }
                ffree -= size;
                fitems += 1;
                chunks.push((i as u32, k, ItemRef::new(fblock, fitems as u16), ItemRef::INVALID));
            }
            for j in first..chunks.len() - 1 {
                chunks[j].3 = chunks[j + 1].2;
            }
            frefs.push(chunks[first].2);
        }
        meta.cold_page = fblock;
    }
    let last = chunks.last().map_or(hot_last, |c| c.2.block);
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
    meta.insert_page = if n > 0 { hot_last } else { 0 };
    if codec.is_quantized() {
        // Written by `write_params` right after the attribute pages.
        meta.params = last + attr_pages + 1;
        // Trained on a few rows: an insert retrains it once the table holds more.
        if (n as u64) < u64::from(RETRAIN_AT) {
            meta.provisional = n as u32;
        }
    }
    {
        let buf = Buffer::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
        meta.init_page(index, &buf, Logging::Build);
    }

    // Every element's code body, to copy into the node tuples that link to it.
    let mut bodies = Vec::new();
    if codes > 0 {
        bodies.reserve_exact(n * codec.body_len());
        let mut b = Vec::new();
        for (i, &full) in frefs.iter().enumerate() {
            codec.encode_body(graph.vector(i as u32), full, &mut b);
            bodies.extend_from_slice(&b);
        }
    }
    let body_of = |j: usize| &bodies[j * codec.body_len()..(j + 1) * codec.body_len()];
    let total = last + attr_pages;
    let (mut tuple, mut refs) = (Vec::new(), Vec::new());
    let mut next = 0usize;
    let mut next_vector = 0usize;
    let mut next_list = 0usize;
    let (mut body, mut next_full) = (Vec::new(), 0usize);
    for block in 1..=last {
        let buf = new_page(index, block);
        if block > hot_last {
            Wal::edit(index, &buf, Logging::Build, true, |page| {
                page.init(PAGE_DATA);
                while next_full < chunks.len() && chunks[next_full].2.block == block {
                    let (i, k, at, next) = chunks[next_full];
                    let range = full_chunks::<E>(graph.dim()).nth(k).expect("chunk of this length");
                    encode_full(&graph.vector(i)[range], next, &mut tuple);
                    expect_offset(page.add_item(&tuple), at);
                    next_full += 1;
                }
            });
            drop(buf);
            check_for_interrupts!();
            continue;
        }
        Wal::edit(index, &buf, Logging::Build, true, |page| {
            page.init(PAGE_DATA);
            while next_list < lists.len() && lists[next_list].0.block == block {
                let (at, ref list_tids, next_ref) = lists[next_list];
                encode_tid_list(list_tids, next_ref, &mut tuple);
                expect_offset(page.add_item(&tuple), at);
                next_list += 1;
            }
            while next_vector < n && vrefs[placed[next_vector] as usize].block == block {
                let i = placed[next_vector] as usize;
                codec.encode_body(graph.vector(i as u32), frefs.get(i).copied().unwrap_or(ItemRef::INVALID), &mut body);
                encode_element(&body, filters.payload(i), nrefs[i], 0, &mut tuple);
                expect_offset(page.add_item(&tuple), vref(i));
                next_vector += 1;
            }
            while next < n && nrefs[order[next] as usize].block == block {
                let id = order[next];
                let level = graph.level(id);
                let with_codes = node_size(level) > node_tuple_size(m, level);
                let mut node = if with_codes {
                    NodeTupleMut::init_with_codes(&mut tuple, m, level, vref(id as usize), tids[id as usize], codec.body_len())
                } else {
                    NodeTupleMut::init(&mut tuple, m, level, vref(id as usize), tids[id as usize])
                };
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
                if with_codes {
                    for (k, j) in graph.neighbors(id, 0).into_iter().enumerate() {
                        node.set_code(k, nrefs[j as usize], body_of(j as usize));
                    }
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
    if codec.is_quantized() {
        let first = write_params(index, Logging::Build, &codec.trained().to_bytes());
        if first != meta.params {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("hnsw build wrote parameters at block {first}, not {}", meta.params));
        }
    }
}

/// The order elements take on the pages: breadth-first over layer 0 from the entry point, so
/// that an element's neighbours sit together on few pages (a search pins and locks a page once
/// for all the neighbours it holds, and with quantized codes a page holds a dozen elements);
/// elements the entry point does not reach (none, normally) follow in id order.
fn page_order<E: Elem>(graph: &Graph<E>) -> Vec<u32> {
    let n = graph.len();
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    if let Some((ep, _)) = graph.entry() {
        seen[ep as usize] = true;
        order.push(ep);
        let mut next = 0;
        while next < order.len() {
            let u = order[next];
            next += 1;
            for v in graph.neighbors(u, 0) {
                if !std::mem::replace(&mut seen[v as usize], true) {
                    order.push(v);
                }
            }
        }
    }
    order.extend((0..n as u32).filter(|&i| !seen[i as usize]));
    order
}

/// `ERROR` unless a layer-0 node tuple with its neighbours' codes fits a page.
pub(crate) fn check_codes_fit(m: usize, body_len: usize, dims: usize) {
    if node_tuple_size(m, 0) + codes_size(m, body_len) + ITEM_ID_SIZE > page_capacity() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("neighbor_codes do not fit a page at {dims} dimensions with m = {m}"),
            "Use quantization = 'rabitq1' (the smaller codes), a smaller m, or leave out neighbor_codes.",
        );
    }
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
