"""A synthetic Galaxy Zoo data set in the Kaggle layout, so that everything runs without the real data.

Each galaxy is drawn from a small generative model (Sérsic bulge, inclined
exponential disc, optional bar, logarithmic spiral arms, ring, dust lane,
companions, clumps; sky noise, PSF, stars and artefacts) and its 37 labels
come from simulated volunteers who answer the Galaxy Zoo decision tree about
the parameters that drew it. The labels therefore obey the tree exactly and
carry signal that a model can learn from the pixels.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np
import simplejpeg

from . import _synth_render as R
from .errors import InputError
from .tree import CLASS_NAMES, PARENT_COLUMN, QUESTION_SLICES, SCALING_ORDER

TRAIN_FOLDER = "images_training_rev1"
TEST_FOLDER = "images_test_rev1"
LABELS_CSV = "training_solutions_rev1.csv"

_FIRST_ID, _ID_SPAN = 100000, 900000  # six-digit GalaxyIDs, like the real ones
_JPEG_QUALITY = 75  # the real images use the libjpeg quality-75 tables, 4:2:0
_BATCH = 64
_MAX_BLOBS = 64

# Galaxy kinds and odd features of the generative model.
ELLIPTICAL, DISC, EDGE_ON, STAR = 0, 1, 2, 3
NONE, RING, LENS, DISTURBED, IRREGULAR, OTHER, MERGER = 0, 1, 2, 3, 4, 5, 6

#: Per kind, the chance of each odd feature (NONE, RING, LENS, DISTURBED, IRREGULAR, OTHER, MERGER).
_ODD_CHANCE = {
    ELLIPTICAL: (0.83, 0.03, 0.03, 0.02, 0.00, 0.03, 0.06),
    DISC: (0.76, 0.06, 0.00, 0.05, 0.07, 0.03, 0.03),
    EDGE_ON: (0.87, 0.00, 0.00, 0.04, 0.00, 0.03, 0.06),
    STAR: (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
_KIND_CHANCE = (0.34, 0.53, 0.12, 0.01)
_CROWD_CONCENTRATION = 25.0  # how much one galaxy's crowd may disagree with the chances (Dirichlet)

_BULGE_RGB = np.array([1.3, 1.0, 0.7])
_DISC_RGB = np.array([1.02, 1.00, 0.98])
_BLUE_RGB = np.array([0.78, 0.96, 1.26])
_STAR_RGB = np.array([[1.6, 0.9, 0.5], [1.3, 1.0, 0.7], [1.0, 1.0, 1.0], [0.75, 0.95, 1.3]])


@dataclass(frozen=True)
class SynthResult:
    """What `synthesize` wrote, and how long it took."""

    out_dir: Path
    n_train: int
    n_test: int
    train_images: Path
    test_images: Path | None
    labels_csv: Path
    seconds: float


# --------------------------------------------------------------------------- population


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _draw_population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The truth about n galaxies: what they are and their parameters, lengths in pixels of a 424-px image."""
    t: dict[str, np.ndarray] = {}
    kind = rng.choice(4, n, p=_KIND_CHANCE)
    odd = np.zeros(n, dtype=np.int64)
    for k, chance in _ODD_CHANCE.items():
        sel = kind == k
        odd[sel] = rng.choice(7, int(sel.sum()), p=chance)
    is_disc, is_edge = kind == DISC, kind == EDGE_ON
    irregular = odd == IRREGULAR

    t["kind"], t["odd"] = kind, odd
    t["pa"] = rng.uniform(0, math.pi, n)
    t["psf"] = rng.uniform(1.0, 2.6, n)
    t["level"] = _log_uniform(rng, 1.5, 8.0, n)
    t["dx"], t["dy"] = rng.normal(0, 1.0, (2, n))

    # ellipticals: Sérsic index and roundness (drives Class7)
    t["re"] = np.clip(np.exp(rng.normal(math.log(26.0), 0.3, n)), 10.0, 60.0)
    t["n"] = rng.uniform(2.5, 5.0, n)
    round_class = rng.choice(3, n, p=(0.42, 0.45, 0.13))
    t["q_ell"] = np.choose(round_class, [rng.uniform(0.8, 1.0, n), rng.uniform(0.5, 0.8, n),
                                         rng.uniform(0.25, 0.5, n)])

    # discs: scale length, inclination, bulge-to-total (drives Class5)
    t["h"] = np.clip(np.exp(rng.normal(math.log(24.0), 0.25, n)), 12.0, 45.0)
    cos_i = rng.uniform(0.3, 1.0, n)
    q_disc = np.sqrt(cos_i**2 * (1 - 0.12**2) + 0.12**2)
    q_edge = rng.uniform(0.07, 0.2, n)
    t["q_disc"] = np.where(is_edge, q_edge, q_disc)
    bulge_class = rng.choice(4, n, p=(0.05, 0.47, 0.40, 0.08))
    bt = np.choose(bulge_class, [rng.uniform(0.0, 0.04, n), rng.uniform(0.04, 0.22, n),
                                 rng.uniform(0.22, 0.5, n), rng.uniform(0.5, 0.75, n)])
    bt[irregular] = rng.uniform(0.0, 0.05, n)[irregular]
    # edge-on bulge shape (Class9): rounded / boxy / none
    edge_bulge = rng.choice(3, n, p=(0.6, 0.1, 0.3))
    bt_edge = np.choose(edge_bulge, [rng.uniform(0.1, 0.5, n), rng.uniform(0.15, 0.45, n), np.zeros(n)])
    t["bt"] = np.where(is_edge, bt_edge, np.where(is_disc, bt, 0.0))
    t["edge_bulge"] = np.where(is_edge, edge_bulge, -1)
    t["bulge_re_frac"] = rng.uniform(0.15, 0.4, n)
    t["bulge_n"] = rng.uniform(1.5, 4.0, n)
    t["bulge_q"] = rng.uniform(0.75, 1.0, n)

    # bars (Class3) and spiral arms (Class4, 10, 11), only on face-on-ish discs
    t["bar"] = is_disc & ~irregular & (rng.random(n) < 0.28)
    t["bar_amp"] = rng.uniform(0.5, 1.5, n)
    t["bar_len"] = rng.uniform(0.8, 1.8, n)
    t["bar_axis"] = rng.uniform(0.25, 0.4, n)
    t["bar_angle"] = rng.uniform(0, math.pi, n)
    t["arms"] = is_disc & ~irregular & (rng.random(n) < 0.78 - 0.6 * t["bt"])
    t["m"] = rng.choice(np.arange(1, 7), n, p=(0.06, 0.62, 0.14, 0.09, 0.06, 0.03))
    wind = rng.choice(3, n, p=(0.45, 0.38, 0.17))
    t["pitch"] = np.choose(wind, [rng.uniform(9, 15, n), rng.uniform(15, 25, n), rng.uniform(25, 40, n)])
    t["arm_amp"] = rng.uniform(0.3, 0.85, n)
    t["arm_sharp"] = rng.integers(2, 7, n)
    t["arm_phase"] = rng.uniform(0, 2 * math.pi, n)

    # edge-on dust lanes
    t["dust"] = is_edge & (rng.random(n) < 0.2)
    t["dust_depth"] = rng.uniform(0.5, 0.9, n)

    # things around the galaxy that change how it is voted
    t["bright_star"] = kind != STAR
    t["bright_star"] &= rng.random(n) < 0.05
    t["trail"] = rng.random(n) < 0.015
    t["star_kind"] = rng.choice(3, n, p=(0.6, 0.25, 0.15))  # for STAR: bright star, faint point, trail
    t["sky_sigma"] = rng.uniform(0.06, 0.13, n)
    t["noise_step"] = rng.choice([2, 3, 4], n, p=(0.5, 0.35, 0.15))
    t["sky_level"] = rng.uniform(0.6, 1.4, n)
    return t


