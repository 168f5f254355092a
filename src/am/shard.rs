//! Sharded k-NN over `postgres_fdw`: the coordinator's `hnsw.*` settings reach the shards.
//!
//! A k-NN query on a table whose partitions are `postgres_fdw` foreign tables ships its
//! `ORDER BY <distance> LIMIT k` to every shard (the foreign servers list `hnsw_ext` in their
//! `extensions` option), but `postgres_fdw` does not forward session settings: the shards would
//! search with their own `hnsw.ef_search`, whatever the coordinator's session says. So an
//! `ExecutorStart_hook` looks, after the executor (and `postgres_fdw`'s `BeginForeignScan`)
//! has started, for the `postgres_fdw` foreign scans whose remote SQL orders by one of our
//! distance operators, and sends, on each of their connections (once per connection), a
//!
//! ```sql
//! SELECT pg_catalog.set_config('hnsw.ef_search', '100', true), ...
//! ```
//!
//! before the scan declares its remote cursor. `postgres_fdw` runs every remote statement of a
//! coordinator transaction in one remote transaction, which ends with the coordinator's, so
//! the values (`is_local`, as `SET LOCAL`) hold for exactly the statements of this transaction,
//! and every later statement sends the values current at its start. The connection and the
//! query function are `postgres_fdw`'s own (`GetConnection`, `pgfdw_exec_query`,
//! `pgfdw_report_error`, exported by its library), looked up in the library that provides the
//! scan's FDW routine, so the remote transaction, savepoints, a pending asynchronous request
//! on the connection and remote errors are handled as for its own statements.
//!
//! `relaxed_order` is sent as `strict_order`: a pushed-down `ORDER BY` makes the coordinator
//! trust each shard's rows to come sorted (a Merge Append merges them and the `LIMIT` stops
//! it), so a shard's later-round row out of order could cut off a nearer one.
//! `hnsw.shard_settings = off` turns all of this off.

use core::ffi::{c_char, c_int, c_void, CStr};
use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::limit::for_each_state;
use super::options::SHARD_SETTINGS;
use crate::types::{raise, raise_hint};

/// The settings a shard's scan reads, in the order they are sent.
const SETTINGS: [&CStr; 5] =
    [c"hnsw.ef_search", c"hnsw.iterative_scan", c"hnsw.filter_strategy", c"hnsw.max_scan_tuples", c"hnsw.scan_mem_multiplier"];

/// How `postgres_fdw` spells our distance operators in a remote ORDER BY: they live outside
/// pg_catalog, so its deparser always writes them `OPERATOR(schema.<->)`.
const OPERATORS: [&str; 6] = ["<->)", "<=>)", "<#>)", "<+>)", "<~>)", "<%>)"];

type GetConnectionFn = unsafe extern "C-unwind" fn(*mut pg_sys::UserMapping, bool, *mut *mut c_void) -> *mut c_void;
type ExecQueryFn = unsafe extern "C-unwind" fn(*mut c_void, *const c_char, *mut c_void) -> *mut c_void;
type ReportErrorFn = unsafe extern "C-unwind" fn(c_int, *mut c_void, *mut c_void, bool, *const c_char);
type ResultStatusFn = unsafe extern "C-unwind" fn(*const c_void) -> c_int;
type ClearFn = unsafe extern "C-unwind" fn(*mut c_void);

/// libpq's PGRES_TUPLES_OK.
const PGRES_TUPLES_OK: c_int = 2;

/// `postgres_fdw`'s functions (and libpq's, which it links), resolved in its library.
#[derive(Clone, Copy)]
struct Fdw {
    get_connection: GetConnectionFn,
    exec_query: ExecQueryFn,
    report_error: ReportErrorFn,
    result_status: ResultStatusFn,
    clear: ClearFn,
}

static mut PREVIOUS: pg_sys::ExecutorStart_hook_type = None;

/// The library `postgres_fdw`'s routines were found in, and its functions (per backend; a
/// loaded library is never unloaded).
static mut FDW: Option<(usize, Fdw)> = None;

/// Install the hook (from `_PG_init`), after whatever hook was there.
pub fn init() {
    // SAFETY: _PG_init runs once per backend, single-threaded, before any query starts.
    unsafe {
        PREVIOUS = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: the executor calls us with a valid QueryDesc; PREVIOUS was set in init().
    unsafe {
        match PREVIOUS {
            Some(previous) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| previous(query, eflags)),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
        // EXPLAIN without ANALYZE opens no connection; parallel workers run no foreign scans
        // of postgres_fdw (it is not parallel safe).
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0
            || (*query).estate.is_null()
            || !SHARD_SETTINGS.get()
            || pg_sys::ParallelWorkerNumber >= 0
        {
            return;
        }
        let scans = knn_foreign_scans((*query).planstate);
        if scans.is_empty() {
            return;
        }
        let sql = settings_sql();
        let mut done: Vec<*mut c_void> = Vec::new();
        for (fss, fdw) in scans {
            let user = user_mapping((*query).estate, fss);
            let mut state: *mut c_void = core::ptr::null_mut();
            let conn = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| (fdw.get_connection)(user, false, &mut state));
            if conn.is_null() || done.contains(&conn) {
                continue;
            }
            done.push(conn);
            let res = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| (fdw.exec_query)(conn, sql.as_ptr(), state));
            if res.is_null() || (fdw.result_status)(res) != PGRES_TUPLES_OK {
                // Raises the remote error (or the connection's) as an ERROR; frees `res`.
                pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                    (fdw.report_error)(PgLogLevel::ERROR as c_int, res, conn, true, sql.as_ptr())
                });
                raise(PgSqlErrorCode::ERRCODE_FDW_ERROR, "could not send the hnsw settings to a shard");
            }
            (fdw.clear)(res);
        }
    }
}

