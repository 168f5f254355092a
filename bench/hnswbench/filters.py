"""Filter workloads: which rows a filtered query may return, as SQL and as a numpy mask.

A case is a *shape* at a selectivity 1/N:

- ``eq``: ``WHERE catN = 0`` with ``catN = id % N``: matching rows spread evenly over the data,
  unrelated to any query (what ``--filter`` always measured).
- ``range``: ``WHERE rnk < n/N`` with ``rnk`` a random permutation of the row numbers (seeded):
  a range condition, unrelated to the query.
- ``near``: ``WHERE cluN = $2`` where ``cluN`` is each row's cluster among N (k-means on the
  data) and ``$2`` the cluster whose centre is nearest the query: the matching rows are around
  the query (a correlated filter, as "this user's own documents" often is).
- ``far``: the same column, ``$2`` the cluster whose centre is farthest from the query: no row
  near the query matches (an anti-correlated filter), where a walk that keeps only matching
  rows has to cross the whole graph.

Clusters come from k-means++ seeding and a few rounds of Lloyd's on a seeded sample of up to 20,000 rows,
under the data set's metric (unit vectors for cosine), then every row goes to its nearest
centre; cluster sizes vary, so ``near``/``far`` report the matching rows per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("eq", "range", "near", "far")
RANGE_COLUMN = "rnk"
SEED = 20261124


@dataclass(frozen=True)
class FilterCase:
    """One filtered workload: ``shape`` at selectivity 1/``modulus``."""

    shape: str
    modulus: int

    @property
    def selectivity(self) -> float:
        return 1 / self.modulus

    @property
    def column(self) -> str:
        if self.shape == "eq":
            return f"cat{self.modulus}"
        if self.shape == "range":
            return RANGE_COLUMN
        return f"clu{self.modulus}"

    @property
    def tag(self) -> str:
        """Cache key part ("mod10" for eq, as the cache always named it)."""
        return f"mod{self.modulus}" if self.shape == "eq" else f"{self.shape}{self.modulus}-s{SEED}"

    @property
    def label(self) -> str:
        return f"1/{self.modulus}" if self.shape == "eq" else f"{self.shape} 1/{self.modulus}"

    @property
    def per_query(self) -> bool:
        """Whether the condition takes a value per query (the cluster)."""
        return self.shape in ("near", "far")

    def where(self, rows: int) -> str:
        """The WHERE clause (``%s`` for the per-query value of near/far)."""
        if self.shape == "eq":
            return f"{self.column} = 0"
        if self.shape == "range":
            return f"{self.column} < {range_bound(rows, self.modulus)}"
        return f"{self.column} = %s"


def cases(moduli: list[int], shapes: list[str]) -> list[FilterCase]:
    """Every shape at every selectivity, wide first."""
    return [FilterCase(s, m) for m in sorted(moduli) for s in shapes]


def range_bound(rows: int, modulus: int) -> int:
    return max(1, round(rows / modulus))


def columns(cases_: list[FilterCase]) -> list[str]:
    """The table's filter columns for these cases, in a fixed order."""
    return list(dict.fromkeys(c.column for c in cases_))


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = x.astype(np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
    return x


def _dist(x: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    """Distances (rows x centres) under ``metric`` (inputs prepared; monotone forms)."""
    if metric in ("ip", "cosine"):
        return -(x @ centres.T)
    if metric == "l1":
        return np.stack([np.abs(x - c).sum(axis=1) for c in centres], axis=1)
    sq = (x * x).sum(axis=1)[:, None] - 2 * (x @ centres.T) + (centres * centres).sum(axis=1)[None, :]
    return sq


def _assign(x: np.ndarray, centres: np.ndarray, metric: str, block: int = 8192) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.int32)
    for r0 in range(0, x.shape[0], block):
        out[r0 : r0 + block] = np.argmin(_dist(x[r0 : r0 + block], centres, metric), axis=1)
    return out


def kmeans(base: np.ndarray, metric: str, k: int, rounds: int = 8, sample: int = 20_000) -> np.ndarray:
    """Centres of k clusters of ``base`` (prepared for ``metric``)."""
    rng = np.random.default_rng(SEED + k)
    x = _prepare(base[rng.choice(base.shape[0], min(sample, base.shape[0]), replace=False)], metric)
    centres = _seed(x, metric, min(k, x.shape[0]), rng)
    for _ in range(rounds):
        lab = _assign(x, centres, metric)
        for c in range(centres.shape[0]):
            members = x[lab == c]
            if members.size:
                centres[c] = members.mean(axis=0)
        if metric == "cosine":
            centres = _prepare(centres, metric)
    return centres


def _seed(x: np.ndarray, metric: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability growing with its distance to
    the nearest centre so far (so that no cluster of the data is left without one)."""
    centres = [x[rng.integers(x.shape[0])]]
    nearest = _dist(x, centres[0][None, :], metric)[:, 0]
    for _ in range(1, k):
        w = nearest - nearest.min()
        w = w * w if metric == "l1" else w
        total = w.sum()
        i = rng.choice(x.shape[0], p=w / total) if total > 0 else rng.integers(x.shape[0])
        centres.append(x[i])
        nearest = np.minimum(nearest, _dist(x, x[i][None, :], metric)[:, 0])
    return np.array(centres, dtype=np.float32)


@dataclass
class Columns:
    """The values of every filter column, and each case's per-query values."""

    values: dict  # column -> int32 array (one per row)
    params: dict  # FilterCase -> int array (one per query), for near/far

    def mask(self, case: FilterCase, qi: int | None = None) -> np.ndarray:
        """Rows matching ``case`` (for query ``qi``, for near/far)."""
        v = self.values[case.column]
        if case.shape == "eq":
            return v == 0
        if case.shape == "range":
            return v < range_bound(v.shape[0], case.modulus)
        return v == self.params[case][qi]


def make_columns(base: np.ndarray, queries: np.ndarray, metric: str, cases_: list[FilterCase]) -> Columns:
    """Column values for ``cases_`` on this data, and the per-query cluster of near/far cases."""
    n = base.shape[0]
    values, params, centres = {}, {}, {}
    for c in cases_:
        if c.shape == "eq":
            values[c.column] = (np.arange(n) % c.modulus).astype(np.int32)
        elif c.shape == "range":
            values[c.column] = np.random.default_rng(SEED).permutation(n).astype(np.int32)
        else:
            if c.modulus not in centres:
                centres[c.modulus] = kmeans(base, metric, c.modulus)
                values[c.column] = _assign(_prepare(base, metric), centres[c.modulus], metric)
            d = _dist(_prepare(queries, metric), centres[c.modulus], metric)
            params[c] = (np.argmin(d, axis=1) if c.shape == "near" else np.argmax(d, axis=1)).astype(np.int64)
    return Columns(values, params)
