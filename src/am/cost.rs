//! Planner cost estimate: the index is only worth it for `ORDER BY <distance> LIMIT`.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::options;
use crate::storage::meta::Meta;

#[pg_guard]
// The signature is Postgres' amcostestimate callback: its arity is not ours to choose.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    loop_count: f64,
    startup_cost: *mut pg_sys::Cost,
    total_cost: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    // SAFETY: the planner passes valid pointers; we only read the path and write the outputs.
    unsafe {
        // Without an ORDER BY distance the index can only return rows in arbitrary order: never
        // choose it then.
        if (*path).indexorderbys.is_null() {
            *startup_cost = f64::MAX;
            *total_cost = f64::MAX;
            *selectivity = 0.0;
            *correlation = 0.0;
            *pages = 0.0;
            return;
        }
        let info = (*path).indexinfo;
        let tuples = (*info).tuples.max(1.0);
        // The graph's own m and vector size, from the meta page (the `m` option may have been
        // changed by ALTER INDEX since the build; it takes effect at REINDEX).
        let rel = pg_sys::index_open((*info).indexoid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let meta = Meta::read(rel);
        pg_sys::index_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        let m = (meta.m as usize).clamp(options::MIN_M as usize, options::MAX_M as usize);
        // What a walk reads per element: the vector, or in a quantized index its code.
        let vector_bytes = match meta.elem {
            // Bodies vary in length; a typical sparse vector (a few hundred non-zeros).
            crate::storage::meta::ElemType::Sparse => crate::storage::quant::sparse_body_len(200) as f64 + 8.0,
            _ => crate::am::insert::body_len(meta.quant, meta.elem, meta.dims as usize) as f64 + 8.0,
        };
        // Elements a search reads, as pgvector estimates them: a few per layer on the way down.
        // This is deliberately independent of hnsw.ef_search. The true count grows with it,
        // but so does the cost of every alternative the planner has for ORDER BY distance
        // LIMIT k (a scan of the whole table plus a sort), and the pages are nearly always in
        // shared buffers, which genericcostestimate prices as random reads. Pricing them
        // honestly made the planner fall back to a seq scan at ef_search 60 on 60k rows,
        // 200x slower than the index. Tiny tables still get a seq scan, which is exact there.
        let levels = (tuples.ln() / (m.max(2) as f64).ln()).max(0.0);
        let mut visited = ((levels + 2.0) * m as f64).min(tuples);
        // Conditions on filter columns (selectivity s): a filtered walk meets fewer results per
        // element it reads, so it reads more, but far less than 1/s times more once it no longer
        // spends ef_search on rows the executor would throw away; and when matches are rare the
        // scan switches to reading the matching elements only (see scan/exact.rs). Priced gently,
        // the same way as the walk itself above, so that a path with the conditions pushed
        // down beats the same index scan with them left to a Filter (which reads 1/s times as
        // many heap rows), and a btree on the filter column wins only where few rows match.
        if !(*path).indexclauses.is_null() {
            let quals = pg_sys::get_quals_from_indexclauses((*path).indexclauses);
            let relid = (*(*info).rel).relid as i32;
            let s =
                pg_sys::clauselist_selectivity(root, quals, relid, pg_sys::JoinType::JOIN_INNER, core::ptr::null_mut()).clamp(1e-9, 1.0);
            let walk = visited * (1.0 + 0.5 * (1.0 / s).log10());
            let exact = (tuples / 100.0 + s * tuples) / 10.0;
            visited = walk.min(exact).max(1.0).min(tuples);
        }
        let mut costs = pg_sys::GenericCosts { numIndexTuples: visited, ..Default::default() };
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        // Vectors too large for the heap's pages (about 500 dimensions up) are stored out of
        // line, in the table's TOAST relation, which the planner's cost of a sequential scan
        // leaves out, and so does its cost of detoasting each one to measure it: for 2,000
        // rows of 1536-d that scan is priced at its ~15 heap pages where it reads ~2,000 more.
        // The index keeps its vectors in its own pages, priced in full above, so the index
        // lost to a scan 10x slower. Price the index's page reads at the same discount the
        // planner gives the table's: its main fork's share of the pages holding its rows.
        let heap_pages = (*(*info).rel).pages as f64;
        let data_pages = tuples * vector_bytes / pg_sys::BLCKSZ as f64;
        if data_pages > heap_pages {
            let share = (heap_pages.max(1.0) / data_pages).min(1.0);
            // The page part of genericcostestimate's total.
            let index_pages = (*info).pages as f64;
            let fetched = if loop_count > 1.0 {
                pg_sys::index_pages_fetched(costs.numIndexPages * loop_count, (*info).pages, index_pages, root) / loop_count
            } else {
                costs.numIndexPages
            };
            let io = (fetched * costs.spc_random_page_cost).min(costs.indexTotalCost);
            costs.indexTotalCost -= io * (1.0 - share);
        }
        // The search happens before the first row comes back.
        *startup_cost = costs.indexTotalCost;
        *total_cost = costs.indexTotalCost;
        *selectivity = costs.indexSelectivity;
        *correlation = costs.indexCorrelation;
        *pages = costs.numIndexPages;
    }
}
