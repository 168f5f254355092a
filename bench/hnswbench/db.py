"""Server side: databases, the extension, the table, binary COPY and the index build.

Each extension under test gets a database of its own (both hnsw_ext and pgvector define a type
named ``vector``, so they cannot live in one database). The table is always
``items (id int primary key, embedding vector(dim) [, cat10 int, cat100 int, ...])`` where
``cat<N> = id % N`` serves the filtered runs (``WHERE cat<N> = 0`` keeps 1/N of the rows).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .progress import ProgressBar

TABLE = "items"
INDEX = "items_embedding_idx"

#: Server settings recorded with every run (plus every ``hnsw.*`` setting).
RECORDED_SETTINGS = (
    "server_version", "shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers",
    "max_parallel_workers", "max_worker_processes", "work_mem", "effective_cache_size", "jit",
    "synchronous_commit", "fsync", "huge_pages", "random_page_cost", "max_connections",
    "min_parallel_table_scan_size",
)

#: SQL operator and operator class suffix per metric.
OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>", "l1": "<+>"}
OPCLASS_SUFFIX = {"l2": "l2_ops", "ip": "ip_ops", "cosine": "cosine_ops", "l1": "l1_ops"}


class BenchError(RuntimeError):
    """A problem the user has to fix (missing extension, conflicting database, ...)."""


def redact(conninfo: str) -> str:
    """The connection string without its password, for records and messages."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable conninfo>"
    params.pop("password", None)
    return make_conninfo(**params)


def db_conninfo(dsn: str, dbname: str) -> str:
    """``dsn`` pointed at database ``dbname``."""
    return make_conninfo(dsn, dbname=dbname)


def check_available(conn: psycopg.Connection, ext: str) -> None:
    """Raise :class:`BenchError` unless the server can ``CREATE EXTENSION ext``."""
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (ext,)).fetchone():
        raise BenchError(f"extension {ext!r} is not available on this server "
                         f"(for pgvector, install it first: https://github.com/pgvector/pgvector)")


def ensure_database(dsn: str, dbname: str, ext: str) -> bool:
    """Create database ``dbname`` on the server of ``dsn`` unless it exists; True if created.

    Checks first that extension ``ext`` is available, so that no database is left behind for an
    extension the server does not have.
    """
    with psycopg.connect(dsn, autocommit=True) as admin:
        check_available(admin, ext)
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def drop_database(dsn: str, dbname: str) -> None:
    """Drop database ``dbname`` (closing other sessions in it)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def ensure_extension(conn: psycopg.Connection, ext: str, vtype: str, metric: str) -> str:
    """``CREATE EXTENSION IF NOT EXISTS ext`` after checking it can work here; returns its version.

    Refuses a database where another extension already owns a type named like ``vtype`` (the
    hnsw_ext / pgvector clash), and checks that the ``hnsw`` access method and the operator class
    for ``vtype``/``metric`` exist afterwards.
    """
    check_available(conn, ext)
    owner = conn.execute(
        """SELECT e.extname FROM pg_type t
             JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
             JOIN pg_extension e ON e.oid = d.refobjid
            WHERE t.typname = %s""",
        (vtype,),
    ).fetchone()
    if owner and owner[0] != ext:
        raise BenchError(f"database {conn.info.dbname!r} already has type {vtype!r} from extension "
                         f"{owner[0]!r}; use a separate database per extension")
    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    opclass = f"{vtype}_{OPCLASS_SUFFIX[metric]}"
    if not conn.execute(
        "SELECT 1 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod WHERE a.amname = 'hnsw' AND c.opcname = %s",
        (opclass,),
    ).fetchone():
        raise BenchError(f"extension {ext!r} has no hnsw operator class {opclass!r}")
    return conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (ext,)).fetchone()[0]


def server_settings(conn: psycopg.Connection, vtype: str) -> dict:
    """The recorded server settings (as a fresh session sees them) and all ``hnsw.*`` settings."""
    # Touch the type so the extension's library is loaded and its GUCs are registered.
    conn.execute(sql.SQL("SELECT '[1]'::{}").format(sql.Identifier(vtype)))
    rows = conn.execute(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) OR name LIKE 'hnsw.%%' ORDER BY name",
        (list(RECORDED_SETTINGS),),
    ).fetchall()
    return dict(rows)


def apply_settings(conn: psycopg.Connection, settings: dict) -> None:
    """``SET name = value`` for each item (session level)."""
    for name, value in settings.items():
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(str(value))))


def scan_counts(conn: psycopg.Connection) -> dict:
    """Cumulative scan counters of the benchmark table and its hnsw index (fresh snapshot).

    ``seq_scan`` of the table tells whether any query fell back to a sequential scan;
    ``idx_scan`` of the hnsw index only moves if the access method reports its scans
    (``pgstat_count_index_scan``), which pgvector does.
    """
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        """SELECT t.seq_scan, i.idx_scan FROM pg_stat_user_tables t
             LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelid = to_regclass(%s)
            WHERE t.relid = to_regclass(%s)""",
        (INDEX, TABLE),
    ).fetchone()
    return {"seq_scan": int(row[0] or 0), "idx_scan": int(row[1] or 0)} if row else {"seq_scan": 0, "idx_scan": 0}


def flush_stats(conn: psycopg.Connection) -> None:
    """Make this session's statistics visible to others now (PostgreSQL 15+; ignored before)."""
    try:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
    except psycopg.Error:
        pass


