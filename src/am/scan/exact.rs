//! Exact scans: every element whose attribute record may pass the filter, checked on its
//! stored values and measured, in passes bounded by `work_mem`. Chosen for selective filters,
//! where a filtered graph walk would measure many elements per match.

use half::f16;
use hnsw_core::graph::{Candidate, Visited};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::Source;
use crate::am::filter::Filter;
use crate::am::graph::{scorer, Elem, Extent, Node, Query};
use crate::am::mem::Setting;
use crate::storage::attr::{self, ATTR_DELETED};
use crate::storage::buffer::{Buffer, Lock};
use crate::storage::meta::{ElemType, Meta};
use crate::storage::page::ItemRef;
use crate::storage::quant::{with_full_at, Codec};
use crate::storage::tuple::{code_body_full, VectorTuple, FLAG_DELETED};

/// One pass of an exact scan, for the index's element type (see [`exact_pass`]).
type ExactPass = fn(pg_sys::Relation, &Meta, &mut Filter, Option<&[f32]>, Option<Key>, usize) -> (Vec<Candidate<Node>>, bool);

/// The matching elements of an exact scan, measured, handed out `ef` at a time nearest first.
/// Its memory is bounded by `work_mem`: a pass over the index keeps only the nearest matches
/// that fit (all of them, usually); when it had to leave some out, another pass starts after
/// the last one handed out once those are used up.
pub(super) struct ExactSource {
    index: pg_sys::Relation,
    meta: Meta,
    filter: Filter,
    query: Option<Vec<f32>>,
    pass: ExactPass,
    /// The current pass's matches, nearest first; `kept[next..]` are still to hand out.
    kept: Vec<Candidate<Node>>,
    next: usize,
    /// Whether the last pass kept every match left.
    complete: bool,
    /// Matches a pass may keep.
    cap: usize,
}

impl ExactSource {
    /// `width`: the widest round it will be asked for (a pass keeps at least that many).
    pub(super) fn new(
        index: pg_sys::Relation,
        meta: Meta,
        elem: ElemType,
        filter: Filter,
        query: Option<&[f32]>,
        width: usize,
    ) -> ExactSource {
        let pass: ExactPass = match elem {
            ElemType::F16 => exact_pass::<f16>,
            ElemType::F32 => exact_pass::<f32>,
            ElemType::Bit => exact_pass::<u8>,
            ElemType::Sparse => exact_pass::<hnsw_core::sparse::SparseWord>,
        };
        let cap = (Setting::WorkMem.bytes() / 2 / core::mem::size_of::<Keyed>()).max(width).max(1);
        let (query, kept, next, complete) = (query.map(<[f32]>::to_vec), Vec::new(), 0, false);
        let mut s = ExactSource { index, meta, filter, query, pass, kept, next, complete, cap };
        s.run_pass(None);
        s
    }

    fn run_pass(&mut self, after: Option<Key>) {
        let (kept, complete) = (self.pass)(self.index, &self.meta, &mut self.filter, self.query.as_deref(), after, self.cap);
        (self.kept, self.next, self.complete) = (kept, 0, complete);
    }
}

impl Source for ExactSource {
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>) {
        if self.next == self.kept.len() && !self.complete {
            let Some(last) = self.kept.last() else { return };
            let after = Keyed(*last).key();
            self.run_pass(Some(after));
        }
        let k = width.max(1).min(self.kept.len() - self.next);
        out.extend_from_slice(&self.kept[self.next..self.next + k]);
        self.next += k;
    }

    fn into_visited(self: Box<Self>) -> Option<Visited> {
        None
    }
}

/// The order of an exact scan's results: distance, then vector ref (physical order, which is
/// also the whole order without a query).
type Key = (f32, u32, u16);

/// A candidate ordered by its [`Key`], for the bounded heap of [`exact_pass`].
#[derive(Clone, Copy)]
struct Keyed(Candidate<Node>);

impl Keyed {
    fn key(&self) -> Key {
        (self.0.dist, self.0.item.vector.block, self.0.item.vector.offset)
    }
}

fn key_cmp(a: &Key, b: &Key) -> core::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        key_cmp(&self.key(), &other.key())
    }
}

/// What one exact pass holds: vector refs of records that passed, waiting to be measured, and
/// the nearest measured matches so far (a max-heap of at most `cap`).
struct PassState<'a> {
    filter: &'a mut Filter,
    refs: Vec<ItemRef>,
    heap: std::collections::BinaryHeap<Keyed>,
    cap: usize,
    /// A match was left out for want of room.
    dropped: bool,
}

