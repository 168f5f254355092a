//! The graph walk of an ordered scan: descent to layer 1, then a resumable beam search on
//! layer 0 whose rounds the scan asks for as the executor wants more rows.

use hnsw_core::graph::search::{greedy_closest, ResumableSearch};
use hnsw_core::graph::{Candidate, Visited};
use pgrx::pg_sys;

use super::visited::take_visited;
use super::Source;
use crate::am::filter::Filter;
use crate::am::graph::{scorer, DiskWalk, Elem, Node, Query, Switch};
use crate::storage::element::Extent;
use crate::storage::meta::Meta;
use crate::storage::page::ItemRef;
use crate::storage::prefetch::visit_items;
use crate::storage::quant::{with_full_at, Codec};
use crate::storage::tuple::{code_body_full, full_chunk, full_values, VectorTuple, CODE_START, FLAG_DELETED, VECTOR_HEADER};
use crate::types::ops::Aligned;
use hnsw_core::metric::Metric;

struct GraphSource<E: Elem, F: Fn(&[u8]) -> f32> {
    walk: DiskWalk<E, F>,
    search: ResumableSearch<Node>,
    /// Quantized indexes: the query and metric, to re-rank each round exactly.
    rerank: Option<(Aligned<f32>, Metric)>,
}

impl<E: Elem, F: Fn(&[u8]) -> f32> Source for GraphSource<E, F> {
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>) {
        if self.search.is_exhausted() {
            return;
        }
        let start = out.len();
        self.search.next_round(&mut self.walk, 0, width, out);
        if let Some((query, metric)) = &self.rerank {
            rerank::<E>(&self.walk, query.as_slice(), *metric, &mut out[start..]);
        }
    }

    fn switched(&mut self) -> Option<Filter> {
        if self.walk.switched() {
            self.walk.take_filter()
        } else {
            // A switch in a later round would stop the walk with rows still to find, and an
            // exact scan started then would hand out again the rows already returned.
            self.walk.stay_on_graph();
            None
        }
    }

    fn bytes(&self) -> usize {
        self.search.bytes()
    }

    fn into_visited(self: Box<Self>) -> Option<Visited> {
        Some(self.walk.into_visited())
    }
}

/// Replace the code distances of a round's results by exact ones, from the full-precision
/// vectors, and sort the round by them. Only results the scan may return are re-scored (the
/// others are skipped by the scan anyway); one whose full vector is missing (a corrupt ref)
/// keeps its estimate.
fn rerank<E: Elem>(walk: &DiskWalk<E, impl Fn(&[u8]) -> f32>, query: &[f32], metric: Metric, round: &mut [Candidate<Node>]) {
    // The scan's candidates are 28 bytes each (see `first_round_width`), so they do not carry
    // their full vector's ref: read it again from the code tuples the walk measured.
    let mut todo: Vec<(ItemRef, usize)> =
        (round.iter().enumerate()).filter(|(_, c)| !c.item.deleted && c.item.matches).map(|(i, c)| (c.item.vector, i)).collect();
    todo.sort_unstable_by_key(|&(r, _)| (r.block, r.offset));
    let refs: Vec<ItemRef> = todo.iter().map(|&(r, _)| r).collect();
    let body_len = walk.codec.body_len();
    let mut fulls: Vec<(ItemRef, usize)> = Vec::with_capacity(todo.len());
    let mut deleted = Vec::new();
    visit_items(walk.rel, &refs, VECTOR_HEADER + CODE_START, |i, page, r| {
        if let Some(data) = page.item(r.offset) {
            let t = VectorTuple::parse(data);
            if t.flags() & FLAG_DELETED != 0 {
                // Measured on a code kept by a neighbour, which does not say so.
                deleted.push(todo[i].1);
            } else {
                fulls.push((code_body_full(t.body(body_len)), todo[i].1));
            }
        }
    });
    for i in deleted {
        round[i].item.deleted = true;
    }
    let extent = Extent::new(walk.rel);
    fulls.retain(|(full, _)| extent.holds(*full));
    if walk.dims <= full_chunk::<E>() {
        // One tuple per vector.
        fulls.sort_unstable_by_key(|&(r, _)| (r.block, r.offset));
        let refs: Vec<ItemRef> = fulls.iter().map(|&(r, _)| r).collect();
        let bytes = VECTOR_HEADER + walk.dims * E::SIZE;
        visit_items(walk.rel, &refs, bytes, |i, page, r| {
            if let Some(data) = page.item(r.offset) {
                round[fulls[i].1].dist = E::distance_to(metric, query, full_values::<E>(data, walk.dims).0);
            }
        });
    } else {
        for (full, i) in fulls {
            if let Some(d) = with_full_at::<E, _>(&extent, full, walk.dims, |v| E::distance_to(metric, query, v)) {
                round[i].dist = d;
            }
        }
    }
    round.sort_by(|a, b| a.dist.total_cmp(&b.dist));
}

/// Greedy descent from the entry point to layer 1, then a resumable beam search on layer 0
/// from where it landed and from the entry point (each round's width is chosen by the caller).
pub(super) fn start_search<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    query: &[f32],
    filter: Option<Filter>,
    switch: Option<Switch>,
) -> Box<dyn Source> {
    let metric = meta.metric;
    let codec = Codec::load(index, meta);
    let rerank = codec.is_quantized().then(|| (Aligned::new(query), metric));
    let dist = scorer::<E>(&codec, metric, Query::Scan(query));
    let mut walk = DiskWalk::<E, _>::new(index, meta, codec, dist, take_visited(), false).with_neighbor_codes();
    if let Some(f) = filter {
        walk = walk.with_filter(f, switch);
    }
    let start = walk.measure(meta.entry_vector);
    let mut cur = start;
    let mut buf = Vec::new();
    for layer in (1..=meta.entry_level as usize).rev() {
        cur = greedy_closest(&mut walk, cur, layer, &mut buf);
    }
    // Layer 0 is seeded with the entry point as well (already measured): inserts, builds and
    // VACUUM keep every element reachable from it by layer-0 links, not from wherever the
    // descent lands, so only with it does a search wide enough return every row.
    let seeds = if cur.item.vector == start.item.vector { vec![cur] } else { vec![cur, start] };
    let search = ResumableSearch::new(&mut walk, &seeds);
    Box::new(GraphSource { walk, search, rerank })
}
