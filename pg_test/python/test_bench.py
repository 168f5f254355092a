"""Tests of the benchmark tool, bench/hnsw_bench.py.

One end-to-end run of ``--quick`` mode (10k MiniLM rows, or fashion-mnist rows without ../shared, a few ef_search values, 1 and 2 clients,
a 10% filter) against the server of HNSW_EXT_TEST_DSN, in a database of its own that is dropped
afterwards; the tests then check its JSON lines, its PNG and the recall it measured. A few unit
tests of the recall and ratio arithmetic need no server.

Run with:  python3 -m pytest -q pg_test/python/test_bench.py
"""

import json
import os
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from hnswbench import groundtruth, report  # noqa: E402

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")
MINILM = REPO.parent / "shared" / "data" / "minilm-384-base.npy"
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
# MiniLM where the shared data set sits beside the checkout; fashion-mnist (installed by
# .ci/setup and .ci/test from Debian) everywhere else, so the quick run always happens.
DATASET = os.environ.get("HNSW_EXT_BENCH_DATASET") or ("minilm" if MINILM.exists() else "fashion-mnist")
# (dims, metric, opclass) the quick run must report for that data set.
EXPECT = {"minilm": (384, "cosine", "vector_cosine_ops"), "fashion-mnist": (784, "l2", "vector_l2_ops")}[DATASET]
QUICK_LIMIT_S = 120

# What --quick runs (see QUICK in bench/hnswbench/cli.py).
QUICK_ROWS, QUICK_EF, QUICK_CLIENTS, QUICK_FILTERS, K = 10_000, [10, 20, 40, 100, 200], [1, 2], [0.1], 10

