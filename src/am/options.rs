//! Index options (`WITH (m = 16, ef_construction = 64)`) and the `hnsw.*` settings.

use core::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::storage::meta::Quant;
use crate::types::{raise, raise_hint};

pub const DEFAULT_M: i32 = 16;
pub const MIN_M: i32 = 2;
pub const MAX_M: i32 = 100;
pub const DEFAULT_EF_CONSTRUCTION: i32 = 64;
pub const MIN_EF_CONSTRUCTION: i32 = 4;
pub const MAX_EF_CONSTRUCTION: i32 = 1000;

/// `hnsw.ef_search`: beam width of index scans.
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(40);

/// `hnsw.iterative_scan`: whether a scan goes on past its first round, and how it orders the
/// rows of later rounds (pgvector 0.8's three modes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, pgrx::PostgresGucEnum)]
pub enum IterativeScan {
    #[name = c"off"]
    Off,
    // Listed in pgvector's order (the HINT for a bad value lists them so).
    #[name = c"relaxed_order"]
    RelaxedOrder,
    #[name = c"strict_order"]
    StrictOrder,
}

pub static ITERATIVE_SCAN: GucSetting<IterativeScan> = GucSetting::<IterativeScan>::new(IterativeScan::StrictOrder);

/// `hnsw.max_scan_tuples`: heap rows an iterative scan hands out at most.
pub static MAX_SCAN_TUPLES: GucSetting<i32> = GucSetting::<i32>::new(20_000);

/// `hnsw.scan_mem_multiplier`: pgvector's multiple of `work_mem` an iterative scan may use: it
/// bounds the width of a scan's first round and stops later rounds once the walk holds more.
pub static SCAN_MEM_MULTIPLIER: GucSetting<f64> = GucSetting::<f64>::new(1.0);

/// `hnsw.filter_strategy`: how a scan with index quals on filter columns finds its rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, pgrx::PostgresGucEnum)]
pub enum FilterStrategy {
    #[name = c"auto"]
    Auto,
    #[name = c"graph"]
    Graph,
    #[name = c"exact"]
    Exact,
}

pub static FILTER_STRATEGY: GucSetting<FilterStrategy> = GucSetting::<FilterStrategy>::new(FilterStrategy::Auto);

/// `hnsw.shard_settings`: send the hnsw settings along with k-NN scans of postgres_fdw
/// foreign tables (see [`super::shard`]).
pub static SHARD_SETTINGS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// The reloption kind Postgres assigned to us at load time.
static RELOPT_KIND: AtomicU32 = AtomicU32::new(0);

/// What `build_reloptions` fills (a varlena: the length word comes first).
#[repr(C)]
struct RelOptions {
    vl_len: i32,
    m: i32,
    ef_construction: i32,
    /// [`Quant`] discriminant.
    quantization: i32,
    neighbor_codes: bool,
}

