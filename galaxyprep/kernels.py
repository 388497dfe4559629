"""numba kernels over whole batches of images.

Signatures take plain arrays so that each kernel can be tested against the
plain numpy reference in `tests/reference.py`. The geometry of a resample
(`AreaPlan`, from `plan_area_resample`) is computed once per build; the
kernels only multiply and add, in loops laid out for SIMD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange


def area_weights(start: float, length: float, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Antialiased (area-averaging) weights that map [start, start+length) onto n_out pixels.

    Output pixel j averages the input interval [start + j*r, start + (j+1)*r),
    r = length / n_out, each input pixel weighted by how much of it falls
    inside. Returns (first input index (n_out,) int64, weights (n_out, taps)
    float32); the weights of a row sum to 1. Fractional boxes, as a crop has
    after DCT scaling, are handled exactly.
    """
    if not (start >= 0 and start + length <= n_in + 1e-9 and n_out > 0 and length > 0):
        raise ValueError(f"box [{start}, {start + length}) does not fit in {n_in} pixels")
    r = length / n_out
    spans = []
    for j in range(n_out):
        lo = start + j * r
        hi = min(lo + r, float(n_in))
        i0 = int(math.floor(lo))
        i1 = max(i0 + 1, int(math.ceil(hi - 1e-9)))
        spans.append((lo, hi, i0, min(i1, n_in)))
    taps = max(i1 - i0 for _, _, i0, i1 in spans)
    first = np.zeros(n_out, dtype=np.int64)
    weights = np.zeros((n_out, taps), dtype=np.float64)
    for j, (lo, hi, i0, i1) in enumerate(spans):
        first[j] = min(i0, n_in - taps)
        for i in range(i0, i1):
            overlap = min(hi, i + 1) - max(lo, i)
            if overlap > 0:
                weights[j, i - first[j]] += overlap
        weights[j] /= weights[j].sum()
    return first, weights.astype(np.float32)


@dataclass(frozen=True)
class AreaPlan:
    """Everything `resample_area` needs for one crop box and output size.

    The horizontal pass runs over the flattened (x, channel) axis. Because the
    decoder's DCT scale keeps the resample ratio below 2, the input index of a
    flattened output m is m + offset over runs of consecutive m; each run is
    then a contiguous, vectorizable loop.
    """

    y_first: np.ndarray   # (Sy,) int64 first input row of each output row
    y_weights: np.ndarray  # (Sy, Ty) float32
    x_weights: np.ndarray  # (Tx, Sx*3) float32, per flattened output and tap
    x_runs: np.ndarray     # (R, 3) int64: m_start, m_end, flat input offset

    def shifted(self, rows: int, cols: int) -> "AreaPlan":
        """The same resample of an image whose first `rows` rows and `cols` columns were cut off.

        Only the indices move; the weights are the same numbers, so the
        output is bit for bit the same as from the whole image.
        """
        runs = self.x_runs.copy()
        runs[:, 2] -= 3 * cols
        return AreaPlan(self.y_first - rows, self.y_weights, self.x_weights, runs)


def plan_area_resample(y0: float, x0: float, h: float, w: float, height: int, width: int,
                       out_h: int, out_w: int) -> AreaPlan:
    """Plan an area resample of the box (y0, x0, h, w) of a height x width image."""
    y_first, y_weights = area_weights(y0, h, height, out_h)
    x_first, xw = area_weights(x0, w, width, out_w)
    x_weights = np.repeat(xw.T, 3, axis=1)  # (Tx, out_w*3)
    runs = []
    for j in range(out_w):
        offset = 3 * (int(x_first[j]) - j)
        if runs and runs[-1][2] == offset:
            runs[-1][1] = 3 * (j + 1)
        else:
            runs.append([3 * j, 3 * (j + 1), offset])
    return AreaPlan(y_first, y_weights, np.ascontiguousarray(x_weights, dtype=np.float32),
                    np.array(runs, dtype=np.int64))


