"""Where a build decodes: forked worker processes writing into shared memory, or threads.

Without the window decoder, decoding plus resampling is a little Python
glue around two GIL-free C and numba calls per image, and the glue
serialises on the GIL: two decode threads ran 1.82x one thread where bare
decoding runs 1.98x (bench/RESULTS.md). With it, a block of images is read
in Python and then decoded and resampled in one GIL-free C call
(`decode.decode_resample_block`). Forked worker processes have a GIL each.
They decode and resample straight into batch slots of an anonymous shared
mapping that the parent writes to HDF5, so only a few GalaxyIDs and error
messages cross a pipe. Fork, not spawn: a child starts in milliseconds and
inherits the image index and the compiled kernel. The children run only
serial kernels, so numba's OpenMP layer (which aborts a child forked after
a parallel region) is safe. Threads remain where fork is not the
platform's way (macOS, Windows).
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from .decode import DecodeError, DecodePlan, decode_into, decode_resample_block, fused_available
from .kernels import resample_area_serial
from .sources import ImageSource

#: Images decoded into a small buffer, then resampled at once while still in the core's cache (~1 MB).
BLOCK_IMAGES = 8
#: Images per process task: a whole default batch (~70 ms of work). Tasks of 64 cost the parent's
#: executor threads ~0.4 ms each, 6 us per image; with AHEAD batches queued no worker waits for one.
PROCESS_TASK_IMAGES = 256


def processes_available() -> bool:
    """Fork-based workers: on Linux, where fork is the default start method."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class DecodePool:
    """Decode and resample batches of GalaxyIDs into `n_slots` reusable batch slots.

    ``submit(slot, ids)`` returns futures whose results are lists of
    (row in the batch, problem); the decoded batch is then in
    ``images[slot, :len(ids)]`` with its per-image channel sums in
    ``sums[slot, :len(ids)]``. The caller must not reuse a slot before its
    futures are done.
    """

    def __init__(self, source: ImageSource, plan: DecodePlan, batch_size: int, n_slots: int,
                 workers: int, processes: bool | None = None):
        self.plan = plan
        self.processes = processes_available() if processes is None else processes
        size = plan.size
        shape = (n_slots, batch_size, size, size * 3)
        if self.processes:
            # MAP_SHARED anonymous memory: the forked children write, the parent reads.
            self._maps = [mmap.mmap(-1, int(np.prod(shape))), mmap.mmap(-1, n_slots * batch_size * 6 * 8)]
            self.images = np.frombuffer(self._maps[0], np.uint8).reshape(shape)
            self.sums = np.frombuffer(self._maps[1], np.float64).reshape(n_slots, batch_size, 6)
            if not fused_available(plan):  # compile or load once here, not in every child
                _warm_kernel(plan)  # (0.3 s of a fresh process: not when the block call resamples)
            self._task_images = PROCESS_TASK_IMAGES
            self._pool: Executor = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"),
                initializer=_init_process, initargs=(source, plan, self.images, self.sums, os.getpid()))
        else:
            self._maps = []
            self.images = np.empty(shape, np.uint8)
            self.sums = np.empty((n_slots, batch_size, 6), np.float64)
            self._task_images = BLOCK_IMAGES
            self._local = threading.local()
            self._source = source
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")

    def submit(self, slot: int, ids: np.ndarray) -> list[Future]:
        futures = []
        for lo in range(0, len(ids), self._task_images):
            part = np.array(ids[lo: lo + self._task_images], dtype=np.int64)
            if self.processes:
                futures.append(self._pool.submit(_process_task, slot, lo, part))
            else:
                futures.append(self._pool.submit(self._thread_task, slot, lo, part))
        return futures

    def _thread_task(self, slot: int, lo: int, ids: np.ndarray) -> list[tuple[int, str]]:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = block_buffer(self.plan)
        hi = lo + len(ids)
        return decode_resample(self._source, ids, self.plan, buf, self.images[slot, lo:hi],
                               self.sums[slot, lo:hi], lo)

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        # The arrays are views of the mappings; drop them before the mappings go.
        self.images = self.sums = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # a caller still holds a view; the mapping goes with it
                pass

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)


