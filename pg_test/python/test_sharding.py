"""Sharded k-NN on PostgreSQL's own machinery (README "Scaling out"): a coordinator and two shard
servers, the collection created by scripts/shard-collection (hash-partitioned table whose
partitions are postgres_fdw foreign tables, an hnsw index with a filter column on each shard),
20k rows loaded through the coordinator. Checks: the sharded top-10 is the exact top-10 at a
high ef_search; each shard's Remote SQL carries the distance ORDER BY and the LIMIT (and the
shards run as an async Append); the coordinator's hnsw settings (per session and SET LOCAL)
are what the shards' scans use; a 1% filter returns k rows and is an Index Cond on the shards;
INSERT / UPDATE / DELETE through the coordinator land on the right shard and are searchable;
a streaming standby of a shard answers the same queries and postgres_fdw can be pointed at it;
a shard that refuses the settings statement makes the query fail with its error.

Servers of their own: coordinator 5460, shards 5461 and 5462, a standby of shard 0 5463
(+ HNSW_EXT_PORT_OFFSET).
"""

import os
import re
import subprocess
import sys

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pgcluster import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "shard-collection")
COORD_PORT, SHARD_PORTS, STANDBY_PORT = 5460, (5461, 5462), 5463
N, DIM, CLUSTERS, CATS, K, QUERIES = 20_000, 64, 40, 100, 10, 30
SETTINGS_VIEW = (
    "CREATE VIEW shard_settings AS SELECT current_setting('hnsw.ef_search') AS ef_search,"
    " current_setting('hnsw.iterative_scan') AS iterative_scan,"
    " current_setting('hnsw.filter_strategy') AS filter_strategy"
)


