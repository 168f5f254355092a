#!/usr/bin/env python3
"""The hnsw_ext demo: semantic search over the documentation on this machine.

    python3 bench/demo.py [--dsn DSN] [--rows N] [--reload] [--package PKG] ["your question" ...]

The first run collects up to --rows distinct English sentences (default 50,000) from the man
pages and /usr/share/doc of the installed Debian packages, embeds them with the `wordllama`
package (256 dims; its weights come with the wheel), loads them into the table hnsw_docs
(id, package, sentence, embedding vector(256)) and builds an hnsw index with `package` as a
filter column. Then, for each question (a few built-in ones without arguments), it prints the
nearest sentences with and without a filter on the package, the time each index scan took, and
the recall against an exact scan (the same query with index scans disabled).
Later runs reuse the table (--reload rebuilds it), so asking your own question takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hnswbench import corpus, wordllama  # noqa: E402

QUESTIONS = (
    "how do I copy files to another computer over the network",
    "delete a directory and everything inside it",
    "compress a file to save disk space",
    "which program shows the processes that use the most memory",
)
K = 5


def owners() -> dict[str, str]:
    """Path -> Debian package, from dpkg's file lists."""
    own = {}
    for lst in sorted(Path("/var/lib/dpkg/info").glob("*.list")):
        pkg = lst.stem.split(":")[0]
        for line in lst.read_text(errors="replace").splitlines():
            own.setdefault(line, pkg)
    return own


def doc_files() -> list[Path]:
    roots = [Path("/usr/share/man") / f"man{s}" for s in "18574326"] + [Path("/usr/share/doc")]
    files = []
    for r in roots:
        if r.is_dir():
            files += sorted(p for p in r.rglob("*") if p.is_file() and not p.is_symlink())
    return files


#: Documentation packages downloaded (`apt-get download`, not installed) when the machine's own
#: documentation has too few sentences (container images often leave it out).
TOP_UP = ("manpages", "postgresql-doc-15", "debian-reference-en", "python3.11-doc", "perl-doc")


def collect(rows: int) -> tuple[list[str], list[str]]:
    """Up to `rows` distinct sentences, and each one's package; the same on the same machine."""
    own = owners()
    seen: dict[str, str] = {}
    for f in doc_files():
        pkg = own.get(str(f), "unknown")
        for para in corpus.file_paragraphs(f):
            for s in corpus.sentences(para):
                seen.setdefault(s, pkg)
        if len(seen) >= rows:
            break
    if len(seen) < rows:
        work = wordllama.default_dir().parent / "demo-docs"
        print(f"{len(seen)} sentences in this machine's documentation; adding Debian documentation packages ({work})")
        wordllama.fetch_packages(work, TOP_UP, log=lambda m: None)
        for name in TOP_UP:
            for s in wordllama.package_sentences(work / "pkgs" / name):
                seen.setdefault(s, name)
            if len(seen) >= rows:
                break
    texts = sorted(seen, key=lambda s: hashlib.sha1(s.encode()).digest())[:rows]
    return texts, [seen[s] for s in texts]


