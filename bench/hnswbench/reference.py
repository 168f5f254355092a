"""Recorded reference figures (``--reference FILE.json``): another extension's results, not measured here.

A reference file holds what an earlier benchmark of another extension (pgvector, say) measured:
per data set the index build time and size and a recall/QPS curve over ``hnsw.ef_search``, and
optionally filtered operating points and other figures. The run compares against it as if that
extension had been run too: :func:`pseudo_records` turns the figures of the matching data set into
``build`` / ``query`` records for :func:`hnswbench.report.compare`, and the plot draws them.

File layout (see ``bench/reference/pgvector-0.8.6.json``)::

    {"format": "hnsw_bench-reference/1", "label": "...", "ext": "vector", "ext_version": "0.8.6",
     "source": "where the figures come from", "machine": {"cpus": 2}, "server_settings": {...},
     "index": {"type": "vector", "m": 16, "ef_construction": 64, "workers": 1},
     "protocol": {"k": 10, "clients": 1, "queries": 500, ...}, "units": {...},
     "datasets": [{"dataset": "minilm", "name": "minilm-384", "metric": "cosine", "rows": 100000,
                   "dim": 384, "k": 10, "build_s": 28.2, "index_mib": 195.3 (or "index_bytes"),
                   "curve": [{"ef_search": 10, "recall": 0.839, "qps": 1219}, ...],
                   "filtered": [{"filter": 0.01, "scan": "relaxed_order", "ef_search": null,
                                 "recall": 0.972, "qps": 46, ...}, ...],
                   "other": {...}}]}

Sizes are in bytes (``index_bytes``) or MiB = 2**20 bytes (``index_mib``); the curve is one client.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FORMAT = "hnsw_bench-reference/1"
MIB = 2**20
#: Server settings compared with the run's (max_parallel_maintenance_workers is compared with --workers).
COMPARED_SETTINGS = ("shared_buffers", "maintenance_work_mem", "work_mem")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load(path: str | Path) -> dict:
    """Read and check a reference file; raises ValueError (or OSError) with the file name."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    problems = validate(doc)
    if problems:
        raise ValueError(f"{path}: not a reference file: " + "; ".join(problems))
    doc["path"] = str(path)
    return doc


