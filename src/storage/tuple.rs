//! Encoding of the tuple kinds on data pages (layout in the `storage` module docs).
//! Readers validate sizes against the tuple length, so a corrupt tuple gives an `ERROR`.

use hnsw_core::metric::VectorElem;
use pgrx::pg_sys;
use pgrx::prelude::*;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::page::{maxalign, DiskRef, ItemRef, Page, PAGE_DATA};
use crate::types::raise;

pub const KIND_VECTOR: u8 = 1;
pub const KIND_NODE: u8 = 2;
pub const KIND_TIDS: u8 = 3;
/// The full-precision vector of an element of a quantized index, on pages the walk does not
/// read (its element tuple holds the code and a ref to this one).
pub const KIND_FULL: u8 = 4;
/// The element has no live rows: searches route through it, never return it.
pub const FLAG_DELETED: u8 = 1;
/// A deleted element whose links VACUUM has removed: its two tuples may be reused by an
/// insert (always together with FLAG_DELETED until they are).
pub const FLAG_FREE: u8 = 2;
/// A freed element an insert has claimed for reuse and is rewriting (with FLAG_DELETED until
/// it is done). VACUUM leaves it alone, unless it is still claimed after VACUUM's insert
/// barrier: then its insert failed midway, and VACUUM frees it again.
pub const FLAG_CLAIMED: u8 = 4;

/// A node tuple that ends with its layer-0 neighbours' codes ([`NeighborCodes`]).
pub const FLAG_CODES: u8 = 8;

/// Heap TIDs kept in the node tuple; more go to a chain of TID-list tuples.
pub const HEAP_TIDS: usize = 3;
/// TIDs per TID-list tuple.
pub const TID_LIST_CAPACITY: usize = 64;

/// The fixed part of a vector tuple ("vector tuple" in the `storage` layout table); the
/// elements follow at [`VECTOR_HEADER`], 8-aligned.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct VectorHeader {
    kind: u8,
    flags: u8,
    node: DiskRef,
}

pub const VECTOR_HEADER: usize = core::mem::size_of::<VectorHeader>();
const _: () = assert!(VECTOR_HEADER == 8);

/// The fixed part of a node tuple ("node tuple" in the `storage` layout table, offsets 0..42);
/// the per-layer neighbour lists follow.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct NodeHeader {
    kind: u8,
    flags: u8,
    level: u8,
    /// Inline heap TIDs in use.
    tid_count: u8,
    vector: DiskRef,
    version: U16,
    tids: [DiskRef; HEAP_TIDS],
    overflow: DiskRef,
    attr: DiskRef,
}

/// Offset of the inline heap TIDs: the node header before them.
pub const NODE_HEADER: usize = core::mem::offset_of!(NodeHeader, tids);
const LISTS_START: usize = core::mem::size_of::<NodeHeader>();
const _: () = assert!(NODE_HEADER == 12 && LISTS_START == 42);

/// The head of one layer's neighbour list in a node tuple: the count, then `cap(l)` refs.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct ListHeader {
    count: U16,
}

const _: () = assert!(core::mem::size_of::<ListHeader>() == 2);

/// The fixed part of a TID-list tuple ("TID list" in the `storage` layout table); the heap TIDs
/// follow.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct TidListHeader {
    kind: u8,
    flags: u8,
    count: U16,
    capacity: U16,
    next: DiskRef,
}

const TID_LIST_HEADER: usize = core::mem::size_of::<TidListHeader>();
const _: () = assert!(TID_LIST_HEADER == 12);

/// The header at the start of `data`; callers checked its length (parse), so a short one is
/// corruption all the same.
#[inline]
fn header<H: FromBytes + KnownLayout + Immutable>(data: &[u8]) -> &H {
    match H::ref_from_prefix(data) {
        Ok((h, _)) => h,
        Err(_) => corrupt("tuple shorter than its header"),
    }
}

