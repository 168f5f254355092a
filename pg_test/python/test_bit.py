"""Recall of hnsw indexes on `bit` (bit_hamming_ops, bit_jaccard_ops) on binary-quantized
sentence embeddings: the first 10,000 MiniLM vectors (384 dimensions) and 100 of its queries
where the shared data set is present (HNSW_EXT_MINILM_DIR, default /work/shared/data), else a
seeded synthetic set of the same shape and low intrinsic dimension (test_quant.embeddings),
which is as hard for a graph (recall@10 0.99 at ef_search 100 for both). Each vector becomes
bit(384) as binary_quantize makes it (bit set where the element is positive).

Recall@10 at hnsw.ef_search = 100 against the exact answer computed here with numpy (ties
count as ann-benchmarks counts them: a returned row is a hit if its true distance is within the
10th true distance; Hamming distances are integers, so ties are common), after a serial and a
parallel build, after inserts by 4 concurrent clients into an index built on an empty table,
and after deleting 30% of the rows and VACUUM (hnsw_index_check clean).
"""

import os

import numpy as np
import psycopg
import pytest

from pgdb import fresh_database, run_clients, vacuum_until_clean
from test_quant import embeddings
from test_recall import DSN, build_messages
from test_vacuum import check

DB = "hnsw_bit_test"
ROWS, QUERIES, K, EF, FLOOR = 10_000, 100, 10, 100, 0.95
DIMS = 384
MINILM = os.environ.get("HNSW_EXT_MINILM_DIR", "/work/shared/data")

OPCLASSES = [("bit_hamming_ops", "<~>", "hamming"), ("bit_jaccard_ops", "<%>", "jaccard")]


def vectors():
    """(rows, queries) as float32 vectors of DIMS dimensions."""
    path = f"{MINILM}/minilm-384-base.npy"
    if os.path.exists(path):
        base = np.asarray(np.load(path, mmap_mode="r")[:ROWS], dtype=np.float32)
        return base, np.load(f"{MINILM}/minilm-384-queries.npy")[:QUERIES].astype(np.float32)
    x = embeddings(ROWS + QUERIES, DIMS, np.random.default_rng(5))
    return x[:ROWS], x[ROWS:]


@pytest.fixture(scope="module")
def data():
    base, queries = vectors()
    return base > 0, queries > 0


def test_bits_are_binary_quantize(dsn):
    """The bits loaded below are what binary_quantize gives for the same vectors."""
    base, _ = vectors()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for v in base[:20]:
            got = conn.execute("SELECT binary_quantize(%s::vector)::text", ("[" + ",".join(repr(float(x)) for x in v) + "]",)).fetchone()[0]
            assert got == text(v > 0)


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


def text(bits):
    return "".join("1" if b else "0" for b in bits)


def distances(metric, base, q):
    if metric == "hamming":
        return (base != q).sum(axis=1).astype(np.float64)
    both = (base & q).sum(axis=1)
    either = (base | q).sum(axis=1)
    # pgvector's definition: 1 when no bit is set in both.
    return np.where(both == 0, 1.0, 1.0 - both / np.maximum(either, 1))


def recall(conn, table, op, metric, base, queries, alive=None):
    op = op.replace("%", "%%")  # <%> in a query with parameters
    conn.execute(f"SET hnsw.ef_search = {EF}")
    conn.execute("SET enable_seqscan = off")
    plan = conn.execute(f"EXPLAIN SELECT id FROM {table} ORDER BY v {op} %s::bit({DIMS}) LIMIT {K}", (text(queries[0]),)).fetchall()
    assert "Index Scan" in plan[1][0], plan
    alive = np.ones(len(base), bool) if alive is None else alive
    hits = 0
    for q in queries:
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY v {op} %s::bit({DIMS}) LIMIT {K}", (text(q),))]
        assert len(ids) == K
        d = distances(metric, base, q)
        kth = np.sort(d[alive])[K - 1]
        hits += sum(1 for i in ids if alive[i] and d[i] <= kth + 1e-9)
    conn.execute("RESET enable_seqscan")
    return hits / (len(queries) * K)


def load(conn, table, rows):
    with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
        for i, v in enumerate(rows):
            copy.write_row((i, text(v)))


@pytest.mark.parametrize("opclass,op,metric", OPCLASSES)
@pytest.mark.parametrize("workers", [0, 1], ids=["serial", "parallel"])
def test_recall_after_build(dsn, data, opclass, op, metric, workers):
    base, queries = data
    table = f"b_{metric}_{workers}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v bit({DIMS}))")
        load(conn, table, base)
        conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
        msgs = build_messages(conn, f"CREATE INDEX {table}_idx ON {table} USING hnsw (v {opclass})")
        threads = min(workers + 1, os.cpu_count())
        assert any(f"on {threads} threads" in m for m in msgs), msgs
        r = recall(conn, table, op, metric, base, queries)
        print(f"{opclass} workers={workers}: recall@10 {r:.4f}")
        assert r >= FLOOR, f"{opclass} workers={workers}: recall@10 {r}"
        check(conn, f"{table}_idx")
        conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("opclass,op,metric", OPCLASSES)
def test_recall_after_concurrent_inserts(dsn, data, opclass, op, metric):
    base, queries = data
    table = f"c_{metric}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v bit({DIMS}))")
        conn.execute(f"CREATE INDEX {table}_idx ON {table} USING hnsw (v {opclass})")
    clients = 4
    rows = [text(v) for v in base]

    def insert(part):
        with psycopg.connect(dsn, autocommit=True) as c, c.cursor() as cur:
            for i in range(part, len(rows), clients):
                cur.execute(f"INSERT INTO {table} (id, v) VALUES (%s, %s::bit({DIMS}))", (i, rows[i]))

    run_clients(clients, insert)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == ROWS
        r = recall(conn, table, op, metric, base, queries)
        print(f"{opclass} concurrent inserts: recall@10 {r:.4f}")
        assert r >= FLOOR, f"{opclass} concurrent inserts: recall@10 {r}"
        check(conn, f"{table}_idx")
        conn.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("opclass,op,metric", OPCLASSES)
def test_recall_after_delete_and_vacuum(dsn, data, opclass, op, metric):
    base, queries = data
    table = f"v_{metric}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v bit({DIMS}))")
        load(conn, table, base)
        conn.execute(f"CREATE INDEX {table}_idx ON {table} USING hnsw (v {opclass})")
        dead = np.random.default_rng(11).choice(ROWS, ROWS * 3 // 10, replace=False)
        conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (dead.tolist(),))
        vacuum_until_clean(conn, table, "")
        report = check(conn, f"{table}_idx")
        alive = np.ones(ROWS, bool)
        alive[dead] = False
        r = recall(conn, table, op, metric, base, queries, alive)
        print(f"{opclass} after deleting 30% and VACUUM: recall@10 {r:.4f} ({report.splitlines()[0]})")
        assert r >= FLOOR, f"{opclass} after VACUUM: recall@10 {r}"
        conn.execute(f"DROP TABLE {table}")