def filter_column(modulus: int) -> str:
    """Name of the filter column keeping 1/modulus of the rows."""
    return f"cat{modulus}"


def create_table(conn: psycopg.Connection, dim: int, vtype: str, columns: list[str]) -> None:
    """(Re)create the ``items`` table: id, embedding and an int column per filter column
    (``catN``, ``rnk``, ``cluN``: see ``filters``)."""
    cols = [sql.SQL("id int PRIMARY KEY"), sql.SQL("embedding {}({})").format(sql.Identifier(vtype), sql.Literal(dim))]
    cols += [sql.SQL("{} int").format(sql.Identifier(c)) for c in columns]
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TABLE)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(TABLE), sql.SQL(", ").join(cols)))


def _copy_record_dtype(dim: int, vtype: str, columns: list[str]) -> np.dtype:
    """numpy layout of one binary COPY tuple (big-endian, as PostgreSQL's binary format wants).

    vector/halfvec binary form (typsend/typreceive, same in pgvector): int16 dim, int16 unused,
    then dim float4 (vector) or float2 (halfvec) values.
    """
    elem = ">f4" if vtype == "vector" else ">f2"
    fields = [("nfields", ">i2"), ("id_len", ">i4"), ("id", ">i4"),
              ("vec_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", elem, (dim,))]
    for c in columns:
        fields += [(f"{c}_len", ">i4"), (c, ">i4")]
    return np.dtype(fields)


def copy_rows(conn: psycopg.Connection, base: np.ndarray, vtype: str, values: dict, chunk: int = 5000) -> float:
    """Load ``base`` (row i gets id i) and the filter columns' ``values`` (column -> one int per
    row) with ``COPY ... FROM STDIN (FORMAT BINARY)``; returns seconds."""
    n, dim = base.shape
    columns = list(values)
    dtype = _copy_record_dtype(dim, vtype, columns)
    elem_size = 4 if vtype == "vector" else 2
    cols = [sql.Identifier("id"), sql.Identifier("embedding")] + [sql.Identifier(c) for c in columns]
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(TABLE), sql.SQL(", ").join(cols))
    bar = ProgressBar("load (COPY)", total=n, unit="rows")
    start = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        for r0 in range(0, n, chunk):
            rows = base[r0 : r0 + chunk]
            rec = np.zeros(rows.shape[0], dtype=dtype)
            ids = np.arange(r0, r0 + rows.shape[0])
            rec["nfields"] = 2 + len(columns)
            rec["id_len"], rec["id"] = 4, ids
            rec["vec_len"], rec["dim"] = 4 + elem_size * dim, dim
            rec["vec"] = rows
            for c in columns:
                rec[f"{c}_len"], rec[c] = 4, values[c][r0 : r0 + rows.shape[0]]
            copy.write(rec.tobytes())
            bar.update(r0 + rows.shape[0])
        copy.write(b"\xff\xff")
    elapsed = time.perf_counter() - start
    bar.close()
    return elapsed