@njit(cache=True, nogil=True)
def _resample_one(src, b, y_first, y_weights, x_weights, x_runs, out, channel_sums):
    sy = out.shape[1]
    m_out = out.shape[2]
    ty = y_weights.shape[1]
    tx = x_weights.shape[0]
    h_lo = y_first[0]
    h_hi = y_first[sy - 1] + ty
    # The two-tap path writes every element; only the general path accumulates into zeros.
    rows = np.empty((h_hi - h_lo, m_out), dtype=np.float32) if tx == 2 else np.zeros((h_hi - h_lo, m_out), dtype=np.float32)
    for yy in range(h_lo, h_hi):
        row = rows[yy - h_lo]
        line = src[b, yy]
        for r in range(x_runs.shape[0]):
            m0 = x_runs[r, 0]
            m1 = x_runs[r, 1]
            off = x_runs[r, 2]
            acc_run = row[m0:m1]
            if tx == 2:  # the usual case (ratio < 1.5 after DCT scaling): one store per output
                s0 = line[m0 + off : m1 + off]
                s1 = line[m0 + off + 3 : m1 + off + 3]
                w0 = x_weights[0, m0:m1]
                w1 = x_weights[1, m0:m1]
                for t in range(m1 - m0):
                    acc_run[t] = w0[t] * np.float32(s0[t]) + w1[t] * np.float32(s1[t])
                continue
            for k in range(tx):
                seg = line[m0 + off + 3 * k : m1 + off + 3 * k]
                wk = x_weights[k, m0:m1]
                for t in range(m1 - m0):
                    acc_run[t] += wk[t] * np.float32(seg[t])
    acc = np.empty(m_out, dtype=np.float32)
    sums = np.zeros(m_out, dtype=np.int32)     # <= 255 * Sy: exact in int32
    squares = np.zeros(m_out, dtype=np.int32)  # <= 255**2 * Sy < 2**31 for Sy < 33000
    for i in range(sy):
        r0 = y_first[i] - h_lo
        dst = out[b, i]
        if ty == 2:  # the usual case: weigh, round and measure in one pass
            w0 = y_weights[i, 0]
            w1 = y_weights[i, 1]
            p0 = rows[r0]
            p1 = rows[r0 + 1]
            for m in range(m_out):
                v = np.int32(min(w0 * p0[m] + w1 * p1[m] + np.float32(0.5), np.float32(255.0)))
                dst[m] = np.uint8(v)
                sums[m] += v
                squares[m] += v * v
            continue
        acc[:] = 0.0
        for k in range(ty):
            w = y_weights[i, k]
            prow = rows[r0 + k]
            for m in range(m_out):
                acc[m] += w * prow[m]
        for m in range(m_out):
            v = np.int32(min(acc[m] + np.float32(0.5), np.float32(255.0)))
            dst[m] = np.uint8(v)
            sums[m] += v
            squares[m] += v * v
    for c in range(3):
        s = 0.0
        q = 0.0
        for m in range(c, m_out, 3):
            s += np.float64(sums[m])
            q += np.float64(squares[m])
        channel_sums[b, c] = s
        channel_sums[b, 3 + c] = q


@njit(cache=True, parallel=True, nogil=True)
def resample_area(src, y_first, y_weights, x_weights, x_runs, out, channel_sums):
    """Crop and area-resample a uint8 batch into `out`, and measure it.

    src (B, H, W*3) uint8 and out (B, Sy, Sx*3) uint8 are images with the
    (x, channel) axes flattened (a free reshape of (B, H, W, 3)). Horizontal
    taps go into a float32 row buffer, vertical taps into an accumulator row,
    rounded half up. channel_sums (B, 6) float64 receives each image's R, G, B
    sums and sums of squares of the rounded output, so that the file's mean
    and std come from the same pass.

    Inner loops index slices with a `range` variable: numba then knows the
    index is non-negative, drops its wraparound check, and LLVM vectorizes
    (4-5x faster than indexing the full arrays with computed offsets).
    """
    for b in prange(src.shape[0]):
        _resample_one(src, b, y_first, y_weights, x_weights, x_runs, out, channel_sums)


@njit(cache=True, nogil=True)
def resample_area_serial(src, y_first, y_weights, x_weights, x_runs, out, channel_sums):
    """`resample_area` on the calling thread, without the GIL.

    The build calls it from each decode thread on the few images that thread
    just decoded, while they are still in its CPU cache: with every core
    already decoding, a parallel kernel has no idle core to use.
    """
    for b in range(src.shape[0]):
        _resample_one(src, b, y_first, y_weights, x_weights, x_runs, out, channel_sums)


@njit(cache=True)
def _normalize_one(images, b, mean, inv_std, out):
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    for i in range(h):
        for j in range(w):
            for k in range(c):
                out[b, i, j, k] = (np.float32(images[b, i, j, k]) - mean[k]) * inv_std[k]


@njit(cache=True, parallel=True)
def normalize_batch(images, mean, inv_std, out):
    """uint8 (B, S, S, 3) -> float32 `out`, (x - mean) * inv_std per channel."""
    for b in prange(images.shape[0]):
        _normalize_one(images, b, mean, inv_std, out)


@njit(cache=True)
def normalize_batch_serial(images, mean, inv_std, out):
    """`normalize_batch` on one thread, bit for bit.

    For forked worker processes: numba's GNU OpenMP layer aborts a child
    forked after its parent ran a parallel kernel.
    """
    for b in range(images.shape[0]):
        _normalize_one(images, b, mean, inv_std, out)


def crop_resize(images: np.ndarray, crop: int, size: int) -> np.ndarray:
    """The centre `crop` pixels of each image, area-averaged to `size` x `size`: a build's geometry, on arrays.

    For images already decoded (a notebook's array): (N, H, W, 3) uint8 in,
    (N, size, size, 3) uint8 out, through the same kernel as a build.
    """
    images = np.ascontiguousarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    if not 0 < size <= crop <= min(h, w):
        raise ValueError(f"need 0 < size ({size}) <= crop ({crop}) <= the images' side ({min(h, w)})")
    plan = plan_area_resample((h - crop) / 2, (w - crop) / 2, crop, crop, h, w, size, size)
    out = np.empty((n, size, size * 3), dtype=np.uint8)
    sums = np.zeros((n, 6), dtype=np.float64)
    if n:
        resample_area(images.reshape(n, h, w * 3), plan.y_first, plan.y_weights, plan.x_weights, plan.x_runs, out,
                      sums)
    return out.reshape(n, size, size, 3)