/// The statement that sets this session's values of [`SETTINGS`] for the remote transaction.
fn settings_sql() -> CString {
    let mut parts = Vec::with_capacity(SETTINGS.len());
    for name in SETTINGS {
        // SAFETY: our own settings exist once the library is loaded (missing_ok = false would
        // raise an ERROR otherwise); the value is a palloc'd C string of this backend.
        let value = unsafe {
            let v = pg_sys::GetConfigOptionByName(name.as_ptr(), core::ptr::null_mut(), false);
            CStr::from_ptr(v).to_string_lossy().into_owned()
        };
        parts.push(set_config_call(name.to_str().unwrap_or_default(), &value));
    }
    CString::new(format!("SELECT {}", parts.join(", "))).expect("setting values hold no NUL byte")
}

/// One `set_config` call, with the value as the shard should use it.
fn set_config_call(name: &str, value: &str) -> String {
    let value = if name == "hnsw.iterative_scan" && value == "relaxed_order" { "strict_order" } else { value };
    format!("pg_catalog.set_config('{}', '{}', true)", name.replace('\'', "''"), value.replace('\'', "''"))
}

/// Whether a remote SELECT orders by one of our distance operators.
pub(crate) fn is_knn_sql(sql: &str) -> bool {
    sql.starts_with("SELECT ") && sql.rfind(" ORDER BY ").is_some_and(|at| OPERATORS.iter().any(|op| sql[at..].contains(op)))
}

/// The `postgres_fdw` foreign scans of a plan state tree that run a k-NN query on a shard.
///
/// # Safety
/// `root` is null or the root of an initialized plan state tree.
unsafe fn knn_foreign_scans(root: *mut pg_sys::PlanState) -> Vec<(*mut pg_sys::ForeignScanState, Fdw)> {
    let mut found = Vec::new();
    // SAFETY: per the contract; `visit` gets nodes of the tree, each valid.
    unsafe {
        for_each_state(root, |ps| {
            if (*ps).type_ != pg_sys::NodeTag::T_ForeignScanState {
                return;
            }
            let fss = ps as *mut pg_sys::ForeignScanState;
            let Some(sql) = remote_sql((*ps).plan as *mut pg_sys::ForeignScan) else { return };
            if !is_knn_sql(sql) {
                return;
            }
            if let Some(fdw) = postgres_fdw((*fss).fdwroutine) {
                found.push((fss, fdw));
            }
        });
    }
    found
}

/// postgres_fdw's remote SELECT of a foreign scan: the first element of `fdw_private`, a
/// String node (`FdwScanPrivateSelectSql`). `None` for plans that do not look like that.
///
/// # Safety
/// `plan` is a valid ForeignScan node.
unsafe fn remote_sql<'a>(plan: *mut pg_sys::ForeignScan) -> Option<&'a str> {
    // SAFETY: per the contract; list cells and the String node are checked before reading.
    unsafe {
        let list = (*plan).fdw_private;
        if list.is_null() || (*list).length < 1 {
            return None;
        }
        let first = (*(*list).elements).ptr_value as *mut pg_sys::Node;
        if first.is_null() || (*first).type_ != pg_sys::NodeTag::T_String {
            return None;
        }
        let s = (*(first as *mut pg_sys::String)).sval;
        (!s.is_null()).then(|| CStr::from_ptr(s).to_str().ok()).flatten()
    }
}

