//! Neighbour lists of the in-memory build graph, laid out for concurrent builds.
//!
//! Layer 0 (where every node is, and where searches spend their time) is one flat array: per
//! node a state word — lock bit and count — followed by its `2m` neighbour ids, so an expansion
//! reads one contiguous run of memory with no pointer chasing. The heuristic's bookkeeping
//! (distance to the owner, pruner) sits in a parallel array that only link updates touch.
//! Upper layers, which hold 1/(m-1) of the nodes, are small per-node vectors.
//!
//! Each node has its own spin lock (the state word's top bit), held only to copy a list out or
//! to rewrite it; nobody holds two at once, so there is no lock ordering to get wrong.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use super::heuristic::Link;

const LOCK: u32 = 1 << 31;
const COUNT: u32 = 0xFFFF;

pub struct LinkStore {
    cap0: usize,
    /// Per node: state word, then `cap0` ids.
    l0: Vec<AtomicU32>,
    /// Per node: `cap0` (distance, pruner) pairs matching the ids.
    l0_aux: Vec<UnsafeCell<(f32, u32)>>,
    /// Per node: the lists of layers `1..=level`.
    upper: Vec<UnsafeCell<Vec<Vec<Link>>>>,
}

// SAFETY: the UnsafeCell contents of a node are only touched while holding that node's lock
// (the LOCK bit of its state word, taken with Acquire and released with Release ordering).
unsafe impl Sync for LinkStore {}

impl LinkStore {
    pub fn new(cap0: usize) -> LinkStore {
        LinkStore { cap0, l0: Vec::new(), l0_aux: Vec::new(), upper: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.upper.len()
    }

    pub fn is_empty(&self) -> bool {
        self.upper.is_empty()
    }

    /// Add an unlinked node on layers `0..=level` (single-threaded, before building).
    pub fn push(&mut self, level: usize) {
        self.l0.extend((0..=self.cap0).map(|_| AtomicU32::new(0)));
        self.l0_aux.extend((0..self.cap0).map(|_| UnsafeCell::new((0.0, 0))));
        self.upper.push(UnsafeCell::new(vec![Vec::new(); level]));
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
        } else {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &*self.store.upper[self.id].get() };
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
                // SAFETY: we hold this node's lock, which guards its aux slots.
                let (dist, pruner) = unsafe { *self.store.l0_aux[aux + i].get() };
                out.push(Link { id: self.store.l0[base + i].load(Ordering::Relaxed), dist, pruner });
            }
        } else {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &*self.store.upper[self.id].get() };
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
            for (i, l) in list[..n].iter().enumerate() {
                self.store.l0[base + 1 + i].store(l.id, Ordering::Relaxed);
                // SAFETY: we hold this node's lock, which guards its aux slots.
                unsafe { *self.store.l0_aux[aux + i].get() = (l.dist, l.pruner) };
            }
            self.store.l0[base].store(LOCK | n as u32, Ordering::Relaxed);
        } else {
            // SAFETY: we hold this node's lock.
            let upper = unsafe { &mut *self.store.upper[self.id].get() };
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
}
