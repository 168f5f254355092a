//! `IN (...)` / `= ANY(array)` on filter columns as index conditions of an ordered scan.
//!
//! PostgreSQL 15's planner never combines an index ORDER BY with a ScalarArrayOpExpr on any
//! index column but the first (`build_index_paths` drops the ordering when it sees one: a btree
//! scanned once per array element is no longer ordered). Our filter columns always come after
//! the vector, and our scans take the whole array at once (`amsearcharray`), in distance
//! order. So a `set_rel_pathlist_hook` looks at the ordered hnsw paths the planner made and,
//! where the query has such a condition on a filter column that the path leaves as a `Filter`,
//! replaces the path with the same path that has the condition among its index conditions —
//! as the planner itself always does for the other operators.

use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREVIOUS: pg_sys::set_rel_pathlist_hook_type = None;

/// Install the hook (from `_PG_init`), after whatever hook was there.
pub fn init() {
    // SAFETY: _PG_init runs once per backend, single-threaded, before any planning.
    unsafe {
        PREVIOUS = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(set_rel_pathlist);
    }
}

/// The cells of a `List` of pointers (NIL gives none).
///
/// # Safety
/// `list` must be NIL or a valid pointer list that outlives the returned slice unchanged.
pub(super) unsafe fn cells<'a>(list: *mut pg_sys::List) -> &'a [pg_sys::ListCell] {
    if list.is_null() {
        return &[];
    }
    // SAFETY: per the contract; `elements` holds `length` cells.
    unsafe { core::slice::from_raw_parts((*list).elements, (*list).length as usize) }
}

/// Whether `node` is a node of type `tag`.
///
/// # Safety
/// `node` must be null or point at a Node.
unsafe fn is_a(node: *const core::ffi::c_void, tag: pg_sys::NodeTag) -> bool {
    // SAFETY: per the contract.
    !node.is_null() && unsafe { (*(node as *const pg_sys::Node)).type_ } == tag
}

#[pg_guard]
unsafe extern "C-unwind" fn set_rel_pathlist(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    // SAFETY: the planner calls us with valid arguments; PREVIOUS was set in init().
    unsafe {
        if let Some(previous) = PREVIOUS {
            previous(root, rel, rti, rte);
        }
        if (*rel).reloptkind != pg_sys::RelOptKind::RELOPT_BASEREL || (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
            return;
        }
        let mut new_paths = Vec::new();
        for cell in cells((*rel).pathlist) {
            let path = cell.ptr_value as *mut pg_sys::IndexPath;
            if !is_a(path.cast(), pg_sys::NodeTag::T_IndexPath) {
                continue;
            }
            let index = (*path).indexinfo;
            // Ours: the cost function is this library's (no catalog lookup per relation).
            let ours = super::cost::amcostestimate as *const () as usize;
            if (*index).amcostestimate.map(|f| f as *const () as usize) != Some(ours)
                || (*path).indexorderbys.is_null()
                || !(*path).path.param_info.is_null()
            {
                continue;
            }
            if let Some(p) = with_more_conditions(root, rel, path) {
                new_paths.push((path, p));
            }
        }
        for (old, new) in new_paths {
            (*rel).pathlist = pg_sys::list_delete_ptr((*rel).pathlist, old.cast());
            pg_sys::add_path(rel, new.cast());
        }
    }
}

/// The path again, with the query's conditions it lacks added to its index conditions:
/// `filter_column op ANY(array)`, and bare boolean conditions on a boolean filter column
/// (`flag`, `NOT flag`: the planner folds `flag = true` into these and only hands btree and
/// hash boolean operator families such clauses); `None` if there are none.
///
/// # Safety
/// Planner structures as passed to the hook; `path` is an ordered hnsw index path of `rel`.
unsafe fn with_more_conditions(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    path: *mut pg_sys::IndexPath,
) -> Option<*mut pg_sys::IndexPath> {
    // SAFETY: per the function's contract, every pointer below comes from the planner.
    unsafe {
        let index = (*path).indexinfo;
        let have: Vec<*mut pg_sys::RestrictInfo> =
            cells((*path).indexclauses).iter().map(|c| (*(c.ptr_value as *mut pg_sys::IndexClause)).rinfo).collect();
        // (index column, the query's clause, what the index checks for it)
        let mut added: Vec<(i32, *mut pg_sys::RestrictInfo, *mut pg_sys::RestrictInfo)> = Vec::new();
        for cell in cells((*rel).baserestrictinfo) {
            let rinfo = cell.ptr_value as *mut pg_sys::RestrictInfo;
            if have.contains(&rinfo) || (*rinfo).pseudoconstant {
                continue;
            }
            if let Some(col) = array_condition(root, rel, index, (*rinfo).clause) {
                added.push((col, rinfo, rinfo));
            } else if let Some((col, value)) = boolean_condition(index, (*rinfo).clause) {
                // `flag`, `NOT flag`, `flag IS TRUE`: the index checks `flag = true/false`.
                let eq = pg_sys::make_opclause(
                    pg_sys::Oid::from(pg_sys::BooleanEqualOperator),
                    pg_sys::BOOLOID,
                    false,
                    boolean_operand((*rinfo).clause),
                    pg_sys::makeBoolConst(value, false).cast(),
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                );
                let derived = pg_sys::make_restrictinfo(
                    root,
                    eq,
                    true,
                    false,
                    false,
                    (*rinfo).security_level,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                );
                added.push((col, rinfo, derived));
            }
        }
        if added.is_empty() {
            return None;
        }
        // Index clauses in column order, as the planner keeps them.
        let mut all: Vec<(i32, *mut pg_sys::IndexClause)> = cells((*path).indexclauses)
            .iter()
            .map(|c| {
                let ic = c.ptr_value as *mut pg_sys::IndexClause;
                ((*ic).indexcol as i32, ic)
            })
            .collect();
        for (col, rinfo, indexqual) in added {
            let ic = pg_sys::palloc0(core::mem::size_of::<pg_sys::IndexClause>()) as *mut pg_sys::IndexClause;
            (*ic).type_ = pg_sys::NodeTag::T_IndexClause;
            (*ic).rinfo = rinfo;
            (*ic).indexquals = pg_sys::lappend(core::ptr::null_mut(), indexqual.cast());
            (*ic).lossy = false;
            (*ic).indexcol = col as pg_sys::AttrNumber;
            all.push((col, ic));
        }
        all.sort_by_key(|&(col, _)| col);
        let mut clauses: *mut pg_sys::List = core::ptr::null_mut();
        for (_, ic) in all {
            clauses = pg_sys::lappend(clauses, ic.cast());
        }
        Some(pg_sys::create_index_path(
            root,
            index,
            clauses,
            (*path).indexorderbys,
            (*path).indexorderbycols,
            (*path).path.pathkeys,
            pg_sys::ScanDirection::ForwardScanDirection,
            false,
            core::ptr::null_mut(),
            1.0,
            false,
        ))
    }
}