/// Register settings and reloptions; called from `_PG_init`.
pub fn init() {
    GucRegistry::define_int_guc(
        c"hnsw.ef_search",
        c"Sets the size of the dynamic candidate list for search",
        c"Larger values give higher recall and slower queries. Valid range is 1..1000.",
        &EF_SEARCH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"hnsw.iterative_scan",
        c"Whether index scans continue past hnsw.ef_search results",
        c"strict_order (default): when the executor wants more rows than the first round \
          (rows invisible to its snapshot, or rejected by conditions the index cannot check), \
          the search goes on outward, and a row is never returned after a farther one (rows \
          a later round finds nearer than the last one returned are skipped). relaxed_order: \
          the same, but such rows are returned, slightly out of order. off: stop after the \
          first round, as pgvector does by default. The first round is as wide as the larger \
          of hnsw.ef_search and the query's LIMIT + OFFSET (bounded by hnsw.max_scan_tuples \
          and work_mem), except with off, where it is hnsw.ef_search.",
        &ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"hnsw.filter_strategy",
        c"How index scans answer conditions on the filter columns of an hnsw index",
        c"graph: walk the graph, stepping through non-matching elements without counting them \
          toward hnsw.ef_search. exact: read the filter values of every element and measure \
          the matching ones (exact results). auto (default): start the walk and switch to the \
          exact scan when the share of matching elements it meets makes that cheaper.",
        &FILTER_STRATEGY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"hnsw.max_scan_tuples",
        c"Maximum number of rows an iterative index scan returns",
        c"Bounds the work of a scan whose rows keep being rejected.",
        &MAX_SCAN_TUPLES,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"hnsw.scan_mem_multiplier",
        c"Sets the multiple of work_mem to use for iterative scans",
        c"An iterative scan keeps at most work_mem times this of candidates: its first round is \
          no wider, and it stops going on outward once its walk holds more (as in pgvector).",
        &SCAN_MEM_MULTIPLIER,
        1.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"hnsw.shard_settings",
        c"Sends the hnsw settings to the shards of k-NN queries over postgres_fdw",
        c"Before a postgres_fdw foreign scan that orders by an hnsw_ext distance operator \
          starts, its connection gets this session's hnsw.ef_search, hnsw.iterative_scan \
          (relaxed_order as strict_order), hnsw.filter_strategy, hnsw.max_scan_tuples and \
          hnsw.scan_mem_multiplier for the remote transaction.",
        &SHARD_SETTINGS,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called once from _PG_init, on the backend's thread, before any index is opened.
    unsafe {
        let kind = pg_sys::add_reloption_kind();
        RELOPT_KIND.store(kind, Ordering::Relaxed);
        pg_sys::add_int_reloption(
            kind,
            c"m".as_ptr(),
            c"Max number of connections".as_ptr(),
            DEFAULT_M,
            MIN_M,
            MAX_M,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_int_reloption(
            kind,
            c"ef_construction".as_ptr(),
            c"Size of the dynamic candidate list for construction".as_ptr(),
            DEFAULT_EF_CONSTRUCTION,
            MIN_EF_CONSTRUCTION,
            MAX_EF_CONSTRUCTION,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        // Read by add_enum_reloption when options are parsed, for the life of the backend.
        let members: &'static mut [pg_sys::relopt_enum_elt_def; 4] = Box::leak(Box::new([
            pg_sys::relopt_enum_elt_def { string_val: c"none".as_ptr(), symbol_val: Quant::None as i32 },
            pg_sys::relopt_enum_elt_def { string_val: c"sq8".as_ptr(), symbol_val: Quant::Sq8 as i32 },
            pg_sys::relopt_enum_elt_def { string_val: c"rabitq1".as_ptr(), symbol_val: Quant::RaBitQ1 as i32 },
            pg_sys::relopt_enum_elt_def { string_val: core::ptr::null(), symbol_val: 0 },
        ]));
        pg_sys::add_enum_reloption(
            kind,
            c"quantization".as_ptr(),
            c"How the graph walk reads vectors: none (full precision), sq8 (8-bit codes) or rabitq1 (1-bit codes), re-ranked exactly"
                .as_ptr(),
            members.as_mut_ptr(),
            Quant::None as i32,
            c"Valid values are \"none\", \"sq8\" and \"rabitq1\".".as_ptr(),
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_bool_reloption(
            kind,
            c"neighbor_codes".as_ptr(),
            c"Keep each element's layer-0 neighbours' codes next to its neighbour list (quantized indexes)".as_ptr(),
            false,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let elt =
        |name: &'static CStr, opttype, offset: usize| pg_sys::relopt_parse_elt { optname: name.as_ptr(), opttype, offset: offset as i32 };
    let int = pg_sys::relopt_type::RELOPT_TYPE_INT;
    let tab = [
        elt(c"m", int, core::mem::offset_of!(RelOptions, m)),
        elt(c"ef_construction", int, core::mem::offset_of!(RelOptions, ef_construction)),
        elt(c"quantization", pg_sys::relopt_type::RELOPT_TYPE_ENUM, core::mem::offset_of!(RelOptions, quantization)),
        elt(c"neighbor_codes", pg_sys::relopt_type::RELOPT_TYPE_BOOL, core::mem::offset_of!(RelOptions, neighbor_codes)),
    ];
    // SAFETY: the table describes RelOptions; build_reloptions parses (and with `validate`,
    // checks ranges of) the options into a palloc'd struct of that size.
    let opts = unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND.load(Ordering::Relaxed),
            core::mem::size_of::<RelOptions>(),
            tab.as_ptr(),
            tab.len() as i32,
        )
    } as *const RelOptions;
    // `validate` is set where options are given (CREATE INDEX, ALTER INDEX SET/RESET, with the
    // index's other options merged in): reject a bad combination there, not later, when the
    // relcache parses stored options for every query that plans with the index.
    if validate && !opts.is_null() {
        // SAFETY: build_reloptions returned a RelOptions.
        let (m, efc) = unsafe { ((*opts).m, (*opts).ef_construction) };
        check_options(m, efc);
        // SAFETY: as above.
        let (quant, codes) = unsafe { ((*opts).quantization, (*opts).neighbor_codes) };
        if codes && quant == Quant::None as i32 {
            raise_hint(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "neighbor_codes requires quantization",
                "Set quantization = 'sq8' or 'rabitq1' as well: the codes kept are the quantized ones.",
            );
        }
    }
    opts as *mut pg_sys::bytea
}

fn check_options(m: i32, efc: i32) {
    if efc < 2 * m {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "ef_construction must be greater than or equal to 2 * m");
    }
}

