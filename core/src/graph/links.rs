//! Neighbour lists of the in-memory build graph, laid out for concurrent builds.
//!
//! Layer 0 (where every node is, and where searches spend their time) is one flat array: per
//! node a state word — lock bit and count — followed by its `2m` neighbour ids, so an expansion
//! reads one contiguous run of memory with no pointer chasing. The heuristic's bookkeeping sits
//! in parallel arrays that only link updates touch: each entry's distance to the owner, and its
//! pruner as a position in the same list (one byte; the pruner is always a kept entry of the
//! list). Upper layers, which hold 1/(m-1) of the nodes, are small vectors, only for the nodes
//! that have them. A build at a million rows holds about 330 bytes of links a node (m = 16),
//! what decides whether its graph fits `maintenance_work_mem`; the bookkeeping, 5 bytes an
//! entry, is released once the graph is linked ([`LinkStore::release_bookkeeping`]).
//!
//! Each node has its own spin lock (the state word's top bit), held only to copy a list out or
//! to rewrite it; nobody holds two at once, so there is no lock ordering to get wrong.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use super::heuristic::{Link, KEPT};

const LOCK: u32 = 1 << 31;
const COUNT: u32 = 0xFFFF;
/// A layer-0 entry's pruner position when the heuristic keeps it.
const KEPT_AT: u8 = u8::MAX;
/// The position of a pruner that is no longer in the list (a list rewritten around an entry
/// it dropped, see `RepairGraph::write` in build.rs): the entry stays pruned, as before.
const GONE_AT: u8 = u8::MAX - 1;
/// What [`NodeGuard::load`] gives as the pruner at [`GONE_AT`]: no node's id.
pub const GONE: u32 = u32::MAX - 1;
/// No upper lists.
const NO_UPPER: u32 = u32::MAX;

pub struct LinkStore {
    cap0: usize,
    /// Per node: state word, then `cap0` ids.
    l0: Vec<AtomicU32>,
    /// Per node: `cap0` distances to the owner, matching the ids.
    l0_dist: Vec<UnsafeCell<f32>>,
    /// Per node: `cap0` positions of each entry's pruner in the list, or [`KEPT_AT`].
    l0_pruner: Vec<UnsafeCell<u8>>,
    /// Per node: where its upper lists are in `upper`, or [`NO_UPPER`].
    upper_at: Vec<u32>,
    /// The lists of layers `1..=level` of each node above layer 0.
    upper: Vec<UnsafeCell<Vec<Vec<Link>>>>,
    /// Bytes the upper lists take once full.
    upper_bytes: usize,
}

// SAFETY: the UnsafeCell contents of a node are only touched while holding that node's lock
// (the LOCK bit of its state word, taken with Acquire and released with Release ordering).
unsafe impl Sync for LinkStore {}

