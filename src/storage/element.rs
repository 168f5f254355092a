//! Elements and their neighbour lists as inserts and VACUUM change them: one API for both.
//!
//! Lists are updated optimistically (as VectorChord's `update(version, old, new)`): read a
//! list and its node tuple's version under a share lock ([`Elements::read_list`]), compute the
//! new list with no lock held (this may read other pages), then write it under the exclusive
//! lock only if the version is unchanged ([`Elements::write_list`]), else start over. Every
//! change to a node tuple bumps its version, so a write never undoes another backend's.
//!
//! A list that gives up an entry `x` relies on a *witness*: an element the list keeps that
//! links to `x` itself, so `x` stays reachable. [`links_to`] is that rule, and `write_list`
//! checks it again under the witness page's lock.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use pgrx::pg_sys;

use super::buffer::{Buffer, Lock, Logging, Wal};
use super::page::ItemRef;
use super::tuple::{set_vector_flags, NodeTuple, NodeTupleMut, VectorTuple, FLAG_DELETED};

/// The index's length in blocks, to check references read from disk before following them.
/// A corrupt reference, or a node ref a crash left unset (`INVALID`: block 0xFFFFFFFF is
/// `P_NEW`, and reading it would extend the relation), must be neither read nor used to size
/// a per-block table (visited sets, buffer hints): the element it belongs to is skipped.
pub struct Extent {
    rel: pg_sys::Relation,
    nblocks: Cell<u32>,
}

impl Extent {
    pub(crate) fn new(rel: pg_sys::Relation) -> Extent {
        Extent { rel, nblocks: Cell::new(nblocks(rel)) }
    }

    pub(crate) fn rel(&self) -> pg_sys::Relation {
        self.rel
    }

    /// Whether `r` can name an item on a data page: valid, past the meta page, before the end
    /// of the relation (looked up again past the cached end: the index grows meanwhile).
    #[inline]
    pub fn holds(&self, r: ItemRef) -> bool {
        if !r.is_valid() || r.block == 0 {
            return false;
        }
        if r.block < self.nblocks.get() {
            return true;
        }
        self.nblocks.set(nblocks(self.rel));
        r.block < self.nblocks.get()
    }
}

/// The relation's length in blocks (main fork).
pub(crate) fn nblocks(rel: pg_sys::Relation) -> u32 {
    // SAFETY: the relation is open and locked by the caller.
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) }
}

/// The witness rule: whether node tuple `t` is a live element on `layer` that links to `x`.
/// A node tuple can be marked deleted while its vector tuple is not (an insert reusing the
/// slot, or a crash amid that), so the node tuple is what counts.
pub fn links_to(t: &NodeTuple<'_>, layer: usize, x: ItemRef) -> bool {
    !t.is_deleted() && t.level() >= layer && t.neighbors(layer).any(|n| n == x)
}

/// A neighbour list as read, with the version to write it back under.
pub struct List {
    pub version: u16,
    /// The element's vector tuple.
    pub vector: ItemRef,
    pub refs: Vec<ItemRef>,
}

/// How [`Elements::write_list`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The list (or the witness's) changed since it was read: read it again.
    Changed,
    /// The element is gone (its item no longer there): leave it.
    Gone,
}

/// Handle on an index's elements: the relation, its `m`, and how changes are logged.
#[derive(Clone, Copy)]
pub struct Elements {
    pub rel: pg_sys::Relation,
    pub m: usize,
    pub logging: Logging,
}

impl Elements {
    pub(crate) fn new(rel: pg_sys::Relation, m: usize, logging: Logging) -> Elements {
        Elements { rel, m, logging }
    }

    /// The list of element `node` (a node tuple ref) on `layer` and its version; `None` if the
    /// element is gone, deleted, or not on that layer.
    pub fn read_list(&self, node: ItemRef, layer: usize) -> Option<List> {
        let buf = Buffer::read_recent(self.rel, node.block, Lock::Share);
        let t = NodeTuple::parse(buf.page().item(node.offset)?, self.m);
        if t.is_deleted() || t.level() < layer {
            return None;
        }
        Some(List { version: t.version(), vector: t.vector(), refs: t.neighbors(layer).collect() })
    }

    /// Whether element `w` (a node tuple ref) links to `x` on `layer` now ([`links_to`]).
    pub fn links_to(&self, w: ItemRef, layer: usize, x: ItemRef) -> bool {
        let buf = Buffer::read_recent(self.rel, w.block, Lock::Share);
        buf.page().item(w.offset).is_some_and(|data| links_to(&NodeTuple::parse(data, self.m), layer, x))
    }

    /// The node ref of the live element whose vector tuple is `v`, if `v` is one.
    pub fn node_of(&self, v: ItemRef, extent: &Extent) -> Option<ItemRef> {
        if !extent.holds(v) {
            return None;
        }
        let buf = Buffer::read_recent(self.rel, v.block, Lock::Share);
        let t = VectorTuple::parse(buf.page().item(v.offset)?);
        (t.flags() & FLAG_DELETED == 0 && extent.holds(t.node())).then(|| t.node())
    }

