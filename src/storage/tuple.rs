//! Encoding of the two tuple kinds on data pages (layout in the `storage` module docs).
//! Readers validate sizes against the tuple length, so a corrupt tuple gives an `ERROR`.

use hnsw_core::metric::VectorElem;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::page::{maxalign, ItemRef};
use crate::types::raise;

pub const KIND_VECTOR: u8 = 1;
pub const KIND_NODE: u8 = 2;
pub const FLAG_DELETED: u8 = 1;

pub const VECTOR_HEADER: usize = 8;
pub const NODE_HEADER: usize = 12;
pub const HEAP_TIDS: usize = 4;
const TIDS_START: usize = NODE_HEADER;
const LISTS_START: usize = TIDS_START + HEAP_TIDS * ItemRef::SIZE;

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index tuple is corrupted: {what}"))
}

/// Size of a vector tuple of `dims` elements of `E`.
pub fn vector_tuple_size<E: VectorElem>(dims: usize) -> usize {
    maxalign(VECTOR_HEADER + dims * E::SIZE)
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

/// Build a vector tuple.
pub fn encode_vector<E: VectorElem>(values: &[E], node: ItemRef, flags: u8, out: &mut Vec<u8>) {
    out.clear();
    out.resize(vector_tuple_size::<E>(values.len()), 0);
    out[0] = KIND_VECTOR;
    out[1] = flags;
    node.write(&mut out[2..8]);
    // SAFETY: E is f32 or f16, plain data without padding; we copy its bytes.
    let bytes = unsafe { core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), core::mem::size_of_val(values)) };
    out[VECTOR_HEADER..VECTOR_HEADER + bytes.len()].copy_from_slice(bytes);
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
        out[0] = KIND_NODE;
        out[2] = level as u8;
        out[3] = 1;
        vector.write(&mut out[4..10]);
        tid.write(&mut out[TIDS_START..TIDS_START + 6]);
        NodeTupleMut { data: out, m }
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
        let v = u16::from_le_bytes([self.data[10], self.data[11]]).wrapping_add(1);
        self.data[10..12].copy_from_slice(&v.to_le_bytes());
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.data[1] = flags;
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
