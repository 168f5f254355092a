//! The checker's pass: every page read once (element, list and record tables bounded by
//! `maintenance_work_mem`), then the cross-references, links, reachability and entry point.

use std::collections::{HashMap, HashSet};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::Report;
use crate::am::mem::{Budget, Setting};
use crate::am::opclass::MAX_NNZ_SPARSE;
use crate::storage::attr::{record_ref, ATTR_DELETED, PAGE_ATTR};
use crate::storage::buffer::{Buffer, Lock, Strategy};
use crate::storage::element::Extent;
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::{ItemRef, MAX_ITEMS, PAGE_DATA, PAGE_META};
use crate::storage::quant::{sparse_body_len, with_full_at, Codec, PAGE_PARAMS};
use crate::storage::tuple::as_elems;
use crate::storage::tuple::{
    code_body_code, code_body_full, code_body_generation, NodeTuple, TidList, VectorTuple, FLAG_DELETED, KIND_FULL, KIND_NODE, KIND_TIDS,
    KIND_VECTOR, VECTOR_HEADER,
};
use hnsw_core::sparse::{valid_words, SparseWord};

/// The hash of the code the full vector whose chain starts at `full` gets under the parameters
/// of `generation`; `None` if the chain is broken.
fn full_code_hash(codec: &Codec, generation: u8, extent: &Extent, full: ItemRef) -> Option<u64> {
    let params = codec.params_of(generation);
    let code = |v: &[f32]| hash_bytes(&codec.encode_f32_with(params, v));
    match codec.elem {
        ElemType::F32 => with_full_at::<f32, _>(extent, full, codec.dims, code),
        ElemType::F16 => {
            with_full_at::<half::f16, _>(extent, full, codec.dims, |v| code(&v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()))
        }
        // Bit and sparsevec indexes are never quantized (opclass.rs refuses it): no codes.
        ElemType::Bit | ElemType::Sparse => None,
    }
}

/// Every neighbour code element `e`'s node tuple keeps must be its neighbour's: the node ref
/// of the element its list entry names, and the code that element has (or, of an older
/// generation, the code its full vector gets under those parameters).
#[allow(clippy::too_many_arguments)]
fn check_neighbor_codes(
    index: pg_sys::Relation,
    m: usize,
    e: &Element,
    vectors: &HashMap<ItemRef, (ItemRef, bool)>,
    codes: &HashMap<ItemRef, (ItemRef, u8, u64)>,
    codec: &Codec,
    extent: &Extent,
    r: &mut Report,
) {
    let at = format!("({},{})", e.node.block, e.node.offset);
    let buf = Buffer::read_recent(index, e.node.block, Lock::Share);
    let Some(data) = buf.page().item(e.node.offset) else { return };
    let t = NodeTuple::parse(data, m);
    let Some(kept) = t.codes() else { return };
    if kept.body_len() != codec.body_len() {
        r.problem(format!("{at}: neighbour code slots of {} bytes, not {}", kept.body_len(), codec.body_len()));
        return;
    }
    for (k, n) in t.neighbors(0).enumerate() {
        r.code_slots += 1;
        let Some((node, body)) = kept.get(k) else { continue };
        r.codes_kept += 1;
        if vectors.get(&n).map(|&(back, _)| back) != Some(node) {
            r.problem(format!("{at}: neighbour code {k} names node ({},{}), not its neighbour's", node.block, node.offset));
            continue;
        }
        let (full, generation, code) = (code_body_full(body), code_body_generation(body), hash_bytes(code_body_code(body)));
        let same = match codes.get(&n) {
            Some(&(f, g, c)) if f == full && g == generation => c == code,
            Some(&(f, _, _)) if f == full => {
                codec.params_for(generation).is_some() && full_code_hash(codec, generation, extent, full) == Some(code)
            }
            _ => false,
        };
        if !same {
            r.problem(format!("{at}: neighbour code {k} is not its neighbour's code"));
        }
    }
}

