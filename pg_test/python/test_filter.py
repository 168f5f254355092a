"""Filtered search on multi-column hnsw indexes (`USING hnsw (v vector_l2_ops, c10, c100, ...)`)
on real data (fashion-mnist, L2).

The first 50,000 training images are the rows, 100 test images the queries. Each row's filter
columns are functions of its id (c10 = id % 10, tag = 't' || id % 20, labels = {id % 20,
100 + id % 50}, ...), so the exact filtered answer is computed here with numpy: the squared
L2 distances between the images (integers 0..255) are exact integers in float64. Recall@10 at
hnsw.ef_search = 40 counts ties as test_recall.py does (a returned row is a hit if it matches the
filter and its true distance is within the 10th true filtered distance).

Covered: filtered recall under hnsw.filter_strategy auto / graph / exact for 10%, 1% and 0.1%
filters; ANDed conditions; array filters (&&, @>); IN / ANY / ranges / <> / cross-type
operators; the plans (conditions under `Index Cond:`, not `Filter:`); hnsw_index_check after
build, concurrent inserts and VACUUM; deletes (dead rows never returned, freed slots reused);
NULL filter values; a condition on a column outside the index (a `Filter:` answered by the
iterative scan); and, on a small table, every other filter column type.
"""

import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from test_recall import DATA, DSN, read_idx
from pgdb import fresh_database, run_clients, vacuum_until_clean

DB = "hnsw_filter_test"
ROWS, INITIAL, QUERIES, K, EF = 50_000, 40_000, 100, 10, 40
FLOOR, EXACT_FLOOR = 0.95, 0.999
STRATEGIES = ["auto", "graph", "exact"]

COLUMNS = "id int NOT NULL, v vector(784), c10 int, c100 int, c1000 int, c7 int, c3 int, tag text, labels int4[]"
NAMES = ["id", "v", "c10", "c100", "c1000", "c7", "c3", "tag", "labels"]
TYPES = ["int4", "vector", "int4", "int4", "int4", "int4", "int4", "text", "int4[]"]
INDEX = "USING hnsw (v vector_l2_ops, c10, c100, c1000, c7, tag, labels) WITH (m = 16, ef_construction = 64)"

# (SQL condition, the ids it matches). c3 is not in the index.
SELECTIVITY = {
    "c10 = 3": lambda i: i % 10 == 3,  # 10%
    "c100 = 7": lambda i: i % 100 == 7,  # 1%
    "c1000 = 11": lambda i: i % 1000 == 11,  # 0.1%
}
ANDED = {"c10 = 1 AND c7 = 2": lambda i: (i % 10 == 1) & (i % 7 == 2)}  # 1.4%
ARRAYS = {
    "labels && '{5}'": lambda i: i % 20 == 5,  # 5%
    "labels && '{105,7}'": lambda i: (i % 50 == 5) | (i % 20 == 7),  # 7%
    "labels @> '{5,105}'": lambda i: (i % 20 == 5) & (i % 50 == 5),  # 1%
}
OTHERS = {
    "c100 IN (1,2,3)": lambda i: np.isin(i % 100, [1, 2, 3]),
    "tag = ANY('{t1,t2}')": lambda i: np.isin(i % 20, [1, 2]),
    "c1000 < 10": lambda i: i % 1000 < 10,
    "c10 <> 0": lambda i: i % 10 != 0,
    "c100 = 5::int8": lambda i: i % 100 == 5,
    "tag = 't4'": lambda i: i % 20 == 4,
}
SHAPES = {**SELECTIVITY, **ANDED, **ARRAYS, **OTHERS}


def row(i, v):
    i = int(i)
    return (i, v, i % 10, i % 100, i % 1000, i % 7, i % 3, f"t{i % 20}", [i % 20, 100 + i % 50])


