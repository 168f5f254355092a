"""Command line and orchestration of one benchmark run (see ``--help``)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg

from . import __version__, datasets, db, filters, groundtruth, reference, report, workload

DEFAULT_DSN = "host=127.0.0.1 port=5499 user=postgres dbname=postgres"
DEFAULT_EF = "10,20,40,80,120,200,400"
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
FORCE_INDEX = {"enable_seqscan": "off", "enable_bitmapscan": "off", "enable_sort": "off"}
QUICK = {"rows": 10_000, "ef": "10,20,40,100,200", "clients": "1,2", "filter": "0.1", "warmup": 20}
GT_K = 100

DESCRIPTION = """\
Benchmark the hnsw index of hnsw_ext (and, side by side, pgvector or any extension with the same
SQL interface) on PostgreSQL: build time and index size, then recall@k / QPS / latency over a
sweep of hnsw.ef_search, with 1 and N clients, optionally with a filter.

What one run does, per extension (each in a database of its own, hnsw_bench_<ext> by default,
created on the server of --dsn; CREATE EXTENSION IF NOT EXISTS <ext> inside it):
  1. loads the data set into  items (id int primary key, embedding vector(dim) [, catN int ...])
     with binary COPY, then VACUUM ANALYZE                          (progress bar, load time)
  2. CREATE INDEX ... USING hnsw (embedding <opclass>) WITH (m, ef_construction[, --with ...])
     after SET max_parallel_maintenance_workers = --workers         (progress bar from
     pg_stat_progress_create_index polled on a second connection; build time, index size,
     bytes/vector, and walk bytes from hnsw_walk_size(index) where the database has it)
  3. for each filter (none, then each --filter), each ef_search and each client count runs
     SELECT id FROM items [WHERE catN = 0] ORDER BY embedding <op> $1::vector LIMIT k
     for every query (text parameter, psycopg, after a warm-up) and records recall@k,
     QPS, p50/p95/p99 latency and rows returned per query.
--variants runs our extension once per set of WITH options (e.g. quantization=none;quantization=sq8):
the table is loaded once, the index dropped and rebuilt per variant, and with --compare the runs
alternate (ours variant 1, theirs, ours variant 2, ...); --rounds N repeats that sequence. Every
run has its own label (hnsw_ext[quantization=sq8], ' #R' per round with --rounds), curve and ratios.
Without the other extension on the server, --reference FILE.json compares against figures
recorded earlier instead (bench/reference/pgvector-0.8.6.json: pgvector 0.8.6 on minilm and
fashion-mnist, 100k / 60k rows, k=10, 1 client): same ratio printout, a "reference" JSON record,
and a dashed grey line in the plot. Only figures for the run's data set (same rows, dim, metric, k)
are used.

