//! The in-memory HNSW graph used by index builds, filled by many threads at once.
//!
//! Vectors are pushed first (single-threaded, by the caller that reads them), then
//! [`Graph::build`] links them on a rayon pool. Each node's neighbour lists sit behind their own
//! mutex, held only while a list is copied out or rewritten, so threads rarely wait; the one
//! global lock is taken by the rare insert that raises the graph's top level, as in hnswlib.
//! Levels are drawn from a seeded generator keyed by node number, so a build's layer structure
//! does not depend on the thread count or insertion order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use rayon::prelude::*;

use super::heuristic::select_neighbors;
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

/// Neighbour lists of one node: for each layer `l` in `0..=level`, a count followed by
/// `max_links(l)` slots.
type Links = Box<[u32]>;

pub struct Graph<E: VectorElem> {
    params: Params,
    dim: usize,
    vectors: Vec<E>,
    levels: Vec<u8>,
    links: Vec<Mutex<Links>>,
    /// (entry node, its level); `None` while the graph is empty.
    entry: RwLock<Option<(u32, usize)>>,
    /// Serializes inserts that raise the top level.
    grow: Mutex<()>,
}

/// Per-thread buffers, reused by every insert a thread runs.
struct Scratch {
    visited: Visited,
    ids: Vec<u32>,
    search: SearchScratch<u32>,
    found: Vec<Candidate<u32>>,
    entries: Vec<Candidate<u32>>,
    selected: Vec<Candidate<u32>>,
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
            buf: Vec::new(),
        }
    }
}

fn lock(m: &Mutex<Links>) -> MutexGuard<'_, Links> {
    // A panic elsewhere cannot leave a list half-written (writes are whole-slice copies), so a
    // poisoned lock is still safe to use; the panic itself propagates through rayon.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E: VectorElem> Graph<E> {
    pub fn new(dim: usize, params: Params) -> Self {
        Graph {
            params,
            dim,
            vectors: Vec::new(),
            levels: Vec::new(),
            links: Vec::new(),
            entry: RwLock::new(None),
            grow: Mutex::new(()),
        }
    }

    /// Estimated heap bytes per node, for maintenance_work_mem accounting.
    pub fn bytes_per_node(dim: usize, m: usize) -> usize {
        let layer0 = (2 * m + 1) * 4;
        // A node has 1/(m-1) upper layers on average, each (m+1) slots.
        let upper = (m + 1) * 4 / (m.max(2) - 1) + 1;
        // Mutex + Box pointer + malloc header, and the level byte.
        let overhead = 8 + 16 + 16 + 1;
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
        let slots: usize = (0..=level).map(|l| 1 + self.params.max_links(l)).sum();
        self.links.push(Mutex::new(vec![0u32; slots].into_boxed_slice()));
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

    fn layer_range(&self, layer: usize) -> core::ops::Range<usize> {
        let start: usize = (0..layer).map(|l| 1 + self.params.max_links(l)).sum();
        start..start + 1 + self.params.max_links(layer)
    }

    /// Copy of `id`'s neighbours on `layer`.
    pub fn neighbors(&self, id: u32, layer: usize) -> Vec<u32> {
        let links = lock(&self.links[id as usize]);
        let slot = &links[self.layer_range(layer)];
        slot[1..1 + slot[0] as usize].to_vec()
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
        })
    }

    fn insert(&self, q: u32, s: &mut Scratch) {
        let level = self.level(q);
        let seen = self.entry();
        let _grow = match seen {
            Some((_, top)) if level <= top => None,
            _ => Some(self.grow.lock().unwrap_or_else(|e| e.into_inner())),
        };
        let Some((ep, top)) = self.entry() else {
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
            select_neighbors(&s.found, self.params.max_links(l), |a, b| self.dist(*a, *b), &mut s.selected);
            self.add_links(q, l, &s.selected);
            for c in &s.selected {
                self.add_links(c.item, l, &[Candidate::new(c.dist, q)]);
            }
            // The paper's "ep <- W": the whole result set seeds the next layer.
            core::mem::swap(&mut s.entries, &mut s.found);
        }
        if level > top {
            *self.entry.write().unwrap_or_else(|e| e.into_inner()) = Some((q, level));
        }
    }

    /// Add `new` (measured from `base`) to `base`'s list on `layer`; when the list is full,
    /// re-select with the heuristic over old and new links together.
    fn add_links(&self, base: u32, layer: usize, new: &[Candidate<u32>]) {
        let cap = self.params.max_links(layer);
        let range = self.layer_range(layer);
        let mut guard = lock(&self.links[base as usize]);
        let slot = &mut guard[range];
        let mut count = slot[0] as usize;
        let mut overflow = Vec::new();
        for c in new {
            if c.item == base || slot[1..1 + count].contains(&c.item) {
                continue;
            }
            if count < cap {
                slot[1 + count] = c.item;
                count += 1;
            } else {
                overflow.push(*c);
            }
        }
        if !overflow.is_empty() {
            let mut all: Vec<Candidate<u32>> =
                slot[1..1 + count].iter().map(|&n| Candidate::new(self.dist(base, n), n)).collect();
            all.extend(overflow);
            all.sort_by(|a, b| a.dist.total_cmp(&b.dist));
            let mut kept = Vec::with_capacity(cap);
            select_neighbors(&all, cap, |a, b| self.dist(*a, *b), &mut kept);
            count = kept.len();
            for (dst, c) in slot[1..].iter_mut().zip(&kept) {
                *dst = c.item;
            }
        }
        slot[0] = count as u32;
    }

    /// The `k` nearest nodes to `query` (normalized by the caller for cosine).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Candidate<u32>> {
        let Some((ep, top)) = self.entry() else { return Vec::new() };
        let m = self.params.metric;
        let (mut visited, mut ids) = (Visited::with_capacity(self.len()), Vec::new());
        let mut walk = MemWalk { graph: self, visited: &mut visited, ids: &mut ids, dist: |v: &[E]| E::distance_to(m, query, v) };
        let mut cur = Candidate::new(E::distance_to(m, query, self.vector(ep)), ep);
        let mut buf = Vec::new();
        for l in (1..=top).rev() {
            cur = greedy_closest(&mut walk, cur, l, &mut buf);
        }
        let mut out = Vec::new();
        search_layer(&mut walk, &[cur], ef.max(k), 0, &mut SearchScratch::default(), &mut out);
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
            let links = lock(&self.graph.links[*item as usize]);
            let slot = &links[self.graph.layer_range(layer)];
            for &n in &slot[1..1 + slot[0] as usize] {
                if self.visited.insert(n as u64) {
                    self.ids.push(n);
                }
            }
        }
        for (i, &n) in self.ids.iter().enumerate() {
            if let Some(&next) = self.ids.get(i + 1) {
                prefetch(self.graph.vector(next));
            }
            out.push(Candidate::new((self.dist)(self.graph.vector(n)), n));
        }
    }
}

/// Ask for the start of the next vector while this one is measured: neighbour vectors are
/// scattered, so without it every distance starts with a cache miss.
#[inline(always)]
fn prefetch<E>(v: &[E]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = v.as_ptr().cast::<i8>();
        let bytes = core::mem::size_of_val(v);
        // SAFETY: prefetch is a hint that never faults; the addresses lie inside `v`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if bytes > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
