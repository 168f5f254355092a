"""Deletes, updates, duplicates and VACUUM on real data (fashion-mnist): recall must not decay,
freed space must be reused, dead rows must not crowd out live ones, and the on-disk graph must
stay consistent (hnsw_index_check) after every step."""

import threading
import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from test_recall import DATA, DSN, load, read_idx
from pgdb import fresh_database

DB = "hnsw_vacuum_test"
ROWS = 20_000


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def data():
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", 2 * ROWS)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", 100)
    return base, queries


def check(conn, index):
    report = conn.execute("SELECT hnsw_index_check(%s)", (index,)).fetchone()[0]
    assert report.endswith("OK"), report.replace("\n", " | ")
    return report


def recall(conn, table, vectors, alive, queries, ef, k=10):
    """Recall@k against the exact answer over the rows alive (ids are row numbers)."""
    conn.execute(f"SET hnsw.ef_search = {ef}")
    conn.execute("SET enable_seqscan = off")
    ids = np.nonzero(alive)[0]
    hits, rows = 0, 0
    for q in queries:
        d = np.sqrt(((vectors[ids] - q) ** 2).sum(axis=1))
        kth = np.sort(d)[k - 1]
        got = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY v <-> %s LIMIT {k}", (q,))]
        rows += len(got)
        dist = {i: np.sqrt(((vectors[i] - q) ** 2).sum()) for i in got}
        hits += sum(1 for i in got if alive[i] and dist[i] <= kth * (1 + 1e-6) + 1e-6)
    conn.execute("RESET enable_seqscan")
    return hits / (len(queries) * k), rows / len(queries)


def size(conn, index):
    return conn.execute("SELECT pg_relation_size(%s)", (index,)).fetchone()[0]