#[inline]
fn header_mut<H: FromBytes + IntoBytes + KnownLayout>(data: &mut [u8]) -> &mut H {
    match H::mut_from_prefix(data) {
        Ok((h, _)) => h,
        Err(_) => corrupt("tuple shorter than its header"),
    }
}

/// `count` refs stored at `data[start..]`.
#[inline]
fn refs(data: &[u8], start: usize, count: usize) -> &[DiskRef] {
    match data.get(start..).map(|d| <[DiskRef]>::ref_from_prefix_with_elems(d, count)) {
        Some(Ok((r, _))) => r,
        _ => corrupt("ref array beyond the tuple"),
    }
}

#[inline]
fn refs_mut(data: &mut [u8], start: usize, count: usize) -> &mut [DiskRef] {
    match data.get_mut(start..).map(|d| <[DiskRef]>::mut_from_prefix_with_elems(d, count)) {
        Some(Ok((r, _))) => r,
        _ => corrupt("ref array beyond the tuple"),
    }
}

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index tuple is corrupted: {what}"))
}

/// Size of a vector tuple whose body (the vector, or a code and its full vector's ref) is
/// `body` bytes, carrying `payload` bytes of filter values.
pub fn element_tuple_size(body: usize, payload: usize) -> usize {
    maxalign(VECTOR_HEADER + body + payload)
}

/// The fixed start of a code body (quantized indexes): where the element's full-precision
/// vector tuple is, and the generation of the parameters the code was made with (see
/// `storage::quant`: 0, or 1 once an index trained on too few rows has been retrained); the
/// code follows at [`CODE_START`].
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct CodeHeader {
    full: DiskRef,
    /// Zero in codes written before generations existed: generation 0, as they are.
    generation: u8,
    reserved: u8,
}

/// Offset of the code in a code body.
pub const CODE_START: usize = core::mem::size_of::<CodeHeader>();
const _: () = assert!(CODE_START == 8);

/// A code body: the full vector's ref, the generation of the parameters of `code`, then `code`.
pub fn encode_code_body(full: ItemRef, generation: u8, code: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(CodeHeader { full: full.into(), generation, reserved: 0 }.as_bytes());
    out.extend_from_slice(code);
}

/// The generation of the parameters a code body's code was made with.
#[inline]
pub fn code_body_generation(body: &[u8]) -> u8 {
    header::<CodeHeader>(body).generation
}

/// Replace the code (and its generation) of a code body in place, keeping its full vector's ref.
pub fn rewrite_code_body(body: &mut [u8], generation: u8, code: &[u8]) {
    if body.len() != CODE_START + code.len() {
        corrupt("code body of another length than its new code");
    }
    header_mut::<CodeHeader>(body).generation = generation;
    body[CODE_START..].copy_from_slice(code);
}

/// The full vector's ref in a code body.
pub fn code_body_full(body: &[u8]) -> ItemRef {
    header::<CodeHeader>(body).full.get()
}

/// The code in a code body.
pub fn code_body_code(body: &[u8]) -> &[u8] {
    body.get(CODE_START..).unwrap_or_else(|| corrupt("code body shorter than its header"))
}

/// Elements of `E` per full-vector tuple: a vector longer than that (a quantized index takes
/// more dimensions than a page holds) is a chain of such tuples, each naming the next.
pub fn full_chunk<E: VectorElem>() -> usize {
    ((page_capacity_items() - VECTOR_HEADER) / E::SIZE) & !1
}

/// Room for one item on an empty data page, line pointer included, maxaligned down.
fn page_capacity_items() -> usize {
    (super::page::page_capacity() - super::page::ITEM_ID_SIZE) & !7
}

/// The element ranges of the tuples a full vector of `dims` elements takes.
pub fn full_chunks<E: VectorElem>(dims: usize) -> impl Iterator<Item = core::ops::Range<usize>> {
    let c = full_chunk::<E>();
    (0..dims.div_ceil(c).max(1)).map(move |k| k * c..((k + 1) * c).min(dims))
}

