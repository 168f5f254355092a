"""Loading benchmark data sets into float32 numpy matrices.

Every loader returns a :class:`Dataset`: a base matrix (one row per table row; the row number is
the ``id`` stored in the table), a query matrix, the metric the data set is meant for and, when
the data set ships one, an exact top-k neighbour list that can stand in for computed ground truth.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Where the MiniLM files live, relative to the repository root (``../shared/data``).
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

METRICS = ("l2", "cosine", "ip", "l1")
BUILTIN = ("minilm", "fashion-mnist", "wordllama-1m", "custom")


@dataclass
class Dataset:
    """Vectors to benchmark.

    Attributes:
        name: short name used in records and plot titles.
        metric: one of :data:`METRICS`.
        base: float32 array (n, dim); row i is stored with ``id = i``.
        queries: float32 array (nq, dim).
        provided_gt: optional int array (nq, K) of exact neighbour row numbers shipped with the
            data (only valid for exactly this base and these queries), or None.
        sources: file names the data came from, for the JSON record.
    """

    name: str
    metric: str
    base: np.ndarray
    queries: np.ndarray
    provided_gt: np.ndarray | None = None
    sources: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return int(self.base.shape[1])

    def describe(self) -> dict:
        """A JSON-ready summary of the data set."""
        return {
            "name": self.name,
            "metric": self.metric,
            "rows": int(self.base.shape[0]),
            "dim": self.dim,
            "queries": int(self.queries.shape[0]),
            "sources": {k: str(v) for k, v in self.sources.items()},
            "provided_gt": self.provided_gt is not None,
        }


def read_vectors(path: str | os.PathLike) -> np.ndarray:
    """Read a vector file into a float32 (n, dim) array.

    Supported: ``.npy`` (any numeric dtype, 2-D), ``.fvecs`` (int32 dim + float32 values per
    vector), ``.bvecs`` (int32 dim + uint8 values), and MNIST-style ``idx3-ubyte[.gz]`` image files.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".npy"):
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array, got shape {arr.shape}")
        return np.ascontiguousarray(arr, dtype=np.float32)
    if name.endswith(".fvecs"):
        return _read_xvecs(path, np.float32)
    if name.endswith(".bvecs"):
        return _read_xvecs(path, np.uint8)
    if "idx3-ubyte" in name:
        return read_idx_images(path)
    raise ValueError(f"{path}: unknown vector file type (want .npy, .fvecs, .bvecs or idx3-ubyte[.gz])")


def _read_xvecs(path: Path, dtype) -> np.ndarray:
    """Read the TEXMEX ``.fvecs``/``.bvecs`` layout: per vector an int32 dimension, then values."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 4:
        raise ValueError(f"{path}: empty file")
    dim = int(raw[:4].view(np.int32)[0])
    item = np.dtype(dtype).itemsize
    rec = 4 + dim * item
    if dim <= 0 or raw.size % rec:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of the record size {rec} (dim {dim})")
    recs = raw.reshape(-1, rec)
    dims = recs[:, :4].copy().view(np.int32).ravel()
    if not np.all(dims == dim):
        raise ValueError(f"{path}: vectors of different dimensions")
    return np.ascontiguousarray(recs[:, 4:].copy().view(dtype), dtype=np.float32)


def read_idx_images(path: Path) -> np.ndarray:
    """Read an MNIST idx3-ubyte file (optionally gzipped): 16-byte header, then uint8 pixels."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">i4")
    if magic != 2051:
        raise ValueError(f"{path}: not an idx3-ubyte file (magic {magic})")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16)
    if pixels.size != n * rows * cols:
        raise ValueError(f"{path}: truncated ({pixels.size} bytes for {n}x{rows}x{cols})")
    return pixels.reshape(n, rows * cols).astype(np.float32)


def load_minilm(data_dir: Path) -> Dataset:
    """MiniLM-384 sentence embeddings (cosine) with the shipped exact top-100."""
    base_f = data_dir / "minilm-384-base.npy"
    query_f = data_dir / "minilm-384-queries.npy"
    gt_f = data_dir / "minilm-384-gt100-ids.npy"
    for f in (base_f, query_f):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found (see --data-dir)")
    gt = np.load(gt_f).astype(np.int64) if gt_f.exists() else None
    return Dataset(
        name="minilm-384",
        metric="cosine",
        base=read_vectors(base_f),
        queries=read_vectors(query_f),
        provided_gt=gt,
        sources={"base": base_f, "queries": query_f, **({"gt": gt_f} if gt is not None else {})},
    )


