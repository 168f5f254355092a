//! Retraining a quantized index whose parameters come from too few rows.
//!
//! An index built on an empty table is trained by its first insert, from that one row; one
//! built on a handful of rows, from those. Such ranges fit whichever rows came first: on
//! fashion-mnist under cosine, codes trained on the densest first image clamp the values of
//! 42% of the other rows, and recall@10 at `ef_search` 100 falls to about 0.96. So such an
//! index counts its inserts (`Meta::provisional`), and the insert that brings it to
//! [`RETRAIN_AT`] rows trains it again on all of them and re-encodes every code: from then
//! on it is as if built on those rows.
//!
//! The retraining runs under the insert lock taken exclusively (as VACUUM takes it for a
//! moment), so no insert writes a code meanwhile; the new parameters are published (generation
//! 1, the first ones kept for generation 0: see `Codec`) before any code is re-encoded, one page
//! at a time, each change WAL-logged. So every code says which parameters it was made with:
//! a crash or an ERROR part way leaves some codes of generation 0, measured with the first
//! parameters as before. A scan that loaded its parameters before the switch measures the
//! re-encoded codes with its old ones: a poorer estimate for that scan only, whose results
//! are re-ranked on the full vectors anyway.

use std::collections::BTreeMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::am::graph::Elem;
use crate::am::mem::Setting;
use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
use crate::storage::element::{nblocks, Extent};
use crate::storage::lock::{PageLock, INSERT_LOCK};
use crate::storage::meta::{Meta, Quant, RETRAIN_AT};
use crate::storage::page::ItemRef;
use crate::storage::quant::{with_full_at, write_params, Codec};
use crate::storage::tuple::{
    code_body_full, code_body_generation, rewrite_code_body, vector_tuples, FLAG_DELETED, KIND_VECTOR, VECTOR_HEADER,
};

/// Count an insert into an index trained on too few rows, and retrain it once it has
/// [`RETRAIN_AT`]. Called after the insert, with no lock held.
pub(super) fn count_insert<E: Elem>(index: pg_sys::Relation, logging: Logging) {
    let meta = Meta::update(index, logging, |m| {
        if m.provisional == 0 {
            return false;
        }
        m.provisional = m.provisional.saturating_add(1);
        true
    });
    if meta.provisional >= RETRAIN_AT {
        retrain::<E>(index, logging, usize::MAX);
    }
}

/// An element's vector tuple, as the retraining sees it.
struct Coded {
    vector: ItemRef,
    full: ItemRef,
    deleted: bool,
}

/// Retrain the index if it still has [`RETRAIN_AT`] or more rows on provisional parameters;
/// re-encode the codes of at most `pages` pages (all, but in a test of a retraining cut short).
pub(crate) fn retrain<E: Elem>(index: pg_sys::Relation, logging: Logging, pages: usize) {
    let _exclusive = PageLock::exclusive(index, INSERT_LOCK);
    let meta = Meta::read(index);
    // Another insert may have retrained it while this one waited for the lock.
    if meta.quant == Quant::None || meta.params == 0 || meta.params_first != 0 || meta.provisional < RETRAIN_AT {
        return;
    }
    let codec = Codec::load(index, &meta);
    let extent = Extent::new(index);
    let dims = meta.dims as usize;
    let coded = coded_elements(index, &codec);

    // Train on the live elements (an evenly spread sample, where they would not all fit in
    // maintenance_work_mem), as a build would on these rows.
    let live: Vec<&Coded> = coded.iter().filter(|c| !c.deleted).collect();
    let fits = (Setting::MaintenanceWorkMem.bytes() / (dims.max(1) * 4)).max(1);
    let step = live.len().div_ceil(fits).max(1);
    let mut sample: Vec<Vec<f32>> = Vec::new();
    for c in live.iter().step_by(step) {
        if let Some(f) = full_f32::<E>(&extent, c.full, dims) {
            sample.push(f);
        }
        check_for_interrupts!();
    }
    if sample.is_empty() {
        return;
    }
    let trained = Codec::train(meta.quant, dims, sample.iter().map(Vec::as_slice));
    drop(sample);
    let first = write_params(index, logging, &trained.to_bytes());
    let meta = Meta::update(index, logging, |m| {
        m.params_first = m.params;
        m.params = first;
        m.provisional = 0;
        true
    });
    let codec = Codec::load(index, &meta);

    // Re-encode, a page at a time: the page's codes are computed from the full vectors first
    // (one buffer lock at a time), then written under the page's exclusive lock if the tuple
    // still belongs to the same full vector.
    let mut by_page: BTreeMap<u32, Vec<(u16, ItemRef)>> = BTreeMap::new();
    for c in &coded {
        by_page.entry(c.vector.block).or_default().push((c.vector.offset, c.full));
    }
    let body_len = codec.body_len();
    let mut rewritten = 0usize;
    for (block, items) in by_page.into_iter().take(pages) {
        let codes: Vec<(u16, ItemRef, Vec<u8>)> = items
            .into_iter()
            .filter_map(|(off, full)| full_f32::<E>(&extent, full, dims).map(|f| (off, full, codec.encode_f32(&f))))
            .collect();
        let buf = Buffer::read(index, block, Lock::Exclusive);
        rewritten += Wal::edit(index, &buf, logging, false, |page| {
            let mut n = 0;
            for (off, full, code) in &codes {
                let Some(data) = page.item_mut(*off) else { continue };
                if data.first() != Some(&KIND_VECTOR) || data.len() < VECTOR_HEADER + body_len {
                    continue;
                }
                let body = &mut data[VECTOR_HEADER..VECTOR_HEADER + body_len];
                if code_body_full(body) != *full || code_body_generation(body) == codec.generation() {
                    continue;
                }
                rewrite_code_body(body, codec.generation(), code);
                n += 1;
            }
            n
        });
        drop(buf);
        check_for_interrupts!();
    }
    debug1!("hnsw: index retrained on {} of {} elements; {} codes re-encoded", live.len().div_ceil(step), coded.len(), rewritten);
}

/// Every element's vector tuple (a code body) and the full vector it names.
fn coded_elements(index: pg_sys::Relation, codec: &Codec) -> Vec<Coded> {
    let body_len = codec.body_len();
    let mut out = Vec::new();
    for block in 1..nblocks(index) {
        let buf = Buffer::read(index, block, Lock::Share);
        out.extend(vector_tuples(buf.page()).map(|(off, t)| Coded {
            vector: ItemRef::new(block, off),
            full: code_body_full(t.body(body_len)),
            deleted: t.flags() & FLAG_DELETED != 0,
        }));
    }
    out
}

/// The full vector whose chain starts at `full`, in f32; `None` if the chain is broken.
fn full_f32<E: Elem>(extent: &Extent, full: ItemRef, dims: usize) -> Option<Vec<f32>> {
    with_full_at::<E, _>(extent, full, dims, |v| {
        let mut f = vec![0.0f32; dims];
        <E as hnsw_core::metric::VectorElem>::to_f32(v, &mut f);
        f
    })
}
