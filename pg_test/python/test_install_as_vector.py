"""scripts/install-as-vector: hnsw_ext installed under pgvector's extension name.

The script writes into a Postgres installation's extension directory, and the real one may
have pgvector installed (the system Postgres of a dev box does), so the test never runs it
against that: it builds a private overlay installation under HNSW_EXT_TESTS_DIR (own copies
of the binaries, since Postgres finds its share and lib directories relative to the real path
of its executable; symlinks to every other file, pgvector's left out), installs the mode
there and starts a server from it (port 5478 + HNSW_EXT_PORT_OFFSET). The refusal paths run
against fake pgvector layouts in scratch directories.
"""

import filecmp
import os
import shutil
import stat
import subprocess

import pytest

import pgcluster
from pgcluster import TESTS_DIR, Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "install-as-vector")
PG_CONFIG = os.environ.get("HNSW_EXT_PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
PORT = 5478
PGVECTOR_FILES = ("vector.so", "vector.control")


def pg_config(flag, exe=PG_CONFIG):
    return subprocess.run([exe, flag], check=True, capture_output=True, text=True).stdout.strip()


def run_script(*args):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True)


def is_pgvector_file(name):
    return name in PGVECTOR_FILES or (name.startswith("vector--") and name.endswith(".sql"))


def make_overlay(root):
    """A private copy of the installation PG_CONFIG names, under `root` (same relative layout)."""
    bindir, sharedir, pkglibdir = (pg_config(f) for f in ("--bindir", "--sharedir", "--pkglibdir"))
    shutil.rmtree(root, ignore_errors=True)
    new = lambda p: root + p
    shutil.copytree(bindir, new(bindir), symlinks=False)
    for src, skip_sub in ((pkglibdir, None), (sharedir, "extension")):
        os.makedirs(new(src))
        for name in os.listdir(src):
            if name == skip_sub or is_pgvector_file(name):
                continue
            os.symlink(os.path.join(src, name), os.path.join(new(src), name))
    ext = os.path.join(sharedir, "extension")
    os.makedirs(new(ext))
    for name in os.listdir(ext):
        if not is_pgvector_file(name):
            os.symlink(os.path.join(ext, name), os.path.join(new(ext), name))
    # the server runs as postgres: every directory on the way must be traversable
    d = root
    while d not in ("/", ""):
        os.chmod(d, os.stat(d).st_mode | stat.S_IXOTH | stat.S_IROTH)
        d = os.path.dirname(d)
    for dirpath, dirnames, _ in os.walk(root):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            os.chmod(p, 0o755)
    return new(os.path.join(bindir, "pg_config"))


@pytest.fixture(scope="module")
def overlay():
    root = os.path.join(TESTS_DIR, "as_vector_install")
    cfg = make_overlay(root)
    assert pg_config("--sharedir", cfg) == root + pg_config("--sharedir")
    yield cfg
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(request, overlay):
    p = run_script("--pg-config", overlay)
    assert p.returncode == 0, p.stderr
    saved = pgcluster.PG_BIN
    pgcluster.PG_BIN = os.path.dirname(overlay)  # Server's commands use the overlay's binaries

    def restore():
        srv.cleanup()
        pgcluster.PG_BIN = saved

    srv = Server("as_vector", PORT)
    request.addfinalizer(restore)
    srv.init().start()
    return srv


