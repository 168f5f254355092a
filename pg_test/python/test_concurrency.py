"""Concurrency: 8 clients on one indexed table for HNSW_EXT_CONCURRENCY_SECONDS (default 120) —
3 inserters (fashion-mnist training images not yet in the table; should they run out, they
start over under new ids), 2 deleters (random existing rows), 2 query clients (`ORDER BY v <-> q
LIMIT 10`, random test images) and one client running VACUUM in a loop. Any error in any client
fails the test (deadlock_timeout is 100 ms, so a deadlock would surface as an error quickly). At the end the graph must check OK, the table must
hold exactly initial + inserted - deleted rows, and recall@10 at ef_search 100 against exact
ground truth on the final content must be >= 0.95, and after a VACUUM the index must hold
exactly the table's heap TIDs.

Run twice: on a full-precision index, and (for half the time) on a `rabitq1` index, whose inserts
and VACUUM read full vectors for their neighbour choices while elements are freed and reused.

A server of its own on port 5485 (shared_buffers 256MB).
"""

import os
import random
import re
import threading
import time
import traceback

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pgcluster import Server
from test_recall import distances, read_idx
from pgdb import vacuum_until_clean

DATA = "/usr/share/datasets/fashion-mnist"
PORT = 5485
DURATION = float(os.environ.get("HNSW_EXT_CONCURRENCY_SECONDS", "120"))
INITIAL, TRAIN, TEST = 5000, 60_000, 10_000
INSERTERS, DELETERS, QUERIERS = 3, 2, 2
K, EF, RECALL_QUERIES, SAMPLE = 10, 100, 100, 2000
# Deleters keep to (inserted * DELETE_RATIO + DELETE_AHEAD) rows: the table churns hard (most
# deletes hit rows that were inserted during the test) but never shrinks below ~3500 rows.
DELETE_RATIO, DELETE_AHEAD = 0.5, 1500


@pytest.fixture(scope="module")
def data():
    if not os.path.exists(f"{DATA}/train-images-idx3-ubyte.gz"):
        pytest.fail("dataset-fashion-mnist is not installed (run .ci/setup or .ci/test)")
    return read_idx(f"{DATA}/train-images-idx3-ubyte.gz", TRAIN), read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", TEST)