/// Build one tuple of a full vector's chain: a vector tuple of kind [`KIND_FULL`] holding
/// `values` (one of [`full_chunks`]), without filter values, its node ref naming the next
/// tuple of the chain (invalid at the last). The element's code body names the first.
pub fn encode_full<E: VectorElem>(values: &[E], next: ItemRef, out: &mut Vec<u8>) {
    encode_vector(values, &[], next, 0, out);
    out[0] = KIND_FULL;
}

/// The elements of a full-vector tuple holding `len` of them (see [`encode_full`]), and the
/// next tuple of its chain.
pub fn full_values<E: VectorElem>(data: &[u8], len: usize) -> (&[E], ItemRef) {
    if data.first() != Some(&KIND_FULL) || data.len() < VECTOR_HEADER {
        corrupt("expected a full-vector tuple");
    }
    let t = VectorTuple { data };
    (t.values::<E>(len), t.node())
}

pub fn layer_capacity(m: usize, layer: usize) -> usize {
    if layer == 0 {
        2 * m
    } else {
        m
    }
}

fn layer_start(m: usize, layer: usize) -> usize {
    LISTS_START + (0..layer).map(|l| core::mem::size_of::<ListHeader>() + layer_capacity(m, l) * ItemRef::SIZE).sum::<usize>()
}

/// Bytes a node tuple needs after its lists for its layer-0 neighbours' codes (code bodies of
/// `body_len` bytes): one slot per list entry (the neighbour's node ref, its code body), then
/// the slot size (see [`NeighborCodes`]).
pub fn codes_size(m: usize, body_len: usize) -> usize {
    // Maxaligned, as pages store tuples: the slots end right before the trailer, at the end.
    maxalign(layer_capacity(m, 0) * code_slot_size(body_len) + CODES_TRAILER)
}

fn code_slot_size(body_len: usize) -> usize {
    ItemRef::SIZE + body_len
}

const CODES_TRAILER: usize = 2;

/// Size of a node tuple for an element on layers `0..=level`.
pub fn node_tuple_size(m: usize, level: usize) -> usize {
    maxalign(layer_start(m, level + 1))
}

/// Build a vector tuple: the vector, then the element's filter values (`payload`, as encoded
/// by `am::filter`; empty for an index without filter columns).
pub fn encode_vector<E: VectorElem>(values: &[E], payload: &[u8], node: ItemRef, flags: u8, out: &mut Vec<u8>) {
    // SAFETY: E is f32 or f16, plain data without padding; we copy its bytes.
    let bytes = unsafe { core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), core::mem::size_of_val(values)) };
    encode_element(bytes, payload, node, flags, out);
}

/// Build a vector tuple from its body bytes (see [`element_tuple_size`]).
pub fn encode_element(body: &[u8], payload: &[u8], node: ItemRef, flags: u8, out: &mut Vec<u8>) {
    out.clear();
    out.resize(element_tuple_size(body.len(), payload.len()), 0);
    *header_mut::<VectorHeader>(out) = VectorHeader { kind: KIND_VECTOR, flags, node: node.into() };
    out[VECTOR_HEADER..VECTOR_HEADER + body.len()].copy_from_slice(body);
    let at = VECTOR_HEADER + body.len();
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
    fn header(&self) -> &'a VectorHeader {
        header(self.data)
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.header().flags
    }

    #[inline]
    pub fn node(&self) -> ItemRef {
        self.header().node.get()
    }

    /// The filter values after a body of `body` bytes (self-delimiting; see `am::filter`).
    #[inline]
    pub fn payload(&self, body: usize) -> &'a [u8] {
        self.data.get(VECTOR_HEADER + body..).unwrap_or(&[])
    }

    /// The first word of the body, little-endian (a sparse body's element count); 0 when the
    /// tuple is too short to have one.
    #[inline]
    pub fn first_word(&self) -> u32 {
        self.data.get(VECTOR_HEADER..VECTOR_HEADER + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    }

    /// The body: `len` bytes after the header (the vector, or a code body).
    #[inline]
    pub fn body(&self, len: usize) -> &'a [u8] {
        self.data.get(VECTOR_HEADER..VECTOR_HEADER + len).unwrap_or_else(|| corrupt("vector tuple shorter than its body"))
    }

    /// The elements, borrowed from the page (no copy).
    #[inline]
    pub fn values<E: VectorElem>(&self, dims: usize) -> &'a [E] {
        if VECTOR_HEADER + dims * E::SIZE > self.data.len() {
            corrupt("vector tuple shorter than its dimensions");
        }
        let p = self.data[VECTOR_HEADER..].as_ptr();
        if !(p as usize).is_multiple_of(core::mem::align_of::<E>()) {
            corrupt("misaligned vector tuple");
        }
        // SAFETY: length and alignment checked above; any bit pattern is a valid f32/f16.
        unsafe { core::slice::from_raw_parts(p.cast::<E>(), dims) }
    }
}

