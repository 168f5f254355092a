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

    /// Offset of the quantization byte in the meta record.
    const QUANT_AT: usize = 37;

    #[pg_test]
    fn a_quantization_byte_that_disagrees_with_the_format_is_index_corrupted() {
        // A full-precision index (format 2) claiming sq8 codes would read vectors as codes.
        small_index("bad_quant", "vector", "vector_l2_ops");
        corrupt_meta("bad_quant_idx", QUANT_AT, 1);
        expect_index_corrupted("SELECT id FROM bad_quant ORDER BY v <-> '[1,1,1]' LIMIT 3");
        corrupt_meta("bad_quant_idx", QUANT_AT, 9);
        expect_index_corrupted("SELECT hnsw_index_check('bad_quant_idx')");
    }

    /// Format 2 indexes written before quantization have a 48-byte meta record (pd_lower just
    /// past it): they are read with the new fields as zeros, and a meta update writes them.
    #[pg_test]
    fn a_meta_record_of_48_bytes_is_read_as_before() {
        small_index("old_meta", "vector", "vector_l2_ops");
        let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'old_meta_idx'::regclass::oid").unwrap().unwrap();
        // SAFETY: the index is opened here and closed below.
        let rel = unsafe { pg_sys::index_open(oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
        {
            let buf = Buffer::read(rel, META_BLOCK, Lock::Exclusive);
            // SAFETY: pinned and exclusively locked; the record and the page header lie inside
            // the page. What an older build wrote: 48 bytes, then the page's zeroed hole.
            unsafe {
                let page = buf.page().as_ptr();
                core::ptr::write_bytes(page.add(CONTENTS + 48), 0, 8);
                (*(page as *mut pg_sys::PageHeaderData)).pd_lower = (CONTENTS + 48) as u16;
            }
            buf.mark_dirty();
        }
        // SAFETY: opened above.
        unsafe { pg_sys::index_close(rel, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE) };
        let ids = Spi::get_one::<i64>(
            "SET LOCAL enable_seqscan = off;
             SELECT count(*) FROM (SELECT id FROM old_meta ORDER BY v <-> '[1,1,1]' LIMIT 5) s",
        );
        assert_eq!(ids, Ok(Some(5)));
        // An insert that updates the meta page (the first of a page of its own) and the check.
        Spi::run("INSERT INTO old_meta SELECT i, format('[%s,0,0]', i)::vector FROM generate_series(100, 300) i").unwrap();
        let report = Spi::get_one::<String>("SELECT hnsw_index_check('old_meta_idx')").unwrap().unwrap();
        assert!(report.ends_with("OK"), "{report}");
    }
}
