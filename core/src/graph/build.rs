//! The in-memory HNSW graph used by index builds, filled by many threads at once.
//!
//! Vectors are pushed first (single-threaded, by the caller that reads them), then
//! [`Graph::build`] links them on a rayon pool. Each node's neighbour lists sit behind their own
//! mutex, held only while a list is copied out or rewritten, so threads rarely wait; the one
//! global lock is taken by the rare insert that raises the graph's top level, as in hnswlib.
//! Levels are drawn from a seeded generator keyed by node number, so a build's layer structure
//! does not depend on the thread count or insertion order.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;

use super::heuristic::{insert_link, select_links, Link, KEPT};
use super::links::LinkStore;
use super::maintain::{self, RepairGraph};
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

/// Memory that holds a graph's vectors for it, back to back in node order (for sparse graphs,
/// at the offsets [`Graph::push_detached`] recorded): a build whose vectors do not fit its
/// memory budget writes them to a file and maps it ([`Graph::detach_vectors`], [`Graph::attach`]).
pub trait VectorMemory<E>: Send + Sync {
    fn as_slice(&self) -> &[E];
}

impl<E: Send + Sync> VectorMemory<E> for Vec<E> {
    fn as_slice(&self) -> &[E] {
        self
    }
}

/// The build was cancelled through its flag (query cancel, statement timeout).
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

pub struct Graph<E: VectorElem> {
    params: Params,
    /// Elements per vector; 0 for vectors of varying length (sparse), found through `starts`.
    dim: usize,
    vectors: Vec<E>,
    /// Set once the vectors live elsewhere (see [`VectorMemory`]); `vectors` is then empty.
    attached: Option<Box<dyn VectorMemory<E>>>,
    /// Whether vectors are kept outside (pushed with [`Graph::push_detached`]), and how many
    /// elements of them there are.
    detached: Option<usize>,
    /// Where each vector starts in `vectors`, and its end (only when `dim` is 0).
    starts: Vec<usize>,
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
    /// A graph of `dim`-element vectors, or of vectors of any length with `dim` 0.
    pub fn new(dim: usize, params: Params) -> Self {
        Graph {
            params,
            dim,
            vectors: Vec::new(),
            attached: None,
            detached: None,
            starts: if dim == 0 { vec![0] } else { Vec::new() },
            levels: Vec::new(),
            links: LinkStore::new(params.max_links(0)),
            entry: RwLock::new(None),
            grow: Mutex::new(()),
            done: Vec::new(),
        }
    }

    /// Heap bytes of the graph so far, for maintenance_work_mem accounting: the links, the
    /// heuristic's bookkeeping until [`Graph::release_bookkeeping`], and the vectors the graph
    /// holds itself (none once detached).
    pub fn bytes(&self) -> usize {
        self.links.bytes() + self.vectors.len() * E::SIZE + self.starts.len() * 8 + self.levels.len() + self.done.len() * 8
    }

    /// Bytes a node's link bookkeeping takes until [`Graph::release_bookkeeping`].
    pub fn bookkeeping_per_node(&self) -> usize {
        self.links.bookkeeping_per_node()
    }

    /// Free what only linking needs, once [`Graph::build`] is over: the graph can still be
    /// read and searched, not built further.
    pub fn release_bookkeeping(&mut self) {
        self.links.release_bookkeeping();
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
        assert!(self.dim == 0 || v.len() == self.dim, "vector of the wrong dimension");
        assert!(self.detached.is_none(), "push after detach_vectors: use push_detached");
        self.vectors.extend_from_slice(v);
        self.push_node(self.vectors.len())
    }

    /// Hand the vectors pushed so far to the caller, who keeps them (and those of later
    /// [`Graph::push_detached`] calls) outside the graph until [`Graph::attach`].
    pub fn detach_vectors(&mut self) -> Vec<E> {
        assert!(self.detached.is_none() && self.attached.is_none(), "vectors detached twice");
        self.detached = Some(self.vectors.len());
        std::mem::take(&mut self.vectors)
    }

    /// Add a node whose vector, of `len` elements, the caller keeps (after
    /// [`Graph::detach_vectors`]).
    pub fn push_detached(&mut self, len: usize) -> u32 {
        assert!(self.dim == 0 || len == self.dim, "vector of the wrong dimension");
        let end = self.detached.expect("push_detached before detach_vectors") + len;
        self.detached = Some(end);
        self.push_node(end)
    }