Exact ground truth (top-100, and per filter the top-100 among matching rows) is computed with
numpy and cached under --cache-dir, keyed by data content hash, metric and filter. Recall counts
ties as ann-benchmarks does: a returned row is a hit if its exact distance is <= the k-th true
distance (+1e-6 relative).
"""

EPILOG = """\
data sets:
  minilm         MiniLM-384 sentence embeddings, 100k base / 2000 queries, cosine
                 (../shared/data/minilm-384-*.npy, shipped top-100 used when the base is whole)
  fashion-mnist  fashion-mnist-784, 60k base / 10k queries, L2 (Debian package
                 dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/*-idx3-ubyte.gz)
  wordllama-1m   1M Debian documentation sentences embedded with wordllama, 256-d, 1000 queries,
                 cosine (make it first: python3 bench/make_wordllama_1m.py; --wordllama-dir)
  custom         your own --base and --queries files (.npy, .fvecs, .bvecs), --metric

output (--out PREFIX):
  PREFIX.jsonl   one JSON object per line: a "run" record (data set, configuration, host),
                 per run (extension or variant, "label") a "build" record (server settings,
                 load/build time, WITH options, index size, bytes_per_vector, walk_bytes) and
                 "query" records (one per filter x ef_search x clients), then per --reference
                 a "reference" record (the recorded figures used, their source), then "compare"
                 records (ours / theirs ratios) and a final "summary"
  PREFIX.png     recall@k (x) against QPS (y, log), one line per run label/filter/clients;
                 recorded references as dashed grey lines

examples:
  python3 bench/hnsw_bench.py --dataset minilm --quick --out bench/out/quick
  python3 bench/hnsw_bench.py --dataset minilm --compare vector --clients 1,4 --out bench/out/minilm
  python3 bench/hnsw_bench.py --dataset minilm --reference bench/reference/pgvector-0.8.6.json \\
      --clients 1 --out bench/out/minilm-ref        # pgvector not installed: its recorded figures
  python3 bench/hnsw_bench.py --dataset minilm --compare vector --clients 1 \\
      --variants "quantization=none;quantization=sq8" --out bench/out/minilm-sq8   # ours none, pgvector, ours sq8
  python3 bench/hnsw_bench.py --dataset minilm --quick --with quantization=sq8 --out bench/out/sq8
  python3 bench/hnsw_bench.py --dataset fashion-mnist --m 16 --ef-construction 64 --workers 1 \\
      --filter 0.1,0.01,0.001 --out bench/out/fmnist
  python3 bench/hnsw_bench.py --dataset custom --base my.fvecs --queries q.fvecs --metric ip \\
      --set hnsw.iterative_scan=relaxed_order --filter 0.01 --out bench/out/mine
"""


def int_list(text: str) -> list[int]:
    """'10,20,40' -> [10, 20, 40]."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def selectivity_list(text: str) -> list[float]:
    """'0.1,1%,0.001' -> [0.1, 0.01, 0.001]; each must be 1/N for an integer N >= 2."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        if not 0 < value < 1 or abs(1 / value - round(1 / value)) > 1e-6 * (1 / value):
            raise argparse.ArgumentTypeError(f"filter selectivity must be 1/N for an integer N >= 2, got {part!r}")
        out.append(value)
    return out


def setting(text: str) -> tuple[str, str]:
    """'name=value' -> (name, value)."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", name.strip()):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def index_options(text: str) -> dict:
    """'quantization=sq8,m=8' -> {'quantization': 'sq8', 'm': 8}: WITH options of our index.

    Numeric values become numbers (written unquoted in CREATE INDEX), anything else stays a string
    (written as a SQL string literal). An empty text is no options.
    """
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not OPTION_NAME.fullmatch(name) or not value:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE[,KEY=VALUE...], got {text!r}")
        if name in out:
            raise argparse.ArgumentTypeError(f"option {name!r} given twice in {text!r}")
        if NUMERIC.fullmatch(value):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        out[name] = value
    return out


def variant_list(text: str) -> list[dict]:
    """'quantization=none;quantization=sq8' -> [{'quantization': 'none'}, {'quantization': 'sq8'}].

    An empty spec (the first one in ';quantization=sq8', the last one in 'm=8;') is a variant with no
    options of its own (the index as --with alone builds it).
    """
    return [index_options(spec) for spec in text.split(";")]


def options_text(options: dict) -> str:
    """{'quantization': 'sq8', 'm': 8} -> 'quantization=sq8,m=8' (labels, printouts)."""
    return ",".join(f"{k}={v}" for k, v in options.items())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option is documented in --help)."""
    p = argparse.ArgumentParser(prog="hnsw_bench.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=datasets.BUILTIN, default="minilm", help="data set (default minilm)")
    d.add_argument("--base", help="custom: base vectors file (.npy, .fvecs, .bvecs)")
    d.add_argument("--queries", help="custom: query vectors file (.npy, .fvecs, .bvecs)")
    d.add_argument("--metric", choices=datasets.METRICS,
                   help="distance: l2 (<->), cosine (<=>), ip (<#>), l1 (<+>); default: the data set's own "
                        "(cosine for minilm, l2 for fashion-mnist and custom)")
    d.add_argument("--rows", type=int, help="use only the first N base rows (default all; --quick: 10000)")
    d.add_argument("--nq", type=int, default=500, help="number of queries run per setting (default 500)")
    d.add_argument("--k", type=int, default=10, help="LIMIT k and recall@k (default 10, at most 100)")
    d.add_argument("--data-dir", type=Path, default=datasets.DEFAULT_DATA_DIR,
                   help=f"directory of the MiniLM files (default {datasets.DEFAULT_DATA_DIR})")
    d.add_argument("--fashion-dir", type=Path, default=datasets.DEFAULT_FASHION_DIR,
                   help=f"directory of the fashion-mnist idx files (default {datasets.DEFAULT_FASHION_DIR})")
    d.add_argument("--wordllama-dir", type=Path, default=None,
                   help="directory of the wordllama-1m files (default $HNSW_BENCH_CACHE/wordllama-1m "
                        "or ~/.cache/hnsw_ext_bench/wordllama-1m)")
    d.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("HNSW_BENCH_CACHE",
                                               Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                               / "hnsw_ext_bench")),
                   help="ground truth cache (default $HNSW_BENCH_CACHE or ~/.cache/hnsw_ext_bench)")

    s = p.add_argument_group("server")
    s.add_argument("--dsn", default=os.environ.get("HNSW_BENCH_DSN", DEFAULT_DSN),
                   help=f"libpq connection string of the server (default $HNSW_BENCH_DSN or '{DEFAULT_DSN}'); "
                        "its database is only used to create the benchmark databases")
    s.add_argument("--ext", default="hnsw_ext", help="extension under test (default hnsw_ext)")
    s.add_argument("--compare", default="",
                   help="other extension(s) to run the same benchmark on, comma-separated (e.g. vector for "
                        "pgvector, which must be installed on the server); ratios are ours (--ext) / theirs")
    s.add_argument("--reference", action="append", default=[], metavar="FILE.json",
                   help="recorded results of another extension to compare with, as if it had been run: ratios, "
                        "a 'reference' JSON record and a dashed grey plot line; repeatable or comma-separated. "
                        "Only figures for this run's data set, rows, metric and k are used. Not used unless given; "
                        "for pgvector 0.8.6 on minilm / fashion-mnist (no --rows, k 10, 1 client): "
                        "--reference bench/reference/pgvector-0.8.6.json (a bare file name is also looked up in bench/reference/)")
    s.add_argument("--db", help="database name instead of hnsw_bench_<ext>; with --compare it must contain {ext}")
    s.add_argument("--drop", action="store_true", help="drop the benchmark database(s) at the end")
    s.add_argument("--reuse", action="store_true",
                   help="keep a table (and index) left by an earlier run when data and parameters match; "
                        "its recorded load/build figures are reported again (marked reused)")
    s.add_argument("--type", choices=("vector", "halfvec"), default="vector", help="column type (default vector)")
    s.add_argument("--set", action="append", type=setting, default=[], metavar="NAME=VALUE",
                   help="extra session setting for the build and query sessions, repeatable "
                        "(e.g. hnsw.iterative_scan=relaxed_order, maintenance_work_mem=2GB)")

    i = p.add_argument_group("index and queries")
    i.add_argument("--m", type=int, default=16, help="hnsw m (default 16)")
    i.add_argument("--ef-construction", type=int, default=64, help="hnsw ef_construction (default 64)")
    i.add_argument("--with", dest="with_options", type=index_options, default={}, metavar="KEY=VALUE[,KEY=VALUE...]",
                   help="extra WITH options of our index (--ext only, not --compare), e.g. quantization=sq8; "
                        "numeric values are written as numbers, others as SQL string literals; m and "
                        "ef_construction here override --m / --ef-construction. Recorded in the build record "
                        "('with') and in the label of the run (e.g. hnsw_ext[quantization=sq8])")
    i.add_argument("--variants", type=variant_list, metavar="SPEC;SPEC;...",
                   help="run our index several times in one run, once per SPEC (KEY=VALUE[,KEY=VALUE...], added "
                        "to --with; an empty SPEC is --with alone), e.g. 'quantization=none;quantization=sq8' or "
                        "'m=8;m=12'. The table is loaded once; only the index is dropped and rebuilt per variant. "
                        "With --compare the runs alternate: ours variant 1, theirs, ours variant 2, ours variant 3, "
                        "... Each variant is its own label, curve and compare record")
    i.add_argument("--rounds", type=int, default=1,
                   help="repeat the whole sequence (our variants with the --compare extensions between them) N "
                        "times, to see run-to-run noise; labels get ' #R' (round R) when N > 1 and each round's "
                        "runs are compared with the same round's other extension. Tables are loaded once, indexes "
                        "are rebuilt every round (default 1)")
    i.add_argument("--workers", type=int, default=1,
                   help="SET max_parallel_maintenance_workers for the build (default 1 = leader + 1 worker)")
    i.add_argument("--ef", type=int_list, help=f"hnsw.ef_search values (default {DEFAULT_EF}; --quick: {QUICK['ef']})")
    i.add_argument("--clients", type=int_list,
                   help=f"client counts; each client is a thread with its own connection (default 1,4; "
                        f"--quick: {QUICK['clients']})")
    i.add_argument("--filter", type=selectivity_list,
                   help="filter selectivities, each 1/N (e.g. 0.1,0.01,0.001 or 1%%): adds column catN = id %% N "
                        f"and runs the sweep again with WHERE catN = 0 (default none; --quick: {QUICK['filter']})")
    i.add_argument("--filter-shape", type=shape_list, default=["eq"],
                   help="filter shapes run at each --filter selectivity (comma list, default eq): eq (WHERE catN = 0, "
                        "catN = id %% N), range (WHERE rnk < rows/N, rnk a random permutation of the ids), near "
                        "(WHERE cluN = the k-means cluster whose centre is nearest the query: a correlated filter), "
                        "far (the farthest cluster: no row near the query matches, an anti-correlated filter)")
    i.add_argument("--filter-columns", action=argparse.BooleanOptionalAction, default=False,
                   help="make the catN filter columns key columns of the hnsw index after the vector "
                        "(hnsw_ext's filter pushdown: WHERE catN = 0 becomes an index condition) of --ext only: a "
                        "--compare extension gets its plain index (pgvector cannot build such an index); default off")
    i.add_argument("--force-index", action=argparse.BooleanOptionalAction, default=None,
                   help="SET enable_seqscan, enable_bitmapscan and enable_sort to off in the query sessions so the "
                        "planner uses the hnsw index even where it estimates a sequential scan + sort as cheaper "
                        "(small tables, large ef_search, selective filters). Default off (the planner decides; "
                        "every record says whether the index was used); --quick turns it on")
    i.add_argument("--warmup", type=int, help="untimed queries per client before each timed setting (default 50; "
                                              f"--quick: {QUICK['warmup']})")

    o = p.add_argument_group("output")
    o.add_argument("--out", help="output prefix: writes PREFIX.jsonl and PREFIX.png "
                                 "(default bench/out/<dataset>-<time>)")
    o.add_argument("--quick", action="store_true",
                   help=f"small run for tests: {QUICK['rows']} rows, ef {QUICK['ef']}, clients {QUICK['clients']}, "
                        f"filter {QUICK['filter']}, --force-index (explicit options still win); < 2 minutes on 2 cores")
    return p


def shape_list(text: str) -> list[str]:
    """Filter shapes, e.g. ``eq,range,far`` (see filters.SHAPES)."""
    shapes = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in shapes if t not in filters.SHAPES]
    if bad or not shapes:
        raise argparse.ArgumentTypeError(f"filter shapes are {', '.join(filters.SHAPES)}; got {text!r}")
    return list(dict.fromkeys(shapes))


@dataclass
class BenchRun:
    """One load-build-sweep of one extension with one set of index options.

    Attributes:
        ext: the extension (its database is ``Config.dbname(ext)``).
        label: the name of the run in records (``label``), printouts, compare records and the plot:
            the extension, its extra WITH options in brackets, and `` #R`` with --rounds > 1.
        ours: whether this is --ext (the others are --compare extensions).
        options: extra WITH options (--with merged with the variant), m / ef_construction included
            when given there.
        m, ef_construction: the values actually used.
        round: 1-based round (--rounds).
    """

    ext: str
    label: str
    ours: bool
    options: dict
    m: int
    ef_construction: int
    round: int = 1


def plan_runs(args: argparse.Namespace, exts: list[str]) -> list[BenchRun]:
    """The runs of the benchmark, in order: per round, our first variant, the --compare
    extensions, then our other variants (so ours and theirs alternate)."""
    variants = args.variants if args.variants else [{}]
    runs = []
    for rnd in range(1, args.rounds + 1):
        suffix = f" #{rnd}" if args.rounds > 1 else ""
        ours = []
        for variant in variants:
            options = {**args.with_options, **variant}
            m, efc = options.get("m", args.m), options.get("ef_construction", args.ef_construction)
            label = exts[0] + (f"[{options_text(options)}]" if options else "") + suffix
            ours.append(BenchRun(exts[0], label, True, options, m, efc, rnd))
        theirs = [BenchRun(ext, ext + suffix, False, {}, args.m, args.ef_construction, rnd) for ext in exts[1:]]
        runs += ours[:1] + theirs + ours[1:]
    return runs


@dataclass
class Config:
    """Resolved settings of a run."""

    args: argparse.Namespace
    ef: list[int]
    clients: list[int]
    filters: list[float]
    warmup: int
    rows: int | None
    exts: list[str]
    out: Path
    force_index: bool = False
    session: dict = field(default_factory=dict)
    references: list = field(default_factory=list)  # loaded --reference documents
    runs: list = field(default_factory=list)  # BenchRun, in the order they are run

    @property
    def ours(self) -> list:
        """Runs of our extension (--ext), in order."""
        return [r for r in self.runs if r.ours]

    @property
    def moduli(self) -> list[int]:
        """Filter moduli N (selectivity 1/N)."""
        return [round(1 / f) for f in self.filters]

    @property
    def cases(self) -> list:
        """Filtered workloads: every --filter-shape at every --filter selectivity."""
        return filters.cases(self.moduli, self.args.filter_shape)

    @property
    def filter_columns(self) -> list[str]:
        """The table's filter columns."""
        return filters.columns(self.cases)

    def dbname(self, ext: str) -> str:
        """Benchmark database of an extension."""
        if self.args.db:
            return self.args.db.replace("{ext}", ext)
        return "hnsw_bench_" + re.sub(r"[^a-z0-9_]", "_", ext.lower())


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """Apply --quick defaults, check combinations, and derive the output prefix."""
    quick = args.quick
    exts = [args.ext] + [e.strip() for e in args.compare.split(",") if e.strip()]
    if len(set(exts)) != len(exts):
        parser.error("--compare repeats an extension")
    if args.db and len(exts) > 1 and "{ext}" not in args.db:
        parser.error("with --compare, --db must contain {ext} (one database per extension)")
    if not 1 <= args.k <= GT_K:
        parser.error(f"--k must be between 1 and {GT_K}")
    if args.nq <= 0:
        parser.error("--nq must be positive")
    if args.rounds <= 0:
        parser.error("--rounds must be positive")
    runs = plan_runs(args, exts)
    if len({r.label for r in runs}) != len(runs):
        parser.error("--variants repeats a variant (or names --with options again with the same values)")
    for r in runs:
        for key in ("m", "ef_construction"):
            if not isinstance(getattr(r, key), int) or getattr(r, key) <= 0:
                parser.error(f"{key} must be a positive integer, got {getattr(r, key)!r}")
    ef = args.ef or int_list(QUICK["ef"] if quick else DEFAULT_EF)
    clients = args.clients or int_list(QUICK["clients"] if quick else "1,4")
    filters = args.filter if args.filter is not None else (selectivity_list(QUICK["filter"]) if quick else [])
    warmup = args.warmup if args.warmup is not None else (QUICK["warmup"] if quick else 50)
    rows = args.rows if args.rows is not None else (QUICK["rows"] if quick else None)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(re.sub(r"\.(jsonl|png)$", "", args.out)) if args.out else Path(__file__).resolve().parents[1] / "out" / (
        f"{args.dataset}{'-quick' if quick else ''}-{stamp}")
    force = args.force_index if args.force_index is not None else quick
    session = {**(FORCE_INDEX if force else {}), **dict(args.set)}
    references = []
    for name in dict.fromkeys(p.strip() for arg in args.reference for p in arg.split(",") if p.strip()):
        if not Path(name).exists() and (REFERENCE_DIR / name).exists():
            name = str(REFERENCE_DIR / name)
        try:
            doc = reference.load(name)
        except (OSError, ValueError) as e:
            parser.error(f"--reference: {e}")
        # The name it goes by in records, printouts and the legend: unique among extensions and references.
        ext = reference.label(doc)
        if ext in exts or ext in (r.label for r in runs) or ext in (d["ext_name"] for d in references):
            ext = f"{ext} [{Path(name).name}]"
        doc["ext_name"] = ext
        references.append(doc)
    return Config(args=args, ef=sorted(set(ef)), clients=sorted(set(clients)),
                  filters=sorted(set(filters), reverse=True), warmup=warmup, rows=rows, exts=exts, out=out,
                  force_index=force, session=session, references=references, runs=runs)


@dataclass
class PreparedData:
    """The data set with its ground truth (unfiltered and per filter modulus)."""

    ds: datasets.Dataset
    base_hash: str
    query_hash: str
    gt: groundtruth.GroundTruth
    gt_source: str
    filtered: dict  # FilterCase -> GroundTruth
    texts: list[str]
    columns: filters.Columns | None = None

    def case_texts(self, case) -> list:
        """Each query's statement parameters under ``case`` (a filter value first for near/far)."""
        if case is None or not case.per_query:
            return self.texts
        return [(int(v), t) for v, t in zip(self.columns.params[case], self.texts)]


def prepare_data(cfg: Config) -> PreparedData:
    """Load the data set, compute (or fetch from cache) all ground truth, format query texts."""
    a = cfg.args
    t0 = time.perf_counter()
    ds = datasets.load_dataset(a.dataset, rows=cfg.rows, n_queries=a.nq, metric=a.metric, data_dir=a.data_dir,
                               fashion_dir=a.fashion_dir, base_file=a.base, query_file=a.queries,
                               wordllama_dir=a.wordllama_dir)
    print(f"data: {ds.name}, {ds.base.shape[0]} rows x {ds.dim} dims, {ds.queries.shape[0]} queries, "
          f"metric {ds.metric}  ({time.perf_counter() - t0:.1f}s)")
    if a.type == "halfvec":
        # The server stores (and casts query texts to) float16: compute everything on those values.
        if max(np.abs(ds.base).max(), np.abs(ds.queries).max()) > 65504:
            raise db.BenchError("values exceed the halfvec range")
        ds.base = ds.base.astype(np.float16).astype(np.float32)
        ds.queries = ds.queries.astype(np.float16).astype(np.float32)
    cache = groundtruth.GroundTruthCache(cfg.args.cache_dir)
    base_hash, query_hash = groundtruth.array_digest(ds.base), groundtruth.array_digest(ds.queries)
    gt, how = groundtruth.compute_ground_truth(ds, GT_K, cache, base_hash, query_hash)
    print(f"ground truth: top-{gt.k} ({how})")
    filtered = {}
    t0 = time.perf_counter()
    cols = filters.make_columns(ds.base, ds.queries, ds.metric, cfg.cases)
    if any(c.per_query for c in cfg.cases):
        print(f"filter clusters (k-means) in {time.perf_counter() - t0:.1f}s")
    for case in cfg.cases:
        filtered[case], cached = groundtruth.compute_case_ground_truth(ds, GT_K, case, cols, cache, base_hash, query_hash)
        gt_case = filtered[case]
        spread = "" if gt_case.per_query is None else \
            f" per query (min {gt_case.per_query.min()}, max {gt_case.per_query.max()})"
        print(f"filtered ground truth {case.label}: {gt_case.candidates} matching rows{spread} "
              f"({'cache' if cached else 'computed'})")
    texts = [workload.vector_text(q) for q in ds.queries]
    return PreparedData(ds, base_hash, query_hash, gt, how, filtered, texts, cols)


def run_record(cfg: Config, data: PreparedData, run_id: str) -> dict:
    """The first JSON record: what was run, on what, with which options."""
    a = cfg.args
    return {
        "type": "run", "run_id": run_id, "tool_version": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:], "quick": bool(a.quick),
        "dataset": {**data.ds.describe(), "base_hash": data.base_hash, "query_hash": data.query_hash,
                    "ground_truth": data.gt_source},
        "config": {"exts": cfg.exts, "with": a.with_options, "variants": a.variants, "rounds": a.rounds,
                   "runs": [r.label for r in cfg.runs], "references": [d["path"] for d in cfg.references], "type": a.type, "m": a.m,
                   "ef_construction": a.ef_construction, "workers": a.workers, "ef_search": cfg.ef,
                   "clients": cfg.clients, "filters": cfg.filters, "filter_shapes": a.filter_shape, "filter_columns": bool(a.filter_columns), "force_index": cfg.force_index, "k": a.k, "queries": len(data.texts), "warmup": cfg.warmup,
                   "session": cfg.session, "dsn": db.redact(a.dsn)},
        "host": {"hostname": socket.gethostname(), "cpus": os.cpu_count(), "platform": platform.platform(),
                 "python": platform.python_version(), "numpy": np.__version__, "psycopg": psycopg.__version__},
    }


def index_filter_columns(filter_columns: bool, ours: bool, moduli, columns: list[str] | None = None) -> list[str]:
    """The filter columns (catN for the moduli, or ``columns``) to make key columns of a run's
    index. Filter columns are ours: a --compare extension (pgvector cannot build a multicolumn
    hnsw index) gets its plain index and filters its rows after the scan, as its users do."""
    if not (filter_columns and ours):
        return []
    cols = list(columns) if columns is not None else [db.filter_column(m) for m in sorted(moduli)]
    if len(cols) > 8:
        raise db.BenchError(f"--filter-columns: {len(cols)} filter columns ({', '.join(cols)}), more than an hnsw "
                            "index takes (8): run fewer --filter selectivities or --filter-shape shapes")
    return cols


def load_and_build(cfg: Config, data: PreparedData, conn: psycopg.Connection, conninfo: str, run: BenchRun,
                   loaded: bool = False) -> dict:
    """Create and fill the table, build the index (or reuse both); returns the build figures.

    ``loaded``: an earlier run of this invocation loaded the table of this database, so it is kept
    (whatever --reuse says) and only the index is dropped and rebuilt.
    """
    a, ds = cfg.args, data.ds
    n = ds.base.shape[0]
    table_fp = {"data": data.base_hash, "rows": n, "dim": ds.dim, "type": a.type, "filters": sorted(cfg.moduli)}
    if a.filter_shape != ["eq"]:
        table_fp["filter_columns"] = cfg.filter_columns
    filter_columns = index_filter_columns(a.filter_columns, run.ours, cfg.moduli, cfg.filter_columns)
    index_fp = {"opclass": f"{a.type}_{db.OPCLASS_SUFFIX[ds.metric]}", "m": run.m, "filter_columns": filter_columns,
                "ef_construction": run.ef_construction, "workers": a.workers, "build_session": dict(a.set),
                "with": run.options}
    old_table, old_index = db.get_comment(conn, db.TABLE), db.get_comment(conn, db.INDEX)
    reuse_table = (a.reuse or loaded) and old_table and old_table.get("fingerprint") == table_fp
    # Within one invocation every run builds its own index; --reuse only keeps one from an earlier invocation.
    reuse_index = a.reuse and not loaded and reuse_table and old_index and old_index.get("fingerprint") == index_fp
    if reuse_table:
        load = old_table["load"]
        print(f"reusing table {db.TABLE} (loaded in {load['load_s']:.1f}s {'by an earlier run' if loaded else 'earlier'})")
    else:
        if old_table is None and db.relation_exists(conn, db.TABLE):
            raise db.BenchError(f"database {conn.info.dbname!r} has a table {db.TABLE!r} that this tool did not "
                                "create; not dropping it (choose another --db)")
        db.apply_settings(conn, dict(a.set))
        db.create_table(conn, ds.dim, a.type, cfg.filter_columns)
        load_s = db.copy_rows(conn, ds.base, a.type, {c: data.columns.values[c] for c in cfg.filter_columns})
        t0 = time.perf_counter()
        conn.execute(f"VACUUM ANALYZE {db.TABLE}")
        load = {"load_s": load_s, "vacuum_analyze_s": time.perf_counter() - t0}
        db.set_comment(conn, "TABLE", db.TABLE, {"fingerprint": table_fp, "load": load})
        print(f"loaded {n} rows in {load_s:.2f}s (VACUUM ANALYZE {load['vacuum_analyze_s']:.2f}s)")
    if reuse_index:
        build = old_index["build"]
        print(f"reusing index {db.INDEX} (built in {build['build_s']:.1f}s earlier)")
    else:
        db.apply_settings(conn, dict(a.set))
        res = db.build_index(conninfo, conn, a.type, ds.metric, run.m, run.ef_construction, a.workers, n,
                             filter_columns, run.options)
        build = {"build_s": res.seconds, "build_phases": res.phases, "parallel_workers_seen": res.parallel_workers_seen,
                 "progress_reported": res.progress_reported, "build_last_progress": res.last_progress}
        db.set_comment(conn, "INDEX", db.INDEX, {"fingerprint": index_fp, "build": build})
        conn.execute("RESET ALL")
    index_bytes = db.relation_size(conn, db.INDEX)
    walk_bytes = db.walk_size(conn, db.INDEX)
    sizes = {"index_bytes": index_bytes, "bytes_per_vector": index_bytes / n, "walk_bytes": walk_bytes,
             "walk_bytes_per_vector": None if walk_bytes is None else walk_bytes / n}
    print(f"index built in {build['build_s']:.2f}s{' (earlier)' if reuse_index else ''}: {size_text(sizes)}"
          + ("" if build.get("progress_reported", True) else "  (no pg_stat_progress_create_index rows seen)"))
    return {**load, **build, "reused": bool(reuse_index), "reused_table": bool(reuse_table), **sizes,
            "table_bytes": db.relation_size(conn, db.TABLE), "table_total_bytes": db.table_size(conn, db.TABLE),
            "rows": n, "dim": ds.dim, **index_fp}


def size_text(build: dict) -> str:
    """'175.7 MiB, 1842 bytes/vector, walk 52.1 MiB (546 bytes/vector)' from a build record
    (walk only where hnsw_walk_size reported it)."""
    text = f"{build['index_bytes'] / 2**20:.1f} MiB, {build['bytes_per_vector']:.0f} bytes/vector"
    if build.get("walk_bytes") is not None:
        text += f", walk {build['walk_bytes'] / 2**20:.1f} MiB ({build['walk_bytes_per_vector']:.0f} bytes/vector)"
    return text


def sweep(cfg: Config, data: PreparedData, ext: str, conninfo: str, common: dict, writer: report.JsonlWriter) -> None:
    """All query settings of one extension: filter x ef_search x clients, one record each.

    Each record also says whether EXPLAIN shows the hnsw index for that setting and how many
    sequential scans of the table (and hnsw index scans, where the access method counts them)
    the statistics saw during the run: the planner may prefer a sequential scan + sort (exact, so
    recall 1.0) for small tables, large ef_search or selective filters; a warning says so.
    """
    a, ds = cfg.args, data.ds
    print(f"{'filter':>8} {'ef':>5} {'cl':>3} {'recall@' + str(a.k):>9} {'QPS':>9} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'rows/q':>7}  plan")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # One untimed pass over all queries at the largest ef_search brings the index into cache.
        stmt = workload.query_statement(a.type, ds.metric, a.k)
        workload.run_workload(conninfo, stmt, data.texts, {**cfg.session, "hnsw.ef_search": max(cfg.ef)}, 1, 0)
        for case in [None] + cfg.cases:
            stmt = workload.query_statement(a.type, ds.metric, a.k, case=case, rows=ds.base.shape[0])
            gt = data.gt if case is None else data.filtered[case]
            texts = data.case_texts(case)
            name = "-" if case is None else case.label
            for ef in cfg.ef:
                session = {**cfg.session, "hnsw.ef_search": ef}
                db.apply_settings(conn, session)
                uses_index, plan = workload.explain(conn, stmt, texts[0])
                conn.execute("RESET ALL")
                for clients in cfg.clients:
                    before = db.scan_counts(conn)
                    res = workload.run_workload(conninfo, stmt, texts, session, clients, cfg.warmup)
                    after = db.scan_counts(conn)
                    seq_scans, idx_scans = (after[k] - before[k] for k in ("seq_scan", "idx_scan"))
                    indexed = uses_index and seq_scans == 0
                    rec = groundtruth.recall(ds.base, ds.queries, ds.metric, res.answers, gt, a.k)
                    record = writer.write({
                        "type": "query", **common, "filter": None if case is None else case.selectivity,
                        "filter_shape": None if case is None else case.shape, "filter_rows": gt.candidates, "ef_search": ef, "clients": clients, "k": a.k,
                        "queries": len(res.latencies), **rec, "qps": res.qps, **res.latency_ms(),
                        "wall_s": res.wall_s, "plan_uses_index": uses_index, "plan": plan,
                        "seq_scans": seq_scans, "index_scans": idx_scans, "session": session,
                    })
                    flag = "hnsw index" if indexed else f"NOT INDEX ({seq_scans} seq scans)"
                    print(f"{name:>8} {ef:>5} {clients:>3} {record['recall']:>9.4f} "
                          f"{record['qps']:>9.1f} {record['p50_ms']:>8.2f} {record['p95_ms']:>8.2f} "
                          f"{record['p99_ms']:>8.2f} {record['rows_per_query']:>7.2f}  {flag}")
                    if not indexed:
                        print(f"WARNING: ef_search={ef} filter={case and case.label}: the hnsw index was not used for "
                              f"every query (plan: {plan}; {seq_scans} sequential scans of {db.TABLE}); "
                              "see --force-index", file=sys.stderr)
                    for key in ("duplicate_answers", "invalid_id_answers"):
                        if record[key]:
                            what = key.removesuffix("_answers").replace("_", " ")
                            print(f"WARNING: {record[key]} answers with {what} ids", file=sys.stderr)


def bench_extension(cfg: Config, data: PreparedData, run: BenchRun, run_id: str, writer: report.JsonlWriter,
                    loaded: bool = False) -> None:
    """Database, extension, load (unless ``loaded``), build and sweep for one run of one extension."""
    dsn, ext = cfg.args.dsn, run.ext
    dbname = cfg.dbname(ext)
    created = db.ensure_database(dsn, dbname, ext)
    conninfo = db.db_conninfo(dsn, dbname)
    print(f"\n=== {run.label}: database {dbname}{' (created)' if created else ''}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        version = db.ensure_extension(conn, ext, cfg.args.type, data.ds.metric)
        settings = db.server_settings(conn, cfg.args.type)
        print(f"{ext} {version}; server " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        build = load_and_build(cfg, data, conn, conninfo, run, loaded)
    common = {"run_id": run_id, "dataset": data.ds.name, "ext": ext, "label": run.label, "round": run.round}
    writer.write({"type": "build", **common, "ext_version": version, "database": dbname, "settings": settings, **build})
    sweep(cfg, data, ext, conninfo, common, writer)


def match_references(cfg: Config, data: PreparedData) -> list[tuple[dict, dict | None, str]]:
    """Pick, per --reference file, the recorded figures for this run's data set; says which (or why none)."""
    out = []
    for doc in cfg.references:
        entry, why = reference.match(doc, dataset=cfg.args.dataset, metric=data.ds.metric,
                                     rows=data.ds.base.shape[0], dim=data.ds.dim, k=cfg.args.k)
        if entry is None:
            print(f"reference {doc['ext_name']} ({doc['path']}): not used: {why}")
        else:
            size = reference.index_bytes(entry)
            print(f"reference {doc['ext_name']} ({doc['path']}): {entry.get('name', entry['dataset'])}, "
                  f"build {entry.get('build_s', 'n/a')}s, index "
                  f"{'n/a' if size is None else f'{size / reference.MIB:.1f} MiB'}, "
                  f"{len(entry.get('curve', []))} ef_search points, {len(entry.get('filtered', []) or [])} filtered")
        out.append((doc, entry, why))
    return out


def compare_references(cfg: Config, data: PreparedData, run_id: str, writer: report.JsonlWriter,
                       matched: list, ours_ok: set) -> list[dict]:
    """Write a ``reference`` record per --reference and, where its figures apply, the ours / recorded
    ``compare`` record per run of ours that succeeded (labels in ``ours_ok``), printed too; returns the
    reference records whose figures were used."""
    a = cfg.args
    ours = [r for r in cfg.ours if r.label in ours_ok]
    first = cfg.ours[0]

    def run_config(run: BenchRun) -> dict:
        return {"type": a.type, "m": run.m, "ef_construction": run.ef_construction, "workers": a.workers,
                "queries": len(data.texts), "clients": cfg.clients, "session": dict(a.set)}

    def build_of(run: BenchRun) -> dict | None:
        return next((r for r in writer.records if r.get("type") == "build" and report.label(r) == run.label), None)

    used = []
    for doc, entry, why in matched:
        # The reference record lists the differences from our first run; each compare record its own.
        diffs = reference.differences(doc, build=build_of(first), run_config=run_config(first),
                                      host_cpus=os.cpu_count()) if entry is not None else []
        rec = writer.write({"run_id": run_id, "dataset": data.ds.name,
                            **reference.record(doc, entry, doc["ext_name"], why, diffs)})
        if entry is None:
            continue
        used.append(rec)
        for d in diffs:
            print(f"WARNING: reference {doc['ext_name']}: {d}", file=sys.stderr)
        for run in ours:
            run_diffs = reference.differences(doc, build=build_of(run), run_config=run_config(run),
                                              host_cpus=os.cpu_count())
            ratios = report.compare(writer.records + reference.pseudo_records(entry, doc["ext_name"]), run.label,
                                    doc["ext_name"])
            rec = writer.write({"run_id": run_id, "dataset": data.ds.name, **ratios, "recorded": True,
                                "reference_file": doc["path"], "differences": run_diffs})
            print(report.format_compare(rec))
    return used


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status (0 ok, 1 an extension failed, 2 setup error)."""
    parser = build_parser()
    cfg = resolve(parser.parse_args(argv), parser)
    started = time.perf_counter()
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    try:
        data = prepare_data(cfg)
    except (OSError, ValueError, db.BenchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    matched = match_references(cfg, data)
    writer = report.JsonlWriter(Path(f"{cfg.out}.jsonl"))
    writer.write(run_record(cfg, data, run_id))
    failed, loaded = [], set()
    for run in cfg.runs:
        try:
            bench_extension(cfg, data, run, run_id, writer, loaded=run.ext in loaded)
        except (psycopg.Error, db.BenchError) as e:
            msg = f"{type(e).__name__}: {e}".strip()
            print(f"error with {run.label}: {msg}", file=sys.stderr)
            writer.write({"type": "error", "run_id": run_id, "dataset": data.ds.name, "ext": run.ext,
                          "label": run.label, "round": run.round, "message": msg})
            failed.append(run.label)
        # A table whose load did not finish carries no fingerprint comment, so it is loaded again anyway.
        loaded.add(run.ext)
    print()
    builds = [r for r in writer.records if r.get("type") == "build"]
    width = max(len(report.label(b)) for b in builds) if builds else 0
    for b in builds:
        print(f"{report.label(b):<{width}}  build {b['build_s']:.2f}s  index {size_text(b)}")
    if builds:
        print()
    for ours in cfg.ours:
        for other in (r for r in cfg.runs if not r.ours and r.round == ours.round):
            if ours.label in failed or other.label in failed:
                continue
            ratios = report.compare(writer.records, ours.label, other.label)
            rec = writer.write({"run_id": run_id, "dataset": data.ds.name, **ratios})
            print(report.format_compare(rec))
    ours_ok = {r.label for r in cfg.ours if r.label not in failed}
    used_refs = compare_references(cfg, data, run_id, writer, matched, ours_ok)
    png = Path(f"{cfg.out}.png")
    a = cfg.args
    title = (f"{data.ds.name} ({data.ds.base.shape[0]} x {data.ds.dim}, {data.ds.metric}), {a.type}, "
             f"m={a.m} ef_construction={a.ef_construction}, "
             f"{len(data.texts)} queries, k={a.k}")
    report.plot(writer.records, png, title, a.k, references=used_refs)
    if cfg.args.drop:
        for ext in cfg.exts:
            db.drop_database(a.dsn, cfg.dbname(ext))
    elapsed = time.perf_counter() - started
    writer.write({"type": "summary", "run_id": run_id, "dataset": data.ds.name, "elapsed_s": elapsed,
                  "failed": failed, "jsonl": str(writer.path), "png": str(png)})
    writer.close()
    print(f"wrote {writer.path} and {png} in {elapsed:.1f}s")
    return 1 if failed else 0
