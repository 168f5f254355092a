"""English sentences from documentation files: man pages (roff), HTML, plain text, POD, and the
dictionaries Debian ships (GCIDE, WordNet glosses). Used by the wordllama-1m recipe
(`bench/make_wordllama_1m.py`) and the demo (`bench/demo.py`); everything here is deterministic:
files are read in sorted order and each sentence is kept where it first appears."""

from __future__ import annotations

import gzip
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

# Sentences of 6 to 40 words, mostly letters, starting with a capital and ending with . ! or ?
MIN_WORDS, MAX_WORDS = 6, 40
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SPACE = re.compile(r"\s+")
_ROFF_ESC = re.compile(r"\\f[A-Z0-9]|\\f\(..|\\f\[[A-Z]*\]|\\\(..|\\\[[^\]]*\]|\\[-&|^e:%~0 ]|\\s[-+]?\d|\\\*\(..|\\\*.|\\.")
_POD = re.compile(r"[BICLFSEXZ]<+([^<>]*)>+")


def normalize(s: str) -> str:
    return _SPACE.sub(" ", s).strip()


def good_sentence(s: str) -> bool:
    if not (s[:1].isupper() and s[-1:] in ".!?"):
        return False
    words = s.split(" ")
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    letters = sum(c.isalpha() for c in s)
    if letters < 0.75 * len(s.replace(" ", "")):
        return False
    return len(_WORD.findall(s)) >= 0.8 * len(words) and s.isascii()


def sentences(text: str) -> Iterator[str]:
    """The good sentences of a paragraph-ish text."""
    for part in _SPLIT.split(normalize(text)):
        if good_sentence(part):
            yield part


def roff_text(src: str) -> str:
    """The running text of a man page: requests dropped, escapes removed, paragraphs joined."""
    out = []
    for line in src.splitlines():
        if line.startswith((".", "'")):
            # Text-carrying macros keep their argument (.B word, .I word, .IR a b).
            head, _, rest = line.partition(" ")
            if head in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".SM", ".SB") and rest:
                out.append(rest.replace('"', ""))
                continue
            out.append("\n")
            continue
        out.append(line)
    return _ROFF_ESC.sub("", " ".join(out))


class _Text(HTMLParser):
    SKIP = {"script", "style", "pre", "code", "tt", "kbd", "samp"}
    BLOCK = {"p", "div", "li", "td", "th", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr", "table", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_text(src: str) -> str:
    p = _Text()
    p.feed(src)
    return "".join(p.parts)


def pod_text(src: str) -> str:
    keep = []
    code = False
    for line in src.splitlines():
        if line.startswith("="):
            keep.append("\n")
            code = False
            continue
        if line.startswith((" ", "\t")):
            code = True
            continue
        keep.append(line)
    return _POD.sub(r"\1", "\n".join(keep))


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return ""
    return data.decode("utf-8", errors="replace")


def file_paragraphs(path: Path) -> Iterator[str]:
    """Paragraphs of running text of one documentation file (nothing for other files)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    parts = str(path).split("/")
    text = None
    if "man" in parts and re.search(r"\.\d[a-z]*$", name):
        text = roff_text(read_text(path))
    elif name.endswith((".html", ".htm")):
        text = html_text(read_text(path))
    elif name.endswith((".pod", ".pm")):
        text = pod_text(read_text(path))
    elif name.endswith((".txt", ".rst", ".md")) or name in ("README", "NEWS", "FAQ"):
        text = read_text(path)
    if text:
        # Blank lines separate paragraphs; within one, lines are joined.
        yield from re.split(r"\n\s*\n", text)


def wordnet_glosses(root: Path) -> Iterator[str]:
    """WordNet's glosses: each synset's definition and quoted examples, as sentences."""
    for f in sorted(root.glob("data.*")):
        for line in read_text(f).splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1].strip()
            for piece in gloss.split(";"):
                piece = piece.strip().strip('"').strip()
                if piece:
                    yield piece[:1].upper() + piece[1:] + ("" if piece.endswith((".", "!", "?")) else ".")


def gcide_entries(path: Path) -> Iterator[str]:
    """Definitions and quotations of the GCIDE dictionary (dictd format, dictzip-compressed):
    paragraphs without sources (`[1913 Webster]`), attributions (`--Shak.`), markup and sense
    numbers."""
    text = read_text(path)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"--[A-Z][A-Za-z.' ]*", "", text)
    text = text.replace("{", "").replace("}", "")
    for para in re.split(r"\n\s*\n", text):
        yield re.sub(r"^\s*\d+\.\s*", "", para)
