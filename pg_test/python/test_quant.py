"""Quantized indexes (`WITH (quantization = 'sq8' | 'rabitq1')`): the walk reads 8-bit or 1-bit
codes, and every round of results is re-ranked with the full-precision vectors. Each test runs
for both unless it says otherwise. What must hold beyond recall (which
test_recall.py checks per operator class after builds and concurrent inserts):

- rows come back in exact distance order, with the distances a seq scan computes;
- rows inserted after the build with values far outside the trained ranges are found (their
  codes are clamped, their full vectors are exact) and the checker agrees with their codes;
- an index built on an empty table is trained by its first insert, one built on a few rows by
  those, and both are retrained by the insert that brings them to 1,000 rows (codes re-encoded,
  scans in flight unharmed);
- deletes + VACUUM (repair, reuse of freed elements, whose full vectors are rewritten) keep
  recall and the checker's OK, for every operator class;
- filter columns and iterative scans work as on a full-precision index;
- the pages a walk reads are at most 0.35x (sq8) and 0.15x (rabitq1) the full-precision index;
- bad option values are errors with SQLSTATE 22023.
"""

import re

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from pgdb import fresh_database
from test_recall import DATA, DSN, OPCLASSES, distances, ef_for, floor_for, load, prepare, read_idx
from test_vacuum import check

DB = "hnsw_quant_test"
ROWS, QUERIES, K = 5000, 50, 10


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def data():
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", 2 * ROWS)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", QUERIES)
    return base, queries


def knn(conn, table, q, k=K, ef=100, typ="vector", op="<->"):
    conn.execute(f"SET hnsw.ef_search = {ef}")
    conn.execute("SET enable_seqscan = off")
    param = HalfVector(q) if typ == "halfvec" else q
    rows = conn.execute(f"SELECT id, v {op} %s AS d FROM {table} ORDER BY v {op} %s LIMIT {k}", (param, param)).fetchall()
    conn.execute("RESET enable_seqscan")
    return [r[0] for r in rows], [r[1] for r in rows]


def recall(conn, table, vectors, alive, queries, ef=100):
    ids = np.nonzero(alive)[0]
    hits = 0
    for q in queries:
        d = np.sqrt(((vectors[ids] - q) ** 2).sum(axis=1))
        kth = np.sort(d)[K - 1]
        got, _ = knn(conn, table, q, ef=ef)
        hits += sum(1 for i in got if alive[i] and np.sqrt(((vectors[i] - q) ** 2).sum()) <= kth * (1 + 1e-6) + 1e-6)
    return hits / (len(queries) * K)


QUANTS = ["sq8", "rabitq1"]


def make(conn, table, rows, quant="sq8", typ="vector", opclass="vector_l2_ops"):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {typ}(784))")
    conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    load(conn, table, typ, rows)
    conn.execute(f"CREATE INDEX {table}_idx ON {table} USING hnsw (v {opclass}) WITH (quantization = {quant})")


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("typ,opclass,op,metric", [("vector", "vector_l2_ops", "<->", "l2"), ("halfvec", "halfvec_l1_ops", "<+>", "l1")])
def test_exact_order_and_distances(dsn, data, typ, opclass, op, metric, quant):
    """Each round is re-ranked: the rows come out nearest first by the exact distance, and they
    are the exact top k (ef_search far above k on 5k rows)."""
    base, queries = data
    rows = base[:ROWS] if typ == "vector" else base[:ROWS].astype(np.float16).astype(np.float32)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "ord", rows, quant=quant, typ=typ, opclass=opclass)
        for q in queries[:20]:
            qq = q if typ == "vector" else q.astype(np.float16).astype(np.float32)
            got, dist = knn(conn, "ord", qq, k=20, ef=200, typ=typ, op=op)
            assert dist == sorted(dist), dist
            exact = distances(metric, rows, qq)
            want = np.sort(exact)[:20]
            assert np.allclose(np.array(dist, dtype=np.float64), want, rtol=1e-4, atol=1e-3), (dist, want)
        check(conn, "ord_idx")


