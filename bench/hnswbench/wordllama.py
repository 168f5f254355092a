"""The wordllama-1m data set: about a million distinct English sentences from Debian
documentation packages, embedded with the `wordllama` package (256 dimensions, cosine), with
1,000 other sentences as queries and their exact top-100.

Everything comes from registry packages: `apt-get download` of the packages in
:data:`PACKAGES` (unpacked with `dpkg -x`, nothing installed), and the weights and tokenizer
bundled in the `wordllama` wheel (loaded from the wheel's own files: no download). The make
step is deterministic: packages and files are read in sorted order, a sentence belongs to the
first package it appears in, and the split into base rows and queries orders sentences by their
SHA-1, so the first N base rows are a random sample (what `--rows N` benchmarks).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import corpus

#: Debian 12 documentation packages the sentences come from (all architecture-independent).
PACKAGES = (
    "apache2-doc", "bash-doc", "cmake-doc", "debian-handbook", "debian-policy", "debian-reference-en",
    "developers-reference", "dict-gcide", "erlang-doc", "freebsd-manpages", "gimp-help-en", "git-doc",
    "glibc-doc", "linux-doc-6.1", "maint-guide", "manpages", "manpages-dev", "nodejs-doc", "octave-doc",
    "openjdk-17-doc", "perl-doc", "postgresql-doc-15", "python-django-doc", "python3.11-doc",
    "r-doc-html", "rust-doc", "sphinx-doc", "tcl8.6-doc", "wordnet-base",
)

DIM = 256
NAME = "wordllama-1m"
FILES = ("base.npy", "queries.npy", "gt100-ids.npy", "base.txt", "queries.txt", "base-source.txt")


def default_dir() -> Path:
    cache = os.environ.get("HNSW_BENCH_CACHE") or str(Path.home() / ".cache" / "hnsw_ext_bench")
    return Path(cache) / NAME


def model():
    """The wordllama model from the wheel's bundled files (its own loader looks for the
    tokenizer in a directory the wheel does not have, then tries to download it)."""
    import wordllama
    from safetensors import safe_open
    from wordllama import WordLlama
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    tokenizer = WordLlama.load_tokenizer(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
    with safe_open(str(root / "weights" / f"l2_supercat_{DIM}.safetensors"), framework="np") as f:
        weights = f.get_tensor("embedding.weight")
    return WordLlamaInference(weights, tokenizer)


def embed(texts: list[str], batch: int = 20000, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit-length float32 embeddings of `texts`."""
    m = model()
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for i in range(0, len(texts), batch):
        out[i:i + batch] = m.embed(texts[i:i + batch], norm=True)
        if progress:
            progress(min(i + batch, len(texts)))
    return out


def package_sentences(root: Path) -> Iterator[str]:
    """The sentences of one unpacked package, files in sorted order."""
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if "wordnet" in f.parts:
            if f.name == "data.noun":
                yield from (s for s in corpus.wordnet_glosses(f.parent) if corpus.good_sentence(s))
            continue
        paragraphs = corpus.gcide_entries(f) if f.name.endswith(".dict.dz") else corpus.file_paragraphs(f)
        for para in paragraphs:
            yield from corpus.sentences(para)


def fetch_packages(work: Path, packages: Iterable[str], log=print) -> dict[str, str]:
    """Download and unpack each package under `work` (skipping what is there); their versions."""
    debs, unpacked = work / "debs", work / "pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    unpacked.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name in packages:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            log(f"apt-get download {name}")
            # As root apt warns that its sandbox user cannot write here; the download still works.
            r = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"apt-get download {name} failed: {r.stderr.strip()}")
            found = sorted(debs.glob(f"{name}_*.deb"))
        deb = found[-1]
        versions[name] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True).stdout.strip()
        target = unpacked / name
        if not (target / ".done").exists():
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
            (target / ".done").touch()
    return versions


def collect(work: Path, packages: Iterable[str], log=print) -> tuple[list[str], list[str]]:
    """Distinct sentences of the packages and the package each first appears in."""
    seen: dict[str, str] = {}
    for name in packages:
        t = time.time()
        before = len(seen)
        for s in package_sentences(work / "pkgs" / name):
            seen.setdefault(s, name)
        log(f"{name}: {len(seen) - before} new sentences ({time.time() - t:.0f}s)")
    return list(seen), list(seen.values())


def split(sentences: list[str], sources: list[str], rows: int, queries: int):
    """Order by SHA-1 of the text; the first `queries` are queries, the next `rows` the base."""
    order = sorted(range(len(sentences)), key=lambda i: hashlib.sha1(sentences[i].encode()).digest())
    if len(order) < rows + queries:
        raise SystemExit(f"only {len(order)} distinct sentences, {rows + queries} needed")
    q, b = order[:queries], order[queries:queries + rows]
    return [sentences[i] for i in q], [sentences[i] for i in b], [sources[i] for i in b]


def exact_top(base: np.ndarray, queries: np.ndarray, k: int = 100, chunk: int = 100_000) -> np.ndarray:
    """Row numbers of each query's k nearest base rows by cosine (rows are unit length), nearest
    first, ties by row number."""
    best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for s in range(0, len(base), chunk):
        d = 1.0 - queries @ base[s:s + chunk].T
        take = min(k, d.shape[1])
        part = np.argpartition(d, take - 1, axis=1)[:, :take]
        best_d = np.concatenate([best_d, np.take_along_axis(d, part, axis=1)], axis=1)
        best_i = np.concatenate([best_i, part + s], axis=1)
        keep = np.lexsort((best_i, best_d), axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(best_d, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i.astype(np.int32)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make(out: Path, work: Path, rows: int = 1_000_000, queries: int = 1000, log=print) -> dict:
    """Build the data set into `out` (work files under `work`); returns the manifest."""
    t0 = time.time()
    versions = fetch_packages(work, PACKAGES, log)
    sentences, sources = collect(work, PACKAGES, log)
    log(f"{len(sentences)} distinct sentences ({time.time() - t0:.0f}s)")
    q_text, b_text, b_src = split(sentences, sources, rows, queries)
    out.mkdir(parents=True, exist_ok=True)
    log(f"embedding {rows + queries} sentences")
    q = embed(q_text)
    b = embed(b_text, progress=lambda n: log(f"  {n}/{rows}") if n % 200_000 == 0 else None)
    np.save(out / "queries.npy", q)
    np.save(out / "base.npy", b)
    log("exact top-100")
    np.save(out / "gt100-ids.npy", exact_top(b, q))
    for name, lines in (("base.txt", b_text), ("queries.txt", q_text), ("base-source.txt", b_src)):
        (out / name).write_text("".join(s + "\n" for s in lines))
    manifest = {
        "name": NAME,
        "rows": rows,
        "queries": queries,
        "dim": DIM,
        "metric": "cosine",
        "distinct_sentences": len(sentences),
        "packages": versions,
        "sha256": {f: sha256(out / f) for f in FILES},
        "seconds": round(time.time() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