/// (m, ef_construction) as stored, unchecked; defaults for an index without options.
fn stored_options(index: pg_sys::Relation) -> (i32, i32) {
    // SAFETY: rd_options is null or the struct amoptions built for this relation.
    unsafe {
        let opts = (*index).rd_options as *const RelOptions;
        if opts.is_null() {
            (DEFAULT_M, DEFAULT_EF_CONSTRUCTION)
        } else {
            ((*opts).m, (*opts).ef_construction)
        }
    }
}

/// (m, ef_construction) of an index about to be built, validated against each other (options
/// stored before that check existed may break the rule).
pub fn index_options(index: pg_sys::Relation) -> (usize, usize) {
    let (m, efc) = stored_options(index);
    check_options(m, efc);
    (m as usize, efc as usize)
}

/// The `quantization` option of an index about to be built.
pub fn index_quantization(index: pg_sys::Relation) -> Quant {
    Quant::from_u8(stored_quantization(index) as u8).unwrap_or(Quant::None)
}

fn stored_quantization(index: pg_sys::Relation) -> i32 {
    // SAFETY: rd_options is null or the struct amoptions built for this relation.
    unsafe {
        let opts = (*index).rd_options as *const RelOptions;
        if opts.is_null() {
            0
        } else {
            (*opts).quantization
        }
    }
}

/// The `m` option, for estimates only: never raises (it runs while planning every query on the
/// table), and is clamped to the option's range.
pub fn index_m_unchecked(index: pg_sys::Relation) -> usize {
    stored_options(index).0.clamp(MIN_M, MAX_M) as usize
}

pub fn ef_search() -> usize {
    EF_SEARCH.get().max(1) as usize
}

pub fn iterative_scan() -> IterativeScan {
    ITERATIVE_SCAN.get()
}

pub fn filter_strategy() -> FilterStrategy {
    FILTER_STRATEGY.get()
}

pub fn max_scan_tuples() -> usize {
    MAX_SCAN_TUPLES.get().max(1) as usize
}

/// Bytes an iterative scan's walk may hold: work_mem x hnsw.scan_mem_multiplier.
pub fn scan_mem_limit() -> usize {
    // SAFETY: work_mem is a plain GUC variable of this backend.
    let work_mem = unsafe { pg_sys::work_mem } as f64 * 1024.0;
    (work_mem * SCAN_MEM_MULTIPLIER.get()).min((usize::MAX / 2) as f64) as usize
}

/// The `neighbor_codes` option of an index about to be built.
pub fn index_neighbor_codes(index: pg_sys::Relation) -> bool {
    stored_neighbor_codes(index)
}

fn stored_neighbor_codes(index: pg_sys::Relation) -> bool {
    // SAFETY: rd_options is null or the struct amoptions built for this relation.
    unsafe {
        let opts = (*index).rd_options as *const RelOptions;
        !opts.is_null() && (*opts).neighbor_codes
    }
}
