"""The hnsw index on a streaming replica: everything that changes the index on the primary —
the build (WAL-logged with log_newpage_range), online inserts (GenericXLog), VACUUM's removal,
graph repair and freeing, inserts that reuse freed slots — must replay into an identical index
on a hot standby, which must answer queries exactly as the primary does and, once promoted,
take writes.

Primary and standby are servers of their own (ports 5483 and 5484). The standby is cloned with
pg_basebackup -R before any index exists, so it builds its copies of the four indexes (vector L2
and halfvec cosine, full precision and quantized: sq8, and rabitq1 with neighbour codes) purely from WAL. Rows are fashion-mnist images (784 dimensions).
"""

import os

import numpy as np
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from pgcluster import Server
from test_recall import distances, read_idx

DATA = "/usr/share/datasets/fashion-mnist"
PRIMARY_PORT, STANDBY_PORT = 5483, 5484
INITIAL, ONLINE, REINSERT, QUERIES, K, EF = 5000, 2000, 1000, 50, 10, 100
DELETE_FRACTION = 0.3
INDEXES = [
    # index, column, SQL type, operator, metric
    ("t_v_idx", "v", "vector", "<->", "l2"),
    ("t_h_idx", "h", "halfvec", "<=>", "cosine"),
    # Quantized (codes, full-vector tuples and parameter pages all come through WAL): the same
    # values as v and h.
    ("t_q_idx", "q", "vector", "<->", "l2"),
    ("t_r_idx", "r", "halfvec", "<=>", "cosine"),
]


@pytest.fixture(scope="module")
def data():
    if not os.path.exists(f"{DATA}/train-images-idx3-ubyte.gz"):
        pytest.fail("dataset-fashion-mnist is not installed (run .ci/setup or .ci/test)")
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", INITIAL + ONLINE + REINSERT + 1)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", QUERIES)
    return base, queries


@pytest.fixture(scope="module")
def servers(request):
    primary = Server("replica_primary", PRIMARY_PORT)
    standby = Server("replica_standby", STANDBY_PORT)  # what primary.standby() creates
    request.addfinalizer(standby.cleanup)
    request.addfinalizer(primary.cleanup)
    primary.init().configure(wal_level="replica", max_wal_senders=4, shared_buffers="256MB").start()
    return primary, standby


def insert_rows(conn, rows, ids):
    """One INSERT per row, each its own transaction: online inserts into both indexes."""
    with conn.cursor() as cur:
        for i in ids:
            cur.execute(
                "INSERT INTO t (id, v, h, q, r) VALUES (%s, %s, %s, %s, %s)",
                (int(i), rows[i], HalfVector(rows[i]), rows[i], HalfVector(rows[i])),
            )


def check_report(conn, index):
    report = conn.execute(f"SELECT hnsw_index_check('{index}')").fetchone()[0]
    assert report.strip().splitlines()[-1] == "OK", report
    return report.splitlines()[0]


def knn(conn, col, typ, op, queries):
    conn.execute("SET enable_seqscan = off")
    conn.execute(f"SET hnsw.ef_search = {EF}")
    out = []
    with conn.cursor() as cur:
        for q in queries:
            param = HalfVector(q) if typ == "halfvec" else q
            cur.execute(f"SELECT id FROM t ORDER BY {col} {op} %s::{typ} LIMIT {K}", (param,), prepare=True)
            out.append([r[0] for r in cur.fetchall()])
    return out


def recall(conn, results, metric, typ, queries):
    """Recall@10 of `results` against the table's content (ties counted as in test_recall)."""
    rows = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    base = np.array([r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1] for r in rows], dtype=np.float32)
    if typ == "halfvec":
        base, queries = base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32)
    pos = {int(i): n for n, i in enumerate(ids)}
    hits = 0
    for q, got in zip(queries, results):
        d = distances(metric, base, q)
        kth = np.sort(d)[K - 1]
        tol = 1e-6 * abs(kth) + 1e-6
        hits += sum(1 for i in got if d[pos[i]] <= kth + tol)
    return hits / (len(queries) * K)