def _sersic_total(ie: np.ndarray | float, re, n, q):
    """Total flux of a Sérsic profile of surface brightness ie at re."""
    b = 2 * n - 1 / 3 + 0.009876 / n
    log_gamma = np.vectorize(math.lgamma, otypes=[float])(2 * n)
    return ie * 2 * np.pi * n * re**2 * q * np.exp(b + log_gamma - 2 * n * np.log(b))


def _render_params(t: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Per-image parameter rows for `_synth_render.render_batch`, lengths scaled to `size` pixels."""
    n = t["kind"].shape[0]
    sc = size / 424.0
    p = np.zeros((n, R.N_PARAMS))
    kind, odd = t["kind"], t["odd"]
    is_ell, is_disc, is_edge = kind == ELLIPTICAL, kind == DISC, kind == EDGE_ON

    p[:, R.P_CX] = size / 2 + t["dx"] * sc
    p[:, R.P_CY] = size / 2 + t["dy"] * sc
    p[:, R.P_PA] = t["pa"]
    p[:, R.P_PSF] = np.maximum(t["psf"] * sc, 0.5)
    p[:, R.P_LEVEL] = t["level"]
    p[:, R.P_SKY_SIGMA:R.P_SKY_SIGMA + 3] = t["sky_sigma"][:, None] * np.array([0.9, 1.05, 0.8])
    p[:, R.P_NOISE_STEP] = t["noise_step"]
    p[:, R.P_SKY_RGB:R.P_SKY_RGB + 3] = np.array([0.10, 0.10, 0.05]) * t["sky_level"][:, None]

    h = t["h"] * sc
    re_b = np.where(is_ell, t["re"] * sc, t["bulge_re_frac"] * h)
    n_b = np.where(is_ell, t["n"], t["bulge_n"])
    q_b = np.where(is_ell, t["q_ell"], np.maximum(t["bulge_q"], t["q_disc"]))
    edge_boxy = is_edge & (t["edge_bulge"] == 1)
    q_b = np.where(edge_boxy, np.minimum(q_b, 0.75), q_b)
    # amplitudes: ellipticals are pure bulge; discs split their light by B/T
    disc_total = 2 * np.pi * h**2 * t["q_disc"]
    bt = t["bt"]
    unit_bulge = _sersic_total(1.0, re_b, n_b, q_b)
    bulge_amp = np.where(is_ell, 1.0, np.where(bt > 0, bt / np.maximum(1 - bt, 1e-6) * disc_total / unit_bulge, 0.0))
    disc_amp = np.where(is_disc | is_edge, 1.0, 0.0)
    p[:, R.P_BULGE_AMP] = bulge_amp
    p[:, R.P_BULGE_RE] = re_b
    p[:, R.P_BULGE_N] = n_b
    p[:, R.P_BULGE_Q] = q_b
    p[:, R.P_BULGE_BOXY] = np.where(edge_boxy, 3.5, 2.0)
    p[:, R.P_DISC_AMP] = disc_amp
    p[:, R.P_DISC_H] = h
    p[:, R.P_DISC_Q] = t["q_disc"]

    arms = t["arms"]
    p[:, R.P_ARM_M] = np.where(arms, t["m"], 0)
    p[:, R.P_ARM_TANPSI] = np.tan(np.radians(t["pitch"]))
    p[:, R.P_ARM_PHASE] = t["arm_phase"]
    p[:, R.P_ARM_AMP] = t["arm_amp"]
    p[:, R.P_ARM_SHARP] = t["arm_sharp"]
    bar_len = t["bar_len"] * h
    p[:, R.P_ARM_RIN] = np.maximum(np.maximum(2.0 * re_b, np.where(t["bar"], bar_len, 0.0)), 0.4 * h) + 0.3 * h
    p[:, R.P_BAR_AMP] = np.where(t["bar"], t["bar_amp"], 0.0)
    p[:, R.P_BAR_A] = bar_len
    p[:, R.P_BAR_B] = bar_len * t["bar_axis"]
    p[:, R.P_BAR_ANGLE] = t["bar_angle"]

    ring = odd == RING
    lens = odd == LENS
    p[:, R.P_RING_AMP] = np.where(ring, 0.55, np.where(lens, 1.2, 0.0))
    p[:, R.P_RING_R] = np.where(is_ell, 2.2 * re_b, 2.2 * h)
    p[:, R.P_RING_W] = np.where(lens, 0.12, 0.22) * np.where(is_ell, re_b, h)
    p[:, R.P_RING_PHI0] = t["arm_phase"]
    p[:, R.P_RING_COSSPAN] = np.where(lens, math.cos(math.radians(40)), -2.0)
    # ellipticals carry a ring or arc on a faint, round "disc" plane
    plane = is_ell & (ring | lens)
    p[plane, R.P_DISC_AMP] = 1e-9
    p[plane, R.P_DISC_H] = re_b[plane] * 3.0
    p[plane, R.P_DISC_Q] = np.where(lens[plane], 1.0, t["q_ell"][plane])
    # disturbed: the disc is off-centre from the bulge; ellipticals get an offset faint envelope
    dist = odd == DISTURBED
    off = np.where(is_ell, 1.5 * re_b, 0.5 * h) * dist
    p[:, R.P_DISC_DX] = off * np.cos(t["arm_phase"])
    p[:, R.P_DISC_DY] = off * np.sin(t["arm_phase"]) * 0.5
    env = is_ell & dist
    p[env, R.P_DISC_AMP] = 0.3 * _sersic_total(1.0, re_b[env], n_b[env], q_b[env]) / (2 * np.pi * (2 * re_b[env]) ** 2)
    p[env, R.P_DISC_H] = 2 * re_b[env]
    p[env, R.P_DISC_Q] = 0.7

    dust = t["dust"]
    thick = h * t["q_disc"]
    p[:, R.P_DUST_DEPTH] = np.where(dust, t["dust_depth"], 0.0)
    p[:, R.P_DUST_W] = np.maximum(thick * 0.5, 1.2 * p[:, R.P_PSF])  # wider than the PSF, or it blurs away
    p[:, R.P_DUST_OFFSET] = thick * 0.3 * np.cos(t["arm_phase"])

    jitter = 1 + 0.12 * np.sin(5 * t["pa"] + t["arm_phase"])[:, None] * np.array([1.0, 0.0, -1.0])  # redder/bluer
    p[:, R.P_BULGE_RGB:R.P_BULGE_RGB + 3] = _BULGE_RGB * jitter
    p[:, R.P_DISC_RGB:R.P_DISC_RGB + 3] = np.where(is_ell[:, None], _BULGE_RGB, _DISC_RGB) * jitter
    p[:, R.P_ARM_RGB:R.P_ARM_RGB + 3] = _BLUE_RGB
    p[:, R.P_RING_RGB:R.P_RING_RGB + 3] = np.where(lens[:, None], np.array([0.6, 0.9, 1.5]), _BLUE_RGB)

    p[:, R.P_RC] = np.where(is_ell, re_b, 1.7 * h)
    p[:, R.P_RC_Q] = np.where(is_ell, q_b, t["q_disc"])
    # draw out to where the light falls below ~0.02 (under one 8-bit step), plus the fading quarter
    faint = np.log(t["level"] / 0.02)
    reach_ell = re_b * (1 + faint / (2 * n_b - 1 / 3)) ** n_b
    reach_disc = h * (1.7 + faint)
    reach = np.where(is_ell, reach_ell, reach_disc)
    reach = np.maximum(reach, p[:, R.P_RING_R] + 4 * p[:, R.P_RING_W]) / 0.8
    p[:, R.P_BOX] = np.where(kind == STAR, 1.0, np.clip(reach, 12 * sc, 0.75 * size))
    p[:, R.P_BLUR] = np.where(kind == STAR, 1.0, np.minimum(p[:, R.P_BOX], 2.5 * p[:, R.P_RC] + 8 * sc))
    return p


def _blobs(t: dict[str, np.ndarray], i: int, p_row: np.ndarray, rng: np.random.Generator,
           size: int) -> tuple[np.ndarray, int]:
    """Blob rows of image i: background galaxies and stars, and its odd features made of blobs."""
    sc = size / 424.0
    rows: list[list[float]] = []
    cx, cy = p_row[R.P_CX], p_row[R.P_CY]
    psf = p_row[R.P_PSF]

    def add(kind, x, y, amp, sz, n=1.0, q=1.0, pa=0.0, rgb=(1.0, 1.0, 1.0)):
        rows.append([kind, x, y, amp, sz, n, q, pa, *rgb])

    def anywhere(min_r):
        while True:
            x, y = rng.uniform(0, size, 2)
            if math.hypot(x - cx, y - cy) >= min_r:
                return x, y

    for _ in range(rng.poisson(9)):
        x, y = anywhere(45 * sc)
        mix = rng.random()
        add(R.KIND_SHARP_BLOB, x, y, math.exp(rng.uniform(math.log(0.4), math.log(10.0))),
            rng.uniform(1.5, 5.0) * sc, rng.uniform(0.7, 2.5), rng.uniform(0.35, 1.0), rng.uniform(0, math.pi),
            tuple(_BULGE_RGB * (1 - mix) + _BLUE_RGB * mix))
    for _ in range(rng.poisson(5)):
        x, y = anywhere(45 * sc)
        add(R.KIND_STAR, x, y, math.exp(rng.uniform(math.log(0.5), math.log(60.0))), 2.3 * psf * rng.uniform(1.0, 1.3),
            0.0, rgb=tuple(_STAR_RGB[rng.integers(4)]))
    if t["bright_star"][i]:
        ang, r = rng.uniform(0, 2 * math.pi), rng.uniform(70, 190) * sc
        amp = math.exp(rng.uniform(math.log(200.0), math.log(4000.0)))
        add(R.KIND_STAR, cx + r * math.cos(ang), cy + r * math.sin(ang), amp, 2.3 * psf,
            rng.uniform(25, 80) * sc, rgb=tuple(_STAR_RGB[rng.integers(1, 4)]))
    if t["trail"][i]:
        x, y = rng.uniform(0, size, 2)
        add(R.KIND_TRAIL, x, y, rng.uniform(0.5, 3.0), rng.uniform(0.8, 1.6) * sc, pa=rng.uniform(0, math.pi),
            rgb=(0.3, 2.4, 0.3) if rng.random() < 0.5 else (2.4, 0.3, 0.3))

    kind, odd = t["kind"][i], t["odd"][i]
    h = p_row[R.P_DISC_H]
    main_size = max(2 * h if kind != ELLIPTICAL else 0.0, 1.5 * p_row[R.P_BULGE_RE])
    if kind == STAR:
        sk = t["star_kind"][i]
        if sk == 0:
            amp = math.exp(rng.uniform(math.log(100.0), math.log(5000.0)))
            add(R.KIND_STAR, cx, cy, amp, 2.3 * psf, rng.uniform(30, 90) * sc if amp > 300 else 0.0,
                rgb=tuple(_STAR_RGB[rng.integers(4)]))
        elif sk == 1:
            add(R.KIND_STAR, cx, cy, rng.uniform(10.0, 60.0), 2.3 * psf, 0.0, rgb=tuple(_STAR_RGB[rng.integers(4)]))
        else:
            add(R.KIND_TRAIL, cx, cy, rng.uniform(1.0, 5.0), rng.uniform(1.0, 2.5) * sc, pa=rng.uniform(0, math.pi),
                rgb=(0.3, 2.4, 0.3) if rng.random() < 0.5 else (2.4, 0.3, 0.3))
    elif odd == MERGER:
        # a companion of comparable size close by, drawn in the galaxy layer so that both share the PSF
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.9, 2.2) * main_size + 6 * sc
        re_c = main_size * rng.uniform(0.3, 0.7)
        n_c = rng.uniform(1.0, 4.0)
        centre = _central_value(p_row)
        add(R.KIND_GALAXY_BLOB, cx + dist * math.cos(ang), cy + dist * math.sin(ang),
            centre * rng.uniform(0.3, 1.0), re_c, n_c, rng.uniform(0.5, 1.0), rng.uniform(0, math.pi),
            tuple(_BULGE_RGB * rng.uniform(0.9, 1.1)))
    elif odd == IRREGULAR:
        centre = _central_value(p_row)
        for _ in range(rng.integers(5, 13)):
            r, ang = h * 2.0 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            u, v = r * math.cos(ang), r * math.sin(ang) * p_row[R.P_DISC_Q]
            c, s = math.cos(p_row[R.P_PA]), math.sin(p_row[R.P_PA])
            add(R.KIND_GALAXY_BLOB, cx + u * c - v * s, cy + u * s + v * c, centre * rng.uniform(0.2, 0.8),
                h * rng.uniform(0.1, 0.25), 0.8, rng.uniform(0.6, 1.0), 0.0, tuple(_BLUE_RGB))
    elif odd == OTHER:
        ang, r = rng.uniform(0, 2 * math.pi), main_size + rng.uniform(3, 20) * sc
        amp = math.exp(rng.uniform(math.log(5.0), math.log(80.0)))
        add(R.KIND_STAR, cx + r * math.cos(ang), cy + r * math.sin(ang), amp, 2.3 * psf, 0.0,
            rgb=tuple(_STAR_RGB[rng.integers(4)]))
    if t["arms"][i] and kind == DISC:
        # star-forming knots along the arm ridges
        m, tan_psi = p_row[R.P_ARM_M], p_row[R.P_ARM_TANPSI]
        r_in, phase = p_row[R.P_ARM_RIN], p_row[R.P_ARM_PHASE]
        c, s = math.cos(p_row[R.P_PA]), math.sin(p_row[R.P_PA])
        for _ in range(rng.integers(3, 12)):
            r = rng.uniform(r_in, 3.0 * h)
            phi = (2 * math.pi * rng.integers(int(m)) - phase) / m + math.log(r / r_in) / tan_psi + rng.normal(0, 0.05)
            u, v = r * math.cos(phi), r * math.sin(phi) * p_row[R.P_DISC_Q]
            add(R.KIND_GALAXY_BLOB, cx + u * c - v * s, cy + u * s + v * c,
                math.exp(-r / h) * p_row[R.P_ARM_AMP] * rng.uniform(1.5, 5.0), rng.uniform(0.8, 2.0) * sc, 1.0,
                1.0, 0.0, tuple(_BLUE_RGB))
    out = np.zeros((_MAX_BLOBS, R.N_BLOB))
    rows = rows[:_MAX_BLOBS]
    if rows:
        out[: len(rows)] = rows
    return out, len(rows)


def _central_value(p_row: np.ndarray) -> float:
    """Unblurred galaxy-layer brightness at the centre (mean of channels), to size companions and clumps."""
    n = p_row[R.P_BULGE_N]
    b = 2 * n - 1 / 3 + 0.009876 / n
    x = 0.25 / p_row[R.P_BULGE_RE] ** 2
    bulge = p_row[R.P_BULGE_AMP] * math.exp(-b * (x ** (0.5 / n) - 1))
    return bulge + p_row[R.P_DISC_AMP]


# --------------------------------------------------------------------------- votes


def _soft_bins(x: np.ndarray, centres, width: float, floor: float) -> np.ndarray:
    d = (x[:, None] - np.asarray(centres)[None, :]) / width
    p = np.exp(-0.5 * d * d) + floor
    return p / p.sum(axis=1, keepdims=True)


def _answer_chances(t: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per question (Kaggle order), each simulated volunteer's chance of each answer, shape (N, k)."""
    kind, odd = t["kind"], t["odd"]
    n = kind.shape[0]
    is_ell, is_disc, is_edge, is_star = (kind == k for k in (ELLIPTICAL, DISC, EDGE_ON, STAR))
    size = np.where(is_ell, 1.5 * t["re"], 2.0 * t["h"])
    resolved = np.clip((size - 8.0) / 22.0, 0.0, 1.0)
    arms, bar = t["arms"], t["bar"]
    has_odd = odd != NONE
    bt = t["bt"]

    # Q1 smooth / features / star
    structure = np.maximum.reduce([arms * t["arm_amp"], bar * 0.8, (odd == RING) * 0.6, (odd == IRREGULAR) * 0.8,
                                   (odd == DISTURBED) * 0.5])
    feat_disc = 0.34 + 0.63 * (0.3 + 0.7 * structure) * (0.5 + 0.5 * resolved) - 0.2 * bt
    feat_edge = 0.55 + 0.4 * resolved * (1 - bt)
    feat_ell = 0.08 + 0.15 * has_odd + 0.15 * (t["q_ell"] < 0.45)
    features = np.select([is_ell, is_disc, is_edge], [feat_ell, feat_disc, feat_edge], 0.08)
    star = np.where(is_star, np.where(t["star_kind"] == 1, 0.35, 0.6), 0.015 + 0.04 * (t["bright_star"] | t["trail"]))
    smooth = np.clip(1 - features - star, 0.02, None)
    q1 = np.stack([smooth, features, star], 1)

    # Q2 edge-on
    q_proj = np.where(is_ell, t["q_ell"], t["q_disc"])
    edge = np.select([is_edge, is_disc, is_ell], [0.8 + 1.1 * (0.2 - q_proj),
                                                  0.03 + 0.5 * np.clip((0.45 - q_proj) / 0.2, 0, 1),
                                                  0.05 + 0.5 * np.clip((0.45 - q_proj) / 0.2, 0, 1)], 0.1)
    q2 = np.stack([edge, 1 - edge], 1)

    # Q3 bar
    bar_yes = np.where(bar, 0.5 + 0.4 * np.minimum(t["bar_amp"] / 1.2, 1) * (0.4 + 0.6 * resolved), 0.06)
    q3 = np.stack([bar_yes, 1 - bar_yes], 1)

    # Q4 spiral
    spiral = np.where(arms, 0.3 + 0.65 * t["arm_amp"] * (0.5 + 0.5 * resolved),
                      np.select([odd == IRREGULAR, is_edge, is_ell], [0.3, 0.3, 0.12], 0.1))
    spiral = np.clip(spiral, 0.02, 0.97)
    q4 = np.stack([spiral, 1 - spiral], 1)

    # Q5 bulge prominence from B/T (ellipticals: as dominant as it gets)
    q5 = _soft_bins(np.where(is_ell | is_star, 0.45, bt), (-0.05, 0.12, 0.33, 0.65), 0.1, 0.02)

    # Q6 anything odd
    odd_yes = np.select([has_odd, t["dust"], t["bright_star"] | t["trail"]], [0.65, 0.3, 0.3], 0.13)
    q6 = np.stack([odd_yes, 1 - odd_yes], 1)

    # Q7 roundness from the projected axis ratio
    q7 = _soft_bins(q_proj, (0.95, 0.6, 0.25), 0.12, 0.02)

    # Q8 which odd feature: ring, lens, disturbed, irregular, other, merger, dust lane
    prior = np.array([0.15, 0.056, 0.14, 0.175, 0.28, 0.18, 0.013])
    feature = np.select([odd == RING, odd == LENS, odd == DISTURBED, odd == IRREGULAR, odd == OTHER, odd == MERGER,
                         t["dust"], t["bright_star"] | t["trail"]], [0, 1, 2, 3, 4, 5, 6, 4], -1)
    onehot = np.zeros((n, 7))
    onehot[np.arange(n), np.maximum(feature, 0)] = feature >= 0
    weight = np.where(feature == 6, 0.4, 0.7)[:, None]
    q8 = np.where((feature >= 0)[:, None], weight * onehot + (1 - weight) * prior, prior)

    # Q9 edge-on bulge: rounded / boxy / none
    shape = np.where(is_edge, t["edge_bulge"], np.where(bt > 0.1, 0, 2))
    q9 = 0.75 * np.eye(3)[shape] + 0.25 * np.array([0.6, 0.1, 0.3])

    # Q10 winding from the pitch angle
    q10 = np.where(arms[:, None], _soft_bins(t["pitch"], (11.0, 20.0, 32.0), 4.0, 0.03), np.array([0.44, 0.39, 0.17]))

    # Q11 number of arms: 1, 2, 3, 4, more, can't tell
    clarity = np.where(arms, t["arm_amp"] * (0.3 + 0.7 * resolved) * (0.6 + 0.1 * t["arm_sharp"]), 0.0)
    count = np.eye(6)[np.minimum(t["m"], 5) - 1]
    blur = np.array([np.convolve(row, [0.1, 0.8, 0.1], mode="same") for row in count]) if n else count
    cant = np.array([0, 0, 0, 0, 0, 1.0])
    w = np.clip(0.1 + 0.75 * clarity, 0, 0.95)[:, None]
    q11_arms = w * blur + (1 - w) * (0.75 * cant + 0.25 * np.array([0.1, 0.6, 0.15, 0.1, 0.05, 0]))
    q11 = np.where(arms[:, None], q11_arms, np.array([0.05, 0.3, 0.05, 0.02, 0.03, 0.55]))

    return [q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11]


def _vote_fractions(t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Simulated volunteers walk the tree: each question is asked of those who gave its parent answer.

    Fractions are counts over all volunteers of a galaxy, so every question's
    answers sum to its parent answer exactly, as in the Kaggle labels. Each
    galaxy's crowd first gets its own opinion (a Dirichlet draw around the
    chances), then 30-60 volunteers vote: label noise of both kinds.
    """
    chances = _answer_chances(t)
    n = t["kind"].shape[0]
    voters = rng.integers(30, 61, n)
    counts = np.zeros((n, len(CLASS_NAMES)), dtype=np.int64)
    for q in SCALING_ORDER:
        col = PARENT_COLUMN[q]
        asked = voters if col is None else counts[:, col]
        p = np.clip(chances[q], 1e-3, None)
        opinion = rng.gamma(_CROWD_CONCENTRATION * p / p.sum(axis=1, keepdims=True))
        opinion = np.clip(opinion, 1e-12, None)
        counts[:, QUESTION_SLICES[q]] = rng.multinomial(asked, opinion / opinion.sum(axis=1, keepdims=True))
    return counts / voters[:, None]


# --------------------------------------------------------------------------- public API


_TRAIN, _TEST = 0, 1  # the two parts of a data set draw from separate streams
_BLOCK = 256  # galaxies are drawn in blocks with their own streams, so a set is a prefix of a larger one


def _ids(seed: int, n: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct six-digit GalaxyIDs: training ids from the front of one permutation, test ids from its back."""
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9,))).permutation(_ID_SPAN) + _FIRST_ID
    return perm[:n].astype(np.int64), perm[_ID_SPAN - n_test:].astype(np.int64)


