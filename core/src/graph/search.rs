//! The HNSW layer search (Malkov & Yashunin, algorithm 2), generic over where the graph lives.
//!
//! The in-memory build graph and the on-page index implement [`Walk`]; the search itself only
//! sees candidates. A [`Walk`] owns its visited set, so an implementation can key it however its
//! storage addresses nodes, and can batch the reads of one expansion (group by page, prefetch).

use core::cmp::Ordering;
use std::collections::BinaryHeap;

/// A node seen by a search, with its distance to the query. `I` is whatever the walk needs to
/// come back to the node: a node number in memory, page addresses on disk.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<I> {
    pub dist: f32,
    pub item: I,
}

impl<I> Candidate<I> {
    pub fn new(dist: f32, item: I) -> Self {
        Candidate { dist, item }
    }
}

/// Heap order by distance only; NaN sorts last so it never displaces a real neighbour.
struct Far<I>(Candidate<I>);
struct Near<I>(Candidate<I>);

impl<I> PartialEq for Far<I> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<I> Eq for Far<I> {}
impl<I> PartialOrd for Far<I> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<I> Ord for Far<I> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.dist.total_cmp(&o.0.dist)
    }
}
impl<I> PartialEq for Near<I> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<I> Eq for Near<I> {}
impl<I> PartialOrd for Near<I> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<I> Ord for Near<I> {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.dist.total_cmp(&self.0.dist)
    }
}

/// Access to a graph during one search.
pub trait Walk {
    type Item: Copy;

    /// Forget what was visited and mark `entries` visited: each layer's search starts fresh,
    /// as in the paper, so nodes seen on an upper layer are measured again below.
    fn restart(&mut self, entries: &[Candidate<Self::Item>]);

    /// Measure the not-yet-visited neighbours of `item` on `layer`, mark them visited, and push
    /// one candidate per neighbour onto `out`.
    fn expand(&mut self, item: &Self::Item, layer: usize, out: &mut Vec<Candidate<Self::Item>>);

    /// Whether a candidate may be counted among the results. Candidates that may not (deleted
    /// elements, rows a filter rejects) are still expanded, so they keep routing the walk, but
    /// they never take one of the `ef` result places.
    #[inline]
    fn is_result(&self, _item: &Self::Item) -> bool {
        true
    }

    /// Whether a [`ResumableSearch`] round should stop early (the walk decided another way of
    /// answering is cheaper); checked after every expansion.
    #[inline]
    fn should_stop(&self) -> bool {
        false
    }
}

/// Heaps reused across searches so a search allocates nothing in the steady state.
pub struct SearchScratch<I> {
    candidates: BinaryHeap<Near<I>>,
    results: BinaryHeap<Far<I>>,
    expanded: Vec<Candidate<I>>,
}

impl<I> Default for SearchScratch<I> {
    fn default() -> Self {
        SearchScratch { candidates: BinaryHeap::new(), results: BinaryHeap::new(), expanded: Vec::new() }
    }
}

