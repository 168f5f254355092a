//! Visited sets kept between the scans (and inserts) of a backend, so that a search reuses a
//! bitmap sized to the index instead of allocating and page-faulting a fresh one.

use std::cell::RefCell;

use hnsw_core::graph::Visited;
use pgrx::pg_sys;

thread_local! {
    /// Visited sets kept between scans of this backend: a set is sized to the index and cleared
    /// in time proportional to what a search touched, so reusing it avoids allocating (and
    /// page-faulting) a fresh bitmap per query.
    static VISITED_POOL: RefCell<Vec<Visited>> = const { RefCell::new(Vec::new()) };
}

pub(in crate::am) fn take_visited() -> Visited {
    VISITED_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Drop pooled visited sets beyond `keep` bytes in all (at transaction end, see
/// [`crate::am::mem::release_caches`]): a set is sized to the largest index it searched, and a
/// backend that once scanned a huge index should not hold that memory until it exits.
pub(in crate::am) fn trim_visited_pool(keep: usize) -> usize {
    VISITED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let mut kept = 0;
        pool.retain(|v| {
            let fits = kept + v.bytes() <= keep;
            kept += if fits { v.bytes() } else { 0 };
            fits
        });
        kept
    })
}

pub(in crate::am) fn return_visited(mut v: Visited) {
    // A scan whose memory is freed by an abort returns its set after the transaction-end trim:
    // keep it only while it would be trimmed later.
    // SAFETY: reads the backend's transaction state.
    if !unsafe { pg_sys::IsTransactionState() } && v.bytes() > crate::am::mem::cache_keep() / 2 {
        return;
    }
    v.clear();
    VISITED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 4 {
            pool.push(v);
        }
    });
}
