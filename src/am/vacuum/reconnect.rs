//! Every live element reachable from the entry point (VACUUM's phases 3 and 5): the index's
//! layer 0, read into memory, handed to the core's [`maintain::connect_unreachable`] — the
//! same pass the build runs on its in-memory graph — with lists written back through the
//! storage layer's optimistic [`Elements::write_list`], so inserts may run meanwhile.

use std::collections::HashMap;

use hnsw_core::graph::maintain::{self, RepairGraph};
use hnsw_core::graph::search::{greedy_closest, search_layer};
use hnsw_core::graph::{SearchScratch, Visited};
use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::super::graph::{scorer, DiskWalk, Elem, Query};
use super::super::mem::{Budget, Setting};
use super::delay_point;
use crate::storage::buffer::{Buffer, Lock, Logging};
use crate::storage::element::{nblocks, Elements, Extent, Written};
use crate::storage::meta::Meta;
use crate::storage::page::{ItemRef, PAGE_DATA};
use crate::storage::quant::{read_graph_vector, Codec};
use crate::storage::tuple::{layer_capacity, NodeTuple, TidList, KIND_NODE, KIND_TIDS};

/// Bytes per element the pass holds besides its links: its refs, flag and list offset here,
/// the ref-to-number map's entry with hash table slack, and the core's parent, order and
/// places tables.
const ELEMENT_BYTES: usize = 96;
/// Bytes per link: its ref while the pages are read, then its number.
const LINK_BYTES: usize = core::mem::size_of::<ItemRef>() + 4;

/// Make every live element reachable on layer 0 from the entry point again, and count the
/// live heap TIDs on the way. Neighbour selection prunes links without regard to in-degree, so
/// now and then (about once per 10^4 inserts or deletes here) an element loses its last
/// incoming link, and a row no search can return is as bad as a lost row.
///
/// With `live_only`, deleted elements do not route: every live element must be reachable
/// through live ones alone. VACUUM establishes that before it repairs (which only adds links
/// between live elements, and takes a link away only where a live element kept in the same
/// list links on to it), so a VACUUM cancelled at any point leaves every row reachable.
///
/// Lists that change under the pass (inserts) can make a link fail; the pass then runs again
/// on a fresh copy, at most four times.
pub(super) fn reconnect<E: Elem>(index: pg_sys::Relation, meta: &Meta, strategy: pg_sys::BufferAccessStrategy, live_only: bool) -> f64 {
    let mut live_tids = 0f64;
    for _round in 0..4 {
        let (graph, tids) = DiskGraph::<E>::read(index, meta, strategy, live_only);
        live_tids = tids;
        let Some(mut graph) = graph else { return live_tids };
        if maintain::connect_unreachable(&mut graph, layer_capacity(meta.m as usize, 0)) == 0 {
            return live_tids;
        }
    }
    live_tids
}

/// The index's layer 0 as the pass found it. Elements are numbered in page order; links to
/// elements the pages did not show (inserted since) get numbers past [`RepairGraph::len`]
/// when a list is read again.
struct DiskGraph<E: Elem> {
    els: Elements,
    meta: Meta,
    metric: Metric,
    live_only: bool,
    /// Per element: vector ref, node ref, whether it has rows.
    vectors: Vec<ItemRef>,
    nodes: Vec<ItemRef>,
    live: Vec<bool>,
    /// Element `i`'s links are `links[start[i]..start[i + 1]]`.
    start: Vec<u32>,
    links: Vec<u32>,
    /// Element number by vector ref.
    ids: HashMap<ItemRef, u32>,
    /// Elements the pages showed; numbers from here on are for refs met later.
    len: usize,
    entry: Option<u32>,
    /// For refs read from lists before they are followed.
    extent: Extent,
    query: Vec<E>,
    /// How stored vectors are read (quantized: codes decoded).
    codec: Codec,
}