def test_delete_half_then_vacuum_keeps_recall_and_reuses_space(dsn, data):
    base, queries = data
    vectors = base[:ROWS]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE half (id int PRIMARY KEY, v vector(784))")
        load(conn, "half", "vector", vectors)
        # A narrow search (ef_search 10), so that recall is below 1 and a decay would show.
        conn.execute("CREATE INDEX half_idx ON half USING hnsw (v vector_l2_ops)")
        alive = np.ones(ROWS, bool)
        before, _ = recall(conn, "half", vectors, alive, queries, ef=10)
        full_size = size(conn, "half_idx")

        dead = np.random.default_rng(7).choice(ROWS, ROWS // 2, replace=False)
        conn.execute("DELETE FROM half WHERE id = ANY(%s)", (dead.tolist(),))
        alive[dead] = False
        conn.execute("VACUUM half")
        report = check(conn, "half_idx")
        assert f"({ROWS // 2} deleted, {ROWS // 2} of them free)" in report, report
        after, rows = recall(conn, "half", vectors, alive, queries, ef=10)
        print(f"recall@10 before {before:.4f}, after deleting half and VACUUM {after:.4f}")
        assert rows == 10
        assert after >= before - 0.01, (before, after)

        # The same number of rows again: they take the freed places; the index does not grow.
        with conn.cursor().copy("COPY half (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in dead:
                copy.write_row((int(i), vectors[i]))
        alive[dead] = True
        assert size(conn, "half_idx") == full_size
        check(conn, "half_idx")
        again, _ = recall(conn, "half", vectors, alive, queries, ef=10)
        print(f"recall@10 after re-inserting them {again:.4f}")
        assert again >= before - 0.01, (before, again)


def test_dead_rows_do_not_crowd_out_live_ones(dsn, data):
    base, queries = data
    vectors = base[:5000]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE dead (id int PRIMARY KEY, v vector(784)) WITH (autovacuum_enabled = off)")
        load(conn, "dead", "vector", vectors)
        conn.execute("CREATE INDEX dead_idx ON dead USING hnsw (v vector_l2_ops)")
        # 95% of the rows die and VACUUM has not run: the index still holds them all.
        alive = np.zeros(len(vectors), bool)
        alive[::20] = True
        conn.execute("DELETE FROM dead WHERE id % 20 <> 0")
        r, rows = recall(conn, "dead", vectors, alive, queries[:30], ef=40)
        print(f"95% dead, not vacuumed: {rows:.1f} rows per query, recall@10 {r:.4f}")
        assert rows == 10
        assert r >= 0.95
        # With iterative scans off the first ef_search results are all there is.
        conn.execute("SET hnsw.iterative_scan = off")
        _, rows_off = recall(conn, "dead", vectors, alive, queries[:30], ef=40)
        conn.execute("RESET hnsw.iterative_scan")
        assert rows_off < 10


def test_duplicates_share_one_element(dsn, data):
    base, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE dup (id int PRIMARY KEY, v vector(784))")
        load(conn, "dup", "vector", base[:2000])
        same = base[5000]
        # 500 copies before the build and 700 after it (inline TIDs, then TID lists).
        conn.execute("INSERT INTO dup SELECT 100000 + g, %s FROM generate_series(1, 500) g", (same,))
        conn.execute("CREATE INDEX dup_idx ON dup USING hnsw (v vector_l2_ops)")
        conn.execute("INSERT INTO dup SELECT 200000 + g, %s FROM generate_series(1, 700) g", (same,))
        report = check(conn, "dup_idx")
        assert "2001 elements" in report and "3200 heap TIDs" in report, report
        conn.execute("SET enable_seqscan = off")
        got = conn.execute("SELECT count(*) FROM (SELECT id FROM dup ORDER BY v <-> %s LIMIT 1200) s WHERE id >= 100000", (same,)).fetchone()[0]
        assert got == 1200
        # The neighbours of the duplicated vector are not crowded out by its copies.
        ids = [r[0] for r in conn.execute("SELECT id FROM dup ORDER BY v <-> %s LIMIT 1210", (same,))]
        assert len([i for i in ids if i < 100000]) == 10
        conn.execute("DELETE FROM dup WHERE id >= 200000 OR id % 2 = 0")
        conn.execute("VACUUM dup")
        report = check(conn, "dup_idx")
        # Left: the odd ids below 2000, and the odd copies made before the build.
        assert "1250 heap TIDs" in report, report
        got = conn.execute("SELECT count(*) FROM (SELECT id FROM dup ORDER BY v <-> %s LIMIT 2000) s WHERE id >= 100000", (same,)).fetchone()[0]
        assert got == 250


def test_updates_keep_recall(dsn, data):
    base, queries = data
    vectors = base[:ROWS].copy()
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE upd (id int PRIMARY KEY, v vector(784))")
        load(conn, "upd", "vector", vectors)
        conn.execute("CREATE INDEX upd_idx ON upd USING hnsw (v vector_l2_ops)")
        alive = np.ones(ROWS, bool)
        before, _ = recall(conn, "upd", vectors, alive, queries, ef=40)
        # Half of the rows get another image (an UPDATE is a delete plus an insert).
        changed = np.random.default_rng(3).choice(ROWS, ROWS // 2, replace=False)
        with conn.cursor() as cur:
            cur.executemany("UPDATE upd SET v = %s WHERE id = %s", [(base[ROWS + j], int(i)) for j, i in enumerate(changed)])
        for j, i in enumerate(changed):
            vectors[i] = base[ROWS + j]
        unvacuumed, _ = recall(conn, "upd", vectors, alive, queries, ef=40)
        conn.execute("VACUUM upd")
        check(conn, "upd_idx")
        after, _ = recall(conn, "upd", vectors, alive, queries, ef=40)
        print(f"recall@10 before {before:.4f}, after updating half {unvacuumed:.4f}, after VACUUM {after:.4f}")
        assert min(unvacuumed, after) >= 0.95


def test_vacuum_progress_and_cancel(dsn, data):
    base, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE prog (id int PRIMARY KEY, v vector(784)) WITH (autovacuum_enabled = off)")
        load(conn, "prog", "vector", base[:ROWS])
        conn.execute("CREATE INDEX prog_idx ON prog USING hnsw (v vector_l2_ops)")
        conn.execute("DELETE FROM prog WHERE id % 3 = 0")

        # Cancelled midway, VACUUM leaves a consistent index that the next VACUUM finishes.
        conn.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("VACUUM prog")
        conn.execute("RESET statement_timeout")
        check(conn, "prog_idx")

        phases = set()
        done, ready = threading.Event(), threading.Event()

        def watch():
            with psycopg.connect(dsn, autocommit=True) as c:
                while not done.is_set():
                    for (phase,) in c.execute("SELECT phase FROM pg_stat_progress_vacuum"):
                        phases.add(phase)
                    ready.set()
                    time.sleep(0.01)

        t = threading.Thread(target=watch)
        t.start()
        # On a busy machine the watcher's connection can take longer than the phase lasts.
        assert ready.wait(60), "the watcher never polled"
        try:
            conn.execute("VACUUM prog")
        finally:
            done.set()
            t.join()
        assert "vacuuming indexes" in phases, phases
        report = check(conn, "prog_idx")
        assert f"{ROWS - len(range(0, ROWS, 3))} heap TIDs" in report, report