def test_standby_replays_index(servers, data):
    primary, _ = servers
    base, queries = data
    rng = np.random.default_rng(20251121)

    with primary.connect() as conn:
        conn.execute("CREATE EXTENSION hnsw_ext")
        register_vector(conn)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v vector(784), h halfvec(784), q vector(784), r halfvec(784))")
        # No autovacuum on t: the index must not change under the comparison below.
        conn.execute("ALTER TABLE t SET (autovacuum_enabled = off)")
        with conn.cursor().copy("COPY t (id, v, h, q, r) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "halfvec", "vector", "halfvec"])
            for i in range(INITIAL):
                copy.write_row((i, base[i], HalfVector(base[i]), base[i], HalfVector(base[i])))

    # The standby starts from a base backup that has the table and no index.
    standby = primary.standby("replica_standby", STANDBY_PORT)
    primary.wait_for_replay(standby)
    assert standby.sql("SELECT count(*) FROM t")[0][0] == INITIAL
    assert standby.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")[0][0] == 1  # the primary key

    with primary.connect() as conn:
        register_vector(conn)
        conn.execute("CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops)")
        conn.execute("CREATE INDEX t_h_idx ON t USING hnsw (h halfvec_cosine_ops)")
        conn.execute("CREATE INDEX t_q_idx ON t USING hnsw (q vector_l2_ops) WITH (quantization = sq8)")
        conn.execute("CREATE INDEX t_r_idx ON t USING hnsw (r halfvec_cosine_ops) WITH (quantization = rabitq1, neighbor_codes = on)")
        print(f"\nbuilt: {check_report(conn, 't_v_idx')}")
        insert_rows(conn, base, range(INITIAL, INITIAL + ONLINE))
        print(f"after {ONLINE} online inserts: {check_report(conn, 't_v_idx')}")
        ids = np.arange(INITIAL + ONLINE)
        dead = rng.choice(ids, size=int(len(ids) * DELETE_FRACTION), replace=False)
        conn.execute("DELETE FROM t WHERE id = ANY(%s)", ([int(i) for i in dead],))
        conn.execute("VACUUM t")
        free_after_vacuum = check_report(conn, "t_v_idx")
        live = INITIAL + ONLINE - len(dead)
        assert f" {live} heap TIDs" in free_after_vacuum, f"{live} rows after VACUUM: {free_after_vacuum}"
        pages_after_vacuum = conn.execute("SELECT pg_relation_size('t_v_idx') / 8192").fetchone()[0]
        print(f"after deleting {len(dead)} rows and VACUUM: {free_after_vacuum}")
        insert_rows(conn, base, range(INITIAL + ONLINE, INITIAL + ONLINE + REINSERT))
        print(f"after {REINSERT} more inserts (reusing freed slots): {check_report(conn, 't_v_idx')}")
        pages_now = conn.execute("SELECT pg_relation_size('t_v_idx') / 8192").fetchone()[0]
        print(f"t_v_idx pages: {pages_after_vacuum} after VACUUM, {pages_now} after the inserts")
        rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        assert rows == INITIAL + ONLINE + REINSERT - len(dead)

    lsn = primary.wait_for_replay(standby)
    print(f"standby caught up at {lsn}; {rows} rows")

    with primary.connect() as p, standby.connect() as s:
        register_vector(p)
        register_vector(s)
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        assert s.execute("SELECT count(*) FROM t").fetchone()[0] == rows
        for index, col, typ, op, metric in INDEXES:
            plan = "\n".join(r[0] for r in s.execute(
                f"EXPLAIN SELECT id FROM t ORDER BY {col} {op} %s::{typ} LIMIT {K}", (str(queries[0].tolist()),)))
            assert f"Index Scan using {index}" in plan, plan
            on_primary = knn(p, col, typ, op, queries)
            on_standby = knn(s, col, typ, op, queries)
            differ = [n for n in range(QUERIES) if on_primary[n] != on_standby[n]]
            assert not differ, (
                f"{index}: {len(differ)} of {QUERIES} queries answer differently on the standby, e.g. query "
                f"{differ[0]}: primary {on_primary[differ[0]]}, standby {on_standby[differ[0]]}"
            )
            assert all(len(r) == K for r in on_primary)
            r = recall(p, on_primary, metric, typ, queries)
            report_p, report_s = check_report(p, index), check_report(s, index)
            size_p = p.execute(f"SELECT pg_relation_size('{index}')").fetchone()[0]
            size_s = s.execute(f"SELECT pg_relation_size('{index}')").fetchone()[0]
            assert size_p == size_s, f"{index}: {size_p} bytes on the primary, {size_s} on the standby"
            assert report_p == report_s, f"{index}: primary: {report_p}; standby: {report_s}"
            print(f"{index}: {QUERIES} queries identical on both; recall@10 {r:.4f}; {size_p} bytes on both; {report_s}")
            assert r >= 0.95, f"{index}: recall@10 {r}"

    # Promotion: the standby's copies of the indexes take writes.
    with standby.connect() as s:
        register_vector(s)
        assert s.execute("SELECT pg_promote(wait => true, wait_seconds => 60)").fetchone()[0]
        assert not s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        # Rows that are not in the table: test images, shifted.
        extra = {1_000_000 + n: queries[n] + 0.25 for n in range(QUERIES)}
        with s.cursor() as cur:
            for i, vec in extra.items():
                cur.execute(
                    "INSERT INTO t (id, v, h, q, r) VALUES (%s, %s, %s, %s, %s)", (i, vec, HalfVector(vec), vec, HalfVector(vec))
                )
        s.execute("SET enable_seqscan = off")
        s.execute(f"SET hnsw.ef_search = {EF}")
        missed = []
        for i, vec in extra.items():
            got_v = s.execute("SELECT id FROM t ORDER BY v <-> %s LIMIT 1", (vec,)).fetchone()[0]
            got_h = s.execute("SELECT id FROM t ORDER BY h <=> %s LIMIT 1", (HalfVector(vec),)).fetchone()[0]
            got_q = s.execute("SELECT id FROM t ORDER BY q <-> %s LIMIT 1", (vec,)).fetchone()[0]
            got_r = s.execute("SELECT id FROM t ORDER BY r <=> %s LIMIT 1", (HalfVector(vec),)).fetchone()[0]
            if (got_v, got_h, got_q, got_r) != (i, i, i, i):
                missed.append((i, got_v, got_h, got_q, got_r))
        assert not missed, f"after promotion, rows inserted there are not found first on their own vector: {missed[:10]}"
        reports = "; ".join(check_report(s, index) for index, *_ in INDEXES)
        print(f"promoted: {len(extra)} new rows found by every index; {reports}")
