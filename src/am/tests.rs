//! `#[pg_test]`s of the access method inside Postgres: on-disk structure after builds, inserts
//! and VACUUM (through the checker), the tuple codecs, and scan behaviour.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use crate::storage::page::ItemRef;
    use crate::storage::tuple::{codes_size, node_tuple_size, NodeTuple, NodeTupleMut};

    fn check_index(name: &str) -> String {
        Spi::get_one::<String>(&format!("SELECT hnsw_index_check('{name}')")).unwrap().unwrap()
    }

    fn random_table(name: &str, rows: usize, dims: usize) {
        Spi::run(&format!("SELECT setseed(0.42); CREATE TABLE {name} (id int PRIMARY KEY, v vector({dims}))")).unwrap();
        Spi::run(&format!(
            "INSERT INTO {name} SELECT i, (SELECT array_agg(random()) FROM generate_series(1, {dims}) WHERE i > 0)::vector
             FROM generate_series(1, {rows}) i"
        ))
        .unwrap();
    }

    #[pg_test]
    fn build_writes_a_consistent_graph() {
        random_table("g", 2000, 16);
        Spi::run("CREATE INDEX g_idx ON g USING hnsw (v vector_l2_ops) WITH (m = 8, ef_construction = 32)").unwrap();
        let report = check_index("g_idx");
        assert!(report.ends_with("OK"), "{report}");
        assert!(report.contains("2000 elements (0 deleted, 0 of them free), 2000 heap TIDs"), "{report}");
    }

    #[pg_test]
    fn inserts_keep_the_graph_consistent() {
        Spi::run("CREATE TABLE ins (id int, v vector(8))").unwrap();
        Spi::run("CREATE INDEX ins_idx ON ins USING hnsw (v vector_cosine_ops) WITH (m = 4, ef_construction = 8)").unwrap();
        Spi::run("SELECT setseed(0.1)").unwrap();
        // Many small inserts into an index built empty: entry point promotions, full lists that
        // must be re-selected, new pages.
        for _ in 0..20 {
            Spi::run(
                "INSERT INTO ins SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 8) WHERE i > 0)::vector
                 FROM generate_series(1, 50) i",
            )
            .unwrap();
        }
        let report = check_index("ins_idx");
        assert!(report.ends_with("OK"), "{report}");
        assert!(report.contains("1000 elements"), "{report}");
        // The closest row to an indexed vector is itself.
        let hit = Spi::get_one::<bool>(
            "SET LOCAL enable_seqscan = off;
             SELECT (SELECT v FROM ins ORDER BY v <=> (SELECT v FROM ins LIMIT 1) LIMIT 1) = (SELECT v FROM ins LIMIT 1)",
        )
        .unwrap()
        .unwrap();
        assert!(hit);
    }

    /// Dead heap TIDs for the bulk-delete callback.
    struct Dead(std::collections::HashSet<(u32, u16)>);

    #[pg_guard]
    unsafe extern "C-unwind" fn is_dead(tid: pg_sys::ItemPointer, state: *mut core::ffi::c_void) -> bool {
        // SAFETY: `state` is the Dead passed below; `tid` is a valid item pointer.
        let (dead, r) = unsafe { (&*(state as *const Dead), crate::storage::tuple::from_tid(&*tid)) };
        dead.0.contains(&(r.block, r.offset))
    }

    #[pg_test]
    fn bulk_delete_marks_elements_without_rows_deleted() {
        random_table("vac", 500, 4);
        Spi::run("CREATE INDEX vac_idx ON vac USING hnsw (v vector_l2_ops)").unwrap();
        // VACUUM cannot run inside the test's transaction, so call ambulkdelete as VACUUM does,
        // with a callback that reports the rows with even ids dead.
        let ctids: Vec<(u32, u16)> = Spi::connect(|c| {
            c.select("SELECT (ctid::text::point)[0]::int8, (ctid::text::point)[1]::int4 FROM vac WHERE id % 2 = 0", None, &[])
                .unwrap()
                .map(|r| (r.get::<i64>(1).unwrap().unwrap() as u32, r.get::<i32>(2).unwrap().unwrap() as u16))
                .collect()
        });
        assert_eq!(ctids.len(), 250);
        let dead = Dead(ctids.into_iter().collect());
        let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'vac_idx'::regclass::oid").unwrap().unwrap();
        // SAFETY: the index is opened and closed here; the info struct outlives the call.
        let stats = unsafe {
            let rel = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let mut info: pg_sys::IndexVacuumInfo = core::mem::zeroed();
            info.index = rel;
            info.num_heap_tuples = 500.0;
            info.strategy = core::ptr::null_mut();
            let stats = crate::am::vacuum::ambulkdelete(&mut info, core::ptr::null_mut(), Some(is_dead), &dead as *const Dead as *mut _);
            pg_sys::index_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            *stats
        };
        assert_eq!((stats.tuples_removed, stats.num_index_tuples), (250.0, 250.0));
        let report = check_index("vac_idx");
        assert!(report.ends_with("OK"), "{report}");
        // Deleted, repaired around, and freed for reuse.
        assert!(report.contains("500 elements (250 deleted, 250 of them free), 250 heap TIDs"), "{report}");
        // Deleted elements still route the search but never come back (their heap rows still
        // exist here, so a returned one would show).
        Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL hnsw.ef_search = 500").unwrap();
        let ids = Spi::get_one::<Vec<i32>>("SELECT array_agg(id) FROM (SELECT id FROM vac ORDER BY v <-> '[0.5,0.5,0.5,0.5]' LIMIT 300) s")
            .unwrap()
            .unwrap();
        assert_eq!(ids.len(), 250);
        assert!(ids.iter().all(|id| id % 2 == 1), "{ids:?}");
    }

    #[pg_test]
    fn scans_return_nearest_first() {
        random_table("near", 300, 3);
        Spi::run("CREATE INDEX near_idx ON near USING hnsw (v vector_l2_ops)").unwrap();
        Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL hnsw.ef_search = 300").unwrap();
        let got = Spi::get_one::<Vec<i32>>("SELECT array_agg(id) FROM (SELECT id FROM near ORDER BY v <-> '[0.5,0.5,0.5]' LIMIT 20) s")
            .unwrap()
            .unwrap();
        Spi::run("SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = on").unwrap();
        let want = Spi::get_one::<Vec<i32>>("SELECT array_agg(id) FROM (SELECT id FROM near ORDER BY v <-> '[0.5,0.5,0.5]' LIMIT 20) s")
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
    }

    #[pg_test]
    fn node_tuple_round_trip() {
        let (m, level) = (3, 2);
        let mut buf = Vec::new();
        let vref = ItemRef::new(7, 3);
        let tid = ItemRef::new(70000, 12);
        {
            let mut t = NodeTupleMut::init(&mut buf, m, level, vref, tid);
            t.set_neighbors(0, &[ItemRef::new(1, 1), ItemRef::new(2, 2)]);
            t.set_neighbors(2, &[ItemRef::new(9, 64)]);
            assert_eq!(t.as_ref().version(), 2);
        }
        assert_eq!(buf.len(), node_tuple_size(m, level));
        let t = NodeTuple::parse(&buf, m);
        assert_eq!((t.level(), t.vector(), t.heap_tid_count()), (level, vref, 1));
        assert_eq!(t.neighbors(0).collect::<Vec<_>>(), vec![ItemRef::new(1, 1), ItemRef::new(2, 2)]);
        assert_eq!(t.neighbors(1).count(), 0);
        assert_eq!(t.neighbors(2).collect::<Vec<_>>(), vec![ItemRef::new(9, 64)]);
        assert_eq!(t.neighbors(3).count(), 0);
        let first = t.heap_tids().next().unwrap();
        assert_eq!(crate::storage::tuple::from_tid(&first), tid);
        let mut t = NodeTupleMut::edit(&mut buf, m);
        assert_eq!(t.retain_heap_tids(|x| crate::storage::tuple::from_tid(x) != tid), 1);
        assert_eq!(t.as_ref().heap_tid_count(), 0);
    }

    /// A node tuple's neighbour codes follow its list: a list change moves each kept entry's
    /// code with it, and new entries have none (an insert or VACUUM writing a list does not
    /// know the new neighbours' codes).
    #[pg_test]
    fn neighbor_codes_follow_their_list_entries() {
        let (m, level, body_len) = (2, 1, 5);
        let (a, b, c, d) = (ItemRef::new(1, 1), ItemRef::new(2, 2), ItemRef::new(3, 3), ItemRef::new(4, 4));
        let node_of = |r: ItemRef| ItemRef::new(r.block + 100, r.offset);
        let body_of = |r: ItemRef| vec![r.block as u8; body_len];
        let mut buf = Vec::new();
        {
            let mut t = NodeTupleMut::init_with_codes(&mut buf, m, level, ItemRef::new(7, 3), ItemRef::new(9, 1), body_len);
            t.set_neighbors(0, &[a, b, c]);
            t.set_neighbors(1, &[d]);
            for (k, r) in [a, b, c].into_iter().enumerate() {
                t.set_code(k, node_of(r), &body_of(r));
            }
        }
        assert_eq!(buf.len(), node_tuple_size(m, level) + codes_size(m, body_len));
        let kept = |buf: &[u8]| -> Vec<Option<(ItemRef, Vec<u8>)>> {
            let t = NodeTuple::parse(buf, m);
            let codes = t.codes().expect("has codes");
            assert_eq!(codes.body_len(), body_len);
            (0..t.neighbors(0).count()).map(|k| codes.get(k).map(|(n, b)| (n, b.to_vec()))).collect()
        };
        assert_eq!(kept(&buf), vec![Some((node_of(a), body_of(a))), Some((node_of(b), body_of(b))), Some((node_of(c), body_of(c)))]);
        // b is replaced by d, c moves to where b was: c's code moves with it, d has none.
        NodeTupleMut::edit(&mut buf, m).set_neighbors(0, &[a, c, d]);
        assert_eq!(kept(&buf), vec![Some((node_of(a), body_of(a))), Some((node_of(c), body_of(c))), None]);
        // Shortened and grown again: a dropped entry's code is gone for good.
        NodeTupleMut::edit(&mut buf, m).set_neighbors(0, &[a]);
        NodeTupleMut::edit(&mut buf, m).set_neighbors(0, &[c, a]);
        assert_eq!(kept(&buf), vec![None, Some((node_of(a), body_of(a)))]);
        // Upper layers have no codes and do not touch them.
        NodeTupleMut::edit(&mut buf, m).set_neighbors(1, &[b]);
        assert_eq!(kept(&buf)[1], Some((node_of(a), body_of(a))));
        // A reused tuple (reset for a new element) keeps no codes at all.
        NodeTupleMut::edit(&mut buf, m).reset(0, ItemRef::new(8, 1), ItemRef::new(9, 2));
        assert!(NodeTuple::parse(&buf, m).codes().is_none());
    }

    #[pg_test(error = "hnsw index tuple is corrupted: neighbour list does not fit its node tuple")]
    fn node_tuple_rejects_overlong_lists() {
        let mut buf = Vec::new();
        let mut t = NodeTupleMut::init(&mut buf, 2, 0, ItemRef::new(1, 1), ItemRef::new(1, 1));
        let five: Vec<ItemRef> = (1..=5).map(|i| ItemRef::new(i, 1)).collect();
        t.set_neighbors(0, &five);
    }

    #[pg_test(error = "\"g2_pkey\" is not an hnsw index")]
    fn check_rejects_other_indexes() {
        random_table("g2", 10, 2);
        check_index("g2_pkey");
    }
}
