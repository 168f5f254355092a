//! Step 3 of an insert: the new element's neighbours link back to it. A neighbour with a
//! full list takes it only if the neighbour heuristic prefers it to an entry that another
//! element in the list still links to (the core's [`maintain::reselect`]); lists are written
//! through the storage layer's optimistic, witness-checked [`Elements::write_list`]. VACUUM's
//! repair offers its new neighbours a link back the same way.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hnsw_core::graph::maintain::{self, Reselect};
use hnsw_core::graph::Candidate;
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::super::graph::{Arena, Elem, Node};
use crate::storage::buffer::Logging;
use crate::storage::buffer::{Buffer, Lock};
use crate::storage::element::{Elements, Extent, Written};
use crate::storage::meta::Meta;
use crate::storage::page::ItemRef;
use crate::storage::quant::{read_graph_vector, Codec};
use crate::storage::tuple::layer_capacity;

/// Adds back-links from the new element's neighbours to it (and, for VACUUM's repair, from a
/// repaired element's new neighbours to it).
pub(crate) struct Connect<'a, E: Elem> {
    els: Elements,
    /// How stored vectors are read (quantized: codes decoded).
    codec: Codec,
    metric: Metric,
    new_vector: &'a [E],
    /// The new element's node tuple.
    new_node: ItemRef,
    /// Vectors of a full list being re-selected that the walk did not measure.
    scratch: Arena<E>,
    /// The insert walk's vector copies, and where each live element it measured has its copy
    /// (by [`ItemRef::visited_key`]) and its node tuple.
    arena: Option<&'a Arena<E>>,
    measured: Measured,
    /// For the references read from neighbour lists before they are followed.
    extent: Extent,
    /// The new element's node ref and code body, for lists that keep their neighbours' codes
    /// (inserts into an index with `neighbor_codes`).
    new_code: Option<(ItemRef, Vec<u8>)>,
}

/// Where an insert's walk copied each live element it measured: (arena slot, node ref) by
/// [`ItemRef::visited_key`]. Built and probed about a thousand times per insert, so the
/// keys — distinct page positions — are hashed with one multiplication instead of SipHash.
type Measured = HashMap<u64, (u32, ItemRef), BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        // A multiplication mixes each key bit into the bits above it; folding the high half
        // down gives the low bits (the bucket) a share of all of them too: keys differ mostly
        // in their block, above the few offsets a page of vectors uses.
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// How [`Connect::link`] makes room in a full list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkMode {
    /// The neighbour heuristic decides whether the new element displaces an entry.
    Offer,
    /// The new element goes in even if the heuristic would rather keep the list.
    Force,
    /// Only into a free place: a full list stays as it is.
    IfRoom,
}

impl<'a, E: Elem> Connect<'a, E> {
    /// For links to the element with vector `vector` and node tuple `node`, outside an insert
    /// (no walk's copies to draw on).
    pub(crate) fn new(index: pg_sys::Relation, meta: &Meta, codec: &Codec, logging: Logging, vector: &'a [E], node: ItemRef) -> Self {
        Connect {
            els: Elements::new(index, meta.m as usize, logging),
            codec: codec.clone(),
            metric: meta.metric,
            new_vector: vector,
            new_node: node,
            scratch: Arena::default(),
            arena: None,
            measured: Measured::default(),
            extent: Extent::new(index),
            new_code: None,
        }
    }

    /// Lists that keep their neighbours' codes keep `body`, the new element's code body, with
    /// their entry for it.
    pub(super) fn with_new_code(mut self, body: Vec<u8>) -> Self {
        self.new_code = Some((self.new_node, body));
        self
    }

