"""Output: JSON lines, QPS-at-recall interpolation, ours/theirs ratios and the recall/QPS plot."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

#: Recall levels at which QPS is compared between extensions.
RECALL_TARGETS = (0.95, 0.99)


def _jsonable(value):
    """numpy scalars/arrays and paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


class JsonlWriter:
    """Appends one JSON object per line to a file (flushed after every record) and keeps them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8")
        self.records: list[dict] = []

    def write(self, record: dict) -> dict:
        """Write ``record`` (numpy values converted) and return the converted record."""
        rec = _jsonable(record)
        self._f.write(json.dumps(rec, sort_keys=False) + "\n")
        self._f.flush()
        self.records.append(rec)
        return rec

    def close(self) -> None:
        """Close the file."""
        self._f.close()


def label(rec: dict) -> str:
    """The run a build/query record belongs to: its ``label`` (extension, our WITH options, round),
    or its ``ext`` in records without one (recorded references, older files)."""
    return rec.get("label") or rec["ext"]


class Filter(float):
    """A filter's selectivity that also carries its shape (see ``filters``): curves of the same
    selectivity and different shapes are different curves, and the legend names the shape."""

    def __new__(cls, value: float, shape: str | None):
        f = super().__new__(cls, value)
        f.shape = shape or "eq"
        return f

    def __eq__(self, other):
        return float(self) == float(other) and getattr(other, "shape", "eq") == self.shape

    def __hash__(self):
        return hash((float(self), self.shape))

    def text(self) -> str:
        return f"{self * 100:g}%" + ("" if self.shape == "eq" else f" {self.shape}")


def filter_text(flt) -> str:
    """'10%' or '10% far'."""
    return flt.text() if isinstance(flt, Filter) else f"{flt * 100:g}%"


def curve_key(rec: dict) -> tuple:
    """(label, filter, clients): one recall/QPS curve per key (the filter with its shape)."""
    flt = rec["filter"]
    return label(rec), (None if flt is None else Filter(flt, rec.get("filter_shape"))), rec["clients"]


def curves(records: list[dict]) -> dict:
    """Query records grouped into curves: key -> [(ef_search, recall, qps)] sorted by ef_search."""
    out = defaultdict(list)
    for r in records:
        if r.get("type") == "query" and r.get("recall") is not None:
            out[curve_key(r)].append((r["ef_search"], r["recall"], r["qps"]))
    return {k: sorted(v) for k, v in out.items()}


def qps_at_recall(points: list[tuple[float, float]], target: float) -> tuple[float | None, str]:
    """QPS at ``target`` recall on a curve of (recall, qps) points.

    Uses the Pareto envelope (best QPS among points with at least a given recall) and interpolates
    log(QPS) linearly in recall between the two envelope points around the target. Returns
    (qps, how) with how one of "interpolated", "lower bound" (every point is above the target, so
    the fastest point's QPS is a floor) or "not reached" (qps None).
    """
    pts = sorted((r, q) for r, q in points if r is not None and q and q > 0)
    if not pts or pts[-1][0] < target:
        return None, "not reached"
    env, best = [], 0.0
    for r, q in reversed(pts):
        best = max(best, q)
        env.append((r, best))
    env.reverse()
    hi = next(i for i, (r, _) in enumerate(env) if r >= target)
    if hi == 0:
        return env[0][1], "exact" if env[0][0] == target else "lower bound"
    (r0, q0), (r1, q1) = env[hi - 1], env[hi]
    if r1 == target or r1 == r0:
        return q1, "interpolated"
    t = (target - r0) / (r1 - r0)
    return math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0))), "interpolated"


def _ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def compare(records: list[dict], ours: str, theirs: str) -> dict:
    """The ours/theirs comparison record (``ours``, ``theirs``: run labels): build, size and
    QPS-at-recall ratios."""
    builds = {label(r): r for r in records if r.get("type") == "build"}
    b_ours, b_theirs = builds.get(ours, {}), builds.get(theirs, {})
    cv = curves(records)
    qps = []
    no_filter_first = lambda kv: (kv[0][1] is not None, -(kv[0][1] or 0), kv[0][2])  # noqa: E731
    for (ext, flt, clients), pts in sorted(cv.items(), key=no_filter_first):
        if ext != ours or (theirs, flt, clients) not in cv:
            continue
        other = cv[(theirs, flt, clients)]
        for target in RECALL_TARGETS:
            q1, how1 = qps_at_recall([(r, q) for _, r, q in pts], target)
            q2, how2 = qps_at_recall([(r, q) for _, r, q in other], target)
            qps.append({"filter": None if flt is None else float(flt),
                        "filter_shape": getattr(flt, "shape", None), "clients": clients, "recall": target, "ours_qps": q1, "theirs_qps": q2,
                        "ours_how": how1, "theirs_how": how2, "ratio": _ratio(q1, q2)})
    return {
        "type": "compare",
        "ours": ours,
        "theirs": theirs,
        "build_time_ratio": _ratio(b_ours.get("build_s"), b_theirs.get("build_s")),
        "index_size_ratio": _ratio(b_ours.get("index_bytes"), b_theirs.get("index_bytes")),
        "ours_with": b_ours.get("with") or {},
        "load_time_ratio": _ratio(b_ours.get("load_s"), b_theirs.get("load_s")),
        "qps_at_recall": qps,
    }


def format_compare(rec: dict) -> str:
    """Human-readable lines for a compare record."""
    def f(x, spec=".2f", suffix=""):
        return "n/a" if x is None else format(x, spec) + suffix

    head = (f"{rec['ours']} / {rec['theirs']}:  build time {f(rec['build_time_ratio'], suffix='x')}  "
            f"index size {f(rec['index_size_ratio'], suffix='x')}")
    if not (rec.get("recorded") and rec["load_time_ratio"] is None):
        head += f"  load time {f(rec['load_time_ratio'], suffix='x')}"
    lines = [head]
    if rec.get("recorded"):
        lines.append(f"  (theirs: recorded figures from {rec.get('reference_file')}, not measured in this run)")
    for q in rec["qps_at_recall"]:
        shape = q.get("filter_shape")
        flt = "no filter" if q["filter"] is None else f"filter {q['filter']:g}" + (f" {shape}" if shape not in (None, "eq") else "")
        head = f"  QPS at recall {q['recall']:.2f}, {flt}, {q['clients']} client(s): "
        if q["ours_how"] == q["theirs_how"] == "not reached":
            lines.append(head + "not reached by either")
            continue
        note = "" if q["ours_how"] == q["theirs_how"] == "interpolated" else f"  ({q['ours_how']} / {q['theirs_how']})"
        lines.append(head + f"{f(q['ours_qps'], '.0f')} / {f(q['theirs_qps'], '.0f')} = {f(q['ratio'], suffix='x')}{note}")
    if not rec["qps_at_recall"]:
        lines.append("  QPS at recall: no curve (filter, clients) measured on both sides")
    return "\n".join(lines)


#: Line colours and markers of recorded reference curves (--reference), one per file.
REFERENCE_STYLES = (("0.45", "x"), ("0.25", "+"), ("0.65", "*"))


def plot(records: list[dict], path: Path, title: str, k: int, references: list[dict] = ()) -> None:
    """Recall@k (x) against QPS (y, log) per run label/filter/clients, like ann-benchmarks.

    One panel for unfiltered runs and, when there are filtered runs, a second one for them.
    Points of the first client count are labelled with their ef_search. ``references`` are
    ``reference`` records (--reference) whose figures were used: their curve is drawn as a dashed
    grey line with markers labelled by ef_search, and their filtered points (those with a QPS, at a
    selectivity this run measured) go into the filtered panel, labelled by ef_search or scan mode.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv = curves(records)
    filtered = any(flt is not None for (_, flt, _) in cv)
    fig, axes = plt.subplots(1, 2 if filtered else 1, figsize=(14 if filtered else 8, 6), squeeze=False)
    groups = sorted({(ext, flt) for ext, flt, _ in cv}, key=lambda g: (g[0], -1 if g[1] is None else -g[1]))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    clients = sorted({c for _, _, c in cv})
    styles = {c: s for c, s in zip(clients, ["-", "--", ":", "-."] * 4)}
    markers = {c: s for c, s in zip(clients, ["o", "s", "^", "D"] * 4)}
    for (ext, flt, c), pts in sorted(cv.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        ax = axes[0][1 if (filtered and flt is not None) else 0]
        efs, recalls, qps = zip(*pts)
        legend = f"{ext}" + ("" if flt is None else f" filter {filter_text(flt)}") + f", {c} client{'s' if c > 1 else ''}"
        ax.plot(recalls, qps, linestyle=styles[c], marker=markers[c], color=colours[(ext, flt)], label=legend,
                markersize=4)
        if c == clients[0]:
            for ef, r, q in pts:
                ax.annotate(str(ef), (r, q), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=colours[(ext, flt)])
    run_filters = sorted({float(flt) for _, flt, _ in cv if flt is not None and getattr(flt, "shape", "eq") == "eq"})
    for i, ref in enumerate(r for r in references if r.get("figures")):
        colour, marker = REFERENCE_STYLES[i % len(REFERENCE_STYLES)]
        fig_ = ref["figures"]
        pts = sorted((p["ef_search"], p["recall"], p["qps"]) for p in fig_.get("curve", []))
        if pts:
            efs, recalls, qps = zip(*pts)
            axes[0][0].plot(recalls, qps, linestyle="--", linewidth=1.5, marker=marker, markersize=7, color=colour,
                            label=ref["ext"] + ", 1 client", zorder=1)
            for ef, r, q in pts:
                # Below left of the point: off the line (which falls to the right) and off ours' labels.
                axes[0][0].annotate(str(ef), (r, q), textcoords="offset points", xytext=(-4, -10), fontsize=7,
                                    color=colour, ha="right")
        if not filtered:
            continue
        for flt in run_filters:
            fpts = [p for p in fig_.get("filtered", []) or []
                    if abs(p["filter"] - flt) <= 1e-9 * flt and p.get("recall") is not None and p.get("qps")]
            if not fpts:
                continue
            axes[0][1].plot([p["recall"] for p in fpts], [p["qps"] for p in fpts], linestyle="none", marker=marker,
                            markersize=8, color=colour, label=f"{ref['ext']} filter {flt * 100:g}%, 1 client")
            for j, p in enumerate(fpts):  # labels alternately above and below: the points may sit close
                tag = f"ef {p['ef_search']}" if p.get("ef_search") is not None else ""
                tag = ", ".join(t for t in (p.get("scan") if p.get("scan") != "plain index scan" else "", tag) if t)
                axes[0][1].annotate(tag or "?", (p["recall"], p["qps"]), textcoords="offset points",
                                    xytext=(-4, 5 if j % 2 == 0 else -11), fontsize=7, color=colour, ha="right")
    from matplotlib.ticker import LogFormatter

    for i, ax in enumerate(axes[0]):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.set_xlabel(f"recall@{k}")
        ax.set_ylabel("queries per second (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("filtered" if i == 1 else "no filter", fontsize=10)
        lo, _ = ax.get_xlim()
        ax.set_xlim(max(0.0, min(lo, 0.8)), 1.005)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
