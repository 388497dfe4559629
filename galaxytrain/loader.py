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

Worker processes use the serial twins of the numba kernels: GNU OpenMP,
numba's threading layer here, aborts a forked child that enters a parallel
region after its parent did.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from galaxyprep.errors import InputError
from galaxyprep.galaxy_file import open_galaxy_file
from galaxyprep.kernels import normalize_batch, normalize_batch_serial

from .augment import RotateRanges, centre_view, dihedral_batch, dihedral_batch_serial, draw_views, rotated_views

AUGMENTATIONS = (None, "dihedral", "rotate")


class GalaxyBatches(keras.utils.PyDataset):
    """`(x, y)` batches of selected rows of a galaxyprep file; x only without labels.

    x is float32 (B, T, T, 3), normalized with the file's mean and std
    (or the raw uint8 pixels with ``normalize=False``); y is float32 (B, 37).
    T is ``out_size`` (default: the stored size S). ``augment``: None (the
    centre T x T of each image), "dihedral" (a random one of the 8 symmetries
    of the square, then the centre) or "rotate" (a random rotation, zoom,
    shift and mirror within `rotate_ranges`, resampled into T x T about the centre).
    Each selected row appears exactly once per epoch; the last batch may be
    short. With ``shuffle=False`` rows come in file order and `ids_in_order`
    gives their GalaxyIDs. ``workers``, ``use_multiprocessing`` and
    ``max_queue_size`` configure Keras' parallel loading.

    Shuffling: the selected rows are cut into blocks of `block_images`
    consecutive rows (default: a quarter batch, at most one HDF5 chunk); each
    epoch permutes the blocks, lays them end to end and cuts batches from
    that sequence, then permutes the rows inside each batch.
    """

    def __init__(self, path: str | Path, rows: np.ndarray | None = None, *, batch_size: int = 64,
                 shuffle: bool = True, augment: str | None = None, seed: int = 0,
                 block_images: int | None = None, labels: bool = True, normalize: bool = True,
                 out_size: int | None = None, rotate_ranges: RotateRanges | None = None,
                 workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if block_images is not None and (not _is_int(block_images) or block_images < 1):
            raise ValueError(f"block_images must be a positive integer, got {block_images!r}")

        self.path = str(path)
        # Metadata only; the handle is closed again before any worker can fork.
        with open_galaxy_file(path) as f:
            images = f["images"]
            n_file = int(images.shape[0])
            self.image_size = int(images.shape[1])
            chunk = int(images.chunks[0]) if images.chunks else 64
            self.has_labels = "labels" in f
            mean = np.asarray(f.attrs["mean"], dtype=np.float64)
            std = np.asarray(f.attrs["std"], dtype=np.float64)
            file_ids = f["ids"][:]
        if labels and not self.has_labels:
            raise InputError(path, "has no labels (a test set?); read it with labels=False")

        self.rows = _check_rows(rows, n_file)
        if len(self.rows) == 0:
            raise ValueError("no rows selected: a GalaxyBatches needs at least one image")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.seed = int(seed)
        # A batch draws on at least four places in the file, so that batches are
        # not the same sets of galaxies every epoch; a block is at most a chunk.
        if block_images is None:
            block_images = max(1, min(chunk, batch_size // 4))
        self.block_images = int(block_images)
        if out_size is None:
            out_size = self.image_size
        if not _is_int(out_size) or not 1 <= out_size <= self.image_size:
            raise ValueError(f"out_size must be an integer in [1, {self.image_size}] (the stored size), "
                             f"got {out_size!r}")
        self.out_size = int(out_size)
        self.rotate_ranges = RotateRanges() if rotate_ranges is None else rotate_ranges
        self.labels = bool(labels)
        self.normalize = bool(normalize)
        self.epoch = 0
        self._ids = np.ascontiguousarray(file_ids[self.rows], dtype=np.int64)
        self._mean = mean.astype(np.float32)
        self._inv_std = (1.0 / std).astype(np.float32)
        n = len(self.rows)
        self._block_starts = np.arange(0, n, self.block_images, dtype=np.int64)
        self._block_lens = np.minimum(self.block_images, n - self._block_starts)
        self._owner_pid = os.getpid()
        self._file = None
        self._file_pid = None
        self._inherited = []
        self._order = None

    # -- Keras protocol -------------------------------------------------------

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        positions, rng = self._batch_plan(index)
        images, labels = self._read(positions)
        serial = not self._in_owner()
        if self.augment == "rotate":
            images = rotated_views(images, self.out_size, *draw_views(rng, len(positions), self.rotate_ranges),
                                   serial=serial)
        else:
            if self.augment == "dihedral":
                codes = rng.integers(0, 8, size=len(positions)).astype(np.int64)
                turned = np.empty_like(images)
                (dihedral_batch_serial if serial else dihedral_batch)(images, codes, turned)
                images = turned
            images = centre_view(images, self.out_size, serial=serial)
        x = self._normalize(images) if self.normalize else images
        if self.labels:
            return x, labels
        return x

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
        positions, _ = self._batch_plan(index)
        return self.rows[positions]

    def batch_ids(self, index: int) -> np.ndarray:
        """GalaxyIDs of batch `index` of the current epoch, in the order the batch holds them."""
        positions, _ = self._batch_plan(index)
        return self._ids[positions]

    def ids_in_order(self) -> np.ndarray:
        """GalaxyIDs of one pass over the current epoch's batches, concatenated.

        With ``shuffle=False`` this is the file order of the selected rows and
        matches ``model.predict(self)`` row for row.
        """
        if not self.shuffle:
            return self._ids.copy()
        return np.concatenate([self.batch_ids(i) for i in range(len(self))])

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next batch)."""
        if self._file is not None:
            if self._file_pid == os.getpid():
                self._file.close()
            else:
                self._inherited.append(self._file)  # see _handle
        self._file = None
        self._file_pid = None

    def __getstate__(self) -> dict:
        # h5py handles cannot be pickled; a spawned worker opens its own.
        state = self.__dict__.copy()
        state.update(_file=None, _file_pid=None, _inherited=[], _order=None)
        return state

    # -- internals --------------------------------------------------------

    def _batch_plan(self, index: int) -> tuple[np.ndarray, np.random.Generator]:
        """Positions (into self.rows) of batch `index`, and the batch's own random generator."""
        if not _is_int(index) or not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        index = int(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, len(self.rows))
        if not self.shuffle:
            return np.arange(lo, hi, dtype=np.int64), rng
        starts, begins, ends = self._epoch_order()
        # Blocks of this epoch's order laid end to end; the batch is [lo, hi) of that sequence.
        pieces = []
        for k in range(int(np.searchsorted(ends, lo, side="right")), len(starts)):
            if begins[k] >= hi:
                break
            a = max(lo, begins[k]) - begins[k]
            b = min(hi, ends[k]) - begins[k]
            pieces.append(np.arange(starts[k] + a, starts[k] + b, dtype=np.int64))
        positions = np.concatenate(pieces)
        return positions[rng.permutation(len(positions))], rng

    def _epoch_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For this epoch's block order: each block's first position in self.rows, and the
        [begin, end) it occupies in the epoch's sequence of positions."""
        cached = self._order
        if cached is None or cached[0] != (self.seed, self.epoch):
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self._block_starts))
            lens = self._block_lens[perm]
            ends = np.cumsum(lens)
            cached = ((self.seed, self.epoch), self._block_starts[perm], ends - lens, ends)
            self._order = cached  # one assignment: safe with worker threads
        return cached[1], cached[2], cached[3]

    def _read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels (and labels) of rows[positions], each run of positions read as one slice."""
        f = self._handle()
        images_ds = f["images"]
        labels_ds = f["labels"] if self.labels else None
        s = self.image_size
        images = np.empty((len(positions), s, s, 3), dtype=np.uint8)
        labels = np.empty((len(positions), 37), dtype=np.float32) if self.labels else None
        for dest, pos in _runs(positions):
            rows = self.rows[pos]
            first, last = int(rows[0]), int(rows[-1])
            # One contiguous slice from the first to the last wanted row; the
            # split's gaps are dropped in memory.
            images[dest] = images_ds[first:last + 1][rows - first]
            if labels_ds is not None:
                labels[dest] = labels_ds[first:last + 1][rows - first]
        return images, labels

    def _handle(self):
        pid = os.getpid()
        if self._file_pid != pid:
            if self._file is not None:
                # A handle inherited through fork belongs to the parent: closing
                # it here would release the parent's file lock, so it is only
                # kept alive, never used.
                self._inherited.append(self._file)
            self._file = open_galaxy_file(self.path)
            self._file_pid = pid
        return self._file

    def _in_owner(self) -> bool:
        # Parallel numba kernels only in the process that built this object:
        # GNU OpenMP aborts a forked child that uses it after its parent did.
        return os.getpid() == self._owner_pid

    def _normalize(self, images: np.ndarray) -> np.ndarray:
        out = np.empty(images.shape, dtype=np.float32)
        kernel = normalize_batch if self._in_owner() else normalize_batch_serial
        kernel(images, self._mean, self._inv_std, out)
        return out


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
