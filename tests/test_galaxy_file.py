"""GalaxyFileWriter: ragged blocks across chunk boundaries, compression, fewer or more rows than announced."""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np
import pytest

from galaxyprep.galaxy_file import GalaxyFileWriter, read_info
from galaxyprep.label_schema import LabelSchema


def _blocks(rng, sizes, size=8):
    for k in sizes:
        images = rng.integers(0, 256, size=(k, size, size, 3), dtype=np.uint8)
        x = images.reshape(k, -1, 3).astype(np.float64)
        yield images, np.concatenate([x.sum(axis=1), (x * x).sum(axis=1)], axis=1)


@pytest.mark.parametrize("compression, direct_io", [(None, False), ("gzip", False), (None, True)])
@pytest.mark.parametrize("sizes, n_max", [
    ([3, 9, 1, 8, 2], 23),   # exactly as announced; blocks start and end inside chunks of 4
    ([4, 8, 4], 30),         # whole chunks only, and fewer rows than announced: cut at commit
    ([5, 7, 6], 10),         # more rows than announced: the datasets grow
])
def test_blocks_read_back_in_order_whatever_their_alignment(tmp_path, compression, direct_io, sizes, n_max):
    rng = np.random.default_rng(1)
    out = tmp_path / "w.h5"
    written = []
    with GalaxyFileWriter(out, 8, n_max, LabelSchema.kaggle(), chunk_images=4, compression=compression, direct_io=direct_io) as w:
        for images, sums in _blocks(rng, sizes):
            lo = w.n
            ids = np.arange(lo, lo + len(images), dtype=np.int64) + 1000
            w.append(images, ids, np.full((len(images), 37), lo, np.float32), sums)
            written.append(images)
        w.commit({"crop": 8, "size": 8})
    expected = np.concatenate(written)
    n = len(expected)
    with h5py.File(out) as f:
        assert f["images"].shape == (n, 8, 8, 3) and f["ids"].shape == (n,) and f["labels"].shape == (n, 37)
        assert np.array_equal(f["images"][:], expected)
        assert f["ids"][:].tolist() == list(range(1000, 1000 + n))
        assert f["images"].compression == compression
    pixels = expected.reshape(-1, 3).astype(np.float64)
    info = read_info(out)
    np.testing.assert_allclose(info.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(info.std, pixels.std(axis=0), rtol=1e-12)


@pytest.mark.parametrize("direct_io", [False, True])
def test_resumed_writer_rewrites_the_rows_after_its_checkpoint(tmp_path, direct_io):
    rng = np.random.default_rng(2)
    out = tmp_path / "r.h5"
    blocks = list(_blocks(rng, [6, 5, 7]))
    ids = [np.arange(0, 6), np.arange(6, 11), np.arange(11, 18)]
    w = GalaxyFileWriter(out, 8, 18, None, chunk_images=4, build_key="k", direct_io=direct_io)
    w.append(blocks[0][0], ids[0], None, blocks[0][1])
    w.checkpoint({"ids_done": 6})
    w.append(rng.integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8), ids[1], None, blocks[1][1])  # lost: no checkpoint
    w.abort(keep=True)
    assert not out.exists()
    with GalaxyFileWriter(out, 8, 18, None, chunk_images=4, build_key="k", resume=True, direct_io=direct_io) as w:
        assert w.n == 6 and w.resume_state == {"ids_done": 6}
        for (images, sums), i in zip(blocks[1:], ids[1:]):
            w.append(images, i, None, sums)
        w.commit({})
    with h5py.File(out) as f:
        assert np.array_equal(f["images"][:], np.concatenate([b[0] for b in blocks]))
        assert f["ids"][:].tolist() == list(range(18))


def _o_direct_works(folder) -> bool:
    probe = folder / "probe"
    probe.write_bytes(b"")
    try:
        os.close(os.open(probe, os.O_WRONLY | getattr(os, "O_DIRECT", 0)))
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.mark.parametrize("size", [64, 69])  # 12,288 bytes a row (page multiple) and 14,283 (odd): bounce buffer
def test_direct_io_writes_page_aligned_middles_past_the_page_cache(tmp_path, size):
    rng = np.random.default_rng(3)
    out = tmp_path / "d.h5"
    sizes = [8, 13, 3, 16, 9]  # chunks of 8 rows: blocks start and end inside chunks
    n = sum(sizes)
    pool = rng.integers(0, 256, size=(n + 1, size, size, 3), dtype=np.uint8)
    source = pool[1:]  # rows one image past the allocation's start: unaligned for 69 px
    with GalaxyFileWriter(out, size, n, None, chunk_images=8, direct_io=True) as w:
        lo = 0
        for k in sizes:
            w.append(source[lo: lo + k], np.arange(lo, lo + k), None, np.zeros((k, 6)))
            lo += k
        raw = w._raw
        assert raw is not None and raw.direct_bytes + raw.buffered_bytes == source.nbytes
        if _o_direct_works(tmp_path):
            assert w.direct_io and raw.direct_bytes > source.nbytes // 2
        w.commit({})
    with h5py.File(out) as f:
        assert np.array_equal(f["images"][:], source)
        assert f["images"].chunks == (8, size, size, 3) and f["images"].compression is None


def test_direct_io_refused_at_write_time_falls_back_to_buffered(tmp_path, monkeypatch):
    import errno

    import galaxyprep.direct_io as dio

    real = os.pwrite
    refused = []

    def pwrite(fd, data, offset):
        if fd == getattr(writer._raw, "_dfd", None):
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(dio.os, "pwrite", pwrite)
    images = np.random.default_rng(4).integers(0, 256, size=(20, 64, 64, 3), dtype=np.uint8)
    out = tmp_path / "f.h5"
    with GalaxyFileWriter(out, 64, 20, None, chunk_images=8, direct_io=True) as writer:
        if writer._raw._dfd is None:  # tmp refused O_DIRECT at open already: stand in a plain descriptor
            writer._raw._dfd = os.open(out.with_name("f.h5.partial"), os.O_WRONLY)
        writer.append(images, np.arange(20), None, np.zeros((20, 6)))
        assert refused and not writer.direct_io and writer._raw.direct_bytes == 0
        writer.commit({})
    with h5py.File(out) as f:
        assert np.array_equal(f["images"][:], images)


def test_writers_in_two_threads_each_write_their_own_file_intact(tmp_path):
    """A --scheduler local build writes its shards from threads; h5py < 3.16 let write_direct_chunk race."""
    rng = np.random.default_rng(4)
    blocks = list(_blocks(rng, [64] * 8, size=32))
    failures: list[str] = []

    def write(k: int) -> None:
        try:
            for attempt in range(4):
                with GalaxyFileWriter(tmp_path / f"t{k}_{attempt}.h5", 32, 512, None, chunk_images=8) as w:
                    for images, sums in blocks:
                        w.append(images, np.arange(w.n, w.n + len(images)), None, sums)
                    w.commit({"crop": 32, "size": 32})
        except Exception as exc:  # an HDF5 error in either thread fails the test
            failures.append(f"thread {k}: {exc}")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    expected = np.concatenate([images for images, _ in blocks])
    for path in sorted(tmp_path.glob("t*.h5")):
        with h5py.File(path) as f:
            assert np.array_equal(f["images"][:], expected), path.name
