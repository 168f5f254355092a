"""Index build behaviour that needs a second connection or real data: progress reporting,
cancellation, and builds that outgrow maintenance_work_mem."""

import os
import re
import threading
import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from test_recall import DSN, distances, load, read_idx, recall
from pgdb import fresh_database

DB = "hnsw_build_test"
DATA = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def big_table(dsn):
    """60k fashion-mnist rows: a build long enough to watch and to cancel."""
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", 60_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, v vector(784))")
        load(conn, "big", "vector", base)
        conn.execute("VACUUM ANALYZE big")
    return base


def test_progress_is_reported(dsn, big_table):
    seen = []
    done = threading.Event()

    def watch():
        with psycopg.connect(dsn, autocommit=True) as c:
            while not done.is_set():
                for row in c.execute(
                    "SELECT phase, tuples_total, tuples_done FROM pg_stat_progress_create_index"
                ):
                    seen.append(row)
                time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE INDEX big_idx ON big USING hnsw (v vector_l2_ops)")
            conn.execute("DROP INDEX big_idx")
    finally:
        done.set()
        t.join()
    phases = {p for p, _, _ in seen}
    assert "building index: building graph" in phases, phases
    linking = [(total, n) for p, total, n in seen if p == "building index: building graph"]
    assert all(total == 60_000 for total, _ in linking), linking
    assert len({n for _, n in linking}) > 1, "tuples_done never moved while linking"


def test_cancel_stops_a_build_promptly(dsn, big_table):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '1500ms'")
        start = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("CREATE INDEX big_cancelled ON big USING hnsw (v vector_l2_ops)")
        elapsed = time.time() - start
        assert elapsed < 4.0, f"cancel took {elapsed:.1f}s"
        conn.execute("RESET statement_timeout")
        # The failed build left nothing behind, and the backend still works.
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'big_cancelled'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == 60_000


def test_build_beyond_maintenance_work_mem(dsn):
    """With too little memory for the graph the build says so and finishes on disk, and the
    index is as good as an in-memory build."""
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", 5_000)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", 50)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE small_mem (id int PRIMARY KEY, v vector(784))")
        load(conn, "small_mem", "vector", base)
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SET maintenance_work_mem = '1MB'")
        conn.execute("CREATE INDEX ON small_mem USING hnsw (v vector_l2_ops)")
        assert any("no longer fits into maintenance_work_mem" in n for n in notices), notices
        assert conn.execute("SELECT count(*) FROM (SELECT id FROM small_mem ORDER BY v <-> %s LIMIT 10) s", (queries[0],)).fetchone()[0] == 10
        r = recall(conn, "small_mem", "vector", "<->", "l2", base, queries)
        assert r >= 0.99, r


def temp_files(conn):
    return conn.execute("SELECT count(*) FROM pg_ls_tmpdir()").fetchone()[0]


def test_build_with_vectors_in_a_temporary_file(dsn):
    """Room for the links but not the vectors (5,000 784-d rows: 16 MB of vectors, about 3 MB
    of links and bookkeeping): the vectors move to a temporary file, the whole graph is still
    built in memory (no on-disk inserts), the file is gone afterwards, and the index is as good
    as an in-memory build."""
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", 5_000)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", 50)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE spill_mem (id int PRIMARY KEY, v vector(784))")
        load(conn, "spill_mem", "vector", base)
        # Rows with the same vector still share an element when the first copy is in the file.
        conn.execute("INSERT INTO spill_mem SELECT 5000 + id / 10, v FROM spill_mem WHERE id % 10 = 0")
        base = np.vstack([base, base[::10]])
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SET maintenance_work_mem = '8MB'")
        conn.execute("CREATE INDEX spill_mem_idx ON spill_mem USING hnsw (v vector_l2_ops)")
        assert any("vectors no longer fit into maintenance_work_mem" in n for n in notices), notices
        assert not any("graph no longer fits" in n for n in notices), notices
        assert temp_files(conn) == 0
        report = conn.execute("SELECT hnsw_index_check('spill_mem_idx')").fetchone()[0]
        assert report.rstrip().endswith("OK"), report
        assert "5000 elements" in report and "5500 heap TIDs" in report, report
        r = recall(conn, "spill_mem", "vector", "<->", "l2", base, queries)
        assert r >= 0.99, r
        # A duplicate comes back with its original under the same element.
        ids = {row[0] for row in conn.execute("SELECT id FROM spill_mem ORDER BY v <-> %s LIMIT 2", (base[20],))}
        assert ids == {20, 5002}, ids


