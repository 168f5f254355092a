"""`WITH (quantization = ..., neighbor_codes = on)`: each node tuple keeps its layer-0
neighbours' codes, so that a scan measures a node's neighbours without reading their pages.
A list change (inserts, VACUUM) clears the codes of the entries it changes; such entries are
measured from their own tuples as before. What must hold:

- recall as without the option (the same codes are measured), for builds on one and on
  several processes, after inserts, deletes, VACUUM and reuse of freed elements;
- a scan reads far fewer buffers;
- the checker finds every code kept equal to its neighbour's and says how many are kept;
- deleted elements met through a kept code are never returned (re-ranking reads their tuples);
- filtered scans and iterative scans give what they give without the option (test_quant.py's
  filter test runs with it too);
- the option needs quantization (22023), and codes that do not fit a page are an error (54000).
"""

import re

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pgdb import fresh_database, run_clients
from test_quant import ROWS, data, knn, recall  # noqa: F401 (data is a fixture)
from test_recall import DSN, load
from test_vacuum import check

DB = "hnsw_codes_test"


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


def make(conn, table, rows, codes, quant="rabitq1", opclass="vector_l2_ops", workers=0, extra=""):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector(784){extra})")
    conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    if len(rows):
        load(conn, table, "vector", rows)
    conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    conn.execute(
        f"CREATE INDEX {table}_idx ON {table} USING hnsw (v {opclass}) "
        f"WITH (quantization = {quant}, neighbor_codes = {'on' if codes else 'off'})"
    )
    conn.execute("RESET max_parallel_maintenance_workers")


def kept(conn, index):
    """(codes kept, layer-0 links with room for one) from the checker's report."""
    report = check(conn, index)
    m = re.search(r"neighbour codes kept for (\d+) of (\d+)", report)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def buffers_per_query(conn, table, queries, ef=100):
    conn.execute(f"SET hnsw.ef_search = {ef}")
    conn.execute("SET enable_seqscan = off")
    total = 0
    for q in queries:
        plan = "\n".join(
            r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM {table} ORDER BY v <-> %s LIMIT 10", (q,))
        )
        total += int(re.search(r"Index Scan.*?Buffers: shared hit=(\d+)", plan, re.S).group(1))
    conn.execute("RESET enable_seqscan")
    return total / len(queries)


@pytest.mark.parametrize("workers", [0, 1])
def test_recall_as_without_codes_and_fewer_buffers(dsn, data, workers):
    base, queries = data
    alive = np.zeros(len(base), dtype=bool)
    alive[:ROWS] = True
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        got = {}
        for codes in [False, True]:
            make(conn, f"nc{int(codes)}", base[:ROWS], codes, workers=workers)
            got[codes] = (recall(conn, f"nc{int(codes)}", base, alive, queries), buffers_per_query(conn, f"nc{int(codes)}", queries[:20]))
        print(f"without codes: recall {got[False][0]:.4f}, {got[False][1]:.0f} buffers/query; "
              f"with: recall {got[True][0]:.4f}, {got[True][1]:.0f} buffers/query")
        assert got[True][0] >= 0.99 and got[True][0] >= got[False][0] - 0.01, got
        # Re-ranking reads ~2 ef_search tuples either way; the walk itself reads a quarter.
        assert got[True][1] <= 0.6 * got[False][1], got
        have, room = kept(conn, "nc1_idx")
        assert room > 0 and have == room, (have, room)
        assert kept(conn, "nc0_idx") == (0, 0)


