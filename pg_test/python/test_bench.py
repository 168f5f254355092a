"""Tests of the benchmark tool, bench/hnsw_bench.py.

One end-to-end run of ``--quick`` mode (10k MiniLM rows, or fashion-mnist rows without ../shared, a few ef_search values, 1 and 2 clients,
a 10% filter) against the server of HNSW_EXT_TEST_DSN, in a database of its own that is dropped
afterwards; the tests then check its JSON lines, its PNG and the recall it measured. A few unit
tests of the recall and ratio arithmetic and of the recorded reference figures
(bench/reference/*.json, --reference) need no server.

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

from hnswbench import cli, groundtruth, reference, report  # noqa: E402

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


# --- recorded reference figures (--reference; no server) ----------------------------------------

PGVECTOR_REF = REPO / "bench" / "reference" / "pgvector-0.8.6.json"
REF_EF = [10, 20, 40, 80, 120, 200, 400]


def test_reference_file_structure():
    doc = reference.load(PGVECTOR_REF)
    assert reference.validate(json.loads(PGVECTOR_REF.read_text())) == []
    assert doc["format"] == reference.FORMAT and doc["ext"] == "vector" and doc["ext_version"] == "0.8.6"
    assert reference.label(doc) == "pgvector 0.8.6 (recorded)"
    assert "shared/data/README.md" in doc["source"]
    assert doc["server_settings"] == {"shared_buffers": "4GB", "maintenance_work_mem": "8GB",
                                      "max_parallel_maintenance_workers": "1", "work_mem": "64MB"}
    assert doc["index"]["m"] == 16 and doc["index"]["ef_construction"] == 64 and doc["index"]["workers"] == 1
    assert doc["protocol"]["k"] == 10 and doc["protocol"]["clients"] == 1 and doc["protocol"]["queries"] == 500
    assert "MiB" in doc["units"]["index_mib"]
    entries = {e["dataset"]: e for e in doc["datasets"]}
    assert set(entries) == {"minilm", "fashion-mnist"}
    expect = {
        "minilm": ("cosine", 100_000, 384, 28.2, 195.3, [0.839, 0.920, 0.961, 0.984, 0.990, 0.995, 0.998],
                   [1219, 849, 618, 385, 323, 226, 101]),
        "fashion-mnist": ("l2", 60_000, 784, 21.7, 234.4, [0.971, 0.991, 0.996, 0.999, 0.999, 1.0, 1.0],
                          [1519, 1344, 1102, 724, 605, 486, 332]),
    }
    for name, (metric, rows, dim, build_s, mib, recalls, qps) in expect.items():
        e = entries[name]
        assert (e["metric"], e["rows"], e["dim"], e["k"]) == (metric, rows, dim, 10)
        assert e["build_s"] == build_s and e["index_mib"] == mib
        assert reference.index_bytes(e) == pytest.approx(mib * 2**20)
        assert [p["ef_search"] for p in e["curve"]] == REF_EF
        assert [p["recall"] for p in e["curve"]] == recalls and [p["qps"] for p in e["curve"]] == qps
    filtered = entries["minilm"]["filtered"]
    assert all(p["filter"] == 0.01 for p in filtered)
    by_scan = {(p["scan"], p["ef_search"]): p for p in filtered}
    assert by_scan[("plain index scan", 40)]["rows_per_query"] == 0.5 and by_scan[("plain index scan", 40)]["recall"] == 0.05
    assert by_scan[("plain index scan", 400)]["rows_per_query"] == 4.2
    assert (by_scan[("relaxed_order", None)]["recall"], by_scan[("relaxed_order", None)]["qps"]) == (0.972, 46)
    assert (by_scan[("strict_order", None)]["recall"], by_scan[("strict_order", None)]["qps"]) == (0.924, 44)
    other = entries["minilm"]["other"]
    assert other["insert_rows_per_s"]["synchronous_commit_on"] == 241
    assert other["insert_rows_per_s"]["synchronous_commit_off"] == 514
    assert other["vacuum_after_delete_10pct_s"] == 115.7


def test_reference_matches_only_its_dataset():
    doc = reference.load(PGVECTOR_REF)
    entry, _ = reference.match(doc, dataset="minilm", metric="cosine", rows=100_000, dim=384, k=10)
    assert entry["name"] == "minilm-384"
    entry, _ = reference.match(doc, dataset="fashion-mnist", metric="l2", rows=60_000, dim=784, k=10)
    assert entry["name"] == "fashion-mnist-784"
    for kwargs in ({"rows": 10_000}, {"k": 5}, {"metric": "l2"}):
        args = {"dataset": "minilm", "metric": "cosine", "rows": 100_000, "dim": 384, "k": 10, **kwargs}
        entry, why = reference.match(doc, **args)
        assert entry is None and "differ" in why
    entry, why = reference.match(doc, dataset="custom", metric="l2", rows=1000, dim=8, k=10)
    assert entry is None and "no figures" in why


def test_reference_validate_rejects_bad_files():
    assert reference.validate([]) == ["top level is not an object"]
    bad = {"format": reference.FORMAT, "label": "x", "source": "here",
           "datasets": [{"dataset": "minilm", "metric": "cosine", "rows": 10, "dim": 2, "k": 10,
                         "curve": [{"ef_search": 10, "recall": 1.5, "qps": 10}]}]}
    assert any("curve[0]" in p for p in reference.validate(bad))
    assert any("source" in p for p in reference.validate({**bad, "source": ""}))


def _synthetic_ours(entry, qps_scale=2.0, build_scale=0.5, size_scale=0.5):
    """Records of a run of 'ours' at the reference's recalls, qps_scale times its QPS."""
    recs = [{"type": "build", "ext": "hnsw_ext", "build_s": entry["build_s"] * build_scale,
             "index_bytes": reference.index_bytes(entry) * size_scale, "load_s": 1.0}]
    for p in entry["curve"]:
        recs.append({"type": "query", "ext": "hnsw_ext", "filter": None, "clients": 1, "ef_search": p["ef_search"],
                     "recall": p["recall"], "qps": p["qps"] * qps_scale})
    return recs


