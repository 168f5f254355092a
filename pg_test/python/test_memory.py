"""Backend memory: what a build, an insert or a scan holds must not grow by a copy of every row
(detoasted vectors kept until the statement ends), per-backend caches must not outlive their
transaction when large, input-sized work must be checked before it is done, and errors must
reach clients without Rust internals.

Memory is read from /proc/<backend pid>/status: RssAnon (the backend's private memory, not the
shared buffers it touches), sampled from a second thread while the statement runs, or VmHWM
(peak resident set) where no shared buffers are involved."""

import os
import re
import shlex
import threading
import time

import psycopg
import pytest

from pgcluster import PG_BIN, Server, as_postgres
from pgdb import fresh_database
from test_recall import DSN

DB = "hnsw_memory_test"
DIMS = 1536
# One row's vector, as the build callback and aminsert detoast it.
VECTOR_BYTES = DIMS * 4 + 8
# Small graph parameters: fast, and an insert's copies of the vectors it measures (its arena)
# stay small next to what a leak of one vector per row adds up to.
WITH = "WITH (m = 4, ef_construction = 10)"


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakAnon:
    """Peak RssAnon (bytes) of a backend above its value at start, sampled every 5 ms."""

    def __init__(self, pid):
        self.pid, self.base, self.peak = pid, status_kb(pid, "RssAnon"), 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, status_kb(self.pid, "RssAnon"))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, status_kb(self.pid, "RssAnon"))

    @property
    def grew(self):
        return (self.peak - self.base) * 1024


