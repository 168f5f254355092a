"""A small terminal progress bar (stderr), with no third-party dependency.

On a terminal the bar redraws in place; when stderr is not a terminal (logs, CI, pytest) it prints
a plain line at most every few seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Progress of one step: ``label [#####-----]  52%  5200/10000 rows  3.1s  <extra>``.

    Args:
        label: what is being done.
        total: amount of work (rows, tuples, queries); 0 or None draws no bar, only counts.
        unit: word printed after the counts.
        stream: where to draw (stderr by default).
    """

    WIDTH = 28

    def __init__(self, label: str, total: int | None = None, unit: str = "", stream=None):
        self.label = label
        self.total = total or 0
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.done = 0
        self.extra = ""
        self._last_draw = 0.0
        self._last_len = 0
        self._closed = False

    def update(self, done: int | None = None, *, total: int | None = None, extra: str | None = None) -> None:
        """Set the amount done (absolute), optionally a new total and a trailing note, and redraw."""
        if done is not None:
            self.done = done
        if total:
            self.total = total
        if extra is not None:
            self.extra = extra
        now = time.perf_counter()
        if now - self._last_draw >= (0.1 if self.tty else 5.0):
            self._draw(now)

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        if self.total:
            frac = max(0.0, min(1.0, self.done / self.total))
            fill = int(round(frac * self.WIDTH))
            bar = f"[{'#' * fill}{'-' * (self.WIDTH - fill)}] {frac * 100:5.1f}%  {self.done}/{self.total}"
        else:
            bar = f"{self.done}"
        extra = f"  {self.extra}" if self.extra else ""
        return f"{self.label} {bar} {self.unit}  {elapsed:.1f}s{extra}"

    def _draw(self, now: float, final: bool = False) -> None:
        line = self._line(now)
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_draw = now

    def close(self, extra: str | None = None) -> float:
        """Draw the final state and return the elapsed seconds."""
        if extra is not None:
            self.extra = extra
        now = time.perf_counter()
        if not self._closed:
            self._draw(now, final=True)
            self._closed = True
        return now - self.start