def copy_binary(pkgs: list[str], texts: list[str], emb: np.ndarray) -> bytes:
    """The rows (id, package, sentence, embedding) as a binary COPY stream; a `vector` value's
    binary form is int16 dimensions, int16 0, then big-endian float4s."""
    vec_head = struct.pack(">ihh", 4 + 4 * emb.shape[1], emb.shape[1], 0)
    vecs = emb.astype(">f4")
    out = [b"PGCOPY\n\xff\r\n\0", struct.pack(">ii", 0, 0)]
    for i, (p, s) in enumerate(zip(pkgs, texts)):
        p, s = p.encode(), s.encode()
        out += [struct.pack(">hiii", 4, 4, i, len(p)), p, struct.pack(">i", len(s)), s, vec_head, vecs[i].tobytes()]
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def load(conn, rows: int) -> None:
    t = time.time()
    texts, pkgs = collect(rows)
    print(f"collected {len(texts)} sentences from {len(set(pkgs))} packages' documentation in {time.time() - t:.1f}s")
    t = time.time()
    emb = wordllama.embed(texts)
    print(f"embedded them with wordllama ({wordllama.DIM} dims) in {time.time() - t:.1f}s")
    t = time.time()
    conn.execute("CREATE EXTENSION IF NOT EXISTS hnsw_ext")
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS hnsw_docs")
        cur.execute(f"CREATE TABLE hnsw_docs (id int PRIMARY KEY, package text NOT NULL, sentence text NOT NULL, embedding vector({wordllama.DIM}) NOT NULL)")
        with cur.copy("COPY hnsw_docs (id, package, sentence, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.write(copy_binary(pkgs, texts, emb))
        cur.execute("ANALYZE hnsw_docs")
        loaded = time.time() - t
        t = time.time()
        cur.execute("CREATE INDEX hnsw_docs_embedding ON hnsw_docs USING hnsw (embedding vector_cosine_ops, package)")
    print(f"loaded in {loaded:.1f}s; CREATE INDEX ... USING hnsw (embedding vector_cosine_ops, package) in {time.time() - t:.1f}s")


def search(cur, q: str, package: str | None, exact: bool) -> tuple[list[tuple], float]:
    cur.execute("SET enable_indexscan = %s" % ("off" if exact else "on"))
    cur.execute("SET enable_bitmapscan = off")
    cur.execute("SET enable_seqscan = %s" % ("on" if exact else "off"))
    where, args = ("WHERE package = %s", [package]) if package else ("", [])
    sql = f"SELECT id, package, sentence, embedding <=> %s::vector AS d FROM hnsw_docs {where} ORDER BY embedding <=> %s::vector LIMIT {K}"
    t = time.perf_counter()
    cur.execute(sql, [q, *args, q] if package else [q, q])
    found = cur.fetchall()
    return found, (time.perf_counter() - t) * 1000


def ask(conn, question: str, package: str | None) -> None:
    q = "[" + ",".join(f"{x:.6g}" for x in wordllama.embed([question])[0]) + "]"
    with conn.cursor() as cur:
        # The first run of a statement plans it; time the second.
        search(cur, q, None, False)
        found, ms = search(cur, q, None, False)
        if package is None:
            # Filter on a package other than the top answer's, among those near the question.
            cur.execute("SET enable_seqscan = off")
            cur.execute("SELECT package FROM hnsw_docs ORDER BY embedding <=> %s::vector LIMIT 50", [q])
            near = Counter(r[0] for r in cur.fetchall())
            top = found[0][1] if found else None
            package = next((p for p, _ in near.most_common() if p != top), top)
        print(f"\n{question!r}")
        for filt in (None, package):
            if filt is not None:
                search(cur, q, filt, False)
                found, ms = search(cur, q, filt, False)
            exact, exact_ms = search(cur, q, filt, True)
            # Ties count as hits (sentences of the same words have the same embedding).
            worst = exact[-1][3] + 1e-6 if exact else 0.0
            hits = sum(1 for r in found if r[3] <= worst)
            label = f"WHERE package = '{filt}'" if filt else "no filter"
            print(f"  {label}: index scan {ms:.1f} ms, exact scan {exact_ms:.1f} ms, recall {hits}/{len(exact)}")
            for _, pkg, sentence, d in found:
                print(f"    {d:.3f}  [{pkg}] {sentence[:110]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("questions", nargs="*", help="what to search for (default: a few built-in questions)")
    p.add_argument("--dsn", default="host=127.0.0.1 port=5499 user=postgres dbname=postgres")
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--reload", action="store_true", help="collect, embed and load the sentences again")
    p.add_argument("--package", help="the filter of the filtered search (default: a package near each question)")
    a = p.parse_args()
    # No server-side prepared statements: a cached plan would ignore the exact scan's settings.
    with psycopg.connect(a.dsn, autocommit=True, prepare_threshold=None) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('hnsw_docs') IS NOT NULL")
            exists = cur.fetchone()[0]
        if a.reload or not exists:
            load(conn, a.rows)
        for q in a.questions or QUESTIONS:
            ask(conn, q, a.package)


if __name__ == "__main__":
    main()
