"""The wordllama pieces: sentence extraction from documentation formats, the embedding model
loaded from the wheel's own files, the wordllama-1m split and ground truth, and the demo
(bench/demo.py) against a real server."""

import gzip
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from hnswbench import corpus, wordllama  # noqa: E402

DSN = os.environ.get("HNSW_EXT_TEST_DSN", "host=127.0.0.1 port=5499 user=postgres dbname=postgres")


def test_good_sentences_only():
    assert corpus.good_sentence("The index is built in one pass over the table.")
    assert not corpus.good_sentence("the index is built in one pass over the table.")  # no capital
    assert not corpus.good_sentence("The index is built in one pass")  # no full stop
    assert not corpus.good_sentence("Too short to keep.")
    assert not corpus.good_sentence("See foo(3), bar(5), baz_qux(7), x=1, y=2 and {z}.")  # mostly symbols
    assert list(corpus.sentences("First one is a sentence of enough words. Short one. Third is also a proper sentence here!")) == [
        "First one is a sentence of enough words.",
        "Third is also a proper sentence here!",
    ]


def test_formats():
    roff = '.TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH DESCRIPTION\nList information about the\n.B FILEs\n(the current directory by default).\n'
    assert "List information about the FILEs (the current directory by default)." in corpus.normalize(corpus.roff_text(roff))
    # Font escapes of every form leave no residue (`\f5` once left a stray "5").
    fonts = "Use \\f5gzip\\fR, \\f(CWtar\\fP or \\f[B]zstd\\f[] and \\fBxz\\fR.\n"
    assert corpus.normalize(corpus.roff_text(fonts)) == "Use gzip, tar or zstd and xz."
    html = "<html><body><p>The server writes <b>every</b> change to the log first.</p><pre>Code is never a sentence here.</pre></body></html>"
    text = corpus.normalize(corpus.html_text(html))
    assert "The server writes every change to the log first." in text and "Code" not in text
    pod = "=head1 NAME\n\nA module that does B<many> things for C<you> today.\n\n    my $code = 1;\n"
    assert "A module that does many things for you today." in corpus.normalize(corpus.pod_text(pod))


def test_dictionaries(tmp_path):
    dz = tmp_path / "gcide.dict.dz"
    dz.write_bytes(gzip.compress(
        b"Abuse \\A*buse\"\\, v. t.\n   1. To put to a wrong use; to misapply; to misuse.\n      [1913 Webster]\n\n"
        b"            This principle shoots rapidly into popularity among them.     --Froude.\n      [1913 Webster]\n"))
    got = [s for p in corpus.gcide_entries(dz) for s in corpus.sentences(p)]
    assert got == ["To put to a wrong use; to misapply; to misuse.", "This principle shoots rapidly into popularity among them."]
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have its own distinct existence\n")
    assert list(corpus.wordnet_glosses(tmp_path)) == ["That which is perceived or known or inferred to have its own distinct existence."]


@pytest.fixture(scope="module")
def model():
    return wordllama.model()


def test_embeddings_from_the_wheel(model):
    texts = ["Remove a directory and its contents.", "Delete a folder with everything in it.", "The tax rate rose in spring."]
    a = wordllama.embed(texts)
    assert a.shape == (3, wordllama.DIM) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, wordllama.embed(texts)), "embedding is deterministic"
    assert a[0] @ a[1] > a[0] @ a[2] + 0.1, "similar sentences are nearer than unrelated ones"


def test_split_is_a_deterministic_partition():
    sents = [f"Sentence number {i} of the test corpus here." for i in range(500)]
    srcs = [f"p{i % 7}" for i in range(500)]
    q, b, s = wordllama.split(sents, srcs, 400, 50)
    assert (len(q), len(b), len(s)) == (50, 400, 400)
    assert not set(q) & set(b)
    assert all(srcs[sents.index(x)] == y for x, y in zip(b, s))
    assert wordllama.split(list(reversed(sents)), list(reversed(srcs)), 400, 50) == (q, b, s), "order of input does not matter"
    with pytest.raises(SystemExit):
        wordllama.split(sents, srcs, 480, 50)


def test_exact_top_matches_a_full_sort():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2500, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    qs = base[:20] * 0.9 + rng.standard_normal((20, 16)).astype(np.float32) * 0.1
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    got = wordllama.exact_top(base, qs, k=30, chunk=700)
    want = np.argsort(1.0 - qs @ base.T, axis=1, kind="stable")[:, :30]
    assert np.array_equal(got, want)


def test_collect_from_unpacked_packages(tmp_path):
    for name, rel, data in (
        ("pa", "usr/share/man/man1/tool.1.gz", gzip.compress(b".TH T 1\n.SH DESCRIPTION\nThe tool copies every file it is given to the target.\n")),
        ("pb", "usr/share/doc/pb/index.html", b"<p>The tool copies every file it is given to the target.</p><p>A second page explains the options in detail.</p>"),
    ):
        f = tmp_path / "pkgs" / name / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    sents, srcs = wordllama.collect(tmp_path, ["pa", "pb"], log=lambda m: None)
    assert dict(zip(sents, srcs)) == {
        "The tool copies every file it is given to the target.": "pa",  # the first package keeps it
        "A second page explains the options in detail.": "pb",
    }


@pytest.fixture
def scratch_dsn():
    name = f"hnsw_ext_pytest_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(DSN, dbname=name)
    finally:
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_demo(dsn, *args):
    p = subprocess.run([sys.executable, str(REPO / "bench" / "demo.py"), "--dsn", dsn, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_demo_answers_with_and_without_a_filter(scratch_dsn):
    out = run_demo(scratch_dsn, "--rows", "3000", "--reload")
    assert re.search(r"collected 3000 sentences", out), out[:2000]
    lines = re.findall(r"(no filter|WHERE package = '[^']+'): index scan ([\d.]+) ms, exact scan ([\d.]+) ms, recall (\d)/(\d)", out)
    assert len(lines) == 8, out
    # Approximate search at the default ef_search: nearly every answer is the exact scan's.
    hits, wanted = sum(int(h) for *_, h, _ in lines), sum(int(n) for *_, n in lines)
    assert wanted == 40 and hits >= 34, out
    with psycopg.connect(scratch_dsn) as c:
        assert c.execute("SELECT count(*), count(DISTINCT package) FROM hnsw_docs").fetchone()[0] == 3000
        plan = "\n".join(r[0] for r in c.execute(
            "EXPLAIN SELECT id FROM hnsw_docs WHERE package = 'x' ORDER BY embedding <=> (SELECT embedding FROM hnsw_docs LIMIT 1) LIMIT 5"))
        assert "hnsw_docs_embedding" in plan and "Index Cond" in plan, plan
    # A user's own question, on the table left by the first run.
    out = run_demo(scratch_dsn, "--package", "no-such-package", "what does the kernel log at boot")
    assert "collected" not in out and "what does the kernel log at boot" in out
    assert "WHERE package = 'no-such-package': index scan" in out and "recall 0/0" in out
