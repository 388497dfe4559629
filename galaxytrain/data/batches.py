"""Batches of a galaxyprep HDF5 file for Keras, read in contiguous blocks.

Random access to single images of a chunked HDF5 file is hundreds of times
slower than a contiguous slice, so shuffling happens at two levels: the order
of blocks of consecutive rows changes every epoch, and the rows inside a
batch are permuted in memory. Every read is one contiguous slice.

Keras (3.15, TensorFlow backend) with ``use_multiprocessing=True`` forks a
fresh worker pool at the start of every epoch, after it has called
`on_epoch_end` of the previous one, and may call ``__getitem__`` in any
process and any order. Therefore everything a batch holds is a pure function
of (seed, epoch, batch index): whichever process computes batch i of epoch e
gets the same rows and the same augmentation. The epoch counter advances in
`on_epoch_end` (never in `on_epoch_begin`, which Keras runs after the workers
have started) or is set with `set_epoch`. Keras also calls `on_epoch_end` once
before the first epoch, so fit's epoch e reads permutation e + 1 unless a
callback's ``on_epoch_begin(e)`` calls ``set_epoch(e)`` (Keras runs callbacks
before it starts the epoch's workers).

What a batch holds is the view (`galaxytrain.data.views`) passed in, of
the rows `EpochOrder` chose, normalized; opening the file in each process
and choosing kernels after a fork is `galaxytrain.runtime`'s business.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import keras
import numpy as np

from galaxyprep import GalaxyFile

from ..runtime import PerProcess
from .views import CentreView, Normalization


class EpochOrder:
    """Which of n selected rows batch `index` of `epoch` holds, and the batch's own random generator.

    The rows are cut into blocks of `block_images` consecutive rows; each
    epoch permutes the blocks, lays them end to end and cuts batches from
    that sequence, then permutes the rows inside each batch. Everything is a
    function of (seed, epoch, index), so any process computes the same batch.
    """

    def __init__(self, n: int, batch_size: int, block_images: int, seed: int, shuffle: bool):
        self.n, self.batch_size, self.seed, self.shuffle = int(n), int(batch_size), int(seed), bool(shuffle)
        self._block_starts = np.arange(0, n, block_images, dtype=np.int64)
        self._block_lens = np.minimum(block_images, n - self._block_starts)
        self._cached = None

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.random.Generator]:
        """Positions (into the selected rows) of batch `index`, in the order the batch holds them."""
        if not _is_int(index) or not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        index = int(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, self.n)
        if not self.shuffle:
            return np.arange(lo, hi, dtype=np.int64), rng
        starts, begins, ends = self._blocks(epoch)
        pieces = []
        for k in range(int(np.searchsorted(ends, lo, side="right")), len(starts)):
            if begins[k] >= hi:
                break
            a = max(lo, begins[k]) - begins[k]
            b = min(hi, ends[k]) - begins[k]
            pieces.append(np.arange(starts[k] + a, starts[k] + b, dtype=np.int64))
        positions = np.concatenate(pieces)
        return positions[rng.permutation(len(positions))], rng

    def _blocks(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For this epoch's block order: each block's first position, and the [begin, end) it occupies."""
        cached = self._cached
        if cached is None or cached[0] != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self._block_starts))
            lens = self._block_lens[perm]
            ends = np.cumsum(lens)
            cached = (epoch, self._block_starts[perm], ends - lens, ends)
            self._cached = cached  # one assignment: safe with worker threads
        return cached[1], cached[2], cached[3]


