"""The numba kernels against the plain numpy reference, on real and synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from galaxyprep.decode import decode_into, make_plan
from galaxyprep.kernels import area_weights, normalize_batch, normalize_batch_serial, plan_area_resample, resample_area

from reference import area_matrix, channel_sums, crop_area_resample


def _run_kernel(batch: np.ndarray, plan) -> tuple[np.ndarray, np.ndarray]:
    n, h, w, _ = batch.shape
    sy = plan.y_first.shape[0]
    sx = plan.x_weights.shape[1] // 3
    out = np.zeros((n, sy, sx * 3), np.uint8)
    sums = np.zeros((n, 6))
    resample_area(batch.reshape(n, h, w * 3), plan.y_first, plan.y_weights, plan.x_weights, plan.x_runs, out, sums)
    return out.reshape(n, sy, sx, 3), sums


def _assert_matches_reference(got: np.ndarray, exact: np.ndarray) -> None:
    """Each output is the exact area average rounded to the nearest integer.

    The kernel accumulates in float32, so a value within float32 error of a
    .5 tie may round either way: allow 0.5 plus that error, nothing more.
    """
    err = np.abs(got.astype(np.float64) - exact)
    assert err.max() <= 0.5 + 2e-3
    assert np.mean(got == np.floor(exact + 0.5)) > 0.99


@pytest.mark.parametrize("start,length,n_in,n_out", [(56, 100, 212, 96), (0, 424, 424, 45), (41.5, 75.25, 159, 64),
                                                     (3.3, 17.9, 30, 7), (0, 10, 10, 10)])
def test_area_weights_equal_dense_definition(start, length, n_in, n_out):
    first, w = area_weights(start, length, n_in, n_out)
    dense = np.zeros((n_out, n_in))
    for j in range(n_out):
        dense[j, first[j]: first[j] + w.shape[1]] = w[j]
    np.testing.assert_allclose(dense, area_matrix(start, length, n_in, n_out), atol=1e-6)


@pytest.mark.parametrize("crop,size", [(200, 96), (207, 69), (200, 64), (424, 45), (424, 424), (100, 100)])
def test_resample_matches_reference_on_real_images(shared_gz, crop, size):
    files = sorted((shared_gz / "images").glob("*.jpg"))[:12]
    plan = make_plan(424, 424, crop, size)
    batch = np.empty((len(files), plan.scaled_height, plan.scaled_width, 3), np.uint8)
    for i, f in enumerate(files):
        decode_into(f.read_bytes(), plan, batch[i])
    got, sums = _run_kernel(batch, plan.resample)
    sy = plan.scale
    box = crop * sy
    y0 = (plan.scaled_height - box) / 2
    want = np.stack([crop_area_resample(img, y0, y0, box, box, size) for img in batch])
    _assert_matches_reference(got, want)
    np.testing.assert_allclose(sums, channel_sums(got))


@pytest.mark.parametrize("shape,box,size", [((40, 52), (3.5, 7.25, 31.0, 33.5), 16), ((64, 64), (0, 0, 64, 64), 64),
                                            ((90, 90), (10, 10, 70, 70), 36), ((33, 47), (1, 2, 30, 44), 29)])
def test_resample_matches_reference_on_random_images(shape, box, size):
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, size=(5, *shape, 3), dtype=np.uint8)
    plan = plan_area_resample(*box, shape[0], shape[1], size, size)
    got, sums = _run_kernel(batch, plan)
    want = np.stack([crop_area_resample(img, *box, size) for img in batch])
    _assert_matches_reference(got, want)
    np.testing.assert_allclose(sums, channel_sums(got))


def test_resample_keeps_a_flat_image_flat_and_saturates_cleanly():
    batch = np.full((2, 50, 50, 3), 255, np.uint8)
    batch[1] = 7
    got, _ = _run_kernel(batch, plan_area_resample(5.5, 5.5, 39, 39, 50, 50, 17, 17))
    assert (got[0] == 255).all() and (got[1] == 7).all()


def test_dct_scaled_decode_is_close_to_full_decode_then_area_resample(shared_gz):
    """DCT scaling must not change what the network sees beyond JPEG-level noise."""
    files = sorted((shared_gz / "images").glob("*.jpg"))[:8]
    plan = make_plan(424, 424, 200, 96)
    full = make_plan(424, 424, 200, 96, dct_scaling=False)
    a = np.empty((len(files), plan.scaled_height, plan.scaled_width, 3), np.uint8)
    b = np.empty((len(files), 424, 424, 3), np.uint8)
    for i, f in enumerate(files):
        decode_into(f.read_bytes(), plan, a[i])
        b[i] = simplejpeg.decode_jpeg(f.read_bytes())
    got_a, _ = _run_kernel(a, plan.resample)
    got_b, _ = _run_kernel(b, full.resample)
    assert full.scaled_height == 424 and plan.scaled_height == 212
    assert np.abs(got_a.astype(float) - got_b.astype(float)).mean() < 1.5


def test_normalize_batch_matches_numpy(shared_gz):
    files = sorted((shared_gz / "images").glob("*.jpg"))[:4]
    images = np.stack([simplejpeg.decode_jpeg(f.read_bytes(), min_height=106, min_width=106) for f in files])
    _check_normalize(images)


def test_normalize_batch_matches_numpy_on_random():
    _check_normalize(np.random.default_rng(2).integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8))


def _check_normalize(images: np.ndarray) -> None:
    mean = np.array([28.0, 24.3, 19.1], np.float32)
    std = np.array([37.9, 31.8, 27.6], np.float32)
    out = np.empty(images.shape, np.float32)
    normalize_batch(images, mean, (1.0 / std).astype(np.float32), out)
    np.testing.assert_allclose(out, (images.astype(np.float64) - mean) / std, rtol=1e-5, atol=1e-5)
    serial = np.empty_like(out)
    normalize_batch_serial(images, mean, (1.0 / std).astype(np.float32), serial)
    assert np.array_equal(serial, out)
