//! The `LIMIT` above an hnsw index scan, so that the scan's first search round can be as wide
//! as the rows the query wants.
//!
//! An index AM never sees the `LIMIT`: the executor just calls `amgettuple` until the Limit node
//! has its rows. A search of width `ef_search` that is asked for more rows than that goes on in
//! later rounds, and a later round may find rows nearer than some already handed out; in
//! `strict_order` those are dropped, so `LIMIT 200` at `ef_search = 40` would get worse recall
//! than `ef_search = 200`. So an `ExecutorStart_hook` records, for every Limit node whose input
//! is an hnsw index scan (directly, or through a Result or an unfiltered subquery scan), the pair
//! of executor nodes; the scan's first `amgettuple` after a (re)scan looks up the pair whose index
//! scan owns its scan descriptor and reads `count + offset`, which `ExecLimit` (and
//! `ExecReScanLimit`) compute before they fetch the first row (also for `LIMIT $1`).
//!
//! The executor nodes live in the query's `es_query_cxt`. Entries are removed by a callback on
//! that memory context, which runs whenever it is deleted or reset, also when the query fails:
//! no entry ever outlives the nodes it points to.

use core::cell::RefCell;
use core::ffi::c_void;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::planner::cells;

static mut PREVIOUS: pg_sys::ExecutorStart_hook_type = None;

#[derive(Clone, Copy)]
struct Entry {
    /// The memory context the two nodes live in (the query's es_query_cxt).
    cxt: pg_sys::MemoryContext,
    limit: *mut pg_sys::LimitState,
    scan: *mut pg_sys::IndexScanState,
}

