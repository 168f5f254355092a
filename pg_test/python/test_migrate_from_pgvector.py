"""Migration from pgvector: a plain-SQL pg_dump of a database that used pgvector 0.8.6
(pg_test/fixtures/pgvector-0.8.6.sql, made once by pg_test/fixtures/make_pgvector_fixture.py)
goes through scripts/from-pgvector-dump into a fresh database on a server of our own (port
5479 + HNSW_EXT_PORT_OFFSET). Tables, rows, every hnsw index with its options (indexdef and
reloptions as pgvector had them) and the k-NN answers pgvector gave (ids and distances,
recorded in pgvector-0.8.6-expected.json) must carry over; the ivfflat index is left out, or
rewritten to hnsw with --ivfflat-to-hnsw.
"""

import json
import os
import re
import subprocess

import pytest

from pgcluster import PG_BIN, Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "pg_test", "fixtures")
DUMP = os.path.join(FIXTURES, "pgvector-0.8.6.sql")
FILTER = os.path.join(ROOT, "scripts", "from-pgvector-dump")
PORT = 5479

with open(os.path.join(FIXTURES, "pgvector-0.8.6-expected.json")) as f:
    EXPECTED = json.load(f)

# Parts of the fixture that need features still missing here: a pg_dump section (object) is
# left out of the restore when it mentions one of these names and the feature is absent.
FEATURES = {
    "sparsevec opclasses": (
        "SELECT count(*) = 4 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod"
        " WHERE a.amname = 'hnsw' AND c.opcname LIKE 'sparsevec\\_%\\_ops'",
        ("sparsevec_l2_ops", "sparsevec_ip_ops", "sparsevec_cosine_ops", "sparsevec_l1_ops"),
    ),
    "bit opclasses": (
        "SELECT count(*) = 2 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod"
        " WHERE a.amname = 'hnsw' AND c.opcname IN ('bit_hamming_ops', 'bit_jaccard_ops')",
        ("bit_hamming_ops", "bit_jaccard_ops", "<~>", "<%>"),
    ),
}


def dump_sections(text):
    """The dump cut before each `--\\n-- Name: ...` / `-- Data for Name: ...` header."""
    return re.split(r"(?m)^(?=--\n-- (?:Data for )?Name: )", text)


def index_lines(text):
    return [l[:-1] for l in text.splitlines() if re.match(r"CREATE (UNIQUE )?INDEX ", l)]


def missing_features(conn):
    """Features of FEATURES this build lacks (checked in a database with the extension)."""
    return {name for name, (probe, _) in FEATURES.items() if not conn.execute(probe).fetchone()[0]}


def without(text, missing):
    names = [n for f in missing for n in FEATURES[f][1]]
    return "".join(s for s in dump_sections(text) if not any(n in s for n in names))


def restore(srv, db, *filter_args, missing=()):
    """Filter the fixture and restore it into a new database `db` with psql, stopping at the
    first error; returns the filter's stderr."""
    srv.sql(f"DROP DATABASE IF EXISTS {db}")
    srv.sql(f"CREATE DATABASE {db}")
    with open(DUMP) as f:
        dump = without(f.read(), missing)
    filt = subprocess.run([FILTER, *filter_args], input=dump, capture_output=True, text=True, check=True)
    psql = subprocess.run(
        [f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(srv.port), "-U", "postgres", "-d", db],
        input=filt.stdout,
        capture_output=True,
        text=True,
    )
    assert psql.returncode == 0, psql.stderr
    assert "ERROR" not in psql.stderr, psql.stderr
    return filt.stderr