    /// Give the graph the memory that holds its detached vectors, before [`Graph::build`].
    pub fn attach(&mut self, memory: Box<dyn VectorMemory<E>>) {
        let want = self.detached.expect("attach without detach_vectors");
        assert_eq!(memory.as_slice().len(), want, "attached vectors of the wrong length");
        self.attached = Some(memory);
    }

    /// Whether the vectors live outside the graph's own memory.
    pub fn is_detached(&self) -> bool {
        self.detached.is_some()
    }

    /// A node whose vector ends at element `end` of the vectors.
    fn push_node(&mut self, end: usize) -> u32 {
        let id = self.levels.len();
        let level = self.params.level_of(id as u64);
        if self.dim == 0 {
            self.starts.push(end);
        }
        self.levels.push(level as u8);
        self.links.push(level);
        if id.is_multiple_of(64) {
            self.done.push(AtomicU64::new(0));
        }
        id as u32
    }

    /// Where node `id`'s vector lies among all the vectors, in elements.
    #[inline]
    pub fn vector_range(&self, id: u32) -> core::ops::Range<usize> {
        if self.dim == 0 {
            return self.starts[id as usize]..self.starts[id as usize + 1];
        }
        id as usize * self.dim..(id as usize + 1) * self.dim
    }

    #[inline]
    pub fn vector(&self, id: u32) -> &[E] {
        let all = match &self.attached {
            Some(m) => m.as_slice(),
            None => &self.vectors,
        };
        &all[self.vector_range(id)]
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
        assert!(self.detached.is_none() || self.attached.is_some(), "build with detached vectors not attached");
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

    /// Whether every node is reachable on layer 0 from the entry point: the invariant searches
    /// rely on (they seed layer 0 with the entry point too), so that a search with `ef` at
    /// least the number of nodes finds them all.
    pub fn all_reachable(&self) -> bool {
        maintain::all_reachable(&MemGraph { graph: self, query: Vec::new() })
    }

    /// Link every node no search could reach (see [`maintain::connect_unreachable`]); runs on
    /// one thread after linking, a few milliseconds per 100k nodes. Returns the links added.
    pub fn connect_unreachable(&self) -> usize {
        let added = maintain::connect_unreachable(&mut MemGraph { graph: self, query: vec![0.0; self.dim] }, self.params.max_links(0));
        debug_assert!(self.all_reachable());
        added
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

/// The build graph as graph maintenance sees it. Single-threaded (after the parallel linking),
/// so a list's version never changes between a read and a write.
struct MemGraph<'a, E: VectorElem> {
    graph: &'a Graph<E>,
    query: Vec<f32>,
}

impl<E: VectorElem> RepairGraph for MemGraph<'_, E> {
    fn len(&self) -> usize {
        self.graph.len()
    }

    fn entry(&self) -> Option<u32> {
        self.graph.entry().map(|(ep, _)| ep)
    }

    fn routes(&self, _: u32) -> bool {
        true
    }

    fn is_live(&self, _: u32) -> bool {
        true
    }

    fn links(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        self.graph.links.lock(id).for_each(0, |n| out.push(n));
    }

    fn nearest(&mut self, id: u32, out: &mut Vec<u32>) {
        let v = self.graph.vector(id);
        self.query.resize(v.len(), 0.0);
        E::to_f32(v, &mut self.query);
        out.clear();
        out.extend(self.graph.search(&self.query, 16, 64).into_iter().map(|c| c.item));
    }

    fn distance(&mut self, a: u32, b: u32) -> f32 {
        self.graph.dist(a, b)
    }

    fn read(&mut self, from: u32, out: &mut Vec<u32>) -> Option<u64> {
        self.links(from, out);
        Some(0)
    }

    /// Entries already in the list keep their bookkeeping; a new one is kept (it was forced
    /// in), and the list stays sorted by distance.
    fn write(&mut self, from: u32, _: u64, list: &[u32]) -> bool {
        let g = self.graph;
        let mut guard = g.links.lock(from);
        let mut old = Vec::new();
        guard.load(0, &mut old);
        let mut new: Vec<Link> = list
            .iter()
            .map(|&id| old.iter().find(|l| l.id == id).copied().unwrap_or_else(|| Link { id, dist: g.dist(from, id), pruner: KEPT }))
            .collect();
        new.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        guard.store(0, &new);
        true
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