@pytest.mark.parametrize("quant,opclass", [("rabitq1", "vector_cosine_ops"), ("rabitq1", "vector_ip_ops"), ("sq8", "vector_l2_ops")])
def test_other_quantizations_and_metrics(dsn, quant, opclass):
    """sq8 codes of 96 dimensions fit (784-d ones do not, see test_options); cosine and inner
    product walk on the same estimates with codes as without."""
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(20, 96)).astype(np.float32)
    vecs = (centers[rng.integers(0, 20, 4000)] + rng.normal(size=(4000, 96))).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    qs = (centers[rng.integers(0, 20, 30)] + rng.normal(size=(30, 96))).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    op = {"vector_cosine_ops": "<=>", "vector_ip_ops": "<#>", "vector_l2_ops": "<->"}[opclass]
    got = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS oq")
        conn.execute("CREATE TABLE oq (id int PRIMARY KEY, v vector(96))")
        with conn.cursor().copy("COPY oq (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i, v in enumerate(vecs):
                copy.write_row((i, v))
        for codes in ["off", "on"]:
            conn.execute("DROP INDEX IF EXISTS oq_idx")
            conn.execute(f"CREATE INDEX oq_idx ON oq USING hnsw (v {opclass}) WITH (quantization = {quant}, neighbor_codes = {codes})")
            conn.execute("SET hnsw.ef_search = 100")
            conn.execute("SET enable_seqscan = off")
            hits = 0
            for q in qs:
                # Unit vectors: the three metrics order rows alike.
                want = set(np.argsort(-(vecs @ q))[:10].tolist())
                rows = conn.execute(f"SELECT id, v {op} %s FROM oq ORDER BY v {op} %s LIMIT 10", (q, q)).fetchall()
                assert [r[1] for r in rows] == sorted(r[1] for r in rows)
                hits += len(want & {r[0] for r in rows})
            got[codes] = hits / 300
        print(f"{quant} {opclass}: recall@10 without codes {got['off']:.4f}, with {got['on']:.4f}")
        assert got["on"] >= 0.95 and got["on"] >= got["off"] - 0.01, got
        have, room = kept(conn, "oq_idx")
        assert room > 0 and have == room, (have, room)


def test_inserts_deletes_vacuum_and_reuse(dsn, data):
    """Concurrent inserts, 40% deleted, VACUUM, freed elements reused: recall and the checker
    hold; inserts keep every link's code, VACUUM's repairs leave their new entries without."""
    base, queries = data
    rng = np.random.default_rng(12)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "ncv", base[:ROWS], True)
        alive = np.zeros(len(base), dtype=bool)
        alive[:ROWS] = True
        extra = list(range(ROWS, ROWS + ROWS // 5))

        def insert(part):
            with psycopg.connect(dsn, autocommit=True) as c:
                register_vector(c)
                for i in extra[part::4]:
                    c.execute("INSERT INTO ncv (id, v) VALUES (%s, %s)", (i, base[i]))

        run_clients(4, insert)
        alive[extra] = True
        have, room = kept(conn, "ncv_idx")
        print(f"after {len(extra)} inserts: codes kept for {have} of {room} links")
        # Inserts keep codes: the new element's of its neighbours, the neighbours' of it.
        assert room > 0 and have == room, (have, room)
        r = recall(conn, "ncv", base, alive, queries)
        print(f"after inserts: recall@10 {r:.4f}")
        assert r >= 0.99, r
        dead = rng.choice(np.nonzero(alive)[0], size=2 * ROWS // 5, replace=False)
        conn.execute("DELETE FROM ncv WHERE id = ANY(%s)", ([int(i) for i in dead],))
        alive[dead] = False
        # Before VACUUM the deleted rows are still linked, kept codes and all: the executor
        # drops them (dead to its snapshot).
        r = recall(conn, "ncv", base, alive, queries)
        print(f"after deletes, before VACUUM: recall@10 {r:.4f}")
        conn.execute("VACUUM ncv")
        r = recall(conn, "ncv", base, alive, queries)
        print(f"after VACUUM: recall@10 {r:.4f}")
        assert r >= 0.99, r
        reuse = list(range(ROWS + ROWS // 5, ROWS + ROWS // 5 + len(dead)))
        with conn.cursor() as cur:
            for i in reuse:
                cur.execute("INSERT INTO ncv (id, v) VALUES (%s, %s)", (i, base[i]))
        alive[reuse] = True
        have, room = kept(conn, "ncv_idx")
        print(f"after VACUUM and reuse: codes kept for {have} of {room} links")
        # VACUUM's repairs add entries without codes; reused elements start without room.
        assert have >= 0.5 * room, (have, room)
        r = recall(conn, "ncv", base, alive, queries)
        print(f"after reusing freed elements: recall@10 {r:.4f}")
        assert r >= 0.99, r
        conn.execute("REINDEX INDEX ncv_idx")
        have, room = kept(conn, "ncv_idx")
        assert have == room, (have, room)


def test_index_built_empty_fills_codes_on_insert(dsn, data):
    """An index created on an empty table gets every element by insert: each new element's
    node tuple keeps its neighbours' codes (read by its walk), and each neighbour that links
    back keeps the new element's. The first parameters (from the first row) are retrained at
    1,000 rows; codes of both generations stay measurable."""
    base, queries = data
    n = 3000
    alive = np.zeros(len(base), dtype=bool)
    alive[:n] = True
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "nce", base[:0], True)

        def insert(part):
            with psycopg.connect(dsn, autocommit=True) as c:
                register_vector(c)
                for i in range(part, n, 4):
                    c.execute("INSERT INTO nce (id, v) VALUES (%s, %s)", (i, base[i]))

        run_clients(4, insert)
        have, room = kept(conn, "nce_idx")
        print(f"index built by {n} inserts: codes kept for {have} of {room} links")
        assert room > 0 and have >= 0.95 * room, (have, room)
        r = recall(conn, "nce", base, alive, queries)
        print(f"recall@10 {r:.4f}")
        assert r >= 0.99, r
        conn.execute("DROP TABLE nce")


def test_heavy_deletes_then_vacuum(dsn, data):
    """90% of the rows deleted and VACUUMed: the lists VACUUM rewrote keep the codes of the
    entries they kept; scans return live rows only, in order, and an iterative scan finds every
    live row. (A deleted element still linked, met through a kept code, is the #[pg_test]
    a_deleted_element_met_through_a_kept_code_is_not_returned: from SQL the executor would hide
    its dead row anyway.)"""
    base, queries = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "ncd", base[:2000], True)
        conn.execute("DELETE FROM ncd WHERE id % 10 <> 0")
        conn.execute("VACUUM ncd")
        check(conn, "ncd_idx")
        live = set(range(0, 2000, 10))
        for q in queries[:20]:
            for ef in [10, 100]:
                got, dist = knn(conn, "ncd", q, ef=ef)
                assert set(got) <= live, set(got) - live
                assert dist == sorted(dist)
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        got = [r[0] for r in conn.execute("SELECT id FROM ncd ORDER BY v <-> %s LIMIT 300", (queries[0],))]
        assert set(got) == live, len(set(got) ^ live)
        conn.execute("RESET hnsw.iterative_scan")


def test_options(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS nco")
        conn.execute("CREATE TABLE nco (v vector(784))")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="neighbor_codes requires quantization"):
            conn.execute("CREATE INDEX ON nco USING hnsw (v vector_l2_ops) WITH (neighbor_codes = on)")
        conn.execute("CREATE INDEX nco_idx ON nco USING hnsw (v vector_l2_ops)")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("ALTER INDEX nco_idx SET (neighbor_codes = on)")
        conn.execute("ALTER INDEX nco_idx SET (quantization = rabitq1, neighbor_codes = on)")
        conn.execute("REINDEX INDEX nco_idx")
        # 784 sq8 codes (796-byte bodies) times 32 neighbours do not fit a page.
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="neighbor_codes do not fit"):
            conn.execute("CREATE INDEX ON nco USING hnsw (v vector_l2_ops) WITH (quantization = sq8, neighbor_codes = on)")
        # Nor do 1-bit codes of 16,000 dimensions.
        conn.execute("CREATE TABLE nco2 (v vector(16000))")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("CREATE INDEX ON nco2 USING hnsw (v vector_l2_ops) WITH (quantization = rabitq1, neighbor_codes = on)")
        conn.execute("DROP TABLE nco2")