def test_cancelled_build_with_vectors_in_a_temporary_file(dsn, big_table):
    """A build cancelled while its vectors are in a temporary file (being written or mapped)
    leaves no file behind, and the backend goes on."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SET maintenance_work_mem = '32MB'")
        for timeout in ("300ms", "1500ms"):
            notices.clear()
            conn.execute(f"SET statement_timeout = '{timeout}'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("CREATE INDEX big_spill_cancelled ON big USING hnsw (v vector_l2_ops)")
            conn.execute("RESET statement_timeout")
            # The cancel came after the vectors had moved to the file.
            assert any("vectors no longer fit" in n for n in notices), (timeout, notices)
            assert temp_files(conn) == 0
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'big_spill_cancelled'").fetchone()[0] == 0


def test_temp_file_limit_stops_a_build_with_an_error(dsn, big_table):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '16MB'")
        conn.execute("SET client_min_messages = warning")
        conn.execute("SET temp_file_limit = '2MB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
            conn.execute("CREATE INDEX big_limited ON big USING hnsw (v vector_l2_ops)")
        conn.execute("RESET temp_file_limit")
        assert temp_files(conn) == 0
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == 60_000


def test_build_with_a_quarter_of_the_memory_it_needs(dsn, big_table):
    """Issue 13's criterion, scaled down (60k 784-d rows, m = 16): the in-memory build reports
    what it held; with a quarter of that as maintenance_work_mem the graph is still built in
    memory (vectors in a temporary file), the backend stays within the setting plus the
    documented constant, and recall is that of the in-memory build. (Build times are in the
    README, measured at 1M rows.)"""
    from test_memory import BUILD_CONSTANT, PeakAnon

    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", 100)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        messages = []
        conn.add_notice_handler(lambda d: messages.append(d.message_primary))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET client_min_messages = debug1")
        conn.execute("CREATE INDEX big_full ON big USING hnsw (v vector_l2_ops)")
        conn.execute("SET client_min_messages = notice")
        held = [int(m.group(1)) for m in (re.search(r"; (\d+) MB held", x) for x in messages) if m]
        assert len(held) == 1 and held[0] > 150, messages
        full = [recall(conn, "big", "vector", "<->", "l2", big_table, queries, ef=ef) for ef in (20, 40)]
        conn.execute("DROP INDEX big_full")

        quarter = held[0] // 4
        messages.clear()
    # A new backend, so that nothing the first build left in its allocator hides growth.
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.add_notice_handler(lambda d: messages.append(d.message_primary))
        conn.execute(f"SET maintenance_work_mem = '{quarter}MB'")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with PeakAnon(pid) as peak:
            conn.execute("CREATE INDEX big_quarter ON big USING hnsw (v vector_l2_ops)")
        assert any("vectors no longer fit" in x for x in messages), messages
        assert not any("graph no longer fits" in x for x in messages), messages
        assert peak.grew < (quarter << 20) + BUILD_CONSTANT, f"grew {peak.grew >> 20} MB with maintenance_work_mem {quarter} MB"
        part = [recall(conn, "big", "vector", "<->", "l2", big_table, queries, ef=ef) for ef in (20, 40)]
        conn.execute("DROP INDEX big_quarter")
        for f, p in zip(full, part):
            assert p >= f - 0.01, (full, part)
