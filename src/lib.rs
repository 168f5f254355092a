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
    am::options::init();
    am::planner::init();
    am::limit::init();
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
