//! The in-memory HNSW graph used by index builds, filled by many threads at once.
//!
//! Vectors are pushed first (single-threaded, by the caller that reads them), then
//! [`Graph::build`] links them on a rayon pool. Each node's neighbour lists sit behind their own
//! mutex, held only while a list is copied out or rewritten, so threads rarely wait; the one
//! global lock is taken by the rare insert that raises the graph's top level, as in hnswlib.
//! Levels are drawn from a seeded generator keyed by node number, so a build's layer structure
//! does not depend on the thread count or insertion order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;

use super::heuristic::{insert_link, select_links, Link};
use super::links::LinkStore;
use super::search::{greedy_closest, search_layer, Candidate, SearchScratch, Walk};
use super::visited::Visited;
use crate::metric::{Metric, VectorElem};

/// Graph shape and build effort.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Links per node on layers above 0; layer 0 keeps `2 * m`.
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    pub metric: Metric,
    /// Highest layer a node may get (bounded by what fits in one index page).
    pub max_level: usize,
    /// Seed of the level generator.
    pub seed: u64,
}

impl Params {
    pub fn max_links(&self, layer: usize) -> usize {
        if layer == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    /// mL = 1 / ln(M): each layer keeps about 1/M of the layer below.
    pub fn level_multiplier(&self) -> f64 {
        1.0 / (self.m.max(2) as f64).ln()
    }

    /// The level of node `index`, drawn from the seeded generator.
    pub fn level_of(&self, index: u64) -> usize {
        random_level(splitmix64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)), self.m, self.max_level)
    }
}

/// floor(-ln(U) * mL) for U uniform in (0, 1] taken from the random bits `r`, capped at
/// `max_level`.
pub fn random_level(r: u64, m: usize, max_level: usize) -> usize {
    // 53 random bits, shifted into (0, 1] so ln never sees 0.
    let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln() / (m.max(2) as f64).ln()) as usize).min(max_level)
}

/// A small, well-mixed hash: levels need independence, not cryptographic quality.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The build was cancelled through its flag (query cancel, statement timeout).
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

pub struct Graph<E: VectorElem> {
    params: Params,
    dim: usize,
    vectors: Vec<E>,
    levels: Vec<u8>,
    links: LinkStore,
    /// (entry node, its level); `None` while the graph is empty.
    entry: RwLock<Option<(u32, usize)>>,
    /// Serializes inserts that raise the top level.
    grow: Mutex<()>,
    /// One bit per node, set once its insert has finished. Searches only walk through finished
    /// nodes: a node being inserted is linked layer by layer from the top, so on a lower layer
    /// it may still have no neighbours; a search that entered there would find nothing and
    /// link its own node to it alone, leaving that node unreachable once the list is pruned.
    done: Vec<AtomicU64>,
}

/// Per-thread buffers, reused by every insert a thread runs.
struct Scratch {
    visited: Visited,
    ids: Vec<u32>,
    search: SearchScratch<u32>,
    found: Vec<Candidate<u32>>,
    entries: Vec<Candidate<u32>>,
    selected: Vec<Link>,
    list: Vec<Link>,
    buf: Vec<Candidate<u32>>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            visited: Visited::with_capacity(n),
            ids: Vec::new(),
            search: SearchScratch::default(),
            found: Vec::new(),
            entries: Vec::new(),
            selected: Vec::new(),
            list: Vec::new(),
            buf: Vec::new(),
        }
    }
}

impl<E: VectorElem> Graph<E> {
    pub fn new(dim: usize, params: Params) -> Self {
        Graph {
            params,
            dim,
            vectors: Vec::new(),
            levels: Vec::new(),
            links: LinkStore::new(params.max_links(0)),
            entry: RwLock::new(None),
            grow: Mutex::new(()),
            done: Vec::new(),
        }
    }

