//! Encoding of the tuple kinds on data pages (layout in the `storage` module docs).
//! Readers validate sizes against the tuple length, so a corrupt tuple gives an `ERROR`.

use hnsw_core::metric::VectorElem;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::page::{maxalign, ItemRef, Page, PAGE_DATA};
use crate::types::raise;

pub const KIND_VECTOR: u8 = 1;
pub const KIND_NODE: u8 = 2;
pub const KIND_TIDS: u8 = 3;
/// The element has no live rows: searches route through it, never return it.
pub const FLAG_DELETED: u8 = 1;
/// A deleted element whose links VACUUM has removed: its two tuples may be reused by an
/// insert (always together with FLAG_DELETED until they are).
pub const FLAG_FREE: u8 = 2;
/// A freed element an insert has claimed for reuse and is rewriting (with FLAG_DELETED until
/// it is done). VACUUM leaves it alone, unless it is still claimed after VACUUM's insert
/// barrier: then its insert failed midway, and VACUUM frees it again.
pub const FLAG_CLAIMED: u8 = 4;

pub const VECTOR_HEADER: usize = 8;
pub const NODE_HEADER: usize = 12;
/// Heap TIDs kept in the node tuple; more go to a chain of TID-list tuples.
pub const HEAP_TIDS: usize = 3;
const TIDS_START: usize = NODE_HEADER;
const OVERFLOW_AT: usize = TIDS_START + HEAP_TIDS * ItemRef::SIZE;
const ATTR_AT: usize = OVERFLOW_AT + ItemRef::SIZE;
const LISTS_START: usize = ATTR_AT + ItemRef::SIZE;
/// TIDs per TID-list tuple.
pub const TID_LIST_CAPACITY: usize = 64;
const TID_LIST_HEADER: usize = 12;

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index tuple is corrupted: {what}"))
}

/// Size of a vector tuple of `dims` elements of `E` carrying `payload` bytes of filter values.
pub fn vector_tuple_size<E: VectorElem>(dims: usize, payload: usize) -> usize {
    maxalign(VECTOR_HEADER + dims * E::SIZE + payload)
}

pub fn layer_capacity(m: usize, layer: usize) -> usize {
    if layer == 0 {
        2 * m
    } else {
        m
    }
}

fn layer_start(m: usize, layer: usize) -> usize {
    LISTS_START + (0..layer).map(|l| 2 + layer_capacity(m, l) * ItemRef::SIZE).sum::<usize>()
}

/// Size of a node tuple for an element on layers `0..=level`.
pub fn node_tuple_size(m: usize, level: usize) -> usize {
    maxalign(layer_start(m, level + 1))
}

/// Build a vector tuple: the vector, then the element's filter values (`payload`, as encoded
/// by `am::filter`; empty for an index without filter columns).
pub fn encode_vector<E: VectorElem>(values: &[E], payload: &[u8], node: ItemRef, flags: u8, out: &mut Vec<u8>) {
    out.clear();
    out.resize(vector_tuple_size::<E>(values.len(), payload.len()), 0);
    out[0] = KIND_VECTOR;
    out[1] = flags;
    node.write(&mut out[2..8]);
    // SAFETY: E is f32 or f16, plain data without padding; we copy its bytes.
    let bytes = unsafe { core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), core::mem::size_of_val(values)) };
    out[VECTOR_HEADER..VECTOR_HEADER + bytes.len()].copy_from_slice(bytes);
    let at = VECTOR_HEADER + bytes.len();
    out[at..at + payload.len()].copy_from_slice(payload);
}

/// A vector tuple read in place.
pub struct VectorTuple<'a> {
    data: &'a [u8],
}

impl<'a> VectorTuple<'a> {
    #[inline]
    pub fn parse(data: &'a [u8]) -> VectorTuple<'a> {
        if data.len() < VECTOR_HEADER || data[0] != KIND_VECTOR {
            corrupt("expected a vector tuple");
        }
        VectorTuple { data }
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.data[1]
    }

    #[inline]
    pub fn node(&self) -> ItemRef {
        ItemRef::read(&self.data[2..8])
    }

    /// The filter values after the vector (self-delimiting; see `am::filter`).
    #[inline]
    pub fn payload<E: VectorElem>(&self, dims: usize) -> &'a [u8] {
        self.data.get(VECTOR_HEADER + dims * E::SIZE..).unwrap_or(&[])
    }