thread_local! {
    static ENTRIES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Install the hook (from `_PG_init`), after whatever hook was there.
pub fn init() {
    // SAFETY: _PG_init runs once per backend, single-threaded, before any query starts.
    unsafe {
        PREVIOUS = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

/// Rows the Limit node above this scan wants (`count + offset`), if it has one and has computed
/// them; `None` otherwise (no Limit, `LIMIT ALL`, or a scan run outside the executor).
pub fn rows_wanted(scan: pg_sys::IndexScanDesc) -> Option<u64> {
    ENTRIES.with(|e| {
        let entries = e.try_borrow().ok()?;
        entries.iter().find_map(|x| {
            // SAFETY: an entry's nodes live in its memory context, and the entry is removed
            // when that context is reset or deleted; so both pointers are valid here.
            unsafe {
                if (*x.scan).iss_ScanDesc != scan {
                    return None;
                }
                let l = &*x.limit;
                if l.noCount || l.lstate == pg_sys::LimitStateCond::LIMIT_INITIAL {
                    return None;
                }
                Some((l.count.max(0) as u64).saturating_add(l.offset.max(0) as u64))
            }
        })
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: the executor calls us with a valid QueryDesc; PREVIOUS was set in init().
    unsafe {
        match PREVIOUS {
            Some(previous) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| previous(query, eflags)),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 || (*query).estate.is_null() {
            return;
        }
        let found = limited_scans((*query).planstate);
        if found.is_empty() {
            return;
        }
        let cxt = (*(*query).estate).es_query_cxt;
        let cb = pg_sys::MemoryContextAllocZero(cxt, core::mem::size_of::<pg_sys::MemoryContextCallback>())
            as *mut pg_sys::MemoryContextCallback;
        (*cb).func = Some(forget);
        (*cb).arg = cxt.cast();
        pg_sys::MemoryContextRegisterResetCallback(cxt, cb);
        ENTRIES.with(|e| e.borrow_mut().extend(found.into_iter().map(|(limit, scan)| Entry { cxt, limit, scan })));
    }
}

/// Memory context callback: the query's nodes are going away.
#[pg_guard]
unsafe extern "C-unwind" fn forget(arg: *mut c_void) {
    let cxt = arg as pg_sys::MemoryContext;
    ENTRIES.with(|e| {
        if let Ok(mut entries) = e.try_borrow_mut() {
            entries.retain(|x| x.cxt != cxt);
        }
    });
}

/// The (Limit, hnsw index scan) pairs of a plan state tree.
///
/// # Safety
/// `root` is null or the root of an initialized plan state tree.
unsafe fn limited_scans(root: *mut pg_sys::PlanState) -> Vec<(*mut pg_sys::LimitState, *mut pg_sys::IndexScanState)> {
    let mut found = Vec::new();
    // SAFETY: per the contract; `visit` gets nodes of the tree, each valid.
    unsafe {
        for_each_state(root, |ps| {
            if (*ps).type_ == pg_sys::NodeTag::T_LimitState {
                if let Some(scan) = hnsw_scan_below((*ps).lefttree) {
                    found.push((ps as *mut pg_sys::LimitState, scan));
                }
            }
        });
    }
    found
}

/// Call `visit` on every node of a plan state tree (see [`child_states`] for what is a child).
///
/// # Safety
/// `root` is null or the root of an initialized plan state tree.
pub(super) unsafe fn for_each_state(root: *mut pg_sys::PlanState, mut visit: impl FnMut(*mut pg_sys::PlanState)) {
    let mut stack = vec![root];
    // SAFETY: every pointer pushed comes from the tree itself, null or a valid node.
    unsafe {
        while let Some(ps) = stack.pop() {
            if ps.is_null() {
                continue;
            }
            child_states(ps, &mut stack);
            visit(ps);
        }
    }
}

/// Push the child nodes of a plan state node (outer and inner plans, init plans and subplans,
/// the members of an Append or Merge Append, a subquery scan's plan, a custom scan's children).
///
/// # Safety
/// `ps` is a node of an initialized plan state tree.
unsafe fn child_states(ps: *mut pg_sys::PlanState, stack: &mut Vec<*mut pg_sys::PlanState>) {
    // SAFETY: per the contract; every pointer read is a field of the tree, null or valid.
    unsafe {
        stack.push((*ps).lefttree);
        stack.push((*ps).righttree);
        for list in [(*ps).initPlan, (*ps).subPlan] {
            for c in cells(list) {
                stack.push((*(c.ptr_value as *mut pg_sys::SubPlanState)).planstate);
            }
        }
        match (*ps).type_ {
            pg_sys::NodeTag::T_AppendState => {
                let a = ps as *mut pg_sys::AppendState;
                for i in 0..(*a).as_nplans.max(0) as usize {
                    stack.push(*(*a).appendplans.add(i));
                }
            }
            pg_sys::NodeTag::T_MergeAppendState => {
                let a = ps as *mut pg_sys::MergeAppendState;
                for i in 0..(*a).ms_nplans.max(0) as usize {
                    stack.push(*(*a).mergeplans.add(i));
                }
            }
            pg_sys::NodeTag::T_SubqueryScanState => stack.push((*(ps as *mut pg_sys::SubqueryScanState)).subplan),
            pg_sys::NodeTag::T_CustomScanState => {
                for c in cells((*(ps as *mut pg_sys::CustomScanState)).custom_ps) {
                    stack.push(c.ptr_value.cast());
                }
            }
            _ => {}
        }
    }
}

/// The hnsw index scan whose rows a Limit node's input passes on one for one, if any: the input
/// itself, or below Result nodes and subquery scans without a condition of their own.
///
/// # Safety
/// `ps` is null or a node of an initialized plan state tree.
unsafe fn hnsw_scan_below(mut ps: *mut pg_sys::PlanState) -> Option<*mut pg_sys::IndexScanState> {
    // SAFETY: per the contract.
    unsafe {
        loop {
            if ps.is_null() {
                return None;
            }
            match (*ps).type_ {
                pg_sys::NodeTag::T_ResultState => ps = (*ps).lefttree,
                pg_sys::NodeTag::T_SubqueryScanState if (*ps).qual.is_null() => ps = (*(ps as *mut pg_sys::SubqueryScanState)).subplan,
                pg_sys::NodeTag::T_IndexScanState => {
                    let scan = ps as *mut pg_sys::IndexScanState;
                    let index = (*scan).iss_RelationDesc;
                    // Ours: the scan callback is this library's (no catalog lookup).
                    let ours = super::scan::amgettuple as *const () as usize;
                    let ok = !index.is_null()
                        && !(*index).rd_indam.is_null()
                        && (*(*index).rd_indam).amgettuple.map(|f| f as *const () as usize) == Some(ours);
                    return ok.then_some(scan);
                }
                _ => return None,
            }
        }
    }
}
