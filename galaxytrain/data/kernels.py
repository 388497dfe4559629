"""Geometric transforms of uint8 image batches (B, S, S, 3), as numba kernels.

Galaxies have no preferred orientation, so rotations and flips are free data.
Each kernel has a ``*_serial`` twin with the same arguments: numba's parallel
kernels run on the process's OpenMP pool, and GNU OpenMP aborts a forked
child that uses it after its parent did. Data-loader worker processes (which
Keras forks) therefore call the serial twins; their parallelism is the
processes themselves. `views` picks between the two (`galaxytrain.runtime`
says which a process may run); nothing else calls them.

Conventions (shared with the numpy references in the tests): images are
indexed [row, column]; "rotate by k quarter turns" is ``np.rot90(img, k)``
(counterclockwise as displayed); a flip mirrors the columns
(``img[:, ::-1]``) and is applied after the rotation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _check_codes(codes):
    # Outside the prange loop: a raise inside it would make numba run it serially.
    for b in range(codes.shape[0]):
        if codes[b] < 0 or codes[b] > 7:
            raise ValueError("dihedral code outside 0..7")


@njit(cache=True)
def _dihedral_one(src, b, code, out):
    n = src.shape[1]
    last = n - 1
    k = code & 3
    # Source (row, col) = (r0 + ri*i + rj*j, c0 + ci*i + cj*j) for output (i, j).
    if k == 0:
        r0, ri, rj, c0, ci, cj = 0, 1, 0, 0, 0, 1
    elif k == 1:
        r0, ri, rj, c0, ci, cj = 0, 0, 1, last, -1, 0
    elif k == 2:
        r0, ri, rj, c0, ci, cj = last, -1, 0, last, 0, -1
    else:
        r0, ri, rj, c0, ci, cj = last, 0, -1, 0, 1, 0
    if code >= 4:  # mirror the output columns: j -> last - j
        r0 += rj * last
        c0 += cj * last
        rj = -rj
        cj = -cj
    for i in range(n):
        for j in range(n):
            r = r0 + ri * i + rj * j
            c = c0 + ci * i + cj * j
            out[b, i, j, 0] = src[b, r, c, 0]
            out[b, i, j, 1] = src[b, r, c, 1]
            out[b, i, j, 2] = src[b, r, c, 2]


@njit(cache=True, parallel=True)
def dihedral_batch(src, codes, out):
    """out[b] = one of the 8 symmetries of the square applied to src[b].

    codes[b] in 0..7: ``np.rot90`` by ``codes[b] % 4`` quarter turns, then a
    column flip if ``codes[b] >= 4``. src and out are (B, S, S, 3) uint8 and
    must not overlap.
    """
    _check_codes(codes)
    for b in prange(src.shape[0]):
        _dihedral_one(src, b, codes[b], out)


@njit(cache=True)
def dihedral_batch_serial(src, codes, out):
    """`dihedral_batch` on one thread (for forked worker processes)."""
    _check_codes(codes)
    for b in range(src.shape[0]):
        _dihedral_one(src, b, codes[b], out)


@njit(cache=True)
def _rotate_zoom_one(src, b, angle_deg, scale, shift_y, shift_x, flip, out):
    n_in = src.shape[1]
    n_out = out.shape[1]
    last = n_in - 1
    c_in = 0.5 * (n_in - 1)
    c_out = 0.5 * (n_out - 1)
    theta = angle_deg * (math.pi / 180.0)
    cos_s = math.cos(theta) / scale
    sin_s = math.sin(theta) / scale
    # Output offset (y, x) from the output centre, unflipped and unshifted, is
    # rotated back and shrunk by the zoom: source offset
    # (cos*y + sin*x, -sin*y + cos*x) / scale.
    fx = -1.0 if flip else 1.0
    for i in range(n_out):
        y = i - c_out - shift_y
        for j in range(n_out):
            x = fx * (j - c_out) - shift_x
            sy = c_in + cos_s * y + sin_s * x
            sx = c_in - sin_s * y + cos_s * x
            y0 = math.floor(sy)
            x0 = math.floor(sx)
            wy = sy - y0
            wx = sx - x0
            # Replicate edge pixels: clamp all four taps into the image.
            ya = min(max(int(y0), 0), last)
            yb = min(max(int(y0) + 1, 0), last)
            xa = min(max(int(x0), 0), last)
            xb = min(max(int(x0) + 1, 0), last)
            w00 = (1.0 - wy) * (1.0 - wx)
            w01 = (1.0 - wy) * wx
            w10 = wy * (1.0 - wx)
            w11 = wy * wx
            for ch in range(3):
                v = (w00 * src[b, ya, xa, ch] + w01 * src[b, ya, xb, ch]
                     + w10 * src[b, yb, xa, ch] + w11 * src[b, yb, xb, ch])
                out[b, i, j, ch] = np.uint8(min(max(v + 0.5, 0.0), 255.0))


@njit(cache=True, parallel=True)
def rotate_zoom_batch(src, angles, scales, shifts_y, shifts_x, flips, out):
    """Rotate, zoom, shift and flip each image about its centre, bilinear, edges replicated.

    src (B, S, S, 3) uint8 -> out (B, T, T, 3) uint8 (T may differ from S: a
    centre crop of the transformed image). Per image b: rotate by angles[b]
    degrees counterclockwise, magnify by scales[b] (> 1 zooms in), shift by
    (shifts_y[b], shifts_x[b]) output pixels, then mirror the columns if
    flips[b]. Angles of 90k degrees with scale 1 and no shift reproduce
    `dihedral_batch` code k (+4 if flipped).
    """
    for b in prange(src.shape[0]):
        _rotate_zoom_one(src, b, angles[b], scales[b], shifts_y[b], shifts_x[b], flips[b] != 0, out)


@njit(cache=True)
def rotate_zoom_batch_serial(src, angles, scales, shifts_y, shifts_x, flips, out):
    """`rotate_zoom_batch` on one thread (for forked worker processes)."""
    for b in range(src.shape[0]):
        _rotate_zoom_one(src, b, angles[b], scales[b], shifts_y[b], shifts_x[b], flips[b] != 0, out)