    /// The elements, borrowed from the page (no copy).
    #[inline]
    pub fn values<E: VectorElem>(&self, dims: usize) -> &'a [E] {
        if VECTOR_HEADER + dims * E::SIZE > self.data.len() {
            corrupt("vector tuple shorter than its dimensions");
        }
        let p = self.data[VECTOR_HEADER..].as_ptr();
        if p as usize % core::mem::align_of::<E>() != 0 {
            corrupt("misaligned vector tuple");
        }
        // SAFETY: length and alignment checked above; any bit pattern is a valid f32/f16.
        unsafe { core::slice::from_raw_parts(p.cast::<E>(), dims) }
    }
}

/// Point a vector tuple at its node tuple (written after it, for page-sized vectors).
pub fn set_vector_node(data: &mut [u8], node: ItemRef) {
    if data.len() < VECTOR_HEADER || data[0] != KIND_VECTOR {
        corrupt("expected a vector tuple");
    }
    node.write(&mut data[2..8]);
}

/// Set or clear flags of a vector tuple in place.
pub fn set_vector_flags(data: &mut [u8], flags: u8) {
    if data.len() < VECTOR_HEADER || data[0] != KIND_VECTOR {
        corrupt("expected a vector tuple");
    }
    data[1] = flags;
}

/// The node tuples on a data page, with their offsets (none on a new page or a page of
/// another kind). The page's lock must outlive the iteration.
pub fn node_tuples(page: Page<'_>, m: usize) -> impl Iterator<Item = (u16, NodeTuple<'_>)> {
    let last = if page.is_new() || page.opaque().kind != PAGE_DATA { 0 } else { page.max_offset() };
    (1..=last).filter_map(move |off| {
        let data = page.item(off)?;
        (data.first() == Some(&KIND_NODE)).then(|| (off, NodeTuple::parse(data, m)))
    })
}

/// A node tuple read in place.
pub struct NodeTuple<'a> {
    data: &'a [u8],
    m: usize,
}

impl<'a> NodeTuple<'a> {
    #[inline]
    pub fn parse(data: &'a [u8], m: usize) -> NodeTuple<'a> {
        if data.len() < LISTS_START || data[0] != KIND_NODE {
            corrupt("expected a node tuple");
        }
        let t = NodeTuple { data, m };
        if layer_start(m, t.level() + 1) > data.len() {
            corrupt("node tuple shorter than its level");
        }
        t
    }

    pub fn flags(&self) -> u8 {
        self.data[1]
    }

    /// The tuple's size in bytes (room for its level's lists, or more in a reused slot).
    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn is_deleted(&self) -> bool {
        self.flags() & FLAG_DELETED != 0
    }

    pub fn level(&self) -> usize {
        self.data[2] as usize
    }

    pub fn vector(&self) -> ItemRef {
        ItemRef::read(&self.data[4..10])
    }

    pub fn version(&self) -> u16 {
        u16::from_le_bytes([self.data[10], self.data[11]])
    }

    pub fn heap_tids(&self) -> impl Iterator<Item = pg_sys::ItemPointerData> + 'a {
        let n = (self.data[3] as usize).min(HEAP_TIDS);
        let data = self.data;
        (0..n).map(move |i| to_tid(ItemRef::read(&data[TIDS_START + i * 6..])))
    }

    pub fn heap_tid_count(&self) -> usize {
        (self.data[3] as usize).min(HEAP_TIDS)
    }

    /// The first TID-list tuple of this element's other rows, if it has more than fit here.
    pub fn overflow(&self) -> ItemRef {
        ItemRef::read(&self.data[OVERFLOW_AT..OVERFLOW_AT + 6])
    }

    /// This element's attribute record (block, index), for indexes with filter columns.
    pub fn attr(&self) -> ItemRef {
        ItemRef::read(&self.data[ATTR_AT..ATTR_AT + 6])
    }

    pub fn is_free(&self) -> bool {
        self.flags() & FLAG_FREE != 0
    }

    pub fn is_claimed(&self) -> bool {
        self.flags() & FLAG_CLAIMED != 0
    }

    /// Neighbour refs on `layer` (empty above the element's level).
    #[inline]
    pub fn neighbors(&self, layer: usize) -> impl Iterator<Item = ItemRef> + 'a {
        let (start, count) = if layer > self.level() {
            (0, 0)
        } else {
            let s = layer_start(self.m, layer);
            let count = u16::from_le_bytes([self.data[s], self.data[s + 1]]) as usize;
            (s + 2, count.min(layer_capacity(self.m, layer)))
        };
        let data = self.data;
        (0..count).map(move |i| ItemRef::read(&data[start + i * 6..start + i * 6 + 6]))
    }
}