def copy_rows(conn, table, base, ids):
    with conn.cursor().copy(f"COPY {table} ({', '.join(NAMES)}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(TYPES)
        for i in ids:
            copy.write_row(row(i, base[i]))


def check(conn, index):
    report = conn.execute("SELECT hnsw_index_check(%s::regclass)", (index,)).fetchone()[0]
    assert report.strip().splitlines()[-1] == "OK", report.replace("\n", " | ")
    return report


def plan(conn, table, where, q):
    rows = conn.execute(f"EXPLAIN (COSTS OFF) SELECT id FROM {table} WHERE {where} ORDER BY v <-> %s LIMIT {K}", (q,))
    return [r[0] for r in rows]


def assert_index_plan(p, index, cond=True, filt=False):
    """The plan scans `index`, with (or without) an `Index Cond:` and a `Filter:` line."""
    text = "\n".join(p)
    assert any(f"Index Scan using {index} on" in line for line in p), f"not an Index Scan using {index}:\n{text}"
    assert any(line.strip().startswith("Index Cond:") for line in p) == cond, f"Index Cond expected {cond}:\n{text}"
    assert any(line.strip().startswith("Filter:") for line in p) == filt, f"Filter expected {filt}:\n{text}"


def index_size(conn, index):
    return conn.execute("SELECT pg_relation_size(%s::regclass)", (index,)).fetchone()[0]


class Result:
    def __init__(self, where, strategy, recall, counts, wrong, elapsed):
        self.where, self.strategy, self.recall, self.counts, self.wrong, self.elapsed = where, strategy, recall, counts, wrong, elapsed

    @property
    def short(self):
        return [(qi, n) for qi, n in enumerate(self.counts) if n != K]

    def __str__(self):
        return (
            f"[{self.where}] strategy={self.strategy}: recall@10 {self.recall:.4f}, "
            f"queries with != {K} rows (query, rows): {self.short[:10]}{' ...' if len(self.short) > 10 else ''}, "
            f"rows not matching / not alive (query, id): {self.wrong[:10]}{' ...' if len(self.wrong) > 10 else ''}, "
            f"{self.elapsed:.1f}s"
        )


def measure(conn, table, where, mask, dist, queries, strategy="auto", ef=EF):
    """Recall@10 of `WHERE where ORDER BY v <-> q LIMIT 10` against the exact answer over the ids
    in `mask` (rows that match the condition and are alive); `dist[qi, id]` is the true distance."""
    conn.execute(f"SET hnsw.filter_strategy = {strategy}")
    conn.execute(f"SET hnsw.ef_search = {ef}")
    sql = f"SELECT id FROM {table} WHERE {where} ORDER BY v <-> %s LIMIT {K}"
    hits, counts, wrong = 0, [], []
    start = time.monotonic()
    for qi, q in enumerate(queries):
        ids = [r[0] for r in conn.execute(sql, (q,))]
        counts.append(len(ids))
        d = dist[qi]
        kth = np.partition(d[mask], K - 1)[K - 1]
        tol = 1e-6 * abs(kth) + 1e-6
        for i in ids:
            if not mask[i]:
                wrong.append((qi, i))
            elif d[i] <= kth + tol:
                hits += 1
    conn.execute("RESET hnsw.filter_strategy")
    conn.execute("RESET hnsw.ef_search")
    r = Result(where, strategy, hits / (len(queries) * K), counts, wrong, time.monotonic() - start)
    print(r)
    return r


def assert_good(r, floor=FLOOR):
    floor = EXACT_FLOOR if r.strategy == "exact" else floor
    assert not r.wrong, f"rows returned that do not satisfy the condition or are deleted: {r}"
    assert not r.short, f"queries that did not return {K} rows: {r}"
    assert r.recall >= floor, f"recall@10 {r.recall:.4f} < {floor}: {r}"


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


@pytest.fixture(scope="module")
def data():
    base = read_idx(f"{DATA}/train-images-idx3-ubyte.gz", ROWS)
    queries = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz", QUERIES)
    # Exact distances: the pixels are integers, so the squared distances are exact in float64.
    b, q = base.astype(np.float64), queries.astype(np.float64)
    d2 = (q * q).sum(axis=1)[:, None] - 2.0 * (q @ b.T) + (b * b).sum(axis=1)[None, :]
    dist = np.sqrt(np.maximum(np.rint(d2), 0.0))
    return base, queries, dist


@pytest.fixture(scope="module")
def items(dsn, data):
    """`items`: the 50,000 rows, bulk loaded, then the index built on them."""
    base, _, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"CREATE TABLE items ({COLUMNS}) WITH (autovacuum_enabled = off)")
        copy_rows(conn, "items", base, range(ROWS))
        start = time.monotonic()
        conn.execute(f"CREATE INDEX items_hnsw ON items {INDEX}")
        print(f"items: index built in {time.monotonic() - start:.1f}s")
        conn.execute("ANALYZE items")
    return "items"


