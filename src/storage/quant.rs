//! Quantized indexes: where their trained parameters live, and how an element's body is read.
//!
//! In an index with `quantization = 'sq8'` the vector tuple's body is a *code body* (the ref
//! of the element's full-precision vector tuple, then the 8-bit code: see `tuple`), so the
//! pages a graph walk reads hold codes and neighbour lists only; the full vectors sit in
//! [`KIND_FULL`](super::tuple::KIND_FULL) tuples on pages of their own, read to re-rank a
//! scan's results and to check the index. The trained parameters (per-dimension ranges) are a
//! `bincode` blob on a chain of parameter pages the meta page points at.

use std::rc::Rc;

use hnsw_core::metric::VectorElem;
use hnsw_core::quant::{RaBitQ, Sq8};
use pgrx::pg_sys;
use pgrx::prelude::*;
use zerocopy::little_endian::U32;
use zerocopy::FromBytes;

use super::buffer::{Buffer, Lock, Logging, Wal};
use super::element::Extent;
use super::meta::{ElemType, Meta, Quant};
use super::page::{page_capacity, ItemRef, ITEM_ID_SIZE};
use super::tuple::{
    as_elems, code_body_code, code_body_full, code_body_generation, encode_code_body, full_chunk, full_chunks, full_values, VectorTuple,
    CODE_START,
};
use crate::types::raise;

/// Kind of a page of trained parameters (special space).
pub const PAGE_PARAMS: u16 = 4;

/// Bytes of the blob one parameter page holds (one item; the first starts with the blob's
/// length as a u32).
fn chunk_bytes() -> usize {
    (page_capacity() - ITEM_ID_SIZE) & !7
}

/// Write `blob` on new pages at the end of the index (chained through the special space's
/// `next`); returns the first page.
pub fn write_params(rel: pg_sys::Relation, logging: Logging, blob: &[u8]) -> u32 {
    let mut data = (blob.len() as u32).to_le_bytes().to_vec();
    data.extend_from_slice(blob);
    let chunks: Vec<&[u8]> = data.chunks(chunk_bytes()).collect();
    // Pages are added first and written last to first, so each can name its successor.
    let bufs: Vec<Buffer> = chunks.iter().map(|_| Buffer::extend(rel, pg_sys::ForkNumber::MAIN_FORKNUM)).collect();
    for (i, (buf, chunk)) in bufs.iter().zip(&chunks).enumerate().rev() {
        let next = bufs.get(i + 1).map_or(0, |b| b.block());
        Wal::edit(rel, buf, logging, true, |page| {
            page.init(PAGE_PARAMS);
            page.set_opaque(super::page::Opaque::new(PAGE_PARAMS, next));
            if page.add_item(chunk).is_none() {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "hnsw: parameter chunk does not fit its page");
            }
        });
    }
    bufs[0].block()
}

/// The blob written by [`write_params`] from page `first` on.
pub fn read_params(rel: pg_sys::Relation, first: u32) -> Vec<u8> {
    let mut data = Vec::new();
    let (mut block, mut pages) = (first, 0u32);
    let nblocks = super::element::nblocks(rel);
    while block != 0 {
        if block >= nblocks || pages > nblocks {
            corrupt("parameter page chain leaves the index");
        }
        let buf = Buffer::read(rel, block, Lock::Share);
        let page = buf.page();
        page.expect_kind(PAGE_PARAMS);
        data.extend_from_slice(page.item(1).unwrap_or_else(|| corrupt("empty parameter page")));
        block = page.opaque().next.get();
        pages += 1;
    }
    let len = U32::read_from_prefix(&data).map(|(n, _)| n.get() as usize).unwrap_or(usize::MAX);
    if len > data.len() - 4 {
        corrupt("parameter blob shorter than its length");
    }
    data.drain(..4);
    data.truncate(len);
    data
}

/// Bytes of a sparse body of `nnz` elements (see [`ElemType::Sparse`]).
pub fn sparse_body_len(nnz: usize) -> usize {
    hnsw_core::sparse::stored_words(nnz) * 4
}

fn corrupt_tuple(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index tuple is corrupted: {what}"))
}

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index quantization parameters are corrupted: {what}"))
}

/// The trained quantizer of an index.
#[derive(Clone)]
pub enum Trained {
    Sq8(Rc<Sq8>),
    RaBitQ(Rc<RaBitQ>),
}

