"""The centre-window decoder (C extension): the same pixels as the full-frame decode, and safe on bad input."""

from __future__ import annotations

import resource
import sys
import time

import h5py
import numpy as np
import pytest
import simplejpeg

from conftest import REPO, SHARED_GZ
from galaxyprep import decode
from galaxyprep.builder import BuildConfig, build
from galaxyprep.decode import DecodeError, decode_into, make_plan, window_decoder_available

pytestmark = pytest.mark.skipif(not window_decoder_available(), reason="the window decoder was not built")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[bytes]:
    """Real Kaggle JPEGs where ../shared has them, synthetic galaxies otherwise."""
    real = sorted((SHARED_GZ / "images").glob("*.jpg"))[:120]
    if real:
        return [p.read_bytes() for p in real]
    from galaxyprep.synth import synthesize

    out = synthesize(tmp_path_factory.mktemp("w") / "s", 60, seed=3)
    return [p.read_bytes() for p in sorted(out.train_images.glob("*.jpg"))]


@pytest.mark.parametrize("crop, size, dct_scaling", [(200, 96, True), (207, 69, True), (200, 48, True),
                                                     (300, 200, True), (200, 96, False), (424, 212, True)])
def test_what_the_resample_reads_is_the_full_frame_decodes_pixels_bit_for_bit(jpegs, crop, size, dct_scaling):
    from galaxyprep.kernels import resample_area_serial

    window = make_plan(424, 424, crop, size, dct_scaling, window=True)
    full = make_plan(424, 424, crop, size, dct_scaling)
    top, left, h, w = window.window
    assert (window.scaled_height, window.scale_num) == (full.scaled_height, full.scale_num)
    assert h * w < full.scaled_height * full.scaled_width or crop == 424
    (r0, r1), (c0, c1) = (decode._read_span((full.scaled_height - crop * window.scale) / 2, crop * window.scale,
                                            full.scaled_height, size),) * 2
    outputs = {}
    for plan in (window, full):
        n = len(jpegs)
        buf = np.empty((n,) + plan.buffer_shape, np.uint8)
        for k, data in enumerate(jpegs):
            decode_into(data, plan, buf[k])
        out, sums = np.empty((n, size, size * 3), np.uint8), np.empty((n, 6))
        rp = plan.resample
        resample_area_serial(buf.reshape(n, buf.shape[1], -1), rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs,
                             out, sums)
        outputs[plan is window] = (buf, out, sums)
    (wbuf, wout, wsums), (fbuf, fout, fsums) = outputs[True], outputs[False]
    np.testing.assert_array_equal(wbuf[:, r0 - top:r1 - top, c0 - left:c1 - left], fbuf[:, r0:r1, c0:c1])
    np.testing.assert_array_equal(wout, fout)
    np.testing.assert_array_equal(wsums, fsums)


def test_without_the_margin_the_edge_columns_would_differ_at_full_scale(jpegs, monkeypatch):
    """Why WINDOW_MARGIN exists: fancy chroma upsampling at a window's edge (full scale, 4:2:0)."""
    from galaxyprep import _cropdecode

    worst = 0
    for data in jpegs[:40]:
        full = simplejpeg.decode_jpeg(data, colorspace="RGB")
        out = np.empty((200, 200, 3), np.uint8)
        _cropdecode.decode_window(data, 8, 424, 424, 112, 112, 200, 200, out)
        diff = np.abs(out.astype(int) - full[112:312, 112:312].astype(int))
        assert diff[:, 1:-1].max() == 0  # the interior is exact; only the edge columns may differ
        worst = max(worst, int(diff.max()))
    assert 0 < worst <= 32