def make_table(conn, name, rows, dims=DIMS):
    """`rows` random vectors generated server-side (1536-d by default: stored out of line, TOAST)."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int, v vector({dims}))")
    conn.execute(
        f"""INSERT INTO {name}
            SELECT i, (SELECT array_agg(random())::vector({dims}) FROM generate_series(1, {dims}) WHERE i > 0)
            FROM generate_series(1, {rows}) i"""
    )
    conn.execute(f"VACUUM ANALYZE {name}")


def build_growth(conn, table, rows, mwm):
    """RssAnon growth of the backend while it builds an index on `table`."""
    conn.execute(f"SET maintenance_work_mem = '{mwm}'")
    conn.execute("SET max_parallel_maintenance_workers = 0")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with PeakAnon(pid) as p:
        conn.execute(f"CREATE INDEX {table}_idx ON {table} USING hnsw (v vector_l2_ops) {WITH}")
    conn.execute(f"DROP INDEX {table}_idx")
    return p.grew


def test_build_does_not_keep_detoasted_rows(dsn):
    # The in-memory graph holds one copy of each vector plus its links (about 1.01 vectors a
    # row for m = 4); a build that also keeps every detoasted row grows by twice that.
    rows = 3000
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_build", rows)
        grew = build_growth(conn, "mem_build", rows, "1GB")
        per_row = grew / rows
        assert per_row < 1.5 * VECTOR_BYTES, f"build grew {grew >> 20} MB: {per_row:.0f} bytes a row"


def test_build_past_maintenance_work_mem_does_not_keep_rows(dsn):
    # With 1 MB for the graph, almost every row goes through the on-disk insert path: nothing
    # of a row should stay once it is inserted.
    rows = 3000
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_build_disk", rows)
        conn.execute("SET client_min_messages = warning")
        grew = build_growth(conn, "mem_build_disk", rows, "1MB")
        assert grew < rows * VECTOR_BYTES / 2, f"build grew {grew >> 20} MB for {rows} rows"


# What a build holds beyond maintenance_work_mem, whatever the table's size (README,
# "Builds and memory"): the temporary file's write buffer (1 MB), the pool's threads and their
# search scratch, and Postgres's own per-statement memory.
BUILD_CONSTANT = 8 << 20


@pytest.mark.parametrize("mwm_mb", [4, 12])
def test_build_stays_within_maintenance_work_mem(dsn, mwm_mb):
    # 3,000 rows of 1536-d vectors: 18 MB of vectors and about 1 MB of links (m = 4). With 4 MB
    # the vectors go to a temporary file and the links stay; with 12 MB part of the vectors
    # had been read into memory first. Either way the whole graph is built in memory.
    rows = 3000
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_build_spill", rows)
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        grew = build_growth(conn, "mem_build_spill", rows, f"{mwm_mb}MB")
        assert any("vectors no longer fit" in n for n in notices), notices
        assert not any("graph no longer fits" in n for n in notices), notices
        assert grew < (mwm_mb << 20) + BUILD_CONSTANT, f"build grew {grew / 2**20:.1f} MB with maintenance_work_mem {mwm_mb} MB"


def test_insert_select_does_not_keep_detoasted_rows(dsn):
    rows = 3000
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_src", rows)
        conn.execute("DROP TABLE IF EXISTS mem_dst")
        conn.execute(f"CREATE TABLE mem_dst (id int, v vector({DIMS}))")
        conn.execute(f"CREATE INDEX ON mem_dst USING hnsw (v vector_l2_ops) {WITH}")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with PeakAnon(pid) as p:
            conn.execute("INSERT INTO mem_dst SELECT * FROM mem_src")
        assert p.grew < rows * VECTOR_BYTES / 2, f"INSERT ... SELECT grew {p.grew >> 20} MB for {rows} rows"
        assert conn.execute("SELECT count(*) FROM mem_dst").fetchone()[0] == rows


def test_array_cast_checks_dimensions_before_copying(dsn):
    # A 20M-element real[] (80 MB): the cast must fail on its header, not after deconstructing
    # it (160 MB of datums and 20 MB of NULL flags) and copying the datums (160 MB more).
    n = 20_000_000
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        before = status_kb(pid, "VmHWM")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="cannot have more than 16000 dimensions"):
            conn.execute(f"SELECT array_fill(1::real, ARRAY[{n}])::vector")
        grew = (status_kb(pid, "VmHWM") - before) * 1024
        # The array itself is built twice (array_fill's result, then the cast's argument).
        assert grew < 3 * 4 * n, f"peak grew by {grew >> 20} MB"
        with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 5"):
            conn.execute("SELECT '{1,2,3,4,5}'::real[]::vector(3)")
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="must not contain nulls"):
            conn.execute("SELECT '{1,NULL,3}'::real[]::vector(3)")
        assert conn.execute("SELECT '{1,2,3}'::int[]::vector::text").fetchone()[0] == "[1,2,3]"


def test_long_filter_values(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS longf")
        conn.execute("CREATE TABLE longf (id int, v vector(3), tag text, tags text[])")
        conn.execute("INSERT INTO longf VALUES (1, '[1,2,3]', 'short', '{a}')")
        conn.execute("CREATE INDEX longf_idx ON longf USING hnsw (v vector_l2_ops, tag, tags)")
        size = conn.execute("SELECT pg_relation_size('longf_idx')").fetchone()[0]
        for value in ("repeat('x', 9000)", "'short'"):
            tags = "ARRAY[repeat('y', 9000)]" if value == "'short'" else "'{a}'"
            with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="too long for an hnsw filter column"):
                conn.execute(f"INSERT INTO longf VALUES (2, '[1,1,1]', {value}, {tags})")
        # Nothing was written for the failed rows: no attribute record without an element.
        assert conn.execute("SELECT pg_relation_size('longf_idx')").fetchone()[0] == size
        report = conn.execute("SELECT hnsw_index_check('longf_idx')").fetchone()[0]
        assert "OK" in report, report
        conn.execute("DROP INDEX longf_idx")
        conn.execute("INSERT INTO longf VALUES (3, '[3,2,1]', repeat('x', 9000), '{a}')")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="too long for an hnsw filter column"):
            conn.execute("CREATE INDEX longf_idx ON longf USING hnsw (v vector_l2_ops, tag)")
        # Long values that compress or fit stay indexable.
        conn.execute("DELETE FROM longf WHERE id = 3")
        conn.execute("INSERT INTO longf VALUES (4, '[3,2,1]', repeat('x', 1000), '{a}')")
        conn.execute("CREATE INDEX longf_idx ON longf USING hnsw (v vector_l2_ops, tag)")
        conn.execute("SET enable_seqscan = off")
        got = conn.execute(
            "SELECT id FROM longf WHERE tag = repeat('x', 1000) ORDER BY v <-> '[3,2,1]' LIMIT 5"
        ).fetchall()
        assert got == [(4,)]


@pytest.fixture(scope="module")
def backtrace_server(request):
    """A server started with RUST_BACKTRACE=1 in its environment."""
    srv = Server("memory_backtrace", 5487)
    request.addfinalizer(srv.cleanup)
    srv.init()
    as_postgres(
        f"export RUST_BACKTRACE=1; {PG_BIN}/pg_ctl -D {shlex.quote(srv.data)} -w -l {shlex.quote(srv.log)} start"
    )
    return srv


def test_errors_carry_no_rust_backtrace(backtrace_server):
    with backtrace_server.connect() as conn:
        conn.execute("CREATE EXTENSION hnsw_ext")
        conn.execute("CREATE TABLE t (v vector(3))")
        conn.execute("CREATE INDEX ON t USING hnsw (v vector_l2_ops)")
        for sql in (
            # Raised by Postgres inside a call the extension makes (pgrx attached the backtrace
            # to these: it catches them at the FFI boundary).
            "SELECT '{1e300}'::numeric[]::vector",
            "SELECT '[1,2'::vector",  # raised by our code
            "SELECT '[1,2]'::vector(3)",
            "INSERT INTO t VALUES ('[1,2,3,4]')",  # inside aminsert
            "SELECT '[1,2,3]'::vector <-> '[1,2]'::vector",
        ):
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            diag = e.value.diag
            text = f"{diag.message_primary}\n{diag.message_detail}\n{diag.message_hint}\n{diag.context}"
            assert "backtrace" not in text.lower() and not re.search(r"\.rs:\d+", text), text
            assert (diag.message_detail or "").count("\n") < 3, text



@pytest.fixture(scope="module")
def filtered(dsn):
    """6000 random 3-d rows, half of them tag = 1, with an hnsw index on (v, tag)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS filtered")
        conn.execute("CREATE TABLE filtered (id int, v vector(3), tag int)")
        conn.execute(
            "INSERT INTO filtered SELECT i, ARRAY[random(), random(), random()]::vector(3), i % 2 "
            "FROM generate_series(1, 6000) i"
        )
        conn.execute("CREATE INDEX filtered_idx ON filtered USING hnsw (v vector_l2_ops, tag)")
        conn.execute("ANALYZE filtered")
    return dsn