/// The filter column a `column op ANY(array)` clause can be checked on by the index.
///
/// # Safety
/// Planner structures, as in [`with_more_conditions`].
unsafe fn array_condition(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    index: *mut pg_sys::IndexOptInfo,
    clause: *mut pg_sys::Expr,
) -> Option<i32> {
    // SAFETY: per the contract.
    unsafe {
        if !is_a(clause.cast(), pg_sys::NodeTag::T_ScalarArrayOpExpr) {
            return None;
        }
        let saop = clause as *mut pg_sys::ScalarArrayOpExpr;
        let args = cells((*saop).args);
        if !(*saop).useOr || args.len() != 2 {
            return None;
        }
        let (left, right) = (args[0].ptr_value as *mut pg_sys::Node, args[1].ptr_value as *mut pg_sys::Node);
        // The array must be known when the scan starts: no column of this relation, nothing
        // volatile (constants, parameters, expressions of outer values are all fine).
        if pg_sys::bms_is_member((*rel).relid as i32, pg_sys::pull_varnos(root, right)) || pg_sys::contain_volatile_functions(right) {
            return None;
        }
        (1..(*index).nkeycolumns).find(|&col| {
            let opfamily = *(*index).opfamily.add(col as usize);
            let collation = *(*index).indexcollations.add(col as usize);
            pg_sys::match_index_to_operand(left, col, index)
                && pg_sys::op_in_opfamily((*saop).opno, opfamily)
                && (collation == pg_sys::InvalidOid || collation == (*saop).inputcollid)
        })
    }
}

/// The boolean column a bare boolean clause tests, and the value it wants.
///
/// # Safety
/// `clause` is a planner expression.
unsafe fn boolean_operand(clause: *mut pg_sys::Expr) -> *mut pg_sys::Expr {
    // SAFETY: per the contract; the shapes were checked by boolean_condition.
    unsafe {
        if is_a(clause.cast(), pg_sys::NodeTag::T_BoolExpr) {
            return cells((*(clause as *mut pg_sys::BoolExpr)).args)[0].ptr_value.cast();
        }
        if is_a(clause.cast(), pg_sys::NodeTag::T_BooleanTest) {
            return (*(clause as *mut pg_sys::BooleanTest)).arg;
        }
        clause
    }
}

/// The boolean filter column `flag`, `NOT flag`, `flag IS TRUE` or `flag IS FALSE` tests, and
/// the value it keeps.
///
/// # Safety
/// Planner structures, as in [`with_more_conditions`].
unsafe fn boolean_condition(index: *mut pg_sys::IndexOptInfo, clause: *mut pg_sys::Expr) -> Option<(i32, bool)> {
    // SAFETY: per the contract.
    unsafe {
        let (operand, value) = if is_a(clause.cast(), pg_sys::NodeTag::T_BoolExpr) {
            let b = clause as *mut pg_sys::BoolExpr;
            let args = cells((*b).args);
            if (*b).boolop != pg_sys::BoolExprType::NOT_EXPR || args.len() != 1 {
                return None;
            }
            (args[0].ptr_value as *mut pg_sys::Node, false)
        } else if is_a(clause.cast(), pg_sys::NodeTag::T_BooleanTest) {
            let t = clause as *mut pg_sys::BooleanTest;
            match (*t).booltesttype {
                pg_sys::BoolTestType::IS_TRUE => ((*t).arg.cast(), true),
                pg_sys::BoolTestType::IS_FALSE => ((*t).arg.cast(), false),
                _ => return None,
            }
        } else {
            (clause.cast(), true)
        };
        if pg_sys::exprType(operand) != pg_sys::BOOLOID {
            return None;
        }
        (1..(*index).nkeycolumns)
            .find(|&col| {
                *(*index).opcintype.add(col as usize) == pg_sys::BOOLOID
                    && pg_sys::match_index_to_operand(operand, col, index)
                    && pg_sys::op_in_opfamily(pg_sys::Oid::from(pg_sys::BooleanEqualOperator), *(*index).opfamily.add(col as usize))
            })
            .map(|col| (col, value))
    }
}