pub fn to_tid(r: ItemRef) -> pg_sys::ItemPointerData {
    let mut tid = pg_sys::ItemPointerData::default();
    tid.ip_blkid.bi_hi = (r.block >> 16) as u16;
    tid.ip_blkid.bi_lo = (r.block & 0xffff) as u16;
    tid.ip_posid = r.offset;
    tid
}

pub fn from_tid(tid: &pg_sys::ItemPointerData) -> ItemRef {
    ItemRef::new(((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32, tid.ip_posid)
}

/// A node tuple being written (a fresh buffer, or the bytes of a tuple on a locked page).
pub struct NodeTupleMut<'a> {
    data: &'a mut [u8],
    m: usize,
}

impl<'a> NodeTupleMut<'a> {
    /// Format `out` as a new node tuple with empty neighbour lists.
    pub fn init(out: &'a mut Vec<u8>, m: usize, level: usize, vector: ItemRef, tid: ItemRef) -> NodeTupleMut<'a> {
        out.clear();
        out.resize(node_tuple_size(m, level), 0);
        let mut t = NodeTupleMut { data: out, m };
        t.reset(level, vector, tid);
        t
    }

    /// Make these bytes a fresh node tuple for a new element (reusing a freed one, whose
    /// tuple may be larger than this level needs).
    pub fn reset(&mut self, level: usize, vector: ItemRef, tid: ItemRef) {
        if node_tuple_size(self.m, level) > self.data.len() {
            corrupt("node tuple too small for its level");
        }
        self.data.fill(0);
        self.data[0] = KIND_NODE;
        self.data[2] = level as u8;
        self.data[3] = 1;
        vector.write(&mut self.data[4..10]);
        tid.write(&mut self.data[TIDS_START..TIDS_START + 6]);
        ItemRef::INVALID.write(&mut self.data[OVERFLOW_AT..OVERFLOW_AT + 6]);
        ItemRef::INVALID.write(&mut self.data[ATTR_AT..ATTR_AT + 6]);
    }

    pub fn set_attr(&mut self, r: ItemRef) {
        r.write(&mut self.data[ATTR_AT..ATTR_AT + 6]);
    }

    /// Add a heap TID inline; false if the inline places are full.
    pub fn push_heap_tid(&mut self, tid: ItemRef) -> bool {
        let n = self.data[3] as usize;
        if n >= HEAP_TIDS {
            return false;
        }
        tid.write(&mut self.data[TIDS_START + n * 6..TIDS_START + n * 6 + 6]);
        self.data[3] = n as u8 + 1;
        true
    }

    pub fn set_overflow(&mut self, r: ItemRef) {
        r.write(&mut self.data[OVERFLOW_AT..OVERFLOW_AT + 6]);
        self.bump_version();
    }

    /// Mark a change that is not in this tuple: a row added to one of the element's TID
    /// lists (VACUUM compares versions before it marks an element without rows deleted).
    pub fn bump_version(&mut self) {
        let v = u16::from_le_bytes([self.data[10], self.data[11]]).wrapping_add(1);
        self.data[10..12].copy_from_slice(&v.to_le_bytes());
    }

    /// Edit an existing node tuple in place.
    pub fn edit(data: &'a mut [u8], m: usize) -> NodeTupleMut<'a> {
        NodeTuple::parse(data, m);
        NodeTupleMut { data, m }
    }

    pub fn as_ref(&self) -> NodeTuple<'_> {
        NodeTuple { data: self.data, m: self.m }
    }

    /// Replace the list on `layer`, and bump the version.
    pub fn set_neighbors(&mut self, layer: usize, refs: &[ItemRef]) {
        let cap = layer_capacity(self.m, layer);
        if layer > self.data[2] as usize || refs.len() > cap {
            corrupt("neighbour list does not fit its node tuple");
        }
        let s = layer_start(self.m, layer);
        self.data[s..s + 2].copy_from_slice(&(refs.len() as u16).to_le_bytes());
        for (i, r) in refs.iter().enumerate() {
            r.write(&mut self.data[s + 2 + i * 6..s + 8 + i * 6]);
        }
        self.data[s + 2 + refs.len() * 6..s + 2 + cap * 6].fill(0);
        self.bump_version();
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.data[1] = flags;
        self.bump_version();
    }

    /// Keep only the heap TIDs for which `keep` says so; returns how many were dropped.
    pub fn retain_heap_tids(&mut self, mut keep: impl FnMut(&pg_sys::ItemPointerData) -> bool) -> usize {
        let n = (self.data[3] as usize).min(HEAP_TIDS);
        let mut kept = 0;
        for i in 0..n {
            let r = ItemRef::read(&self.data[TIDS_START + i * 6..]);
            if keep(&to_tid(r)) {
                r.write(&mut self.data[TIDS_START + kept * 6..TIDS_START + kept * 6 + 6]);
                kept += 1;
            }
        }
        self.data[TIDS_START + kept * 6..TIDS_START + n * 6].fill(0);
        self.data[3] = kept as u8;
        n - kept
    }
}

/// Size of a TID-list tuple.
pub fn tid_list_size() -> usize {
    maxalign(TID_LIST_HEADER + TID_LIST_CAPACITY * ItemRef::SIZE)
}

/// Build a TID-list tuple holding `tids` (at most [`TID_LIST_CAPACITY`]) and pointing at `next`.
pub fn encode_tid_list(tids: &[ItemRef], next: ItemRef, out: &mut Vec<u8>) {
    out.clear();
    out.resize(tid_list_size(), 0);
    out[0] = KIND_TIDS;
    out[2..4].copy_from_slice(&(tids.len() as u16).to_le_bytes());
    out[4..6].copy_from_slice(&(TID_LIST_CAPACITY as u16).to_le_bytes());
    next.write(&mut out[6..12]);
    for (i, t) in tids.iter().take(TID_LIST_CAPACITY).enumerate() {
        t.write(&mut out[TID_LIST_HEADER + i * 6..TID_LIST_HEADER + i * 6 + 6]);
    }
}

/// A TID-list tuple: more heap TIDs of an element with duplicate rows.
pub struct TidList<'a> {
    data: &'a [u8],
}

impl<'a> TidList<'a> {
    pub fn parse(data: &'a [u8]) -> TidList<'a> {
        if data.len() < TID_LIST_HEADER || data[0] != KIND_TIDS {
            corrupt("expected a TID-list tuple");
        }
        let t = TidList { data };
        if TID_LIST_HEADER + t.capacity() * 6 > data.len() || t.count() > t.capacity() {
            corrupt("TID-list tuple shorter than its capacity");
        }
        t
    }

    pub fn count(&self) -> usize {
        u16::from_le_bytes([self.data[2], self.data[3]]) as usize
    }

    pub fn capacity(&self) -> usize {
        u16::from_le_bytes([self.data[4], self.data[5]]) as usize
    }

    pub fn next(&self) -> ItemRef {
        ItemRef::read(&self.data[6..12])
    }

    pub fn tids(&self) -> impl Iterator<Item = pg_sys::ItemPointerData> + 'a {
        let data = self.data;
        (0..self.count()).map(move |i| to_tid(ItemRef::read(&data[TID_LIST_HEADER + i * 6..])))
    }
}

/// A TID-list tuple being changed in place.
pub struct TidListMut<'a> {
    data: &'a mut [u8],
}