@pytest.fixture(scope="module")
def grown(dsn, data):
    """`grown`: the index built on the first 40,000 rows, the other 10,000 inserted by 4
    concurrent clients with INSERT statements."""
    base, _, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"CREATE TABLE grown ({COLUMNS}) WITH (autovacuum_enabled = off)")
        copy_rows(conn, "grown", base, range(INITIAL))
        conn.execute(f"CREATE INDEX grown_hnsw ON grown {INDEX}")
        check(conn, "grown_hnsw")
    clients = 4
    sql = f"INSERT INTO grown ({', '.join(NAMES)}) VALUES ({', '.join(['%s'] * len(NAMES))})"

    def insert(part):
        with psycopg.connect(dsn, autocommit=True) as c:
            register_vector(c)
            with c.cursor() as cur:
                for i in range(INITIAL + part, ROWS, clients):
                    cur.execute(sql, row(i, base[i]))

    start = time.monotonic()
    run_clients(clients, insert)
    print(f"grown: {ROWS - INITIAL} rows inserted by {clients} clients in {time.monotonic() - start:.1f}s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE grown")
    return "grown"


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        register_vector(c)
        yield c


IDS = np.arange(ROWS)


# 1. Filtered recall, 10% / 1% / 0.1%, every strategy.
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("where", list(SELECTIVITY))
def test_filtered_recall(conn, items, data, where, strategy):
    _, queries, dist = data
    assert_good(measure(conn, items, where, SELECTIVITY[where](IDS), dist, queries, strategy))


# 2-4. ANDed conditions, arrays, IN / ANY / ranges / <> / cross-type (auto; exact as a check
# of the filter's evaluation).
@pytest.mark.parametrize("strategy", ["auto", "exact"])
@pytest.mark.parametrize("where", list(ANDED) + list(ARRAYS) + list(OTHERS))
def test_condition_shapes(conn, items, data, where, strategy):
    _, queries, dist = data
    assert_good(measure(conn, items, where, SHAPES[where](IDS), dist, queries, strategy))


# 3/4. The rows returned satisfy the condition as the server itself evaluates it on the heap.
@pytest.mark.parametrize("where", list(ARRAYS) + list(OTHERS))
def test_returned_rows_satisfy_condition(conn, items, data, where):
    _, queries, _ = data
    for q in queries[:20]:
        rows = conn.execute(
            f"SELECT id, ({where}) FROM (SELECT id, c10, c100, c1000, c7, tag, labels FROM {items} "
            f"WHERE {where} ORDER BY v <-> %s LIMIT {K}) s",
            (q,),
        ).fetchall()
        assert len(rows) == K and all(ok for _, ok in rows), (where, rows)


# 5. Every shape is an index condition of an hnsw index scan.
@pytest.mark.parametrize("where", list(SHAPES))
def test_plan_uses_index_cond(conn, items, data, where):
    _, queries, _ = data
    assert_index_plan(plan(conn, items, where, queries[0]), "items_hnsw")