/// A 64-bit hash of a code, to compare codes without keeping them.
fn hash_bytes(b: &[u8]) -> u64 {
    crate::am::filter::hash_bytes(b)
}

struct Element {
    node: ItemRef,
    level: usize,
    deleted: bool,
    free: bool,
    overflow: ItemRef,
    attr: ItemRef,
    /// Neighbours, layer 0 first (8 bytes a link: a 1M-row index has 30M of them).
    links: Box<[ItemRef]>,
    /// Where each layer below the top one ends in `links` (empty for level-0 elements).
    ends: Vec<u16>,
    /// Inline heap TIDs (the TID lists are only counted).
    tids: Box<[pg_sys::ItemPointerData]>,
    /// Whether its node tuple keeps its neighbours' codes (checked in a second reading).
    codes: bool,
}

impl Element {
    /// (layer, neighbour) of every link.
    fn layered(&self) -> impl Iterator<Item = (usize, ItemRef)> + '_ {
        let mut layer = 0;
        self.links.iter().enumerate().map(move |(i, &n)| {
            while layer < self.ends.len() && i >= self.ends[layer] as usize {
                layer += 1;
            }
            (layer, n)
        })
    }
}

/// Bytes the allocator hands out for `bytes` (its chunk header and rounding), for the budget.
fn alloc_bytes(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes + 8).next_multiple_of(16).max(32)
    }
}

