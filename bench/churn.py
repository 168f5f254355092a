#!/usr/bin/env python3
"""Churn benchmark: single-row INSERT throughput, VACUUM time after deletes, and recall before
and after, on MiniLM-384 or wordllama-1m (cosine) — the figures of ../shared/data/README.md that
the recall/QPS tool (hnsw_bench.py) does not measure.

On a database of its own (hnsw_churn_<ext>, dropped and recreated), with the same protocol as
the reference figures: rows loaded with binary COPY, VACUUM ANALYZE, CREATE INDEX ... USING hnsw
(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64). Then:

  1. insert: one client inserts the query vectors one row per statement (autocommit,
     synchronous_commit off, text parameters): rows/s; then deletes them again and VACUUMs.
  2. vacuum10: delete 10% of the rows (random, fixed seed), VACUUM (INDEX_CLEANUP ON): seconds.
     Recall@10 at ef_search 100 against the exact answer over the live rows, before and after.
  3. vacuum50: delete half of the remaining rows, VACUUM; recall before and after; then insert
     the same rows again (binary COPY) and report the index size before and after.

    python3 bench/churn.py --dsn 'host=127.0.0.1 port=5499 user=postgres dbname=postgres'

With --db NAME --reuse it works on a table `items (id, embedding)` with an hnsw index that is
already there and has the data set's first --rows rows (e.g. the one hnsw_bench.py left in
hnsw_bench_<ext>; `{ext}` in NAME is replaced), instead of loading and building its own.

Prints one line per figure and, with --out FILE, writes them as one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hnswbench import datasets  # noqa: E402


def vec_text(v):
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default="host=127.0.0.1 port=5499 user=postgres dbname=postgres")
    p.add_argument("--ext", default="hnsw_ext", help="extension under test (vector for pgvector)")
    p.add_argument("--dataset", choices=("minilm", "wordllama-1m"), default="minilm")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"), help="minilm's files")
    p.add_argument("--db", default="hnsw_churn_{ext}", help="database ({ext} is replaced; default hnsw_churn_{ext})")
    p.add_argument("--reuse", action="store_true",
                   help="use the table and index already in --db (they must hold the first --rows rows)")
    p.add_argument("--rows", type=int, default=0, help="first N base rows (default all)")
    p.add_argument("--nq", type=int, default=500, help="queries for recall and rows for the INSERT test")
    p.add_argument("--ef", type=int, default=100, help="hnsw.ef_search for recall")
    p.add_argument("--steps", default="insert,vacuum10,vacuum50", help="which of insert, vacuum10, vacuum50 to run")
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args()

    ds = datasets.load_dataset(a.dataset, rows=a.rows or None, n_queries=a.nq, data_dir=Path(a.data_dir))
    base, queries = ds.base, ds.queries
    n = len(base)
    nb = base / np.linalg.norm(base, axis=1, keepdims=True)
    nq = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = nq @ nb.T
    qtext = [vec_text(q) for q in queries]
    db = a.db.replace("{ext}", a.ext)
    out = {"ext": a.ext, "dataset": ds.name, "rows": n, "ef_search": a.ef}

    if not a.reuse:
        with psycopg.connect(a.dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db}")
            c.execute(f"CREATE DATABASE {db}")
    conn = psycopg.connect(a.dsn + f" dbname={db}", autocommit=True)
    conn.execute(f"CREATE EXTENSION IF NOT EXISTS {a.ext}")
    register_vector(conn)
    if a.reuse:
        have = conn.execute("SELECT count(*), max(id) FROM items").fetchone()
        if have != (n, n - 1):
            raise SystemExit(f"--reuse: {db}.items has {have[0]} rows (max id {have[1]}), not ids 0..{n - 1}")
    else:
        conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({base.shape[1]}))")
        t = time.time()
        with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i, v in enumerate(base):
                copy.write_row((i, v))
        conn.execute("VACUUM ANALYZE items")
        out["load_s"] = time.time() - t
        t = time.time()
        conn.execute("CREATE INDEX items_idx ON items USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        out["build_s"] = time.time() - t
        print(f"{n} rows loaded in {out['load_s']:.1f} s, index built in {out['build_s']:.1f} s", flush=True)
    index = conn.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'items'::regclass AND am.amname = 'hnsw'"
    ).fetchall()
    if len(index) != 1:
        raise SystemExit(f"{db}.items has {len(index)} hnsw indexes, not one")
    index = index[0][0]
    out["index_size"] = conn.execute("SELECT pg_relation_size(%s::regclass)", (index,)).fetchone()[0]

    alive = np.ones(n, bool)

    def recall():
        conn.execute(f"SET hnsw.ef_search = {a.ef}")
        s = np.where(alive, sims, -np.inf)
        truth = np.argpartition(-s, 10, axis=1)[:, :10]
        hits = 0
        with conn.cursor() as cur:
            for i, q in enumerate(qtext):
                got = [r[0] for r in cur.execute("SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT 10", (q,))]
                hits += len(set(got) & set(truth[i].tolist()))
        return hits / (len(qtext) * 10)

    def size():
        return conn.execute("SELECT pg_relation_size(%s::regclass)", (index,)).fetchone()[0]

    steps = a.steps.split(",")
    # 1. single-row INSERT throughput.
    conn.execute("SET synchronous_commit = off")
    t = time.time()
    with conn.cursor() as cur:
        for i, q in enumerate(qtext if "insert" in steps else []):
            cur.execute("INSERT INTO items (id, embedding) VALUES (%s, %s::vector)", (n + i, q))
    out["insert_rows_per_s"] = len(qtext) / (time.time() - t)
    conn.execute("RESET synchronous_commit")
    conn.execute("DELETE FROM items WHERE id >= %s", (n,))
    conn.execute("VACUUM items")
    print(f"single-row INSERT, synchronous_commit off: {out['insert_rows_per_s']:.0f} rows/s", flush=True)

    rng = np.random.default_rng(42)
    for step, share in (("vacuum10", 0.1), ("vacuum50", 0.5)):
        if step not in steps:
            continue
        before = recall()
        live = np.flatnonzero(alive)
        dead = rng.choice(live, int(len(live) * share), replace=False)
        conn.execute("DELETE FROM items WHERE id = ANY(%s)", (dead.tolist(),))
        alive[dead] = False
        size_before = size()
        t = time.time()
        conn.execute("VACUUM (INDEX_CLEANUP ON) items")
        secs = time.time() - t
        after = recall()
        out[step] = {"deleted": len(dead), "vacuum_s": secs, "recall_before": before, "recall_after": after}
        print(f"{step}: deleted {len(dead)} rows, VACUUM {secs:.1f} s; recall@10 at ef_search {a.ef}: {before:.4f} before, {after:.4f} after", flush=True)
        if step == "vacuum50":
            t = time.time()
            with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for i in dead:
                    copy.write_row((int(i), base[i]))
            alive[dead] = True
            out[step].update(reinsert_s=time.time() - t, size_before=size_before, size_after_reinsert=size(), recall_after_reinsert=recall())
            print(
                f"  re-inserted them in {out[step]['reinsert_s']:.1f} s: index {size_before / 2**20:.1f} MiB before the deletes, "
                f"{out[step]['size_after_reinsert'] / 2**20:.1f} MiB after; recall {out[step]['recall_after_reinsert']:.4f}",
                flush=True,
            )
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
