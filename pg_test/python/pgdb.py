"""A database of its own for a test module: created (with hnsw_ext) before, dropped after."""

import psycopg


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