@pytest.fixture(scope="module")
def server(request):
    srv = Server("concurrency", PORT)
    request.addfinalizer(srv.cleanup)
    srv.init().configure(shared_buffers="256MB", deadlock_timeout="100ms", log_lock_waits=True).start()
    return srv


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.inserted = 0
        self.deleted = 0
        self.queries = 0
        self.vacuums = 0
        self.errors = []
        self.stop = threading.Event()
        self.busy = {"insert": 0.0, "delete": 0.0, "query": 0.0, "vacuum": 0.0}

    def add(self, what, n=1, busy=0.0, kind=None):
        with self.lock:
            setattr(self, what, getattr(self, what) + n)
            if kind:
                self.busy[kind] += busy

    def fail(self, name, e):
        with self.lock:
            self.errors.append(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        self.stop.set()  # no point going on


def client(shared, name, dsn, body):
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            register_vector(conn)
            body(conn)
    except Exception as e:  # every error counts, deadlocks included
        shared.fail(name, e)


def inserter(shared, part, base):
    """Ids INITIAL + part, + INSERTERS, ...; the images not in the initial table, in order. Should
    they run out (a fast machine, a long run), they start over: the same images again under new
    ids, i.e. rows whose vector equals another row's (the index keeps those as one element with
    several heap TIDs)."""

    def body(conn):
        with conn.cursor() as cur:
            i = INITIAL + part
            while not shared.stop.is_set():
                image = INITIAL + (i - INITIAL) % (TRAIN - INITIAL)
                t = time.perf_counter()
                cur.execute("INSERT INTO t (id, v) VALUES (%s, %s)", (i, base[image]), prepare=True)
                shared.add("inserted", busy=time.perf_counter() - t, kind="insert")
                i += INSERTERS
    return body


def deleter(shared, seed):
    rng = random.Random(seed)

    def body(conn):
        ids = []
        with conn.cursor() as cur:
            while not shared.stop.is_set():
                with shared.lock:
                    ahead = shared.deleted >= shared.inserted * DELETE_RATIO + DELETE_AHEAD
                if ahead:
                    time.sleep(0.005)
                    continue
                if not ids:
                    ids = [r[0] for r in cur.execute("SELECT id FROM t")]
                    rng.shuffle(ids)
                    ids = ids[:200]  # refresh often: inserted rows become candidates too
                    continue
                i = ids.pop()
                t = time.perf_counter()
                cur.execute("DELETE FROM t WHERE id = %s", (i,), prepare=True)
                if cur.rowcount == 1:  # 0: the other deleter took it first
                    shared.add("deleted", busy=time.perf_counter() - t, kind="delete")
    return body


def querier(shared, seed, tests):
    rng = random.Random(seed)

    def body(conn):
        conn.execute("SET enable_seqscan = off")
        with conn.cursor() as cur:
            while not shared.stop.is_set():
                q = tests[rng.randrange(len(tests))]
                with shared.lock:
                    # A lower bound on the rows any snapshot taken now can see: deletes are
                    # counted after they commit, inserts only once they have.
                    floor = INITIAL + shared.inserted - shared.deleted - DELETERS
                t = time.perf_counter()
                ids = [r[0] for r in cur.execute("SELECT id FROM t ORDER BY v <-> %s LIMIT 10", (q,), prepare=True)]
                shared.add("queries", busy=time.perf_counter() - t, kind="query")
                if floor >= K:
                    assert len(ids) == K, f"query returned {len(ids)} rows ({ids}) from a table of >= {floor} rows"
                    assert len(set(ids)) == K, f"query returned a row twice: {ids}"
    return body


def vacuumer(shared, seed):
    rng = random.Random(seed)

    def body(conn):
        while not shared.stop.is_set():
            time.sleep(rng.uniform(0.05, 0.25))
            t = time.perf_counter()
            conn.execute("VACUUM t")
            shared.add("vacuums", busy=time.perf_counter() - t, kind="vacuum")
    return body


def recall_on_content(conn, queries):
    rows = conn.execute("SELECT id, v FROM t").fetchall()
    ids = np.array([r[0] for r in rows])
    base = np.array([r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1] for r in rows], dtype=np.float32)
    pos = {int(i): n for n, i in enumerate(ids)}
    conn.execute("SET enable_seqscan = off")
    conn.execute(f"SET hnsw.ef_search = {EF}")
    hits = 0
    for q in queries:
        got = [r[0] for r in conn.execute(f"SELECT id FROM t ORDER BY v <-> %s LIMIT {K}", (q,))]
        assert len(got) == K, got
        d = distances("l2", base, q)
        kth = np.sort(d)[K - 1]
        tol = 1e-6 * abs(kth) + 1e-6
        hits += sum(1 for i in got if d[pos[i]] <= kth + tol)
    conn.execute("RESET ALL")
    return hits / (len(queries) * K), len(rows)


def check_report(conn):
    report = conn.execute("SELECT hnsw_index_check('t_v_idx')").fetchone()[0]
    assert report.strip().splitlines()[-1] == "OK", report
    return report.splitlines()[0]


def heap_tids(shape):
    return int(re.search(r"(\d+) heap TIDs", shape).group(1))


def rows_not_found(conn, sample):
    """Rows that an index scan on their own vector does not return among the first 10 (a row
    repeating an image has twins at distance 0, hence 10 rather than 1). Printed only."""
    conn.execute("SET enable_seqscan = off")
    conn.execute(f"SET hnsw.ef_search = {EF}")
    missed = []
    with conn.cursor() as cur:
        for i, v in sample:
            got = [r[0] for r in cur.execute(f"SELECT id FROM t ORDER BY v <-> %s LIMIT {K}", (v,), prepare=True)]
            if i not in got:
                missed.append((i, got[:3]))
    conn.execute("RESET ALL")
    return missed