    /// For an insert's new element, drawing on its walk's vector copies (`arena`, with the
    /// (vector ref, node ref, deleted) of each slot).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn for_insert(
        index: pg_sys::Relation,
        meta: &Meta,
        codec: &Codec,
        logging: Logging,
        vector: &'a [E],
        node: ItemRef,
        arena: &'a Arena<E>,
        arena_refs: &[(ItemRef, ItemRef, bool)],
    ) -> Self {
        let mut c = Connect::new(index, meta, codec, logging, vector, node);
        c.arena = Some(arena);
        // Elements the walk met alive: their refs cannot be freed and reused before this
        // insert ends (VACUUM's barrier waits for it), so their copies stand in for buffer
        // reads when a full list is re-selected. Deleted ones may be freed and reused
        // meanwhile: read afresh.
        c.measured = arena_refs
            .iter()
            .enumerate()
            .filter(|(_, (_, _, deleted))| !deleted)
            .map(|(slot, (v, n, _))| (v.visited_key(), (slot as u32, *n)))
            .collect();
        c
    }

    /// Link the new element (vector tuple `new`) from its neighbours: `selected` per layer,
    /// and the layer-0 search results `entries`; `vec_of(slot)` is a walk copy's vector.
    pub(super) fn link_new<'v>(
        &mut self,
        new: ItemRef,
        selected: &[Vec<Candidate<Node>>],
        entries: &[Candidate<Node>],
        vec_of: impl Fn(u32) -> &'v [E],
    ) where
        E: 'v,
    {
        let mut reachable = false;
        for (layer, sel) in selected.iter().enumerate() {
            for c in sel {
                reachable |= self.link(c.item, vec_of(c.item.slot), c.dist, new, layer, LinkMode::Offer) && layer == 0;
            }
        }
        // If every neighbour's heuristic turned the new element down, nothing links to it and
        // no search could ever return its row. The nearest element the walk found alive with
        // a free place in its list takes it: the walk reached it, so it is reachable, and
        // nothing is given up. Only if none has one does the nearest neighbour take it
        // regardless (making the new element the witness of the entry it gives up, if it
        // must; see [`maintain::reselect`]). Under inner product most elements are turned down
        // (a point inside the data's hull is nobody's nearest by `-dot`), and their nearest
        // neighbours are the same few hull elements every search walks: forcing each into
        // those lists filled them with interior points (recall@20 at ef 40 on 10k uniform 3-d
        // rows: 0.84; issue 9, item 14), while interior elements, whose lists the heuristic
        // leaves short, have room.
        if !reachable {
            reachable = entries
                .iter()
                .filter(|c| !c.item.deleted)
                .any(|c| self.link(c.item, vec_of(c.item.slot), c.dist, new, 0, LinkMode::IfRoom));
        }
        if !reachable {
            if let Some(sel) = selected.first() {
                for c in sel {
                    if self.link(c.item, vec_of(c.item.slot), c.dist, new, 0, LinkMode::Force) {
                        break;
                    }
                }
            }
        }
    }

    /// Make the element `e` (vector `e_vec`, at distance `d`) link to this element's vector
    /// `new` on `layer` if its list has room or the heuristic prefers it; whether it does.
    pub(crate) fn offer(&mut self, e_vector: ItemRef, e_node: ItemRef, e_vec: &[E], d: f32, new: ItemRef, layer: usize) -> bool {
        let e = Node { vector: e_vector, node: e_node, deleted: false, matches: true, slot: u32::MAX };
        self.link(e, e_vec, d, new, layer, LinkMode::Offer)
    }

    /// Make `e` (whose vector is `e_vec`) link to the new element `new` at distance `d`. When
    /// `e`'s list is full, the neighbour heuristic picks the entry to give up (with
    /// [`LinkMode::Force`], the list's last entries are candidates even if the heuristic would
    /// rather keep the list as it is); an entry is only given up if another element still
    /// links to it, so that making room never leaves a row unreachable. Returns whether `e`
    /// links to `new` afterwards.
    pub(super) fn link(&mut self, e: Node, e_vec: &[E], d: f32, new: ItemRef, layer: usize, mode: LinkMode) -> bool {
        let cap = layer_capacity(self.els.m, layer);
        // A retry happens only when another backend changed this list (or the witness's)
        // meanwhile, so some backend always makes progress; interrupts are honoured while
        // retrying. Should a list keep changing (or a witness keep failing the check), the
        // link is given up after a while: leaving the list as it is is always safe.
        for _ in 0..64 {
            check_for_interrupts!();
            let Some(list) = self.els.read_list(e.node, layer) else { return false };
            if list.refs.contains(&new) {
                return true;
            }
            let (new_list, witness) = if list.refs.len() < cap {
                let mut l = list.refs;
                l.push(new);
                (l, None)
            } else if mode == LinkMode::IfRoom {
                return false;
            } else {
                match self.reselect(e_vec, &list.refs, d, new, layer, mode == LinkMode::Force) {
                    Some((l, x, w)) => (l, Some((w, x))),
                    None => return false,
                }
            };
            let code = self.new_code.as_ref().map(|(node, body)| (new, *node, &body[..]));
            match self.els.write_list(e.node, layer, list.version, &new_list, witness, code) {
                Written::Done => return true,
                Written::Changed => continue,
                Written::Gone => return false,
            }
        }
        false
    }

    /// A full list plus the new element, through [`maintain::reselect`]: the new list, the
    /// entry it gives up (vector ref) and that entry's witness (node ref); `None`: the list
    /// stays as it is.
    fn reselect(
        &mut self,
        e_vec: &[E],
        list: &[ItemRef],
        d_new: f32,
        new: ItemRef,
        layer: usize,
        force: bool,
    ) -> Option<(Vec<ItemRef>, ItemRef, ItemRef)> {
        self.scratch.clear();
        // (vector ref, node ref, where its vector is: `Some(arena slot)`, `None` for scratch
        // slot `usize`); candidates point into this.
        let mut members: Vec<(ItemRef, ItemRef, Option<u32>, usize)> = Vec::with_capacity(list.len() + 1);
        let mut cands: Vec<Candidate<usize>> = Vec::with_capacity(list.len() + 1);
        for r in list {
            if let (Some(&(slot, node)), Some(arena)) = (self.measured.get(&r.visited_key()), self.arena) {
                let v = arena.get(slot as usize);
                cands.push(Candidate::new(E::distance(self.metric, e_vec, v), members.len()));
                members.push((*r, node, Some(slot), 0));
                continue;
            }
            let (codec, extent) = (&self.codec, &self.extent);
            let read =
                self.scratch.push_with(|out| read_graph_vector(codec, extent, *r, out).map(|(node, _)| node).filter(|&n| extent.holds(n)));
            let Some((at, node)) = read else { continue };
            cands.push(Candidate::new(E::distance(self.metric, e_vec, self.scratch.get(at)), members.len()));
            members.push((*r, node, None, at));
        }
        let new_at = members.len();
        cands.push(Candidate::new(d_new, new_at));
        let at = self.scratch.push(self.new_vector);
        members.push((new, self.new_node, None, at));
        cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        let (scratch, arena, metric) = (&self.scratch, self.arena, self.metric);
        let vec_of = |i: usize| match (members[i].2, arena) {
            (Some(slot), Some(arena)) => arena.get(slot as usize),
            _ => scratch.get(members[i].3),
        };
        let refs_of = |rest: &[usize]| -> Vec<ItemRef> { rest.iter().map(|&i| members[i].0).collect() };
        let this = &*self;
        let outcome = maintain::reselect(
            &cands,
            new_at,
            list.len(),
            force,
            |a: &usize, b: &usize| E::distance(metric, vec_of(*a), vec_of(*b)),
            |x, rest| this.witness(members[x].0, members[x].1, &refs_of(rest), layer),
            |x| this.adopt_if_live(members[x].0, members[x].1, layer).then_some(this.new_node),
        );
        match outcome {
            Reselect::Keep => None,
            Reselect::Replace { list, dropped, witness } => Some((refs_of(&list), members[dropped].0, witness)),
        }
    }

    /// [`Connect::adopt`], unless `x` (node tuple `x_node`) is deleted, freed or claimed for
    /// reuse: a deleted element needs no way in, and a link to it created now could outlive it.
    /// The entries of a list read afresh (not met alive by this insert's walk, which VACUUM's
    /// barrier protects) may have been deleted by a VACUUM whose barrier this insert did not
    /// hold up; that VACUUM's repair may already have passed the new element's page, and would
    /// then free `x` with the new element still linking to it (seen once after a crash test
    /// round: "link to (430,1), a freed element").
    pub(crate) fn adopt_if_live(&self, x: ItemRef, x_node: ItemRef, layer: usize) -> bool {
        let live = {
            let buf = Buffer::read_recent(self.els.rel, x_node.block, Lock::Share);
            buf.page().item(x_node.offset).is_some_and(|d| {
                d.first() == Some(&crate::storage::tuple::KIND_NODE) && {
                    let t = crate::storage::tuple::NodeTuple::parse(d, self.els.m);
                    !t.is_deleted() && !t.is_free() && !t.is_claimed() && t.vector() == x
                }
            })
        };
        live && self.adopt(x, layer)
    }

    /// Make the new element link to `x` on `layer`, taking the place of its farthest link
    /// when its list is full (never the first, the old entry point when the new element
    /// raised the top level). Whether it links to `x` afterwards.
    fn adopt(&self, x: ItemRef, layer: usize) -> bool {
        let cap = layer_capacity(self.els.m, layer);
        for _ in 0..8 {
            let Some(mut list) = self.els.read_list(self.new_node, layer) else { return false };
            if list.refs.contains(&x) {
                return true;
            }
            if list.refs.len() >= cap {
                if cap < 2 {
                    return false;
                }
                list.refs.pop();
            }
            list.refs.push(x);
            match self.els.write_list(self.new_node, layer, list.version, &list.refs, None, None) {
                Written::Done => return true,
                Written::Changed => continue,
                Written::Gone => return false,
            }
        }
        false
    }

    /// Whether `x` stays reachable once a list no longer links to it: some element of `via`
    /// (what the list will link to, so reachable wherever its owner is) links to `x`; returns
    /// that witness's node ref. Looked for among `x`'s own neighbours (links are mostly
    /// mutual) that are in `via`, so a `None` can be wrong, never a witness. A weaker test —
    /// "something else links to `x`" — lets two elements that only link to each other drift
    /// off the graph together.
    fn witness(&self, x: ItemRef, x_node: ItemRef, via: &[ItemRef], layer: usize) -> Option<ItemRef> {
        // The new element first: it was placed near the list's owner, so its own list often
        // holds `x`.
        if self.els.links_to(self.new_node, layer, x) {
            return Some(self.new_node);
        }
        let neighbours: Vec<ItemRef> = {
            let buf = Buffer::read_recent(self.els.rel, x_node.block, Lock::Share);
            let data = buf.page().item(x_node.offset)?;
            crate::storage::tuple::NodeTuple::parse(data, self.els.m)
                .neighbors(layer)
                .filter(|n| *n != x && via.contains(n))
                .take(8)
                .collect()
        };
        neighbours.into_iter().filter_map(|y| self.els.node_of(y, &self.extent)).find(|&y_node| self.els.links_to(y_node, layer, x))
    }
}