impl LinkStore {
    pub fn new(cap0: usize) -> LinkStore {
        assert!(cap0 < GONE_AT as usize, "layer-0 lists of {cap0} entries");
        LinkStore {
            cap0,
            l0: Vec::new(),
            l0_dist: Vec::new(),
            l0_pruner: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            upper_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.upper_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.upper_at.is_empty()
    }

    /// Add an unlinked node on layers `0..=level` (single-threaded, before building).
    pub fn push(&mut self, level: usize) {
        assert!(!self.released(), "push after release_bookkeeping");
        self.l0.extend((0..=self.cap0).map(|_| AtomicU32::new(0)));
        self.l0_dist.extend((0..self.cap0).map(|_| UnsafeCell::new(0.0)));
        self.l0_pruner.extend((0..self.cap0).map(|_| UnsafeCell::new(KEPT_AT)));
        if level == 0 {
            self.upper_at.push(NO_UPPER);
        } else {
            self.upper_at.push(self.upper.len() as u32);
            self.upper.push(UnsafeCell::new(vec![Vec::new(); level]));
            // A list of up to cap0/2 + 1 links (one over while it is re-selected).
            let list = core::mem::size_of::<Vec<Link>>() + (self.cap0 / 2 + 1) * core::mem::size_of::<Link>();
            self.upper_bytes += core::mem::size_of::<UnsafeCell<Vec<Vec<Link>>>>() + level * list;
        }
    }

    /// Heap bytes of the lists (upper lists counted full).
    pub fn bytes(&self) -> usize {
        let n = self.len();
        let aux = if self.released() { 0 } else { self.cap0 * (4 + 1) };
        n * ((self.cap0 + 1) * 4 + aux + 4) + self.upper_bytes
    }

    /// Bytes a node's layer-0 bookkeeping takes until [`LinkStore::release_bookkeeping`].
    pub fn bookkeeping_per_node(&self) -> usize {
        self.cap0 * 5
    }

    /// Free the heuristic's bookkeeping once linking is over: lists can still be read
    /// ([`NodeGuard::for_each`]), not loaded with it or changed.
    pub fn release_bookkeeping(&mut self) {
        self.l0_dist = Vec::new();
        self.l0_pruner = Vec::new();
    }

    fn released(&self) -> bool {
        self.l0_dist.len() != self.len() * self.cap0
    }

    /// The upper lists of `id`, if it has any.
    #[inline]
    fn upper_of(&self, id: usize) -> Option<&UnsafeCell<Vec<Vec<Link>>>> {
        match self.upper_at[id] {
            NO_UPPER => None,
            at => Some(&self.upper[at as usize]),
        }
    }

    /// Lock node `id`'s lists.
    #[inline]
    pub fn lock(&self, id: u32) -> NodeGuard<'_> {
        let state = &self.l0[id as usize * (self.cap0 + 1)];
        let mut spins = 0u32;
        loop {
            let v = state.load(Ordering::Relaxed);
            if v & LOCK == 0 && state.compare_exchange_weak(v, v | LOCK, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return NodeGuard { store: self, id: id as usize };
            }
            spins += 1;
            if spins > 64 {
                // The holder may have been preempted: let it run.
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    pub fn cap0(&self) -> usize {
        self.cap0
    }
}

/// A locked node; unlocks on drop.
pub struct NodeGuard<'a> {
    store: &'a LinkStore,
    id: usize,
}

impl NodeGuard<'_> {
    fn base(&self) -> usize {
        self.id * (self.store.cap0 + 1)
    }

    fn count0(&self) -> usize {
        (self.store.l0[self.base()].load(Ordering::Relaxed) & COUNT) as usize
    }

    /// Call `f` with each neighbour id on `layer`, nearest first.
    #[inline]
    pub fn for_each(&self, layer: usize, mut f: impl FnMut(u32)) {
        if layer == 0 {
            let base = self.base() + 1;
            for slot in &self.store.l0[base..base + self.count0()] {
                f(slot.load(Ordering::Relaxed));
            }
        } else if let Some(upper) = self.store.upper_of(self.id) {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &*upper.get() };
            if let Some(list) = upper.get(layer - 1) {
                list.iter().for_each(|l| f(l.id));
            }
        }
    }