def decode_resample(source: ImageSource, ids: np.ndarray, plan: DecodePlan, buf: np.ndarray,
                    out: np.ndarray, sums: np.ndarray, offset: int = 0) -> list[tuple[int, str]]:
    """Decode `ids` block by block into `buf` and resample into `out`/`sums`; return the failures.

    A failure is (offset + its index in `ids`, problem), in index order; its
    rows of `out` and `sums` are left as they were. With the window decoder
    a block is read here and decoded and resampled in one C call
    (`decode_resample_block`); images it declines take the per-image path.
    """
    if fused_available(plan):
        return _decode_resample_fused(source, ids, plan, buf, out, sums, offset)
    errors: list[tuple[int, str]] = []
    rp = plan.resample
    block = buf.shape[0]
    shape = plan.buffer_shape
    for b0 in range(0, len(ids), block):
        good = []
        for j in range(b0, min(b0 + block, len(ids))):
            try:
                decode_into(source.read(int(ids[j])), plan, buf[len(good)].reshape(shape))
                good.append(j)
            except DecodeError as exc:
                errors.append((offset + j, str(exc)))
            except OSError as exc:
                errors.append((offset + j, _read_problem(exc)))
        if not good:
            continue
        n = len(good)
        if good[-1] - good[0] == n - 1:  # the usual case: a contiguous run of rows
            rows = slice(good[0], good[0] + n)
            resample_area_serial(buf[:n], rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs, out[rows], sums[rows])
        else:
            tmp_out = np.empty((n,) + out.shape[1:], np.uint8)
            tmp_sums = np.empty((n, 6))
            resample_area_serial(buf[:n], rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs, tmp_out, tmp_sums)
            out[good], sums[good] = tmp_out, tmp_sums
    return errors


def _decode_resample_fused(source: ImageSource, ids: np.ndarray, plan: DecodePlan, buf: np.ndarray,
                           out: np.ndarray, sums: np.ndarray, offset: int) -> list[tuple[int, str]]:
    """`decode_resample` with one C call per block: ~3 us of Python per image instead of ~12 (bench/RESULTS.md)."""
    errors: list[tuple[int, str]] = []
    block = buf.shape[0]
    read = source.read
    for b0 in range(0, len(ids), block):
        b1 = min(b0 + block, len(ids))
        datas: list = []
        for j in range(b0, b1):
            try:
                datas.append(read(int(ids[j])))
            except OSError as exc:
                errors.append((offset + j, _read_problem(exc)))
                datas.append(None)
        for k in decode_resample_block(datas, plan, out[b0:b1], sums[b0:b1]):
            j = b0 + k
            try:  # the long way: the same one-line problem as without the C path, or an unusual valid header
                decode_into(datas[k], plan, buf[0].reshape(plan.buffer_shape))
            except DecodeError as exc:
                errors.append((offset + j, str(exc)))
                continue
            rp = plan.resample
            resample_area_serial(buf[:1], rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs, out[j:j + 1],
                                 sums[j:j + 1])
    errors.sort()
    return errors


def _read_problem(exc: OSError) -> str:
    return f"cannot read ({exc.strerror or exc})"


def block_buffer(plan: DecodePlan) -> np.ndarray:
    h, w, _ = plan.buffer_shape
    return np.empty((BLOCK_IMAGES, h, w * 3), np.uint8)


def _warm_kernel(plan: DecodePlan) -> None:
    rp = plan.resample
    h, w, _ = plan.buffer_shape
    buf = np.zeros((1, h, w * 3), np.uint8)
    resample_area_serial(buf, rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs,
                         np.empty((1, plan.size, plan.size * 3), np.uint8), np.empty((1, 6)))


# State of a forked worker process, set once by its initializer.
_worker: dict = {}


def _init_process(source: ImageSource, plan: DecodePlan, images: np.ndarray, sums: np.ndarray,
                  parent: int) -> None:
    _die_with_parent(parent)
    source.forget_handles()  # a zip handle inherited from the parent shares its file position
    _worker.update(source=source, plan=plan, images=images, sums=sums, buf=block_buffer(plan))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Exit when the build process dies (kill -9, the OOM killer) instead of waiting on its queue forever.

    A worker holds the write end of its own task queue, so it never sees
    end-of-file there: without this, each one outlived a killed build.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers are threads there anyway
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _process_task(slot: int, lo: int, ids: np.ndarray) -> list[tuple[int, str]]:
    w = _worker
    hi = lo + len(ids)
    return decode_resample(w["source"], ids, w["plan"], w["buf"], w["images"][slot, lo:hi],
                           w["sums"][slot, lo:hi], lo)
