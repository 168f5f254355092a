//! VACUUM's phase 3: every live element's list that holds a deleted element keeps its live
//! entries and gives the deleted ones' places to their neighbours (the core's
//! [`refill`]); each new neighbour is offered a link back, as an insert's neighbours are.

use std::collections::{HashMap, HashSet};

use hnsw_core::graph::maintain::refill;
use hnsw_core::graph::Candidate;
use hnsw_core::metric::Metric;
use pgrx::pg_sys;

use super::super::graph::{Arena, Elem};
use super::super::insert::Connect;
use super::delay_point;
use crate::storage::buffer::{Buffer, Lock, Logging};
use crate::storage::element::{nblocks, Elements, Extent, Written};
use crate::storage::meta::Meta;
use crate::storage::page::ItemRef;
use crate::storage::quant::{read_graph_vector, Codec};
use crate::storage::tuple::{layer_capacity, node_tuples, NodeTuple, FLAG_DELETED};

/// Phase 3: re-select every neighbour list that holds a deleted element.
/// Whole-index passes read through VACUUM's buffer access `strategy`.
pub(super) fn repair<E: Elem>(
    index: pg_sys::Relation,
    meta: &Meta,
    strategy: pg_sys::BufferAccessStrategy,
    deleted: &HashMap<ItemRef, ItemRef>,
) {
    let m = meta.m as usize;
    let metric = meta.metric;
    let codec = Codec::load(index, meta);
    let mut r = Repair::<E> { index, meta, m, metric, deleted, arena: Arena::default(), extent: Extent::new(index), codec };
    for block in 1..nblocks(index) {
        delay_point();
        // Which live elements on this page need work, and on which layers.
        let todo: Vec<(ItemRef, Vec<usize>)> = {
            let buf = Buffer::read_with(index, block, Lock::Share, strategy);
            node_tuples(buf.page(), m)
                .filter_map(|(off, t)| {
                    if t.is_deleted() {
                        return None;
                    }
                    let layers: Vec<usize> = (0..=t.level()).filter(|&l| t.neighbors(l).any(|n| deleted.contains_key(&n))).collect();
                    (!layers.is_empty()).then(|| (ItemRef::new(block, off), layers))
                })
                .collect()
        };
        for (node, layers) in todo {
            for layer in layers {
                delay_point();
                r.repair(node, layer);
            }
        }
    }
}

struct Repair<'a, E: Elem> {
    index: pg_sys::Relation,
    meta: &'a Meta,
    m: usize,
    metric: Metric,
    deleted: &'a HashMap<ItemRef, ItemRef>,
    /// Vectors of the element being repaired (slot 0) and of its candidates.
    arena: Arena<E>,
    extent: Extent,
    /// How stored vectors are read (quantized: codes decoded).
    codec: Codec,
}

impl<E: Elem> Repair<'_, E> {
    fn vector(&self, slot: usize) -> &[E] {
        self.arena.get(slot)
    }

    /// Copy the vector at `r` into the arena; its slot and node ref, or None if it is gone.
    fn load(&mut self, r: ItemRef) -> Option<(usize, ItemRef)> {
        let (codec, extent) = (&self.codec, &self.extent);
        self.arena.push_with(|out| match read_graph_vector(codec, extent, r, out) {
            Some((node, flags)) if flags & FLAG_DELETED == 0 && extent.holds(node) => Some(node),
            _ => None,
        })
    }

    fn repair(&mut self, node: ItemRef, layer: usize) {
        let cap = layer_capacity(self.m, layer);
        let els = Elements::new(self.index, self.m, Logging::Wal);
        loop {
            let Some(read) = els.read_list(node, layer) else { return };
            let (version, own, list) = (read.version, read.vector, read.refs);
            let dead: Vec<ItemRef> = list.iter().copied().filter(|n| self.deleted.contains_key(n)).collect();
            if dead.is_empty() {
                return;
            }
            // Candidates: the live neighbours, and the deleted ones' neighbours.
            let mut seen: HashSet<ItemRef> = list.iter().copied().collect();
            seen.insert(own);
            let mut refs: Vec<ItemRef> = list.iter().copied().filter(|n| !self.deleted.contains_key(n)).collect();
            for d in &dead {
                let dnode = self.deleted[d];
                let buf = Buffer::read(self.index, dnode.block, Lock::Share);
                let Some(data) = buf.page().item(dnode.offset) else { continue };
                for n in NodeTuple::parse(data, self.m).neighbors(layer) {
                    if !self.deleted.contains_key(&n) && seen.insert(n) {
                        refs.push(n);
                    }
                }
            }
            self.arena.clear();
            if self.load(own).is_none() {
                return;
            }
            let mut cands: Vec<Candidate<(ItemRef, usize, ItemRef)>> = Vec::with_capacity(refs.len());
            for r in refs {
                if let Some((slot, rnode)) = self.load(r) {
                    let d = E::distance(self.metric, self.vector(0), self.vector(slot));
                    cands.push(Candidate::new(d, (r, slot, rnode)));
                }
            }
            cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
            let (live, fresh): (Vec<_>, Vec<_>) = cands.into_iter().partition(|c| list.contains(&c.item.0));
            let chosen = refill(&live, &fresh, cap, |a, b| E::distance(self.metric, self.vector(a.1), self.vector(b.1)));
            let new_list: Vec<ItemRef> = chosen.iter().map(|c| c.item.0).collect();
            match els.write_list(node, layer, version, &new_list, None, None) {
                Written::Done => {}
                Written::Changed => continue,
                Written::Gone => return,
            }
            // The new neighbours learn of this element too, as an insert's neighbours learn of
            // the new element. Without that, an element whose ways in all ran through deleted
            // ones stays reachable (`reconnect` sees to it) but only from far away, where a
            // search for its own neighbourhood does not look.
            let own_vec = self.vector(0).to_vec();
            let mut connect = Connect::new(self.index, self.meta, &self.codec, Logging::Wal, &own_vec, node);
            for c in &chosen[live.len()..] {
                connect.offer(c.item.0, c.item.2, self.vector(c.item.1), c.dist, own, layer);
            }
            return;
        }
    }
}