@pytest.mark.parametrize("dataset", ["minilm", "fashion-mnist"])
def test_reference_ratios(dataset):
    doc = reference.load(PGVECTOR_REF)
    entry = next(e for e in doc["datasets"] if e["dataset"] == dataset)
    ours = _synthetic_ours(entry)
    # A filtered curve of ours has no counterpart in the recorded (unfiltered) curve: no ratio for it.
    ours.append({"type": "query", "ext": "hnsw_ext", "filter": 0.01, "clients": 1, "ef_search": 40, "recall": 0.96,
                 "qps": 50.0})
    name = reference.label(doc)
    c = report.compare(ours + reference.pseudo_records(entry, name), "hnsw_ext", name)
    assert c["theirs"] == name
    assert c["build_time_ratio"] == pytest.approx(0.5) and c["index_size_ratio"] == pytest.approx(0.5)
    assert c["load_time_ratio"] is None
    assert [(q["filter"], q["clients"], q["recall"]) for q in c["qps_at_recall"]] == [(None, 1, 0.95), (None, 1, 0.99)]
    assert [q["ratio"] for q in c["qps_at_recall"]] == pytest.approx([2.0, 2.0])
    text = report.format_compare({**c, "recorded": True, "reference_file": str(PGVECTOR_REF)})
    assert "hnsw_ext / pgvector 0.8.6 (recorded)" in text and "load time" not in text
    assert text.count("= 2.00x") == 2 and "recorded figures" in text
    if dataset == "minilm":
        # 0.95 lies between ef 20 (0.920, 849) and ef 40 (0.961, 618): log-linear interpolation.
        theirs = np.exp(np.log(849) + (0.95 - 0.920) / (0.961 - 0.920) * (np.log(618) - np.log(849)))
        assert c["qps_at_recall"][0]["theirs_qps"] == pytest.approx(theirs)
        assert c["qps_at_recall"][0]["theirs_how"] == "interpolated"


