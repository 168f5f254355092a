//! Graph maintenance: the policies that keep neighbour lists good and every element reachable
//! as the graph changes, for the in-memory build graph and the on-disk index alike.
//!
//! - [`rank`] and [`reselect`]: a full list offered a newcomer (online inserts; their
//!   back-links). Which entry goes is the heuristic's choice, and an entry only goes if some
//!   element the list keeps still links to it (a *witness*): making room must never cut a row
//!   off.
//! - [`refill`]: a list that lost entries to deleted elements (VACUUM) keeps its live entries
//!   and gives the places to the candidates the heuristic prefers.
//! - [`connect_unreachable`]: the heuristic prunes without looking at in-degrees, so now and
//!   then an element loses its last way in; this finds such elements and links each from a
//!   reachable one, over any graph that implements [`RepairGraph`] (the build's
//!   [`super::Graph`], the index's pages in the extension's VACUUM).
//!
//! Each is unit-tested here against small in-memory graphs and brute force.

use std::collections::VecDeque;

use super::heuristic::split;
use super::search::Candidate;

/// The order in which a full list plus a newcomer would be kept: the heuristic's kept entries
/// (at most `cap`), then the pruned ones, each nearest first. `candidates` are sorted
/// nearest-first by distance to the list's owner. The last entries are the ones to give up.
pub fn rank<I: Copy>(candidates: &[Candidate<I>], cap: usize, dist: impl FnMut(&I, &I) -> f32) -> Vec<I> {
    let (mut kept, mut pruned) = (Vec::with_capacity(cap), Vec::new());
    split(candidates, cap, dist, &mut kept, &mut pruned);
    kept.iter().chain(&pruned).map(|c| c.item).collect()
}

/// What a full list does when offered a newcomer.
#[derive(Debug, PartialEq)]
pub enum Reselect<I, W> {
    /// The list stays as it is.
    Keep,
    /// The list becomes `list` (the newcomer in, `dropped` out); `witness` links to `dropped`.
    Replace { list: Vec<I>, dropped: I, witness: W },
}

/// A full list (`candidates`: its entries and `newcomer`, nearest-first by distance to the
/// owner) offered `newcomer`. The entry left over by [`rank`] goes if `witness(x, rest)` finds
/// an element of `rest` (the list without `x`, so reachable wherever the owner is) that links
/// to it; else the next farthest of the last few (three; four with `force`) that has one.
/// Without `force` the newcomer coming last means the list stays. With `force` (a newcomer
/// nothing else links to) the newcomer is never the one to go, and when no entry has a
/// witness, `adopt(x)` may make the newcomer itself link to the farthest entry `x` and returns
/// the newcomer's witness handle.
pub fn reselect<I: Copy + PartialEq, W>(
    candidates: &[Candidate<I>],
    newcomer: I,
    cap: usize,
    force: bool,
    mut dist: impl FnMut(&I, &I) -> f32,
    mut witness: impl FnMut(I, &[I]) -> Option<W>,
    adopt: impl FnOnce(I) -> Option<W>,
) -> Reselect<I, W> {
    // The usual outcome, settled with one distance: the newcomer is the farthest candidate and
    // the nearest one (always kept) is closer to it than the owner is, so it is pruned, last
    // in the order, and the one to go.
    if !force && candidates.len() >= 2 {
        let (first, last) = (&candidates[0], &candidates[candidates.len() - 1]);
        if last.item == newcomer && dist(&first.item, &newcomer) < last.dist {
            return Reselect::Keep;
        }
    }
    let order = rank(candidates, cap, &mut dist);
    let without = |x: I| -> Vec<I> { order.iter().copied().filter(|&i| i != x).collect() };
    for &x in order.iter().rev().take(if force { 4 } else { 3 }) {
        if x == newcomer {
            if force {
                continue;
            }
            return Reselect::Keep;
        }
        let rest = without(x);
        if let Some(w) = witness(x, &rest) {
            return Reselect::Replace { list: rest, dropped: x, witness: w };
        }
    }
    // A forced link with no witness to be found: the newcomer becomes the witness of the
    // farthest entry. Nothing links to the newcomer yet (every offer turned it down), so no
    // element relies on the link of its own that this may replace.
    if force {
        if let Some(&x) = order.iter().rev().find(|&&i| i != newcomer) {
            if let Some(w) = adopt(x) {
                return Reselect::Replace { list: without(x), dropped: x, witness: w };
            }
        }
    }
    Reselect::Keep
}

