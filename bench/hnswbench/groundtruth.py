"""Exact nearest neighbours with numpy, their cache, and recall with ties.

Distances follow the SQL operators: ``l2`` is the Euclidean distance (``<->``), ``ip`` the
negative inner product (``<#>``), ``cosine`` is 1 - cosine similarity (``<=>``) and ``l1`` the
taxicab distance (``<+>``). Smaller is nearer for all four.

Ground truth is found in two steps: a float32 pass over the base in blocks (matrix products) keeps
``k + margin`` candidates per query, then the candidates' distances are recomputed exactly in
float64 and sorted (ties broken by row number). Recall uses the same float64 distances, so a
returned row counts as a hit when its distance is within a relative 1e-6 of the k-th true distance,
the way ann-benchmarks counts ties.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .progress import ProgressBar

#: Relative slack on the k-th true distance when counting hits (ties).
TIE_EPSILON = 1e-6


@dataclass
class GroundTruth:
    """Exact neighbours of each query.

    Attributes:
        ids: int64 (nq, K) row numbers, nearest first.
        dists: float64 (nq, K) exact distances, ascending.
        candidates: number of rows the neighbours were drawn from (all rows, or the rows
            matching a filter).
    """

    ids: np.ndarray
    dists: np.ndarray
    candidates: int
    #: Rows matching each query's filter, where that differs per query (near/far filters); the
    #: rows of ``ids``/``dists`` past it are -1 / inf. ``candidates`` is then their mean.
    per_query: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Number of neighbours stored per query."""
        return int(self.ids.shape[1])