/// `bytes` (a full-precision body) as elements; `ERROR` if misaligned or short.
#[inline]
pub fn as_elems<E: VectorElem>(bytes: &[u8], dims: usize) -> &[E] {
    if bytes.len() < dims * E::SIZE {
        corrupt("vector shorter than its dimensions");
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(core::mem::align_of::<E>()) {
        corrupt("misaligned vector tuple");
    }
    // SAFETY: length and alignment checked above; any bit pattern is a valid f32/f16.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<E>(), dims) }
}

/// Point a vector tuple at its node tuple (written after it, for page-sized vectors).
pub fn set_vector_node(data: &mut [u8], node: ItemRef) {
    vector_header_mut(data).node.set(node);
}

fn vector_header_mut(data: &mut [u8]) -> &mut VectorHeader {
    match VectorHeader::mut_from_prefix(data) {
        Ok((h, _)) if h.kind == KIND_VECTOR => h,
        _ => corrupt("expected a vector tuple"),
    }
}

/// Set or clear flags of a vector tuple in place.
pub fn set_vector_flags(data: &mut [u8], flags: u8) {
    vector_header_mut(data).flags = flags;
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

/// The vector tuples on a data page, with their offsets (none on a new page or a page of
/// another kind). The page's lock must outlive the iteration.
pub fn vector_tuples(page: Page<'_>) -> impl Iterator<Item = (u16, VectorTuple<'_>)> {
    let last = if page.is_new() || page.opaque().kind != PAGE_DATA { 0 } else { page.max_offset() };
    (1..=last).filter_map(move |off| {
        let data = page.item(off)?;
        (data.first() == Some(&KIND_VECTOR)).then(|| (off, VectorTuple::parse(data)))
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

    #[inline]
    fn header(&self) -> &'a NodeHeader {
        header(self.data)
    }

    pub fn flags(&self) -> u8 {
        self.header().flags
    }

    /// The tuple's size in bytes (room for its level's lists, or more in a reused slot).
    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn is_deleted(&self) -> bool {
        self.flags() & FLAG_DELETED != 0
    }

    pub fn level(&self) -> usize {
        self.header().level as usize
    }

    pub fn vector(&self) -> ItemRef {
        self.header().vector.get()
    }

    pub fn version(&self) -> u16 {
        self.header().version.get()
    }

    pub fn heap_tids(&self) -> impl Iterator<Item = pg_sys::ItemPointerData> + 'a {
        let h = self.header();
        h.tids[..self.heap_tid_count()].iter().map(|r| to_tid(r.get()))
    }

    pub fn heap_tid_count(&self) -> usize {
        (self.header().tid_count as usize).min(HEAP_TIDS)
    }

    /// The first TID-list tuple of this element's other rows, if it has more than fit here.
    pub fn overflow(&self) -> ItemRef {
        self.header().overflow.get()
    }

    /// This element's attribute record (block, index), for indexes with filter columns.
    pub fn attr(&self) -> ItemRef {
        self.header().attr.get()
    }

    pub fn is_free(&self) -> bool {
        self.flags() & FLAG_FREE != 0
    }

    pub fn is_claimed(&self) -> bool {
        self.flags() & FLAG_CLAIMED != 0
    }

    /// Its layer-0 neighbours' codes, if it carries them ([`FLAG_CODES`]).
    #[inline]
    pub fn codes(&self) -> Option<NeighborCodes<'a>> {
        if self.flags() & FLAG_CODES == 0 {
            return None;
        }
        let len = self.data.len();
        let slot = u16::from_le_bytes([self.data[len - 2], self.data[len - 1]]) as usize;
        let area = layer_capacity(self.m, 0) * slot;
        let start = len.checked_sub(CODES_TRAILER + area).filter(|&st| st >= layer_start(self.m, self.level() + 1));
        let Some(start) = start.filter(|_| slot > ItemRef::SIZE) else { corrupt("neighbour codes beyond the tuple") };
        Some(NeighborCodes { area: &self.data[start..start + area], slot })
    }

    /// Neighbour refs on `layer` (empty above the element's level).
    #[inline]
    pub fn neighbors(&self, layer: usize) -> impl Iterator<Item = ItemRef> + 'a {
        let list: &'a [DiskRef] = if layer > self.level() {
            &[]
        } else {
            let s = layer_start(self.m, layer);
            let count = (header::<ListHeader>(&self.data[s..]).count.get() as usize).min(layer_capacity(self.m, layer));
            refs(self.data, s + core::mem::size_of::<ListHeader>(), count)
        };
        list.iter().map(DiskRef::get)
    }
}