/// A list that lost entries to deleted elements: `live` (its remaining entries) all stay, so
/// the repair never takes a way in away; the places of the lost ones go to `fresh` candidates
/// (the deleted entries' neighbours), those the heuristic keeps first, then the nearest
/// pruned. Both slices are sorted nearest-first; the result is at most `cap` long (more only
/// if `live` already is), live entries first.
pub fn refill<I: Copy>(live: &[Candidate<I>], fresh: &[Candidate<I>], cap: usize, dist: impl FnMut(&I, &I) -> f32) -> Vec<Candidate<I>> {
    let mut chosen = live.to_vec();
    let mut pruned = Vec::new();
    split(fresh, cap.max(live.len()), dist, &mut chosen, &mut pruned);
    let room = cap.saturating_sub(chosen.len());
    chosen.extend(pruned.into_iter().take(room));
    chosen
}

/// How [`Lists::link`] may make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Only a free place: a full list stays as it is.
    Free,
    /// A full list gives up its farthest entry that the caller allows to go.
    Displace,
}

/// The layer-0 graph as [`connect_unreachable`] sees it. Elements are numbered `0..len()`.
pub trait RepairGraph {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn entry(&self) -> Option<u32>;
    /// Whether searches route through `id` (in VACUUM's first pass, deleted elements do not).
    fn routes(&self, id: u32) -> bool;
    /// Whether `id` holds rows: it must end reachable, and it may take links to lost elements.
    fn is_live(&self, id: u32) -> bool;
    /// `id`'s layer-0 links as the pass found them (links it adds come on top).
    fn links(&self, id: u32, out: &mut Vec<u32>);
    /// Elements near `id`'s vector, nearest first, as a search from the entry point finds them.
    fn nearest(&mut self, id: u32, out: &mut Vec<u32>);
    fn distance(&mut self, a: u32, b: u32) -> f32;
    /// `from`'s layer-0 list as it is now, and a version for [`RepairGraph::write`]; `None` if
    /// `from` can no longer take links.
    fn read(&mut self, from: u32, out: &mut Vec<u32>) -> Option<u64>;
    /// Write `from`'s list if it is still at `version`; false if it changed meanwhile.
    fn write(&mut self, from: u32, version: u64, list: &[u32]) -> bool;
    /// Called once per lost element (VACUUM: cost delay and interrupts).
    fn tick(&mut self) {}
}

/// Make `from` link to `to` on layer 0. A full list gives up (with [`Room::Displace`]) its
/// farthest entry `x` with `may_go(x)`; if there is none, or with [`Room::Free`], the link is
/// not made. Whether `from` links to `to` afterwards.
pub fn link<G: RepairGraph + ?Sized>(g: &mut G, from: u32, to: u32, room: Room, cap: usize, may_go: impl Fn(u32) -> bool) -> bool {
    let mut list = Vec::new();
    // A list that keeps changing under us (concurrent inserts) is left alone after a while.
    for _ in 0..8 {
        let Some(version) = g.read(from, &mut list) else { return false };
        if list.contains(&to) {
            return true;
        }
        if list.len() >= cap {
            if room == Room::Free {
                return false;
            }
            let mut victim: Option<(usize, f32)> = None;
            for (i, &x) in list.iter().enumerate() {
                if may_go(x) {
                    let d = g.distance(from, x);
                    if victim.is_none_or(|(_, dv)| d >= dv) {
                        victim = Some((i, d));
                    }
                }
            }
            let Some((i, _)) = victim else { return false };
            list.remove(i);
        }
        list.push(to);
        if g.write(from, version, &list) {
            return true;
        }
    }
    false
}

/// Places a reconnected element gives to other lost elements: a few, so the tree of them
/// stays shallow, and not all, so it keeps most of its own links into the graph.
pub fn spare_places(cap: usize) -> u8 {
    (cap / 4).clamp(1, u8::MAX as usize) as u8
}