def test_exact_scan_within_work_mem(filtered):
    # At work_mem = 64kB a pass keeps about a thousand matches: 3000 need several passes,
    # each starting after the last row handed out; together they must be the seq scan's rows.
    query = "SELECT id, v <-> '[0.5,0.5,0.5]' FROM filtered WHERE tag = 1 ORDER BY v <-> '[0.5,0.5,0.5]' LIMIT 3000"
    with psycopg.connect(filtered, autocommit=True) as conn:
        conn.execute("SET enable_indexscan = off")
        # Rows at exactly the same distance may come in either order: compare (distance, id).
        truth = sorted((d, i) for i, d in conn.execute(query, prepare=False))
        conn.execute("RESET enable_indexscan")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SET hnsw.filter_strategy = exact")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query))
        assert "filtered_idx" in plan, plan
        rows = conn.execute(query, prepare=False).fetchall()
        assert [d for _, d in rows] == sorted(d for _, d in rows)
        got = sorted((d, i) for i, d in rows)
        assert len(truth) == 3000
        assert got == truth


def test_iterative_scan_memory_per_row_handed_out(dsn):
    # An iterative scan asked for 40,000 rows (max_scan_tuples raised) at work_mem = 64kB: the
    # LIMIT's rows all come, in distance order, and the walk holds two candidates for each
    # element it measured (~150 bytes a row handed out; README, hnsw.scan_mem_multiplier), not
    # a copy of any vector or tuple (264 bytes a row here). Shedding the farthest candidates
    # past work_mem was tried and lost rows (37,070 of these 40,000).
    rows, limit, dims = 50_000, 40_000, 64
    q = "[" + ",".join(["0.5"] * dims) + "]"
    query = f"SELECT id, v <-> '{q}' FROM mem_iter ORDER BY v <-> '{q}' LIMIT {limit}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_iter", rows, dims)
        conn.execute("CREATE INDEX mem_iter_idx ON mem_iter USING hnsw (v vector_l2_ops)")
    # A backend of its own: the build's freed memory stays in this one's allocator.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SET hnsw.max_scan_tuples = 1000000")
        conn.execute("SET hnsw.iterative_scan = strict_order")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query))
        assert "mem_iter_idx" in plan, plan
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with PeakAnon(pid) as p:
            got = conn.execute(query).fetchall()
        assert len(got) == limit
        dist = [d for _, d in got]
        assert dist == sorted(dist)
        assert len({i for i, _ in got}) == limit
        assert p.grew < limit * 200, f"the scan grew {p.grew / 2**20:.1f} MB for {limit} rows"


