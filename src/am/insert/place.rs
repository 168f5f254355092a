//! Step 2 of an insert: write the new element's tuples — on the insert page, on a new page,
//! or in the two tuples of an element VACUUM freed — or add its heap row to an existing
//! element with an equal vector (inline, or in that element's TID lists).

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::super::filter::Attrs;
use super::super::graph::Elem;
use crate::storage::attr::{self, encode_record};
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::element::Extent;
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::{maxalign, page_capacity, ItemRef, ITEM_ID_SIZE, PAGE_DATA};
use crate::storage::quant::Codec;
use crate::storage::tuple::{
    code_body_full, codes_size, element_tuple_size, encode_element, encode_full, encode_tid_list, full_chunks, full_values,
    node_tuple_size, node_tuples, set_vector_node, NodeTuple, NodeTupleMut, TidList, TidListMut, VectorTuple, FLAG_CLAIMED, FLAG_DELETED,
    FLAG_FREE, HEAP_TIDS, KIND_FULL, KIND_NODE,
};

/// Where and how an element is written: the index, its meta page as the insert read it, and
/// how changes are logged (WAL, or not during a build).
pub(crate) struct Writer<'a> {
    pub index: pg_sys::Relation,
    pub meta: &'a Meta,
    pub codec: &'a Codec,
    pub logging: Logging,
}

/// A new element: its vector (checked, normalized), filter values, level, neighbour lists per
/// layer, and heap row.
pub(crate) struct NewElement<'a, E> {
    pub vector: &'a [E],
    pub attrs: &'a Attrs,
    pub level: usize,
    pub lists: &'a [Vec<ItemRef>],
    pub tid: ItemRef,
    /// With `neighbor_codes`: the length of a code body, and per layer-0 list entry its
    /// element's node ref and code body (`None`: unknown).
    pub codes: Option<(usize, &'a [KnownCode<'a>])>,
}

/// A neighbour's node ref and code body, where the insert's walk read them.
pub(crate) type KnownCode<'a> = Option<(ItemRef, &'a [u8])>;