def test_install_is_idempotent_and_uninstalls(overlay):
    ext = os.path.join(pg_config("--sharedir", overlay), "extension")
    p = run_script("--pg-config", overlay)
    assert p.returncode == 0, p.stderr
    before = {n: open(os.path.join(ext, n)).read() for n in ("vector.control", "vector--0.8.6.sql")}
    assert "module_pathname = '$libdir/hnsw_ext'" in before["vector.control"]
    assert "default_version = '0.8.6'" in before["vector.control"]
    assert "relocatable = true" in before["vector.control"]
    p = run_script("--pg-config", overlay)
    assert p.returncode == 0, p.stderr
    assert {n: open(os.path.join(ext, n)).read() for n in before} == before
    # another --version replaces the version file rather than adding a second one
    p = run_script("--pg-config", overlay, "--version", "0.8.6.1")
    assert p.returncode == 0, p.stderr
    assert sorted(n for n in os.listdir(ext) if n.startswith("vector")) == ["vector--0.8.6.1.sql", "vector.control"]
    p = run_script("--pg-config", overlay, "--uninstall")
    assert p.returncode == 0, p.stderr
    assert not [n for n in os.listdir(ext) if n.startswith("vector")]
    p = run_script("--pg-config", overlay, "--uninstall")
    assert p.returncode == 0 and "nothing to uninstall" in p.stderr + p.stdout
    p = run_script("--pg-config", overlay)
    assert p.returncode == 0, p.stderr
    assert {n: open(os.path.join(ext, n)).read() for n in before} == before


def test_create_extension_vector(server):
    with server.connect() as conn:
        for _ in range(2):  # what Django's VectorExtension, langchain-postgres, llama-index run
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert conn.execute("SELECT extversion, extrelocatable FROM pg_extension WHERE extname = 'vector'").fetchall() == [
            ("0.8.6", True)
        ]
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'hnsw_ext'").fetchone() == (0,)
        conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3), h halfvec(3))")
        conn.execute(
            "INSERT INTO items (embedding, h) SELECT v, v FROM (SELECT ARRAY[i % 7, i % 11, i % 13]::real[]::vector(3) v"
            " FROM generate_series(1, 200) i) s"
        )
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)")
        conn.execute("CREATE INDEX ON items USING hnsw (h halfvec_cosine_ops)")
        conn.execute("SET hnsw.ef_search = 100")
        q = "SELECT id, embedding <-> '[3,1,2]' FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5"
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + q))
        assert "Index Scan using items_embedding_idx" in plan
        by_index = conn.execute(q).fetchall()
        conn.execute("RESET enable_seqscan")
        conn.execute("SET enable_indexscan = off")
        exact = conn.execute(q).fetchall()
        assert [d for _, d in by_index] == [d for _, d in exact]
        conn.execute("RESET enable_indexscan")
        # a typo in an hnsw.* setting is an error here too
        with pytest.raises(Exception, match="reserved prefix"):
            conn.execute("SET hnsw.ef_serach = 10")
        # the pgvector Python client resolves the type by its name, `vector`
        from pgvector.psycopg import register_vector

        register_vector(conn)
        import numpy as np

        row = conn.execute("SELECT %s::vector, %b::vector", (np.array([3.0, 1, 2]), np.array([1.5, 2, 3]))).fetchone()
        assert [v.to_list() for v in row] == [[3.0, 1.0, 2.0], [1.5, 2.0, 3.0]]
        conn.execute("DROP EXTENSION vector CASCADE")
        conn.execute("CREATE EXTENSION vector")  # and back
        conn.execute("DROP EXTENSION vector")


def fake_layout(tmp_path, files):
    share, lib = tmp_path / "share", tmp_path / "lib"
    (share / "extension").mkdir(parents=True)
    lib.mkdir()
    (share / "extension" / "hnsw_ext.control").write_text("default_version = '0.1.0'\nrelocatable = true\n")
    (share / "extension" / "hnsw_ext--0.1.0.sql").write_text("SELECT 1;\n")
    (lib / "hnsw_ext.so").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return share, lib


def snapshot(tmp_path):
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


PGVECTOR_CONTROL = (
    "comment = 'vector data type and ivfflat and hnsw access methods'\n"
    "default_version = '0.8.6'\nmodule_pathname = '$libdir/vector'\nrelocatable = true\n"
)