/// The codes of a node's layer-0 neighbours, kept in its node tuple so that a search measures
/// them without reading their pages. Slot `k` belongs to list entry `k`: a list change
/// ([`NodeTupleMut::set_neighbors`], the only writer of lists) moves each kept entry's slot
/// with it and clears the slots of new entries, so a slot never holds the code of another
/// element than the one its entry names (an element's code and node ref do not change while
/// any list links to it; its code's generation may, see `storage::quant`, and the body
/// carries its own). An empty slot is zeros (node ref (0,0), which no element has).
pub struct NeighborCodes<'a> {
    area: &'a [u8],
    slot: usize,
}

impl<'a> NeighborCodes<'a> {
    /// The node ref and code body of list entry `k`'s element; `None` if its slot is empty.
    #[inline]
    pub fn get(&self, k: usize) -> Option<(ItemRef, &'a [u8])> {
        let at = self.area.get(k * self.slot..(k + 1) * self.slot)?;
        let node = refs(at, 0, 1)[0].get();
        (node.block != 0).then(|| (node, &at[ItemRef::SIZE..]))
    }

    /// Bytes of a code body in a slot.
    pub fn body_len(&self) -> usize {
        self.slot - ItemRef::SIZE
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

    /// [`init`](Self::init), with empty slots for its layer-0 neighbours' code bodies of
    /// `body_len` bytes ([`NeighborCodes`]; fill them with [`set_code`](Self::set_code)).
    pub fn init_with_codes(
        out: &'a mut Vec<u8>,
        m: usize,
        level: usize,
        vector: ItemRef,
        tid: ItemRef,
        body_len: usize,
    ) -> NodeTupleMut<'a> {
        out.clear();
        out.resize(node_tuple_size(m, level) + codes_size(m, body_len), 0);
        let slot = code_slot_size(body_len) as u16;
        let len = out.len();
        let mut t = NodeTupleMut { data: out, m };
        t.reset(level, vector, tid);
        t.header().flags = FLAG_CODES;
        t.data[len - 2..].copy_from_slice(&slot.to_le_bytes());
        t
    }

    /// [`reset`](Self::reset), with empty neighbour-code slots at the end of the tuple if it has
    /// room for them besides its level's lists; whether it had.
    pub fn reset_with_codes(&mut self, level: usize, vector: ItemRef, tid: ItemRef, body_len: usize) -> bool {
        self.reset(level, vector, tid);
        let len = self.data.len();
        if node_tuple_size(self.m, level) + codes_size(self.m, body_len) > len {
            return false;
        }
        self.header().flags = FLAG_CODES;
        self.data[len - 2..].copy_from_slice(&(code_slot_size(body_len) as u16).to_le_bytes());
        true
    }

