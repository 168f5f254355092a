//! `#[pg_test]`s for issue 9's concurrency and crash edges, made deterministic by calling the
//! access method's steps in the order a race would interleave them.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use crate::am::filter::Attrs;
    use crate::am::insert::insert_vector;
    use crate::storage::buffer::{Buffer, Lock, Logging, Wal};
    use crate::storage::element::Elements;
    use crate::storage::page::{ItemRef, PAGE_DATA};
    use crate::storage::tuple::{from_tid, node_tuples, set_vector_node, NodeTuple, VectorTuple, FLAG_DELETED, KIND_VECTOR};
    use crate::storage::Meta;

    fn index_oid(name: &str) -> pg_sys::Oid {
        Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid")).unwrap().unwrap()
    }

    /// Run `f` on the index, opened as VACUUM and inserts open it.
    fn with_index<T>(name: &str, f: impl FnOnce(pg_sys::Relation) -> T) -> T {
        let oid = index_oid(name);
        // SAFETY: opened and closed here (an ERROR in between closes it at abort).
        unsafe {
            let rel = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let out = f(rel);
            pg_sys::index_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            out
        }
    }

    fn ctids(query: &str) -> Vec<ItemRef> {
        Spi::connect(|c| {
            c.select(&format!("SELECT (ctid::text::point)[0]::int8, (ctid::text::point)[1]::int4 FROM ({query}) s"), None, &[])
                .unwrap()
                .map(|r| ItemRef::new(r.get::<i64>(1).unwrap().unwrap() as u32, r.get::<i32>(2).unwrap().unwrap() as u16))
                .collect()
        })
    }

    fn nearest(table: &str, q: &str) -> Option<i32> {
        Spi::get_one::<i32>(&format!("SET LOCAL enable_seqscan = off; SELECT id FROM {table} ORDER BY v <-> '{q}' LIMIT 1")).unwrap()
    }

    /// Item 10: VACUUM found an element's TID lists empty; before it marks the element
    /// deleted, an insert of an equal vector (which saw the inline places full) adds its row to
    /// one of those lists. VACUUM must leave the element alive, or the row is lost until
    /// REINDEX.
    #[pg_test]
    fn vacuum_spares_an_element_whose_list_gained_a_row() {
        Spi::run("CREATE TABLE dup (id int, v vector(2))").unwrap();
        Spi::run("INSERT INTO dup SELECT g, ARRAY[g, g]::vector FROM generate_series(1, 10) g WHERE g <> 5").unwrap();
        // One element: three rows inline, two in a TID list.
        Spi::run("INSERT INTO dup SELECT 100 + g, '[5,5]' FROM generate_series(1, 5) g").unwrap();
        Spi::run("CREATE INDEX dup_idx ON dup USING hnsw (v vector_l2_ops)").unwrap();
        let dead: std::collections::HashSet<ItemRef> = ctids("SELECT ctid FROM dup WHERE id > 100").into_iter().collect();
        let last = ctids("SELECT ctid FROM dup WHERE id = 105")[0];
        with_index("dup_idx", |rel| {
            let meta = Meta::read(rel);
            // VACUUM's first phase with every [5,5] row dead: the element has no row left.
            let (mut scan, rowless) =
                crate::am::vacuum::find_rowless(rel, &meta, core::ptr::null_mut(), |tid| dead.contains(&from_tid(tid)));
            assert_eq!(rowless.len(), 1);
            let node = rowless[0].0;
            let head = {
                let buf = Buffer::read(rel, node.block, Lock::Share);
                NodeTuple::parse(buf.page().item(node.offset).unwrap(), meta.m as usize).overflow()
            };
            assert!(head.is_valid());
            // The concurrent insert (its row is 105 again, alive after all).
            let added = crate::am::insert::add_to_lists(rel, &meta, node, head, last, Logging::Wal);
            assert_eq!(added, Some(true));
            crate::am::vacuum::mark_rowless(rel, &meta, &mut scan, &rowless);
        });
        assert_eq!(nearest("dup", "[5,5]"), Some(105));
        // An insert that comes after the element is marked gets an element of its own.
        with_index("dup_idx", |rel| {
            let meta = Meta::read(rel);
            let (mut scan, rowless) = crate::am::vacuum::find_rowless(rel, &meta, core::ptr::null_mut(), |tid| from_tid(tid) == last);
            assert_eq!(rowless.len(), 1);
            crate::am::vacuum::mark_rowless(rel, &meta, &mut scan, &rowless);
            let node = rowless[0].0;
            let head = {
                let buf = Buffer::read(rel, node.block, Lock::Share);
                NodeTuple::parse(buf.page().item(node.offset).unwrap(), meta.m as usize).overflow()
            };
            assert_eq!(crate::am::insert::add_to_lists(rel, &meta, node, head, last, Logging::Wal), Some(false));
        });
    }

    /// Item 11: two sessions insert the first rows of an index on a column without declared
    /// dimensions. The second read the meta page before the first fixed the dimensions, so it
    /// checked its vector against none: the insert itself must catch the mismatch.
    #[pg_test(error = "expected 3 dimensions, not 4")]
    fn concurrent_first_inserts_cannot_mix_dimensions() {
        Spi::run("CREATE TABLE nodim (v vector)").unwrap();
        Spi::run("CREATE INDEX nodim_idx ON nodim USING hnsw (v vector_l2_ops)").unwrap();
        Spi::run("INSERT INTO nodim VALUES ('[1,2,3]')").unwrap();
        with_index("nodim_idx", |rel| {
            insert_vector::<f32>(rel, &[1.0, 2.0, 3.0, 4.0], &Attrs::default(), ItemRef::new(0, 2), Logging::Wal)
        });
    }

    /// The same after every row is gone: the index has no entry point, but its dimensions
    /// stay fixed.
    #[pg_test(error = "expected 3 dimensions, not 4")]
    fn first_insert_after_emptying_keeps_the_dimensions() {
        Spi::run("CREATE TABLE nodim2 (v vector)").unwrap();
        Spi::run("CREATE INDEX nodim2_idx ON nodim2 USING hnsw (v vector_l2_ops)").unwrap();
        Spi::run("INSERT INTO nodim2 VALUES ('[1,2,3]')").unwrap();
        with_index("nodim2_idx", |rel| {
            let meta = Meta::read(rel);
            let (mut scan, rowless) = crate::am::vacuum::find_rowless(rel, &meta, core::ptr::null_mut(), |_| true);
            crate::am::vacuum::mark_rowless(rel, &meta, &mut scan, &rowless);
            Meta::update(rel, Logging::Wal, |m| {
                m.entry_vector = ItemRef::INVALID;
                m.entry_node = ItemRef::INVALID;
                true
            });
            insert_vector::<f32>(rel, &[1.0, 2.0, 3.0, 4.0], &Attrs::default(), ItemRef::new(0, 2), Logging::Wal)
        });
    }

    /// Item 12: a vector tuple whose node ref was never set (a crash between the two writes of
    /// an element too large for one page) is skipped by every walk: never followed (block
    /// 0xFFFFFFFF would extend the relation), never returned; the checker reports it.
    #[pg_test]
    fn walks_skip_a_vector_without_its_node() {
        Spi::run("CREATE TABLE broken (id int, v vector(2))").unwrap();
        Spi::run("INSERT INTO broken SELECT g, ARRAY[g, g % 7]::vector FROM generate_series(1, 200) g").unwrap();
        Spi::run("CREATE INDEX broken_idx ON broken USING hnsw (v vector_l2_ops) WITH (m = 4, ef_construction = 16)").unwrap();
        let size = || Spi::get_one::<i64>("SELECT pg_relation_size('broken_idx')").unwrap().unwrap();
        let before = size();
        // Unset the node ref of some element's vector tuple (not the entry point's).
        let victim: Vec<f32> = with_index("broken_idx", |rel| {
            let meta = Meta::read(rel);
            // SAFETY: the index is open.
            let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) };
            for block in 1..nblocks {
                let buf = Buffer::read(rel, block, Lock::Exclusive);
                let page = buf.page();
                if page.is_new() || page.opaque().kind != PAGE_DATA {
                    continue;
                }
                for off in 1..=page.max_offset() {
                    let r = ItemRef::new(block, off);
                    let Some(data) = page.item(off) else { continue };
                    if data[0] != KIND_VECTOR || r == meta.entry_vector {
                        continue;
                    }
                    let values = VectorTuple::parse(data).values::<f32>(2).to_vec();
                    Wal::edit(rel, &buf, Logging::Wal, false, |page| set_vector_node(page.item_mut(off).unwrap(), ItemRef::INVALID));
                    return values;
                }
            }
            panic!("no vector tuple found");
        });
        let q = format!("[{},{}]", victim[0], victim[1]);
        let victim_id = victim[0] as i32;
        // Searches near it: never its row, no error, no growth.
        Spi::run("SET LOCAL hnsw.ef_search = 200").unwrap();
        let got = nearest("broken", &q);
        assert!(got.is_some() && got != Some(victim_id), "{got:?}");
        let all = Spi::get_one::<i64>(&format!(
            "SET LOCAL enable_seqscan = off; SELECT count(*) FROM (SELECT id FROM broken ORDER BY v <-> '{q}' LIMIT 300) s"
        ))
        .unwrap()
        .unwrap();
        assert!((190..=199).contains(&all), "{all}");
        assert_eq!(size(), before);
        // Inserts next to it (they measure it and re-select full lists holding it) and a
        // VACUUM that repairs around deleted neighbours of it.
        Spi::run(&format!("INSERT INTO broken SELECT 1000 + g, '{q}'::vector + ARRAY[g * 0.01, 0]::vector FROM generate_series(1, 20) g"))
            .unwrap();
        let dead: std::collections::HashSet<ItemRef> =
            ctids("SELECT ctid FROM broken WHERE id % 3 = 0 AND id < 1000").into_iter().collect();
        with_index("broken_idx", |rel| {
            // SAFETY: as VACUUM calls it, with a callback and its state that outlive the call.
            unsafe {
                let mut info: pg_sys::IndexVacuumInfo = core::mem::zeroed();
                info.index = rel;
                info.strategy = core::ptr::null_mut();
                let state = &dead as *const std::collections::HashSet<ItemRef> as *mut core::ffi::c_void;
                let stats = crate::am::vacuum::ambulkdelete(&mut info, core::ptr::null_mut(), Some(is_dead), state);
                crate::am::vacuum::amvacuumcleanup(&mut info, stats);
            }
        });
        let got = nearest("broken", &q);
        assert!(got.is_some() && got != Some(victim_id), "{got:?}");
        let report = Spi::get_one::<String>("SELECT hnsw_index_check('broken_idx')").unwrap().unwrap();
        assert!(report.contains("PROBLEM"), "{report}");
        // The relation grew only by what the inserts wrote, not to block 0xFFFFFFFF's page.
        assert!(size() < before + 64 * 8192, "{} -> {}", before, size());
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn is_dead(tid: pg_sys::ItemPointer, state: *mut core::ffi::c_void) -> bool {
        // SAFETY: `state` is the set passed to ambulkdelete above; `tid` is a valid item pointer.
        let (dead, r) = unsafe { (&*(state as *const std::collections::HashSet<ItemRef>), from_tid(&*tid)) };
        dead.contains(&r)
    }

    /// A forced link (an insert every neighbour turned down) gives up the entry of a full list
    /// that nothing else links to, and the new element adopts that entry so that it stays
    /// reachable. An entry read afresh may be an element a VACUUM marked deleted before this
    /// insert began (so its barrier did not wait for it), and that VACUUM's repair may already
    /// have passed the new element: adopting it left a live element linking to it once it was
    /// freed (test_crash sq8_3072, once: "link to (430,1), a freed element"). A deleted element
    /// is never adopted; a live one still is.
    #[pg_test]
    fn a_forced_link_never_adopts_a_deleted_element() {
        use crate::am::insert::Connect;
        use crate::storage::element::Elements;
        use crate::storage::quant::Codec;
        use crate::storage::tuple::{node_tuples, FLAG_DELETED};

        Spi::run("CREATE TABLE adopt (id int, v vector(2))").unwrap();
        Spi::run("INSERT INTO adopt SELECT g, ARRAY[g, g % 5]::vector FROM generate_series(1, 40) g").unwrap();
        Spi::run("CREATE INDEX adopt_idx ON adopt USING hnsw (v vector_l2_ops) WITH (m = 4, ef_construction = 16)").unwrap();
        with_index("adopt_idx", |rel| {
            let meta = Meta::read(rel);
            let m = meta.m as usize;
            // (node ref, vector ref) of every element.
            let mut elements = Vec::new();
            // SAFETY: the index is open.
            let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) };
            for block in 1..nblocks {
                let buf = Buffer::read(rel, block, Lock::Share);
                elements.extend(node_tuples(buf.page(), m).map(|(off, t)| (ItemRef::new(block, off), t.vector())));
            }
            let els = Elements::new(rel, m, Logging::Wal);
            let list = |node: ItemRef| els.read_list(node, 0).unwrap().refs;
            let (n_node, n_vec) = elements[0];
            let outside: Vec<(ItemRef, ItemRef)> =
                elements.iter().copied().filter(|&(_, v)| v != n_vec && !list(n_node).contains(&v)).collect();
            let ((x_node, x_vec), (y_node, y_vec)) = (outside[0], outside[1]);
            els.mark(&[(x_node, x_vec, None)], FLAG_DELETED, |_, _| true, || {});
            let vector: Vec<f32> = {
                let buf = Buffer::read(rel, n_vec.block, Lock::Share);
                VectorTuple::parse(buf.page().item(n_vec.offset).unwrap()).values::<f32>(2).to_vec()
            };
            let codec = Codec::load(rel, &meta);
            let connect = Connect::<f32>::new(rel, &meta, &codec, Logging::Wal, &vector, n_node);
            assert!(!connect.adopt_if_live(x_vec, x_node, 0));
            assert!(!list(n_node).contains(&x_vec));
            assert!(connect.adopt_if_live(y_vec, y_node, 0));
            assert!(list(n_node).contains(&y_vec));
        });
    }

    /// VACUUM marks an element deleted before it removes the links to it; a scan in between
    /// meets it through the codes its neighbours keep (`neighbor_codes`), which do not say it
    /// is deleted. Re-ranking reads its tuple and leaves it out, although its row is still
    /// visible here (only the index marked it).
    #[pg_test]
    fn a_deleted_element_met_through_a_kept_code_is_not_returned() {
        Spi::run("CREATE TABLE dk (id int, v vector(4))").unwrap();
        Spi::run("INSERT INTO dk SELECT i, ARRAY[i, i % 7, 0, 1]::vector FROM generate_series(1, 300) i").unwrap();
        Spi::run("CREATE INDEX dk_idx ON dk USING hnsw (v vector_l2_ops) WITH (quantization = rabitq1, neighbor_codes = on)").unwrap();
        assert_eq!(nearest("dk", "[150,3,0,1]"), Some(150));
        let target = ctids("SELECT ctid FROM dk WHERE id = 150")[0];
        let linked_by_codes = with_index("dk_idx", |rel| {
            let m = Meta::read(rel).m as usize;
            let mut element = None;
            let mut kept = 0;
            for pass in 0..2 {
                for block in 1..crate::storage::element::nblocks(rel) {
                    let buf = Buffer::read(rel, block, Lock::Share);
                    for (off, t) in node_tuples(buf.page(), m) {
                        if pass == 0 && t.heap_tids().any(|x| from_tid(&x) == target) {
                            element = Some((ItemRef::new(block, off), t.vector()));
                        }
                        if let (1, Some((_, v)), Some(codes)) = (pass, element, t.codes()) {
                            kept += t.neighbors(0).enumerate().filter(|&(k, r)| r == v && codes.get(k).is_some()).count();
                        }
                    }
                }
            }
            let (node, vector) = element.expect("row 150 has an element");
            let els = Elements::new(rel, m, Logging::Wal);
            assert_eq!(els.mark(&[(node, vector, None)], FLAG_DELETED, |_, _| true, || {}).len(), 1);
            kept
        });
        assert!(linked_by_codes > 0, "no neighbour keeps the element's code: the test would not reach the path");
        for ef in [1, 10, 40] {
            Spi::run(&format!("SET hnsw.ef_search = {ef}")).unwrap();
            let got = Spi::get_one::<Vec<i32>>(
                "SET LOCAL enable_seqscan = off; SELECT array_agg(id) FROM (SELECT id FROM dk ORDER BY v <-> '[150,3,0,1]' LIMIT 5) s",
            )
            .unwrap()
            .unwrap();
            assert!(!got.contains(&150) && got.len() == 5, "ef_search {ef}: {got:?}");
        }
    }
}
