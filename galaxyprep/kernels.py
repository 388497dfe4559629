"""numba kernels over whole batches of images.

Signatures take plain arrays so that each kernel can be tested against the
numpy reference in `galaxyprep.reference`. Weights for the area resampler are
computed once per build by `area_weights`; the kernels only multiply and add.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


def area_weights(start: float, length: float, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Antialiased (area-averaging) weights that map [start, start+length) onto n_out pixels.

    Output pixel j averages the input interval [start + j*r, start + (j+1)*r),
    r = length / n_out, each input pixel weighted by how much of it falls
    inside. Returns (first input index (n_out,) int64, weights (n_out, taps)
    float32); weights of a row sum to 1. Fractional crop boxes (after DCT
    scaling) are handled exactly.
    """
    if not (0 <= start and start + length <= n_in + 1e-9 and n_out > 0 and length > 0):
        raise ValueError(f"box [{start}, {start + length}) does not fit in {n_in} pixels")
    r = length / n_out
    taps = int(math.ceil(r)) + 1
    first = np.zeros(n_out, dtype=np.int64)
    weights = np.zeros((n_out, taps), dtype=np.float64)
    for j in range(n_out):
        lo = start + j * r
        hi = min(lo + r, float(n_in))
        i0 = int(math.floor(lo))
        first[j] = min(i0, n_in - taps) if n_in >= taps else 0
        for i in range(i0, int(math.ceil(hi))):
            overlap = min(hi, i + 1) - max(lo, i)
            if overlap > 0:
                weights[j, i - first[j]] += overlap
        weights[j] /= weights[j].sum()
    return first, weights.astype(np.float32)


@njit(cache=True, parallel=True)
def resample_area(src, y_first, y_weights, x_first, x_weights, out, channel_sums):
    """Crop and area-resample a uint8 batch (B, H, W, 3) into `out` (B, Sy, Sx, 3) uint8.

    Separable: horizontal taps into a float32 row buffer, then vertical taps.
    Also accumulates per-image channel sums and sums of squares of the
    rounded output into `channel_sums` (B, 6) float64, so that the file's
    mean and std come from the same pass.
    """
    n = src.shape[0]
    sy = out.shape[1]
    sx = out.shape[2]
    ty = y_weights.shape[1]
    tx = x_weights.shape[1]
    h_lo = y_first[0]
    h_hi = y_first[sy - 1] + ty
    for b in prange(n):
        rows = np.empty((h_hi - h_lo, sx, 3), dtype=np.float32)
        for yy in range(h_lo, h_hi):
            r = yy - h_lo
            for j in range(sx):
                x0 = x_first[j]
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                for k in range(tx):
                    w = x_weights[j, k]
                    a0 += w * src[b, yy, x0 + k, 0]
                    a1 += w * src[b, yy, x0 + k, 1]
                    a2 += w * src[b, yy, x0 + k, 2]
                rows[r, j, 0] = a0
                rows[r, j, 1] = a1
                rows[r, j, 2] = a2
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        q0 = 0.0
        q1 = 0.0
        q2 = 0.0
        for i in range(sy):
            r0 = y_first[i] - h_lo
            for j in range(sx):
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                for k in range(ty):
                    w = y_weights[i, k]
                    a0 += w * rows[r0 + k, j, 0]
                    a1 += w * rows[r0 + k, j, 1]
                    a2 += w * rows[r0 + k, j, 2]
                v0 = np.uint8(min(255.0, a0 + np.float32(0.5)))
                v1 = np.uint8(min(255.0, a1 + np.float32(0.5)))
                v2 = np.uint8(min(255.0, a2 + np.float32(0.5)))
                out[b, i, j, 0] = v0
                out[b, i, j, 1] = v1
                out[b, i, j, 2] = v2
                s0 += v0
                s1 += v1
                s2 += v2
                q0 += v0 * v0
                q1 += v1 * v1
                q2 += v2 * v2
        channel_sums[b, 0] = s0
        channel_sums[b, 1] = s1
        channel_sums[b, 2] = s2
        channel_sums[b, 3] = q0
        channel_sums[b, 4] = q1
        channel_sums[b, 5] = q2


@njit(cache=True, parallel=True)
def normalize_batch(images, mean, inv_std, out):
    """uint8 (B, S, S, 3) -> float32 `out`, (x - mean) * inv_std per channel."""
    n, h, w, c = images.shape
    for b in prange(n):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    out[b, i, j, k] = (np.float32(images[b, i, j, k]) - mean[k]) * inv_std[k]