# 1b. Non-matching elements never count toward ef_search: with iterative scans off, the first
# (and only) batch still holds 10 matching rows.
@pytest.mark.parametrize("strategy", ["auto", "graph"])
@pytest.mark.parametrize("where", list(SELECTIVITY))
def test_filtered_scan_without_iterative_scan(conn, items, data, where, strategy):
    _, queries, dist = data
    conn.execute("SET hnsw.iterative_scan = off")
    assert_good(measure(conn, items, where, SELECTIVITY[where](IDS), dist, queries[:30], strategy))


# 6. The index is consistent after the build (after inserts and VACUUM: tests 7 and 8).
def test_check_after_build(conn, items):
    report = check(conn, "items_hnsw")
    print(report)


# 7. Concurrent online inserts.
@pytest.mark.parametrize("where", list(SELECTIVITY))
def test_recall_after_concurrent_inserts(conn, grown, data, where):
    _, queries, dist = data
    assert conn.execute(f"SELECT count(*) FROM {grown}").fetchone()[0] == ROWS
    assert_good(measure(conn, grown, where, SELECTIVITY[where](IDS), dist, queries, "auto"))


def test_check_after_concurrent_inserts(conn, grown):
    print(check(conn, "grown_hnsw"))


# 8. Deletes, VACUUM, re-inserts (on `grown`, after test 7). 30% of the rows, spread over every
# filter value, so that dead rows match the filters too.
DEAD = "(id / 7) % 10 < 3"