def _plan(seed: int, part: int, count: int, size: int):
    """Truth, labels and parameter rows of galaxies 0..count-1 of one part."""
    truths, labels = [], []
    for block in range((count + _BLOCK - 1) // _BLOCK):
        truth = _draw_population(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(part, 0, block))),
                                 _BLOCK)
        truths.append(truth)
        labels.append(_vote_fractions(truth, np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(part, 1, block)))))
    truth = {k: np.concatenate([t[k] for t in truths])[:count] for k in truths[0]} if truths else {}
    label = np.concatenate(labels)[:count] if labels else np.zeros((0, len(CLASS_NAMES)))
    return truth, label, _render_params(truth, size) if truths else np.zeros((0, R.N_PARAMS))


def _render_range(truth, params, seed: int, part: int, start: int, stop: int, size: int) -> np.ndarray:
    """Images start..stop-1 of a part, uint8 (B, size, size, 3); each image draws from its own stream."""
    count = stop - start
    rows = params[start:stop].copy()
    blobs = np.zeros((count, _MAX_BLOBS, R.N_BLOB))
    n_blobs = np.zeros(count, dtype=np.int64)
    seeds = np.zeros(count, dtype=np.uint64)
    for k in range(count):
        i = start + k
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(part, 2, i)))
        seeds[k] = rng.integers(0, 2**63, dtype=np.uint64)
        blobs[k], n_blobs[k] = _blobs(truth, i, rows[k], rng, size)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    R.render_batch(rows, blobs, n_blobs, seeds, out, max(1, min(numba.get_num_threads(), count)))
    return out