/// Write an element's two tuples: side by side on one page when they fit together (one lock,
/// one WAL record), else — vectors near the dimension limit fill a page alone — the vector on
/// a page of its own and the node tuple where there is room, then the vector pointed at it.
/// Until that last step the vector is unreachable: no neighbour links to it yet.
pub(super) fn place<E: Elem>(w: &Writer<'_>, new: &NewElement<'_, E>) -> (ItemRef, ItemRef, usize) {
    let (index, meta, logging, attrs) = (w.index, w.meta, w.logging, new.attrs);
    if let Some(refs) = reuse_free(w, new) {
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
    let (vref, nref) = place_new(w, new, aref);
    if meta.filters > 0 {
        encode_record(0, attrs.nulls, vref, &attrs.slots, &mut record);
        attr::write(index, logging, aref, &record);
    }
    (vref, nref, new.level)
}

/// Write a new element's vector and node tuples.
fn place_new<E: Elem>(w: &Writer<'_>, new: &NewElement<'_, E>, aref: ItemRef) -> (ItemRef, ItemRef) {
    let (index, meta, logging) = (w.index, w.meta, w.logging);
    let (vector, payload, level, lists, tid) = (new.vector, &new.attrs.payload[..], new.level, new.lists, new.tid);
    let m = meta.m as usize;
    // A quantized element's full vector goes first, onto the pages walks do not read; its code
    // names it. (A crash before the element's own tuples are in leaves it unreferenced: space
    // lost, nothing wrong.)
    let full = if w.codec.is_quantized() { append_full(index, logging, vector) } else { ItemRef::INVALID };
    let mut body = Vec::new();
    w.codec.encode_body(vector, full, &mut body);
    // With the neighbours' codes when they fit a page (see NeighborCodes).
    let codes = new.codes.filter(|&(len, _)| node_tuple_size(m, level) + codes_size(m, len) + ITEM_ID_SIZE <= page_capacity());
    let (vsize, nsize) =
        (element_tuple_size(body.len(), payload.len()), node_tuple_size(m, level) + codes.map_or(0, |(len, _)| codes_size(m, len)));
    let node_tuple = |vref: ItemRef, out: &mut Vec<u8>| {
        let mut node = match codes {
            Some((len, _)) => NodeTupleMut::init_with_codes(out, m, level, vref, tid, len),
            None => NodeTupleMut::init(out, m, level, vref, tid),
        };
        node.set_attr(aref);
        for (layer, list) in lists.iter().enumerate() {
            node.set_neighbors(layer, list);
        }
        if let Some((_, known)) = codes {
            for (k, code) in known.iter().enumerate().take(lists.first().map_or(0, Vec::len)) {
                if let Some((n, b)) = code {
                    node.keep_code(k, *n, b);
                }
            }
        }
    };
    if maxalign(vsize) + maxalign(nsize) + 2 * ITEM_ID_SIZE <= page_capacity() {
        let first = append(index, Cursor::Hot, &[vsize, nsize], logging, |block, first, out| {
            let (vref, nref) = (ItemRef::new(block, first), ItemRef::new(block, first + 1));
            encode_element(&body, payload, nref, 0, &mut out[0]);
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
    encode_element(&body, payload, ItemRef::INVALID, 0, &mut tuple);
    write_items(index, &buf, true, &[tuple], logging);
    drop(buf);
    let nref = append(index, Cursor::Hot, &[nsize], logging, |_, _, out| node_tuple(vref, &mut out[0]));
    let buf = Buffer::read(index, vref.block, Lock::Exclusive);
    Wal::edit(index, &buf, logging, false, |page| {
        let data = page.item_mut(vref.offset).expect("vector tuple written above");
        set_vector_node(data, nref);
    });
    (vref, nref)
}

/// Whether the element whose vector tuple is `vref` (with a body of `body` bytes) has exactly
/// these filter values.
pub(super) fn same_payload(index: pg_sys::Relation, vref: ItemRef, codec: &Codec, payload: &[u8]) -> bool {
    let buf = Buffer::read_recent(index, vref.block, Lock::Share);
    let Some(data) = buf.page().item(vref.offset) else { return false };
    let stored = codec.payload_of(&VectorTuple::parse(data));
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
fn reuse_free<E: Elem>(w: &Writer<'_>, new: &NewElement<'_, E>) -> Option<(ItemRef, ItemRef, usize)> {
    let (index, meta, logging) = (w.index, w.meta, w.logging);
    let (vector, attrs, level, lists, tid) = (new.vector, new.attrs, new.level, new.lists, new.tid);
    let m = meta.m as usize;
    let (codec, body_len) = (w.codec, w.codec.body_len());
    // Its length, for the fit checks; written with the freed element's full-vector ref below.
    let (mut body, mut tuple) = (Vec::new(), Vec::new());
    codec.encode_body(vector, ItemRef::INVALID, &mut body);
    encode_element(&body, &attrs.payload, ItemRef::INVALID, 0, &mut tuple);
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
        // index has the same size unless filter values vary in length, or sparse vectors do.
        let mut fitting: Vec<(u16, usize, ItemRef)> = free
            .iter()
            .copied()
            .filter(|&(_, _, vref)| {
                (meta.filters == 0 && meta.elem != ElemType::Sparse) || {
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
        Wal::edit(index, &buf, logging, false, |page| {
            let mut t = NodeTupleMut::edit(page.item_mut(off).expect("seen above"), m);
            let flags = t.as_ref().flags();
            t.set_flags((flags & !FLAG_FREE) | FLAG_DELETED | FLAG_CLAIMED);
        });
        if free.len() == 1 {
            forget_free_page(index, block);
        }
        drop(buf);

        // The vector tuple (a quantized element keeps its full-vector tuple: same size).
        let vbuf = Buffer::read(index, vref.block, Lock::Exclusive);
        let full = Wal::edit(index, &vbuf, logging, false, |page| {
            let data = page.item_mut(vref.offset).filter(|d| d.len() >= tuple.len());
            let Some(data) = data else {
                crate::types::raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw: freed vector tuple does not match its element");
            };
            let full = if codec.is_quantized() { code_body_full(VectorTuple::parse(data).body(body_len)) } else { ItemRef::INVALID };
            codec.encode_body(vector, full, &mut body);
            encode_element(&body, &attrs.payload, nref, 0, &mut tuple);
            data[..tuple.len()].copy_from_slice(&tuple);
            data[tuple.len()..].fill(0);
            full
        });
        drop(vbuf);
        if codec.is_quantized() {
            rewrite_full(index, logging, full, vector);
        }

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
        Wal::edit(index, &nbuf, logging, false, |page| {
            let mut t = NodeTupleMut::edit(page.item_mut(off).expect("claimed above"), m);
            let known = match new.codes {
                Some((len, known)) if t.reset_with_codes(level, vref, tid, len) => known,
                _ => {
                    t.reset(level, vref, tid);
                    &[]
                }
            };
            t.set_attr(aref);
            for (layer, list) in lists.iter().take(level + 1).enumerate() {
                t.set_neighbors(layer, list);
            }
            for (k, code) in known.iter().enumerate().take(lists.first().map_or(0, Vec::len)) {
                if let Some((n, b)) = code {
                    t.keep_code(k, *n, b);
                }
            }
        });
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
pub(super) fn add_heap_tid(index: pg_sys::Relation, meta: &Meta, node: ItemRef, tid: ItemRef, logging: Logging) -> bool {
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
                Wal::edit(index, &buf, logging, false, |page| {
                    NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).push_heap_tid(tid);
                });
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
pub(crate) fn add_to_lists(
    index: pg_sys::Relation,
    meta: &Meta,
    node: ItemRef,
    head: ItemRef,
    tid: ItemRef,
    logging: Logging,
) -> Option<bool> {
    let m = meta.m as usize;
    let mut r = head;
    let extent = Extent::new(index);
    while extent.holds(r) {
        let buf = Buffer::read(index, r.block, Lock::Exclusive);
        let Some(data) = buf.page().item(r.offset) else { break };
        let list = TidList::parse(data);
        let next = list.next();
        if list.count() < list.capacity() {
            Wal::edit(index, &buf, logging, false, |page| {
                TidListMut::edit(page.item_mut(r.offset).expect("seen above")).push(tid);
            });
            drop(buf);
            return Some(confirm_list_row(index, m, node, logging));
        }
        r = next;
    }
    // Every list is full: a new one goes in front of them.
    let mut tuple = Vec::new();
    encode_tid_list(&[tid], head, &mut tuple);
    let new = append(index, Cursor::Hot, &[tuple.len()], logging, |_, _, out| out[0] = tuple.clone());
    let buf = Buffer::read(index, node.block, Lock::Exclusive);
    let Some(data) = buf.page().item(node.offset) else { return Some(false) };
    let t = NodeTuple::parse(data, m);
    if t.is_deleted() {
        // The new list holds only this row and is unreachable; the row gets its own element.
        return Some(false);
    }
    if t.overflow() == head {
        // Setting the overflow ref bumps the version too (see `confirm_list_row`).
        Wal::edit(index, &buf, logging, false, |page| {
            NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).set_overflow(new);
        });
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
    Wal::edit(index, &buf, logging, false, |page| {
        NodeTupleMut::edit(page.item_mut(node.offset).expect("seen above"), m).bump_version();
    });
    true
}

/// Append items of the given sizes on the insert page if they fit there, else on a new page
/// that becomes the insert page. `fill(block, first_offset, tuples)` encodes them once their
/// addresses are known. Returns the address of the first.
fn append(
    index: pg_sys::Relation,
    cursor: Cursor,
    sizes: &[usize],
    logging: Logging,
    fill: impl FnOnce(u32, u16, &mut [Vec<u8>]),
) -> ItemRef {
    let mut tuples = vec![Vec::new(); sizes.len()];
    // The insert page as it is now, not as it was when this insert began: with several
    // backends inserting, another one has often moved it on to a page it just added, and
    // appending to the stale one's successor would leave pages a few elements full.
    let insert_page = cursor.page(&Meta::read(index));
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
        let page = match cursor {
            Cursor::Hot => &mut meta.insert_page,
            Cursor::Cold => &mut meta.cold_page,
        };
        if *page < block {
            *page = block;
            true
        } else {
            false
        }
    });
    ItemRef::new(block, 1)
}

/// Which pages [`append`] fills: those graph walks read (elements, node tuples, TID lists),
/// or those they do not (the full vectors of a quantized index, read only to re-rank).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Hot,
    Cold,
}

impl Cursor {
    fn page(self, meta: &Meta) -> u32 {
        match self {
            Cursor::Hot => meta.insert_page,
            Cursor::Cold => meta.cold_page,
        }
    }
}

/// Write the full-vector chain of `vector` (see `full_chunks`) on the pages walks do not read,
/// last tuple first, so that each names its successor; returns the first's ref.
fn append_full<E: Elem>(index: pg_sys::Relation, logging: Logging, vector: &[E]) -> ItemRef {
    let ranges: Vec<_> = full_chunks::<E>(vector.len()).collect();
    let mut next = ItemRef::INVALID;
    for r in ranges.into_iter().rev() {
        let mut t = Vec::new();
        encode_full(&vector[r], next, &mut t);
        next = append(index, Cursor::Cold, &[t.len()], logging, |_, _, out| out[0] = t);
    }
    next
}

/// Overwrite the full-vector chain from `full` (a reused element's: same dimensions, so the
/// same tuples) with `vector`, a tuple at a time.
fn rewrite_full<E: Elem>(index: pg_sys::Relation, logging: Logging, full: ItemRef, vector: &[E]) {
    let mismatch = || -> ! {
        crate::types::raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw: freed element's full-vector tuples do not match it")
    };
    let extent = Extent::new(index);
    let mut at = full;
    let mut t = Vec::new();
    for r in full_chunks::<E>(vector.len()) {
        if !extent.holds(at) {
            mismatch();
        }
        let buf = Buffer::read(index, at.block, Lock::Exclusive);
        at = Wal::edit(index, &buf, logging, false, |page| {
            let Some(data) = page.item_mut(at.offset).filter(|d| d.first() == Some(&KIND_FULL)) else { mismatch() };
            let next = full_values::<E>(data, r.len()).1;
            encode_full(&vector[r], next, &mut t);
            if t.len() != data.len() {
                mismatch();
            }
            data.copy_from_slice(&t);
            next
        });
    }
}

/// Add `tuples` to an exclusively locked page (formatting it first if new), in one record.
fn write_items(index: pg_sys::Relation, buf: &Buffer, new_page: bool, tuples: &[Vec<u8>], logging: Logging) {
    Wal::edit(index, buf, logging, new_page, |page| {
        if new_page {
            page.init(PAGE_DATA);
        }
        let first = page.as_page().max_offset() + 1;
        for (i, t) in tuples.iter().enumerate() {
            if page.add_item(t) != Some(first + i as u16) {
                crate::types::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "hnsw: element did not fit the page chosen for it");
            }
        }
    });
}