    /// Estimated heap bytes per node, for maintenance_work_mem accounting.
    pub fn bytes_per_node(dim: usize, m: usize) -> usize {
        // Layer 0: state word and 2m ids, plus 2m (distance, pruner) pairs.
        let layer0 = (2 * m + 1) * 4 + 2 * m * 8;
        // A node has 1/(m-1) upper layers on average, each a Vec of up to m+1 links.
        let upper = (24 + 16 + (m + 1) * core::mem::size_of::<Link>()) / (m.max(2) - 1) + 1;
        // The per-node Vec of upper lists, and the level byte.
        let overhead = 24 + 1;
        dim * E::SIZE + layer0 + upper + overhead
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Add a vector (already normalized for cosine); it is linked by [`Graph::build`].
    pub fn push(&mut self, v: &[E]) -> u32 {
        assert_eq!(v.len(), self.dim, "vector of the wrong dimension");
        let id = self.levels.len();
        let level = self.params.level_of(id as u64);
        self.vectors.extend_from_slice(v);
        self.levels.push(level as u8);
        self.links.push(level);
        if id.is_multiple_of(64) {
            self.done.push(AtomicU64::new(0));
        }
        id as u32
    }

    #[inline]
    pub fn vector(&self, id: u32) -> &[E] {
        let i = id as usize * self.dim;
        &self.vectors[i..i + self.dim]
    }

    pub fn level(&self, id: u32) -> usize {
        self.levels[id as usize] as usize
    }

    pub fn entry(&self) -> Option<(u32, usize)> {
        *self.entry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Copy of `id`'s neighbours on `layer`, nearest first.
    pub fn neighbors(&self, id: u32, layer: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.links.lock(id).for_each(layer, |n| out.push(n));
        out
    }

    #[inline]
    fn is_done(&self, id: u32) -> bool {
        self.done[id as usize / 64].load(Ordering::Acquire) & (1 << (id % 64)) != 0
    }

    fn mark_done(&self, id: u32) {
        self.done[id as usize / 64].fetch_or(1 << (id % 64), Ordering::Release);
    }

    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        E::distance(self.params.metric, self.vector(a), self.vector(b))
    }

    /// Link every pushed node, `threads` at a time. `progress` counts linked nodes; setting
    /// `cancel` stops the build at the next node.
    pub fn build(&self, pool: &rayon::ThreadPool, progress: &AtomicUsize, cancel: &AtomicBool) -> Result<(), Cancelled> {
        let n = self.len();
        if n == 0 {
            return Ok(());
        }
        let first = if self.entry().is_none() {
            self.insert(0, &mut Scratch::new(n));
            progress.fetch_add(1, Ordering::Relaxed);
            1
        } else {
            0
        };
        pool.install(|| {
            (first as u32..n as u32).into_par_iter().try_for_each_init(
                || Scratch::new(n),
                |scratch, id| {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(Cancelled);
                    }
                    self.insert(id, scratch);
                    progress.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            )
        })?;
        self.connect_unreachable();
        Ok(())
    }

    /// Nodes reachable on layer 0 from the entry point, each with the node it was first reached
    /// from (a spanning tree; the entry point is its own parent, unreached nodes have
    /// `u32::MAX`).
    fn reachable(&self, order: &mut Vec<u32>) -> Vec<u32> {
        let mut parent = vec![u32::MAX; self.len()];
        if let Some((ep, _)) = self.entry() {
            self.mark_reachable(ep, ep, &mut parent, order);
        }
        parent
    }

    /// Mark `from` reached through `via`, and every node it reaches that was not yet;
    /// newly reached nodes are appended to `order`.
    fn mark_reachable(&self, from: u32, via: u32, parent: &mut [u32], order: &mut Vec<u32>) {
        if parent[from as usize] != u32::MAX {
            return;
        }
        parent[from as usize] = via;
        order.push(from);
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            self.links.lock(n).for_each(0, |m| {
                if parent[m as usize] == u32::MAX {
                    parent[m as usize] = n;
                    order.push(m);
                    stack.push(m);
                }
            });
        }
    }

    /// Whether every node is reachable on layer 0 from the entry point: the invariant searches
    /// rely on (they seed layer 0 with the entry point too), so that a search with `ef` at
    /// least the number of nodes finds them all.
    pub fn all_reachable(&self) -> bool {
        self.reachable(&mut Vec::new()).iter().all(|&p| p != u32::MAX)
    }