def exact_distances(base: np.ndarray, ids: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Float64 distances from ``query`` to the base rows ``ids`` (1-D), per the SQL operator."""
    x = base[ids].astype(np.float64)
    q = query.astype(np.float64)
    if metric == "l2":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    if metric == "ip":
        return -(x @ q)
    if metric == "cosine":
        denom = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - (x @ q) / denom
    if metric == "l1":
        return np.abs(x - q).sum(axis=1)
    raise ValueError(f"unknown metric {metric!r}")


def _block_scores(block: np.ndarray, block_sq: np.ndarray, qs: np.ndarray, metric: str) -> np.ndarray:
    """Float32 scores (qb, bb) that rank like the metric (for candidate selection only)."""
    if metric == "l2":
        return block_sq[None, :] - 2.0 * (qs @ block.T)
    if metric in ("ip", "cosine"):  # for cosine, block and qs are normalised beforehand
        return -(qs @ block.T)
    if metric == "l1":
        out = np.empty((qs.shape[0], block.shape[0]), dtype=np.float32)
        for i, q in enumerate(qs):
            out[i] = np.abs(block - q).sum(axis=1)
        return out
    raise ValueError(f"unknown metric {metric!r}")


def _normalise(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(a, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return (a / n).astype(np.float32)


def brute_force_knn(
    base: np.ndarray,
    queries: np.ndarray,
    metric: str,
    k: int,
    *,
    query_block: int = 256,
    base_block: int = 65536,
    label: str | None = None,
) -> GroundTruth:
    """Exact top-``k`` of every query among all base rows (see module docstring for the method)."""
    n = base.shape[0]
    k = min(k, n)
    cand = min(n, k + max(k, 64))
    if metric == "cosine":
        base32, q32 = _normalise(base), _normalise(queries)
    else:
        base32, q32 = base.astype(np.float32, copy=False), queries.astype(np.float32, copy=False)
    if metric == "l1":
        base_block = min(base_block, 8192)
    base_sq = (base32.astype(np.float64) ** 2).sum(axis=1).astype(np.float32) if metric == "l2" else None
    nq = queries.shape[0]
    ids_out = np.empty((nq, k), dtype=np.int64)
    dists_out = np.empty((nq, k), dtype=np.float64)
    bar = ProgressBar(label or "ground truth", total=nq, unit="queries") if label else None
    for q0 in range(0, nq, query_block):
        qs = q32[q0 : q0 + query_block]
        best_ids = np.empty((qs.shape[0], 0), dtype=np.int64)
        best_sc = np.empty((qs.shape[0], 0), dtype=np.float32)
        for b0 in range(0, n, base_block):
            block = base32[b0 : b0 + base_block]
            sc = _block_scores(block, base_sq[b0 : b0 + base_block] if base_sq is not None else None, qs, metric)
            ids = np.broadcast_to(np.arange(b0, b0 + block.shape[0]), sc.shape)
            sc = np.concatenate([best_sc, sc], axis=1)
            ids = np.concatenate([best_ids, ids], axis=1)
            if sc.shape[1] > cand:
                part = np.argpartition(sc, cand - 1, axis=1)[:, :cand]
                sc = np.take_along_axis(sc, part, axis=1)
                ids = np.take_along_axis(ids, part, axis=1)
            best_sc, best_ids = sc, ids
        for i in range(qs.shape[0]):
            c = best_ids[i]
            d = exact_distances(base, c, queries[q0 + i], metric)
            order = np.lexsort((c, d))[:k]
            ids_out[q0 + i] = c[order]
            dists_out[q0 + i] = d[order]
        if bar:
            bar.update(min(nq, q0 + query_block))
    if bar:
        bar.close()
    return GroundTruth(ids_out, dists_out, n)


def from_provided_ids(base: np.ndarray, queries: np.ndarray, metric: str, ids: np.ndarray, k: int) -> GroundTruth:
    """Ground truth from a shipped neighbour list: distances recomputed in float64 and re-sorted."""
    ids = ids[:, :k].astype(np.int64)
    out_ids = np.empty_like(ids)
    out_d = np.empty(ids.shape, dtype=np.float64)
    for i in range(ids.shape[0]):
        d = exact_distances(base, ids[i], queries[i], metric)
        order = np.lexsort((ids[i], d))
        out_ids[i], out_d[i] = ids[i][order], d[order]
    return GroundTruth(out_ids, out_d, base.shape[0])


def array_digest(a: np.ndarray) -> str:
    """Content hash (blake2b, 16 hex digits) of an array's shape, dtype and bytes."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


class GroundTruthCache:
    """Ground truth stored as ``.npz`` files keyed by data content hash, metric, k and filter."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, base_hash: str, query_hash: str, metric: str, k: int, modulus) -> Path | None:
        if not self.directory:
            return None
        # A modulus (the eq filter, as cached always) or a filter case's tag (see filters.FilterCase).
        tag = "" if not modulus else f"-mod{modulus}" if isinstance(modulus, int) else f"-{modulus}"
        return self.directory / f"gt-{metric}-k{k}-{base_hash}-{query_hash}{tag}.npz"

    def get_or_compute(self, base_hash, query_hash, metric, k, modulus, compute) -> tuple[GroundTruth, bool]:
        """Return (ground truth, came_from_cache); ``compute()`` is called on a miss and stored."""
        path = self._path(base_hash, query_hash, metric, k, modulus)
        if path and path.exists():
            try:
                with np.load(path) as z:
                    per_query = z["per_query"] if "per_query" in z.files else None
                    return GroundTruth(z["ids"].astype(np.int64), z["dists"], int(z["candidates"]), per_query), True
            except (OSError, KeyError, ValueError) as e:  # corrupt file: recompute
                print(f"warning: ignoring unreadable cache file {path}: {e}", file=sys.stderr)
        gt = compute()
        if path:
            tmp = path.with_suffix(".tmp.npz")
            extra = {} if gt.per_query is None else {"per_query": gt.per_query}
            np.savez(tmp, ids=gt.ids.astype(np.int32), dists=gt.dists, candidates=gt.candidates, **extra)
            tmp.replace(path)
        return gt, False


def compute_ground_truth(ds, k: int, cache: GroundTruthCache, base_hash: str,
                         query_hash: str) -> tuple[GroundTruth, str]:
    """Unfiltered ground truth of a :class:`~hnswbench.datasets.Dataset`; returns (gt, how).

    ``how`` says where it came from: "cache", "provided" (shipped list, checked against a brute
    force run on a few queries) or "computed".
    """
    how = "cache"

    def compute():
        nonlocal how
        if ds.provided_gt is not None and ds.provided_gt.shape[1] >= k:
            gt = from_provided_ids(ds.base, ds.queries, ds.metric, ds.provided_gt, k)
            if _provided_matches(ds, gt, k):
                how = "provided"
                return gt
            print("warning: the shipped ground truth does not match a brute-force check; recomputing",
                  file=sys.stderr)
        how = "computed"
        return brute_force_knn(ds.base, ds.queries, ds.metric, k, label="ground truth")

    gt, _ = cache.get_or_compute(base_hash, query_hash, ds.metric, k, None, compute)
    return gt, how


def _provided_matches(ds, gt: GroundTruth, k: int, probes: int = 5) -> bool:
    """Check a shipped list on a few queries: the k-th distances must agree with brute force."""
    idx = np.linspace(0, ds.queries.shape[0] - 1, min(probes, ds.queries.shape[0])).astype(int)
    check = brute_force_knn(ds.base, ds.queries[idx], ds.metric, min(k, 10))
    kk = check.k
    return bool(np.allclose(check.dists[:, kk - 1], gt.dists[idx, kk - 1], rtol=TIE_EPSILON, atol=1e-12))


def filter_mask(n: int, modulus: int) -> np.ndarray:
    """Rows matching the benchmark filter ``cat<modulus> = 0``, i.e. ``id % modulus == 0``."""
    return np.arange(n) % modulus == 0


def compute_filtered_ground_truth(ds, k, modulus, cache, base_hash, query_hash) -> tuple[GroundTruth, bool]:
    """Exact top-k among the rows with ``id % modulus == 0`` (row numbers refer to the full base)."""
    def compute():
        rows = np.nonzero(filter_mask(ds.base.shape[0], modulus))[0]
        if rows.size == 0:
            return GroundTruth(np.empty((ds.queries.shape[0], 0), np.int64),
                               np.empty((ds.queries.shape[0], 0)), 0)
        sub = brute_force_knn(ds.base[rows], ds.queries, ds.metric, k,
                              label=f"filtered ground truth 1/{modulus}")
        return GroundTruth(rows[sub.ids], sub.dists, int(rows.size))

    return cache.get_or_compute(base_hash, query_hash, ds.metric, k, modulus, compute)


def compute_case_ground_truth(ds, k, case, cols, cache, base_hash, query_hash) -> tuple[GroundTruth, bool]:
    """Exact top-k among the rows matching a filter case (``filters.FilterCase``, column values
    ``cols``: ``filters.Columns``); per query where the filter's value is (near/far)."""
    nq = ds.queries.shape[0]
    if not case.per_query:
        def compute():
            rows = np.nonzero(cols.mask(case))[0]
            if rows.size == 0:
                return GroundTruth(np.empty((nq, 0), np.int64), np.empty((nq, 0)), 0)
            sub = brute_force_knn(ds.base[rows], ds.queries, ds.metric, k, label=f"filtered ground truth {case.label}")
            return GroundTruth(rows[sub.ids], sub.dists, int(rows.size))
    else:
        def compute():
            ids, dists = np.full((nq, k), -1, np.int64), np.full((nq, k), np.inf)
            per_query = np.zeros(nq, np.int64)
            values = cols.params[case]
            for value in np.unique(values):
                qs = np.nonzero(values == value)[0]
                rows = np.nonzero(cols.mask(case, int(qs[0])))[0]
                per_query[qs] = rows.size
                kk = min(k, rows.size)
                if kk == 0:
                    continue
                sub = brute_force_knn(ds.base[rows], ds.queries[qs], ds.metric, kk)
                ids[qs, :kk], dists[qs, :kk] = rows[sub.ids], sub.dists
            return GroundTruth(ids, dists, int(round(per_query.mean())), per_query)
    return cache.get_or_compute(base_hash, query_hash, ds.metric, k, case.tag, compute)


def recall(base: np.ndarray, queries: np.ndarray, metric: str, results: list, gt: GroundTruth, k: int) -> dict:
    """Recall@k of returned ids against ground truth, counting ties like ann-benchmarks.

    ``results`` is a list of (query_index, [returned ids]). For each, the first k distinct returned
    ids are scored with exact float64 distances; a hit is an id whose distance is <= the k-th true
    distance plus a relative :data:`TIE_EPSILON`. The denominator is ``min(k, gt.candidates)`` (a
    filter may match fewer than k rows). Returns mean recall, the mean number of rows returned,
    how many answers were short (fewer than k rows), had duplicate ids, or ids outside the base.
    """
    kk = min(k, gt.k)
    per_query, rows, short, dupes, bad = [], [], 0, 0, 0
    n = base.shape[0]
    all_kk = kk
    for qi, ids in results:
        kk = all_kk if gt.per_query is None else min(all_kk, int(gt.per_query[qi]))
        ids = np.asarray(ids[:k], dtype=np.int64)
        rows.append(len(ids))
        if len(ids) < kk:
            short += 1
        uniq = np.unique(ids)
        if uniq.size != ids.size:
            dupes += 1
        valid = uniq[(uniq >= 0) & (uniq < n)]
        if valid.size != uniq.size:
            bad += 1
        if kk == 0:
            continue
        thr = gt.dists[qi, kk - 1]
        tol = thr + TIE_EPSILON * max(abs(thr), 1e-6)
        d = exact_distances(base, valid, queries[qi], metric) if valid.size else np.empty(0)
        per_query.append(min(1.0, np.count_nonzero(d <= tol) / kk))
    return {
        "recall": float(np.mean(per_query)) if per_query else None,
        "recall_min": float(np.min(per_query)) if per_query else None,
        "rows_per_query": float(np.mean(rows)) if rows else 0.0,
        "short_answers": short,
        "duplicate_answers": dupes,
        "invalid_id_answers": bad,
    }