/// Seed of the random rotation of `rabitq1` indexes (fixed: the rotation is stored as its seed,
/// and any seed is as good as another).
pub const RABITQ_SEED: u64 = 0x4842_5157_5241_4251;

/// How this index's vector tuples hold vectors: the vectors themselves, or codes of trained
/// parameters (`None` until trained).
///
/// Parameters have a generation, stored with each code: 0 for those of the build or of the
/// first insert; 1 for those an index trained on too few rows gets when an insert retrains it
/// (`am::insert::retrain`), which then re-encodes every code. Codes it has not reached yet (an
/// insert racing it, a crash before it finished) keep generation 0 and are measured and decoded
/// with the first parameters, kept for them (`first`). A codec loaded before a retraining (a
/// scan, a VACUUM in progress) meets codes of generation 1 afterwards: it reads their
/// parameters then (`later`), with a data page's share lock held, which is safe because the
/// meta page's lock is only ever taken on its own and parameter pages are never locked
/// exclusively once published.
#[derive(Clone)]
pub struct Codec {
    pub quant: Quant,
    pub dims: usize,
    pub elem: ElemType,
    pub trained: Option<Trained>,
    /// The generation-0 parameters of a retrained index.
    pub first: Option<Trained>,
    /// Where `later` comes from (null for a build's codec, whose parameters are the newest).
    rel: pg_sys::Relation,
    /// The generation-1 parameters of an index retrained after this codec was loaded.
    later: Rc<std::cell::OnceCell<Option<Trained>>>,
}

impl Codec {
    /// The index's codec: its parameters read from their pages.
    pub fn load(rel: pg_sys::Relation, meta: &Meta) -> Codec {
        let trained = Self::load_params(rel, meta, meta.params);
        let first = if trained.is_some() { Self::load_params(rel, meta, meta.params_first) } else { None };
        Codec { quant: meta.quant, dims: meta.dims as usize, elem: meta.elem, trained, first, rel, later: Rc::default() }
    }

    /// A codec that holds no parameters (to size tuples).
    pub fn untrained(quant: Quant, dims: usize, elem: ElemType) -> Codec {
        Codec { quant, dims, elem, trained: None, first: None, rel: core::ptr::null_mut(), later: Rc::default() }
    }

    fn load_params(rel: pg_sys::Relation, meta: &Meta, params: u32) -> Option<Trained> {
        match meta.quant {
            Quant::None => None,
            _ if params == 0 => None,
            quant => {
                let blob = read_params(rel, params);
                let t = match quant {
                    Quant::Sq8 => Trained::Sq8(Rc::new(Sq8::from_bytes(&blob).unwrap_or_else(|e| corrupt(&e)))),
                    _ => Trained::RaBitQ(Rc::new(RaBitQ::from_bytes(&blob).unwrap_or_else(|e| corrupt(&e)))),
                };
                let dims = match &t {
                    Trained::Sq8(q) => q.dims(),
                    Trained::RaBitQ(q) => q.dims(),
                };
                if dims != meta.dims as usize {
                    corrupt("trained for other dimensions");
                }
                Some(t)
            }
        }
    }

    /// A codec with the given parameters (builds and first inserts, before they are on disk).
    pub fn with(meta: &Meta, dims: usize, trained: Trained) -> Codec {
        Codec { trained: Some(trained), ..Codec::untrained(meta.quant, dims, meta.elem) }
    }

    /// The generation of the current parameters: what new codes get.
    pub fn generation(&self) -> u8 {
        u8::from(self.first.is_some())
    }

    /// The parameters codes of `generation` were made with; `None` for a generation the index
    /// does not have.
    pub fn params_for(&self, generation: u8) -> Option<&Trained> {
        match (generation, &self.first) {
            (0, Some(first)) => Some(first),
            (0, None) | (1, Some(_)) => self.trained.as_ref(),
            (1, None) => self.later.get_or_init(|| self.load_later()).as_ref(),
            _ => None,
        }
    }

    /// As [`Codec::params_for`], `ERROR` for a generation the index does not have.
    pub fn params_of(&self, generation: u8) -> &Trained {
        self.params_for(generation)
            .unwrap_or_else(|| corrupt(&format!("a code of generation {generation}, which the index has no parameters for")))
    }

    /// The generation-1 parameters of an index retrained since this codec was loaded.
    fn load_later(&self) -> Option<Trained> {
        if self.rel.is_null() || self.trained.is_none() {
            return None;
        }
        let meta = Meta::read(self.rel);
        if meta.params_first == 0 {
            return None;
        }
        Self::load_params(self.rel, &meta, meta.params)
    }

