"""Augmentation kernels against numpy (and scipy) references, on random and real images."""

from __future__ import annotations

import numpy as np
import pytest

from galaxytrain.data.kernels import (
    dihedral_batch,
    dihedral_batch_serial,
    rotate_zoom_batch,
    rotate_zoom_batch_serial,
)


def dihedral_reference(image: np.ndarray, code: int) -> np.ndarray:
    turned = np.rot90(image, code % 4, axes=(0, 1))
    return np.flip(turned, axis=1) if code >= 4 else turned


def rotate_zoom_reference(image, angle, scale, shift_y, shift_x, flip, out_size):
    """Plain numpy: inverse-map every output pixel, bilinear with clamped (edge-replicated) taps."""
    n = image.shape[0]
    c_in, c_out = (n - 1) / 2, (out_size - 1) / 2
    i, j = np.meshgrid(np.arange(out_size, dtype=np.float64), np.arange(out_size, dtype=np.float64),
                       indexing="ij")
    y = i - c_out - shift_y
    x = (-(j - c_out) if flip else (j - c_out)) - shift_x
    theta = np.deg2rad(angle)
    src_y = c_in + (np.cos(theta) / scale) * y + (np.sin(theta) / scale) * x
    src_x = c_in - (np.sin(theta) / scale) * y + (np.cos(theta) / scale) * x
    return bilinear_clamped(image, src_y, src_x)


def bilinear_clamped(image, src_y, src_x):
    n = image.shape[0]
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = (src_y - y0)[..., None], (src_x - x0)[..., None]
    ya, yb = np.clip(y0, 0, n - 1).astype(int), np.clip(y0 + 1, 0, n - 1).astype(int)
    xa, xb = np.clip(x0, 0, n - 1).astype(int), np.clip(x0 + 1, 0, n - 1).astype(int)
    f = image.astype(np.float64)
    v = ((1 - wy) * (1 - wx) * f[ya, xa] + (1 - wy) * wx * f[ya, xb]
         + wy * (1 - wx) * f[yb, xa] + wy * wx * f[yb, xb])
    return np.floor(np.clip(v + 0.5, 0, 255)).astype(np.uint8)


def random_images(n=6, size=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def real_images(shared_gz):
    """A few real galaxies, decoded and centre-cropped to 96x96."""
    simplejpeg = pytest.importorskip("simplejpeg")
    paths = sorted((shared_gz / "images").glob("*.jpg"))[:6]
    crops = []
    for path in paths:
        image = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")
        top = (image.shape[0] - 96) // 2
        left = (image.shape[1] - 96) // 2
        crops.append(image[top:top + 96, left:left + 96])
    return np.ascontiguousarray(np.stack(crops))


def check_dihedral(images):
    codes = np.arange(len(images) * 8) % 8
    batch = np.ascontiguousarray(np.repeat(images, 8, axis=0))
    for kernel in (dihedral_batch, dihedral_batch_serial):
        out = np.zeros_like(batch)
        kernel(batch, codes, out)
        for b, code in enumerate(codes):
            np.testing.assert_array_equal(out[b], dihedral_reference(batch[b], code), err_msg=f"code {code}")


def test_dihedral_random_images():
    check_dihedral(random_images(size=17))  # odd size: the centre pixel stays put
    check_dihedral(random_images(size=16, seed=1))


def test_dihedral_real_images(real_images):
    check_dihedral(real_images)


def test_dihedral_eight_distinct_transforms():
    image = random_images(1, 8)
    out = np.zeros((8, 8, 8, 3), dtype=np.uint8)
    dihedral_batch(np.repeat(image, 8, axis=0), np.arange(8), out)
    assert len({o.tobytes() for o in out}) == 8


def test_dihedral_rejects_bad_code():
    images = random_images(2, 8)
    with pytest.raises(ValueError, match="0..7"):
        dihedral_batch(images, np.array([0, 8]), np.zeros_like(images))


def random_params(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 360, n), np.exp(rng.uniform(np.log(1 / 1.3), np.log(1.3), n)),
            rng.uniform(-4, 4, n), rng.uniform(-4, 4, n), rng.integers(0, 2, n).astype(np.uint8))