def check_restored(conn, missing, ivfflat_as_hnsw):
    """Everything the fixture holds is there and answers as pgvector did."""
    with open(DUMP) as f:
        dump = f.read()
    kept = without(dump, missing)
    for table in ("items", "half_items", "sparse_items", "bit_items"):
        if f"CREATE TABLE public.{table} " in kept:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (24,), table
    # indexes: pg_get_indexdef with an empty search_path qualifies names as pg_dump did
    conn.execute("SET search_path = ''")
    got = {r[0]: r[1] for r in conn.execute("SELECT indexname, indexdef FROM pg_catalog.pg_indexes WHERE schemaname = 'public'")}
    conn.execute("RESET search_path")
    for line in index_lines(kept):
        name = line.split()[2]
        if "USING ivfflat" in line:
            if ivfflat_as_hnsw:
                assert got.pop(name) == "CREATE INDEX items_ivf ON public.items USING hnsw (embedding public.vector_l2_ops)"
            else:
                assert name not in got
            continue
        assert got.pop(name) == line
    assert all(n.endswith("_pkey") for n in got), got
    reloptions = dict(conn.execute("SELECT relname::text, reloptions FROM pg_class WHERE relname IN ('items_l2', 'items_ip', 'half_l2', 'items_half_expr')"))
    assert reloptions == {
        "items_l2": ["m=8", "ef_construction=32"],
        "items_ip": ["m=12"],
        "half_l2": ["m=10", "ef_construction=50"],
        "items_half_expr": ["m=6", "ef_construction=24"],
    }
    for (name,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hnsw' ORDER BY 1"
    ).fetchall():
        report = conn.execute("SELECT hnsw_index_check(%s)", (name,)).fetchone()[0]
        assert report.endswith("OK"), (name, report)


def check_answers(conn, name):
    """The k-NN query `name` of the expected answers, through an hnsw index: the same ids at
    the same distances as pgvector's exact answer (ties may come in either order)."""
    q = EXPECTED["queries"][name]
    where = f"WHERE {q['where']}" if q["where"] else ""
    sql = f"SELECT id, ({q['order_by']})::float8 FROM {q['table']} {where} ORDER BY {q['order_by']} LIMIT 10"
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql))
    assert "Index Scan using" in plan, plan
    got = conn.execute(sql).fetchall()
    conn.execute("RESET enable_seqscan")
    want = q["rows"]
    dist = dict((i, d) for i, d in want)
    assert len(got) == min(10, len(want))
    for (gid, gd), (_, wd) in zip(got, want):
        assert gd == pytest.approx(wd, rel=1e-6, abs=1e-6), (name, got, want[:10])
        assert dist[gid] == pytest.approx(gd, rel=1e-6, abs=1e-6), (name, got, want[:10])


def feature_of(query_name):
    table = EXPECTED["queries"][query_name]["table"]
    return {"sparse_items": "sparsevec opclasses", "bit_items": "bit opclasses"}.get(table)


@pytest.fixture(scope="module")
def server(request):
    srv = Server("migrate", PORT)
    request.addfinalizer(srv.cleanup)
    srv.init().start()
    srv.sql("CREATE DATABASE probe")
    with _connect(srv, "probe") as c:
        c.execute("CREATE EXTENSION hnsw_ext")
        srv.missing = missing_features(c)
    return srv


def _connect(srv, db):
    import psycopg

    return psycopg.connect(srv.dsn.replace("dbname=postgres", f"dbname={db}"), autocommit=True)


@pytest.fixture(scope="module", params=["plain", "ivfflat_to_hnsw"])
def restored(request, server):
    db = f"restored_{request.param}"
    args = ["--ivfflat-to-hnsw"] if request.param == "ivfflat_to_hnsw" else []
    notes = restore(server, db, *args, missing=server.missing)
    assert "extension vector -> hnsw_ext" in notes
    assert ("rewritten" if args else "not restored") in notes and "items_ivf" in notes
    with _connect(server, db) as conn:
        check_restored(conn, server.missing, bool(args))
    return server, db


@pytest.mark.parametrize("query", sorted(EXPECTED["queries"]))
def test_knn_answers_match_pgvector(restored, query):
    server, db = restored
    feature = feature_of(query)
    if feature in server.missing:
        pytest.xfail(f"{feature} not implemented in this build (left out of the restore)")
    with _connect(server, db) as conn:
        check_answers(conn, query)


def test_fixture_contains_every_part():
    """The dump has all it should: every opclass, options, expression and partial indexes."""
    with open(DUMP) as f:
        text = f.read()
    assert "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;" in text
    assert EXPECTED["pgvector_version"] == "0.8.6"
    for ops in ("vector_l2_ops", "vector_ip_ops", "vector_cosine_ops", "vector_l1_ops", "halfvec_l2_ops", "halfvec_ip_ops",
                "halfvec_cosine_ops", "halfvec_l1_ops", "sparsevec_l2_ops", "sparsevec_ip_ops", "sparsevec_cosine_ops",
                "sparsevec_l1_ops", "bit_hamming_ops", "bit_jaccard_ops"):
        assert f"public.{ops})" in text, ops
    assert "USING ivfflat" in text and "WHERE (category = 1)" in text and "::public.halfvec(3)" in text