impl<'a> TidListMut<'a> {
    pub fn edit(data: &'a mut [u8]) -> TidListMut<'a> {
        TidList::parse(data);
        TidListMut { data }
    }

    pub fn push(&mut self, tid: ItemRef) -> bool {
        let t = TidList { data: self.data };
        let (n, cap) = (t.count(), t.capacity());
        if n >= cap {
            return false;
        }
        tid.write(&mut self.data[TID_LIST_HEADER + n * 6..TID_LIST_HEADER + n * 6 + 6]);
        self.data[2..4].copy_from_slice(&(n as u16 + 1).to_le_bytes());
        true
    }

    pub fn set_next(&mut self, next: ItemRef) {
        next.write(&mut self.data[6..12]);
    }

    /// Keep only the TIDs `keep` says so; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&pg_sys::ItemPointerData) -> bool) -> usize {
        let n = TidList { data: self.data }.count();
        let mut kept = 0;
        for i in 0..n {
            let r = ItemRef::read(&self.data[TID_LIST_HEADER + i * 6..]);
            if keep(&to_tid(r)) {
                r.write(&mut self.data[TID_LIST_HEADER + kept * 6..TID_LIST_HEADER + kept * 6 + 6]);
                kept += 1;
            }
        }
        self.data[TID_LIST_HEADER + kept * 6..TID_LIST_HEADER + n * 6].fill(0);
        self.data[2..4].copy_from_slice(&(kept as u16).to_le_bytes());
        n - kept
    }
}
