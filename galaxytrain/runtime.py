"""Processes and forks: the one place that knows which process it is running in.

Keras may fork loader workers (``use_multiprocessing=True``) at any epoch.
Two things break across a fork, and both are handled here:

- HDF5 handles: a handle inherited from the parent must never be used (or
  closed: that would drop the parent's file lock). `PerProcess` opens a
  resource lazily in each process and keeps an inherited one alive unused.
- numba's parallel kernels: GNU OpenMP, numba's threading layer here, aborts
  a forked child that enters a parallel region after its parent did.
  `parallel_kernels_allowed` says whether this process may run them; a
  forked worker uses the serial twins, its parallelism being the processes.
"""

from __future__ import annotations

import os
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_kernels_allowed() -> bool:
    """False in a process forked from one that imported this module (a loader worker)."""
    return not _forked


class PerProcess(Generic[T]):
    """A resource opened at most once per process, on first use; dropped when pickled.

    `open` makes it; `close` is called on it only in the process that opened
    it. A value given at construction is borrowed: used in the constructing
    process, never closed here (its owner closes it).
    """

    def __init__(self, open: Callable[[], T], close: Callable[[T], None], value: T | None = None):
        self._open, self._close = open, close
        self._value, self._pid = value, (os.getpid() if value is not None else None)
        self._owned = value is None
        self._inherited: list[T] = []

    def get(self) -> T:
        pid = os.getpid()
        if self._pid != pid:
            if self._value is not None:
                self._inherited.append(self._value)  # the parent's: keep it alive, never touch it
            self._value, self._pid, self._owned = self._open(), pid, True
        return self._value

    def close(self) -> None:
        """Close this process's resource (it reopens on the next `get`)."""
        if self._value is not None and self._pid == os.getpid():
            if self._owned:
                self._close(self._value)
        elif self._value is not None:
            self._inherited.append(self._value)
        self._value, self._pid, self._owned = None, None, True

    def __getstate__(self) -> dict:
        # A spawned worker opens its own; handles do not pickle.
        return {**self.__dict__, "_value": None, "_pid": None, "_inherited": []}
