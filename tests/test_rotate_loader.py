"""augment="rotate" in GalaxyBatches, views smaller than the stored images, and the centre view."""

from __future__ import annotations

import multiprocessing
import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from galaxytrain.data import GalaxyBatches, training_view  # noqa: E402
from galaxytrain.data.views import RotateRanges, centre_view, draw_views, rotated_views  # noqa: E402
from test_augment import rotate_zoom_reference  # noqa: E402


def stored(path):
    with h5py.File(path, "r") as f:
        return f["images"][:], f["ids"][:], f["labels"][:], f.attrs["mean"], f.attrs["std"]


def test_draw_views_cover_the_ranges():
    ranges = RotateRanges(max_shift=3.0, max_zoom=1.5)
    angles, scales, sy, sx, flips = draw_views(np.random.default_rng(0), 20000, ranges)
    assert 0 <= angles.min() < 5 and 355 < angles.max() < 360
    assert 1 / 1.5 <= scales.min() < 1 / 1.45 and 1.45 < scales.max() <= 1.5
    # Log-uniform: log(scale) is symmetric about 0, half the views zoom in.
    assert abs(np.log(scales).mean()) < 0.01 and abs((scales > 1).mean() - 0.5) < 0.02
    for s in (sy, sx):
        assert -3 <= s.min() < -2.9 and 2.9 < s.max() <= 3
    assert abs(np.corrcoef(sy, sx)[0, 1]) < 0.05
    assert set(np.unique(flips)) == {0, 1} and abs(flips.mean() - 0.5) < 0.02
    no_flip = draw_views(np.random.default_rng(0), 100, RotateRanges(flip=False))[4]
    assert not no_flip.any()
    fixed = draw_views(np.random.default_rng(1), 50, RotateRanges(max_shift=0, max_zoom=1))
    assert np.all(fixed[1] == 1) and not fixed[2].any() and not fixed[3].any()
    with pytest.raises(ValueError, match="max_zoom"):
        RotateRanges(max_zoom=0.9)
    with pytest.raises(ValueError, match="max_shift"):
        RotateRanges(max_shift=float("nan"))


@pytest.mark.parametrize("size, out", [(20, 20), (20, 14), (21, 14)])
def test_centre_view_is_the_identity_transform(size, out):
    images = np.random.default_rng(size + out).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    view = centre_view(images, out)
    assert view.shape == (3, out, out, 3)
    expected = np.stack([rotate_zoom_reference(im, 0.0, 1.0, 0.0, 0.0, False, out) for im in images])
    np.testing.assert_array_equal(view, expected)
    if (size - out) % 2 == 0:  # a whole-pixel margin: exactly the middle of the stored image
        m = (size - out) // 2
        np.testing.assert_array_equal(view, images[:, m:m + out, m:m + out])
    with pytest.raises(ValueError, match="at least"):
        centre_view(images, size + 1)


def test_rotate_batches_are_the_reference_transform_of_their_stored_images(make_galaxy_file):
    path = make_galaxy_file(n=40, size=21, chunk_images=8)
    images, ids, labels, mean, std = stored(path)
    ranges = RotateRanges(max_shift=2.5, max_zoom=1.2)
    ds = GalaxyBatches(path, batch_size=16, view=training_view("rotate", 15, ranges), normalize=False, seed=4)
    ds.set_epoch(1)
    seen_flip = set()
    for index in range(len(ds)):
        x, y = ds[index]
        rows = np.searchsorted(ids, ds.batch_ids(index))
        assert x.shape == (len(rows), 15, 15, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(y, labels[rows])
        # The batch's views are drawn from its own generator, after its row permutation.
        rng = np.random.default_rng([4, 1, index])
        rng.permutation(len(rows))
        params = draw_views(rng, len(rows), ranges)
        seen_flip.update(params[4].tolist())
        for b, row in enumerate(rows):
            expected = rotate_zoom_reference(images[row], *(p[b] for p in params), 15)
            diff = np.abs(x[b].astype(int) - expected)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert seen_flip == {0, 1}
    # Normalized: the same views through (x - mean) / std.
    view = training_view("rotate", 15, ranges)
    xn, _ = GalaxyBatches(path, batch_size=16, view=view, seed=4)[0]
    xr, _ = GalaxyBatches(path, batch_size=16, view=view, seed=4, normalize=False)[0]
    np.testing.assert_allclose(xn, (xr - mean.astype(np.float32)) / std.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_rotations_differ_between_epochs_and_repeat_within_one(make_galaxy_file):
    path = make_galaxy_file(n=32, size=16)
    ds = GalaxyBatches(path, batch_size=32, view=training_view("rotate", 16), normalize=False, shuffle=False,
                       seed=1)
    first, again = ds[0][0], ds[0][0]
    np.testing.assert_array_equal(first, again)
    ds.on_epoch_end()
    assert not np.array_equal(ds[0][0], first)


@pytest.mark.parametrize("augment", ["none", "dihedral"])
def test_fixed_views_are_centre_views(make_galaxy_file, augment):
    path = make_galaxy_file(n=24, size=20)
    images, ids, _, _, _ = stored(path)
    full = GalaxyBatches(path, batch_size=8, view=training_view(augment, 20), normalize=False, seed=2)
    small = GalaxyBatches(path, batch_size=8, view=training_view(augment, 13), normalize=False, seed=2)
    for index in range(len(full)):
        np.testing.assert_array_equal(small.batch_ids(index), full.batch_ids(index))
        np.testing.assert_array_equal(small[index][0], centre_view(full[index][0], 13))
    for size in (21, 0):
        with pytest.raises(ValueError, match=f"the view is {size} pixels"):
            GalaxyBatches(path, view=training_view(augment, size))


def _fork_batch(args):
    ds, index = args
    x, y = ds[index]
    return os.getpid(), x, y


def test_forked_workers_compute_the_same_rotated_batches(make_galaxy_file):
    path = make_galaxy_file(n=64, size=16, chunk_images=8)
    ds = GalaxyBatches(path, batch_size=16, view=training_view("rotate", 12), seed=3)
    ds.set_epoch(2)
    expected = [ds[i] for i in range(len(ds))]  # the parallel kernels run before the fork
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_fork_batch, [(ds, i) for i in range(len(ds))], chunksize=1).get(timeout=60)
    for (pid, x, y), (ex, ey) in zip(results, expected):
        assert pid != os.getpid()
        np.testing.assert_array_equal(x, ex)  # the serial twin gives the same pixels
        np.testing.assert_array_equal(y, ey)


def test_rotated_views_of_a_round_image_barely_change():
    # A radially symmetric blob: any rotation about its centre leaves it (nearly) as it was.
    size = 33
    r = np.hypot(*np.meshgrid(np.arange(size) - 16.0, np.arange(size) - 16.0, indexing="ij"))
    blob = np.repeat((255 * np.exp(-(r / 7.0) ** 2))[None, ..., None], 3, axis=3).astype(np.uint8)
    blobs = np.repeat(blob, 6, axis=0)
    turned = rotated_views(blobs, 25, np.linspace(0, 300, 6))
    assert np.abs(turned.astype(int) - centre_view(blobs, 25).astype(int)).max() <= 3
    shifted = rotated_views(blobs[:1], 25, 0.0, shifts_y=[3.0], shifts_x=[0.0])
    assert np.abs(shifted.astype(int) - centre_view(blobs[:1], 25).astype(int)).max() > 50