class GalaxyBatches(keras.utils.PyDataset):
    """`(x, y)` batches of selected rows of a galaxyprep file; x only with ``labels=False``.

    ``data``: a path, or a `GalaxyFile` already open in this process (it is
    borrowed, not closed; worker processes open their own). ``view``: what
    the model sees of each stored image (default: the whole of it). x is
    float32, normalized with ``normalize`` (True: the file's own mean and
    std; a `Normalization`: that one; False: the view's uint8 pixels); y is
    float32 (B, 37). Each selected row appears exactly once per epoch; the
    last batch may be short. With ``shuffle=False`` rows come in file order.
    ``colour``: a `ColourNoise` applied to the normalized views (training
    only). ``block_images``: see `EpochOrder` (default: a quarter batch, at most one
    HDF5 chunk). Other keyword arguments (``workers``,
    ``use_multiprocessing``, ``max_queue_size``) go to Keras' PyDataset.
    """

    def __init__(self, data: str | Path | GalaxyFile, rows: np.ndarray | None = None, *, batch_size: int = 64,
                 shuffle: bool = True, seed: int = 0, view=None, normalize: bool | Normalization = True,
                 labels: bool = True, block_images: int | None = None, colour=None, **loader):
        super().__init__(**loader)
        for name, value, low in (("batch_size", batch_size, 1), ("seed", seed, 0)):
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if block_images is not None and (not _is_int(block_images) or block_images < 1):
            raise ValueError(f"block_images must be a positive integer, got {block_images!r}")
        borrowed = data if isinstance(data, GalaxyFile) else None
        self.path = str(data.path if borrowed is not None else data)
        self._file = PerProcess(partial(GalaxyFile, self.path), GalaxyFile.close, borrowed)
        f = self._file.get()
        self.image_size = f.size
        self.has_labels = f.has_labels
        #: Columns of a label row (the file's label schema's width; 0 without labels).
        self.label_width = f.label_schema.width if f.has_labels else 0
        if labels and not self.has_labels:
            f.labels()  # the reader's one-line error
        self.rows = _check_rows(rows, f.n_images)
        if len(self.rows) == 0:
            raise ValueError("no rows selected: a GalaxyBatches needs at least one image")
        self.view = CentreView(self.image_size) if view is None else view
        if not 1 <= self.view.size <= self.image_size:
            raise ValueError(f"the view is {self.view.size} pixels; it must be in [1, {self.image_size}] "
                             f"(the stored size)")
        self.normalization = (Normalization(*f.normalization) if normalize is True else
                              normalize if isinstance(normalize, Normalization) else None)
        if colour is not None and self.normalization is None:
            raise ValueError("colour noise acts on normalized images: it needs normalize")
        self.colour = colour
        self.labels = bool(labels)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        # A batch draws on at least four places in the file, so that batches are
        # not the same sets of galaxies every epoch; a block is at most a chunk.
        self.block_images = int(block_images or max(1, min(f.chunk_images, batch_size // 4)))
        self.order = EpochOrder(len(self.rows), batch_size, self.block_images, seed, shuffle)
        self.epoch = 0
        self._ids = np.ascontiguousarray(f.ids[self.rows], dtype=np.int64)

    # -- Keras protocol -------------------------------------------------------

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int):
        return self.batch_at(*self.order.batch(self.epoch, index))

    def on_epoch_end(self) -> None:
        """Advance the epoch counter, which reshuffles the next epoch."""
        self.epoch += 1

    # -- public helpers -------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make the next batches those of `epoch` (for resuming, or to pin epoch e to permutation e)."""
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    @property
    def n_images(self) -> int:
        """Number of selected rows (samples per epoch)."""
        return len(self.rows)

    def batch_rows(self, index: int) -> np.ndarray:
        """File rows of batch `index` of the current epoch, in the order the batch holds them."""
        return self.rows[self.order.batch(self.epoch, index)[0]]

    def batch_ids(self, index: int) -> np.ndarray:
        """GalaxyIDs of batch `index` of the current epoch, in the order the batch holds them."""
        return self._ids[self.order.batch(self.epoch, index)[0]]

    def ids_in_order(self) -> np.ndarray:
        """GalaxyIDs of one pass over the current epoch's batches, concatenated.

        With ``shuffle=False`` this is the file order of the selected rows and
        matches ``model.predict(self)`` row for row.
        """
        if not self.shuffle:
            return self._ids.copy()
        return np.concatenate([self.batch_ids(i) for i in range(len(self))])

    def batch_at(self, positions: np.ndarray, rng: np.random.Generator):
        """What a batch of the selected rows at `positions` holds, in that order, views drawn from `rng`.

        ``__getitem__`` is this at `EpochOrder`'s positions; tf.distribute's
        input (`galaxytrain.training.distribute`) cuts its own positions.
        """
        images, labels = self._read(positions)
        x = self.view(images, rng)
        if self.normalization is not None:
            x = self.normalization(x)
        if self.colour is not None:
            x = self.colour(x, rng)
        return (x, labels) if self.labels else x

    def close(self) -> None:
        """Close this process's file handle if this object opened it (it reopens on the next batch)."""
        self._file.close()

    # -- internals --------------------------------------------------------

    def _read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels (and labels) of rows[positions], each run of positions read as one slice."""
        f = self._file.get()
        s = self.image_size
        images = np.empty((len(positions), s, s, 3), dtype=np.uint8)
        labels = np.empty((len(positions), self.label_width), dtype=np.float32) if self.labels else None
        for dest, pos in _runs(positions):
            rows = self.rows[pos]
            first, last = int(rows[0]), int(rows[-1])
            # One contiguous slice from the first to the last wanted row; the
            # split's gaps are dropped in memory.
            images[dest] = f.images(first, last + 1)[rows - first]
            if labels is not None:
                labels[dest] = f.labels(first, last + 1)[rows - first]
        return images, labels


def _runs(positions: np.ndarray):
    """Split positions into runs of consecutive values (within a run, the blocks' rows ascend).

    Yields (destination slice, positions of the run). A shuffled batch is
    permuted, so runs are found on the sorted positions and written back
    through the permutation.
    """
    order = np.argsort(positions, kind="stable")
    sorted_pos = positions[order]
    breaks = np.flatnonzero(np.diff(sorted_pos) != 1) + 1
    bounds = np.concatenate(([0], breaks, [len(sorted_pos)]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield order[a:b], sorted_pos[a:b]


def _check_rows(rows: np.ndarray | None, n_file: int) -> np.ndarray:
    if rows is None:
        return np.arange(n_file, dtype=np.int64)
    rows = np.asarray(rows)
    if rows.ndim != 1 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
        raise ValueError(f"rows must be a 1-D array of integer row indices, got {rows.dtype} of shape {rows.shape}")
    rows = np.sort(rows.astype(np.int64))
    if rows.size and (rows[0] < 0 or rows[-1] >= n_file):
        raise ValueError(f"rows must lie in [0, {n_file}), got {rows[0]}..{rows[-1]}")
    if rows.size > 1 and np.any(rows[1:] == rows[:-1]):
        raise ValueError("rows must not repeat a row")
    return rows


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