pub(crate) fn check(index: pg_sys::Relation) -> Report {
    let mut r = Report::default();
    let meta = Meta::read(index);
    let columns = crate::am::opclass::columns(index);
    if columns.len() != meta.filters as usize {
        r.problem(format!("meta page says {} filter columns, the catalog {}", meta.filters, columns.len()));
    }
    let m = meta.m as usize;
    // SAFETY: the index is open and locked by the caller.
    let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, pg_sys::ForkNumber::MAIN_FORKNUM) };
    r.pages = nblocks;
    // vector ref -> node ref it names; node ref -> element
    let mut vectors: HashMap<ItemRef, (ItemRef, bool)> = HashMap::new();
    let mut elements: HashMap<ItemRef, (ItemRef, Element)> = HashMap::new();
    // TID lists: ref -> (count, next)
    let mut lists: HashMap<ItemRef, (usize, ItemRef)> = HashMap::new();
    // Attribute records: ref -> (vector ref, flags, NULL bitmap, slots); the pages' next links.
    let mut records: HashMap<ItemRef, (ItemRef, u8, u8, Vec<u8>)> = HashMap::new();
    let mut attr_next: HashMap<u32, u32> = HashMap::new();
    // Payload of each vector tuple (filter indexes).
    let mut payloads: HashMap<ItemRef, Vec<u8>> = HashMap::new();
    // Quantized: the parameters (an ERROR if unreadable), each code tuple's full-vector ref
    // and a hash of its code, and per full-vector tuple the hash of the code its vector gets.
    let codec = Codec::load(index, &meta);
    r.provisional = meta.provisional;
    r.retrained = meta.params_first != 0;
    if codec.is_quantized() && meta.has_entry() && codec.trained.is_none() {
        r.problem("quantized index with elements but no trained parameters".into());
    }
    let body_len = codec.body_len();
    let mut codes: HashMap<ItemRef, (ItemRef, u8, u64)> = HashMap::new();
    let extent = Extent::new(index);
    // Everything is held in maps until the end: bounded by maintenance_work_mem (estimated
    // bytes per entry, hash table slack and the later per-element sets included).
    let mut budget = Budget::new(Setting::MaintenanceWorkMem);
    let what = "hnsw_index_check";
    // A pass over every page: through a ring of buffers, like a sequential scan, so checking a
    // large index does not evict the shared buffers other backends are using.
    let strategy = Strategy::bulk_read();
    for block in 0..nblocks {
        check_for_interrupts!();
        let buf = Buffer::read_with(index, block, Lock::Share, strategy.as_ptr());
        let page = buf.page();
        if page.is_new() {
            continue;
        }
        let kind = page.opaque().kind;
        if block == 0 {
            if kind != PAGE_META {
                r.problem("block 0 is not a meta page".into());
            }
            continue;
        }
        if kind == PAGE_ATTR && meta.filters > 0 {
            let size = meta.attr_record as usize;
            for (i, rec) in page.attr_records(size).enumerate() {
                budget.charge(2 * core::mem::size_of::<(ItemRef, (ItemRef, u8, u8, Vec<u8>))>() + alloc_bytes(rec.slots().len()), what);
                records.insert(record_ref(block, i), (rec.vector(), rec.flags(), rec.nulls(), rec.slots().to_vec()));
            }
            attr_next.insert(block, page.attr_next());
            continue;
        }
        if kind == PAGE_PARAMS && codec.is_quantized() {
            continue;
        }
        if kind != PAGE_DATA {
            r.problem(format!("block {block}: unexpected page kind {kind}"));
            continue;
        }
        if page.max_offset() as usize > MAX_ITEMS {
            r.problem(format!("block {block}: {} items, more than {MAX_ITEMS}", page.max_offset()));
        }
        for off in 1..=page.max_offset() {
            let at = ItemRef::new(block, off);
            let Some(data) = page.item(off) else {
                r.problem(format!("({block},{off}): unused line pointer"));
                continue;
            };
            match data.first() {
                Some(&KIND_VECTOR) => {
                    let t = VectorTuple::parse(data);
                    // A sparse body's length is in its first word (see `Codec::body_of`).
                    let nnz = t.first_word() as usize;
                    if meta.elem == ElemType::Sparse && nnz > MAX_NNZ_SPARSE {
                        r.problem(format!("({block},{off}): sparse vector of {nnz} elements, more than {MAX_NNZ_SPARSE}"));
                        continue;
                    }
                    let body_len = if meta.elem == ElemType::Sparse { sparse_body_len(nnz) } else { body_len };
                    if data.len() < VECTOR_HEADER + body_len {
                        r.problem(format!("({block},{off}): vector tuple shorter than {} dimensions", meta.dims));
                        continue;
                    }
                    if meta.elem == ElemType::Sparse
                        && !valid_words(as_elems::<SparseWord>(t.body(body_len), body_len / 4), meta.dims as usize, MAX_NNZ_SPARSE)
                    {
                        r.problem(format!(
                            "({block},{off}): sparse vector with indices out of order or beyond {} dimensions, or values not finite",
                            meta.dims
                        ));
                    }
                    budget.charge(48, what);
                    vectors.insert(at, (t.node(), t.flags() & FLAG_DELETED != 0));
                    if codec.is_quantized() {
                        let b = t.body(body_len);
                        budget.charge(2 * core::mem::size_of::<(ItemRef, (ItemRef, u8, u64))>(), what);
                        let generation = code_body_generation(b);
                        if codec.params_for(generation).is_none() {
                            r.problem(format!(
                                "({block},{off}): code of parameters of generation {generation}, which the index does not have"
                            ));
                        }
                        if generation < codec.generation() {
                            r.first_generation_codes += 1;
                        }
                        codes.insert(at, (code_body_full(b), generation, hash_bytes(code_body_code(b))));
                    }
                    if meta.filters > 0 {
                        let payload = t.payload(body_len);
                        budget.charge(2 * core::mem::size_of::<(ItemRef, Vec<u8>)>() + alloc_bytes(payload.len()), what);
                        payloads.insert(at, payload.to_vec());
                    }
                }
                Some(&KIND_NODE) => {
                    let t = NodeTuple::parse(data, m);
                    let mut links = Vec::new();
                    let mut ends = Vec::new();
                    for l in 0..=t.level() {
                        links.extend(t.neighbors(l));
                        if l < t.level() {
                            ends.push(links.len() as u16);
                        }
                    }
                    let links = links.into_boxed_slice();
                    // The map's entry twice (its slack, and both tables while it grows), the
                    // allocations, and the later per-element sets (owners, levels, reached).
                    budget.charge(
                        2 * core::mem::size_of::<(ItemRef, (ItemRef, Element))>()
                            + 96
                            + alloc_bytes(links.len() * core::mem::size_of::<ItemRef>())
                            + alloc_bytes(ends.capacity() * 2)
                            + alloc_bytes(t.heap_tid_count() * core::mem::size_of::<pg_sys::ItemPointerData>()),
                        what,
                    );
                    if !t.is_deleted() {
                        r.heap_tids += t.heap_tid_count() as u64;
                    }
                    if t.heap_tid_count() == 0 && !t.is_deleted() && !t.overflow().is_valid() {
                        r.rowless += 1;
                    }
                    if t.is_free() && !t.is_deleted() {
                        r.problem(format!("({block},{off}): free element not marked deleted"));
                    }
                    let e = Element {
                        node: at,
                        level: t.level(),
                        deleted: t.is_deleted(),
                        // A claimed element (being reused) is as free as a freed one: its old
                        // lists are leftovers until the insert rewrites them.
                        free: t.is_free() || t.is_claimed(),
                        overflow: t.overflow(),
                        attr: t.attr(),
                        links,
                        ends,
                        tids: t.heap_tids().collect(),
                        codes: t.codes().is_some(),
                    };
                    elements.insert(at, (t.vector(), e));
                }
                // Checked from their elements, below.
                Some(&KIND_FULL) if codec.is_quantized() => {}
                Some(&KIND_TIDS) => {
                    let l = TidList::parse(data);
                    budget.charge(48, what);
                    lists.insert(at, (l.count(), l.next()));
                }
                other => r.problem(format!("({block},{off}): unknown tuple kind {other:?}")),
            }
        }
    }
    // Full-vector tuples claimed by an element (each by one at most).
    let mut owners: HashSet<ItemRef> = HashSet::new();
    // Level of the element each vector belongs to, for the layer invariant.
    let mut level_of_vector: HashMap<ItemRef, usize> = HashMap::new();
    for (vref, e) in elements.values() {
        r.elements += 1;
        r.deleted += e.deleted as u64;
        r.free += e.free as u64;
        if !e.deleted {
            r.max_level = r.max_level.max(e.level);
        }
        // The element's TID lists: each must exist, and belong to one element only.
        let mut l = e.overflow;
        let mut hops = 0;
        while l.is_valid() && !e.deleted {
            match lists.remove(&l) {
                None => {
                    r.problem(format!("({},{}): TID list ({},{}) missing or shared", e.node.block, e.node.offset, l.block, l.offset));
                    break;
                }
                Some((count, next)) => {
                    r.heap_tids += count as u64;
                    l = next;
                }
            }
            hops += 1;
            if hops > 1_000_000 {
                r.problem(format!("({},{}): TID list chain loops", e.node.block, e.node.offset));
                break;
            }
        }
        match vectors.get(vref) {
            None => r.problem(format!(
                "({},{}): vector ref ({},{}) is not a vector tuple",
                e.node.block, e.node.offset, vref.block, vref.offset
            )),
            Some((back, deleted)) => {
                if *back != e.node {
                    r.problem(format!("({},{}): its vector tuple points at another node", e.node.block, e.node.offset));
                }
                // The node is marked first: a VACUUM stopped between the two leaves the vector
                // unmarked, which is harmless (the node decides). The other way round would
                // hide a live row.
                if *deleted && !e.deleted {
                    r.problem(format!("({},{}): vector tuple deleted but its node is live", e.node.block, e.node.offset));
                }
            }
        }
        if codec.is_quantized() && !e.free {
            let at = format!("({},{})", e.node.block, e.node.offset);
            match codes.get(vref) {
                None => {}
                Some((full, generation, code)) => match full_code_hash(&codec, *generation, &extent, *full) {
                    None => r.problem(format!("{at}: full-vector ref ({},{}) leads to no full vector", full.block, full.offset)),
                    Some(want) if want != *code => {
                        r.problem(format!("{at}: its code is not its full vector's under the trained parameters"))
                    }
                    Some(_) => {
                        if !owners.insert(*full) {
                            r.problem(format!("{at}: full-vector tuple ({},{}) shared with another element", full.block, full.offset));
                        }
                    }
                },
            }
        }
        if e.codes && !e.free && !e.deleted {
            check_neighbor_codes(index, m, e, &vectors, &codes, &codec, &extent, &mut r);
        }
        level_of_vector.insert(*vref, e.level);
        if meta.filters > 0 && !e.deleted {
            let at = format!("({},{})", e.node.block, e.node.offset);
            match records.get(&e.attr) {
                None => r.problem(format!("{at}: attribute record ({},{}) missing", e.attr.block, e.attr.offset)),
                Some((v, flags, nulls, slots)) => {
                    if v != vref {
                        r.problem(format!("{at}: its attribute record names another vector"));
                    }
                    if flags & ATTR_DELETED != 0 {
                        r.problem(format!("{at}: live element with a deleted attribute record"));
                    }
                    let payload = payloads.get(vref).map(Vec::as_slice).unwrap_or(&[]);
                    if !columns.record_agrees(payload, *nulls, slots) {
                        r.problem(format!("{at}: attribute record disagrees with the stored filter values"));
                    }
                }
            }
        }
    }
    if meta.filters > 0 {
        // The attribute chain: from attr_first through every page that has records, ending at
        // attr_last (an empty page off the chain is what a crash mid-extension leaves).
        let mut on_chain: HashSet<u32> = HashSet::new();
        let mut b = meta.attr_first;
        let mut last = 0;
        while b != 0 && on_chain.insert(b) {
            last = b;
            match attr_next.get(&b) {
                None => {
                    r.problem(format!("attribute chain names block {b}, which is no attribute page"));
                    break;
                }
                Some(&next) => b = next,
            }
        }
        if b != 0 {
            r.problem("attribute page chain loops".into());
        }
        if !on_chain.contains(&meta.attr_last) && meta.attr_last != last {
            r.problem(format!("meta attr_last {} is not on the attribute chain", meta.attr_last));
        }
        for rref in records.keys() {
            if !on_chain.contains(&rref.block) {
                r.problem(format!("attribute record ({},{}) is on a page off the chain", rref.block, rref.offset));
                break;
            }
        }
    }
    for (vref, (node, _)) in &vectors {
        if node.is_valid() && !elements.contains_key(node) {
            r.problem(format!("vector ({},{}) names a missing node", vref.block, vref.offset));
        }
    }
    for (_, e) in elements.values() {
        if e.free {
            // A freed element's lists are leftovers nobody follows.
            continue;
        }
        let (mut layer0, mut layer0_live) = (0, 0);
        for (layer, n) in e.layered() {
            r.links += 1;
            match level_of_vector.get(&n) {
                None => r.problem(format!(
                    "({},{}) layer {layer}: link to ({},{}) which is no element",
                    e.node.block, e.node.offset, n.block, n.offset
                )),
                Some(&lvl) if lvl < layer => r.problem(format!(
                    "({},{}){} layer {layer}: link to ({},{}) whose level is only {lvl}{}",
                    e.node.block,
                    e.node.offset,
                    if e.deleted { " (deleted)" } else { "" },
                    n.block,
                    n.offset,
                    if vectors.get(&n).is_some_and(|(_, d)| *d) { " (deleted)" } else { "" }
                )),
                Some(_) => {
                    let (node, deleted) = vectors[&n];
                    if !e.deleted && elements.get(&node).is_some_and(|(_, t)| t.free) {
                        r.problem(format!(
                            "({},{}) layer {layer}: link to ({},{}), a freed element",
                            e.node.block, e.node.offset, n.block, n.offset
                        ));
                    }
                    if layer == 0 {
                        layer0 += 1;
                        layer0_live += !deleted as usize;
                    }
                }
            }
        }
        if !e.deleted && layer0 > 0 && layer0_live == 0 {
            r.problem(format!("({},{}): live element links only to deleted elements", e.node.block, e.node.offset));
        }
    }
    // Every live element must be reachable on layer 0 from the entry point, through deleted
    // ones too (they route): a row nothing reaches is a row no search returns.
    if meta.has_entry() {
        let mut reached: HashSet<ItemRef> = HashSet::new();
        let mut stack = vec![meta.entry_vector];
        reached.insert(meta.entry_vector);
        while let Some(v) = stack.pop() {
            let Some((node, _)) = vectors.get(&v) else { continue };
            let Some((_, e)) = elements.get(node) else { continue };
            for (layer, n) in e.layered().filter(|_| !e.free) {
                if layer == 0 && reached.insert(n) {
                    stack.push(n);
                }
            }
        }
        let unreached: Vec<&Element> =
            elements.iter().filter(|(_, (v, e))| !e.deleted && !reached.contains(v)).map(|(_, (_, e))| e).collect();
        // An insert places its element before linking it, so one that failed in between (a
        // crash, or an insert still running) leaves an element nothing links to yet. Its row
        // never committed: no search should return it, and VACUUM frees it. Only elements
        // holding a row that is visible now must be reachable.
        let (lost, invisible): (Vec<&Element>, Vec<&Element>) = unreached.into_iter().partition(|e| holds_visible_row(index, e));
        r.unlinked_invisible = invisible.len() as u64;
        if let Some(e) = lost.first() {
            r.problem(format!(
                "{} live element(s) unreachable from the entry point, e.g. ({},{})",
                lost.len(),
                e.node.block,
                e.node.offset
            ));
        }
    }
    if meta.has_entry() {
        match elements.get(&meta.entry_node) {
            None => r.problem("meta entry point is not a node tuple".into()),
            Some((vref, e)) => {
                if *vref != meta.entry_vector {
                    r.problem("meta entry point's vector ref disagrees with its node".into());
                }
                if e.level != meta.entry_level as usize {
                    r.problem(format!("entry point level {} but meta says {}", e.level, meta.entry_level));
                }
                if e.deleted && r.deleted < r.elements {
                    r.problem("the entry point is deleted".into());
                }
                if e.level < r.max_level {
                    r.problem(format!("entry point level {} below the top level {}", e.level, r.max_level));
                }
            }
        }
    } else if r.elements > r.deleted {
        // Deleted elements need no entry point: VACUUM of the last live row leaves none.
        r.problem("live elements but no entry point".into());
    }
    r
}

/// Whether some row of `e` is visible to a fresh snapshot (conservatively true when its TIDs
/// continue in TID lists).
fn holds_visible_row(index: pg_sys::Relation, e: &Element) -> bool {
    if e.overflow.is_valid() {
        return true;
    }
    // SAFETY: the index is open and locked, so its table exists; the table is opened and
    // closed here with AccessShareLock, the snapshot registered and unregistered around the
    // fetches (an ERROR in between releases both through the resource owner).
    unsafe {
        let heap = pg_sys::table_open((*(*index).rd_index).indrelid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let visible = e.tids.iter().any(|tid| {
            let mut tid = *tid;
            let mut all_dead = false;
            pg_sys::table_index_fetch_tuple_check(heap, &mut tid, snapshot, &mut all_dead)
        });
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(heap, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        visible
    }
}