def test_builds_with_and_without_the_window_decoder_hold_the_same_data(tmp_path):
    images = SHARED_GZ / "images"
    if not images.is_dir():
        pytest.skip("needs the real images")
    files = {}
    for crop_decode in (True, False):
        out = tmp_path / f"{crop_decode}.h5"
        build(BuildConfig(images=images, out=out, labels=SHARED_GZ / "training_solutions_rev1.csv", crop=207,
                          size=69, limit=500, crop_decode=crop_decode))
        files[crop_decode] = out
    with h5py.File(files[True]) as a, h5py.File(files[False]) as b:
        for name in ("images", "ids", "labels"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        np.testing.assert_array_equal(a.attrs["mean"], b.attrs["mean"])
        np.testing.assert_array_equal(a.attrs["std"], b.attrs["std"])
        assert "window decoder" in a.attrs["decoder"] and "simplejpeg" in b.attrs["decoder"]


def test_without_the_extension_the_build_falls_back_to_simplejpeg(jpegs, tmp_path, monkeypatch):
    folder = tmp_path / "img"
    folder.mkdir()
    for k, data in enumerate(jpegs[:8]):
        (folder / f"{100 + k}.jpg").write_bytes(data)
    monkeypatch.setattr(decode, "_cropdecode", None)
    summary = build(BuildConfig(images=folder, out=tmp_path / "f.h5", size=32))
    assert "simplejpeg" in summary.decoder and summary.n_written == 8


def test_bad_jpegs_raise_one_decode_error_never_crash_hang_or_leak(jpegs):
    """Thousands of mutants straight through the C decoder, under a time limit, with RSS flat."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from fuzz_jpeg import mutate
    finally:
        sys.path.pop(0)
    plan = make_plan(424, 424, 200, 96, window=True)
    out = np.empty(plan.buffer_shape, np.uint8)
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    counts = {"ok": 0, "refused": 0}
    rss = []
    for k in range(3000):
        data = mutate(jpegs[k % len(jpegs)], rng, jpegs)
        try:
            decode_into(data, plan, out)
            counts["ok"] += 1
        except DecodeError:
            counts["refused"] += 1
        if k in (500, 2999):
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert time.perf_counter() - t0 < 120
    assert counts["refused"] > 500 and counts["ok"] > 100
    assert rss[1] - rss[0] < 20_000  # KiB: nothing kept per image


def test_errors_and_bad_arguments_are_exceptions():
    from galaxyprep import _cropdecode

    out = np.empty((10, 10, 3), np.uint8)
    with pytest.raises(ValueError):
        _cropdecode.decode_window(b"not a jpeg at all", 4, 212, 212, 0, 0, 10, 10, out)
    with pytest.raises(ValueError, match="window outside"):
        _cropdecode.decode_window(b"\xff\xd8", 4, 212, 212, 210, 0, 10, 10, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        _cropdecode.decode_window(b"\xff\xd8", 4, 212, 212, 0, 0, 20, 20, out)


class _Mutants:
    """An ImageSource stand-in: GalaxyID k -> datas[k]; None raises OSError, as an unreadable file does."""

    def __init__(self, datas):
        self.datas = datas

    def read(self, gid):
        if self.datas[gid] is None:
            raise OSError(13, "Permission denied")
        return self.datas[gid]


def _both_paths(monkeypatch, datas, plan):
    from galaxyprep import decode_pool

    ids = np.arange(len(datas), dtype=np.int64)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(decode_pool, "fused_available", lambda p, fused=fused: fused)
        out = np.full((len(datas), plan.size, plan.size * 3), 7, np.uint8)
        sums = np.full((len(datas), 6), -1.0)
        buf = decode_pool.block_buffer(plan)
        errors = decode_pool.decode_resample(_Mutants(datas), ids, plan, buf, out, sums, offset=1000)
        results.append((errors, out, sums))
    return results


def test_the_block_call_gives_the_per_image_paths_bits_and_problems(jpegs, monkeypatch):
    """decode_resample's one C call per block (decode + resample in C) against decode_into + the numba kernel,
    over real images, mutants, unreadable files and headers the C path declines."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from fuzz_jpeg import mutate
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(13)
    frame = simplejpeg.decode_jpeg(jpegs[0], colorspace="RGB")
    odd = [simplejpeg.encode_jpeg(np.ascontiguousarray(frame[:, :, :1]), colorsubsampling="Gray", colorspace="GRAY"),
           simplejpeg.encode_jpeg(frame, colorsubsampling="444"),  # decoded in C: a standard subsampling
           simplejpeg.encode_jpeg(frame, colorsubsampling="422"),
           simplejpeg.encode_jpeg(frame, colorspace="RGB", quality=90),
           simplejpeg.encode_jpeg(np.ascontiguousarray(frame[:400]), colorsubsampling="420"),  # the wrong size
           b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"", None]
    datas = list(jpegs[:40]) + [mutate(jpegs[k % len(jpegs)], rng, jpegs) for k in range(600)] + odd
    order = rng.permutation(len(datas))
    datas = [datas[k] for k in order]
    for crop, size in ((200, 96), (207, 69)):
        plan = make_plan(424, 424, crop, size, window=True)
        (f_err, f_out, f_sums), (s_err, s_out, s_sums) = _both_paths(monkeypatch, datas, plan)
        assert f_err == s_err
        assert len(s_err) > 200 and any("greyscale" in m for _, m in s_err) and any("cannot read" in m for _, m in s_err)
        np.testing.assert_array_equal(f_out, s_out)  # failed rows untouched by both
        np.testing.assert_array_equal(f_sums, s_sums)


def test_the_block_call_refuses_bad_arguments():
    from galaxyprep import _cropdecode

    plan = make_plan(424, 424, 200, 96, window=True)
    rp = plan.resample
    out, sums = np.empty((2, 96, 288), np.uint8), np.empty((2, 6))
    args = (424, 424, plan.scale_num, plan.scaled_height, plan.scaled_width) + plan.window
    assert _cropdecode.decode_resample([b"junk", None], *args, rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs,
                                       out, sums) == [0]
    with pytest.raises(ValueError, match="geometry"):
        runs = rp.x_runs.copy()
        runs[-1, 2] += 30  # reads past the window's right edge
        _cropdecode.decode_resample([], *args, rp.y_first, rp.y_weights, rp.x_weights, runs, out, sums)
    with pytest.raises(ValueError, match="geometry"):
        _cropdecode.decode_resample([], *args, rp.y_first + 10, rp.y_weights, rp.x_weights, rp.x_runs, out, sums)
    with pytest.raises(ValueError, match="y_weights"):
        _cropdecode.decode_resample([], *args, rp.y_first, rp.y_weights.astype(np.float64), rp.x_weights,
                                    rp.x_runs, out, sums)
    with pytest.raises(ValueError, match="out must be"):
        _cropdecode.decode_resample([b"", b"", b""], *args, rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs,
                                    out, sums)
    with pytest.raises(TypeError):
        _cropdecode.decode_resample(["not bytes"], *args, rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs,
                                    out, sums)
    read_only = np.frombuffer(bytes(out.nbytes), np.uint8).reshape(out.shape)
    with pytest.raises((ValueError, BufferError)):
        _cropdecode.decode_resample([], *args, rp.y_first, rp.y_weights, rp.x_weights, rp.x_runs, read_only, sums)