def relation_size(conn: psycopg.Connection, name: str) -> int:
    """``pg_relation_size`` of a relation (main fork) in bytes."""
    return int(conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()[0])


def table_size(conn: psycopg.Connection, name: str) -> int:
    """``pg_table_size`` of a table in bytes: heap, TOAST (where vectors of > ~500 dims live), maps."""
    return int(conn.execute("SELECT pg_table_size(%s::regclass)", (name,)).fetchone()[0])


def walk_size(conn: psycopg.Connection, name: str) -> int | None:
    """``hnsw_walk_size(index)`` (bytes of the index pages a graph walk reads) where the database
    has that function (hnsw_ext builds that report it); None where it has not, or where it fails."""
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'hnsw_walk_size')").fetchone()[0]:
        return None
    try:
        value = conn.execute("SELECT hnsw_walk_size(%s::regclass)", (name,)).fetchone()[0]
    except psycopg.Error as e:
        print(f"WARNING: hnsw_walk_size({name}) failed: {type(e).__name__}: {e}".strip())
        return None
    return None if value is None else int(value)


def with_clause(m: int, ef_construction: int, options: dict | None = None) -> sql.Composed:
    """``m = .., ef_construction = ..[, key = value ...]`` for CREATE INDEX ... WITH (...).

    Numeric values (int/float) are written as numbers, everything else as a string literal; the
    keys were checked to be plain identifiers by the caller (they are written as they are, so that
    reloptions see the lower-case name).
    """
    items = {"m": m, "ef_construction": ef_construction,
             **{k: v for k, v in (options or {}).items() if k not in ("m", "ef_construction")}}
    parts = []
    for key, value in items.items():
        if not key.isidentifier() or not key.isascii():
            raise BenchError(f"index option name {key!r} is not a plain identifier")
        literal = sql.SQL(repr(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else sql.Literal(str(value))
        parts.append(sql.SQL("{} = {}").format(sql.SQL(key.lower()), literal))
    return sql.SQL(", ").join(parts)


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether a table or index of that name is visible."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def get_comment(conn: psycopg.Connection, name: str) -> dict | None:
    """The JSON this tool stored as COMMENT on a relation, or None (missing relation, other comment)."""
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).fetchone()
    try:
        value = json.loads(row[0]) if row and row[0] else None
    except ValueError:
        return None
    return value if isinstance(value, dict) and "fingerprint" in value else None


def set_comment(conn: psycopg.Connection, kind: str, name: str, payload: dict) -> None:
    """Store ``payload`` as a JSON COMMENT on a table or index (``kind`` is TABLE or INDEX)."""
    conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(
        sql.SQL(kind), sql.Identifier(name), sql.Literal(json.dumps(payload, sort_keys=True))))


@dataclass
class BuildResult:
    """What one ``CREATE INDEX`` took.

    Attributes:
        seconds: wall time of the statement.
        phases: [{"phase": ..., "at_s": seconds after start}] as seen in pg_stat_progress_create_index.
        parallel_workers_seen: most parallel workers attached to the build at any poll.
        progress_reported: whether the build showed up in pg_stat_progress_create_index at all.
        last_progress: the last row seen there (phase, tuples_done/total, blocks_done/total).
    """

    seconds: float
    phases: list = field(default_factory=list)
    parallel_workers_seen: int = 0
    progress_reported: bool = False
    last_progress: dict | None = None


