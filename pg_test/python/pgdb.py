"""A database of its own for a test module: created (with hnsw_ext) before, dropped after;
and concurrent clients for the tests that insert from several connections at once."""

import threading

import psycopg


def run_clients(clients, work):
    """Run `work(part)` for part in 0..clients on threads of their own, and fail with what any
    of them raised (a thread's exception would otherwise be lost)."""
    errors = []

    def run(part):
        try:
            work(part)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p,)) for p in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def fresh_database(server_dsn, name):
    """Generator for a module-scoped pytest fixture: yields the new database's DSN."""
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    url = f"{server_dsn} dbname={name}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION hnsw_ext")
    yield url
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def vacuum_until_clean(conn, table, options="INDEX_CLEANUP ON", tries=50):
    """VACUUM `table` until it reports no dead row left behind, and return how many runs that
    took. A VACUUM keeps the rows deleted after the oldest snapshot of any session in the
    database, and autovacuum's ANALYZE of the catalogs (which tests churn with CREATE/DROP)
    holds one now and then: a test that asserts what the index holds after VACUUM would then
    see dead entries that no bug left there. `conn`: a connection or a cursor, autocommit."""
    import re
    import time

    connection = getattr(conn, "connection", conn)
    for run in range(1, tries + 1):
        notes = []

        def note(diag):
            notes.append(diag.message_primary or "")

        connection.add_notice_handler(note)
        try:
            conn.execute(f"VACUUM ({options}{', ' if options else ''}VERBOSE) {table}")
        finally:
            connection.remove_notice_handler(note)
        text = "\n".join(notes)
        left = sum(int(n) for n in re.findall(r"(\d+) are dead but not yet removable", text))
        left += sum(int(n) for n in re.findall(r"tuples missed: (\d+) dead", text))
        if "are dead but not yet removable" not in text:
            raise AssertionError(f"VACUUM VERBOSE said nothing about dead rows: {text!r}")
        if left == 0:
            return run
        time.sleep(0.2)
    raise AssertionError(f"VACUUM {table} left dead rows {tries} times: {text!r}")