def test_deletes_vacuum_reinsert(conn, grown, data):
    base, queries, dist = data
    dead = (IDS // 7) % 10 < 3
    alive = ~dead
    print(f"deleting {dead.sum()} rows of {ROWS}")
    full = index_size(conn, "grown_hnsw")
    conn.execute(f"DELETE FROM {grown} WHERE {DEAD}")
    start = time.monotonic()
    vacuum_until_clean(conn, grown, "")
    print(f"VACUUM {time.monotonic() - start:.1f}s")
    print(check(conn, "grown_hnsw"))
    results = [measure(conn, grown, "true", alive, dist, queries, "auto")]
    for where in SELECTIVITY:
        results.append(measure(conn, grown, where, SELECTIVITY[where](IDS) & alive, dist, queries, "auto"))
    for r in results:
        # The 0.1% filter keeps 35 live rows; still >= 10.
        assert_good(r)

    # The deleted rows again: they take the freed places.
    start = time.monotonic()
    copy_rows(conn, grown, base, np.nonzero(dead)[0])
    print(f"re-inserted {dead.sum()} rows in {time.monotonic() - start:.1f}s")
    conn.execute(f"ANALYZE {grown}")
    after = index_size(conn, "grown_hnsw")
    print(f"index size: {full} before the deletes, {after} after re-inserting")
    assert after <= full * 1.05, f"index grew from {full} to {after} bytes ({after / full - 1:+.1%}): freed slots not reused"
    print(check(conn, "grown_hnsw"))
    for where in SELECTIVITY:
        assert_good(measure(conn, grown, where, SELECTIVITY[where](IDS), dist, queries, "auto"))


# 9. NULL filter values (a small table: every 7th row has c10 NULL).
N_NULLS = 5000


@pytest.fixture(scope="module")
def nulls(dsn, data):
    base, _, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE nulls (id int NOT NULL, v vector(784), c10 int) WITH (autovacuum_enabled = off)")
        with conn.cursor().copy("COPY nulls (id, v, c10) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "int4"])
            for i in range(N_NULLS):
                copy.write_row((i, base[i], None if i % 7 == 0 else i % 10))
        conn.execute("CREATE INDEX nulls_hnsw ON nulls USING hnsw (v vector_l2_ops, c10) WITH (m = 16, ef_construction = 64)")
        conn.execute("ANALYZE nulls")
        check(conn, "nulls_hnsw")
    return "nulls"


NULL_IDS = np.arange(N_NULLS)
IS_NULL = NULL_IDS % 7 == 0
NULL_SHAPES = {
    # A NULL stored as 0 (or as anything) must not match.
    "c10 = 0": (NULL_IDS % 10 == 0) & ~IS_NULL,
    "c10 <> 3": (NULL_IDS % 10 != 3) & ~IS_NULL,
    "c10 < 2": (NULL_IDS % 10 < 2) & ~IS_NULL,
    "c10 IN (0, 5)": np.isin(NULL_IDS % 10, [0, 5]) & ~IS_NULL,
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("where", list(NULL_SHAPES))
def test_null_values_never_match(conn, nulls, data, where, strategy):
    _, queries, dist = data
    # A 5,000-row table: the planner may prefer Seq Scan + Sort; the index is what is tested.
    conn.execute("SET enable_seqscan = off")
    assert_index_plan(plan(conn, nulls, where, queries[0]), "nulls_hnsw")
    r = measure(conn, nulls, where, NULL_SHAPES[where], dist[:, :N_NULLS], queries, strategy)
    assert_good(r)


def test_is_null_is_a_filter(conn, nulls, data):
    _, queries, dist = data
    # On this 5,000-row table the planner picks Seq Scan + Sort for IS NULL; force the index.
    conn.execute("SET enable_seqscan = off")
    assert_index_plan(plan(conn, nulls, "c10 IS NULL", queries[0]), "nulls_hnsw", cond=False, filt=True)
    assert_good(measure(conn, nulls, "c10 IS NULL", IS_NULL, dist[:, :N_NULLS], queries, "auto"))


# 10. A condition on a column outside the index: a Filter, answered by the iterative scan.
@pytest.mark.parametrize(
    "where,mask,index_cond",
    [("c3 = 0", IDS % 3 == 0, False), ("c10 = 3 AND c3 = 0", (IDS % 10 == 3) & (IDS % 3 == 0), True)],
    ids=["c3", "c10+c3"],
)
def test_condition_outside_index_is_a_filter(conn, items, data, where, mask, index_cond):
    _, queries, dist = data
    p = plan(conn, items, where, queries[0])
    assert_index_plan(p, "items_hnsw", cond=index_cond, filt=True)
    assert any(line.strip().startswith("Filter:") and "c3" in line for line in p), "\n".join(p)
    assert_good(measure(conn, items, where, mask, dist, queries, "auto"), floor=0.9)


# 11. The other filter column types, on a small table: int2, int8, bool, date, timestamptz,
# uuid, int8[], text[] (8 filter columns, the most an index can have).
N_TYPES = 5000
TYPED = [
    # (column, type, value of row i as SQL over generate_series column i)
    ("s", "int2", "(i % 10)::int2"),
    ("b8", "int8", "(i % 10)::int8 * 10000000000"),
    ("flag", "bool", "i % 4 = 0"),
    ("day", "date", "date '2024-01-01' + i % 30"),
    ("ts", "timestamptz", "timestamptz '2024-01-01 00:00:00+00' + (i % 24) * interval '1 hour'"),
    ("u", "uuid", "('00000000-0000-0000-0000-' || lpad((i % 10)::text, 12, '0'))::uuid"),
    ("a8", "int8[]", "ARRAY[(i % 10)::int8, 100 + (i % 7)::int8]"),
    ("at", "text[]", "ARRAY['x' || i % 10, 'y' || i % 7]"),
]
TYPED_SHAPES = {
    "s = 3": lambda i: i % 10 == 3,
    "s IN (1, 2)": lambda i: np.isin(i % 10, [1, 2]),
    "b8 = 30000000000": lambda i: i % 10 == 3,
    "b8 > 80000000000": lambda i: i % 10 == 9,
    "flag > false": lambda i: i % 4 == 0,
    "flag = ANY('{f}')": lambda i: i % 4 != 0,
    "day = date '2024-01-05'": lambda i: i % 30 == 4,
    "day < date '2024-01-03'": lambda i: i % 30 < 2,
    "ts >= timestamptz '2024-01-01 22:00:00+00'": lambda i: i % 24 >= 22,
    "u = '00000000-0000-0000-0000-000000000007'": lambda i: i % 10 == 7,
    "a8 && '{3,104}'": lambda i: (i % 10 == 3) | (i % 7 == 4),
    "a8 @> '{3,104}'": lambda i: (i % 10 == 3) & (i % 7 == 4),
    "at && '{x5}'": lambda i: i % 10 == 5,
    "at @> '{x5,y2}'": lambda i: (i % 10 == 5) & (i % 7 == 2),
    "s = 4 AND b8 >= 40000000000 AND at && '{y1}'": lambda i: (i % 10 == 4) & (i % 7 == 1),
}


@pytest.fixture(scope="module")
def typed(dsn, data):
    base, _, _ = data
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE typed (id int NOT NULL, v vector(784)) WITH (autovacuum_enabled = off)")
        with conn.cursor().copy("COPY typed (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in range(N_TYPES):
                copy.write_row((i, base[i]))
        conn.execute(
            "CREATE TABLE typed2 AS SELECT t.id AS id, t.v, "
            + ", ".join(f"{expr} AS {col}" for col, _, expr in TYPED)
            + " FROM (SELECT id AS i, * FROM typed) t"
        )
        for col, typ, _ in TYPED:
            got = conn.execute(f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'typed2'::regclass AND attname = '{col}'").fetchone()[0]
            assert got in (typ, {"int2": "smallint", "int8": "bigint", "bool": "boolean", "int8[]": "bigint[]",
                                 "timestamptz": "timestamp with time zone", "text[]": "text[]"}.get(typ)), (col, typ, got)
        cols = ", ".join(col for col, _, _ in TYPED)
        conn.execute(f"CREATE INDEX typed_hnsw ON typed2 USING hnsw (v vector_l2_ops, {cols}) WITH (m = 16, ef_construction = 64)")
        conn.execute("ANALYZE typed2")
        check(conn, "typed_hnsw")
    return "typed2"


def test_ninth_filter_column_is_refused(conn, typed):
    cols = ", ".join(col for col, _, _ in TYPED)
    with pytest.raises(psycopg.Error, match="at most 8"):
        conn.execute(f"CREATE INDEX ON typed2 USING hnsw (v vector_l2_ops, {cols}, id)")


@pytest.mark.parametrize("strategy", ["auto", "graph", "exact"])
@pytest.mark.parametrize("where", list(TYPED_SHAPES))
def test_other_column_types(conn, typed, data, where, strategy):
    _, queries, dist = data
    ids = np.arange(N_TYPES)
    # A 5,000-row table: for the shapes matching 20% or more (s IN (1, 2), a8 && '{3,104}',
    # flag > false, ...) the planner prefers Seq Scan + Sort; the index is what is tested.
    conn.execute("SET enable_seqscan = off")
    assert_index_plan(plan(conn, typed, where, queries[0]), "typed_hnsw")
    assert_good(measure(conn, typed, where, TYPED_SHAPES[where](ids), dist[:, :N_TYPES], queries[:30], strategy))


# 11b. The natural spellings of a boolean condition. PostgreSQL folds `flag = true` into `flag`
# and `flag = false` into `NOT flag`, and the planner matches such bare boolean clauses to
# index columns only for btree / hash boolean operator families; unless the extension turns
# them into index conditions itself, they stay a Filter (correct rows, but no filtered walk).
@pytest.mark.parametrize("where", ["flag", "flag = true", "NOT flag", "flag = false"])
def test_bool_conditions_are_index_conds(conn, typed, data, where):
    _, queries, dist = data
    conn.execute("SET enable_seqscan = off")
    mask = (np.arange(N_TYPES) % 4 == 0) == ("NOT" not in where and "false" not in where)
    assert_good(measure(conn, typed, where, mask, dist[:, :N_TYPES], queries[:30], "auto"))
    assert_index_plan(plan(conn, typed, where, queries[0]), "typed_hnsw")
