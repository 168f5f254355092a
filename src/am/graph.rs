//! The graph as stored in pages, walked by scans and inserts through the core's
//! [`Walk`] trait, and the preparation of vectors for it (dimension checks, normalization).

use half::f16;
use hnsw_core::graph::{Candidate, Visited, Walk};
use hnsw_core::metric::{bits_distance, normalize, Metric, VectorElem};
use hnsw_core::sparse::{encode_words, SparseWord};
use pgrx::pg_sys;

use super::filter::Filter;
use super::opclass::Kind;
use crate::storage::buffer::{Buffer, Lock};
pub use crate::storage::element::Extent;
use crate::storage::meta::{ElemType, Quant};
use crate::storage::page::{ItemRef, Page};
use crate::storage::prefetch::visit_items;
use crate::storage::quant::{sparse_body_len, with_full_at, Codec, Trained};
use crate::storage::tuple::{
    as_elems, code_body_code, code_body_full, code_body_generation, NodeTuple, VectorTuple, FLAG_DELETED, VECTOR_HEADER,
};
use crate::storage::Meta;
use crate::types::bit::{check_same_bits, BitArg};
use crate::types::ops::Aligned;
use crate::types::sparsevec::{check_same_dim_counts, SparseArg};
use crate::types::{check_expected_dim, Element, VecArg};

/// Element types an index can store: their graph behaviour ([`VectorElem`]) and how a value of
/// their SQL type becomes a stored element or a query.
pub trait Elem: VectorElem + PartialEq {
    /// See [`prepare_stored`].
    fn prepare_stored(datum: pg_sys::Datum, kind: &Kind, dims: u32, quant: Quant) -> Option<Vec<Self>>;
    /// See [`prepare_query`].
    fn prepare_query(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>>;
}

impl Elem for f32 {
    fn prepare_stored(datum: pg_sys::Datum, kind: &Kind, dims: u32, quant: Quant) -> Option<Vec<Self>> {
        prepare_stored_vec(datum, kind, dims, quant)
    }
    fn prepare_query(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>> {
        prepare_query_vec::<f32>(datum, kind, dims)
    }
}

impl Elem for f16 {
    fn prepare_stored(datum: pg_sys::Datum, kind: &Kind, dims: u32, quant: Quant) -> Option<Vec<Self>> {
        prepare_stored_vec(datum, kind, dims, quant)
    }
    fn prepare_query(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>> {
        prepare_query_vec::<f16>(datum, kind, dims)
    }
}

/// `bit`: the packed bytes as they are (`dims` counts bytes; the length in bits is checked
/// against the column's, `kind.bits`). A query holds one byte value per f32.
impl Elem for u8 {
    fn prepare_stored(datum: pg_sys::Datum, kind: &Kind, _dims: u32, quant: Quant) -> Option<Vec<Self>> {
        // SAFETY: the datum is a non-null value of the indexed column, of type bit.
        let v = unsafe { BitArg::from_datum_unchecked(datum) };
        kind.check_dims(v.bits(), quant);
        check_expected_dim(kind.bits as i32, v.bits());
        Some(v.bytes().to_vec())
    }
    fn prepare_query(datum: pg_sys::Datum, kind: &Kind, _dims: u32) -> Option<Vec<f32>> {
        // SAFETY: the datum is a non-null value of the ORDER BY operator's right-hand type, bit.
        let v = unsafe { BitArg::from_datum_unchecked(datum) };
        // What the SQL operator would say about the pair (pgvector's scan does the same).
        check_same_bits(v.bits(), kind.bits as usize);
        Some(v.bytes().iter().map(|&b| f32::from(b)).collect())
    }
}

/// `sparsevec`: the stored words (`nnz`, indices, values: see [`SparseWord`]), normalized for
/// cosine. A query carries its words bit for bit in its f32s. Nothing is sized by the type's
/// dimension count.
impl Elem for SparseWord {
    fn prepare_stored(datum: pg_sys::Datum, kind: &Kind, dims: u32, _quant: Quant) -> Option<Vec<Self>> {
        // SAFETY: the datum is a non-null value of the indexed column, of type sparsevec.
        let v = unsafe { SparseArg::from_datum_unchecked(datum) };
        kind.check_nnz(v.indices().len());
        if dims != 0 {
            check_expected_dim(dims as i32, v.dim());
        }
        sparse_words(&v, kind)
    }
    fn prepare_query(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>> {
        // SAFETY: the datum is a non-null value of the ORDER BY operator's right-hand type,
        // sparsevec.
        let v = unsafe { SparseArg::from_datum_unchecked(datum) };
        if dims != 0 {
            // What the SQL operator would say about the pair.
            check_same_dim_counts(dims as usize, v.dim());
        }
        let words = sparse_words(&v, kind)?;
        let mut f = vec![0.0f32; words.len()];
        SparseWord::to_f32(&words, &mut f);
        Some(f)
    }
}

/// The stored words of `v`, its values normalized as [`normalize`] does dense ones for cosine
/// (`None` for a zero vector there, as for the dense types).
fn sparse_words(v: &SparseArg<'_>, kind: &Kind) -> Option<Vec<SparseWord>> {
    if !kind.metric.normalizes() {
        return Some(encode_words(v.indices(), v.values()));
    }
    let mut values = v.values().to_vec();
    if !normalize(&mut values) {
        return None;
    }
    Some(encode_words(v.indices(), &values))
}

/// Vectors back to back, each found by its slot: the copies an insert's walk or a repair keeps
/// for the neighbour heuristic. Vectors of one index have one length, except sparse ones.
pub struct Arena<E> {
    data: Vec<E>,
    /// Where each slot starts in `data`, then the end of the last.
    starts: Vec<usize>,
}

impl<E: VectorElem> Default for Arena<E> {
    fn default() -> Self {
        Arena { data: Vec::new(), starts: vec![0] }
    }
}

impl<E: VectorElem> Arena<E> {
    pub fn with_capacity(elems: usize) -> Self {
        Arena { data: Vec::with_capacity(elems), starts: vec![0] }
    }