def test_reference_differences():
    doc = reference.load(PGVECTOR_REF)
    run = {"type": "vector", "m": 16, "ef_construction": 64, "workers": 1, "queries": 500, "clients": [1],
           "session": {}}
    build = {"settings": {"shared_buffers": "4GB", "maintenance_work_mem": "8GB", "work_mem": "64MB"}}
    assert reference.differences(doc, build=build, run_config=run, host_cpus=2) == []
    diffs = reference.differences(doc, build={"settings": {**build["settings"], "shared_buffers": "128MB"}},
                                  run_config={**run, "m": 32, "clients": [4]}, host_cpus=16)
    assert len(diffs) == 4 and any("shared_buffers" in d for d in diffs) and any("m:" in d for d in diffs)


def test_reference_option_and_plot(tmp_path):
    # --reference is repeatable and takes comma lists; a bare name is looked up in bench/reference/.
    parser = cli.build_parser()
    args = parser.parse_args(["--reference", f"{PGVECTOR_REF},pgvector-0.8.6.json", "--reference", str(PGVECTOR_REF),
                              "--out", str(tmp_path / "x")])
    cfg = cli.resolve(args, parser)
    assert len(cfg.references) == 2  # the same file given twice counts once
    assert cfg.references[0]["ext_name"] == "pgvector 0.8.6 (recorded)"
    assert cfg.references[1]["ext_name"] == "pgvector 0.8.6 (recorded) [pgvector-0.8.6.json]"
    assert cli.resolve(parser.parse_args(["--out", str(tmp_path / "y")]), parser).references == []
    with pytest.raises(SystemExit):
        cli.resolve(parser.parse_args(["--reference", str(tmp_path / "missing.json")]), parser)

    doc = cfg.references[0]
    entry = next(e for e in doc["datasets"] if e["dataset"] == "minilm")
    rec = reference.record(doc, entry, doc["ext_name"], "", [])
    assert rec["type"] == "reference" and rec["used"] and rec["source"] == doc["source"]
    assert rec["figures"]["index_bytes"] == pytest.approx(195.3 * 2**20)
    assert json.loads(json.dumps(rec)) == rec
    records = _synthetic_ours(entry) + [
        {"type": "query", "ext": "hnsw_ext", "filter": 0.01, "clients": 1, "ef_search": ef, "recall": r, "qps": q}
        for ef, r, q in ((40, 0.9, 600.0), (400, 0.99, 100.0))]
    png = tmp_path / "ref.png"
    report.plot(records, png, "synthetic", 10, references=[rec])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filter_columns_only_on_our_index():
    """--compare vector --filter-columns used to stop at pgvector's "access method hnsw does not
    support multicolumn indexes": the compared extension gets its plain index."""
    assert cli.index_filter_columns(True, True, {100, 10}) == ["cat10", "cat100"]
    assert cli.index_filter_columns(True, False, {100, 10}) == []
    assert cli.index_filter_columns(False, True, {10}) == []


