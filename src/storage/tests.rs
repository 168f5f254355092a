//! `#[pg_test]`s of the storage layer: how it reads pages it did not write.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use crate::storage::buffer::{Buffer, Lock};
    use crate::storage::meta::META_BLOCK;

    /// Offsets of the metric and element bytes in the meta record (see `storage`'s layout table).
    const METRIC_AT: usize = 16;
    const ELEM_AT: usize = 17;
    /// Start of the meta record: MAXALIGN(SizeOfPageHeaderData).
    const CONTENTS: usize = 24;

    /// Overwrite one byte of the meta record of index `name`, bypassing WAL (the test's
    /// transaction is rolled back, and the index with it).
    fn corrupt_meta(name: &str, at: usize, value: u8) {
        let oid = Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid")).unwrap().unwrap();
        // SAFETY: the index is opened here and closed below.
        let rel = unsafe { pg_sys::index_open(oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
        {
            let buf = Buffer::read(rel, META_BLOCK, Lock::Exclusive);
            // SAFETY: the buffer is pinned and exclusively locked while `buf` lives, and the
            // record lies well inside the page.
            unsafe { *buf.page().as_ptr().add(CONTENTS + at) = value };
            buf.mark_dirty();
        }
        // SAFETY: opened above.
        unsafe { pg_sys::index_close(rel, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
    }

    /// Run `query` in a PL/pgSQL block that succeeds only if it raises index_corrupted (XX002);
    /// any other outcome, no error included, fails the test.
    fn expect_index_corrupted(query: &str) {
        Spi::run(&format!(
            "DO $$ BEGIN
                 SET LOCAL enable_seqscan = off;
                 PERFORM * FROM ({query}) q;
                 RAISE EXCEPTION 'expected index_corrupted, got no error';
             EXCEPTION WHEN index_corrupted THEN NULL;
             END $$"
        ))
        .unwrap();
    }

    fn small_index(table: &str, ty: &str, ops: &str) {
        Spi::run(&format!(
            "CREATE TABLE {table} (id int, v {ty}(3));
             INSERT INTO {table} SELECT i, format('[%s,%s,%s]', i, i % 7, i % 3)::{ty} FROM generate_series(1, 50) i;
             CREATE INDEX {table}_idx ON {table} USING hnsw (v {ops})"
        ))
        .unwrap();
    }

    #[pg_test]
    fn an_unknown_metric_byte_is_index_corrupted() {
        small_index("bad_metric", "halfvec", "halfvec_l2_ops");
        // Intact, the same query runs.
        Spi::run("SET LOCAL enable_seqscan = off; SELECT id FROM bad_metric ORDER BY v <-> '[1,1,1]' LIMIT 3").unwrap();
        corrupt_meta("bad_metric_idx", METRIC_AT, 99);
        expect_index_corrupted("SELECT id FROM bad_metric ORDER BY v <-> '[1,1,1]' LIMIT 3");
        expect_index_corrupted("SELECT hnsw_index_check('bad_metric_idx')");
    }

    #[pg_test]
    fn an_unknown_element_byte_is_index_corrupted() {
        // A float4 index: read as float4 anyway, as it was before the element byte was
        // decoded, it would answer without an error.
        small_index("bad_elem", "vector", "vector_l2_ops");
        Spi::run("SET LOCAL enable_seqscan = off; SELECT id FROM bad_elem ORDER BY v <-> '[1,1,1]' LIMIT 3").unwrap();
        corrupt_meta("bad_elem_idx", ELEM_AT, 7);
        expect_index_corrupted("SELECT id FROM bad_elem ORDER BY v <-> '[1,1,1]' LIMIT 3");
        expect_index_corrupted("SELECT hnsw_index_check('bad_elem_idx')");
    }
}