def test_index_check_bounded_by_maintenance_work_mem(filtered):
    with psycopg.connect(filtered, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1MB'")
        with pytest.raises(psycopg.errors.OutOfMemory) as e:
            conn.execute("SELECT hnsw_index_check('filtered_idx')")
        assert "maintenance_work_mem" in e.value.diag.message_hint
        conn.execute("SET maintenance_work_mem = '64MB'")
        report = conn.execute("SELECT hnsw_index_check('filtered_idx')").fetchone()[0]
        assert report.rstrip().endswith("OK"), report


def test_index_check_holds_no_more_than_maintenance_work_mem(dsn):
    # The checker holds every element and link until its cross-checks: at the smallest
    # maintenance_work_mem it accepts (found by raising it 25% at a time), the backend must not
    # grow past it by more than a small constant (at 1M rows it held 1,105 MB with 1 GB before
    # its links went from 16 to 8 bytes and its estimates counted the allocator's chunks; at
    # this size the old layout stayed within too: 27.6 MB at 29.1 MB). A guard, not a replay.
    rows, dims = 30_000, 4
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, "mem_check", rows, dims)
        conn.execute("CREATE INDEX mem_check_idx ON mem_check USING hnsw (v vector_l2_ops)")
        kb = 2048
        while True:
            conn.execute(f"SET maintenance_work_mem = '{kb}kB'")
            try:
                conn.execute("SELECT hnsw_index_check('mem_check_idx')")
                break
            except psycopg.errors.OutOfMemory:
                kb = kb * 5 // 4
    # A backend of its own: the failed attempts' memory stays in this one's allocator.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{kb}kB'")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with PeakAnon(pid) as p:
            report = conn.execute("SELECT hnsw_index_check('mem_check_idx')").fetchone()[0]
        assert report.rstrip().endswith("OK"), report
        assert p.grew < kb * 1024 + (2 << 20), f"the check grew {p.grew / 2**20:.1f} MB with maintenance_work_mem {kb / 1024:.1f} MB"


def test_vacuum_reachability_pass_skipped_beyond_maintenance_work_mem(filtered):
    notices = []
    with psycopg.connect(filtered, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DELETE FROM filtered WHERE id % 10 = 0")
        conn.execute("SET maintenance_work_mem = '1MB'")
        conn.execute("VACUUM filtered")
        assert any("reachability check skipped" in n for n in notices), notices
        conn.execute("SET enable_seqscan = off")
        n = conn.execute("SELECT count(*) FROM (SELECT id FROM filtered ORDER BY v <-> '[0,0,0]' LIMIT 10) s")
        assert n.fetchone()[0] == 10
        conn.execute("SET maintenance_work_mem = '64MB'")
        notices.clear()
        conn.execute("VACUUM filtered")
        assert not any("reachability" in n for n in notices), notices
        report = conn.execute("SELECT hnsw_index_check('filtered_idx')").fetchone()[0]
        assert report.rstrip().endswith("OK"), report


def test_huge_text_input_fails_on_dimensions(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="cannot have more than 16000"):
            conn.execute("SELECT ('[' || repeat('1,', 5000000) || '1]')::vector")