COMMON_KEYS = {"type", "run_id"}
KEYS = {
    "run": {"tool_version", "started_at", "argv", "quick", "dataset", "config", "host"},
    "build": {"dataset", "ext", "ext_version", "database", "settings", "load_s", "vacuum_analyze_s", "build_s",
              "build_phases", "parallel_workers_seen", "progress_reported", "reused", "index_bytes", "table_bytes",
              "bytes_per_vector", "rows", "dim", "opclass", "m", "ef_construction", "workers"},
    "query": {"dataset", "ext", "filter", "filter_rows", "ef_search", "clients", "k", "queries", "recall",
              "recall_min", "rows_per_query", "short_answers", "duplicate_answers", "invalid_id_answers", "qps",
              "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "wall_s", "plan_uses_index", "plan", "seq_scans",
              "index_scans", "session"},
    "summary": {"dataset", "elapsed_s", "failed", "jsonl", "png"},
}
SETTINGS = {"shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers", "work_mem", "server_version"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Run ``hnsw_bench.py --quick`` once; yields (completed process, seconds, records, png path)."""
    if DATASET == "fashion-mnist" and not FASHION.exists():
        pytest.fail(f"neither {MINILM} nor {FASHION} is present")
    tmp = tmp_path_factory.mktemp("bench")
    dbname = f"hnsw_ext_pytest_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, str(REPO / "bench" / "hnsw_bench.py"), "--dataset", DATASET, "--quick", "--dsn", DSN,
           "--db", dbname, "--drop", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "quick")]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
        elapsed = time.monotonic() - start
        jsonl = tmp / "quick.jsonl"
        lines = jsonl.read_text().splitlines() if jsonl.exists() else []
        yield proc, elapsed, lines, tmp / "quick.png"
    finally:
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _records(quick):
    return [json.loads(line) for line in quick[2]]


def _explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def test_quick_run_succeeds_in_time(quick):
    proc, elapsed, _, _ = quick
    assert proc.returncode == 0, _explain(proc)
    assert elapsed < QUICK_LIMIT_S, f"--quick took {elapsed:.0f}s"
    assert "recall@10" in proc.stdout


def test_jsonl_well_formed(quick):
    proc = quick[0]
    lines = quick[2]
    assert lines, _explain(proc)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) for r in records)
    types = [r["type"] for r in records]
    assert types[0] == "run" and types[-1] == "summary", types
    assert "error" not in types, [r for r in records if r["type"] == "error"]
    assert types.count("build") == 1
    assert types.count("query") == len(QUICK_EF) * len(QUICK_CLIENTS) * (1 + len(QUICK_FILTERS))
    assert len({r["run_id"] for r in records}) == 1
    for r in records:
        missing = (COMMON_KEYS | KEYS[r["type"]]) - r.keys()
        assert not missing, f"{r['type']} record lacks {missing}"


def test_run_and_build_records(quick):
    records = _records(quick)
    run = records[0]
    assert run["quick"] is True
    assert run["dataset"]["rows"] == QUICK_ROWS and run["dataset"]["dim"] == EXPECT[0]
    assert run["dataset"]["metric"] == EXPECT[1]
    assert run["config"]["ef_search"] == QUICK_EF and run["config"]["clients"] == QUICK_CLIENTS
    build = next(r for r in records if r["type"] == "build")
    assert build["ext"] == "hnsw_ext" and build["rows"] == QUICK_ROWS
    assert SETTINGS <= build["settings"].keys()
    assert build["opclass"] == EXPECT[2] and build["m"] == 16 and build["ef_construction"] == 64
    assert 0 < build["load_s"] < QUICK_LIMIT_S and 0 < build["build_s"] < QUICK_LIMIT_S
    assert build["index_bytes"] > 0 and build["index_bytes"] % 8192 == 0
    assert build["bytes_per_vector"] == pytest.approx(build["index_bytes"] / QUICK_ROWS)
    assert 0 < build["bytes_per_vector"] < 100_000
    summary = records[-1]
    assert summary["failed"] == [] and 0 < summary["elapsed_s"] < QUICK_LIMIT_S


def test_query_records_sane(quick):
    seen = set()
    for r in _records(quick):
        if r["type"] != "query":
            continue
        seen.add((r["filter"], r["ef_search"], r["clients"]))
        assert r["k"] == K and r["queries"] == 500 * r["clients"]
        assert 0.0 <= r["recall_min"] <= r["recall"] <= 1.0
        assert 0.0 <= r["rows_per_query"] <= K
        assert r["qps"] > 0 and r["wall_s"] > 0
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["duplicate_answers"] == 0 and r["invalid_id_answers"] == 0
        assert r["session"]["hnsw.ef_search"] == r["ef_search"]
        # --quick forces the index, so every setting must really have used it.
        assert r["plan_uses_index"] and r["seq_scans"] == 0, r["plan"]
        if r["filter"] is None:
            assert r["filter_rows"] == QUICK_ROWS and r["rows_per_query"] == K
        else:
            assert r["filter_rows"] == round(QUICK_ROWS * r["filter"])
    assert seen == {(f, ef, c) for f in [None] + QUICK_FILTERS for ef in QUICK_EF for c in QUICK_CLIENTS}


def test_recall_at_highest_ef(quick):
    queries = [r for r in _records(quick) if r["type"] == "query" and r["filter"] is None]
    top = max(r["ef_search"] for r in queries)
    for r in queries:
        if r["ef_search"] == top:
            assert r["recall"] >= 0.99, f"recall@10 {r['recall']:.4f} at ef_search {top} with {r['clients']} clients"
    low = min(r["ef_search"] for r in queries)
    recall = {r["ef_search"]: r["recall"] for r in queries if r["clients"] == 1}
    assert recall[top] >= recall[low]


def test_png_valid(quick):
    png = quick[3]
    assert png.exists(), _explain(quick[0])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])  # IHDR checksum
    assert data.endswith(b"IEND\xaeB`\x82")


# --- unit tests of the arithmetic (no server) --------------------------------------------------


def test_recall_counts_ties():
    base = np.array([[0.0], [1.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    queries = np.array([[0.0]], dtype=np.float32)
    gt = groundtruth.brute_force_knn(base, queries, "l2", 2)
    assert gt.ids[0].tolist() == [0, 1] and gt.dists[0].tolist() == [0.0, 1.0]
    # Row 2 ties with row 1 at the 2nd distance: a hit.
    assert groundtruth.recall(base, queries, "l2", [(0, [0, 2])], gt, 2)["recall"] == 1.0
    res = groundtruth.recall(base, queries, "l2", [(0, [0, 3])], gt, 2)
    assert res["recall"] == 0.5 and res["rows_per_query"] == 2
    res = groundtruth.recall(base, queries, "l2", [(0, [1])], gt, 2)
    assert res["recall"] == 0.5 and res["short_answers"] == 1
    res = groundtruth.recall(base, queries, "l2", [(0, [1, 1])], gt, 2)
    assert res["recall"] == 0.5 and res["duplicate_answers"] == 1


def test_brute_force_matches_numpy():
    rng = np.random.default_rng(7)
    base = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((20, 24)).astype(np.float32)
    for metric in ("l2", "cosine", "ip", "l1"):
        gt = groundtruth.brute_force_knn(base, queries, metric, 10, base_block=700)
        for i, q in enumerate(queries):
            d = groundtruth.exact_distances(base, np.arange(len(base)), q, metric)
            assert gt.ids[i].tolist() == np.argsort(d, kind="stable")[:10].tolist(), metric


def test_qps_at_recall_interpolates():
    pts = [(0.90, 1000.0), (0.96, 500.0), (0.995, 100.0)]
    q, how = report.qps_at_recall(pts, 0.95)
    assert how == "interpolated" and 500 < q < 1000
    assert q == pytest.approx(np.exp(np.log(1000) + (0.05 / 0.06) * (np.log(500) - np.log(1000))))
    assert report.qps_at_recall(pts, 0.999) == (None, "not reached")
    assert report.qps_at_recall(pts, 0.5)[1] == "lower bound"


def test_compare_ratios():
    recs = [
        {"type": "build", "ext": "a", "build_s": 10.0, "index_bytes": 100, "load_s": 1.0},
        {"type": "build", "ext": "b", "build_s": 20.0, "index_bytes": 200, "load_s": 1.0},
    ]
    for ext, scale in (("a", 2.0), ("b", 1.0)):
        for ef, r, q in ((10, 0.9, 1000.0), (40, 0.96, 500.0), (200, 0.995, 100.0)):
            recs.append({"type": "query", "ext": ext, "filter": None, "clients": 1, "ef_search": ef, "recall": r,
                         "qps": q * scale})
    c = report.compare(recs, "a", "b")
    assert c["build_time_ratio"] == 0.5 and c["index_size_ratio"] == 0.5
    assert [x["ratio"] for x in c["qps_at_recall"]] == pytest.approx([2.0, 2.0])
