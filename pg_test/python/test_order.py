"""Ordered output of index scans and the three hnsw.iterative_scan modes (issue 9, item 3).

SQL promises `ORDER BY v <-> q` order. Under the default (strict_order) an index scan never
returns a row after a farther one, also when later search rounds run (a Filter above the scan
rejecting rows, small work_mem, cursors); relaxed_order may be slightly out of order; off stops
after the first ef_search rows. A LIMIT above ef_search widens the first round, so that
`LIMIT 200` at ef_search 40 finds what ef_search 200 finds (also with OFFSET, a LIMIT
parameter of a prepared statement, and a LIMIT that changes between rescans).
"""

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pgdb import fresh_database
from test_recall import DSN

DB = "hnsw_order_test"
ROWS, DIMS, QUERIES = 10_000, 32, 20


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def data(dsn):
    rng = np.random.default_rng(9)
    base = rng.random((ROWS, DIMS), dtype=np.float32)
    queries = rng.random((QUERIES, DIMS), dtype=np.float32)
    with psycopg.connect(dsn, autocommit=True) as c:
        register_vector(c)
        c.execute(f"CREATE TABLE t (id int PRIMARY KEY, cat int, v vector({DIMS}))")
        with c.cursor().copy("COPY t (id, cat, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int4", "vector"])
            for i, v in enumerate(base):
                copy.write_row((i, i % 10, v))
        c.execute("CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops)")
        # A second table whose index has a filter column: exact and graph filtered scans.
        c.execute("CREATE TABLE f AS SELECT * FROM t")
        c.execute("CREATE INDEX f_v_idx ON f USING hnsw (v vector_l2_ops, cat)")
        c.execute("ANALYZE t")
        c.execute("ANALYZE f")
    return base, queries


@pytest.fixture
def conn(dsn, data):
    with psycopg.connect(dsn, autocommit=True) as c:
        register_vector(c)
        c.execute("LOAD 'hnsw_ext'")  # its settings exist once the library is loaded
        c.execute("SET enable_seqscan = off")
        yield c


def distances(conn, sql, params=()):
    return [r[-1] for r in conn.execute(sql, params).fetchall()]


def inversions(ds):
    """Adjacent pairs out of order, by the distances SQL computes: exactly, since the index
    sums each distance in the same order as the operator (an aligned query; see types::ops)."""
    return sum(1 for a, b in zip(ds, ds[1:]) if b < a)


def truth(conn, sql, params=()):
    """Ids a sequential scan (exact) returns for the query."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = on")
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        # Never a prepared statement: its cached plan would ignore the settings above.
        return {r[0] for r in conn.execute(sql, params, prepare=False).fetchall()}


def ids_of(conn, sql, params=()):
    return [r[0] for r in conn.execute(sql, params).fetchall()]


def recall(conn, base, queries, k, sql="SELECT id FROM t ORDER BY v <-> %s LIMIT {k}"):
    hits = 0
    for q in queries:
        got = ids_of(conn, sql.format(k=k), (q,))
        assert len(got) == k
        hits += len(truth(conn, sql.format(k=k), (q,)) & set(got))
    return hits / (k * len(queries))


def test_default_is_strict_order(conn):
    assert conn.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "strict_order"
    for mode in ("off", "strict_order", "relaxed_order"):
        conn.execute(f"SET hnsw.iterative_scan = {mode}")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SET hnsw.iterative_scan = strict")


def test_default_settings_return_rows_in_order(conn, data):
    """The review's reproduction: LIMIT 200 under default settings came out unsorted."""
    base, queries = data
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (queries[0], queries[0])))
    assert "t_v_idx" in plan, plan
    bad = 0
    for q in queries:
        ds = distances(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (q, q))
        assert len(ds) == 200
        bad += inversions(ds)
    assert bad == 0