def validate(doc) -> list[str]:
    """What is wrong with a reference document (empty when it is usable)."""
    if not isinstance(doc, dict):
        return ["top level is not an object"]
    out = []
    if doc.get("format") != FORMAT:
        out.append(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(doc.get("source"), str) or not doc["source"].strip():
        out.append("no 'source' saying where the figures come from")
    if not (isinstance(doc.get("label"), str) and doc["label"]) and not isinstance(doc.get("ext"), str):
        out.append("needs a 'label' or an 'ext'")
    entries = doc.get("datasets")
    if not isinstance(entries, list) or not entries:
        return out + ["'datasets' must be a non-empty list"]
    for i, e in enumerate(entries):
        where = f"datasets[{i}]"
        if not isinstance(e, dict):
            out.append(f"{where} is not an object")
            continue
        for key in ("dataset", "metric"):
            if not isinstance(e.get(key), str):
                out.append(f"{where}.{key} missing")
        for key in ("rows", "dim", "k"):
            if not isinstance(e.get(key), int) or e[key] <= 0:
                out.append(f"{where}.{key} must be a positive integer")
        for key in ("build_s", "index_bytes", "index_mib"):
            if key in e and e[key] is not None and not (_number(e[key]) and e[key] > 0):
                out.append(f"{where}.{key} must be a positive number")
        curve = e.get("curve", [])
        if not isinstance(curve, list):
            out.append(f"{where}.curve must be a list")
            curve = []
        for j, p in enumerate(curve):
            if not (isinstance(p, dict) and isinstance(p.get("ef_search"), int) and _number(p.get("recall"))
                    and 0 <= p["recall"] <= 1 and _number(p.get("qps")) and p["qps"] > 0):
                out.append(f"{where}.curve[{j}] needs ef_search (int), recall (0..1) and qps (> 0)")
        for j, p in enumerate(e.get("filtered", []) or []):
            if not (isinstance(p, dict) and _number(p.get("filter")) and 0 < p["filter"] < 1):
                out.append(f"{where}.filtered[{j}] needs a filter selectivity between 0 and 1")
            elif p.get("recall") is not None and not (_number(p["recall"]) and 0 <= p["recall"] <= 1):
                out.append(f"{where}.filtered[{j}].recall must be null or 0..1")
            elif p.get("qps") is not None and not (_number(p["qps"]) and p["qps"] > 0):
                out.append(f"{where}.filtered[{j}].qps must be null or > 0")
    return out


def label(doc: dict) -> str:
    """Legend and ``theirs`` name: the file's label, else '<ext> <version> (recorded)'."""
    if doc.get("label"):
        return doc["label"]
    return f"{doc['ext']} {doc.get('ext_version', '')}".strip() + " (recorded)"


def index_bytes(entry: dict) -> float | None:
    """Index size in bytes of a data set entry (from index_bytes, or index_mib x 2**20)."""
    if entry.get("index_bytes") is not None:
        return entry["index_bytes"]
    if entry.get("index_mib") is not None:
        return entry["index_mib"] * MIB
    return None


def match(doc: dict, *, dataset: str, metric: str, rows: int, dim: int, k: int) -> tuple[dict | None, str]:
    """The data set entry of ``doc`` for this run, or (None, why not).

    The entry must be for the same --dataset, metric, row count, dimensions and k: figures of
    another data set (or of a cut-down one, --rows) are not comparable.
    """
    have = {"dataset": dataset, "metric": metric, "rows": rows, "dim": dim, "k": k}
    near = []
    for e in doc["datasets"]:
        diff = [f"{key} {e.get(key)} (run: {value})" for key, value in have.items() if e.get(key) != value]
        if not diff:
            return e, ""
        if e.get("dataset") == dataset:
            near.append(", ".join(diff))
    if near:
        return None, f"its {dataset} figures differ from this run in " + "; ".join(near)
    return None, f"it has no figures for --dataset {dataset} (it has: " + ", ".join(
        sorted({str(e.get("dataset")) for e in doc["datasets"]})) + ")"


def pseudo_records(entry: dict, ext: str) -> list[dict]:
    """A ``build`` record and one-client ``query`` records standing for the recorded figures.

    Only the unfiltered curve becomes query records (the ratios compare like with like); filtered
    points are drawn by the plot but not turned into curves.
    """
    recs = [{"type": "build", "ext": ext, "recorded": True, "build_s": entry.get("build_s"),
             "index_bytes": index_bytes(entry), "load_s": entry.get("load_s")}]
    for p in entry.get("curve", []):
        recs.append({"type": "query", "ext": ext, "recorded": True, "filter": None, "clients": 1,
                     "ef_search": p["ef_search"], "recall": p["recall"], "qps": p["qps"]})
    return recs


def differences(doc: dict, *, build: dict | None, run_config: dict, host_cpus: int | None) -> list[str]:
    """How this run's conditions differ from those the reference was measured under."""
    out = []
    index, protocol = doc.get("index", {}), doc.get("protocol", {})
    for key in ("type", "m", "ef_construction", "workers"):
        if key in index and key in run_config and index[key] != run_config[key]:
            out.append(f"{key}: reference {index[key]}, run {run_config[key]}")
    if "queries" in protocol and protocol["queries"] != run_config.get("queries"):
        out.append(f"queries: reference {protocol['queries']}, run {run_config.get('queries')}")
    if "clients" in protocol and protocol["clients"] not in run_config.get("clients", []):
        out.append(f"the reference curve is {protocol['clients']} client(s), which this run does not measure "
                   "(no QPS ratios)")
    if run_config.get("session"):
        out.append(f"this run sets {run_config['session']} in its query sessions; the reference did not")
    machine = doc.get("machine", {})
    if machine.get("cpus") and host_cpus and machine["cpus"] != host_cpus:
        out.append(f"cpus: reference machine {machine['cpus']}, this host {host_cpus}")
    if build:
        settings = {**build.get("settings", {}), **(build.get("build_session") or {})}
        for key in COMPARED_SETTINGS:
            want = doc.get("server_settings", {}).get(key)
            if want is not None and key in settings and str(settings[key]) != str(want):
                out.append(f"{key}: reference {want}, run {settings[key]}")
    return out


def record(doc: dict, entry: dict | None, ext: str, reason: str, diffs: list[str]) -> dict:
    """The JSONL ``reference`` record: the figures used (or why none) and where they come from."""
    figures = None
    if entry is not None:
        figures = {**entry, "index_bytes": index_bytes(entry)}
    return {
        "type": "reference", "ext": ext, "label": label(doc), "file": doc.get("path"), "source": doc.get("source"),
        "recorded_ext": doc.get("ext"), "recorded_ext_version": doc.get("ext_version"),
        "machine": doc.get("machine"), "server_settings": doc.get("server_settings"), "index": doc.get("index"),
        "protocol": doc.get("protocol"), "units": {**doc.get("units", {}), "index_bytes": "bytes"},
        "used": entry is not None, "reason": reason or None, "differences": diffs, "figures": figures,
    }