    /// Store the node ref and code body of the element of layer-0 entry `k` (set already, see
    /// [`set_neighbors`](Self::set_neighbors)) in its slot.
    pub fn set_code(&mut self, k: usize, node: ItemRef, body: &[u8]) {
        if k >= self.as_ref().neighbors(0).count() || node.block == 0 {
            corrupt("code for a missing list entry");
        }
        let Some((start, slot)) = self.code_slots() else { corrupt("node tuple without code slots") };
        if body.len() != slot - ItemRef::SIZE {
            corrupt("code body of another length than its slot");
        }
        let at = &mut self.data[start + k * slot..start + (k + 1) * slot];
        refs_mut(at, 0, 1)[0].set(node);
        at[ItemRef::SIZE..].copy_from_slice(body);
    }

    /// [`set_code`](Self::set_code) if this tuple keeps neighbours' codes of `body`'s length;
    /// nothing otherwise.
    pub fn keep_code(&mut self, k: usize, node: ItemRef, body: &[u8]) {
        if self.code_slots().is_some_and(|(_, slot)| slot == ItemRef::SIZE + body.len()) {
            self.set_code(k, node, body);
        }
    }

    /// Where the code slots start, and the size of one.
    fn code_slots(&self) -> Option<(usize, usize)> {
        let t = self.as_ref();
        let codes = t.codes()?;
        Some((self.data.len() - CODES_TRAILER - codes.area.len(), codes.slot))
    }

    /// Make these bytes a fresh node tuple for a new element (reusing a freed one, whose
    /// tuple may be larger than this level needs).
    pub fn reset(&mut self, level: usize, vector: ItemRef, tid: ItemRef) {
        if node_tuple_size(self.m, level) > self.data.len() {
            corrupt("node tuple too small for its level");
        }
        self.data.fill(0);
        let zero = DiskRef::from(ItemRef::new(0, 0));
        *self.header() = NodeHeader {
            kind: KIND_NODE,
            flags: 0,
            level: level as u8,
            tid_count: 1,
            vector: vector.into(),
            version: U16::new(0),
            tids: [tid.into(), zero, zero],
            overflow: ItemRef::INVALID.into(),
            attr: ItemRef::INVALID.into(),
        };
    }

    #[inline]
    fn header(&mut self) -> &mut NodeHeader {
        header_mut(self.data)
    }

    pub fn set_attr(&mut self, r: ItemRef) {
        self.header().attr.set(r);
    }

    /// Add a heap TID inline; false if the inline places are full.
    pub fn push_heap_tid(&mut self, tid: ItemRef) -> bool {
        let h = self.header();
        let n = h.tid_count as usize;
        if n >= HEAP_TIDS {
            return false;
        }
        h.tids[n].set(tid);
        h.tid_count = n as u8 + 1;
        true
    }

    pub fn set_overflow(&mut self, r: ItemRef) {
        self.header().overflow.set(r);
        self.bump_version();
    }