impl<E: Elem> DiskGraph<E> {
    /// Read layer 0 and count live heap TIDs. The graph is held whole within
    /// maintenance_work_mem, or not at all (`None`, with a NOTICE; the rows are still counted),
    /// as a VACUUM that fails for want of memory would leave the table's dead rows in place.
    fn read(index: pg_sys::Relation, meta: &Meta, strategy: pg_sys::BufferAccessStrategy, live_only: bool) -> (Option<DiskGraph<E>>, f64) {
        let m = meta.m as usize;
        let mut live_tids = 0f64;
        let mut budget = Budget::new(Setting::MaintenanceWorkMem);
        let mut fits = true;
        let (mut vectors, mut nodes, mut live, mut start) = (Vec::new(), Vec::new(), Vec::new(), vec![0u32]);
        let mut refs: Vec<ItemRef> = Vec::new();
        for block in 1..nblocks(index) {
            delay_point();
            let buf = Buffer::read_with(index, block, Lock::Share, strategy);
            let page = buf.page();
            if page.is_new() || page.opaque().kind != PAGE_DATA {
                continue;
            }
            for off in 1..=page.max_offset() {
                let Some(data) = page.item(off) else { continue };
                match data.first() {
                    Some(&KIND_NODE) => {
                        let t = NodeTuple::parse(data, m);
                        if !t.is_deleted() {
                            live_tids += t.heap_tid_count() as f64;
                        }
                        if !fits {
                            continue;
                        }
                        // A freed element's lists are leftovers nobody follows.
                        let follow = !(t.is_free() || (live_only && t.is_deleted()));
                        let n_links = if follow { t.neighbors(0).count() } else { 0 };
                        let bytes = ELEMENT_BYTES + n_links * LINK_BYTES;
                        if !budget.fits(bytes) {
                            fits = false;
                            (vectors, nodes, live, refs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                            continue;
                        }
                        budget.used += bytes;
                        if follow {
                            refs.extend(t.neighbors(0));
                        }
                        vectors.push(t.vector());
                        nodes.push(ItemRef::new(block, off));
                        live.push(!t.is_deleted());
                        start.push(refs.len() as u32);
                    }
                    Some(&KIND_TIDS) => live_tids += TidList::parse(data).count() as f64,
                    _ => {}
                }
            }
        }
        if !fits {
            ereport!(
                NOTICE,
                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                format!(
                    "hnsw index reachability check skipped: the graph does not fit into {} kB of maintenance_work_mem",
                    budget.limit / 1024
                ),
                "Increase maintenance_work_mem (or autovacuum_work_mem) so that VACUUM can check that every row is reachable."
            );
            return (None, live_tids);
        }
        let ids: HashMap<ItemRef, u32> = vectors.iter().enumerate().map(|(i, v)| (*v, i as u32)).collect();
        // A link to no element the pages showed leads nowhere the pass needs to go.
        let links: Vec<u32> = refs.iter().map(|r| ids.get(r).copied().unwrap_or(u32::MAX)).collect();
        drop(refs);
        let meta = Meta::read(index);
        let entry = if meta.has_entry() { ids.get(&meta.entry_vector).copied() } else { None };
        let codec = Codec::load(index, &meta);
        let graph = DiskGraph {
            els: Elements::new(index, m, Logging::Wal),
            metric: meta.metric,
            meta,
            live_only,
            len: vectors.len(),
            vectors,
            nodes,
            live,
            start,
            links,
            ids,
            entry,
            extent: Extent::new(index),
            codec,
            query: Vec::new(),
        };
        (Some(graph), live_tids)
    }

    fn id_of(&mut self, r: ItemRef) -> u32 {
        if let Some(&id) = self.ids.get(&r) {
            return id;
        }
        let id = self.vectors.len() as u32;
        self.vectors.push(r);
        self.nodes.push(ItemRef::INVALID);
        self.ids.insert(r, id);
        id
    }

    /// Copy the vector of element `id` into `out`; false if it cannot be read.
    fn load(&self, id: u32, out: &mut Vec<E>) -> bool {
        out.clear();
        read_graph_vector(&self.codec, &self.extent, self.vectors[id as usize], out).is_some()
    }
}

impl<E: Elem> RepairGraph for DiskGraph<E> {
    fn len(&self) -> usize {
        self.len
    }

    fn entry(&self) -> Option<u32> {
        self.entry
    }

    fn routes(&self, id: u32) -> bool {
        (id as usize) < self.len && (self.live[id as usize] || !self.live_only)
    }

    fn is_live(&self, id: u32) -> bool {
        (id as usize) < self.len && self.live[id as usize]
    }

    fn links(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        if (id as usize) < self.len {
            let (a, b) = (self.start[id as usize] as usize, self.start[id as usize + 1] as usize);
            out.extend(self.links[a..b].iter().copied().filter(|&x| x != u32::MAX));
        }
    }

    /// Elements near `id`'s vector, nearest first, as a search from the entry point finds them.
    fn nearest(&mut self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        let mut query = std::mem::take(&mut self.query);
        if self.load(id, &mut query) && self.meta.has_entry() {
            let (index, metric) = (self.els.rel, self.metric);
            let dist = scorer::<E>(&self.codec, metric, Query::Stored(&query));
            let mut walk = DiskWalk::<E, _>::new(index, &self.meta, self.codec.clone(), dist, Visited::default(), false);
            let mut cur = walk.measure(self.meta.entry_vector);
            let mut buf = Vec::new();
            for layer in (1..=self.meta.entry_level as usize).rev() {
                cur = greedy_closest(&mut walk, cur, layer, &mut buf);
            }
            let mut found = Vec::new();
            search_layer(&mut walk, &[cur], self.meta.ef_construction as usize, 0, &mut SearchScratch::default(), &mut found);
            out.extend(found.iter().filter_map(|c| self.ids.get(&c.item.vector).copied()));
        }
        self.query = query;
    }

    fn distance(&mut self, a: u32, b: u32) -> f32 {
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        if !self.load(a, &mut va) || !self.load(b, &mut vb) {
            // An entry whose vector cannot be read is the first to give up its place.
            return f32::INFINITY;
        }
        E::distance(self.metric, &va, &vb)
    }

    fn read(&mut self, from: u32, out: &mut Vec<u32>) -> Option<u64> {
        out.clear();
        let node = *self.nodes.get(from as usize)?;
        if !node.is_valid() {
            return None;
        }
        let list = self.els.read_list(node, 0)?;
        for r in list.refs {
            let id = self.id_of(r);
            out.push(id);
        }
        Some(list.version as u64)
    }

    fn write(&mut self, from: u32, version: u64, list: &[u32]) -> bool {
        let refs: Vec<ItemRef> = list.iter().map(|&id| self.vectors[id as usize]).collect();
        self.els.write_list(self.nodes[from as usize], 0, version as u16, &refs, None, None) == Written::Done
    }

    fn tick(&mut self) {
        delay_point();
    }
}
