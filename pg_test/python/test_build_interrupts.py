"""Cancel and signals during CREATE INDEX (issue 9, item 13).

- A cancel that arrives while the build writes index pages stops it at the next page: the
  interrupt check once ran while the page's content lock was held, where
  CHECK_FOR_INTERRUPTS does nothing (InterruptHoldoffCount > 0), so the build wrote every
  remaining page before noticing.
- The build's threads block every signal: Postgres' handlers (cancel, timeouts, latches) must
  run on the backend's thread, and the kernel hands a process-directed signal to any thread
  that does not block it.
"""

import os
import threading
import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from pgdb import fresh_database

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")
DB = "hnsw_build_interrupts_test"


@pytest.fixture(scope="module")
def dsn():
    yield from fresh_database(DSN, DB)


def make_table(conn, table, rows, dims, seed):
    register_vector(conn)
    conn.execute(f"CREATE TABLE {table} (id int, v vector({dims}))")
    data = np.random.default_rng(seed).random((rows, dims), dtype=np.float32)
    with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "vector"])
        for i, v in enumerate(data):
            copy.write_row((i, v))


def run_build(dsn, sql, pid_box, outcome):
    """Run `sql` on a connection of its own; its backend pid goes to pid_box first."""
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            pid_box.append(c.execute("SELECT pg_backend_pid()").fetchone()[0])
            c.execute("SET max_parallel_maintenance_workers = 2")
            c.execute(sql)
            outcome.append(None)
    except Exception as e:  # examined by the test
        outcome.append(e)


def progress(conn, pid):
    return conn.execute(
        "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index WHERE pid = %s", (pid,)
    ).fetchone()


def test_cancel_while_writing_pages(dsn):
    table = "w"
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_table(conn, table, 200_000, 16, 1)
    pid, outcome = [], []
    # Small m and ef_construction: linking is quick, writing the pages takes its share.
    build = threading.Thread(
        target=run_build, args=(dsn, f"CREATE INDEX w_idx ON {table} USING hnsw (v vector_l2_ops) WITH (m = 2, ef_construction = 4)", pid, outcome)
    )
    build.start()
    with psycopg.connect(dsn, autocommit=True) as mon:
        while not pid:
            time.sleep(0.001)
        at_cancel, after = None, []
        deadline = time.monotonic() + 300
        while build.is_alive() and time.monotonic() < deadline:
            row = progress(mon, pid[0])
            if row is None:
                time.sleep(0.001)
                continue
            if at_cancel is None:
                # tuples_done holds the linking phase's count until the first page is written.
                if "writing index pages" in row[0] and row[1] < row[2]:
                    at_cancel = row
                    sent = time.monotonic()
                    assert mon.execute("SELECT pg_cancel_backend(%s)", (pid[0],)).fetchone()[0]
            else:
                after.append(row)
        build.join(60)
        assert not build.is_alive()
        assert at_cancel is not None, "never saw the writing phase"
        waited = time.monotonic() - sent
        err = outcome[0]
        assert isinstance(err, psycopg.errors.QueryCanceled), err
        done, total = at_cancel[1], at_cancel[2]
        furthest = max([r[1] for r in after if "writing index pages" in r[0]], default=done)
        print(f"cancel at {done}/{total}, furthest seen after {furthest}, error after {waited:.3f}s, {len(after)} samples")
        # Before the fix the build went on to write every remaining page.
        if total - done > total // 4:
            assert furthest - done < (total - done) // 2, (done, furthest, total)
        assert waited < 30
        # The server and the table are fine, and the index can still be built.
        assert mon.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 200_000
        assert mon.execute("SELECT count(*) FROM pg_class WHERE relname = 'w_idx'").fetchone()[0] == 0
        mon.execute(f"DROP TABLE {table}")


def blocked_signals(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    return 0


def test_build_threads_block_signals(dsn):
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc")
    table = "s"
    with psycopg.connect(dsn, autocommit=True) as conn:
        host = conn.info.host
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            pytest.skip("server is not local")
        make_table(conn, table, 30_000, 32, 2)
    pid, outcome = [], []
    build = threading.Thread(target=run_build, args=(dsn, f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops)", pid, outcome))
    build.start()
    checked = {}
    with psycopg.connect(dsn, autocommit=True) as mon:
        while not pid:
            time.sleep(0.001)
        while build.is_alive():
            row = progress(mon, pid[0])
            if row and "building graph" in row[0]:
                try:
                    tids = [int(t) for t in os.listdir(f"/proc/{pid[0]}/task") if int(t) != pid[0]]
                    for t in tids:
                        checked[t] = blocked_signals(pid[0], t)
                except FileNotFoundError:
                    pass
            time.sleep(0.01)
        build.join()
        assert outcome == [None], outcome
        mon.execute(f"DROP TABLE {table}")
    assert checked, "never saw the build's threads"
    import signal

    wanted = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGHUP, signal.SIGQUIT]
    for tid, mask in checked.items():
        missing = [s.name for s in wanted if not mask & (1 << (s - 1))]
        assert not missing, f"thread {tid} does not block {missing} (SigBlk {mask:x})"