    /// Train a quantizer of kind `quant` on `vectors` (a sample of the index's, f32), or on
    /// nothing for an index trained by its first insert (`first`).
    pub fn train<'a>(quant: Quant, dims: usize, vectors: impl Iterator<Item = &'a [f32]>) -> Trained {
        match quant {
            Quant::Sq8 => Trained::Sq8(Rc::new(Sq8::train(dims, vectors))),
            _ => Trained::RaBitQ(Rc::new(RaBitQ::train(dims, RABITQ_SEED, vectors))),
        }
    }

    /// Parameters for an index built without rows, from its first vector.
    pub fn train_first(quant: Quant, first: &[f32]) -> Trained {
        match quant {
            Quant::Sq8 => Trained::Sq8(Rc::new(Sq8::from_one(first))),
            _ => Trained::RaBitQ(Rc::new(RaBitQ::untrained(first.len(), RABITQ_SEED))),
        }
    }

    pub fn is_quantized(&self) -> bool {
        self.quant != Quant::None
    }

    /// Whether graph maintenance can work on decoded codes (8-bit codes decode to within half
    /// a step); 1-bit codes cannot stand in for vectors, so maintenance reads the full ones.
    pub fn decodes(&self) -> bool {
        self.quant != Quant::RaBitQ1
    }

    /// The trained parameters; `ERROR` if a quantized index has none yet (callers train first).
    pub fn trained(&self) -> &Trained {
        self.trained.as_ref().unwrap_or_else(|| corrupt("quantized index has no trained parameters"))
    }

    /// Bytes of a vector tuple's body; for a sparse index, whose bodies vary in length (see
    /// [`Codec::body_of`]), the largest.
    pub fn body_len(&self) -> usize {
        match self.quant {
            Quant::None if self.elem == ElemType::Sparse => sparse_body_len(crate::am::opclass::MAX_NNZ_SPARSE),
            Quant::None => self.dims * self.elem.size(),
            Quant::Sq8 => CODE_START + 4 + self.dims,
            Quant::RaBitQ1 => CODE_START + rabitq_code_len(self.dims),
        }
    }

    /// The body of vector tuple `t`: [`Codec::body_len`] bytes, or as many as a sparse body's
    /// first word says (`ERROR` if the tuple is shorter, or the count beyond the limit).
    #[inline]
    pub fn body_of<'a>(&self, t: &VectorTuple<'a>) -> &'a [u8] {
        t.body(self.tuple_body_len(t))
    }

    /// The filter values of vector tuple `t`, after its body.
    #[inline]
    pub fn payload_of<'a>(&self, t: &VectorTuple<'a>) -> &'a [u8] {
        t.payload(self.tuple_body_len(t))
    }

    #[inline]
    fn tuple_body_len(&self, t: &VectorTuple<'_>) -> usize {
        if self.elem != ElemType::Sparse {
            return self.body_len();
        }
        let nnz = t.first_word() as usize;
        if nnz > crate::am::opclass::MAX_NNZ_SPARSE {
            corrupt_tuple("sparse vector with more elements than an index takes");
        }
        sparse_body_len(nnz)
    }

    /// Sizes of the tuples of an element's full-precision vector (quantized indexes).
    pub fn full_sizes<E: VectorElem>(&self) -> Vec<usize> {
        full_chunks::<E>(self.dims).map(|r| super::tuple::element_tuple_size(r.len() * E::SIZE, 0)).collect()
    }

    /// Append the vector of a body as graph maintenance sees it (neighbour selection during
    /// inserts and VACUUM): the stored vector, or the code decoded. Only where [`Codec::decodes`].
    pub fn graph_vector<E: VectorElem>(&self, body: &[u8], out: &mut Vec<E>) {
        match (self.quant, self.trained.as_ref()) {
            // The body is the vector (its length, for sparse ones: see `body_of`).
            (Quant::None, _) => out.extend_from_slice(as_elems::<E>(body, body.len() / E::SIZE)),
            (_, Some(_)) if self.decodes() => DECODED.with(|f| {
                let Trained::Sq8(sq) = self.params_of(code_body_generation(body)) else { corrupt("1-bit codes do not decode") };
                // Once per element an insert's walk measures: decoded into a buffer kept per
                // backend, not a fresh allocation.
                let mut f = f.borrow_mut();
                f.resize(self.dims, 0.0);
                sq.decode(code_body_code(body), &mut f);
                let at = out.len();
                out.resize(at + self.dims, E::default());
                E::from_f32(&f, &mut out[at..]);
            }),
            _ => corrupt("1-bit codes do not decode"),
        }
    }

    /// The code of `f` (the vector in f32) under the current parameters.
    pub fn encode_f32(&self, f: &[f32]) -> Vec<u8> {
        self.encode_f32_with(self.trained(), f)
    }

    /// The code of `f` under `params`.
    pub fn encode_f32_with(&self, params: &Trained, f: &[f32]) -> Vec<u8> {
        match params {
            Trained::Sq8(q) => {
                let mut code = vec![0u8; q.code_len()];
                q.encode(f, &mut code);
                code
            }
            Trained::RaBitQ(q) => {
                let mut code = vec![0u8; q.code_len()];
                q.encode(f, &mut code);
                code
            }
        }
    }

    /// The body of a vector tuple for `v` (quantized: its code, and `full`, where its full
    /// vector tuple is).
    pub fn encode_body<E: VectorElem>(&self, v: &[E], full: ItemRef, out: &mut Vec<u8>) {
        if !self.is_quantized() {
            out.clear();
            // SAFETY: E is f32, f16, u8 or SparseWord (a u32), plain data without padding; we
            // copy its bytes.
            out.extend_from_slice(unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) });
            return;
        }
        let mut f = vec![0.0f32; v.len()];
        E::to_f32(v, &mut f);
        encode_code_body(full, self.generation(), &self.encode_f32(&f), out);
    }
}

