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
