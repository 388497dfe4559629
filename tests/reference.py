"""Plain numpy reference implementations that the numba kernels are checked against.

Written independently of the kernels: dense matrices built straight from the
definition of area averaging, float64 throughout.
"""

from __future__ import annotations

import numpy as np


def area_matrix(start: float, length: float, n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row j is the overlap of [start + j r, start + (j+1) r) with each pixel, normalized."""
    r = length / n_out
    lo = start + np.arange(n_out)[:, None] * r
    hi = lo + r
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def crop_area_resample(image: np.ndarray, y0: float, x0: float, h: float, w: float, size: int) -> np.ndarray:
    """The exact (unrounded, float64) area average of the box (y0, x0, h, w) of an (H, W, 3) image."""
    wy = area_matrix(y0, h, image.shape[0], size)
    wx = area_matrix(x0, w, image.shape[1], size)
    return np.einsum("yi,ijc,xj->yxc", wy, image.astype(np.float64), wx, optimize=True)


def channel_sums(images: np.ndarray) -> np.ndarray:
    """(B, 6): per-image R, G, B sums and sums of squares."""
    x = images.reshape(images.shape[0], -1, 3).astype(np.float64)
    return np.concatenate([x.sum(axis=1), (x * x).sum(axis=1)], axis=1)


def naive_pipeline(path, crop: int = 200, size: int = 96) -> np.ndarray:
    """The student project's way: Pillow, open, RGB, centre crop, bilinear resize, float32."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        left, top = (w - crop) // 2, (h - crop) // 2
        img = img.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.float32) / 255.0
