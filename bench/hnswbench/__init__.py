"""hnswbench: recall / QPS / build benchmark for the hnsw_ext PostgreSQL extension (and pgvector).

Entry point: ``python3 bench/hnsw_bench.py --help``. The package is split by concern:

* :mod:`hnswbench.datasets`  - loading base/query vectors (.npy, .fvecs, .bvecs, idx.gz)
* :mod:`hnswbench.groundtruth` - exact k-NN with numpy, filtered k-NN, caching, recall with ties
* :mod:`hnswbench.progress`  - a dependency-free terminal progress bar
* :mod:`hnswbench.db`        - databases, extension setup, binary COPY, index build with progress
* :mod:`hnswbench.workload`  - the query loop (1 or N clients), latency statistics, EXPLAIN check
* :mod:`hnswbench.report`    - JSON lines, QPS-at-recall interpolation, ratios, the PNG plot
* :mod:`hnswbench.reference` - recorded figures of another extension (--reference FILE.json)
* :mod:`hnswbench.cli`       - argument parsing and the orchestration of one run
"""

__version__ = "1.0"
