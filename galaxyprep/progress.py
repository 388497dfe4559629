"""A one-line progress meter with a rate, for terminals and for logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws one line on a terminal; prints a line every few seconds otherwise."""

    def __init__(self, total: int, label: str, unit: str = "images", stream: TextIO | None = None,
                 log_every: float = 5.0):
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.start = time.perf_counter()
        self._last = 0.0
        self.done = 0
        self._first: int | None = None  # items already done when counting began (a resumed build)

    def update(self, done: int) -> None:
        self.done = done
        if self._first is None:
            self._first = done
        now = time.perf_counter()
        if done < self.total and now - self._last < (0.2 if self.tty else self.log_every):
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = (done - self._first) / elapsed
        eta = (self.total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / max(self.total, 1)
        line = (f"{self.label}: {done:,}/{self.total:,} {self.unit} ({pct:5.1f}%)  "
                f"{rate:,.0f} {self.unit}/s  {elapsed:5.1f} s, ETA {eta:4.0f} s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
