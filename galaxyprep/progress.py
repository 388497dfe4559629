"""Progress of long work: a live bar on a terminal (rich), a line every few seconds in a log.

rich (installed with typer) draws the bar with the rate and the time left;
a log file gets plain lines instead of a bar's redraws. Updates are cheap
(a counter and a clock read): a build calls it once per batch.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(done)` as work advances, `close()` at the end (also after an error)."""

    def __init__(self, total: int, label: str, unit: str = "images", stream: TextIO | None = None,
                 log_every: float = 5.0):
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.start = time.perf_counter()
        self.done = 0
        self._first: int | None = None  # items already done when counting began (a resumed build)
        self._last = 0.0
        self._bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(file=self.stream), transient=False, refresh_per_second=5)
            self._task = self._bar.add_task(label, total=self.total, rate="")
            self._bar.start()

    @property
    def rate(self) -> float:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return (self.done - (self._first or 0)) / elapsed

    def update(self, done: int) -> None:
        self.done = done
        if self._first is None:
            self._first = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{self.rate:,.0f} {self.unit}/s")
            return
        now = time.perf_counter()
        if done < self.total and now - self._last < self.log_every:
            return
        self._last = now
        elapsed = now - self.start
        eta = (self.total - done) / self.rate if self.rate > 0 else 0.0
        pct = 100.0 * done / max(self.total, 1)
        self.stream.write(f"{self.label}: {done:,}/{self.total:,} {self.unit} ({pct:5.1f}%)  "
                          f"{self.rate:,.0f} {self.unit}/s  {elapsed:5.1f} s, ETA {eta:4.0f} s\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