/// Beam search of width `ef` on `layer`, starting from `entries` (already measured).
/// Leaves up to `ef` result candidates in `out`, nearest first.
pub fn search_layer<W: Walk>(
    walk: &mut W,
    entries: &[Candidate<W::Item>],
    ef: usize,
    layer: usize,
    scratch: &mut SearchScratch<W::Item>,
    out: &mut Vec<Candidate<W::Item>>,
) {
    let ef = ef.max(1);
    let SearchScratch { candidates, results, expanded } = scratch;
    walk.restart(entries);
    candidates.clear();
    results.clear();
    for &e in entries {
        candidates.push(Near(e));
        if walk.is_result(&e.item) {
            results.push(Far(e));
            if results.len() > ef {
                results.pop();
            }
        }
    }
    while let Some(Near(c)) = candidates.pop() {
        if results.len() >= ef {
            if let Some(Far(worst)) = results.peek() {
                if c.dist > worst.dist {
                    break;
                }
            }
        }
        expanded.clear();
        walk.expand(&c.item, layer, expanded);
        for &n in expanded.iter() {
            let admit = results.len() < ef || results.peek().is_some_and(|Far(w)| n.dist < w.dist);
            if !admit {
                continue;
            }
            candidates.push(Near(n));
            if walk.is_result(&n.item) {
                results.push(Far(n));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    out.clear();
    out.extend(results.drain().map(|Far(c)| c));
    out.sort_by(|a, b| a.dist.total_cmp(&b.dist));
}

/// Greedy descent on one layer (a search with `ef = 1`): returns the closest node reached.
pub fn greedy_closest<W: Walk>(
    walk: &mut W,
    entry: Candidate<W::Item>,
    layer: usize,
    buf: &mut Vec<Candidate<W::Item>>,
) -> Candidate<W::Item> {
    walk.restart(&[entry]);
    let mut best = entry;
    loop {
        buf.clear();
        walk.expand(&best.item, layer, buf);
        let mut improved = false;
        for &n in buf.iter() {
            if n.dist < best.dist {
                best = n;
                improved = true;
            }
        }
        if !improved {
            return best;
        }
    }
}

/// A layer-0 search that can go on after its first `ef` results, for scans whose caller wants
/// more rows than `ef_search` (rows the executor found dead or filtered out).
///
/// Round one is exactly [`search_layer`]. Every measured element stays on one of two heaps:
/// `frontier` (not expanded yet) and `pending` (a result not handed out yet). A round expands
/// frontier elements while they are nearer than the `ef`-th nearest pending result, then hands
/// out the `ef` nearest pending results. Later rounds thus continue the same walk outward, and
/// results come out nearly, not strictly, in distance order (as pgvector's relaxed iterative
/// scans do).
pub struct ResumableSearch<I> {
    frontier: BinaryHeap<Near<I>>,
    pending: BinaryHeap<Near<I>>,
    /// Distances of the `ef` nearest pending results (a max-heap): its top is the bound.
    best: BinaryHeap<Far<()>>,
    expanded: Vec<Candidate<I>>,
    measured: usize,
}

impl<I: Copy> ResumableSearch<I> {
    /// Start from `entries`, already measured.
    pub fn new<W: Walk<Item = I>>(walk: &mut W, entries: &[Candidate<I>]) -> Self {
        walk.restart(entries);
        let mut s = ResumableSearch {
            frontier: BinaryHeap::new(),
            pending: BinaryHeap::new(),
            best: BinaryHeap::new(),
            expanded: Vec::new(),
            measured: entries.len(),
        };
        for &e in entries {
            s.frontier.push(Near(e));
            if walk.is_result(&e.item) {
                s.pending.push(Near(e));
            }
        }
        s
    }

    /// Elements measured so far (the work a scan has done).
    pub fn measured(&self) -> usize {
        self.measured
    }

    /// Heap bytes the search holds (its candidate heaps grow with every round), for the
    /// memory bound of iterative scans.
    pub fn bytes(&self) -> usize {
        let near = core::mem::size_of::<Near<I>>();
        (self.frontier.capacity() + self.pending.capacity()) * near
            + self.best.capacity() * core::mem::size_of::<Far<()>>()
            + self.expanded.capacity() * core::mem::size_of::<Candidate<I>>()
    }

    /// Whether the walk has nothing left to hand out or explore.
    pub fn is_exhausted(&self) -> bool {
        self.frontier.is_empty() && self.pending.is_empty()
    }

    /// Refill `best` with the distances of the `ef` nearest pending results.
    fn reset_best(&mut self, ef: usize) {
        self.best.clear();
        let mut taken = Vec::with_capacity(ef);
        while taken.len() < ef {
            match self.pending.pop() {
                Some(n) => taken.push(n),
                None => break,
            }
        }
        for n in taken {
            self.best.push(Far(Candidate::new(n.0.dist, ())));
            self.pending.push(n);
        }
    }

    #[inline]
    fn bound(&self, ef: usize) -> f32 {
        if self.best.len() < ef {
            f32::INFINITY
        } else {
            self.best.peek().map_or(f32::INFINITY, |f| f.0.dist)
        }
    }

    /// Run one round of width `ef` and append up to `ef` results to `out`, nearest first.
    pub fn next_round<W: Walk<Item = I>>(&mut self, walk: &mut W, layer: usize, ef: usize, out: &mut Vec<Candidate<I>>) {
        let ef = ef.max(1);
        self.reset_best(ef);
        while let Some(&Near(c)) = self.frontier.peek() {
            if c.dist > self.bound(ef) || walk.should_stop() {
                break;
            }
            self.frontier.pop();
            self.expanded.clear();
            walk.expand(&c.item, layer, &mut self.expanded);
            self.measured += self.expanded.len();
            for &n in &self.expanded {
                self.frontier.push(Near(n));
                if walk.is_result(&n.item) {
                    self.pending.push(Near(n));
                    if self.best.len() < ef {
                        self.best.push(Far(Candidate::new(n.dist, ())));
                    } else if n.dist < self.bound(ef) {
                        self.best.pop();
                        self.best.push(Far(Candidate::new(n.dist, ())));
                    }
                }
            }
        }
        for _ in 0..ef {
            match self.pending.pop() {
                Some(Near(c)) => out.push(c),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod resumable_tests {
    use super::*;
    use crate::graph::visited::Visited;

    /// Points on a line, each linked to its two neighbours: the walk from one end must hand
    /// out every point exactly once, in order, however the rounds are sized.
    struct Line {
        pos: Vec<f32>,
        q: f32,
        visited: Visited,
        deleted: Vec<bool>,
    }

    impl Walk for Line {
        type Item = usize;
        fn restart(&mut self, entries: &[Candidate<usize>]) {
            self.visited.clear();
            entries.iter().for_each(|e| {
                self.visited.insert(e.item as u64);
            });
        }
        fn expand(&mut self, item: &usize, _layer: usize, out: &mut Vec<Candidate<usize>>) {
            for n in [item.wrapping_sub(1), item + 1] {
                if n < self.pos.len() && self.visited.insert(n as u64) {
                    out.push(Candidate::new((self.pos[n] - self.q).abs(), n));
                }
            }
        }
        fn is_result(&self, item: &usize) -> bool {
            !self.deleted[*item]
        }
    }

    #[test]
    fn rounds_cover_everything_once_nearest_first() {
        let n = 100;
        for ef in [1, 3, 10, 40] {
            let mut w = Line { pos: (0..n).map(|i| i as f32).collect(), q: 37.2, visited: Visited::default(), deleted: vec![false; n] };
            (0..n).step_by(7).for_each(|i| w.deleted[i] = true);
            let entry = Candidate::new((0.0f32 - 37.2).abs(), 0usize);
            let mut s = ResumableSearch::new(&mut w, &[entry]);
            let mut all = Vec::new();
            while !s.is_exhausted() {
                s.next_round(&mut w, 0, ef, &mut all);
            }
            let ids: Vec<usize> = all.iter().map(|c| c.item).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), ids.len(), "ef {ef}: an element came out twice");
            assert_eq!(ids.len(), n - n.div_ceil(7), "ef {ef}: every live element comes out");
            assert!(ids.iter().all(|&i| i % 7 != 0), "deleted elements never come out");
            // On a line the walk is exact: the first round's results are the true nearest.
            let first: Vec<f32> = all.iter().take(ef).map(|c| c.dist).collect();
            let mut truth: Vec<f32> = (0..n).filter(|i| i % 7 != 0).map(|i| (i as f32 - 37.2).abs()).collect();
            truth.sort_by(f32::total_cmp);
            assert_eq!(first, truth[..ef.min(truth.len())].to_vec(), "ef {ef}");
        }
    }
}