    /// Mark a change that is not in this tuple: a row added to one of the element's TID
    /// lists (VACUUM compares versions before it marks an element without rows deleted).
    pub fn bump_version(&mut self) {
        let h = self.header();
        h.version = U16::new(h.version.get().wrapping_add(1));
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
    pub fn set_neighbors(&mut self, layer: usize, list: &[ItemRef]) {
        let cap = layer_capacity(self.m, layer);
        if layer > self.header().level as usize || list.len() > cap {
            corrupt("neighbour list does not fit its node tuple");
        }
        // Codes move with their entries; new entries have none (see NeighborCodes).
        if layer == 0 {
            if let Some((start, slot)) = self.code_slots() {
                let area = start..start + cap * slot;
                let old_list: Vec<ItemRef> = self.as_ref().neighbors(0).collect();
                let old = self.data[area.clone()].to_vec();
                let slots = &mut self.data[area];
                slots.fill(0);
                for (k, r) in list.iter().enumerate() {
                    if let Some(j) = old_list.iter().position(|o| o == r) {
                        slots[k * slot..(k + 1) * slot].copy_from_slice(&old[j * slot..(j + 1) * slot]);
                    }
                }
            }
        }
        let s = layer_start(self.m, layer);
        header_mut::<ListHeader>(&mut self.data[s..]).count = U16::new(list.len() as u16);
        let slots = refs_mut(self.data, s + core::mem::size_of::<ListHeader>(), cap);
        for (slot, r) in slots.iter_mut().zip(list) {
            slot.set(*r);
        }
        slots[list.len()..].as_mut_bytes().fill(0);
        self.bump_version();
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.header().flags = flags;
        self.bump_version();
    }

    /// Keep only the heap TIDs for which `keep` says so; returns how many were dropped.
    pub fn retain_heap_tids(&mut self, mut keep: impl FnMut(&pg_sys::ItemPointerData) -> bool) -> usize {
        let n = self.as_ref().heap_tid_count();
        let h = self.header();
        let kept = retain_refs(&mut h.tids[..n], &mut keep);
        h.tid_count = kept as u8;
        n - kept
    }
}

/// Keep the refs (heap TIDs) `keep` says so, in order, at the front of `refs`, and zero the
/// rest; how many were kept.
fn retain_refs(refs: &mut [DiskRef], keep: &mut impl FnMut(&pg_sys::ItemPointerData) -> bool) -> usize {
    let mut kept = 0;
    for i in 0..refs.len() {
        let r = refs[i];
        if keep(&to_tid(r.get())) {
            refs[kept] = r;
            kept += 1;
        }
    }
    refs[kept..].as_mut_bytes().fill(0);
    kept
}

/// Size of a TID-list tuple.
pub fn tid_list_size() -> usize {
    maxalign(TID_LIST_HEADER + TID_LIST_CAPACITY * ItemRef::SIZE)
}

/// Build a TID-list tuple holding `tids` (at most [`TID_LIST_CAPACITY`]) and pointing at `next`.
pub fn encode_tid_list(tids: &[ItemRef], next: ItemRef, out: &mut Vec<u8>) {
    out.clear();
    out.resize(tid_list_size(), 0);
    let tids = &tids[..tids.len().min(TID_LIST_CAPACITY)];
    *header_mut::<TidListHeader>(out) = TidListHeader {
        kind: KIND_TIDS,
        flags: 0,
        count: U16::new(tids.len() as u16),
        capacity: U16::new(TID_LIST_CAPACITY as u16),
        next: next.into(),
    };
    for (slot, t) in refs_mut(out, TID_LIST_HEADER, tids.len()).iter_mut().zip(tids) {
        slot.set(*t);
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

    #[inline]
    fn header(&self) -> &'a TidListHeader {
        header(self.data)
    }

    pub fn count(&self) -> usize {
        self.header().count.get() as usize
    }

    pub fn capacity(&self) -> usize {
        self.header().capacity.get() as usize
    }

    pub fn next(&self) -> ItemRef {
        self.header().next.get()
    }

    pub fn tids(&self) -> impl Iterator<Item = pg_sys::ItemPointerData> + 'a {
        refs(self.data, TID_LIST_HEADER, self.count()).iter().map(|r| to_tid(r.get()))
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
        refs_mut(self.data, TID_LIST_HEADER, cap)[n].set(tid);
        header_mut::<TidListHeader>(self.data).count = U16::new(n as u16 + 1);
        true
    }

    pub fn set_next(&mut self, next: ItemRef) {
        header_mut::<TidListHeader>(self.data).next.set(next);
    }

    /// Keep only the TIDs `keep` says so; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&pg_sys::ItemPointerData) -> bool) -> usize {
        let n = TidList { data: self.data }.count();
        let kept = retain_refs(refs_mut(self.data, TID_LIST_HEADER, n), &mut keep);
        header_mut::<TidListHeader>(self.data).count = U16::new(kept as u16);
        n - kept
    }
}