    /// The heuristic prunes links without looking at in-degrees, so now and then every link
    /// to a node gets pruned and no search can reach it: a row the index would never return.
    /// Give each such node a link from its nearest reachable neighbour (taking that
    /// neighbour's farthest place when its list is full), and repeat for any node this
    /// orphans in turn. Runs on one thread after linking; a few milliseconds per 100k nodes.
    ///
    /// A node of the graph gives up at most one place to such a link. Under inner product
    /// most nodes are lost (a point inside the data's hull is nobody's nearest: the nearest by
    /// `-dot` are the points of largest norm; 85% of 10k uniform 3-d points), and they all
    /// have the same few hull points as nearest reachable neighbours: taking a place in those
    /// points' lists, the ones every search walks, each time filled them with interior points
    /// (recall@20 at ef 40 fell from 0.99 to 0.75). Once its neighbours have given their
    /// place, a lost node is linked from a node reconnected earlier (a breadth-first tree
    /// hanging off the graph), whose list no search for a nearest row needs.
    ///
    /// A place is only taken from a link that is not on the spanning tree of the reachable
    /// nodes, so no reachable node is ever cut off (an in-degree test is not enough: the other
    /// link may come from a node reachable only through the one dropped). Should every
    /// preferred neighbour refuse, any reachable node with a free place or a non-tree link
    /// takes the node: one always exists (tree links are one fewer than the reachable nodes,
    /// and each of those has `2m >= 2` places), so every node ends reachable.
    pub fn connect_unreachable(&self) -> usize {
        let mut added = 0;
        let mut query = vec![0.0f32; self.dim];
        // Places a node may still give: 1 for a node of the graph, [`Graph::spare_places`] for
        // a reconnected one (set when it is reconnected).
        let mut places = vec![1u8; self.len()];
        // Reachable nodes in the order they were reached, for the last resort below.
        let mut order = Vec::new();
        let mut parent = self.reachable(&mut order);
        let mut lost: Vec<u32> = (0..self.len() as u32).filter(|&i| parent[i as usize] == u32::MAX).collect();
        if lost.is_empty() {
            return 0;
        }
        // Nearest to their own neighbours first: those are the nodes a search may want
        // (under inner product, the ones of large norm), and they should get the graph's
        // places, not the tree's.
        let mut list = Vec::new();
        let mut keyed: Vec<(f32, u32)> = lost
            .iter()
            .map(|&q| {
                self.links.lock(q).load(0, &mut list);
                (list.first().map_or(f32::INFINITY, |l| l.dist), q)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        lost.clear();
        lost.extend(keyed.into_iter().map(|(_, q)| q));
        // Nodes reconnected that may still give a place, oldest first.
        let mut spare: VecDeque<u32> = VecDeque::new();
        // The last resort's cursor in `order`: a node it passed over has a full list of tree
        // links only, and stays so (its tree children keep it as their parent, and nothing
        // else adds to its list), so the scan never needs to look at it again.
        let mut any = 0usize;
        for q in lost {
            if parent[q as usize] != u32::MAX {
                continue;
            }
            let reached = |e: &u32| parent[*e as usize] != u32::MAX;
            let mut from: Vec<u32> = self.neighbors(q, 0).into_iter().filter(reached).collect();
            E::to_f32(self.vector(q), &mut query);
            from.extend(self.search(&query, 16, 64).into_iter().map(|c| c.item).filter(|e| *e != q && reached(e)));
            let mut by = from.iter().copied().find(|&e| places[e as usize] > 0 && self.force_link(e, q, &parent));
            while by.is_none() {
                let Some(&e) = spare.front() else { break };
                if places[e as usize] > 0 && self.force_link(e, q, &parent) {
                    by = Some(e);
                } else {
                    spare.pop_front();
                }
            }
            if by.is_none() {
                // Better a crowded list than a row no search returns.
                by = from.iter().copied().find(|&e| self.force_link(e, q, &parent));
            }
            while by.is_none() && any < order.len() {
                if self.force_link(order[any], q, &parent) {
                    by = Some(order[any]);
                } else {
                    any += 1;
                }
            }
            let e = by.expect("a reachable node with a free place or a non-tree link exists");
            places[e as usize] = places[e as usize].saturating_sub(1);
            places[q as usize] = self.spare_places();
            added += 1;
            self.mark_reachable(q, e, &mut parent, &mut order);
            spare.push_back(q);
        }
        debug_assert!(self.all_reachable());
        added
    }

    /// Places a reconnected node gives to other lost nodes: a few, so the tree of them stays
    /// shallow, and not all, so it keeps most of its own links into the graph.
    fn spare_places(&self) -> u8 {
        (self.params.max_links(0) / 4).clamp(1, u8::MAX as usize) as u8
    }

    /// Put `q` in `e`'s layer-0 list. A full list gives up its farthest entry that is not a
    /// link of the spanning tree `parent` (its node was reached through another node, which
    /// still links to it), so no node loses its way in; if there is none, the link is not made
    /// and the caller tries another node.
    fn force_link(&self, e: u32, q: u32, parent: &[u32]) -> bool {
        let cap = self.params.max_links(0);
        let mut g = self.links.lock(e);
        let mut list = Vec::new();
        g.load(0, &mut list);
        if list.iter().any(|l| l.id == q) {
            return true;
        }
        if list.len() >= cap {
            let Some(victim) = list.iter().rposition(|l| parent[l.id as usize] != e) else {
                return false;
            };
            list.remove(victim);
        }
        let d = self.dist(e, q);
        let at = list.partition_point(|l| l.dist <= d);
        list.insert(at, Link { id: q, dist: d, pruner: super::heuristic::KEPT });
        g.store(0, &list);
        true
    }

    fn insert(&self, q: u32, s: &mut Scratch) {
        let level = self.level(q);
        let seen = self.entry();
        let _grow = match seen {
            Some((_, top)) if level <= top => None,
            _ => Some(self.grow.lock().unwrap_or_else(|e| e.into_inner())),
        };
        let Some((ep, top)) = self.entry() else {
            self.mark_done(q);
            *self.entry.write().unwrap_or_else(|e| e.into_inner()) = Some((q, level));
            return;
        };
        let m = self.params.metric;
        let query = self.vector(q);
        let mut walk = MemWalk { graph: self, visited: &mut s.visited, ids: &mut s.ids, dist: |v: &[E]| E::distance(m, query, v) };
        let mut cur = Candidate::new(E::distance(m, query, self.vector(ep)), ep);
        for l in (level + 1..=top).rev() {
            cur = greedy_closest(&mut walk, cur, l, &mut s.buf);
        }
        s.entries.clear();
        s.entries.push(cur);
        for l in (0..=level.min(top)).rev() {
            search_layer(&mut walk, &s.entries, self.params.ef_construction, l, &mut s.search, &mut s.found);
            // Another thread may have found `q` already and linked it (it is reachable from
            // the upper layers): keep those links.
            s.found.retain(|c| c.item != q);
            select_links(&s.found, self.params.max_links(l), |a, b| self.dist(a, b), &mut s.selected);
            let cap = self.params.max_links(l);
            {
                let mut g = self.links.lock(q);
                g.load(l, &mut s.list);
                if s.list.is_empty() {
                    g.store(l, &s.selected);
                } else {
                    for link in &s.selected {
                        insert_link(&mut s.list, cap, link.id, link.dist, |a, b| self.dist(a, b));
                    }
                    g.store(l, &s.list);
                }
            }
            for link in &s.selected {
                let mut g = self.links.lock(link.id);
                g.load(l, &mut s.list);
                if insert_link(&mut s.list, cap, q, link.dist, |a, b| self.dist(a, b)) {
                    g.store(l, &s.list);
                }
            }
            // The paper's "ep <- W": the whole result set seeds the next layer.
            core::mem::swap(&mut s.entries, &mut s.found);
        }
        self.mark_done(q);
        if level > top {
            *self.entry.write().unwrap_or_else(|e| e.into_inner()) = Some((q, level));
        }
    }

    /// The `k` nearest nodes to `query` (normalized by the caller for cosine).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Candidate<u32>> {
        let Some((ep, top)) = self.entry() else { return Vec::new() };
        let m = self.params.metric;
        let (mut visited, mut ids) = (Visited::with_capacity(self.len()), Vec::new());
        let mut walk = MemWalk { graph: self, visited: &mut visited, ids: &mut ids, dist: |v: &[E]| E::distance_to(m, query, v) };
        let start = Candidate::new(E::distance_to(m, query, self.vector(ep)), ep);
        let mut cur = start;
        let mut buf = Vec::new();
        for l in (1..=top).rev() {
            cur = greedy_closest(&mut walk, cur, l, &mut buf);
        }
        // The entry point seeds layer 0 too: every node is reachable from it there (see
        // [`Graph::connect_unreachable`]), so a wide enough search finds every node.
        let seeds = if cur.item == ep { vec![cur] } else { vec![cur, start] };
        let mut out = Vec::new();
        search_layer(&mut walk, &seeds, ef.max(k), 0, &mut SearchScratch::default(), &mut out);
        out.truncate(k);
        out
    }
}

struct MemWalk<'a, E: VectorElem, F: Fn(&[E]) -> f32> {
    graph: &'a Graph<E>,
    visited: &'a mut Visited,
    ids: &'a mut Vec<u32>,
    dist: F,
}

impl<E: VectorElem, F: Fn(&[E]) -> f32> Walk for MemWalk<'_, E, F> {
    type Item = u32;

    fn restart(&mut self, entries: &[Candidate<u32>]) {
        self.visited.clear();
        for e in entries {
            self.visited.insert(e.item as u64);
        }
    }

    fn expand(&mut self, item: &u32, layer: usize, out: &mut Vec<Candidate<u32>>) {
        self.ids.clear();
        {
            let (visited, ids, graph) = (&mut *self.visited, &mut *self.ids, self.graph);
            graph.links.lock(*item).for_each(layer, |n| {
                if graph.is_done(n) && visited.insert(n as u64) {
                    ids.push(n);
                }
            });
        }
        for (i, &n) in self.ids.iter().enumerate() {
            if let Some(&next) = self.ids.get(i + 1) {
                crate::distance::prefetch(self.graph.vector(next));
            }
            out.push(Candidate::new((self.dist)(self.graph.vector(n)), n));
        }
    }
}
