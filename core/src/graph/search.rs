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