class BuildMonitor(threading.Thread):
    """Polls ``pg_stat_progress_create_index`` from a second connection and draws a progress bar.

    The bar shows the phase, tuples_done / tuples_total (falling back to the table's row count
    when the access method leaves tuples_total at 0) and the heap blocks scanned.
    """

    QUERY = """
        SELECT p.phase, p.tuples_done, p.tuples_total, p.blocks_done, p.blocks_total,
               (SELECT count(*) FROM pg_stat_activity a WHERE a.leader_pid = p.pid)
          FROM pg_stat_progress_create_index p WHERE p.pid = %s"""

    def __init__(self, conninfo: str, pid: int, rows: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.conninfo, self.pid, self.rows, self.interval = conninfo, pid, rows, interval
        self.stop_event = threading.Event()
        self.result = BuildResult(0.0)
        self.error: Exception | None = None
        self.bar = ProgressBar("build (CREATE INDEX)", total=rows, unit="tuples")

    def run(self) -> None:
        """Poll until :meth:`stop` is called."""
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                while not self.stop_event.is_set():
                    row = conn.execute(self.QUERY, (self.pid,)).fetchone()
                    if row:
                        self._observe(*row)
                    self.stop_event.wait(self.interval)
        except Exception as e:  # monitoring must never break the build
            self.error = e

    def _observe(self, phase, tdone, ttotal, bdone, btotal, workers) -> None:
        res = self.result
        res.progress_reported = True
        res.last_progress = {"phase": phase, "tuples_done": tdone, "tuples_total": ttotal,
                             "blocks_done": bdone, "blocks_total": btotal}
        res.parallel_workers_seen = max(res.parallel_workers_seen, int(workers))
        at = time.perf_counter() - self.bar.start
        if not res.phases or res.phases[-1]["phase"] != phase:
            res.phases.append({"phase": phase, "at_s": round(at, 3)})
        blocks = f"blocks {bdone}/{btotal}" if btotal else ""
        extra = f"{phase}  {blocks}" + (f"  workers {workers}" if workers else "")
        self.bar.update(int(tdone or 0), total=int(ttotal) if ttotal else self.rows, extra=extra)

    def stop(self) -> BuildResult:
        """Stop polling, close the bar and return what was observed."""
        self.stop_event.set()
        self.join()
        self.bar.close(extra="done")
        return self.result


def build_index(conninfo: str, conn: psycopg.Connection, vtype: str, metric: str, m: int,
                ef_construction: int, workers: int, rows: int, filter_columns: list[str] | None = None,
                options: dict | None = None) -> BuildResult:
    """``CREATE INDEX ... USING hnsw`` with the given parameters, timed, with a progress bar.

    ``options`` are extra WITH options (e.g. ``{"quantization": "sq8"}``, see :func:`with_clause`).

    ``workers`` is applied as ``SET max_parallel_maintenance_workers`` on ``conn`` beforehand.
    ``filter_columns`` become key columns after the vector (hnsw_ext's filter columns), so that
    ``WHERE catN = 0`` is answered inside the index scan.
    """
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(INDEX)))
    apply_settings(conn, {"max_parallel_maintenance_workers": workers})
    keys = [sql.SQL("embedding {}").format(sql.Identifier(f"{vtype}_{OPCLASS_SUFFIX[metric]}"))]
    keys += [sql.Identifier(c) for c in (filter_columns or [])]
    stmt = sql.SQL("CREATE INDEX {} ON {} USING hnsw ({}) WITH ({})").format(
        sql.Identifier(INDEX), sql.Identifier(TABLE), sql.SQL(", ").join(keys), with_clause(m, ef_construction, options))
    monitor = BuildMonitor(conninfo, conn.info.backend_pid, rows)
    monitor.start()
    start = time.perf_counter()
    try:
        conn.execute(stmt)
    finally:
        elapsed = time.perf_counter() - start
        result = monitor.stop()
    result.seconds = elapsed
    return result