def load_fashion_mnist(fashion_dir: Path) -> Dataset:
    """fashion-mnist-784 (L2) from the Debian package dataset-fashion-mnist."""
    base_f = fashion_dir / "train-images-idx3-ubyte.gz"
    query_f = fashion_dir / "t10k-images-idx3-ubyte.gz"
    for f in (base_f, query_f):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found (apt-get install dataset-fashion-mnist, or --fashion-dir)")
    return Dataset(
        name="fashion-mnist-784",
        metric="l2",
        base=read_vectors(base_f),
        queries=read_vectors(query_f),
        sources={"base": base_f, "queries": query_f},
    )


def load_wordllama(data_dir: Path | None = None) -> Dataset:
    """wordllama-1m: Debian documentation sentences embedded with wordllama (256-d, cosine),
    made by bench/make_wordllama_1m.py, with its exact top-100."""
    from . import wordllama

    d = Path(data_dir) if data_dir else wordllama.default_dir()
    base_f, query_f, gt_f = d / "base.npy", d / "queries.npy", d / "gt100-ids.npy"
    for f in (base_f, query_f):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: make it with python3 bench/make_wordllama_1m.py")
    return Dataset(
        name="wordllama-256",
        metric="cosine",
        base=read_vectors(base_f),
        queries=read_vectors(query_f),
        provided_gt=np.load(gt_f).astype(np.int64) if gt_f.exists() else None,
        sources={"base": base_f, "queries": query_f, "gt": gt_f},
    )


def load_custom(base: str, queries: str, metric: str) -> Dataset:
    """A user's own base and query files (.npy / .fvecs / .bvecs)."""
    if not base or not queries:
        raise ValueError("--dataset custom needs --base FILE and --queries FILE")
    b, q = read_vectors(base), read_vectors(queries)
    if b.shape[1] != q.shape[1]:
        raise ValueError(f"base has {b.shape[1]} dimensions, queries {q.shape[1]}")
    return Dataset(
        name=Path(base).name.split(".")[0],
        metric=metric or "l2",
        base=b,
        queries=q,
        sources={"base": Path(base).resolve(), "queries": Path(queries).resolve()},
    )


def load_dataset(
    name: str,
    *,
    rows: int | None = None,
    n_queries: int | None = None,
    metric: str | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    fashion_dir: Path = DEFAULT_FASHION_DIR,
    base_file: str | None = None,
    query_file: str | None = None,
    wordllama_dir: Path | None = None,
) -> Dataset:
    """Load a data set by name and cut it down to ``rows`` base rows and ``n_queries`` queries.

    Cutting the base invalidates shipped ground truth (it is dropped, and recomputed later);
    cutting the queries keeps it (the first rows of the shipped list are used).
    ``metric`` overrides the data set's own metric (again dropping shipped ground truth).
    """
    if name == "minilm":
        ds = load_minilm(Path(data_dir))
    elif name == "fashion-mnist":
        ds = load_fashion_mnist(Path(fashion_dir))
    elif name == "wordllama-1m":
        ds = load_wordllama(wordllama_dir)
    elif name == "custom":
        ds = load_custom(base_file, query_file, metric)
    else:
        raise ValueError(f"unknown data set {name!r} (choose from {', '.join(BUILTIN)})")
    if metric and metric != ds.metric:
        ds.metric = metric
        ds.provided_gt = None
    if rows is not None and rows < ds.base.shape[0]:
        ds.base = np.ascontiguousarray(ds.base[:rows])
        ds.provided_gt = None
        ds.name = f"{ds.name}-{_short_count(rows)}"
    if n_queries is not None and n_queries < ds.queries.shape[0]:
        ds.queries = np.ascontiguousarray(ds.queries[:n_queries])
        if ds.provided_gt is not None:
            ds.provided_gt = ds.provided_gt[:n_queries]
    if ds.provided_gt is not None and ds.provided_gt.shape[0] != ds.queries.shape[0]:
        ds.provided_gt = None
    if ds.provided_gt is None:
        ds.sources.pop("gt", None)
    if not np.all(np.isfinite(ds.base)) or not np.all(np.isfinite(ds.queries)):
        raise ValueError("data set contains NaN or infinite values")
    return ds


def _short_count(n: int) -> str:
    """10000 -> '10k', 1500000 -> '1.5M'."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)