def blobs(n_per=200, centres=10, dim=8, seed=3):
    """Well separated clusters: centres on the axes scaled by 100, points within unit noise."""
    rng = np.random.default_rng(seed)
    c = np.zeros((centres, dim), np.float32)
    for i in range(centres):
        c[i, i % dim] = 100.0 * (1 + i // dim)
    base = np.concatenate([c[i] + rng.normal(size=(n_per, dim)).astype(np.float32) for i in range(centres)])
    return base, c


def test_filter_shapes_select_the_rows_they_say():
    """eq keeps id % N == 0, range rnk < rows/N, near the cluster around the query, far one whose
    rows are all farther from the query than any row of near's."""
    from hnswbench import filters

    base, centres = blobs()
    queries = centres[[2, 7]] + 0.5
    cases = filters.cases([10], ["eq", "range", "near", "far"])
    assert [c.column for c in cases] == ["cat10", "rnk", "clu10", "clu10"]
    assert filters.columns(cases) == ["cat10", "rnk", "clu10"]
    cols = filters.make_columns(base, queries, "l2", cases)
    eq, rng_, near, far = cases
    assert np.array_equal(np.nonzero(cols.mask(eq))[0], np.arange(0, base.shape[0], 10))
    assert cols.mask(rng_).sum() == base.shape[0] // 10
    assert sorted(cols.values["rnk"]) == list(range(base.shape[0]))
    for qi, q in enumerate(queries):
        d = np.sqrt(((base - q) ** 2).sum(axis=1))
        mine = cols.mask(near, qi)
        assert np.argmin(d) in np.nonzero(mine)[0]
        # k-means found the blobs: the query's cluster is its blob.
        assert mine.sum() == 200 and d[mine].max() < 10
        other = cols.mask(far, qi)
        assert other.sum() > 0 and d[other].min() > d[mine].max()
    assert near.where(2000) == "clu10 = %s" and rng_.where(2000) == "rnk < 200" and eq.where(2000) == "cat10 = 0"


def test_per_query_ground_truth_and_recall(tmp_path):
    """near/far ground truth is the exact top-k among each query's own matching rows; recall
    scores each query against its own matches (fewer than k where the cluster is small)."""
    from hnswbench import datasets, filters

    base, centres = blobs(n_per=6)
    queries = centres[[1, 4, 9]] + 0.25
    ds = datasets.Dataset.__new__(datasets.Dataset)
    ds.base, ds.queries, ds.metric = base, queries, "l2"
    case = filters.FilterCase("near", 10)
    cols = filters.make_columns(base, queries, "l2", [case])
    cache = groundtruth.GroundTruthCache(tmp_path)
    gt, cached = groundtruth.compute_case_ground_truth(ds, 10, case, cols, cache, "b", "q")
    assert not cached and list(gt.per_query) == [6, 6, 6]
    for qi, q in enumerate(queries):
        rows = np.nonzero(cols.mask(case, qi))[0]
        want = rows[np.argsort(((base[rows] - q) ** 2).sum(axis=1))]
        assert list(gt.ids[qi, :6]) == list(want) and list(gt.ids[qi, 6:]) == [-1] * 4
    again, cached = groundtruth.compute_case_ground_truth(ds, 10, case, cols, cache, "b", "q")
    assert cached and np.array_equal(again.per_query, gt.per_query)
    answers = [(qi, list(gt.ids[qi, :6])) for qi in range(3)]
    assert groundtruth.recall(base, queries, "l2", answers, gt, 10)["recall"] == 1.0
    answers[0] = (0, list(gt.ids[0, :3]))
    assert groundtruth.recall(base, queries, "l2", answers, gt, 10)["recall"] == pytest.approx((0.5 + 2) / 3)


def test_filter_shape_statements_and_column_limit():
    from hnswbench import filters, workload

    far = filters.FilterCase("far", 100)
    stmt = workload.query_statement("vector", "cosine", 10, case=far, rows=5000)
    assert stmt == "SELECT id FROM items WHERE clu100 = %s ORDER BY embedding <=> %s::vector LIMIT 10"
    assert workload._args((3, "[1,2]")) == (3, "[1,2]") and workload._args("[1,2]") == ("[1,2]",)
    cols = filters.columns(filters.cases([2, 10, 100, 1000], ["eq", "range", "far"]))
    assert len(cols) == 9
    with pytest.raises(Exception, match="more than an hnsw index takes"):
        cli.index_filter_columns(True, True, set(), cols)
    assert cli.index_filter_columns(True, False, set(), cols) == []
    k = report.curve_key({"label": "x", "filter": 0.1, "filter_shape": "far", "clients": 1})
    assert k != report.curve_key({"label": "x", "filter": 0.1, "filter_shape": "eq", "clients": 1})
    assert k[1].text() == "10% far"