@pytest.mark.parametrize("ef", [1, 10, 40])
def test_strict_order_across_rounds(conn, data, ef):
    """Later rounds run when a Filter above the scan rejects most rows, and when work_mem keeps
    the first round narrow: rows still come out in order, as many as asked for."""
    base, queries = data
    conn.execute(f"SET hnsw.ef_search = {ef}")
    for q in queries[:8]:
        ds = distances(conn, "SELECT id, v <-> %s FROM t WHERE id %% 17 = 3 ORDER BY v <-> %s LIMIT 100", (q, q))
        assert len(ds) == 100 and inversions(ds) == 0
    conn.execute("SET work_mem = '64kB'")
    for q in queries[:8]:
        ds = distances(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 1000", (q, q))
        assert len(ds) == 1000 and inversions(ds) == 0


def test_relaxed_order_and_off_contracts(conn, data):
    base, queries = data
    conn.execute("SET hnsw.ef_search = 10")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    # relaxed_order: every row asked for, nearly in order (later rounds may find nearer ones).
    bad = 0
    for q in queries:
        ds = distances(conn, "SELECT id, v <-> %s FROM t WHERE id %% 17 = 3 ORDER BY v <-> %s LIMIT 100", (q, q))
        assert len(ds) == 100
        bad += inversions(ds)
    # off: the first ef_search rows only, in order (pgvector's meaning).
    conn.execute("SET hnsw.iterative_scan = off")
    for q in queries[:5]:
        ds = distances(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (q, q))
        assert len(ds) == 10 and inversions(ds) == 0
        ds = distances(conn, "SELECT id, v <-> %s FROM t WHERE id %% 17 = 3 ORDER BY v <-> %s LIMIT 100", (q, q))
        assert len(ds) < 10 and inversions(ds) == 0


def test_limit_above_ef_search_has_the_recall_of_ef_search_limit(conn, data):
    base, queries = data
    conn.execute("SET hnsw.ef_search = 200")
    wide = recall(conn, base, queries, 200)
    conn.execute("SET hnsw.ef_search = 40")
    default = recall(conn, base, queries, 200)
    assert default >= wide, (default, wide)
    assert default > 0.9


def test_offset_and_limit_parameter_and_cursor(conn, data):
    base, queries = data
    conn.execute("SET hnsw.ef_search = 10")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute("PREPARE p(vector, int, int) AS SELECT id, v <-> $1 FROM t ORDER BY v <-> $1 LIMIT $2 OFFSET $3")
    for q in queries[:5]:
        full = ids_of(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (q, q))
        # The first round is as wide as LIMIT + OFFSET: the same search, so the same rows.
        assert ids_of(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 50 OFFSET 150", (q, q)) == full[150:]
        lit = "'[" + ",".join(repr(float(x)) for x in q) + "]'"
        assert ids_of(conn, f"EXECUTE p({lit}, 200, 0)") == full
        assert ids_of(conn, f"EXECUTE p({lit}, 50, 150)") == full[150:]
        assert ids_of(conn, f"EXECUTE p({lit}, 20, 0)") == ids_of(conn, "SELECT id FROM t ORDER BY v <-> %s LIMIT 20", (q,))
    # A cursor over a query with a LIMIT: the same rows; without one, ordered rounds.
    q = queries[0]
    full = ids_of(conn, "SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (q, q))
    with conn.transaction():
        conn.execute("DECLARE c CURSOR FOR SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 200", (q, q))
        got = [r[0] for _ in range(4) for r in conn.execute("FETCH 50 FROM c").fetchall()]
    assert got == full
    with conn.transaction():
        conn.execute("DECLARE c CURSOR FOR SELECT id, v <-> %s FROM t ORDER BY v <-> %s", (q, q))
        ds = [r[1] for _ in range(10) for r in conn.execute("FETCH 30 FROM c").fetchall()]
    assert len(ds) == 300 and inversions(ds) == 0


def test_rescans_with_different_limits(conn, data):
    """A LATERAL subquery: one Limit node rescanned with a new query and a new LIMIT per outer
    row; each rescan's first round must follow its own LIMIT."""
    base, queries = data
    conn.execute("SET hnsw.ef_search = 10")
    conn.execute("CREATE TEMP TABLE qs (qid int, k int, q vector)")
    ks = [5, 150, 30, 200, 1, 120]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO qs VALUES (%s, %s, %s)", [(i, k, queries[i]) for i, k in enumerate(ks)])
    rows = conn.execute(
        "SELECT qs.qid, x.id, x.d FROM qs CROSS JOIN LATERAL "
        "(SELECT id, v <-> qs.q AS d FROM t ORDER BY v <-> qs.q LIMIT qs.k) x ORDER BY qs.qid"
    ).fetchall()
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT qs.qid, x.id FROM qs CROSS JOIN LATERAL "
        "(SELECT id FROM t ORDER BY v <-> qs.q LIMIT qs.k) x"))
    assert "t_v_idx" in plan, plan
    for i, k in enumerate(ks):
        got = [r[1] for r in rows if r[0] == i]
        alone = ids_of(conn, f"SELECT id FROM t ORDER BY v <-> %s LIMIT {k}", (queries[i],))
        assert got == alone, (i, k)


@pytest.mark.parametrize("strategy", ["exact", "graph", "auto"])
def test_filtered_scans_are_ordered(conn, data, strategy):
    """Filter columns in the index: the exact scan's rounds and the filtered walk's rounds."""
    base, queries = data
    conn.execute(f"SET hnsw.filter_strategy = {strategy}")
    conn.execute("SET hnsw.ef_search = 5")
    for q in queries[:6]:
        ds = distances(conn, "SELECT id, v <-> %s FROM f WHERE cat = 3 ORDER BY v <-> %s LIMIT 300", (q, q))
        assert len(ds) == 300 and inversions(ds) == 0
        # A Filter above the filtered scan, rejecting most of its rows: more rounds.
        sql = "SELECT id, v <-> %s FROM f WHERE cat = 3 AND id %% 7 = 0 ORDER BY v <-> %s LIMIT 50"
        got = conn.execute(sql, (q, q)).fetchall()
        assert len(got) == 50 and inversions([r[1] for r in got]) == 0
        if strategy == "exact":
            assert {r[0] for r in got} == truth(conn, sql, (q, q))


@pytest.mark.parametrize("typ,opclass,op", [
    ("vector", "vector_ip_ops", "<#>"),
    ("vector", "vector_l1_ops", "<+>"),
    ("halfvec", "halfvec_l2_ops", "<->"),
    ("halfvec", "halfvec_ip_ops", "<#>"),
])
def test_other_operators_are_ordered(conn, data, typ, opclass, op):
    """The index and the SQL operators measure alike for every operator class but cosine (whose
    index measures normalized vectors), so strict_order holds exactly for them too."""
    base, queries = data
    table = f"o_{opclass}"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT id, v::{typ}({DIMS}) AS v FROM t")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_idx ON {table} USING hnsw (v {opclass})")
    conn.execute("SET hnsw.ef_search = 10")
    for q in queries[:10]:
        ql = "[" + ",".join(repr(float(x)) for x in q) + f"]"
        for where, k in (("true", 200), ("id %% 13 = 1", 60)):
            ds = distances(conn, f"SELECT id, v {op} %s::{typ} FROM {table} WHERE {where} ORDER BY v {op} %s::{typ} LIMIT {k}", (ql, ql))
            assert len(ds) == k and inversions(ds) == 0, (where, ds[:5])