impl Trained {
    /// The parameters as stored on the parameter pages.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Trained::Sq8(q) => q.to_bytes(),
            Trained::RaBitQ(q) => q.to_bytes(),
        }
    }
}

thread_local! {
    /// [`Codec::graph_vector`]'s decoded code.
    static DECODED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes of a `rabitq1` code of `dims` dimensions.
fn rabitq_code_len(dims: usize) -> usize {
    thread_local! {
        static LAST: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((usize::MAX, 0)) };
    }
    LAST.with(|c| {
        let (d, len) = c.get();
        if d == dims {
            return len;
        }
        let len = RaBitQ::untrained(dims.max(1), RABITQ_SEED).code_len();
        c.set((dims, len));
        len
    })
}

/// The vector graph maintenance sees of the element whose vector tuple is `vref`, appended to
/// `out` (decoded from its code, or read from its full vector, with the code's page released
/// first: one buffer lock at a time); its node ref and flags. `None` if it cannot be read.
pub fn read_graph_vector<E: VectorElem>(codec: &Codec, extent: &Extent, vref: ItemRef, out: &mut Vec<E>) -> Option<(ItemRef, u8)> {
    if !extent.holds(vref) {
        return None;
    }
    let (node, flags, full) = {
        let buf = Buffer::read_recent(extent.rel(), vref.block, Lock::Share);
        let data = buf.page().item(vref.offset)?;
        let t = VectorTuple::parse(data);
        let body = codec.body_of(&t);
        if codec.decodes() {
            codec.graph_vector(body, out);
            return Some((t.node(), t.flags()));
        }
        (t.node(), t.flags(), code_body_full(body))
    };
    with_full_at::<E, _>(extent, full, codec.dims, |v| out.extend_from_slice(v))?;
    Some((node, flags))
}

/// Read the full vector whose chain starts at `full` (one tuple, unless it is longer than a
/// page: see [`full_chunks`]) and pass it to `f`. One buffer lock at a time; a vector of
/// several tuples is copied together first. `None` if a ref of the chain is broken.
pub fn with_full_at<E: VectorElem, R>(extent: &Extent, full: ItemRef, dims: usize, f: impl FnOnce(&[E]) -> R) -> Option<R> {
    let chunk = full_chunk::<E>();
    if dims <= chunk {
        if !extent.holds(full) {
            return None;
        }
        let buf = Buffer::read_recent(extent.rel(), full.block, Lock::Share);
        let data = buf.page().item(full.offset)?;
        return Some(f(full_values::<E>(data, dims).0));
    }
    let mut v = Vec::with_capacity(dims);
    let mut at = full;
    for range in full_chunks::<E>(dims) {
        if !extent.holds(at) {
            return None;
        }
        let buf = Buffer::read_recent(extent.rel(), at.block, Lock::Share);
        let data = buf.page().item(at.offset)?;
        let (values, next) = full_values::<E>(data, range.len());
        v.extend_from_slice(values);
        at = next;
    }
    Some(f(&v))
}
