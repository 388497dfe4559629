"""galaxytrain.runtime: which kernels a process may run, and resources opened once per process."""

from __future__ import annotations

import multiprocessing
import os
import pickle

from galaxytrain.runtime import PerProcess, parallel_kernels_allowed


def _child_report(_):
    return parallel_kernels_allowed()


def test_forked_children_get_serial_kernels_and_the_parent_keeps_parallel():
    assert parallel_kernels_allowed()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_child_report, [0]) == [False]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_child_report, [0]) == [True]  # a fresh interpreter inherits no OpenMP pool
    assert parallel_kernels_allowed()


class _Handle:
    opened: list = []

    def __init__(self):
        self.pid, self.closed = os.getpid(), False
        _Handle.opened.append(self)

    def close(self):
        self.closed = True


def test_per_process_opens_once_per_process_and_never_closes_what_it_borrowed(monkeypatch):
    _Handle.opened = []
    lazy = PerProcess(_Handle, _Handle.close)
    first = lazy.get()
    assert lazy.get() is first and len(_Handle.opened) == 1
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)  # as if in a forked child
    second = lazy.get()
    assert second is not first and not first.closed  # the parent's handle is kept, not used or closed
    lazy.close()
    assert second.closed and not first.closed
    monkeypatch.undo()

    owner = _Handle()
    borrowed = PerProcess(_Handle, _Handle.close, owner)
    assert borrowed.get() is owner
    borrowed.close()
    assert not owner.closed  # its owner closes it
    clone = pickle.loads(pickle.dumps(PerProcess(_Handle, _Handle.close, owner)))
    assert clone._value is None and isinstance(clone.get(), _Handle)
