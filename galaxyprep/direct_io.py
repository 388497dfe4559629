"""Image rows written straight into their HDF5 chunks, with O_DIRECT where the file system allows.

A buffered write copies every image into the page cache, and touching fresh
page-cache memory is costly, most of all in a VM: 5 to 70 us of CPU per 96 px
image on the bench machine, depending on whether the kernel has recently freed
pages to reuse, against 0.4 us with O_DIRECT, where the disk reads our buffer
itself (bench/RESULTS.md). h5py's wheels have no O_DIRECT driver, so the file
writer allocates every chunk of ``images`` when it creates the dataset, asks
HDF5 where each one lies, and writes their bytes here. HDF5 still owns the
layout and all metadata; a file written this way is an ordinary HDF5 file.

O_DIRECT needs the file offset, the length and the memory address on
4096-byte boundaries: the aligned middle of each chunk's range goes direct
(copied through a page-aligned bounce buffer when the source is not aligned)
and the ragged ends through an ordinary descriptor. Where O_DIRECT is refused
(tmpfs, some network file systems, macOS) everything takes the ordinary one.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import h5py
import numpy as np

ALIGN = 4096
_UNDEFINED = 2**64 - 1  # HADDR_UNDEF: a chunk with no file space


def chunk_offsets(dataset: h5py.Dataset) -> np.ndarray | None:
    """File offset of each chunk along axis 0, or None unless every chunk is allocated and unfiltered.

    Needs H5Dchunk_iter (h5py >= 3.8 on HDF5 >= 1.12.3): asking chunk by
    chunk is quadratic (0.26 s for 1,467 chunks, against 3 ms).
    """
    if dataset.chunks is None or dataset.compression is not None or not hasattr(dataset.id, "chunk_iter"):
        return None
    rows = dataset.chunks[0]
    n_chunks = -(-dataset.shape[0] // rows)
    offsets = np.full(n_chunks, _UNDEFINED, dtype=np.uint64)
    full = rows * int(np.prod(dataset.chunks[1:])) * dataset.dtype.itemsize

    def visit(info) -> None:
        if info.filter_mask == 0 and info.size == full and info.byte_offset != _UNDEFINED:
            offsets[info.chunk_offset[0] // rows] = info.byte_offset

    dataset.id.chunk_iter(visit)
    if (offsets == _UNDEFINED).any():
        return None
    return offsets.astype(np.int64)


class RawRowWriter:
    """Writes whole image rows at their byte offsets inside pre-allocated chunks."""

    def __init__(self, path: str | Path, offsets: np.ndarray, chunk_rows: int, row_bytes: int,
                 direct: bool = True):
        self.offsets = offsets
        self.chunk_rows = chunk_rows
        self.row_bytes = row_bytes
        self.direct_bytes = 0    # what went through O_DIRECT, for tests and the bench
        self.buffered_bytes = 0
        self._fd = os.open(path, os.O_WRONLY)
        self._dfd = None
        flag = getattr(os, "O_DIRECT", 0)
        if direct and flag:
            try:
                self._dfd = os.open(path, os.O_WRONLY | flag)
            except OSError:  # EINVAL: this file system does not do direct I/O
                self._dfd = None
        self._bounce: mmap.mmap | None = None

    @property
    def direct(self) -> bool:
        return self._dfd is not None

    def write_rows(self, lo: int, images: np.ndarray) -> None:
        """Write images (k, ...) uint8 as rows lo .. lo + k, chunk by chunk."""
        flat = np.ascontiguousarray(images).reshape(-1).view(np.uint8)
        if flat.size != images.shape[0] * self.row_bytes:
            raise ValueError(f"{images.shape} rows are not {self.row_bytes} bytes each")
        r, hi, pos, c = lo, lo + images.shape[0], 0, self.chunk_rows
        while r < hi:
            k = r // c
            end = min(hi, (k + 1) * c)
            n = (end - r) * self.row_bytes
            self._write(int(self.offsets[k]) + (r - k * c) * self.row_bytes, flat[pos: pos + n])
            pos += n
            r = end

    def _write(self, off: int, data: np.ndarray) -> None:
        a = -(-off // ALIGN) * ALIGN
        b = (off + data.size) // ALIGN * ALIGN
        if self._dfd is None or b <= a:
            self._pwrite(self._fd, data, off)
            self.buffered_bytes += data.size
            return
        head, mid, tail = data[: a - off], data[a - off: b - off], data[b - off:]
        if mid.__array_interface__["data"][0] % ALIGN:
            mid = self._bounced(mid)
        self._pwrite(self._fd, head, off)
        try:
            self._pwrite(self._dfd, mid, a)
            self.direct_bytes += mid.size
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # opened, yet refused (a larger logical block size, a stacked file system): buffered from now on
            os.close(self._dfd)
            self._dfd = None
            self._pwrite(self._fd, mid, a)
            self.buffered_bytes += mid.size
        self._pwrite(self._fd, tail, b)
        self.buffered_bytes += head.size + tail.size

    def _bounced(self, data: np.ndarray) -> np.ndarray:
        if self._bounce is None or len(self._bounce) < data.size:
            if self._bounce is not None:
                self._bounce.close()
            self._bounce = mmap.mmap(-1, -(-data.size // ALIGN) * ALIGN)  # page-aligned
        out = np.frombuffer(self._bounce, np.uint8, count=data.size)
        out[:] = data
        return out

    def _pwrite(self, fd: int, data: np.ndarray, off: int) -> None:
        done = 0
        while done < data.size:
            n = os.pwrite(fd, data[done:], off + done)
            if n <= 0:
                raise OSError(f"short write at byte {off + done}")
            if fd == self._dfd and n % ALIGN and done + n < data.size:
                fd = self._fd  # the rest is no longer aligned: finish it buffered
            done += n

    def close(self) -> None:
        for fd in (self._fd, self._dfd):
            if fd is not None:
                os.close(fd)
        self._fd = self._dfd = None
        if self._bounce is not None:
            try:
                self._bounce.close()
            except BufferError:
                pass
            self._bounce = None
