#!/usr/bin/env python3
"""Make the wordllama-1m benchmark data set (see bench/README.md, "wordllama-1m"):

    pip install wordllama            # a registry package; its weights are in the wheel
    python3 bench/make_wordllama_1m.py [--out DIR] [--work DIR] [--rows N] [--queries N]

Downloads (apt-get download, nothing installed) and unpacks Debian documentation packages,
extracts their distinct English sentences, embeds a million of them and 1,000 others with
wordllama (256 dims, unit length, cosine) and computes the queries' exact top-100. Writes
base.npy, queries.npy, gt100-ids.npy, the sentences (base.txt, queries.txt, base-source.txt:
the package of each base row) and manifest.json (package versions, SHA-256 of every file) into
--out (default $HNSW_BENCH_CACHE/wordllama-1m or ~/.cache/hnsw_ext_bench/wordllama-1m), where
`hnsw_bench.py --dataset wordllama-1m` finds it. Deterministic: a second run writes the same
files (compare the manifests)."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hnswbench import wordllama  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=wordllama.default_dir())
    p.add_argument("--work", type=Path, default=None, help="downloads and unpacked packages (default OUT/work)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    a = p.parse_args()
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    m = wordllama.make(a.out, a.work or a.out / "work", a.rows, a.queries, log)
    log(f"wrote {a.out}: {m['rows']} rows, {m['queries']} queries, {m['dim']} dims, from {m['distinct_sentences']} distinct sentences")


if __name__ == "__main__":
    main()