@pytest.mark.parametrize("quant", QUANTS)
def test_out_of_range_inserts_are_found(dsn, data, quant):
    """Trained on pixel values 0..255; rows far outside (negative, 10x larger) are clamped in
    their codes but re-ranked exactly: a query equal to such a row finds it first."""
    base, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "oor", base[:2000], quant=quant)
        rng = np.random.default_rng(7)
        odd = []
        for i in range(50):
            v = base[2000 + i].copy()
            v[rng.integers(0, 784, 40)] = rng.choice([-3000.0, 2550.0, 1e6], 40)
            odd.append(v)
            conn.execute("INSERT INTO oor (id, v) VALUES (%s, %s)", (100000 + i, v))
        for i, v in enumerate(odd):
            got, dist = knn(conn, "oor", v, k=1, ef=40)
            assert got == [100000 + i] and dist[0] == 0.0, (i, got, dist)
        check(conn, "oor_idx")


@pytest.mark.parametrize("quant", QUANTS)
def test_empty_build_is_trained_by_first_insert(dsn, data, quant):
    base, queries = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS emp")
        conn.execute("CREATE TABLE emp (id int PRIMARY KEY, v vector(784))")
        conn.execute(f"CREATE INDEX emp_idx ON emp USING hnsw (v vector_l2_ops) WITH (quantization = {quant})")
        check(conn, "emp_idx")
        assert knn(conn, "emp", queries[0])[0] == []
        with conn.cursor() as cur:
            for i in range(2000):
                cur.execute("INSERT INTO emp (id, v) VALUES (%s, %s)", (i, base[i]))
        check(conn, "emp_idx")
        alive = np.zeros(len(base), dtype=bool)
        alive[:2000] = True
        r = recall(conn, "emp", base, alive, queries)
        print(f"empty build, 2000 inserts: recall@10 {r:.4f}")
        assert r >= 0.99, r