@pytest.mark.parametrize(
    "files",
    [
        {"share/extension/vector.control": PGVECTOR_CONTROL, "share/extension/vector--0.8.6.sql": "x", "lib/vector.so": ""},
        {"lib/vector.so": ""},
        {"share/extension/vector.control": PGVECTOR_CONTROL},
        {"share/extension/vector--0.8.5--0.8.6.sql": "x"},
    ],
    ids=["pgvector", "library_only", "control_only", "sql_only"],
)
@pytest.mark.parametrize("uninstall", [False, True], ids=["install", "uninstall"])
def test_refuses_where_pgvector_is_installed(tmp_path, files, uninstall):
    share, lib = fake_layout(tmp_path, files)
    before = snapshot(tmp_path)
    p = run_script("--sharedir", str(share), "--pkglibdir", str(lib), *(["--uninstall"] if uninstall else []))
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "refusing: pgvector" in p.stderr
    for rel in files:
        assert str(tmp_path / rel) in p.stderr
    assert snapshot(tmp_path) == before  # nothing written, nothing removed


def test_refuses_on_this_machines_pgvector():
    """Where the real installation has pgvector, the script refuses it (before writing)."""
    lib = pg_config("--pkglibdir")
    if not os.path.exists(os.path.join(lib, "vector.so")):
        pytest.skip("pgvector is not installed in " + lib)
    p = run_script("--pg-config", PG_CONFIG)
    assert p.returncode == 2 and "refusing: pgvector" in p.stderr


def test_needs_hnsw_ext_installed(tmp_path):
    (tmp_path / "share" / "extension").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    p = run_script("--sharedir", str(tmp_path / "share"), "--pkglibdir", str(tmp_path / "lib"))
    assert p.returncode != 0 and "hnsw_ext is not installed" in p.stderr
    assert not list((tmp_path / "share" / "extension").iterdir())


def test_pgvector_dump_restores_unchanged(server):
    """A pgvector dump's own `CREATE EXTENSION IF NOT EXISTS vector` works here: only the
    ivfflat index needs the filter (--keep-extension leaves the extension lines as they are)."""
    import test_migrate_from_pgvector as mig

    with mig._connect(server, "postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS probe")
        conn.execute("CREATE DATABASE probe")
    with mig._connect(server, "probe") as conn:
        conn.execute("CREATE EXTENSION vector")
        missing = mig.missing_features(conn)
    notes = mig.restore(server, "restored", "--keep-extension", "--ivfflat-to-hnsw", missing=missing)
    assert "extension vector ->" not in notes and "items_ivf" in notes
    with mig._connect(server, "restored") as conn:
        assert conn.execute("SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'").fetchall() == [
            ("vector", "0.8.6")
        ]
        mig.check_restored(conn, missing, ivfflat_as_hnsw=True)
        for name in sorted(mig.EXPECTED["queries"]):
            if mig.feature_of(name) not in missing:
                mig.check_answers(conn, name)


def test_extension_requiring_vector(server, overlay):
    """An extension built on pgvector (VectorChord, pgvectorscale: `requires = 'vector'`)
    installs on top of the mode; CASCADE creates `vector` first."""
    ext = os.path.join(pg_config("--sharedir", overlay), "extension")
    with open(os.path.join(ext, "needs_vector.control"), "w") as f:
        f.write("default_version = '1.0'\nrequires = 'vector'\nrelocatable = true\n")
    with open(os.path.join(ext, "needs_vector--1.0.sql"), "w") as f:
        f.write(
            "CREATE FUNCTION nv_norm2(v vector) RETURNS float8 LANGUAGE sql IMMUTABLE AS"
            " 'SELECT v <-> array_fill(0, ARRAY[vector_dims(v)])::real[]::vector';\n"
        )
    with mig_connect(server, "postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS dependent")
        conn.execute("CREATE DATABASE dependent")
    with mig_connect(server, "dependent") as conn:
        conn.execute("CREATE EXTENSION needs_vector CASCADE")
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1").fetchall() == [
            ("needs_vector",),
            ("vector",),
        ]
        assert conn.execute("SELECT nv_norm2('[3,4]')").fetchone() == (5.0,)


def mig_connect(server, db):
    import test_migrate_from_pgvector as mig

    return mig._connect(server, db)
