"""SIGTERM ends a command as Ctrl-C does: the same cleanup, the same state kept for a resume.

Python's default for SIGTERM ends the process without unwinding, so a
command stopped by `kill`, a scheduler or a closing notebook server left its
temporary files (predict's `.galaxytrain-*` folder) and never said why it
stopped. Under `sigterm_interrupts` SIGTERM raises `Terminated`, a
KeyboardInterrupt, in the main thread: every `finally` and context manager
runs, exactly as for Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _default_in_child() -> None:
    """A forked worker (a loader's, a decoder's) dies of SIGTERM as it always did.

    Keras ends its loader pool with SIGTERM: a child that kept our handler
    raised Terminated inside multiprocessing's finalizers and printed a
    traceback for every worker.
    """
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_in_child)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Terminated for the block (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_unmasked() -> Iterator[None]:
    """A SystemError that stands for Ctrl-C or SIGTERM (`interrupt_behind`) leaves the block as that interrupt."""
    try:
        yield
    except SystemError as exc:
        interrupt = interrupt_behind(exc)
        if interrupt is None:
            raise
        raise interrupt from None


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that a SystemError stands for, if it stands for one.

    A signal that arrives while a C extension calls back into Python (h5py
    iterating a file's attributes) raises inside the callback, and the
    extension reports a SystemError caused by the interrupt: a command must
    end on it as on the interrupt itself, not with a traceback.
    """
    if not isinstance(exc, SystemError):
        return None
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt):
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None
