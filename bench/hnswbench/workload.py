"""The query loop: ``SELECT id FROM items [WHERE catN = 0] ORDER BY embedding <op> $1 LIMIT k``.

The protocol matches the pgvector reference numbers: psycopg 3, one statement per query, the query
vector sent as a text parameter in its text form ``'[x,y,...]'`` with a ``::vector`` cast (psycopg
prepares the statement server-side after a few executions, as it does by default), autocommit, a
warm-up before timing. N clients are N threads, each with its own connection; every client runs
the whole query list (from its own starting offset), so N clients run N x queries in total.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import psycopg

from .db import INDEX, OPERATORS, TABLE, apply_settings, filter_column, flush_stats


def query_statement(vtype: str, metric: str, k: int, modulus: int | None = None, case=None, rows: int = 0) -> str:
    """The benchmark statement, with ``%s`` for the query vector (after the per-query filter value
    of a near/far ``case``: see ``filters``). ``modulus`` alone is the ``eq`` filter."""
    if case is not None:
        where = f" WHERE {case.where(rows)}"
    else:
        where = f" WHERE {filter_column(modulus)} = 0" if modulus else ""
    return f"SELECT id FROM {TABLE}{where} ORDER BY embedding {OPERATORS[metric]} %s::{vtype} LIMIT {k}"


def _args(p) -> tuple:
    """A query's statement parameters: its vector text, or a tuple (filter value, vector text)."""
    return p if isinstance(p, tuple) else (p,)


def vector_text(v: np.ndarray) -> str:
    """A vector's text form, ``[1.5,0.25,...]``, with the shortest float32 representation."""
    return "[" + ",".join(str(x) for x in np.asarray(v, dtype=np.float32)) + "]"


def explain(conn: psycopg.Connection, stmt: str, param) -> tuple[bool, str]:
    """Plan of ``stmt``: (whether it scans the hnsw index, a one-line summary of the plan)."""
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + stmt, _args(param)).fetchone()[0][0]["Plan"]
    parts, uses_index = [], False

    def walk(node):
        nonlocal uses_index
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
            uses_index = uses_index or node["Index Name"] == INDEX
        parts.append(label)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return uses_index, " > ".join(parts)


@dataclass
class WorkloadResult:
    """Timings and answers of one (settings, clients) run.

    Attributes:
        clients: number of concurrent clients.
        wall_s: seconds from the start signal until the last client finished.
        latencies: seconds per query, all clients together.
        answers: (query index, [ids returned]) for every query run.
    """

    clients: int
    wall_s: float
    latencies: np.ndarray
    answers: list

    @property
    def qps(self) -> float:
        """Queries per second over all clients."""
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else float("nan")

    def latency_ms(self) -> dict:
        """p50 / p95 / p99 / mean / max latency in milliseconds."""
        ms = self.latencies * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
                "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def _client(conninfo, stmt, texts, order, session, warmup, barrier, slot, out):
    """One client: connect, apply session settings, warm up, wait for the start, run its queries."""
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            apply_settings(conn, session)
            cur = conn.cursor()
            for qi in order[len(order) - warmup:]:
                cur.execute(stmt, _args(texts[qi]))
                cur.fetchall()
            barrier.wait()
            lat = np.empty(len(order))
            answers = []
            clock = time.perf_counter
            for j, qi in enumerate(order):
                t0 = clock()
                cur.execute(stmt, _args(texts[qi]))
                rows = cur.fetchall()
                lat[j] = clock() - t0
                answers.append((qi, [r[0] for r in rows]))
            end = clock()
            flush_stats(conn)
            out[slot] = (lat, answers, end)
    except BaseException as e:  # report to the main thread, release the others
        out[slot] = e
        barrier.abort()


def run_workload(conninfo: str, stmt: str, texts: list[str], session: dict, clients: int = 1,
                 warmup: int = 50) -> WorkloadResult:
    """Run every query text through ``stmt`` on ``clients`` concurrent connections (an entry of
    ``texts`` may be a tuple of the statement's parameters, for filters with a value per query).

    Each client applies ``session`` (``SET name = value``, e.g. ``hnsw.ef_search``), runs
    ``warmup`` untimed queries, then all queries starting at offset ``i * len(texts) / clients``.
    """
    nq = len(texts)
    warmup = min(warmup, nq)
    barrier = threading.Barrier(clients + 1)
    out: list = [None] * clients
    threads = []
    for i in range(clients):
        start = i * nq // clients
        order = list(range(start, nq)) + list(range(0, start))
        t = threading.Thread(target=_client, args=(conninfo, stmt, texts, order, session, warmup, barrier, i, out),
                             daemon=True)
        t.start()
        threads.append(t)
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    for r in out:
        if isinstance(r, BaseException):
            raise r
    end = max(r[2] for r in out)
    return WorkloadResult(
        clients=clients,
        wall_s=end - t0,
        latencies=np.concatenate([r[0] for r in out]),
        answers=[a for r in out for a in r[1]],
    )
