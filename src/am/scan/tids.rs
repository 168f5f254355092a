//! The heap TIDs behind the elements a scan hands out: inline in a node tuple, then along its
//! chain of TID lists; in physical mode, those of every node tuple on a page.

use pgrx::pg_sys;

use crate::am::graph::{Extent, Node};
use crate::storage::buffer::{Buffer, Lock};
use crate::storage::page::ItemRef;
use crate::storage::tuple::{node_tuples, NodeTuple, TidList};

/// The heap TIDs of one element (inline, then its TID lists), reversed: they are popped.
pub(super) fn element_tids(index: pg_sys::Relation, n: Node, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    // Walks and exact scans check node refs against the index's extent when they measure.
    if !n.node.is_valid() {
        return;
    }
    let overflow = {
        let buf = Buffer::read(index, n.node.block, Lock::Share);
        let Some(data) = buf.page().item(n.node.offset) else { return };
        let t = NodeTuple::parse(data, m);
        if t.is_deleted() {
            return;
        }
        out.extend(t.heap_tids());
        t.overflow()
    };
    overflow_tids(index, overflow, out);
    out.reverse();
}

/// Append the TIDs of a chain of TID-list tuples.
fn overflow_tids(index: pg_sys::Relation, mut r: ItemRef, out: &mut Vec<pg_sys::ItemPointerData>) {
    if !r.is_valid() {
        return;
    }
    let extent = Extent::new(index);
    while extent.holds(r) {
        let buf = Buffer::read(index, r.block, Lock::Share);
        let Some(data) = buf.page().item(r.offset) else { return };
        let list = TidList::parse(data);
        out.extend(list.tids());
        r = list.next();
    }
}

/// Every live heap TID of the elements whose node tuples are on one page (physical mode),
/// reversed.
pub(super) fn page_tids(index: pg_sys::Relation, block: u32, m: usize, out: &mut Vec<pg_sys::ItemPointerData>) {
    let mut chains = Vec::new();
    {
        let buf = Buffer::read(index, block, Lock::Share);
        for (_, t) in node_tuples(buf.page(), m) {
            if !t.is_deleted() {
                out.extend(t.heap_tids());
                chains.push(t.overflow());
            }
        }
    }
    for r in chains {
        overflow_tids(index, r, out);
    }
    out.reverse();
}