/// postgres_fdw's functions, if `routine` is postgres_fdw's: the library that holds its
/// `BeginForeignScan` is named postgres_fdw and exports them.
///
/// # Safety
/// `routine` is null or a valid FdwRoutine.
unsafe fn postgres_fdw(routine: *mut pg_sys::FdwRoutine) -> Option<Fdw> {
    // SAFETY: per the contract; dladdr, dlopen(RTLD_NOLOAD) and dlsym only read the dynamic
    // linker's tables, and the library found stays loaded for the backend's life.
    unsafe {
        let begin = routine.as_ref()?.BeginForeignScan? as *const c_void;
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(begin, &mut info) == 0 || info.dli_fname.is_null() || info.dli_fbase.is_null() {
            return None;
        }
        let base = info.dli_fbase as usize;
        if let Some((b, fdw)) = FDW {
            if b == base {
                return Some(fdw);
            }
        }
        let path = CStr::from_ptr(info.dli_fname).to_bytes();
        let file = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        if file != b"postgres_fdw.so" {
            return None;
        }
        let handle = libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(handle, name.as_ptr());
            if p.is_null() {
                raise_hint(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("postgres_fdw does not export {}", name.to_string_lossy()),
                    "Set hnsw.shard_settings = off to query the shards with their own hnsw settings.",
                );
            }
            p
        };
        let fdw = Fdw {
            get_connection: core::mem::transmute::<*mut c_void, GetConnectionFn>(sym(c"GetConnection")),
            exec_query: core::mem::transmute::<*mut c_void, ExecQueryFn>(sym(c"pgfdw_exec_query")),
            report_error: core::mem::transmute::<*mut c_void, ReportErrorFn>(sym(c"pgfdw_report_error")),
            result_status: core::mem::transmute::<*mut c_void, ResultStatusFn>(sym(c"PQresultStatus")),
            clear: core::mem::transmute::<*mut c_void, ClearFn>(sym(c"PQclear")),
        };
        // dlopen took a reference of its own; the library is loaded anyway.
        libc::dlclose(handle);
        FDW = Some((base, fdw));
        Some(fdw)
    }
}

/// The user mapping a foreign scan connects with, found as postgres_fdw's BeginForeignScan
/// finds it (PostgreSQL 15): the scan's relation (the lowest-numbered one of a join), its
/// `checkAsUser` or else the current user, and the scan's server.
///
/// # Safety
/// `estate` and `fss` are the valid, started executor state and one of its foreign scans.
unsafe fn user_mapping(estate: *mut pg_sys::EState, fss: *mut pg_sys::ForeignScanState) -> *mut pg_sys::UserMapping {
    // SAFETY: per the contract; the range table index comes from the plan itself.
    unsafe {
        let plan = (*fss).ss.ps.plan as *mut pg_sys::ForeignScan;
        let rti = if (*plan).scan.scanrelid > 0 { (*plan).scan.scanrelid as i32 } else { pg_sys::bms_next_member((*plan).fs_relids, -1) };
        let rt = (*estate).es_range_table;
        let mut userid = pg_sys::GetUserId();
        if rti > 0 && !rt.is_null() && rti <= (*rt).length {
            let rte = (*(*rt).elements.add(rti as usize - 1)).ptr_value as *mut pg_sys::RangeTblEntry;
            if !rte.is_null() && (*rte).checkAsUser != pg_sys::InvalidOid {
                userid = (*rte).checkAsUser;
            }
        }
        pg_sys::GetUserMapping(userid, (*plan).fs_server)
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::{is_knn_sql, settings_sql};

    #[pg_test]
    fn knn_remote_sql_is_recognized() {
        // What postgres_fdw deparses for a k-NN query, with and without a LIMIT and a filter.
        assert!(is_knn_sql("SELECT id, v FROM public.items ORDER BY (v OPERATOR(public.<->) '[1,2]') ASC NULLS LAST LIMIT 10::bigint"));
        assert!(is_knn_sql("SELECT id FROM public.items WHERE ((cat = 7)) ORDER BY (v OPERATOR(public.<=>) '[1,2]') ASC NULLS LAST"));
        assert!(is_knn_sql("SELECT id FROM s.t ORDER BY (b OPERATOR(s.<~>) B'101') ASC NULLS LAST"));
        // Not ordered by a distance: a distance in WHERE only, another order, no order, DML.
        assert!(!is_knn_sql("SELECT id FROM public.items WHERE (((v OPERATOR(public.<->) '[1]') < 1)) ORDER BY id ASC NULLS LAST"));
        assert!(!is_knn_sql("SELECT id, v FROM public.items"));
        assert!(!is_knn_sql("UPDATE public.items SET cat = $2 WHERE ctid = $1"));
    }

    #[pg_test]
    fn settings_statement_carries_the_session_values() {
        Spi::run("SET hnsw.ef_search = 123").unwrap();
        Spi::run("SET hnsw.iterative_scan = relaxed_order").unwrap();
        Spi::run("SET hnsw.filter_strategy = exact").unwrap();
        let sql = settings_sql().into_string().unwrap();
        assert!(sql.contains("pg_catalog.set_config('hnsw.ef_search', '123', true)"), "{sql}");
        // The shards' rows are merged trusting their order: relaxed_order goes as strict_order.
        assert!(sql.contains("pg_catalog.set_config('hnsw.iterative_scan', 'strict_order', true)"), "{sql}");
        assert!(sql.contains("pg_catalog.set_config('hnsw.filter_strategy', 'exact', true)"), "{sql}");
        assert!(sql.contains("'hnsw.max_scan_tuples', '20000'") && sql.contains("'hnsw.scan_mem_multiplier', '1'"), "{sql}");
        Spi::run("SET hnsw.iterative_scan = off").unwrap();
        // What a shard runs is valid SQL here too, and sets what it says.
        Spi::run(&sql).unwrap();
        assert_eq!(Spi::get_one::<String>("SHOW hnsw.iterative_scan").unwrap().as_deref(), Some("strict_order"));
    }
}
