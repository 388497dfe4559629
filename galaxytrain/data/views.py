"""What the network sees: read -> view -> normalize, for training batches and prediction alike.

A view turns a uint8 batch (B, S, S, 3) of stored images into the uint8
images a model takes (B', T, T, 3), T <= S: the centre, a random symmetry of
the square, a random rotation/zoom/shift/flip, or the fixed set of test-time
views. Views are objects passed in (`GalaxyBatches(view=...)`), not names
looked up deep inside; `training_view` maps fit's ``--augment`` to one.
`Normalization` then gives float32 ``(x - mean) / std`` per channel.

Every numba kernel call goes through `_kernel`, the one place that chooses
between a parallel kernel and its serial twin (see `galaxytrain.runtime`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galaxyprep import InputError, normalize_batch, normalize_batch_serial

from ..choices import AUGMENTS, Augment
from ..runtime import parallel_kernels_allowed
from .kernels import dihedral_batch, dihedral_batch_serial, rotate_zoom_batch, rotate_zoom_batch_serial


def _kernel(parallel, serial):
    """The parallel kernel where this process may run it, else its serial twin (bit for bit the same)."""
    return parallel if parallel_kernels_allowed() else serial


# -- geometry ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RotateRanges:
    """How far the random views of ``augment="rotate"`` range (Dieleman 2015's choices by default).

    Each image: rotation U(0, 360) degrees; a shift U(-max_shift, max_shift)
    output pixels along each axis; a zoom log-uniform in [1/max_zoom,
    max_zoom]; mirrored with probability 1/2 when ``flip``.
    """

    max_shift: float = 4.0
    max_zoom: float = 1.3
    flip: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_shift) and self.max_shift >= 0):
            raise ValueError(f"max_shift must be a finite number >= 0, got {self.max_shift!r}")
        if not (math.isfinite(self.max_zoom) and self.max_zoom >= 1):
            raise ValueError(f"max_zoom must be a finite number >= 1, got {self.max_zoom!r}")


def draw_views(rng: np.random.Generator, n: int, ranges: RotateRanges) -> tuple[np.ndarray, ...]:
    """(angles, scales, shifts_y, shifts_x, flips) of n random views, the arguments of `rotate_zoom_batch`."""
    angles = rng.uniform(0.0, 360.0, n)
    log_zoom = math.log(ranges.max_zoom)
    scales = np.exp(rng.uniform(-log_zoom, log_zoom, n))
    shifts = rng.uniform(-ranges.max_shift, ranges.max_shift, (2, n))
    flips = rng.integers(0, 2, n) if ranges.flip else np.zeros(n, dtype=np.int64)
    return angles, scales, shifts[0].copy(), shifts[1].copy(), flips.astype(np.uint8)


def rotated_views(images: np.ndarray, size: int, angles, scales=None, shifts_y=None, shifts_x=None,
                  flips=None) -> np.ndarray:
    """`rotate_zoom_batch` into a new (B, size, size, 3) array; missing parameters mean none."""
    n = images.shape[0]
    angles = np.broadcast_to(np.asarray(angles, dtype=np.float64), (n,))
    ones, zeros = np.ones(n), np.zeros(n)
    args = [np.ascontiguousarray(v) for v in (
        angles,
        ones if scales is None else np.asarray(scales, dtype=np.float64),
        zeros if shifts_y is None else np.asarray(shifts_y, dtype=np.float64),
        zeros if shifts_x is None else np.asarray(shifts_x, dtype=np.float64),
        np.zeros(n, dtype=np.uint8) if flips is None else np.asarray(flips, dtype=np.uint8))]
    out = np.empty((n, size, size, images.shape[3]), dtype=np.uint8)
    _kernel(rotate_zoom_batch, rotate_zoom_batch_serial)(np.ascontiguousarray(images), *args, out)
    return out


def dihedral(images: np.ndarray, codes) -> np.ndarray:
    """Each image under one of the 8 symmetries of the square (`dihedral_batch`'s codes), as a new array."""
    codes = np.ascontiguousarray(np.broadcast_to(np.asarray(codes, dtype=np.int64), (images.shape[0],)))
    out = np.empty_like(images)
    _kernel(dihedral_batch, dihedral_batch_serial)(np.ascontiguousarray(images), codes, out)
    return out


def centre_view(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size pixels of each image: the view a model trained on crops sees at test time.

    It is `rotate_zoom_batch` with no rotation, zoom or shift (so training
    views and this one share one geometry); when the margin is a whole number
    of pixels that is a plain slice, taken as one.
    """
    s = images.shape[1]
    if not 1 <= size <= s:
        raise ValueError(f"a centre view of {size} pixels needs images of at least that size, got {s}")
    if size == s:
        return images
    if (s - size) % 2 == 0:
        m = (s - size) // 2
        return np.ascontiguousarray(images[:, m:m + size, m:m + size])
    return rotated_views(images, size, 0.0)


# -- views as objects ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CentreView:
    """The centre `size` pixels: validation, and training without augmentation."""

    size: int
    n_views = 1

    def __call__(self, images: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return centre_view(images, self.size)


@dataclass(frozen=True)
class DihedralView:
    """A random one of the 8 symmetries of the square, then the centre."""

    size: int
    n_views = 1

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        codes = rng.integers(0, 8, size=images.shape[0]).astype(np.int64)
        return centre_view(dihedral(images, codes), self.size)


@dataclass(frozen=True)
class RotatedView:
    """A random rotation, zoom, shift and mirror within `ranges`, resampled into size x size about the centre."""

    size: int
    ranges: RotateRanges = RotateRanges()
    n_views = 1

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rotated_views(images, self.size, *draw_views(rng, images.shape[0], self.ranges))


def training_view(augment: Augment, size: int, ranges: RotateRanges | None = None):
    """The view for fit's ``--augment`` name: the one place a name becomes a transform."""
    if augment == "none":
        return CentreView(size)
    if augment == "dihedral":
        return DihedralView(size)
    if augment == "rotate":
        return RotatedView(size, RotateRanges() if ranges is None else ranges)
    raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")


#: The dihedral views averaged for each --tta value: (quarter turns, mirrored), the mirror first.
TTA_VIEWS: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (1, False), (2, False), (3, False)),
    8: tuple((k, m) for m in (False, True) for k in range(4)),
}

#: --tta values beyond 8: the 8 dihedral views at each of these turns (degrees) of the image.
TTA_TURNS: dict[int, tuple[float, ...]] = {
    16: (0.0, 45.0),
    24: (0.0, 30.0, 60.0),
    32: (0.0, 22.5, 45.0, 67.5),
}
TTA_CHOICES: tuple[int, ...] = tuple(TTA_VIEWS) + tuple(TTA_TURNS)


def check_tta(tta: int) -> None:
    if tta not in TTA_CHOICES:
        raise InputError("--tta", f"must be one of {', '.join(map(str, TTA_CHOICES))}, got {tta}")


def dihedral_code(quarter_turns: int, mirrored: bool) -> int:
    """`dihedral_batch`'s code of "mirror the columns, then turn by quarter_turns".

    The kernel turns first and mirrors after; a mirror turns the sense of
    rotation round (R^k F = F R^-k), so mirror-then-turn k is turn -k then mirror.
    """
    return ((-quarter_turns) % 4) + 4 if mirrored else quarter_turns % 4


@dataclass(frozen=True)
class TestTimeViews:
    """The `tta` fixed views whose predictions are averaged: (tta * B, T, T, 3), view-major.

    Up to 8: symmetries of the square of the centre view (TTA_VIEWS); 16, 24,
    32: those 8 of the image turned by each angle of TTA_TURNS.
    """

    __test__ = False  # not a pytest class, whatever its name

    size: int
    tta: int = 1

    def __post_init__(self) -> None:
        check_tta(self.tta)

    @property
    def n_views(self) -> int:
        return self.tta

    def __call__(self, images: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        views = []
        for turn in TTA_TURNS.get(self.tta, (0.0,)):
            base = centre_view(images, self.size) if turn == 0 else rotated_views(images, self.size, turn)
            for quarter_turns, mirrored in TTA_VIEWS[min(self.tta, 8)]:
                code = dihedral_code(quarter_turns, mirrored)
                views.append(base if code == 0 else dihedral(base, code))
        return views[0] if len(views) == 1 else np.concatenate(views, axis=0)


# -- colour -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColourNoise:
    """Krizhevsky et al. (2012)'s colour noise, which Dieleman (2015) used on these images.

    Each image of a normalized batch moves as a whole along the principal
    axes of the training pixels' colours: by ``alpha @ axes.T`` with alpha
    ~ N(0, sigma) per axis. `axes`' column k is the k-th axis scaled by its
    standard deviation (`colour_axes`), so sigma is a fraction of each
    axis' spread. The draws follow the view's on the batch's generator, so
    the geometry of a batch is the same with and without the noise.
    """

    axes: np.ndarray
    sigma: float

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        alpha = rng.normal(0.0, self.sigma, (x.shape[0], 3))
        x += (alpha @ np.asarray(self.axes).T).astype(np.float32)[:, None, None, :]
        return x


def colour_axes(images: np.ndarray, normalization: "Normalization") -> np.ndarray:
    """(3, 3): the principal axes of the normalized pixels' colours, each times its standard deviation."""
    pixels = normalization(images).reshape(-1, 3).astype(np.float64)
    values, vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    return vectors * np.sqrt(np.clip(values, 0.0, None))


# -- normalization ---------------------------------------------------------------------------------

class Normalization:
    """float32 ``(x - mean) / std`` per RGB channel, with a training file's statistics.

    Prediction must use the statistics of the file the model was trained on,
    not those of the file it predicts, so they travel as this object.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self._mean32 = self.mean.astype(np.float32)
        self._inv_std32 = (1.0 / self.std).astype(np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = np.empty(images.shape, dtype=np.float32)
        _kernel(normalize_batch, normalize_batch_serial)(np.ascontiguousarray(images), self._mean32,
                                                         self._inv_std32, out)
        return out
