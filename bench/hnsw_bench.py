#!/usr/bin/env python3
"""Benchmark hnsw_ext (and pgvector) on PostgreSQL: build time, index size, recall@k, QPS, latency.

Usage:  python3 bench/hnsw_bench.py --help
The code lives in the hnswbench package next to this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hnswbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