def check_rotate_zoom(images, out_size, seed):
    n = len(images)
    params = random_params(n, seed)
    expected = np.stack([rotate_zoom_reference(images[b], *(p[b] for p in params), out_size) for b in range(n)])
    for kernel in (rotate_zoom_batch, rotate_zoom_batch_serial):
        out = np.zeros((n, out_size, out_size, 3), dtype=np.uint8)
        kernel(images, *params, out)
        diff = np.abs(out.astype(int) - expected)
        # Same formula in a different evaluation order: at most a rounding step, rarely.
        assert diff.max() <= 1
        assert (diff > 0).mean() < 1e-3


def test_rotate_zoom_random_images():
    check_rotate_zoom(random_images(8, 24), 24, seed=0)
    check_rotate_zoom(random_images(8, 25, seed=3), 19, seed=1)  # a centre crop of another size


def test_rotate_zoom_real_images(real_images):
    check_rotate_zoom(real_images, 96, seed=2)
    check_rotate_zoom(real_images, 64, seed=3)


def _quarter_turns_vs_dihedral(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image under the 8 dihedral codes, by rotate_zoom_batch and by dihedral_batch."""
    images = np.ascontiguousarray(np.repeat(images, 8, axis=0))
    codes = np.arange(len(images)) % 8
    expected = np.zeros_like(images)
    dihedral_batch(images, codes, expected)
    out = np.zeros_like(images)
    zeros = np.zeros(len(images))
    rotate_zoom_batch(images, 90.0 * (codes % 4), np.ones(len(images)), zeros, zeros,
                      (codes >= 4).astype(np.uint8), out)
    return out, expected


@pytest.mark.parametrize("size", [16, 17])
def test_rotate_zoom_quarter_turns_match_dihedral(size):
    out, expected = _quarter_turns_vs_dihedral(random_images(2, size, seed=size))
    assert np.abs(out.astype(int) - expected).max() <= 1
    # cos(90 deg) is 6e-17, not 0: still exact after rounding on almost every pixel.
    assert (out != expected).mean() < 1e-3


def test_rotate_zoom_quarter_turns_real_images(real_images):
    out, expected = _quarter_turns_vs_dihedral(real_images[:2])
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_rotate_zoom_integer_shift_replicates_edges():
    image = random_images(1, 12, seed=4)
    out = np.zeros_like(image)
    rotate_zoom_batch(image, np.zeros(1), np.ones(1), np.array([2.0]), np.array([-3.0]), np.zeros(1, np.uint8), out)
    # Content moves down 2 and left 3; the uncovered border repeats the edge pixels.
    padded = np.pad(image[0], ((2, 0), (0, 3), (0, 0)), mode="edge")
    np.testing.assert_array_equal(out[0], padded[:12, 3:])


def test_rotate_zoom_identity_and_flip():
    images = random_images(2, 10, seed=5)
    out = np.zeros_like(images)
    rotate_zoom_batch(images, np.zeros(2), np.ones(2), np.zeros(2), np.zeros(2), np.array([0, 1], np.uint8), out)
    np.testing.assert_array_equal(out[0], images[0])
    np.testing.assert_array_equal(out[1], images[1][:, ::-1])


def test_rotate_zoom_interpolation_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = random_images(1, 20, seed=6)[0]
    angle, scale, sy, sx = 33.0, 1.21, 1.7, -2.3
    out = np.zeros((1, 20, 20, 3), dtype=np.uint8)
    rotate_zoom_batch(image[None], np.array([angle]), np.array([scale]), np.array([sy]), np.array([sx]),
                      np.zeros(1, np.uint8), out)
    # scipy's affine_transform maps output (y, x) to input M @ (y, x) + offset.
    t = np.deg2rad(angle)
    m = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) / scale
    c = 9.5
    offset = c - m @ np.array([c + sy, c + sx])
    for ch in range(3):
        ref = ndimage.affine_transform(image[..., ch].astype(np.float64), m, offset=offset, order=1,
                                       mode="nearest")
        ref = np.floor(np.clip(ref + 0.5, 0, 255))
        assert np.abs(out[0, ..., ch].astype(int) - ref).max() <= 1