@pytest.mark.parametrize("quant", ["none", "rabitq1"])
def test_concurrent_clients(server, data, quant):
    """With `rabitq1`, inserts and VACUUM read full vectors for their neighbour choices while
    others free and reuse elements (half the duration)."""
    base, tests = data
    duration = DURATION if quant == "none" else DURATION / 2
    with server.connect() as conn:
        conn.execute("DROP EXTENSION IF EXISTS hnsw_ext CASCADE")
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute("CREATE EXTENSION hnsw_ext")
        register_vector(conn)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v vector(784))")
        with conn.cursor().copy("COPY t (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in range(INITIAL):
                copy.write_row((i, base[i]))
        conn.execute(f"CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops) WITH (quantization = {quant})")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT id FROM t ORDER BY v <-> %s LIMIT 10", (tests[0],)))
        assert "Index Scan using t_v_idx" in plan, plan

    shared = Shared()
    threads = []
    for p in range(INSERTERS):
        threads.append(threading.Thread(target=client, args=(shared, f"inserter{p}", server.dsn, inserter(shared, p, base))))
    for d in range(DELETERS):
        threads.append(threading.Thread(target=client, args=(shared, f"deleter{d}", server.dsn, deleter(shared, 100 + d))))
    for q in range(QUERIERS):
        threads.append(threading.Thread(target=client, args=(shared, f"query{q}", server.dsn, querier(shared, 200 + q, tests))))
    threads.append(threading.Thread(target=client, args=(shared, "vacuum", server.dsn, vacuumer(shared, 300))))

    print(f"\n{quant}: {len(threads)} clients for {duration:.0f} s")
    t0 = time.time()
    for t in threads:
        t.start()
    shared.stop.wait(duration)
    shared.stop.set()
    for t in threads:
        t.join(300)
        assert not t.is_alive(), f"a client is still running 300 s after the stop: {t}"
    elapsed = time.time() - t0

    wrapped = max(0, shared.inserted - (TRAIN - INITIAL))
    print(
        f"{elapsed:.0f} s: {shared.inserted} inserts ({shared.inserted / elapsed:.0f}/s over {INSERTERS} clients; "
        f"{wrapped} of them repeat an image), "
        f"{shared.deleted} deletes ({shared.deleted / elapsed:.0f}/s over {DELETERS}), "
        f"{shared.queries} queries ({shared.queries / elapsed:.0f}/s over {QUERIERS}), "
        f"{shared.vacuums} VACUUMs ({shared.busy['vacuum'] / max(shared.vacuums, 1):.2f} s each)"
    )
    assert not shared.errors, f"{len(shared.errors)} client error(s):\n" + "\n".join(shared.errors[:5])

    log = server.log_text()
    for bad in ("PANIC", "terminated by signal", "server process (PID"):
        assert bad not in log, f"server log has {bad!r}:\n" + "\n".join(l for l in log.splitlines() if bad in l)[:3000]

    with server.connect() as conn:
        register_vector(conn)
        shape = check_report(conn)
        count = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        expect = INITIAL + shared.inserted - shared.deleted
        assert count == expect, f"{count} rows, expected {INITIAL} + {shared.inserted} - {shared.deleted} = {expect}"
        # Every row has its heap TID in the index (deleted rows not yet vacuumed may add more).
        assert heap_tids(shape) >= count, f"{count} rows but only {heap_tids(shape)} heap TIDs in the index: {shape}"
        r, n = recall_on_content(conn, tests[:RECALL_QUERIES])
        print(f"final: {count} rows; {shape}; recall@10 at ef_search {EF}: {r:.4f}")
        assert r >= 0.95, f"recall@10 {r} over {n} rows"
        # INDEX_CLEANUP ON: no skipping the index however few the dead rows; afterwards the
        # index holds exactly the table's heap TIDs.
        vacuum_until_clean(conn, "t")
        shape = check_report(conn)
        assert heap_tids(shape) == count, f"{count} rows but {heap_tids(shape)} heap TIDs in the index after VACUUM: {shape}"
        r2, _ = recall_on_content(conn, tests[:RECALL_QUERIES])
        sample = random.Random(400).sample(conn.execute("SELECT id, v FROM t").fetchall(), min(SAMPLE, count))
        missed = rows_not_found(conn, sample)
        print(f"after a final VACUUM: {shape}; recall@10 {r2:.4f}; {len(sample) - len(missed)} of {len(sample)} sampled rows found on their own vector (top 10, ef_search {EF})")
        assert r2 >= 0.95, f"recall@10 after VACUUM {r2}"
        # Not asserted: on fashion-mnist a few outlying images are missed on their own vector
        # by any HNSW graph (a fresh build of a ~31k-row end state misses ~0.2% of its rows at
        # ef_search 100 and ~0.02% at 1000); a row missing from the index altogether is caught
        # by the heap TID count above.
