"""The synthetic galaxies themselves: what each one is, and the tables the render kernels draw it from.

Each galaxy is drawn from a small generative model (Sérsic bulge, inclined
exponential disc, optional bar, logarithmic spiral arms, ring, dust lane,
companions, clumps; sky noise, PSF, stars and artefacts). `draw_population`
gives the truth that the simulated volunteers (`votes`) answer about;
`render_params` and `blob_rows` turn it into rows for `render.render_batch`.
"""

from __future__ import annotations

import math

import numpy as np

from . import render as R

MAX_BLOBS = 64  # blob rows per image; more are dropped

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

_BULGE_RGB = np.array([1.3, 1.0, 0.7])
_DISC_RGB = np.array([1.02, 1.00, 0.98])
_BLUE_RGB = np.array([0.78, 0.96, 1.26])
_STAR_RGB = np.array([[1.6, 0.9, 0.5], [1.3, 1.0, 0.7], [1.0, 1.0, 1.0], [0.75, 0.95, 1.3]])


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def draw_population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
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


def render_params(t: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Per-image parameter rows for `render.render_batch`, lengths scaled to `size` pixels."""
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


def blob_rows(t: dict[str, np.ndarray], i: int, p_row: np.ndarray, rng: np.random.Generator,
              size: int) -> tuple[np.ndarray, int]:
    """Blob rows (MAX_BLOBS, N_BLOB) of image i and how many are used.

    The field (background galaxies and stars, a bright star, a trail), then
    what belongs to the galaxy: for a STAR the object itself, else its odd
    feature made of blobs and the knots on its arms. The order of the draws
    from rng is part of the output.
    """
    rows: list[list[float]] = []
    _field_blobs(rows, t, i, p_row, rng, size)
    _own_blobs(rows, t, i, p_row, rng, size)
    if t["arms"][i] and t["kind"][i] == DISC:
        _arm_knots(rows, p_row, rng, size)
    out = np.zeros((MAX_BLOBS, R.N_BLOB))
    rows = rows[:MAX_BLOBS]
    if rows:
        out[: len(rows)] = rows
    return out, len(rows)


def _add(rows: list[list[float]], kind, x, y, amp, sz, n=1.0, q=1.0, pa=0.0, rgb=(1.0, 1.0, 1.0)) -> None:
    rows.append([kind, x, y, amp, sz, n, q, pa, *rgb])


def _star_rgb(rng: np.random.Generator, lo: int = 0) -> tuple:
    return tuple(_STAR_RGB[rng.integers(lo, 4)])


def _trail_rgb(rng: np.random.Generator) -> tuple:
    """Satellite trails in the SDSS composites are green or red: one band's exposure caught them."""
    return (0.3, 2.4, 0.3) if rng.random() < 0.5 else (2.4, 0.3, 0.3)


def _field_blobs(rows, t, i, p_row, rng, size) -> None:
    """Background galaxies and stars away from the galaxy, and the bright star or trail that change its votes."""
    sc = size / 424.0
    cx, cy = p_row[R.P_CX], p_row[R.P_CY]
    psf = p_row[R.P_PSF]

    def anywhere(min_r):
        while True:
            x, y = rng.uniform(0, size, 2)
            if math.hypot(x - cx, y - cy) >= min_r:
                return x, y

    for _ in range(rng.poisson(9)):
        x, y = anywhere(45 * sc)
        mix = rng.random()
        _add(rows, R.KIND_SHARP_BLOB, x, y, math.exp(rng.uniform(math.log(0.4), math.log(10.0))),
             rng.uniform(1.5, 5.0) * sc, rng.uniform(0.7, 2.5), rng.uniform(0.35, 1.0), rng.uniform(0, math.pi),
             tuple(_BULGE_RGB * (1 - mix) + _BLUE_RGB * mix))
    for _ in range(rng.poisson(5)):
        x, y = anywhere(45 * sc)
        _add(rows, R.KIND_STAR, x, y, math.exp(rng.uniform(math.log(0.5), math.log(60.0))),
             2.3 * psf * rng.uniform(1.0, 1.3), 0.0, rgb=_star_rgb(rng))
    if t["bright_star"][i]:
        ang, r = rng.uniform(0, 2 * math.pi), rng.uniform(70, 190) * sc
        amp = math.exp(rng.uniform(math.log(200.0), math.log(4000.0)))
        _add(rows, R.KIND_STAR, cx + r * math.cos(ang), cy + r * math.sin(ang), amp, 2.3 * psf,
             rng.uniform(25, 80) * sc, rgb=_star_rgb(rng, 1))
    if t["trail"][i]:
        x, y = rng.uniform(0, size, 2)
        _add(rows, R.KIND_TRAIL, x, y, rng.uniform(0.5, 3.0), rng.uniform(0.8, 1.6) * sc, pa=rng.uniform(0, math.pi),
             rgb=_trail_rgb(rng))


def _own_blobs(rows, t, i, p_row, rng, size) -> None:
    """A STAR's object (bright star, faint point, trail), or the odd feature that blobs make: a merging
    companion, irregular clumps, a close point source ("other")."""
    sc = size / 424.0
    cx, cy = p_row[R.P_CX], p_row[R.P_CY]
    psf = p_row[R.P_PSF]
    kind, odd = t["kind"][i], t["odd"][i]
    h = p_row[R.P_DISC_H]
    main_size = max(2 * h if kind != ELLIPTICAL else 0.0, 1.5 * p_row[R.P_BULGE_RE])
    if kind == STAR:
        sk = t["star_kind"][i]
        if sk == 0:
            amp = math.exp(rng.uniform(math.log(100.0), math.log(5000.0)))
            _add(rows, R.KIND_STAR, cx, cy, amp, 2.3 * psf, rng.uniform(30, 90) * sc if amp > 300 else 0.0,
                 rgb=_star_rgb(rng))
        elif sk == 1:
            _add(rows, R.KIND_STAR, cx, cy, rng.uniform(10.0, 60.0), 2.3 * psf, 0.0, rgb=_star_rgb(rng))
        else:
            _add(rows, R.KIND_TRAIL, cx, cy, rng.uniform(1.0, 5.0), rng.uniform(1.0, 2.5) * sc,
                 pa=rng.uniform(0, math.pi), rgb=_trail_rgb(rng))
    elif odd == MERGER:
        # a companion of comparable size close by, drawn in the galaxy layer so that both share the PSF
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.9, 2.2) * main_size + 6 * sc
        re_c = main_size * rng.uniform(0.3, 0.7)
        n_c = rng.uniform(1.0, 4.0)
        centre = _central_value(p_row)
        _add(rows, R.KIND_GALAXY_BLOB, cx + dist * math.cos(ang), cy + dist * math.sin(ang),
             centre * rng.uniform(0.3, 1.0), re_c, n_c, rng.uniform(0.5, 1.0), rng.uniform(0, math.pi),
             tuple(_BULGE_RGB * rng.uniform(0.9, 1.1)))
    elif odd == IRREGULAR:
        centre = _central_value(p_row)
        for _ in range(rng.integers(5, 13)):
            r, ang = h * 2.0 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            u, v = r * math.cos(ang), r * math.sin(ang) * p_row[R.P_DISC_Q]
            c, s = math.cos(p_row[R.P_PA]), math.sin(p_row[R.P_PA])
            _add(rows, R.KIND_GALAXY_BLOB, cx + u * c - v * s, cy + u * s + v * c, centre * rng.uniform(0.2, 0.8),
                 h * rng.uniform(0.1, 0.25), 0.8, rng.uniform(0.6, 1.0), 0.0, tuple(_BLUE_RGB))
    elif odd == OTHER:
        ang, r = rng.uniform(0, 2 * math.pi), main_size + rng.uniform(3, 20) * sc
        amp = math.exp(rng.uniform(math.log(5.0), math.log(80.0)))
        _add(rows, R.KIND_STAR, cx + r * math.cos(ang), cy + r * math.sin(ang), amp, 2.3 * psf, 0.0,
             rgb=_star_rgb(rng))