def make_data(seed=15):
    """Clustered vectors (so a narrow search can miss), a category uniform over CATS values."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32) * 4
    vecs = centers[rng.integers(0, CLUSTERS, N)] + rng.normal(size=(N, DIM)).astype(np.float32)
    cats = rng.integers(0, CATS, N)
    queries = centers[rng.integers(0, CLUSTERS, QUERIES)] + rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    return vecs, cats, queries


def build_collection(coord, shards, vecs, cats):
    """The sharded collection `items` (via scripts/shard-collection) with vecs/cats loaded
    through the coordinator; the same rows in a plain table items_local on the coordinator."""
    args = [
        sys.executable, SCRIPT, "--drop",
        "--coordinator", coord.dsn,
        "--table", "items",
        "--columns", f"id bigint NOT NULL, v vector({vecs.shape[1]}), cat int",
        "--partition-key", "id",
        "--index", "USING hnsw (v vector_l2_ops, cat)",
        "--vector-column", "v",
        "--batch-size", "500",
    ]  # fmt: skip
    for s in shards:
        args += ["--shard", s.dsn]
    subprocess.run(args, check=True, capture_output=True, text=True)
    with coord.connect() as c:
        register_vector(c)
        c.execute("DROP TABLE IF EXISTS items_local")
        c.execute(f"CREATE TABLE items_local (id bigint NOT NULL, v vector({vecs.shape[1]}), cat int)")
        with c.cursor().copy("COPY items_local (id, v, cat) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "vector", "int4"])
            for i in range(len(vecs)):
                cp.write_row((i + 1, vecs[i], int(cats[i])))
        c.execute("INSERT INTO items SELECT * FROM items_local")
        c.execute("ANALYZE items_local")
        c.execute("ANALYZE items")


@pytest.fixture(scope="module")
def cluster(request):
    coord = Server("sharding_coord", COORD_PORT)
    shards = [Server(f"sharding_shard{i}", p) for i, p in enumerate(SHARD_PORTS)]
    standby = Server("sharding_standby", STANDBY_PORT)  # what shards[0].standby() creates
    for s in [standby, *shards, coord]:
        request.addfinalizer(s.cleanup)
    for s in [coord, *shards]:
        s.init().configure(shared_buffers="128MB", max_wal_senders=4).start()
    vecs, cats, queries = make_data()
    build_collection(coord, shards, vecs, cats)
    for i, s in enumerate(shards):
        s.sql(SETTINGS_VIEW)
        coord.sql(
            f"CREATE FOREIGN TABLE shard{i}_settings (ef_search text, iterative_scan text, filter_strategy text)"
            f" SERVER items_shard{i} OPTIONS (table_name 'shard_settings')"
        )
    return coord, shards, standby, vecs, cats, queries


def connect(srv):
    c = srv.connect()
    register_vector(c)
    return c


def exact(c, q, where="true"):
    """The exact top K of the unsharded copy (no index on it: a sequential scan and a sort)."""
    return [r[0] for r in c.execute(f"SELECT id FROM items_local WHERE {where} ORDER BY v <-> %s LIMIT {K}", (q,))]


def sharded(c, q, where=None):
    return [r[0] for r in c.execute(f"SELECT id FROM items_knn(%s, {K}, %s)", (q, where))]


def recall(c, queries, where=None):
    hits = 0
    for q in queries:
        hits += len(set(sharded(c, q, where)) & set(exact(c, q, where or "true")))
    return hits / (K * len(queries))


def shard_settings(c, shard=0):
    return c.execute(f"SELECT ef_search, iterative_scan, filter_strategy FROM shard{shard}_settings").fetchone()


def remote_sqls(plan_lines):
    return [line.split("Remote SQL: ", 1)[1] for line in plan_lines if "Remote SQL: " in line]


def explain_knn(c, q, where=None):
    text = c.execute("SELECT items_knn_sql(%s)", (where,)).fetchone()[0]
    # The statement has native $1 / $2 placeholders: a raw cursor binds them as they are.
    return [r[0] for r in psycopg.RawCursor(c).execute(f"EXPLAIN (VERBOSE) {text}", (q, K))]


def test_sharded_top10_is_exact_top10(cluster):
    coord, _, _, _, _, queries = cluster
    with connect(coord) as c:
        c.execute("SET hnsw.ef_search = 400")
        for q in queries:
            want = exact(c, q)
            assert sharded(c, q) == want
            # The plain query on the partitioned parent (ORDER BY shipped, LIMIT on the coordinator).
            assert [r[0] for r in c.execute(f"SELECT id FROM items ORDER BY v <-> %s LIMIT {K}", (q,))] == want


def test_remote_sql_ships_order_by_and_limit(cluster):
    coord, shards, _, _, _, queries = cluster
    with connect(coord) as c:
        plan = explain_knn(c, queries[0])
        sqls = remote_sqls(plan)
        assert len(sqls) == 2, plan
        for s in sqls:
            assert re.search(r"ORDER BY \(v OPERATOR\(public\.<->\) '\[[^']*\]'\) ASC NULLS LAST LIMIT 10\b", s), s
        assert sum("Async Foreign Scan" in line for line in plan) == 2, plan
        # On the shard that statement is an hnsw index scan under a Limit.
        for shard, s in zip(shards, sqls):
            shard_plan = "\n".join(r[0] for r in shard.sql(f"EXPLAIN {s}"))
            assert "Limit" in shard_plan and "Index Scan using items_hnsw" in shard_plan, shard_plan


def test_settings_reach_the_shards(cluster):
    coord, _, _, _, _, queries = cluster
    q = queries[0]
    with connect(coord) as c:
        # Per session: every statement's remote transaction gets the values current at its start.
        c.execute("SET hnsw.ef_search = 10")
        c.execute("SET hnsw.filter_strategy = exact")
        with c.transaction():
            sharded(c, q)
            assert shard_settings(c, 0) == ("10", "strict_order", "exact")
            assert shard_settings(c, 1) == ("10", "strict_order", "exact")
        # SET LOCAL inside a transaction; relaxed_order reaches the shards as strict_order (the
        # coordinator merges their rows trusting their order).
        with c.transaction():
            c.execute("SET LOCAL hnsw.ef_search = 23")
            c.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            sharded(c, q)
            assert shard_settings(c, 1) == ("23", "strict_order", "exact")
            c.execute("SET LOCAL hnsw.iterative_scan = off")
            c.execute("SELECT id FROM items ORDER BY v <-> %s LIMIT 3", (q,))  # the plain form too
            assert shard_settings(c, 0) == ("23", "off", "exact")
        with c.transaction():
            sharded(c, q)
            assert shard_settings(c, 0) == ("10", "strict_order", "exact")
        c.execute("RESET hnsw.filter_strategy")

        # What the shards do changes. With iterative_scan off a scan returns ef_search rows at
        # most, so each shard sends 3 rows (the coordinator gets 6 of the 10 it asked for)...
        c.execute("SET hnsw.iterative_scan = off")
        c.execute("SET hnsw.ef_search = 3")
        assert [len(sharded(c, q)) for q in queries[:5]] == [6] * 5
        # ... and a narrow search misses rows a wide one finds.
        c.execute("SET hnsw.ef_search = 10")
        narrow = recall(c, queries)
        c.execute("SET hnsw.ef_search = 400")
        wide = recall(c, queries)
        assert narrow < 1.0 and wide == 1.0, (narrow, wide)

        # Without the propagation the shards search with their own default (40), whatever the
        # coordinator's session says.
        c.execute("SET hnsw.shard_settings = off")
        c.execute("SET hnsw.ef_search = 3")
        assert [len(sharded(c, q)) for q in queries[:5]] == [K] * 5
        c.execute("SET hnsw.ef_search = 10")
        unsent = [sharded(c, q) for q in queries]
        with c.transaction():
            sharded(c, q)
            assert shard_settings(c, 0)[0] == "40"
        c.execute("SET hnsw.shard_settings = on")
        c.execute("RESET hnsw.iterative_scan")
        c.execute("SET hnsw.ef_search = 40")
        assert [sharded(c, q) for q in queries] == unsent


def test_filter_one_percent(cluster):
    coord, shards, _, _, cats, queries = cluster
    cat = 7
    assert 0.005 < np.mean(cats == cat) < 0.015
    with connect(coord) as c:
        c.execute("SET hnsw.ef_search = 400")
        for q in queries[:10]:
            rows = c.execute(f"SELECT id, cat FROM items_knn(%s, {K}, 'cat = {cat}')", (q,)).fetchall()
            assert len(rows) == K and all(r[1] == cat for r in rows)
            assert [r[0] for r in rows] == exact(c, q, f"cat = {cat}")
        c.execute("RESET hnsw.ef_search")
        for q in queries[10:15]:  # the default ef_search: still k rows
            assert len(sharded(c, q, f"cat = {cat}")) == K
        sqls = remote_sqls(explain_knn(c, queries[0], f"cat = {cat}"))
        assert len(sqls) == 2
        for shard, s in zip(shards, sqls):
            assert f"WHERE ((cat = {cat}))" in s and "LIMIT 10" in s, s
            shard_plan = "\n".join(r[0] for r in shard.sql(f"EXPLAIN {s}"))
            assert "Index Scan using items_hnsw" in shard_plan and f"Index Cond: (cat = {cat})" in shard_plan, shard_plan


def test_streaming_standby_of_a_shard(cluster):
    coord, shards, _, _, _, queries = cluster
    primary = shards[0]
    sb = primary.standby("sharding_standby", STANDBY_PORT)
    primary.wait_for_replay(sb)
    stmt = f"SELECT id FROM items ORDER BY v <-> %s LIMIT {K}"
    with connect(primary) as p, connect(sb) as s:
        for c in (p, s):
            c.execute("SET hnsw.ef_search = 100")
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        plan = "\n".join(r[0] for r in s.execute("EXPLAIN (COSTS OFF) " + stmt, (queries[0],)))
        assert "Index Scan using items_hnsw" in plan, plan
        for q in queries:
            assert [r[0] for r in s.execute(stmt, (q,))] == [r[0] for r in p.execute(stmt, (q,))]
    # Reads routed to the standby by libpq: a foreign server listing primary and standby with
    # target_session_attrs 'prefer-standby'.
    primary.sql("CREATE VIEW whoami AS SELECT pg_is_in_recovery() AS standby")
    primary.wait_for_replay(sb)
    coord.sql(
        "CREATE SERVER shard0_read FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1,127.0.0.1',"
        f" port '{primary.port},{sb.port}', dbname 'postgres', target_session_attrs 'prefer-standby',"
        " extensions 'hnsw_ext')"
    )
    coord.sql("CREATE USER MAPPING FOR CURRENT_USER SERVER shard0_read")
    coord.sql("CREATE FOREIGN TABLE shard0_whoami (standby bool) SERVER shard0_read OPTIONS (table_name 'whoami')")
    assert coord.sql("SELECT standby FROM shard0_whoami") == [(True,)]


def test_dml_through_the_coordinator(cluster):
    coord, shards, _, vecs, _, _ = cluster
    new_ids = list(range(100_001, 100_021))
    # New rows close to existing ones (0.4 away on average, the nearest other row is ~11): each
    # is its own vector's nearest neighbour and, being like the data, one a search finds at a
    # moderate ef. Rows far out of every cluster were tried first: a search for such a vector
    # can stay in the wrong cluster (3 of 800 at ef_search 100 here, pgvector 6 of 800 on the
    # same data), which is the search's recall on out-of-distribution queries, not routing.
    rng = np.random.default_rng(7)
    fresh = (vecs[rng.choice(N, len(new_ids), replace=False)] + rng.normal(size=(len(new_ids), DIM)) * 0.05).astype(np.float32)
    with connect(coord) as c:
        c.execute("SET hnsw.ef_search = 100")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO items (id, v, cat) VALUES (%s, %s, 5)", list(zip(new_ids, fresh)))
        where = {r[0]: r[1] for r in c.execute("SELECT id, tableoid::regclass::text FROM items WHERE id >= 100001")}
        assert sorted(where) == new_ids
        assert set(where.values()) == {"items_shard0", "items_shard1"}  # both shards got some

        def holder(i):
            held = [n for n, s in enumerate(shards) if s.sql("SELECT count(*) FROM items WHERE id = %s", (i,))[0][0]]
            assert len(held) <= 1, (i, held)
            return held[0] if held else None

        for i in new_ids:
            assert holder(i) == int(where[i][-1]), i
        # Searchable: each new row is its own vector's nearest neighbour, through both query forms.
        for i, v in zip(new_ids, fresh):
            assert sharded(c, v)[0] == i
            assert c.execute("SELECT id FROM items ORDER BY v <-> %s LIMIT 1", (v,)).fetchone()[0] == i

        # UPDATE of the vector: the shard's row (and index) change.
        i = new_ids[0]
        target = vecs[123]
        c.execute("UPDATE items SET v = %s WHERE id = %s", (target, i))
        assert sorted(sharded(c, target)[:2]) == sorted([124, i])
        # UPDATE of the partition key: Postgres would leave the row on its old shard (no row
        # movement out of a foreign partition), so the collection's trigger refuses it; a DELETE
        # and an INSERT in one transaction move it.
        src = int(where[new_ids[1]][-1])
        other = next(j for j in range(200_001, 200_100) if c.execute(
            "SELECT satisfies_hash_partition('items'::regclass, 2, %s, %s::bigint)", (1 - src, j)).fetchone()[0])
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="partition key"):
            c.execute("UPDATE items SET id = %s WHERE id = %s", (other, new_ids[1]))
        assert holder(new_ids[1]) == src and holder(other) is None
        with c.transaction():
            row = c.execute("DELETE FROM items WHERE id = %s RETURNING v, cat", (new_ids[1],)).fetchone()
            c.execute("INSERT INTO items (id, v, cat) VALUES (%s, %s, %s)", (other, *row))
        assert holder(new_ids[1]) is None and holder(other) == 1 - src
        assert sharded(c, fresh[1])[0] == other
        # An UPDATE that keeps the key stays allowed.
        c.execute("UPDATE items SET cat = 6 WHERE id = %s", (other,))
        assert shards[1 - src].sql("SELECT cat FROM items WHERE id = %s", (other,)) == [(6,)]

        # DELETE: gone from its shard and from the results.
        c.execute("DELETE FROM items WHERE id = %s", (new_ids[2],))
        assert holder(new_ids[2]) is None
        assert new_ids[2] not in sharded(c, fresh[2])
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == N + len(new_ids) - 1


def test_a_shard_refusing_the_settings_is_an_error(cluster):
    """The error path of the settings statement: a shard that refuses it (here a role that may
    not run set_config) makes the coordinator's query fail with the shard's error and SQLSTATE,
    as postgres_fdw reports its own remote errors; the session goes on working afterwards, and
    with hnsw.shard_settings = off the same query runs (with the shard's own settings)."""
    coord, shards, *_ = cluster
    shard = shards[0]
    shard.sql("DROP ROLE IF EXISTS hnsw_app")
    shard.sql("CREATE ROLE hnsw_app LOGIN")
    shard.sql("GRANT SELECT ON items TO hnsw_app")
    shard.sql("REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC")
    try:
        coord.sql("DROP SERVER IF EXISTS app_shard0 CASCADE")
        coord.sql(
            f"CREATE SERVER app_shard0 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '{shard.port}',"
            " dbname 'postgres', extensions 'hnsw_ext')"
        )
        coord.sql("CREATE USER MAPPING FOR CURRENT_USER SERVER app_shard0 OPTIONS (user 'hnsw_app')")
        coord.sql(f"CREATE FOREIGN TABLE items_app (id bigint, v vector({DIM}), cat int) SERVER app_shard0 OPTIONS (table_name 'items')")
        q = "[" + ",".join(["0.5"] * DIM) + "]"
        knn = f"SELECT id FROM items_app ORDER BY v <-> '{q}' LIMIT {K}"
        with connect(coord) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="set_config"):
                c.execute(knn)
            assert c.execute("SELECT 1").fetchone() == (1,)
            c.execute("SET hnsw.shard_settings = off")
            assert len(c.execute(knn).fetchall()) == K
            c.execute("RESET hnsw.shard_settings")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(knn)
            # The shards of the collection (superuser mappings) are not affected.
            assert len(sharded(c, np.full(DIM, 0.5, dtype=np.float32))) == K
    finally:
        shard.sql("GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO PUBLIC")
        coord.sql("DROP SERVER IF EXISTS app_shard0 CASCADE")
        shard.sql("DROP OWNED BY hnsw_app")
        shard.sql("DROP ROLE IF EXISTS hnsw_app")