    /// Write `refs` as element `node`'s list on `layer` if its version is still `version`.
    /// With `witness = Some((w, x))` (the list gives up `x`, and element `w` in it links to
    /// `x`), only if `w` still links to `x`: `w`'s page is share-locked too while the list is
    /// written, so that no other backend can drop that link meanwhile (two inserts each
    /// dropping one of two links to `x`, each relying on the other's, would cut it off). This
    /// is the only place that holds two buffer locks; it takes them in block order, so two
    /// backends doing it cannot deadlock. The list is one WAL record: a crash either has the
    /// old list or the new one, and `x` is reachable in both.
    ///
    /// `code`: (vector ref, node ref, code body) of an element the list may name, whose code
    /// the node tuple keeps with the entry if it keeps neighbours' codes (see
    /// [`NeighborCodes`](super::tuple::NeighborCodes)); entries new to the list have none
    /// otherwise.
    pub fn write_list(
        &self,
        node: ItemRef,
        layer: usize,
        version: u16,
        refs: &[ItemRef],
        witness: Option<(ItemRef, ItemRef)>,
        code: Option<(ItemRef, ItemRef, &[u8])>,
    ) -> Written {
        let witness_block = witness.map(|(w, _)| w.block).filter(|&b| b != node.block);
        let before = witness_block.filter(|&b| b < node.block).map(|b| Buffer::read_recent(self.rel, b, Lock::Share));
        let buf = Buffer::read_recent(self.rel, node.block, Lock::Exclusive);
        let after = witness_block.filter(|&b| b > node.block).map(|b| Buffer::read_recent(self.rel, b, Lock::Share));
        let Some(data) = buf.page().item(node.offset) else { return Written::Gone };
        if NodeTuple::parse(data, self.m).version() != version {
            return Written::Changed;
        }
        if let Some((w, x)) = witness {
            let wpage = before.as_ref().or(after.as_ref()).unwrap_or(&buf).page();
            if !wpage.item(w.offset).is_some_and(|data| links_to(&NodeTuple::parse(data, self.m), layer, x)) {
                return Written::Changed;
            }
        }
        Wal::edit(self.rel, &buf, self.logging, false, |page| {
            let data = page.item_mut(node.offset).expect("item checked under the same lock");
            let mut t = NodeTupleMut::edit(data, self.m);
            t.set_neighbors(layer, refs);
            if let (0, Some((v, n, body))) = (layer, code) {
                if let Some(k) = refs.iter().position(|&r| r == v) {
                    t.keep_code(k, n, body);
                }
            }
        });
        Written::Done
    }

    /// Set `flag` on both tuples of each (node ref, vector ref, version) element whose node
    /// tuple passes `ok` under its page's exclusive lock (elements change meanwhile), a page at
    /// a time: node tuples first, then the vector tuples of those that took the flag. `tick`
    /// runs once per page (VACUUM's cost delay). Returns the node refs of the elements marked.
    pub fn mark(
        &self,
        elements: &[(ItemRef, ItemRef, Option<u16>)],
        flag: u8,
        ok: impl Fn(&NodeTuple<'_>, Option<u16>) -> bool,
        mut tick: impl FnMut(),
    ) -> HashSet<ItemRef> {
        let mut marked = HashSet::new();
        let mut nodes: HashMap<u32, Vec<(u16, Option<u16>)>> = HashMap::new();
        for &(node, _, version) in elements {
            nodes.entry(node.block).or_default().push((node.offset, version));
        }
        let mut blocks: Vec<u32> = nodes.keys().copied().collect();
        blocks.sort_unstable();
        for block in blocks {
            tick();
            let buf = Buffer::read(self.rel, block, Lock::Exclusive);
            let todo: Vec<u16> = nodes[&block]
                .iter()
                .filter(|&&(off, version)| buf.page().item(off).is_some_and(|data| ok(&NodeTuple::parse(data, self.m), version)))
                .map(|&(off, _)| off)
                .collect();
            if todo.is_empty() {
                continue;
            }
            Wal::edit(self.rel, &buf, self.logging, false, |page| {
                for &off in &todo {
                    let data = page.item_mut(off).expect("checked under the same lock");
                    let mut t = NodeTupleMut::edit(data, self.m);
                    let flags = t.as_ref().flags();
                    t.set_flags(flags | flag);
                    marked.insert(ItemRef::new(block, off));
                }
            });
        }
        let vectors: Vec<ItemRef> = elements.iter().filter(|(n, _, _)| marked.contains(n)).map(|&(_, v, _)| v).collect();
        self.set_vector_flags(&vectors, flag, tick);
        marked
    }

    /// Add `flag` to vector tuples, a page at a time.
    pub fn set_vector_flags(&self, vectors: &[ItemRef], flag: u8, mut tick: impl FnMut()) {
        let mut by_page: HashMap<u32, Vec<u16>> = HashMap::new();
        let extent = Extent::new(self.rel);
        for v in vectors.iter().filter(|&&v| extent.holds(v)) {
            by_page.entry(v.block).or_default().push(v.offset);
        }
        let mut blocks: Vec<u32> = by_page.keys().copied().collect();
        blocks.sort_unstable();
        for block in blocks {
            tick();
            let buf = Buffer::read(self.rel, block, Lock::Exclusive);
            Wal::edit(self.rel, &buf, self.logging, false, |page| {
                for &off in &by_page[&block] {
                    let Some(data) = page.item_mut(off) else { continue };
                    let flags = VectorTuple::parse(data).flags();
                    set_vector_flags(data, flags | flag);
                }
            });
        }
    }
}
