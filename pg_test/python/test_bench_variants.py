"""Tests of the benchmark tool's index options: ``--with``, ``--variants``, ``--rounds`` and the
``walk_bytes`` figures (bench/hnsw_bench.py).

Two small runs (2000 rows, 50 queries, ef_search 10 and 40, 1 client) against the server of
HNSW_EXT_TEST_DSN, each in a database of its own that is dropped afterwards:

- ``--with ef_construction=32 --variants "m=8;m=12"``: one table load, one build record and one
  curve per variant, with the right options in the index and in the records;
- ``--with m=8 --variants ";bogus_option=1"`` in a database that has a function
  ``hnsw_walk_size(regclass)`` (the extension's own where it has one, else a stand-in): the
  variant the server rejects becomes an ``error`` record without stopping the run, and the other
  reports ``walk_bytes`` from that function.

Whether or not the installed hnsw_ext has ``hnsw_walk_size``, the first run must work (its
``walk_bytes`` is then null or the function's answer). Unit tests of the option parsing, the run
order and the per-label ratios need no server.

Run with:  python3 -m pytest -q pg_test/python/test_bench_variants.py
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from hnswbench import cli, db, report  # noqa: E402

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")
MINILM = REPO.parent / "shared" / "data" / "minilm-384-base.npy"
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
DATASET = os.environ.get("HNSW_EXT_BENCH_DATASET") or ("minilm" if MINILM.exists() else "fashion-mnist")
ROWS, NQ = 2000, 50
SMALL = ["--rows", str(ROWS), "--nq", str(NQ), "--ef", "10,40", "--clients", "1", "--warmup", "5", "--force-index"]


def _run_bench(tmp: Path, name: str, dbname: str, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    if DATASET == "fashion-mnist" and not FASHION.exists():
        pytest.fail(f"neither {MINILM} nor {FASHION} is present")
    cmd = [sys.executable, str(REPO / "bench" / "hnsw_bench.py"), "--dataset", DATASET, *SMALL, "--dsn", DSN,
           "--db", dbname, "--cache-dir", str(tmp / "cache"), "--out", str(tmp / name), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    jsonl = tmp / f"{name}.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    return proc, records


def _explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


@pytest.fixture
def dbname():
    """A fresh database name; the database is dropped afterwards."""
    name = f"hnsw_ext_pytest_variants_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_variants_share_the_table_and_rebuild_the_index(tmp_path, dbname):
    proc, records = _run_bench(tmp_path, "variants", dbname, "--with", "ef_construction=32",
                               "--variants", "m=8;m=12")
    assert proc.returncode == 0, _explain(proc)
    types = [r["type"] for r in records]
    assert "error" not in types, [r for r in records if r["type"] == "error"]
    labels = ["hnsw_ext[ef_construction=32,m=8]", "hnsw_ext[ef_construction=32,m=12]"]
    run = records[0]
    assert run["config"]["with"] == {"ef_construction": 32}
    assert run["config"]["variants"] == [{"m": 8}, {"m": 12}] and run["config"]["runs"] == labels
    builds = [r for r in records if r["type"] == "build"]
    assert [b["label"] for b in builds] == labels
    for b, m in zip(builds, (8, 12)):
        assert b["ext"] == "hnsw_ext" and b["round"] == 1
        assert b["with"] == {"ef_construction": 32, "m": m}
        assert b["m"] == m and b["ef_construction"] == 32
        assert b["rows"] == ROWS and b["index_bytes"] > 0
        assert b["bytes_per_vector"] == pytest.approx(b["index_bytes"] / ROWS)
        # Null where the installed hnsw_ext has no hnsw_walk_size, else its answer.
        if b["walk_bytes"] is None:
            assert b["walk_bytes_per_vector"] is None
        else:
            assert 0 < b["walk_bytes"] <= b["index_bytes"]
            assert b["walk_bytes_per_vector"] == pytest.approx(b["walk_bytes"] / ROWS)
    # The data is loaded once; the second variant keeps the table and builds its own index.
    assert builds[0]["reused_table"] is False and builds[1]["reused_table"] is True
    assert builds[0]["reused"] is False and builds[1]["reused"] is False
    lines = proc.stdout.splitlines()
    assert sum(x.startswith("loaded ") for x in lines) == 1 and sum(x.startswith("index built") for x in lines) == 2
    assert sum(x.startswith("reusing table") for x in lines) == 1
    for b in builds:
        queries = [r for r in records if r["type"] == "query" and r["label"] == b["label"]]
        assert sorted(q["ef_search"] for q in queries) == [10, 40]
        assert all(q["plan_uses_index"] and q["seq_scans"] == 0 for q in queries)
    assert set(report.curves(records)) == {(label, None, 1) for label in labels}
    # The index left behind is the last variant's, built with its options.
    with psycopg.connect(db.db_conninfo(DSN, dbname), autocommit=True) as conn:
        opts = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (db.INDEX,)).fetchone()[0]
    assert sorted(opts) == ["ef_construction=32", "m=12"]
    assert (tmp_path / "variants.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejected_variant_and_walk_size(tmp_path, dbname):
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(db.db_conninfo(DSN, dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION hnsw_ext")
        if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'hnsw_walk_size')").fetchone()[0]:
            # Stand-in until the extension has its own: a quarter of the index.
            conn.execute("CREATE FUNCTION hnsw_walk_size(regclass) RETURNS bigint LANGUAGE sql "
                         "AS $$ SELECT pg_relation_size($1) / 4 $$")
    proc, records = _run_bench(tmp_path, "walk", dbname, "--with", "m=8", "--variants", ";bogus_option=1")
    assert proc.returncode == 1, _explain(proc)  # one run failed, the other went on
    errors = [r for r in records if r["type"] == "error"]
    assert [e["label"] for e in errors] == ["hnsw_ext[m=8,bogus_option=1]"], errors
    assert "bogus_option" in errors[0]["message"]
    assert records[-1]["type"] == "summary" and records[-1]["failed"] == ["hnsw_ext[m=8,bogus_option=1]"]
    (build,) = [r for r in records if r["type"] == "build"]
    assert build["label"] == "hnsw_ext[m=8]" and build["m"] == 8 and build["with"] == {"m": 8}
    assert build["walk_bytes"] is not None and 0 < build["walk_bytes"] <= build["index_bytes"]
    assert build["walk_bytes_per_vector"] == pytest.approx(build["walk_bytes"] / ROWS)
    assert "bytes/vector, walk " in proc.stdout


# --- no server ---------------------------------------------------------------------------------


def test_index_options_parsing():
    assert cli.index_options("quantization=sq8, m=8,x=0.5") == {"quantization": "sq8", "m": 8, "x": 0.5}
    assert cli.index_options("") == {}
    for bad in ("quantization", "m=", "a b=1", "m=8,m=9", "=1"):
        with pytest.raises(Exception):
            cli.index_options(bad)
    assert cli.variant_list("quantization=none;quantization=sq8") == [{"quantization": "none"},
                                                                      {"quantization": "sq8"}]
    assert cli.variant_list(";m=8") == [{}, {"m": 8}]


def test_with_clause_quotes_strings_only():
    text = db.with_clause(16, 64, {"quantization": "sq8", "m": 8, "ratio": 0.5, "odd": "it's"}).as_string(None)
    assert text == "m = 16, ef_construction = 64, quantization = 'sq8', ratio = 0.5, odd = 'it''s'"


def test_run_order_alternates_with_compare():
    parser = cli.build_parser()
    args = parser.parse_args(["--compare", "vector", "--with", "quantization=sq8", "--variants", "m=8;m=12;m=24",
                              "--rounds", "2"])
    cfg = cli.resolve(args, parser)
    order = [(r.label, r.round) for r in cfg.runs]
    v = "hnsw_ext[quantization=sq8,m={}] #{}"
    assert order == [(v.format(8, 1), 1), ("vector #1", 1), (v.format(12, 1), 1), (v.format(24, 1), 1),
                     (v.format(8, 2), 2), ("vector #2", 2), (v.format(12, 2), 2), (v.format(24, 2), 2)]
    assert [r.m for r in cfg.runs] == [8, 16, 12, 24] * 2
    assert all(r.options == {} for r in cfg.runs if not r.ours)  # --with is ours only
    single = cli.resolve(parser.parse_args(["--compare", "vector"]), parser)
    assert [r.label for r in single.runs] == ["hnsw_ext", "vector"]
    with pytest.raises(SystemExit):
        cli.resolve(parser.parse_args(["--variants", "m=8;m=8"]), parser)


def test_compare_per_label():
    recs = []
    for label, ext, scale, size in (("hnsw_ext[q=none]", "hnsw_ext", 2.0, 100), ("hnsw_ext[q=sq8]", "hnsw_ext", 4.0, 50),
                                    ("vector", "vector", 1.0, 200)):
        recs.append({"type": "build", "ext": ext, "label": label, "build_s": 10.0, "index_bytes": size,
                     "load_s": 1.0})
        for ef, r, q in ((10, 0.9, 1000.0), (40, 0.96, 500.0), (200, 0.995, 100.0)):
            recs.append({"type": "query", "ext": ext, "label": label, "filter": None, "clients": 1, "ef_search": ef,
                         "recall": r, "qps": q * scale})
    for label, qps_ratio, size_ratio in (("hnsw_ext[q=none]", 2.0, 0.5), ("hnsw_ext[q=sq8]", 4.0, 0.25)):
        c = report.compare(recs, label, "vector")
        assert c["ours"] == label and c["index_size_ratio"] == size_ratio
        assert [x["ratio"] for x in c["qps_at_recall"]] == pytest.approx([qps_ratio, qps_ratio])
