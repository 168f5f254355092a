"""Inner-product recall on low-dimensional data (issue 9, item 14).

10,000 uniform random 3-d rows in [0, 1), 200 random queries, `ORDER BY v <#> q LIMIT 20` at
ef_search 40. Under inner product most rows lie inside the data's hull and are nobody's
nearest; the build, and inserts, once linked each of them into the lists of the few hull rows
every search walks, and recall fell to 0.87 after builds, 0.84 after concurrent inserts.
Checked after a serial build, a parallel build, concurrent inserts from 10 connections into an
empty index, and for halfvec; L2, cosine and L1 are measured on the same data as a control.

pgvector 0.8.6 and this index on the same data and queries, measured in alternation on one
machine (2-core dev box, two servers of the same PostgreSQL 15.20, 2026-11-23), recall@20:
  serial build, vector:      pgvector 0.9493, hnsw_ext 0.9530
  parallel build, vector:    pgvector 0.9478, hnsw_ext 0.9750
  serial build, halfvec:     pgvector 0.9480, hnsw_ext 0.9475
  parallel build, halfvec:   pgvector 0.9540, hnsw_ext 0.9522
  10 inserting clients, vector:  pgvector 0.9517 0.9460, hnsw_ext 0.9628 0.9343 0.9617
  10 inserting clients, halfvec: pgvector 0.9437 0.9443, hnsw_ext 0.9520 0.9510 0.9500
  serial build, 10% deleted, VACUUM, vector:    pgvector 0.9555, hnsw_ext 0.9595 (0.9170 before)
  parallel build, 10% deleted, VACUUM, vector:  pgvector 0.9622, hnsw_ext 0.9505
  serial build, 10% deleted, VACUUM, halfvec:   pgvector 0.9552, hnsw_ext 0.9520
  parallel build, 10% deleted, VACUUM, halfvec: pgvector 0.9630, hnsw_ext 0.9540
  serial build, 50% deleted, VACUUM, vector:    pgvector 0.9738, hnsw_ext 0.9678 (0.9427 before)
(VACUUM's reachability pass found 1,335 of the 9,000 rows left lost after the 10% delete and
linked each into the lists of the hull rows until it took one place per row and then linked
lost rows from each other, as the build does.)
(20 queries alone swing by +-0.02 from build to build: too few to judge by.)
"""

import os

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from pgdb import fresh_database, run_clients

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")
DB = "hnsw_ip_recall_test"
ROWS, QUERIES, K, EF = 10_000, 200, 20, 40
# Below every figure measured for either extension (see above), far above the bugs' 0.84-0.917;
# concurrent inserts vary most from run to run (0.934-0.963 here), so their floor is lowest.
BUILD_FLOOR, INSERT_FLOOR, VACUUM_FLOOR = 0.93, 0.90, 0.935


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(14)
    return rng.random((ROWS, 3), dtype=np.float32), rng.random((QUERIES, 3), dtype=np.float32)


def as_param(typ, v):
    return HalfVector(v) if typ == "halfvec" else v


def load(conn, table, typ, rows):
    with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", typ])
        for i, v in enumerate(rows):
            copy.write_row((i, as_param(typ, v)))


def build(conn, table, typ, opclass, base, workers):
    """A table of `base` and an index built on it with `workers` parallel workers."""
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {typ}(3))")
    load(conn, table, typ, base)
    conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (v {opclass})")


def distances(op, base, q):
    if op == "<#>":
        return -(base.astype(np.float64) @ q.astype(np.float64))
    if op == "<->":
        return ((base - q).astype(np.float64) ** 2).sum(axis=1)
    if op == "<+>":
        return np.abs((base - q).astype(np.float64)).sum(axis=1)
    b, qq = base.astype(np.float64), q.astype(np.float64)
    return 1.0 - (b @ qq) / (np.linalg.norm(b, axis=1) * np.linalg.norm(qq))


def recall(conn, table, typ, op, base, queries, alive=None):
    """recall@K at ef_search EF over the rows `alive` (default: all), ties counted as hits."""
    if typ == "halfvec":
        base, queries = base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32)
    conn.execute(f"SET hnsw.ef_search = {EF}")
    conn.execute("SET enable_seqscan = off")
    hits = 0
    for q in queries:
        text = "[" + ",".join(repr(float(x)) for x in q) + "]"
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY v {op} %s::{typ} LIMIT {K}", (text,))]
        assert len(ids) == K
        d = distances(op, base, q)
        if alive is not None:
            d[~alive] = np.inf
        kth = np.sort(d)[K - 1]
        hits += sum(1 for i in ids if d[i] <= kth + 1e-6 * abs(kth) + 1e-7)
    conn.execute("RESET ALL")
    return hits / (len(queries) * K)


CASES = [
    # (opclass, type, operator, max_parallel_maintenance_workers)
    ("vector_ip_ops", "vector", "<#>", 0),
    ("vector_ip_ops", "vector", "<#>", 2),
    ("halfvec_ip_ops", "halfvec", "<#>", 0),
    ("halfvec_ip_ops", "halfvec", "<#>", 2),
    ("vector_l2_ops", "vector", "<->", 2),
    ("vector_cosine_ops", "vector", "<=>", 2),
    ("vector_l1_ops", "vector", "<+>", 2),
]


@pytest.mark.parametrize("opclass,typ,op,workers", CASES)
def test_recall_after_build(dsn, data, opclass, typ, op, workers):
    base, queries = data
    table = f"b_{opclass}_{workers}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        build(conn, table, typ, opclass, base, workers)
        r = recall(conn, table, typ, op, base, queries)
        print(f"{opclass} workers={workers}: recall@{K} {r:.4f}")
        floor = BUILD_FLOOR if op == "<#>" else 0.99
        assert r >= floor, f"{opclass} workers={workers}: recall@{K} {r}"
        conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("opclass,typ", [("vector_ip_ops", "vector"), ("halfvec_ip_ops", "halfvec")])
def test_recall_after_concurrent_inserts(dsn, data, opclass, typ):
    base, queries = data
    table = f"c_{opclass}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {typ}(3))")
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (v {opclass})")
    clients = 10
    rows = [as_param(typ, v) for v in base]

    def insert(part):
        with psycopg.connect(dsn, autocommit=True) as c:
            register_vector(c)
            with c.cursor() as cur:
                for i in range(part, len(rows), clients):
                    cur.execute(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", (i, rows[i]), prepare=True)

    run_clients(clients, insert)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == ROWS
        r = recall(conn, table, typ, "<#>", base, queries)
        print(f"{opclass} concurrent inserts: recall@{K} {r:.4f}")
        assert r >= INSERT_FLOOR, f"{opclass} concurrent inserts: recall@{K} {r}"
        conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("opclass,typ", [("vector_ip_ops", "vector"), ("halfvec_ip_ops", "halfvec")])
def test_recall_after_delete_and_vacuum(dsn, data, opclass, typ):
    base, queries = data
    table = f"v_{opclass}"
    alive = np.ones(ROWS, bool)
    dead = np.random.default_rng(5).choice(ROWS, ROWS // 10, replace=False)
    alive[dead] = False
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        build(conn, table, typ, opclass, base, 0)
        conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", ([int(x) for x in dead],))
        conn.execute(f"VACUUM {table}")
        r = recall(conn, table, typ, "<#>", base, queries, alive)
        print(f"{opclass} 10% deleted, VACUUM: recall@{K} {r:.4f}")
        assert r >= VACUUM_FLOOR, f"{opclass} after VACUUM: recall@{K} {r}"
        conn.execute(f"DROP TABLE {table}")