    /// Copy the list of `layer` (with bookkeeping) into `out`.
    pub fn load(&self, layer: usize, out: &mut Vec<Link>) {
        out.clear();
        if layer == 0 {
            let (base, aux) = (self.base() + 1, self.id * self.store.cap0);
            for i in 0..self.count0() {
                // SAFETY: we hold this node's lock, which guards its bookkeeping slots.
                let (dist, at) = unsafe { (*self.store.l0_dist[aux + i].get(), *self.store.l0_pruner[aux + i].get()) };
                let pruner = match at {
                    KEPT_AT => KEPT,
                    GONE_AT => GONE,
                    at => self.store.l0[base + at as usize].load(Ordering::Relaxed),
                };
                out.push(Link { id: self.store.l0[base + i].load(Ordering::Relaxed), dist, pruner });
            }
        } else if let Some(upper) = self.store.upper_of(self.id) {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &*upper.get() };
            if let Some(list) = upper.get(layer - 1) {
                out.extend_from_slice(list);
            }
        }
    }

    /// Replace the list of `layer` (at most the layer's capacity).
    pub fn store(&mut self, layer: usize, list: &[Link]) {
        if layer == 0 {
            let n = list.len().min(self.store.cap0);
            let (base, aux) = (self.base(), self.id * self.store.cap0);
            let list = &list[..n];
            for (i, l) in list.iter().enumerate() {
                self.store.l0[base + 1 + i].store(l.id, Ordering::Relaxed);
                let at = match l.pruner {
                    KEPT => KEPT_AT,
                    p => list.iter().position(|r| r.id == p).map_or(GONE_AT, |at| at as u8),
                };
                // SAFETY: we hold this node's lock, which guards its bookkeeping slots.
                unsafe { (*self.store.l0_dist[aux + i].get(), *self.store.l0_pruner[aux + i].get()) = (l.dist, at) };
            }
            self.store.l0[base].store(LOCK | n as u32, Ordering::Relaxed);
        } else if let Some(upper) = self.store.upper_of(self.id) {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &mut *upper.get() };
            if let Some(slot) = upper.get_mut(layer - 1) {
                slot.clear();
                slot.extend_from_slice(list);
            }
        }
    }
}

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        self.store.l0[self.base()].fetch_and(!LOCK, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::heuristic::KEPT;

    #[test]
    fn store_load_and_concurrent_locking() {
        let mut s = LinkStore::new(4);
        s.push(0);
        s.push(2);
        {
            let mut g = s.lock(1);
            let list: Vec<Link> = (0..3).map(|i| Link { id: i, dist: i as f32, pruner: KEPT }).collect();
            g.store(0, &list);
            g.store(2, &list[..1]);
            let mut out = Vec::new();
            g.load(0, &mut out);
            assert_eq!(out, list);
            g.load(2, &mut out);
            assert_eq!(out, list[..1]);
            let mut ids = Vec::new();
            g.for_each(0, |i| ids.push(i));
            assert_eq!(ids, vec![0, 1, 2]);
        }
        // Many threads incrementing a counter kept in a list: no update is lost.
        let s = &s;
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(move || {
                    for _ in 0..1000 {
                        let mut g = s.lock(0);
                        let mut l = Vec::new();
                        g.load(0, &mut l);
                        if l.is_empty() {
                            l.push(Link { id: 0, dist: 0.0, pruner: KEPT });
                        }
                        l[0].id += 1;
                        g.store(0, &l);
                    }
                });
            }
        });
        let mut l = Vec::new();
        s.lock(0).load(0, &mut l);
        assert_eq!(l[0].id, 4000);
    }

    #[test]
    fn pruners_are_kept_as_positions_and_bookkeeping_is_released() {
        let mut s = LinkStore::new(6);
        for level in [0, 1, 0] {
            s.push(level);
        }
        // Entries pruned by kept entries before and after them in the list.
        let list = vec![
            Link { id: 7, dist: 0.5, pruner: KEPT },
            Link { id: 9, dist: 0.75, pruner: 7 },
            Link { id: 3, dist: 1.0, pruner: KEPT },
            Link { id: 4, dist: 1.5, pruner: 3 },
            Link { id: 8, dist: 2.0, pruner: 7 },
        ];
        s.lock(2).store(0, &list);
        let mut out = Vec::new();
        s.lock(2).load(0, &mut out);
        assert_eq!(out, list);
        // Rewriting the list moves positions; pruners follow their entries, and one whose
        // pruner left the list stays pruned.
        let reordered: Vec<Link> = [2, 3, 0, 1, 4].iter().map(|&i| list[i]).collect();
        s.lock(2).store(0, &reordered);
        s.lock(2).load(0, &mut out);
        assert_eq!(out, reordered);
        s.lock(2).store(0, &reordered[..4].iter().chain(&[Link { id: 5, dist: 3.0, pruner: 6 }]).copied().collect::<Vec<_>>());
        s.lock(2).load(0, &mut out);
        assert_eq!(out[4], Link { id: 5, dist: 3.0, pruner: GONE });
        assert!(!out[4].is_kept());
        // Upper lists only where there are upper layers.
        s.lock(1).store(1, &list[..2]);
        s.lock(1).load(1, &mut out);
        assert_eq!(out, list[..2]);
        s.lock(0).load(1, &mut out);
        assert!(out.is_empty());
        let before = s.bytes();
        s.release_bookkeeping();
        assert_eq!(before - s.bytes(), 3 * s.bookkeeping_per_node());
        let mut ids = Vec::new();
        s.lock(2).for_each(0, |i| ids.push(i));
        assert_eq!(ids, vec![3, 4, 7, 9, 5]);
    }
}
