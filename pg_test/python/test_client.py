"""Client-side tests of the vector and halfvec types through psycopg 3 and the pgvector package.

The server is taken from HNSW_EXT_TEST_DSN (a libpq connection string). The tests run in a
database of their own, created at the start and dropped at the end, with hnsw_ext installed in it.

Run with:  python3 -m pytest -q pg_test/python
"""

import os
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from pgvector import HalfVector, Vector
from pgvector.psycopg import register_vector

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")

# Bit patterns exercised by the exact round trip tests, besides random ones.
SPECIAL_F32 = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.1, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1e-30, 1e30],
    dtype=np.float32,
)


@pytest.fixture(scope="module")
def dbname():
    name = f"hnsw_ext_pytest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(dbname):
    with psycopg.connect(make_conninfo(DSN, dbname=dbname), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS hnsw_ext")
        register_vector(c)
        yield c


def f32(value):
    """A loaded vector (or anything array-like) as a float32 numpy array."""
    if isinstance(value, Vector):
        return value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def f16(value):
    """A loaded halfvec (or anything array-like) as a float16 numpy array."""
    if isinstance(value, HalfVector):
        return value.to_numpy()
    return np.asarray(value, dtype=np.float16)


def same_bits32(a, b):
    a, b = f32(a), f32(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def same_bits16(a, b):
    a, b = f16(a), f16(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def random_finite_f32(rng, n):
    """n float32 values with random bit patterns (all exponents, subnormals, both signs), no NaN/inf."""
    bits = rng.integers(0, 2**32, size=4 * n, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    return values[np.isfinite(values)][:n].copy()


def random_finite_f16(rng, n):
    bits = rng.integers(0, 2**16, size=4 * n, dtype=np.uint64).astype(np.uint16)
    values = bits.view(np.float16)
    return values[np.isfinite(values)][:n].copy()


def test_extension_types(conn):
    rows = conn.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_depend d ON d.objid = t.oid "
        "JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'hnsw_ext' AND t.typtype = 'b' "
        "ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in rows] == ["halfvec", "sparsevec", "vector"]


def test_numpy_text_parameters(conn):
    conn.execute("CREATE TEMP TABLE t_text (id int, v vector(3))")
    arr = np.array([1.5, -2.25, 3e-5], dtype=np.float32)
    # %t sends the parameter in text format, and results come back as text
    conn.execute("INSERT INTO t_text VALUES (1, %t)", (arr,))
    v, text = conn.execute("SELECT v, v::text FROM t_text WHERE id = 1").fetchone()
    assert isinstance(v, Vector)
    assert same_bits32(v, arr)
    assert text == "[1.5,-2.25,3e-05]"
    # a list of Python floats works too
    conn.execute("INSERT INTO t_text VALUES (2, %t)", (Vector([0.1, 0.2, 0.3]),))
    (text,) = conn.execute("SELECT v::text FROM t_text WHERE id = 2").fetchone()
    assert text == "[0.1,0.2,0.3]"


def test_numpy_binary_parameters(conn):
    conn.execute("CREATE TEMP TABLE t_bin (id int, v vector(3))")
    arr = np.array([1.5, -2.25, 3e-5], dtype=np.float32)
    # %b sends the parameter in pgvector's binary format (vector_recv); binary=True asks for
    # binary results (vector_send)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t_bin VALUES (1, %b)", (arr,))
        cur.execute("SELECT v FROM t_bin WHERE id = %b", (1,), binary=True)
        (v,) = cur.fetchone()
        assert cur.pgresult.fformat(0) == 1
    assert isinstance(v, Vector)
    assert same_bits32(v, arr)
    (text,) = conn.execute("SELECT v::text FROM t_bin").fetchone()
    assert text == "[1.5,-2.25,3e-05]"
    # the bytes on the wire are pgvector's: int16 dim, int16 0, big-endian float4s
    (raw,) = conn.execute("SELECT vector_send(%b)", (arr,)).fetchone()
    assert bytes(raw) == b"\x00\x03\x00\x00" + arr.astype(">f4").tobytes()


@pytest.mark.parametrize("dim", [1, 3, 17, 1536, 16000])
def test_exact_float32_round_trip(conn, dim):
    rng = np.random.default_rng(dim)
    values = np.concatenate([SPECIAL_F32, rng.standard_normal(dim).astype(np.float32),
                             random_finite_f32(rng, dim)])
    for start in range(0, len(values) - dim + 1, dim):
        arr = values[start:start + dim]
        for param in ("%t", "%b"):
            for binary in (False, True):
                (v,) = conn.execute(f"SELECT {param}::vector", (arr,), binary=binary).fetchone()
                assert same_bits32(v, arr), (param, binary)
        # and through a table, text in and binary out
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS t_round (v vector)")
        conn.execute("TRUNCATE t_round")
        conn.execute("INSERT INTO t_round VALUES (%t)", (arr,))
        (v,) = conn.execute("SELECT v FROM t_round", binary=True).fetchone()
        assert same_bits32(v, arr)


def test_large_vectors(conn):
    rng = np.random.default_rng(1536)
    conn.execute("CREATE TEMP TABLE t_large (id int, v1536 vector(1536), v16000 vector(16000))")
    a = rng.standard_normal(1536).astype(np.float32)
    b = rng.standard_normal(16000).astype(np.float32)
    conn.execute("INSERT INTO t_large VALUES (1, %t, %t), (2, %b, %b)", (a, b, a, b))
    rows = conn.execute("SELECT id, v1536, v16000, vector_dims(v1536), vector_dims(v16000) "
                        "FROM t_large ORDER BY id", binary=True).fetchall()
    for _, v1536, v16000, d1536, d16000 in rows:
        assert (d1536, d16000) == (1536, 16000)
        assert same_bits32(v1536, a) and same_bits32(v16000, b)
    # the server computes the same distances as numpy (float4 accumulation, so a tolerance)
    zero = np.zeros(16000, dtype=np.float32)
    l2, ip, cos, l1 = conn.execute(
        "SELECT v16000 <-> %b, inner_product(v16000, %b), v16000 <=> %b, v16000 <+> %b FROM t_large WHERE id = 1",
        (zero, b, b, zero),
    ).fetchone()
    b64 = b.astype(np.float64)
    assert l2 == pytest.approx(np.linalg.norm(b64), rel=1e-5)
    assert ip == pytest.approx(np.dot(b64, b64), rel=1e-5)
    assert cos == pytest.approx(0.0, abs=1e-6)
    assert l1 == pytest.approx(np.abs(b64).sum(), rel=1e-5)
    with pytest.raises(errors.ProgramLimitExceeded):
        conn.execute("SELECT %t::vector", (np.zeros(16001, dtype=np.float32),))
    with pytest.raises(errors.ProgramLimitExceeded):
        conn.execute("SELECT %b::vector", (np.zeros(16001, dtype=np.float32),))


def test_halfvec_round_trip(conn):
    conn.execute("CREATE TEMP TABLE t_half (id int, h halfvec(4))")
    hv = HalfVector([1.5, 0.1, -65504.0, 6e-8])
    conn.execute("INSERT INTO t_half VALUES (1, %t), (2, %b)", (hv, hv))
    for binary in (False, True):
        rows = conn.execute("SELECT id, h FROM t_half ORDER BY id", binary=binary).fetchall()
        for _, h in rows:
            assert isinstance(h, HalfVector)
            assert h == hv
            assert h.to_list() == [1.5, 0.0999755859375, -65504.0, 5.960464477539063e-08]
    (text,) = conn.execute("SELECT h::text FROM t_half WHERE id = 1").fetchone()
    assert text == "[1.5,0.099975586,-65504,5.9604645e-08]"
    (raw,) = conn.execute("SELECT halfvec_send(%b)", (hv,)).fetchone()
    assert bytes(raw) == b"\x00\x04\x00\x00" + f16(hv).astype(">f2").tobytes()
    # every finite half survives the text and the binary format bit for bit
    rng = np.random.default_rng(16)
    values = random_finite_f16(rng, 4000)
    h = HalfVector(values)
    for param in ("%t", "%b"):
        for binary in (False, True):
            (back,) = conn.execute(f"SELECT {param}::halfvec", (h,), binary=binary).fetchone()
            assert same_bits16(back, values), (param, binary)
    # vector -> halfvec rounds to nearest half on the server, like numpy
    arr = rng.standard_normal(1536).astype(np.float32)
    (back,) = conn.execute("SELECT %b::vector::halfvec", (arr,), binary=True).fetchone()
    assert same_bits16(back, arr.astype(np.float16))
    with pytest.raises(errors.NumericValueOutOfRange):
        conn.execute("SELECT %b::vector::halfvec", (np.array([70000], dtype=np.float32),))
    with pytest.raises(errors.NumericValueOutOfRange):
        conn.execute("SELECT '[70000]'::halfvec")


def test_copy_text(conn):
    rng = np.random.default_rng(7)
    rows = [(i, rng.standard_normal(8).astype(np.float32)) for i in range(100)]
    conn.execute("CREATE TEMP TABLE t_copy_text (id int, v vector(8))")
    with conn.cursor() as cur:
        with cur.copy("COPY t_copy_text (id, v) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute("SELECT id, v FROM t_copy_text ORDER BY id")
        back = cur.fetchall()
    assert len(back) == len(rows)
    for (i, v), (j, arr) in zip(back, rows):
        assert i == j and same_bits32(v, arr)
    # raw text lines, as written by other clients
    with conn.cursor() as cur:
        with cur.copy("COPY t_copy_text (id, v) FROM STDIN") as copy:
            copy.write("1000\t[1,2,3,4,5,6,7,8]\n1001\t  [ 0.5 , -0 ,1e-45,0,0,0,0,0]  \n")
        cur.execute("SELECT v::text FROM t_copy_text WHERE id >= 1000 ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == ["[1,2,3,4,5,6,7,8]", "[0.5,-0,1e-45,0,0,0,0,0]"]
    with pytest.raises(psycopg.DataError):
        with conn.cursor() as cur:
            with cur.copy("COPY t_copy_text (id, v) FROM STDIN") as copy:
                copy.write("2000\t[1,2,3]\n")


def test_copy_binary(conn):
    rng = np.random.default_rng(8)
    rows = [(i, rng.standard_normal(16).astype(np.float32), HalfVector(rng.standard_normal(4)))
            for i in range(500)]
    rows.append((500, np.resize(SPECIAL_F32, 16), HalfVector([65504.0, -0.0, 6e-8, 0.1])))
    conn.execute("CREATE TEMP TABLE t_copy_bin (id int, v vector(16), h halfvec(4))")
    with conn.cursor() as cur:
        with cur.copy("COPY t_copy_bin (id, v, h) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "halfvec"])
            for row in rows:
                copy.write_row(row)
    (count,) = conn.execute("SELECT count(*) FROM t_copy_bin").fetchone()
    assert count == len(rows)
    # read back with COPY TO STDOUT in binary
    back = []
    with conn.cursor() as cur:
        with cur.copy("COPY (SELECT id, v, h FROM t_copy_bin ORDER BY id) TO STDOUT WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "halfvec"])
            back = list(copy.rows())
    assert len(back) == len(rows)
    for (i, v, h), (j, arr, hv) in zip(back, rows):
        assert i == j
        assert isinstance(v, Vector) and same_bits32(v, arr)
        assert isinstance(h, HalfVector) and h == hv
    # the same rows through a text query
    (text,) = conn.execute("SELECT h::text FROM t_copy_bin WHERE id = 500").fetchone()
    assert text == "[65504,-0,5.9604645e-08,0.099975586]"
    # COPY FROM checks the column's dimensions in the receive function
    with pytest.raises(psycopg.DataError) as excinfo:
        with conn.cursor() as cur:
            with cur.copy("COPY t_copy_bin (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                copy.write_row((1, np.zeros(15, dtype=np.float32)))
    assert isinstance(excinfo.value, errors.DataException)
    assert excinfo.value.diag.sqlstate == "22000"
    assert excinfo.value.diag.message_primary == "expected 16 dimensions, not 15"


def test_wrong_dimensions(conn):
    conn.execute("CREATE TEMP TABLE t_dims (v vector(3), h halfvec(3))")
    two = np.array([1, 2], dtype=np.float32)
    for param in ("%t", "%b"):
        with pytest.raises(errors.DataException) as excinfo:
            conn.execute(f"INSERT INTO t_dims (v) VALUES ({param})", (two,))
        assert excinfo.value.diag.sqlstate == "22000"
        assert excinfo.value.diag.message_primary == "expected 3 dimensions, not 2"
    with pytest.raises(errors.DataException) as excinfo:
        conn.execute("INSERT INTO t_dims (h) VALUES (%b)", (HalfVector([1, 2, 3, 4]),))
    assert excinfo.value.diag.message_primary == "expected 3 dimensions, not 4"
    with pytest.raises(errors.DataException) as excinfo:
        conn.execute("SELECT %b::vector <-> %b::vector", (two, np.ones(3, dtype=np.float32)))
    assert excinfo.value.diag.message_primary == "different vector dimensions 2 and 3"
    # non-finite values are data exceptions too, in both formats
    for param in ("%t", "%b"):
        with pytest.raises(errors.DataException):
            conn.execute(f"SELECT {param}::vector", (np.array([1, np.nan], dtype=np.float32),))
        with pytest.raises(errors.DataException):
            conn.execute(f"SELECT {param}::vector", (np.array([np.inf], dtype=np.float32),))
    with pytest.raises(errors.InvalidTextRepresentation):
        conn.execute("SELECT '[1,2'::vector")
    (count,) = conn.execute("SELECT count(*) FROM t_dims").fetchone()
    assert count == 0


def test_sparsevec_text_and_binary(conn):
    """pgvector-python's SparseVector round-trips through text and binary parameters and COPY."""
    from pgvector import SparseVector

    conn.execute("CREATE TEMP TABLE t_sparse (id int, v sparsevec(6))")
    sv = SparseVector({0: 1.5, 4: -2.25}, 6)
    conn.execute("INSERT INTO t_sparse VALUES (1, %t), (2, %b)", (sv, sv))
    for fmt in (False, True):
        rows = conn.execute("SELECT v FROM t_sparse ORDER BY id", binary=fmt).fetchall()
        assert [r[0].to_list() for r in rows] == [[1.5, 0, 0, 0, -2.25, 0]] * 2
    with conn.cursor().copy("COPY t_sparse (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "sparsevec"])
        copy.write_row((3, SparseVector({5: 7.0}, 6)))
    assert conn.execute("SELECT v::text FROM t_sparse WHERE id = 3").fetchone()[0] == "{6:7}/6"