    /// Slots in use.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, slot: usize) -> &[E] {
        &self.data[self.starts[slot]..self.starts[slot + 1]]
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut [E] {
        &mut self.data[self.starts[slot]..self.starts[slot + 1]]
    }

    pub fn push(&mut self, v: &[E]) -> usize {
        self.data.extend_from_slice(v);
        self.starts.push(self.data.len());
        self.len() - 1
    }

    /// A new slot of what `fill` appends.
    pub fn push_filled(&mut self, fill: impl FnOnce(&mut Vec<E>)) -> usize {
        fill(&mut self.data);
        self.starts.push(self.data.len());
        self.len() - 1
    }

    /// A new slot of whatever `fill` appends; none (and nothing kept) when it says `None`.
    pub fn push_with<R>(&mut self, fill: impl FnOnce(&mut Vec<E>) -> Option<R>) -> Option<(usize, R)> {
        let at = self.data.len();
        match fill(&mut self.data) {
            Some(r) => {
                self.starts.push(self.data.len());
                Some((self.len() - 1, r))
            }
            None => {
                self.data.truncate(at);
                None
            }
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.starts.truncate(1);
    }
}

/// A measured element: where its tuples are, and whether a scan may return it.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub vector: ItemRef,
    pub node: ItemRef,
    pub deleted: bool,
    /// Whether its filter values pass the scan's filter (always, without one).
    pub matches: bool,
    /// Index of its vector copy in the walk's arena (inserts), or `u32::MAX`.
    pub slot: u32,
}

/// A vector ready to store: checked against the index's dimensions, normalized for cosine.
/// `None` for a zero vector in a cosine index, which has no direction and is not indexed.
pub fn prepare_stored<E: Elem>(datum: pg_sys::Datum, kind: &Kind, dims: u32, quant: Quant) -> Option<Vec<E>> {
    E::prepare_stored(datum, kind, dims, quant)
}

/// A query vector as f32, normalized for cosine; `None` when it has no direction.
pub fn prepare_query<E: Elem>(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>> {
    E::prepare_query(datum, kind, dims)
}

/// [`prepare_stored`] of `vector` and `halfvec`.
fn prepare_stored_vec<E: VectorElem + Element>(datum: pg_sys::Datum, kind: &Kind, dims: u32, quant: Quant) -> Option<Vec<E>> {
    // SAFETY: the datum is a non-null value of the indexed column, whose type is E's.
    let v = unsafe { VecArg::<E>::from_datum_unchecked(datum) };
    let xs = v.as_slice();
    kind.check_dims(xs.len(), quant);
    if dims != 0 {
        check_expected_dim(dims as i32, xs.len());
    }
    if !kind.metric.normalizes() {
        return Some(xs.to_vec());
    }
    let mut f = vec![0.0f32; xs.len()];
    <E as Element>::slice_to_f32(xs, &mut f);
    if !normalize(&mut f) {
        return None;
    }
    let mut out = vec![E::default(); xs.len()];
    <E as VectorElem>::from_f32(&f, &mut out);
    Some(out)
}

/// [`prepare_query`] of `vector` and `halfvec`.
fn prepare_query_vec<E: VectorElem + Element>(datum: pg_sys::Datum, kind: &Kind, dims: u32) -> Option<Vec<f32>> {
    // SAFETY: the datum is a non-null value of the ORDER BY operator's right-hand type, which
    // is the indexed type for every hnsw operator class.
    let v = unsafe { VecArg::<E>::from_datum_unchecked(datum) };
    if dims != 0 {
        crate::types::check_same_dims::<E>(dims as usize, v.dim());
    }
    let mut f = vec![0.0f32; v.dim()];
    <E as Element>::slice_to_f32(v.as_slice(), &mut f);
    if kind.metric.normalizes() && !normalize(&mut f) {
        return None;
    }
    Some(f)
}

/// What a walk measures stored elements against.
pub enum Query<'a, E> {
    /// A scan's query (f32, normalized for cosine).
    Scan(&'a [f32]),
    /// A vector being inserted, or an element VACUUM reconnects, as stored.
    Stored(&'a [E]),
}

/// Measures a stored element from its vector tuple's body.
pub type Scorer = Box<dyn Fn(&[u8]) -> f32>;

/// The distance of `query` to a stored element, from its vector tuple's body: the metric's
/// proxy on the stored vector, or its estimate from the code of a quantized index (the
/// query is prepared once: per-dimension weights for the code kernel).
pub fn scorer<E: Elem>(codec: &Codec, metric: Metric, query: Query<'_, E>) -> Scorer {
    // Bodies come whole from `Codec::body_of`: a full-precision one is the vector, whose
    // length (a sparse vector's varies) is the body's.
    let elems = |b: &[u8]| b.len() / E::SIZE;
    match (codec.quant, query) {
        // `bit`: the query's bytes once, not per measurement (an f32 query holds one byte value
        // per element).
        (Quant::None, Query::Scan(q)) if metric.is_bits() => {
            let q: Vec<u8> = q.iter().map(|&x| x as u8).collect();
            Box::new(move |b: &[u8]| bits_distance(metric, &q, as_elems::<u8>(b, elems(b))) as f32)
        }
        (Quant::None, Query::Scan(q)) => {
            let q = Aligned::new(q);
            Box::new(move |b: &[u8]| E::distance_to(metric, q.as_slice(), as_elems::<E>(b, elems(b))))
        }
        (Quant::None, Query::Stored(v)) => {
            let v = Aligned::new(v);
            Box::new(move |b: &[u8]| E::distance(metric, v.as_slice(), as_elems::<E>(b, elems(b))))
        }
        (_, query) => {
            let f = match query {
                Query::Scan(q) => q.to_vec(),
                Query::Stored(v) => {
                    let mut f = vec![0.0f32; v.len()];
                    <E as VectorElem>::to_f32(v, &mut f);
                    f
                }
            };
            // Vectors with huge components can make an estimate inf - inf; such an element is
            // far as far goes (re-ranking measures it exactly if the walk returns it).
            let finite = |d: f32| if d.is_nan() { f32::INFINITY } else { d };
            // Codes of the other generation (see `Codec`: the first parameters' codes in a
            // retrained index, or re-encoded ones met by a walk that began before the
            // retraining) are measured with a query prepared for their parameters when first met.
            let generation = codec.generation();
            let codec = codec.clone();
            macro_rules! measure {
                ($kind:ident, $params:expr) => {{
                    let q = $params.query(metric, &f);
                    let other = std::cell::OnceCell::new();
                    Box::new(move |b: &[u8]| {
                        let g = code_body_generation(b);
                        if g == generation {
                            return finite(q.distance(code_body_code(b)));
                        }
                        let o = other.get_or_init(|| match codec.params_of(g) {
                            Trained::$kind(p) => p.query(metric, &f),
                            _ => crate::types::raise(
                                pgrx::PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
                                "hnsw index quantization parameters are corrupted: generations of different kinds",
                            ),
                        });
                        finite(o.distance(code_body_code(b)))
                    })
                }};
            }
            match codec.trained().clone() {
                Trained::Sq8(sq) => measure!(Sq8, sq),
                Trained::RaBitQ(rq) => measure!(RaBitQ, rq),
            }
        }
    }
}

/// Graph access for one search. `dist` measures the query against a stored element (the body
/// of its vector tuple: see [`scorer`]).
pub struct DiskWalk<E: Elem, F: Fn(&[u8]) -> f32> {
    pub rel: pg_sys::Relation,
    pub m: usize,
    pub dims: usize,
    pub codec: Codec,
    /// Bytes of a body (a typical one, for a sparse index): how much of a tuple to prefetch,
    /// and the arena's initial room.
    body_len: usize,
    pub dist: F,
    visited: Visited,
    /// When set (inserts), every measured vector is copied here, for the neighbour heuristic.
    arena: Option<Arena<E>>,
    /// (vector ref, node ref, deleted) of each arena slot.
    arena_refs: Vec<(ItemRef, ItemRef, bool)>,
    refs: Vec<ItemRef>,
    /// Arena slots still to fill from full vectors, and where those are (see `fill_arena`).
    pending: Vec<(u32, ItemRef)>,
    extent: Extent,
    /// A scan's index quals on filter columns: elements failing them route the walk but are
    /// not results.
    filter: Option<Filter>,
    /// Elements measured, and of those the live ones passing the filter.
    pub measured: usize,
    pub matched: usize,
    /// Set when the walk should give way to an exact scan (see [`Switch`]).
    switch: Option<Switch>,
    /// With `keep_vectors` (inserts), also each measured element's code body, by arena slot
    /// (see [`DiskWalk::keeping_codes`]).
    keep_codes: bool,
    codes: Vec<u8>,
    /// See [`DiskWalk::with_neighbor_codes`].
    neighbor_codes: bool,
}

/// When a filtered walk costs more than an exact scan of the matching elements would, judged
/// from the share of matching elements among those measured so far (the walk's own sample, so
/// filters correlated with the query's neighbourhood are judged by what the walk meets).
#[derive(Clone, Copy, Debug)]
pub struct Switch {
    /// Results the walk has to find (ef_search).
    pub ef: usize,
    /// Elements in the index (estimate).
    pub elements: f64,
    /// Attribute record checks that cost one vector measurement.
    pub records_per_measure: f64,
    /// Measurements per result an unfiltered walk needs.
    pub measures_per_result: f64,
    next_check: usize,
    pub triggered: bool,
}

impl Switch {
    pub fn new(ef: usize, elements: f64, records_per_measure: f64, measures_per_result: f64) -> Switch {
        Switch { ef, elements, records_per_measure, measures_per_result, next_check: 64, triggered: false }
    }

    /// Estimated cost, in vector measurements, of finishing the walk and of an exact scan.
    /// The share of matching elements is taken at the top of its likely range (about two
    /// standard deviations up), so that a walk is only abandoned when the evidence is clear:
    /// early samples are small, and a wrong switch costs more than a late one.
    pub fn costs(&self, measured: usize, matched: usize) -> (f64, f64) {
        let (n, k) = (measured.max(1) as f64, matched as f64);
        let share = ((k + 2.0 + 2.0 * (k + 1.0).sqrt()) / n).min(1.0);
        let walk = (self.ef as f64 * self.measures_per_result / share - n).max(0.0);
        let exact = self.elements / self.records_per_measure + share * self.elements;
        (walk, exact)
    }

    fn check(&mut self, measured: usize, matched: usize) {
        if measured < self.next_check {
            return;
        }
        self.next_check *= 2;
        let (walk, exact) = self.costs(measured, matched);
        if walk > exact {
            self.triggered = true;
        }
    }
}

impl<E: Elem, F: Fn(&[u8]) -> f32> DiskWalk<E, F> {
    /// `keep_vectors`: copy each measured vector into an arena (see [`Node::slot`]; the code
    /// decoded, in a quantized index).
    pub fn new(rel: pg_sys::Relation, meta: &Meta, codec: Codec, dist: F, visited: Visited, keep_vectors: bool) -> Self {
        // Room for what an insert's walk usually measures (about 20 elements per unit of
        // ef_construction), so that the copies are not moved again and again as the arena
        // grows; capped at 4 MiB.
        let body = match codec.elem {
            // Bodies vary: prefetching the largest (8 kB) would fetch mostly other tuples.
            ElemType::Sparse => sparse_body_len(TYPICAL_NNZ),
            _ => codec.body_len().max(1),
        };
        let expected = (meta.ef_construction as usize * 24).min((4 << 20) / body);
        let arena = keep_vectors.then(|| Arena::with_capacity(expected * body / E::SIZE));
        DiskWalk {
            rel,
            m: meta.m as usize,
            dims: meta.dims as usize,
            body_len: body,
            codec,
            dist,
            visited,
            arena,
            arena_refs: Vec::new(),
            refs: Vec::new(),
            pending: Vec::new(),
            keep_codes: false,
            codes: Vec::new(),
            extent: Extent::new(rel),
            filter: None,
            measured: 0,
            matched: 0,
            switch: None,
            neighbor_codes: false,
        }
    }

    /// Measure neighbours on the codes their node tuples keep where they do (scans of quantized
    /// indexes, which re-rank what they return: such a measurement does not say whether the
    /// element was deleted, see [`DiskWalk::measure_code`]). Not with a filter.
    pub fn with_neighbor_codes(mut self) -> Self {
        self.neighbor_codes = self.codec.is_quantized();
        self
    }

    /// Keep each measured element's code body beside its arena slot ([`DiskWalk::code_of`]):
    /// an insert into an index with `neighbor_codes` writes them into its node tuple.
    pub fn keeping_codes(mut self) -> Self {
        self.keep_codes = self.arena.is_some() && self.codec.is_quantized();
        self
    }

    /// The code body of the element measured into arena slot `slot`, if codes are kept.
    pub fn code_of(&self, slot: u32) -> Option<&[u8]> {
        let len = self.codec.body_len();
        self.keep_codes.then(|| self.codes.get(slot as usize * len..(slot as usize + 1) * len)).flatten()
    }

    /// Only elements passing `filter` are results; with `switch`, the walk stops once an exact
    /// scan looks cheaper ([`DiskWalk::switched`]).
    pub fn with_filter(mut self, filter: Filter, switch: Option<Switch>) -> Self {
        self.filter = Some(filter);
        self.switch = switch;
        self
    }

    /// Whether the walk stopped to give way to an exact scan.
    pub fn switched(&self) -> bool {
        self.switch.is_some_and(|s| s.triggered)
    }

    /// Give up the switch: the walk goes on however few matches it meets.
    pub fn stay_on_graph(&mut self) {
        self.switch = None;
    }

    /// The filter back (for an exact scan after a switch).
    pub fn take_filter(&mut self) -> Option<Filter> {
        self.filter.take()
    }

    /// The visited set, to be reused by a later walk.
    pub fn into_visited(self) -> Visited {
        self.visited
    }

    fn measure_on(&mut self, page: Page<'_>, r: ItemRef) -> Candidate<Node> {
        let item = page.item(r.offset).unwrap_or_else(|| dangling(r));
        let t = VectorTuple::parse(item);
        let body = self.codec.body_of(&t);
        // An element whose node ref is broken cannot be expanded or returned: it counts as
        // deleted, and as infinitely far, so that no greedy step or beam settles on it (the
        // walk would end there, with nothing to expand).
        let broken = !self.extent.holds(t.node());
        let d = if broken { f32::INFINITY } else { (self.dist)(body) };
        let deleted = t.flags() & FLAG_DELETED != 0 || broken;
        let matches = match self.filter.as_mut() {
            None => true,
            Some(f) => !deleted && f.payload_matches(self.codec.payload_of(&t)),
        };
        self.measured += 1;
        self.matched += matches as usize;
        if let Some(s) = self.switch.as_mut() {
            s.check(self.measured, self.matched);
        }
        let slot = match self.arena.as_mut() {
            Some(arena) => {
                let slot = if self.codec.decodes() {
                    arena.push_filled(|out| self.codec.graph_vector(body, out))
                } else {
                    // 1-bit codes do not stand in for vectors: the slot is filled from the full
                    // vector once this page is released (`fill_arena`).
                    let slot = arena.push_filled(|out| out.resize(out.len() + self.dims, E::default()));
                    self.pending.push((slot as u32, code_body_full(body)));
                    slot
                };
                self.arena_refs.push((r, t.node(), deleted));
                if self.keep_codes {
                    self.codes.extend_from_slice(body);
                }
                slot as u32
            }
            None => u32::MAX,
        };
        Candidate::new(d, Node { vector: r, node: t.node(), deleted, matches, slot })
    }

    /// Measure element `r` on the code its neighbour's node tuple keeps (see
    /// [`NeighborCodes`](crate::storage::tuple::NeighborCodes)). Whether it was deleted is not
    /// known here: re-ranking reads its tuple before it is returned.
    #[inline]
    fn measure_code(&mut self, r: ItemRef, node: ItemRef, body: &[u8]) -> Candidate<Node> {
        let broken = !self.extent.holds(node);
        let d = if broken { f32::INFINITY } else { (self.dist)(body) };
        self.measured += 1;
        self.matched += 1;
        Candidate::new(d, Node { vector: r, node, deleted: broken, matches: true, slot: u32::MAX })
    }

    /// Measure one element by its vector ref (entry points).
    pub fn measure(&mut self, r: ItemRef) -> Candidate<Node> {
        if !self.extent.holds(r) {
            dangling(r);
        }
        let buf = Buffer::read_recent(self.rel, r.block, Lock::Share);
        self.measure_on(buf.page(), r)
    }

    /// Read the full vectors of the arena slots whose codes do not decode (see
    /// [`Codec::decodes`]); the walk's callers do so before they use the arena. A slot whose
    /// full vector cannot be read keeps zeros (a corrupt element, which the checker reports).
    pub fn fill_arena(&mut self) {
        let (Some(arena), dims) = (self.arena.as_mut(), self.dims) else { return };
        for (slot, full) in self.pending.drain(..) {
            with_full_at::<E, _>(&self.extent, full, dims, |v| arena.get_mut(slot as usize).copy_from_slice(v));
        }
    }

    /// A vector copied into the arena by an insert's walk.
    pub fn arena_vector(&self, slot: u32) -> &[E] {
        self.arena.as_ref().expect("walk has no arena").get(slot as usize)
    }

    /// Everything an insert's walk measured: the arena of vectors and, per slot, the element's
    /// (vector ref, node ref, whether it was marked deleted).
    pub fn arena(&self) -> (&Arena<E>, &[(ItemRef, ItemRef, bool)]) {
        (self.arena.as_ref().expect("walk has no arena"), &self.arena_refs)
    }
}

/// Non-zero elements of a typical sparse vector (bag-of-words of a paragraph), for sizes that
/// have to be guessed before a body is read.
const TYPICAL_NNZ: usize = 128;

fn dangling(r: ItemRef) -> ! {
    crate::types::raise(
        pgrx::prelude::PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("hnsw index has a link to missing item ({},{})", r.block, r.offset),
    )
}

impl<E: Elem, F: Fn(&[u8]) -> f32> Walk for DiskWalk<E, F> {
    type Item = Node;

    fn restart(&mut self, entries: &[Candidate<Node>]) {
        self.visited.clear();
        for e in entries {
            self.visited.insert(e.item.vector.visited_key());
        }
    }

    fn expand(&mut self, item: &Node, layer: usize, out: &mut Vec<Candidate<Node>>) {
        self.refs.clear();
        if !self.extent.holds(item.node) {
            return;
        }
        {
            let buf = Buffer::read_recent(self.rel, item.node.block, Lock::Share);
            let data = buf.page().item(item.node.offset).unwrap_or_else(|| dangling(item.node));
            let t = NodeTuple::parse(data, self.m);
            // A scan's walk measures neighbours whose codes the node keeps right here; an
            // insert's needs their vectors, and a filtered one their filter values, from their
            // own tuples.
            let codes = (layer == 0 && self.neighbor_codes && self.filter.is_none())
                .then(|| t.codes())
                .flatten()
                .filter(|c| c.body_len() == self.body_len && self.codec.is_quantized());
            for (k, r) in t.neighbors(layer).enumerate() {
                if !(self.extent.holds(r) && self.visited.insert(r.visited_key())) {
                    continue;
                }
                match codes.as_ref().and_then(|c| c.get(k)) {
                    Some((node, body)) => out.push(self.measure_code(r, node, body)),
                    None => self.refs.push(r),
                }
            }
        }
        // Neighbours sit on pages scattered over shared buffers: read them with their cache
        // misses overlapped.
        self.refs.sort_unstable_by_key(|r| (r.block, r.offset));
        let refs = core::mem::take(&mut self.refs);
        let tuple_bytes = VECTOR_HEADER + self.body_len;
        visit_items(self.rel, &refs, tuple_bytes, |_, page, r| out.push(self.measure_on(page, r)));
        self.refs = refs;
    }

    #[inline]
    fn is_result(&self, item: &Node) -> bool {
        !item.deleted && item.matches
    }

    #[inline]
    fn should_stop(&self) -> bool {
        self.switched()
    }
}

#[cfg(test)]
mod switch_tests {
    use super::Switch;

    /// Feed a walk's measurements (`share` of them matching) to a switch; when does it fire?
    fn fires_after(share: f64, elements: f64) -> Option<usize> {
        let mut s = Switch::new(40, elements, 100.0, 10.0);
        let mut matched = 0;
        for measured in 1..=20_000usize {
            if ((measured as f64) * share).floor() as usize > matched {
                matched += 1;
            }
            s.check(measured, matched);
            if s.triggered {
                return Some(measured);
            }
        }
        None
    }

    #[test]
    fn rare_matches_switch_early_common_ones_never() {
        // 100k elements: 0.1% and 1% matching go exact after a few hundred measurements...
        assert!(fires_after(0.001, 100_000.0).is_some_and(|n| n <= 256), "{:?}", fires_after(0.001, 100_000.0));
        assert!(fires_after(0.01, 100_000.0).is_some_and(|n| n <= 1024), "{:?}", fires_after(0.01, 100_000.0));
        // ...10% and more keep walking, even though early samples are noisy.
        assert_eq!(fires_after(0.1, 100_000.0), None);
        assert_eq!(fires_after(0.5, 100_000.0), None);
        // In a small index the exact scan is cheap enough even at 10%.
        assert!(fires_after(0.1, 5_000.0).is_some());
    }
}

#[cfg(test)]
mod arena_tests {
    use hnsw_core::sparse::{encode_words, SparseWord};

    use super::Arena;

    #[test]
    fn slots_of_any_length() {
        let mut a = Arena::<SparseWord>::default();
        assert!(a.is_empty());
        let (x, y) = (encode_words(&[1, 5], &[1.0, 2.0]), encode_words(&[], &[]));
        assert_eq!(a.push(&x), 0);
        assert_eq!(
            a.push_with(|out| -> Option<()> {
                out.extend_from_slice(&y);
                None
            }),
            None,
            "a failed fill leaves nothing"
        );
        let filled = a.push_with(|out| {
            out.extend_from_slice(&y);
            Some(7)
        });
        assert_eq!(filled, Some((1, 7)));
        assert_eq!(a.push_filled(|out| out.extend_from_slice(&x)), 2);
        assert_eq!((a.len(), a.get(0), a.get(1), a.get(2)), (3, &x[..], &y[..], &x[..]));
        a.get_mut(1)[0] = SparseWord(0);
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.push(&y), 0);
    }
}
