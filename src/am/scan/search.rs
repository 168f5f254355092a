//! The graph walk of an ordered scan: descent to layer 1, then a resumable beam search on
//! layer 0 whose rounds the scan asks for as the executor wants more rows.

use hnsw_core::graph::search::{greedy_closest, ResumableSearch};
use hnsw_core::graph::{Candidate, Visited};
use pgrx::pg_sys;

use super::visited::take_visited;
use super::Source;
use crate::am::filter::Filter;
use crate::am::graph::{DiskWalk, Elem, Node, Switch};
use crate::storage::meta::Meta;
use crate::types::ops::Aligned;

struct GraphSource<E: Elem, F: Fn(&[E]) -> f32> {
    walk: DiskWalk<E, F>,
    search: ResumableSearch<Node>,
}

impl<E: Elem, F: Fn(&[E]) -> f32> Source for GraphSource<E, F> {
    fn next_round(&mut self, width: usize, out: &mut Vec<Candidate<Node>>) {
        if !self.search.is_exhausted() {
            self.search.next_round(&mut self.walk, 0, width, out);
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

    fn into_visited(self: Box<Self>) -> Option<Visited> {
        Some(self.walk.into_visited())
    }
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
    let query = Aligned::new(query);
    let dist = move |v: &[E]| E::distance_to(metric, query.as_slice(), v);
    let mut walk = DiskWalk::new(index, meta, dist, take_visited(), false);
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
    Box::new(GraphSource { walk, search })
}