def synthesize_arrays(n: int, *, seed: int = 0, size: int = 424) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (n,), images (n, size, size, 3) uint8, labels (n, 37)): the training set of `synthesize`, in memory.

    Image k is the same for every n > k, so a small set is the start of a large one.
    """
    _check(n, 0, seed, size)
    truth, labels, params = _plan(seed, _TRAIN, n, size)
    return _ids(seed, n, 0)[0], _render_range(truth, params, seed, _TRAIN, 0, n, size), labels


def _check(n: int, n_test: int, seed: int, size: int) -> None:
    if n < 1 or n_test < 0:
        raise ValueError(f"need n >= 1 and n_test >= 0, got n={n}, n_test={n_test}")
    if n + n_test > _ID_SPAN:
        raise ValueError(f"at most {_ID_SPAN} images in all (six-digit GalaxyIDs), got {n + n_test}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 32 <= size <= 2048:
        raise ValueError(f"size must be within 32..2048, got {size}")


def _write_csv(path: Path, ids: np.ndarray, labels: np.ndarray) -> None:
    """Kaggle solution CSV, rows by GalaxyID; written under a temporary name, then renamed."""
    order = np.argsort(ids, kind="stable")
    lines = ["GalaxyID," + ",".join(CLASS_NAMES)]
    for i in order:
        lines.append(f"{ids[i]}," + ",".join(f"{v:.6f}" for v in labels[i]))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    os.replace(tmp, path)


def _prepare_folders(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "is a file, not a folder")
    for folder in (out / TRAIN_FOLDER, out / TEST_FOLDER):
        if folder.exists() and not folder.is_dir():
            raise InputError(str(folder), "is a file, not a folder")
        old = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if old and not overwrite:
            raise InputError(str(folder), f"already holds {len(old)} images; choose a new folder or overwrite")
        for f in old:
            f.unlink()
    csv_path = out / LABELS_CSV
    if csv_path.exists() and overwrite:
        csv_path.unlink()


def synthesize(out_dir: str | Path, n: int, *, n_test: int = 0, seed: int = 0, size: int = 424,
               workers: int | None = None, progress: Callable[[int], None] | None = None,
               overwrite: bool = False) -> SynthResult:
    """Write a synthetic data set in the Kaggle layout under out_dir; the same arguments give the same bytes.

    n training images with labels, n_test test images without. The training
    set does not depend on n_test, and a smaller n gives a subset of a larger
    one. The CSV is written last (under a temporary name, then renamed), so a
    folder with the CSV is complete. A folder that already holds images is
    refused unless overwrite=True, which first removes the *.jpg files in the
    two image folders and the old CSV, so no stale image survives.
    """
    _check(n, n_test, seed, size)
    start_time = time.perf_counter()
    out = Path(out_dir)
    _prepare_folders(out, overwrite)
    train_dir = out / TRAIN_FOLDER
    test_dir = out / TEST_FOLDER
    train_dir.mkdir(parents=True, exist_ok=True)
    if n_test > 0:
        test_dir.mkdir(parents=True, exist_ok=True)

    train_ids, test_ids = _ids(seed, n, n_test)
    train_truth, labels, train_params = _plan(seed, _TRAIN, n, size)
    parts = [(_TRAIN, train_truth, train_params, train_ids, train_dir)]
    if n_test > 0:
        test_truth, _, test_params = _plan(seed, _TEST, n_test, size)
        parts.append((_TEST, test_truth, test_params, test_ids, test_dir))
    threads = max(1, workers if workers is not None else (os.cpu_count() or 1))
    old_threads = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    def encode_and_write(image: np.ndarray, path: Path) -> None:
        path.write_bytes(simplejpeg.encode_jpeg(image, quality=_JPEG_QUALITY, colorspace="RGB",
                                                colorsubsampling="420"))

    done = 0
    try:
        with ThreadPoolExecutor(threads) as pool:
            pending: list = []  # the previous batch encodes while the next one renders
            for part, truth, params, ids, folder in parts:
                for start in range(0, len(ids), _BATCH):
                    stop = min(start + _BATCH, len(ids))
                    images = _render_range(truth, params, seed, part, start, stop, size)
                    for future in pending:
                        future.result()
                    if pending:
                        done += len(pending)
                        if progress is not None:
                            progress(done)
                    pending = [pool.submit(encode_and_write, images[k], folder / f"{ids[start + k]}.jpg")
                               for k in range(stop - start)]
            for future in pending:
                future.result()
            done += len(pending)
            if progress is not None and pending:
                progress(done)
    finally:
        numba.set_num_threads(old_threads)
    _write_csv(out / LABELS_CSV, train_ids, labels)
    return SynthResult(out, n, n_test, train_dir, test_dir if n_test > 0 else None, out / LABELS_CSV,
                       time.perf_counter() - start_time)