def cosine_recall(conn, table, rows, queries, ef=100):
    """Recall@10 of `table` (ids = row numbers of `rows`) under cosine distance."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    hits = 0
    for q in queries:
        d = 1.0 - unit @ (q / np.linalg.norm(q))
        kth = np.sort(d)[K - 1]
        got, _ = knn(conn, table, q, ef=ef, op="<=>")
        hits += sum(1 for i in got if d[i] <= kth + 1e-6)
    return hits / (len(queries) * K)


def report(conn, index):
    return conn.execute(f"SELECT hnsw_index_check('{index}')").fetchone()[0]


@pytest.mark.parametrize("quant", QUANTS)
def test_index_trained_on_few_rows_is_retrained(dsn, data, quant):
    """An index created on an empty table is trained by its first insert, from that one row.
    With the densest image of fashion-mnist first under cosine, those sq8 ranges clamp the
    values of 4 rows in 10 and recall@10 at ef_search 100 after 10,000 inserts was 0.958. The
    insert that brings the index to 1,000 rows (RETRAIN_AT) retrains it on all of them and
    re-encodes every code: 1.000 since (rabitq1, trained with a zero centroid: 0.998 -> 0.999)."""
    base, queries = data
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    first = int(np.argmin(np.abs(unit).max(axis=1)))
    rows = np.concatenate([base[first:first + 1], np.delete(base, first, axis=0)])
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS few")
        conn.execute("CREATE TABLE few (id int PRIMARY KEY, v vector(784))")
        conn.execute(f"CREATE INDEX few_idx ON few USING hnsw (v vector_cosine_ops) WITH (quantization = {quant})")
        conn.execute("INSERT INTO few (id, v) VALUES (0, %s)", (rows[0],))
        assert "trained on few rows (1 rows and inserts so far)" in report(conn, "few_idx")
        with conn.cursor().copy("COPY few (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in range(1, 998):
                copy.write_row((i, rows[i]))
        assert "(998 rows and inserts so far)" in report(conn, "few_idx")
        seen = []
        conn.add_notice_handler(lambda d: seen.append(d.message_primary))
        conn.execute("SET client_min_messages = debug1")
        with conn.cursor().copy("COPY few (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in range(998, len(rows)):
                copy.write_row((i, rows[i]))
        conn.execute("RESET client_min_messages")
        assert any(re.search(r"retrained on (\d+) of \1 elements; \1 codes re-encoded", m) for m in seen), seen
        text = report(conn, "few_idx")
        assert "retrained by an insert; 0 code(s) of the first parameters left" in text and text.endswith("OK"), text
        r = cosine_recall(conn, "few", rows, queries)
        print(f"{quant}, densest row first, {len(rows)} inserts: recall@10 {r:.4f}")
        assert r >= 0.99, r


@pytest.mark.parametrize("quant", QUANTS)
def test_small_build_is_retrained(dsn, data, quant):
    """A build on 10 rows trains on those 10; inserts retrain the index at 1,000 rows, and
    deletes + VACUUM (repair on the codes of either generation, reuse of freed elements) go on
    as before."""
    base, queries = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "small", base[:10], quant=quant)
        assert "(10 rows and inserts so far)" in report(conn, "small_idx")
        with conn.cursor() as cur:
            for i in range(10, 1500):
                cur.execute("INSERT INTO small (id, v) VALUES (%s, %s)", (i, base[i]))
        assert "retrained by an insert; 0 code(s)" in report(conn, "small_idx")
        conn.execute("DELETE FROM small WHERE id % 3 = 0")
        check(conn, "small_idx")
        with conn.cursor() as cur:
            for i in range(1500, 2000):
                cur.execute("INSERT INTO small (id, v) VALUES (%s, %s)", (i, base[i]))
        check(conn, "small_idx")
        alive = np.zeros(len(base), dtype=bool)
        alive[:2000] = True
        alive[:1500:3] = False
        r = recall(conn, "small", base, alive, queries)
        print(f"{quant}: small build, retrained, deletes: recall@10 {r:.4f}")
        assert r >= 0.99, r


def test_scan_in_flight_during_retraining(dsn, data):
    """A scan that loaded the first parameters and goes on walking after an insert retrained
    the index (its later rounds meet re-encoded codes) still returns distinct rows in exact
    distance order (strict_order), and rows near its query."""
    base, queries = data
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as other:
        register_vector(conn)
        register_vector(other)
        conn.execute("DROP TABLE IF EXISTS flight")
        conn.execute("CREATE TABLE flight (id int PRIMARY KEY, v vector(784))")
        conn.execute("CREATE INDEX flight_idx ON flight USING hnsw (v vector_l2_ops) WITH (quantization = sq8)")
        with conn.cursor() as cur:
            for i in range(990):
                cur.execute("INSERT INTO flight (id, v) VALUES (%s, %s)", (i, base[i]))
        assert "(990 rows and inserts so far)" in report(conn, "flight_idx")
        q = queries[0]
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 10")
            conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("DECLARE c CURSOR FOR SELECT id, v <-> %s AS d FROM flight ORDER BY v <-> %s", (q, q))
            got = conn.execute("FETCH 10 FROM c").fetchall()
            with other.cursor() as cur:
                for i in range(990, 1200):
                    cur.execute("INSERT INTO flight (id, v) VALUES (%s, %s)", (i, base[i]))
            assert "retrained by an insert; 0 code(s)" in report(other, "flight_idx")
            got += conn.execute("FETCH 90 FROM c").fetchall()
        ids, dists = [r[0] for r in got], [r[1] for r in got]
        assert len(got) == 100 and len(set(ids)) == 100, ids
        assert dists == sorted(dists), dists
        exact = np.sort(np.sqrt(((base[:990] - q) ** 2).sum(axis=1)))
        assert dists[9] <= exact[9] * (1 + 1e-6), (dists[:10], exact[:10])
        check(conn, "flight_idx")


@pytest.mark.parametrize("quant", QUANTS)
def test_delete_vacuum_reuse(dsn, data, quant):
    """Delete 40%, VACUUM (repair, free), insert as many new rows (reusing freed elements, whose
    codes and full vectors are rewritten): recall over the live rows and the checker hold."""
    base, queries = data
    rng = np.random.default_rng(11)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "vac", base[:ROWS], quant=quant)
        alive = np.zeros(len(base), dtype=bool)
        alive[:ROWS] = True
        dead = rng.choice(ROWS, size=2 * ROWS // 5, replace=False)
        conn.execute("DELETE FROM vac WHERE id = ANY(%s)", ([int(i) for i in dead],))
        alive[dead] = False
        conn.execute("VACUUM vac")
        report = check(conn, "vac_idx")
        assert " free" in report or "of them free" in report, report
        r = recall(conn, "vac", base, alive, queries)
        print(f"after delete + VACUUM: recall@10 {r:.4f}")
        assert r >= 0.99, r
        size = conn.execute("SELECT pg_relation_size('vac_idx')").fetchone()[0]
        with conn.cursor() as cur:
            for i in range(ROWS, ROWS + len(dead)):
                cur.execute("INSERT INTO vac (id, v) VALUES (%s, %s)", (i, base[i]))
        alive[ROWS : ROWS + len(dead)] = True
        check(conn, "vac_idx")
        grown = conn.execute("SELECT pg_relation_size('vac_idx')").fetchone()[0]
        assert grown <= size * 1.1, (size, grown)
        r = recall(conn, "vac", base, alive, queries)
        print(f"after reusing freed elements: recall@10 {r:.4f}")
        assert r >= 0.99, r


@pytest.mark.parametrize("quant", QUANTS + ["rabitq1, neighbor_codes = on"])
def test_filter_column_and_iterative_scan(dsn, data, quant):
    base, queries = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS flt")
        conn.execute("CREATE TABLE flt (id int PRIMARY KEY, v vector(784), cat int)")
        with conn.cursor().copy("COPY flt (id, v, cat) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "int4"])
            for i in range(ROWS):
                copy.write_row((i, base[i], i % 20))
        conn.execute(f"CREATE INDEX flt_idx ON flt USING hnsw (v vector_l2_ops, cat) WITH (quantization = {quant})")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 100")
        hits = 0
        for q in queries[:20]:
            for strategy in ["graph", "exact", "auto"]:
                conn.execute(f"SET hnsw.filter_strategy = {strategy}")
                got = [r[0] for r in conn.execute("SELECT id FROM flt WHERE cat = 3 ORDER BY v <-> %s LIMIT 10", (q,))]
                ids = np.arange(3, ROWS, 20)
                d = np.sqrt(((base[ids] - q) ** 2).sum(axis=1))
                want = set(ids[np.argsort(d)[:10]].tolist())
                assert all(i % 20 == 3 for i in got)
                if strategy == "exact":
                    assert set(got) == want, (got, want)
                hits += len(want & set(got))
        assert hits / (20 * 3 * 10) >= 0.98
        # An iterative scan past the first round, filter left to the executor: strict order.
        conn.execute("SET hnsw.filter_strategy = auto")
        conn.execute("SET hnsw.ef_search = 20")
        q = queries[0]
        rows = conn.execute(
            "SELECT id, v <-> %s FROM (SELECT id, v FROM flt ORDER BY v <-> %s LIMIT 400) s WHERE id %% 7 = 0", (q, q)
        ).fetchall()
        dist = [r[1] for r in rows]
        assert dist == sorted(dist) and len(rows) >= 40, len(rows)
        check(conn, "flt_idx")


def test_walk_reads_a_fraction_of_the_pages(dsn, data):
    base, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, "wf", base[:ROWS], quant="none")
        full = conn.execute("SELECT pg_relation_size('wf_idx')").fetchone()[0]
        walk_full = conn.execute("SELECT hnsw_walk_size('wf_idx')").fetchone()[0]
        assert walk_full >= 0.9 * full
        for quant, most in [("sq8", 0.35), ("rabitq1", 0.15)]:
            make(conn, "wq", base[:ROWS], quant=quant)
            walk = conn.execute("SELECT hnsw_walk_size('wq_idx')").fetchone()[0]
            print(f"full-precision index {full} B (walk {walk_full} B), {quant} walk {walk} B: {walk / full:.3f}x")
            assert walk <= most * full, (quant, walk, full)


def test_bad_option_values(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bad")
        conn.execute("CREATE TABLE bad (v vector(3))")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("CREATE INDEX ON bad USING hnsw (v vector_l2_ops) WITH (quantization = 'sq9')")
        conn.execute("CREATE INDEX bad_idx ON bad USING hnsw (v vector_l2_ops) WITH (quantization = 'none')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("ALTER INDEX bad_idx SET (quantization = 'rabitq')")


def embeddings(n, dim, rng, latent=48):
    """Vectors of low intrinsic dimension, as sentence embeddings are: a random linear image of
    `latent`-d gaussian points plus a little noise, normalized."""
    basis = rng.standard_normal((latent, dim)).astype(np.float32)
    x = rng.standard_normal((n, latent)).astype(np.float32) @ basis
    x += 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("quant", QUANTS)
def test_3072_dimensions(dsn, quant):
    """vector(3072) (text-embedding-3-large) needs quantization: its code fits a page, its full
    vector is a chain of two tuples. 10k rows: recall@10 >= 0.95 at ef_search 100, inserts and
    VACUUM after the build, the checker."""
    rng = np.random.default_rng(3072)
    dim, n = 3072, 10_000
    data = embeddings(n + 550, dim, rng)
    base, extra, queries = data[:n], data[n : n + 500], data[n + 500 :]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS big")
        conn.execute(f"CREATE TABLE big (id int PRIMARY KEY, v vector({dim}))")
        conn.execute("ALTER TABLE big SET (autovacuum_enabled = off)")
        load(conn, "big", "vector", base)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as e:
            conn.execute("CREATE INDEX ON big USING hnsw (v vector_cosine_ops)")
        assert "quantization = 'sq8'" in e.value.diag.message_hint, e.value.diag.message_hint
        conn.execute(f"CREATE INDEX big_idx ON big USING hnsw (v vector_cosine_ops) WITH (quantization = {quant})")
        check(conn, "big_idx")

        def rec(rows, alive):
            conn.execute("SET hnsw.ef_search = 100")
            conn.execute("SET enable_seqscan = off")
            hits = 0
            for q in queries:
                d = np.where(alive, 1 - rows @ q, np.inf)
                want = set(np.argsort(d)[:K].tolist())
                got = [r[0] for r in conn.execute("SELECT id FROM big ORDER BY v <=> %s LIMIT 10", (q,))]
                hits += len(want & set(got))
            return hits / (len(queries) * K)

        r = rec(base, np.ones(n, dtype=bool))
        print(f"{quant} 3072-d, 10k rows: recall@10 {r:.4f} at ef_search 100")
        assert r >= 0.95, r
        # Delete a tenth, VACUUM (frees them), insert 500: they reuse freed elements, whose
        # two-tuple full vectors are rewritten in place.
        conn.execute("DELETE FROM big WHERE id % 10 = 0")
        conn.execute("VACUUM big")
        size = conn.execute("SELECT pg_relation_size('big_idx')").fetchone()[0]
        with conn.cursor() as cur:
            for i, v in enumerate(extra):
                cur.execute("INSERT INTO big (id, v) VALUES (%s, %s)", (n + i, v))
        assert conn.execute("SELECT pg_relation_size('big_idx')").fetchone()[0] == size
        check(conn, "big_idx")
        alive = np.concatenate([base, extra])
        ids = np.arange(len(alive))
        r = rec(alive, (ids % 10 != 0) | (ids >= n))
        print(f"after VACUUM and 500 inserts: recall@10 {r:.4f}")
        assert r >= 0.95, r


def test_dimension_limits(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS lim")
        conn.execute("CREATE TABLE lim (v halfvec(8000), w vector(8001), x vector(16000))")
        conn.execute("INSERT INTO lim (v) SELECT array_fill(i::real / 100, ARRAY[8000])::halfvec FROM generate_series(1, 50) i")
        conn.execute("CREATE INDEX lim_v ON lim USING hnsw (v halfvec_l2_ops) WITH (quantization = sq8)")
        conn.execute("SET enable_seqscan = off")
        q = "array_fill(0.104::real, ARRAY[8000])::halfvec"
        got = conn.execute(f"SELECT v <-> {q} FROM lim ORDER BY v <-> {q} LIMIT 3").fetchall()
        assert len(got) == 3 and got[0][0] < got[1][0] < got[2][0], got
        check(conn, "lim_v")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("CREATE INDEX ON lim USING hnsw (w vector_l2_ops) WITH (quantization = sq8)")
        # 16,000 dimensions (the types' limit) with 1-bit codes: each full vector is a chain of
        # eight tuples.
        conn.execute("UPDATE lim SET x = array_fill(random()::real, ARRAY[16000])::vector WHERE v IS NOT NULL")
        conn.execute("CREATE INDEX lim_x ON lim USING hnsw (x vector_l2_ops) WITH (quantization = rabitq1)")
        conn.execute("INSERT INTO lim (x) SELECT array_fill(i::real, ARRAY[16000])::vector FROM generate_series(1, 20) i")
        q = "array_fill(7.2::real, ARRAY[16000])::vector"
        got = conn.execute(f"SELECT x <-> {q} FROM lim ORDER BY x <-> {q} LIMIT 3").fetchall()
        conn.execute("SET enable_indexscan = off; SET enable_seqscan = on")
        want = conn.execute(f"SELECT x <-> {q} FROM lim ORDER BY x <-> {q} LIMIT 3").fetchall()
        conn.execute("RESET enable_indexscan; SET enable_seqscan = off")
        assert got == want, (got, want)
        check(conn, "lim_x")


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("opclass,typ,op,metric,normalize", OPCLASSES)
def test_recall_after_vacuum_every_opclass(dsn, data, opclass, typ, op, metric, normalize, quant):
    """Delete 30% of 5k rows and VACUUM (repair on decoded codes for sq8, on full vectors for
    rabitq1): the surviving rows keep test_recall's floors, for every operator class."""
    base, queries = prepare(data[0][:ROWS], data[1], typ, normalize)
    table = f"v_{opclass}_{quant}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        make(conn, table, base, quant=quant, typ=typ, opclass=opclass)
        dead = np.random.default_rng(30).choice(ROWS, size=3 * ROWS // 10, replace=False)
        conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", ([int(i) for i in dead],))
        conn.execute(f"VACUUM {table}")
        check(conn, f"{table}_idx")
        alive = np.ones(ROWS, dtype=bool)
        alive[dead] = False
        ids = np.nonzero(alive)[0]
        conn.execute(f"SET hnsw.ef_search = {ef_for(metric, quant)}")
        conn.execute("SET enable_seqscan = off")
        hits = 0
        for q in queries:
            d = distances(metric, base[ids], q)
            kth = np.sort(d)[K - 1]
            got = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY v {op} %s::{typ} LIMIT {K}", (str(q.tolist()),))]
            dist = distances(metric, base[got], q)
            hits += sum(1 for g, x in zip(got, dist) if alive[g] and x <= kth + 1e-6 * abs(kth) + 1e-6)
        r = hits / (len(queries) * K)
        print(f"{opclass} {quant} after deleting 30% + VACUUM: recall@10 {r:.4f}")
        assert r >= floor_for(metric), f"{opclass} {quant}: recall@10 {r}"
        conn.execute(f"DROP TABLE {table}")