/// Make every live element reachable on layer 0 from the entry point; returns how many links
/// were added. `cap` is the layer-0 list capacity.
///
/// An element of the graph gives at most one place to a lost element, a free place first.
/// Under inner product most elements are lost (a point inside the data's hull is nobody's
/// nearest: the nearest by `-dot` are the points of largest norm; 85% of 10k uniform 3-d
/// points), and they all have the same few hull points as nearest reachable neighbours:
/// taking a place in those points' lists, the ones every search walks, each time filled them
/// with interior points (recall@20 at ef 40 fell from 0.99 to 0.75). Once its neighbours have
/// given their place, a lost element is linked from one reconnected earlier (a breadth-first
/// tree hanging off the graph), whose list no search for a nearest row needs.
///
/// A place is only taken from a link that is not on the spanning tree of the reachable
/// elements, so no reachable element is ever cut off (an in-degree test is not enough: the
/// other link may come from an element reachable only through the one dropped). Should every
/// preferred element refuse, any reachable live element with a free place or a non-tree link
/// takes the lost one: one always exists (tree links are one fewer than the reachable
/// elements, each with `cap >= 2` places), so every live element ends reachable unless lists
/// change under the pass (the on-disk graph runs it again then).
pub fn connect_unreachable<G: RepairGraph + ?Sized>(g: &mut G, cap: usize) -> usize {
    let n = g.len();
    const NONE: u32 = u32::MAX;
    // Reached elements, each with the element it was first reached from: a spanning tree (the
    // entry point is its own parent). `order` lists them as they are reached.
    let mut parent = vec![NONE; n];
    let mut order: Vec<u32> = Vec::new();
    let mut links = Vec::new();
    let spread = |g: &G, from: u32, via: u32, parent: &mut [u32], order: &mut Vec<u32>, links: &mut Vec<u32>| {
        if parent[from as usize] != NONE {
            return;
        }
        parent[from as usize] = via;
        order.push(from);
        let mut stack = vec![from];
        while let Some(v) = stack.pop() {
            g.links(v, links);
            for &x in links.iter() {
                if (x as usize) < parent.len() && parent[x as usize] == NONE && g.routes(x) {
                    parent[x as usize] = v;
                    order.push(x);
                    stack.push(x);
                }
            }
        }
    };
    let Some(entry) = g.entry() else { return 0 };
    spread(g, entry, entry, &mut parent, &mut order, &mut links);
    let mut lost: Vec<(f32, u32)> = Vec::new();
    for q in 0..n as u32 {
        if parent[q as usize] == NONE && g.is_live(q) {
            g.links(q, &mut links);
            let key = links.first().map_or(f32::INFINITY, |&f| g.distance(q, f));
            lost.push((key, q));
        }
    }
    if lost.is_empty() {
        return 0;
    }
    // Nearest to their own neighbours first: those are the elements a search may want (under
    // inner product, the ones of large norm), and they should get the graph's places, not the
    // tree's.
    lost.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    // Places an element may still give: 1 for an element of the graph, [`spare_places`] for a
    // reconnected one.
    let mut places = vec![1u8; n];
    let spare_cap = spare_places(cap);
    // Reconnected elements that may still give a place, oldest first.
    let mut spare: VecDeque<u32> = VecDeque::new();
    // The last resort's cursor in `order`: an element it passed over has a full list of tree
    // links only (or is not live), and stays so.
    let mut any = 0usize;
    let mut added = 0;
    let mut near = Vec::new();
    for (_, q) in lost {
        g.tick();
        if parent[q as usize] != NONE {
            continue;
        }
        let usable = |e: u32, parent: &[u32], g: &G| (e as usize) < n && e != q && parent[e as usize] != NONE && g.is_live(e);
        g.links(q, &mut links);
        let mut from: Vec<u32> = links.iter().copied().filter(|&e| usable(e, &parent, g)).collect();
        g.nearest(q, &mut near);
        from.extend(near.iter().copied().filter(|&e| usable(e, &parent, g)));
        let tree: &[u32] = &parent;
        let off_tree = |e: u32| move |x: u32| tree.get(x as usize) != Some(&e);
        let mut by = None;
        for room in [Room::Free, Room::Displace] {
            by = from.iter().copied().find(|&e| places[e as usize] > 0 && link(g, e, q, room, cap, off_tree(e)));
            if by.is_some() {
                break;
            }
        }
        while by.is_none() {
            let Some(&e) = spare.front() else { break };
            if places[e as usize] > 0 && link(g, e, q, Room::Displace, cap, off_tree(e)) {
                by = Some(e);
            } else {
                spare.pop_front();
            }
        }
        if by.is_none() {
            // Better a crowded list than a row no search returns.
            by = from.iter().copied().find(|&e| link(g, e, q, Room::Displace, cap, off_tree(e)));
        }
        while by.is_none() && any < order.len() {
            let e = order[any];
            if e != q && g.is_live(e) && link(g, e, q, Room::Displace, cap, off_tree(e)) {
                by = Some(e);
            } else {
                any += 1;
            }
        }
        let Some(e) = by else { continue };
        places[e as usize] = places[e as usize].saturating_sub(1);
        places[q as usize] = spare_cap;
        added += 1;
        spread(g, q, e, &mut parent, &mut order, &mut links);
        spare.push_back(q);
    }
    added
}

/// Whether every live element is reachable on layer 0 from the entry point, through elements
/// searches route through.
pub fn all_reachable<G: RepairGraph + ?Sized>(g: &G) -> bool {
    let n = g.len();
    let mut seen = vec![false; n];
    let mut links = Vec::new();
    if let Some(e) = g.entry() {
        seen[e as usize] = true;
        let mut stack = vec![e];
        while let Some(v) = stack.pop() {
            g.links(v, &mut links);
            for &x in &links {
                if (x as usize) < n && !seen[x as usize] && g.routes(x) {
                    seen[x as usize] = true;
                    stack.push(x);
                }
            }
        }
    }
    (0..n as u32).all(|i| seen[i as usize] || !g.is_live(i))
}

#[cfg(test)]
mod tests;
