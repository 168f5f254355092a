//! hnsw_ext: pgvector-compatible `vector`/`halfvec` types and an HNSW index access method.
//!
//! Layout of the crate (the Postgres-free algorithms live in the `hnsw_core` crate under `core/`):
//! - [`types`]: the SQL types, their I/O, operators, casts and aggregates;
//! - [`storage`]: page layout, buffer and WAL guards;
//! - [`am`]: the `hnsw` access method (handler, options, build, insert, scan, vacuum, cost).

use pgrx::prelude::*;

pub mod am;
pub mod storage;
pub mod types;

::pgrx::pg_module_magic!(name, version);

// Shell types first, so the generated CREATE FUNCTION statements can name them; the full type
// definitions, casts, operators and operator classes come after every function exists.
extension_sql_file!("../sql/bootstrap.sql", bootstrap);
extension_sql_file!("../sql/finalize.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx's panic hook captures a Rust backtrace for errors it catches (those Postgres raises
    // inside a call we make, Rust panics) and puts it in the DETAIL the client sees when
    // RUST_BACKTRACE is set in the server's environment: some 65 lines of build paths. std reads
    // RUST_LIB_BACKTRACE before RUST_BACKTRACE for captured backtraces only (a panic's message
    // in the server log still follows RUST_BACKTRACE), so this turns off just those. The backend
    // is single-threaded while a library loads, so changing its environment is safe.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    am::options::init();
    am::mem::init();
    am::planner::init();
    am::limit::init();
    am::shard::init();
    // As pgvector does: after our settings exist, any other `hnsw.` name (a typo such as
    // `SET hnsw.ef_serach = 100`) is an ERROR instead of a silently created placeholder.
    // SAFETY: _PG_init runs once per backend, single-threaded; the prefix is a static C string.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"hnsw".as_ptr()) };
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