def _arm_knots(rows, p_row, rng, size) -> None:
    """Star-forming knots along the arm ridges, in the galaxy layer."""
    sc = size / 424.0
    cx, cy = p_row[R.P_CX], p_row[R.P_CY]
    h = p_row[R.P_DISC_H]
    m, tan_psi = p_row[R.P_ARM_M], p_row[R.P_ARM_TANPSI]
    r_in, phase = p_row[R.P_ARM_RIN], p_row[R.P_ARM_PHASE]
    c, s = math.cos(p_row[R.P_PA]), math.sin(p_row[R.P_PA])
    for _ in range(rng.integers(3, 12)):
        r = rng.uniform(r_in, 3.0 * h)
        phi = (2 * math.pi * rng.integers(int(m)) - phase) / m + math.log(r / r_in) / tan_psi + rng.normal(0, 0.05)
        u, v = r * math.cos(phi), r * math.sin(phi) * p_row[R.P_DISC_Q]
        _add(rows, R.KIND_GALAXY_BLOB, cx + u * c - v * s, cy + u * s + v * c,
             math.exp(-r / h) * p_row[R.P_ARM_AMP] * rng.uniform(1.5, 5.0), rng.uniform(0.8, 2.0) * sc, 1.0,
             1.0, 0.0, tuple(_BLUE_RGB))


def _central_value(p_row: np.ndarray) -> float:
    """Unblurred galaxy-layer brightness at the centre (mean of channels), to size companions and clumps."""
    n = p_row[R.P_BULGE_N]
    b = 2 * n - 1 / 3 + 0.009876 / n
    x = 0.25 / p_row[R.P_BULGE_RE] ** 2
    bulge = p_row[R.P_BULGE_AMP] * math.exp(-b * (x ** (0.5 / n) - 1))
    return bulge + p_row[R.P_DISC_AMP]