/// One pass of an exact filtered scan: every element whose attribute record may pass the
/// filter, checked on its stored values and measured (distance 0 without a query). Returns the
/// nearest `cap` matches after `after` (nearest first) and whether that is all of them. Record
/// refs are measured in batches of at most `cap` (sorted by block, for locality), so the pass
/// holds O(`cap`) memory whatever the index's size.
fn exact_pass<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    filter: &mut Filter,
    query: Option<&[f32]>,
    after: Option<Key>,
    cap: usize,
) -> (Vec<Candidate<Node>>, bool) {
    let metric = meta.metric;
    let (dims, size) = (meta.dims as usize, meta.attr_record as usize);
    let codec = Codec::load(index, meta);
    let single = filter.single_int_eq();
    let mut st = PassState { filter, refs: Vec::new(), heap: std::collections::BinaryHeap::new(), cap, dropped: false };
    let extent = Extent::new(index);
    // Full precision: the query prepared once for the stored bodies.
    let plain = query.filter(|_| !codec.is_quantized()).map(|q| scorer::<E>(&codec, metric, Query::Scan(q)));
    let measure = |st: &mut PassState<'_>| {
        st.refs.sort_unstable_by_key(|r| (r.block, r.offset));
        st.refs.dedup();
        for group in st.refs.chunk_by(|a, b| a.block == b.block) {
            if !extent.holds(group[0]) {
                continue;
            }
            // Matches on this page: (vector ref, node ref, distance, full vector ref), the
            // distance measured here unless the index is quantized: then from the full vector,
            // read once this page's lock is released (one buffer lock at a time).
            let mut found: Vec<(ItemRef, ItemRef, f32, ItemRef)> = Vec::new();
            {
                let buf = Buffer::read_recent(index, group[0].block, Lock::Share);
                let page = buf.page();
                for r in group {
                    let Some(item) = page.item(r.offset) else { continue };
                    let t = VectorTuple::parse(item);
                    if t.flags() & FLAG_DELETED != 0 || !extent.holds(t.node()) || !st.filter.payload_matches(codec.payload_of(&t)) {
                        continue;
                    }
                    let body = codec.body_of(&t);
                    let (d, full) = match (query, codec.is_quantized()) {
                        (None, _) => (0.0, ItemRef::INVALID),
                        (Some(_), true) => (f32::INFINITY, code_body_full(body)),
                        (Some(_), false) => (plain.as_ref().map_or(f32::INFINITY, |score| score(body)), ItemRef::INVALID),
                    };
                    found.push((*r, t.node(), d, full));
                }
            }
            for (r, node, mut d, full) in found {
                if let (Some(q), true) = (query, full.is_valid()) {
                    d = with_full_at::<E, _>(&extent, full, dims, |v| E::distance_to(metric, q, v)).unwrap_or(f32::INFINITY);
                }
                let c = Keyed(Candidate::new(d, Node { vector: r, node, deleted: false, matches: true, slot: u32::MAX }));
                if after.is_some_and(|a| key_cmp(&c.key(), &a).is_le()) {
                    continue;
                }
                if st.heap.len() == st.cap {
                    st.dropped = true;
                    if st.heap.peek().is_some_and(|top| c < *top) {
                        st.heap.pop();
                    } else {
                        continue;
                    }
                }
                st.heap.push(c);
            }
            check_for_interrupts!();
        }
        st.refs.clear();
    };
    if size > 0 {
        attr::for_each_page_pausing(
            index,
            meta.attr_first,
            &mut st,
            |st, _, page| {
                for rec in page.attr_records(size) {
                    let pass = match single {
                        Some((col, want)) => rec.nulls() & (1 << col) == 0 && rec.slot(col) == want,
                        None => st.filter.record_may_match(rec.nulls(), rec.slots()),
                    };
                    if rec.flags() & ATTR_DELETED == 0 && pass && rec.vector().is_valid() {
                        st.refs.push(rec.vector());
                    }
                }
            },
            |st| {
                if st.refs.len() >= st.cap {
                    measure(st);
                }
            },
        );
        measure(&mut st);
    }
    let mut out: Vec<Candidate<Node>> = st.heap.into_sorted_vec().into_iter().map(|k| k.0).collect();
    // A record listed twice in different batches was measured twice.
    out.dedup_by_key(|c| c.item.vector);
    (out, !st.dropped)
}
