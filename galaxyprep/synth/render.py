"""numba kernels that draw the synthetic galaxies of `galaxyprep.synth`.

An image is linear flux (R, G, B) in one float buffer: first the main galaxy
(bulge, disc, arms, bar, ring, dust lane, and blobs that belong to it such as
companions and star-forming knots), blurred by a Gaussian PSF around its
centre and scaled so that its mean brightness on a characteristic ellipse is
the image's target level; then, on top, stars, trails and small background
galaxies, drawn with their PSF. Sky and sky noise are added and an asinh
stretch (as in SDSS colour composites) maps the flux to 8 bits.

Every image takes its parameters from one row of `params` (columns named by
the P_* constants below), its blobs from `blobs` and its noise from its own
seed, so the output does not depend on batch size or thread scheduling.

The per-pixel helpers are inlined into their callers (inline="always"), so
that each pixel's arithmetic is what it was when they were one function.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Columns of the per-image parameter table.
P_CX, P_CY, P_PA = 0, 1, 2
P_BULGE_AMP, P_BULGE_RE, P_BULGE_N, P_BULGE_Q, P_BULGE_BOXY = 3, 4, 5, 6, 7
P_BULGE_RGB = 8  # 8, 9, 10
P_DISC_AMP, P_DISC_H, P_DISC_Q = 11, 12, 13
P_DISC_RGB = 14  # 14, 15, 16
P_ARM_M, P_ARM_TANPSI, P_ARM_PHASE, P_ARM_AMP, P_ARM_SHARP, P_ARM_RIN = 17, 18, 19, 20, 21, 22
P_ARM_RGB = 23  # 23, 24, 25
P_BAR_AMP, P_BAR_A, P_BAR_B, P_BAR_ANGLE = 26, 27, 28, 29
P_RING_AMP, P_RING_R, P_RING_W, P_RING_PHI0, P_RING_COSSPAN = 30, 31, 32, 33, 34
P_RING_RGB = 35  # 35, 36, 37
P_DUST_DEPTH, P_DUST_W, P_DUST_OFFSET = 38, 39, 40
P_PSF, P_LEVEL, P_BOX = 41, 42, 43  # P_LEVEL: mean brightness on the P_RC ellipse; P_BOX: radius drawn
P_SKY_SIGMA = 44  # 44, 45, 46: per channel
P_SKY_RGB = 47  # 47, 48, 49
P_DISC_DX, P_DISC_DY = 50, 51  # disc centre offset from the bulge (lopsided, disturbed)
P_RC, P_RC_Q = 52, 53  # ellipse (semi-major axis, axis ratio; at P_PA) on which the galaxy is scaled
P_BLUR = 54  # half-size of the square around the centre that the PSF blurs
P_NOISE_STEP = 55  # grid step of the sky noise, 2..4 px
N_PARAMS = 56

# Columns of a blob row; blob kinds.
B_KIND, B_X, B_Y, B_AMP, B_SIZE, B_N, B_Q, B_PA, B_RGB = 0, 1, 2, 3, 4, 5, 6, 7, 8  # RGB 8, 9, 10
N_BLOB = 11
KIND_GALAXY_BLOB = 0.0  # Sérsic blob of the main galaxy (companion, clump, knot): scaled with it
KIND_SHARP_BLOB = 1.0   # small Sérsic blob on top (background galaxy), its PSF by softening
KIND_STAR = 2.0         # Moffat star; B_N holds the length of its diffraction spikes (0: none)
KIND_TRAIL = 3.0        # straight line through (x, y) at angle B_PA, width B_SIZE

#: Stretch: 8-bit value = STRETCH_GAIN * flux * asinh(L) / L, L the mean of the channels.
STRETCH_GAIN = 40.0
_STRETCH_STEPS = 64.0  # table entries per unit of sqrt(L)
_STRETCH_MAX = 64.0    # the table covers sqrt(L) < 64; beyond, asinh is computed

# Rows of the per-image radial profile table, sampled every _STEP px.
T_BULGE, T_DISC, T_RING, T_ARM_AMP, T_ARM_COS, T_ARM_SIN = 0, 1, 2, 3, 4, 5
N_TABLES = 6
_STEP = 0.1
_INV_STEP = 1.0 / _STEP


# --------------------------------------------------------------------------- small helpers


@njit(cache=True, inline="always")
def _next(state):
    """splitmix64 step: returns (new state, 64 random bits)."""
    state = (state + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = state
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = z ^ (z >> np.uint64(31))
    return state, z


@njit(cache=True, inline="always")
def _gauss4(bits):
    """Approximately standard normal from 64 bits: Irwin-Hall sum of four 16-bit uniforms."""
    m = np.uint64(0xFFFF)
    s = (float(bits & m) + float((bits >> np.uint64(16)) & m)
         + float((bits >> np.uint64(32)) & m) + float((bits >> np.uint64(48)) & m))
    return (s / 65535.0 - 2.0) * 1.7320508075688772


@njit(cache=True, inline="always")
def _sersic_b(n):
    return 2.0 * n - 1.0 / 3.0 + 0.009876 / n


@njit(cache=True, inline="always")
def _lerp(tables, row, r_scaled):
    """tables[row] sampled at r = 0, step, 2 step, ...; r_scaled = r / step; 0 beyond the table."""
    k = int(r_scaled)
    if k + 1 >= tables.shape[1]:
        return 0.0
    a = tables[row, k]
    return a + (r_scaled - k) * (tables[row, k + 1] - a)


@njit(cache=True, fastmath=True, inline="always")
def _add(rgb, f, p, col):
    """rgb plus light f in the colour p[col:col + 3]."""
    return rgb[0] + f * p[col], rgb[1] + f * p[col + 1], rgb[2] + f * p[col + 2]


@njit(cache=True, fastmath=True, inline="always")
def _scaled(rgb, a):
    return rgb[0] * a, rgb[1] * a, rgb[2] * a


@njit(cache=True, fastmath=True, inline="always")
def _deposit(layer, i, j, f, blob):
    """Light f in the blob's colour onto pixel (i, j)."""
    layer[i, j, 0] += f * blob[B_RGB]
    layer[i, j, 1] += f * blob[B_RGB + 1]
    layer[i, j, 2] += f * blob[B_RGB + 2]


# --------------------------------------------------------------------------- the main galaxy: radial profiles


@njit(cache=True, fastmath=True)
def _profile_tables(p, radius):
    """Radial profiles (rows T_*) out to `radius`, tabulated once so that a pixel costs a lerp, not an exp.

    A component stops where its own radius leaves the table, by then far
    below one 8-bit step (see P_BOX).
    """
    n_tab = int(radius * _INV_STEP) + 2
    radii = np.arange(n_tab) * _STEP
    tables = np.zeros((N_TABLES, n_tab), dtype=np.float32)
    if p[P_BULGE_AMP] > 0.0:
        _bulge_profile(p, radii, tables)
    if p[P_DISC_AMP] > 0.0:
        _disc_profiles(p, radii, tables)
        if int(p[P_ARM_M]) > 0:
            _arm_profiles(p, radii, tables)
    return tables


@njit(cache=True, fastmath=True)
def _bulge_profile(p, radii, tables):
    """Sérsic, by the bulge's own elliptical radius; softened by a quarter pixel so the centre stays finite."""
    b_amp = p[P_BULGE_AMP]
    b_n = p[P_BULGE_N]
    b_bn = _sersic_b(b_n)
    inv_re2 = 1.0 / (p[P_BULGE_RE] * p[P_BULGE_RE])
    for k in range(radii.shape[0]):
        x = (radii[k] * radii[k] + 0.25) * inv_re2
        tables[T_BULGE, k] = b_amp * math.exp(-b_bn * (x ** (0.5 / b_n) - 1.0))


@njit(cache=True, fastmath=True)
def _disc_profiles(p, radii, tables):
    """Exponential disc and its Gaussian ring, by the deprojected radius."""
    d_amp = p[P_DISC_AMP]
    inv_h = 1.0 / p[P_DISC_H]
    r_amp = p[P_RING_AMP]
    r_inv_w = 1.0 / p[P_RING_W]
    for k in range(radii.shape[0]):
        r = radii[k]
        tables[T_DISC, k] = d_amp * math.exp(-r * inv_h)
        if r_amp > 0.0:
            z = (r - p[P_RING_R]) * r_inv_w
            tables[T_RING, k] = r_amp * math.exp(-0.5 * z * z)


@njit(cache=True, fastmath=True)
def _arm_profiles(p, radii, tables):
    """Arm strength by radius, and (cos, sin) of a logarithmic spiral's phase beta(r) there.

    The arms grow in from 0.3 of their inner radius (the bulge or bar stays
    clear) and fade out beyond 3.5 scale lengths.
    """
    m_arms = int(p[P_ARM_M])
    inv_h = 1.0 / p[P_DISC_H]
    a_rin = p[P_ARM_RIN]
    inv_tan = 1.0 / p[P_ARM_TANPSI]
    for k in range(radii.shape[0]):
        r = radii[k]
        if r > 0.3 * a_rin:
            ramp = min((r - 0.3 * a_rin) / (0.7 * a_rin), 1.0)
            outer = r - 3.5 / inv_h
            if outer > 0.0:
                ramp *= math.exp(-outer * inv_h)
            tables[T_ARM_AMP, k] = p[P_ARM_AMP] * ramp
            beta = p[P_ARM_PHASE] - m_arms * math.log(r / a_rin) * inv_tan
            tables[T_ARM_COS, k] = math.cos(beta)
            tables[T_ARM_SIN, k] = math.sin(beta)


# --------------------------------------------------------------------------- the main galaxy: per-image constants


@njit(cache=True, fastmath=True, inline="always")
def _bulge_consts(p):
    return p[P_BULGE_AMP], 1.0 / p[P_BULGE_Q], p[P_BULGE_BOXY]


@njit(cache=True, fastmath=True, inline="always")
def _disc_consts(p):
    return p[P_DISC_AMP], 1.0 / p[P_DISC_Q], p[P_DISC_DX], p[P_DISC_DY]


@njit(cache=True, fastmath=True, inline="always")
def _arm_consts(p):
    """(m, sharpness k, norm): the mean of ((1 + cos) / 2)^k is C(2k, k) / 4^k; norm = its inverse keeps the
    arms' mean light that of the disc light they take."""
    a_sharp = int(p[P_ARM_SHARP])
    k2 = 1.0
    for k in range(1, a_sharp + 1):
        k2 *= (2.0 * k - 1.0) / (2.0 * k)
    return int(p[P_ARM_M]), a_sharp, 1.0 / k2


@njit(cache=True, fastmath=True, inline="always")
def _bar_consts(p):
    return p[P_BAR_AMP], 1.0 / p[P_BAR_A], 1.0 / p[P_BAR_B], math.cos(p[P_BAR_ANGLE]), math.sin(p[P_BAR_ANGLE])


@njit(cache=True, fastmath=True, inline="always")
def _ring_consts(p):
    return p[P_RING_AMP], math.cos(p[P_RING_PHI0]), math.sin(p[P_RING_PHI0]), p[P_RING_COSSPAN]


@njit(cache=True, fastmath=True, inline="always")
def _dust_consts(p):
    """(depth, 1 / width, offset from the major axis, half-length): the lane runs along the projected disc."""
    return p[P_DUST_DEPTH], 1.0 / p[P_DUST_W], p[P_DUST_OFFSET], 6.0 * p[P_DISC_H]


# --------------------------------------------------------------------------- the main galaxy: one pixel


@njit(cache=True, fastmath=True, inline="always")
def _bulge_light(p, tables, bulge, u, v):
    """Bulge at (u, v) (major, minor axis); boxy != 2 makes its isophotes superellipses (boxy edge-on bulges)."""
    b_amp, b_inv_q, b_boxy = bulge
    rgb = (0.0, 0.0, 0.0)
    if b_amp > 0.0:
        vb = v * b_inv_q
        if b_boxy != 2.0:
            rb = (abs(u) ** b_boxy + abs(vb) ** b_boxy) ** (1.0 / b_boxy)
        else:
            rb = math.sqrt(u * u + vb * vb)
        rgb = _add(rgb, _lerp(tables, T_BULGE, rb * _INV_STEP), p, P_BULGE_RGB)
    return rgb


@njit(cache=True, fastmath=True, inline="always")
def _arm_pattern(tables, arms, ud, vd, rd, rs):
    """((1 + cos(m phi + beta(r))) / 2)^k; (cos, sin)(m phi) from powers of (ud + i vd) / rd, so no atan2."""
    m_arms, a_sharp, _ = arms
    c1 = ud / rd
    s1 = vd / rd
    c = c1
    sn = s1
    for _ in range(m_arms - 1):
        c, sn = c * c1 - sn * s1, c * s1 + sn * c1
    cb = _lerp(tables, T_ARM_COS, rs)
    sb = _lerp(tables, T_ARM_SIN, rs)
    sv = 0.5 + 0.5 * (c * cb - sn * sb)
    sk = 1.0
    for _ in range(a_sharp):
        sk *= sv
    return sk


@njit(cache=True, fastmath=True, inline="always")
def _disc_and_arms(p, tables, arms, ud, vd, rd, rs, rgb):
    """Disc light; the arms take their share of it (fraction `arm`, in their colour) rather than add to it."""
    f = _lerp(tables, T_DISC, rs)
    if f > 0.0:
        arm = 0.0
        if arms[0] > 0:
            arm = _lerp(tables, T_ARM_AMP, rs)
            if arm > 0.0:
                rgb = _add(rgb, f * arm * _arm_pattern(tables, arms, ud, vd, rd, rs) * arms[2], p, P_ARM_RGB)
        rgb = _add(rgb, f * (1.0 - arm), p, P_DISC_RGB)
    return rgb


@njit(cache=True, fastmath=True, inline="always")
def _bar_light(p, bar, ud, vd, rgb):
    """A bar in the disc plane: exp(-t^2 / 2) of the elliptical radius t^2, in the bulge's colour."""
    bar_amp, bar_inv_a, bar_inv_b, cos_bar, sin_bar = bar
    xb = (ud * cos_bar + vd * sin_bar) * bar_inv_a
    yb = (-ud * sin_bar + vd * cos_bar) * bar_inv_b
    t = xb * xb + yb * yb
    if t < 16.0:
        rgb = _add(rgb, bar_amp * math.exp(-0.5 * t * t), p, P_BULGE_RGB)
    return rgb


@njit(cache=True, fastmath=True, inline="always")
def _ring_light(p, tables, ring, ud, vd, rd, rs, rgb):
    """A ring; a lens (cos span > -1) is only the arc within its span of the direction phi0."""
    _, r_c0, r_s0, r_cosspan = ring
    fring = _lerp(tables, T_RING, rs)
    if r_cosspan > -1.0 and (ud * r_c0 + vd * r_s0) <= r_cosspan * rd:
        fring = 0.0
    return _add(rgb, fring, p, P_RING_RGB)


@njit(cache=True, fastmath=True, inline="always")
def _disc_plane_light(p, tables, disc, arms, bar, ring, u, v, rgb):
    """Disc with arms, bar and ring, in the deprojected disc plane, whose centre may be offset from the bulge."""
    _, d_inv_q, d_dx, d_dy = disc
    ud = u - d_dx
    vd = (v - d_dy) * d_inv_q
    rd = math.sqrt(ud * ud + vd * vd)
    rs = rd * _INV_STEP
    rgb = _disc_and_arms(p, tables, arms, ud, vd, rd, rs, rgb)
    if bar[0] > 0.0:
        rgb = _bar_light(p, bar, ud, vd, rgb)
    if ring[0] > 0.0:
        rgb = _ring_light(p, tables, ring, ud, vd, rd, rs, rgb)
    return rgb


@njit(cache=True, fastmath=True, inline="always")
def _through_dust(dust, u, v, rgb):
    """Light behind an edge-on dust lane, which thins out towards its ends."""
    depth, inv_w, offset, length = dust
    if depth > 0.0 and abs(u) < length:
        z = (v - offset) * inv_w
        if z * z < 16.0:
            rgb = _scaled(rgb, 1.0 - depth * math.exp(-0.5 * z * z) * (1.0 - abs(u) / length))
    return rgb


@njit(cache=True, fastmath=True, inline="always")
def _faded(radius, inv_fade, dx, dy, rgb):
    """Light faded out over the outer quarter of the drawn circle, so that the galaxy has no visible edge."""
    fade = (radius - math.sqrt(dx * dx + dy * dy)) * inv_fade
    if fade < 1.0:
        rgb = _scaled(rgb, max(fade, 0.0))
    return rgb


@njit(cache=True, fastmath=True)
def _draw_galaxy(p, layer, radius):
    """Main galaxy into `layer` (S, S, 3) float32, inside a circle that fades out over its outer quarter.

    Radial profiles (bulge, disc, ring, and the radial phase of the arms) are
    tabulated once per image, so that a pixel costs a few multiplications and
    no transcendental functions; cos(m phi) comes from powers of (x + iy) / r.
    """
    tables = _profile_tables(p, radius)
    bulge = _bulge_consts(p)
    disc = _disc_consts(p)
    arms = _arm_consts(p)
    bar = _bar_consts(p)
    ring = _ring_consts(p)
    dust = _dust_consts(p)
    size = layer.shape[0]
    cx = p[P_CX]
    cy = p[P_CY]
    cos_pa = math.cos(p[P_PA])
    sin_pa = math.sin(p[P_PA])
    inv_fade = 1.0 / (0.25 * radius)
    y0 = max(0, int(cy - radius))
    y1 = min(size, int(cy + radius) + 1)
    for i in range(y0, y1):
        dy = i + 0.5 - cy
        half = math.sqrt(max(radius * radius - dy * dy, 0.0))
        x0 = max(0, int(cx - half))
        x1 = min(size, int(cx + half) + 1)
        for j in range(x0, x1):
            dx = j + 0.5 - cx
            u = dx * cos_pa + dy * sin_pa
            v = -dx * sin_pa + dy * cos_pa
            rgb = _bulge_light(p, tables, bulge, u, v)
            if disc[0] > 0.0:
                rgb = _disc_plane_light(p, tables, disc, arms, bar, ring, u, v, rgb)
            rgb = _faded(radius, inv_fade, dx, dy, _through_dust(dust, u, v, rgb))
            layer[i, j, 0] += rgb[0]
            layer[i, j, 1] += rgb[1]
            layer[i, j, 2] += rgb[2]


# --------------------------------------------------------------------------- blobs: companions, stars, trails


@njit(cache=True, fastmath=True)
def _draw_sersic_blob(layer, blob, soft2, floor):
    """Elliptical Sérsic blob whose core (softened by `soft2` px^2) has brightness B_AMP; drawn down to `floor`."""
    size = layer.shape[0]
    cx, cy, amp, re, n = blob[B_X], blob[B_Y], blob[B_AMP], blob[B_SIZE], blob[B_N]
    inv_n = 1.0 / n
    bn = _sersic_b(n)
    inv_re2 = 1.0 / (re * re)
    core = math.exp(0.5 * inv_n * math.log(soft2 * inv_re2))  # so that the centre reaches `amp`
    reach = re * (core + math.log(max(amp / floor, 1.1)) / bn) ** n + 2.0
    reach = min(reach, 1.5 * size)
    y0 = max(0, int(cy - reach))
    y1 = min(size, int(cy + reach) + 1)
    x0 = max(0, int(cx - reach))
    x1 = min(size, int(cx + reach) + 1)
    c = math.cos(blob[B_PA])
    s = math.sin(blob[B_PA])
    inv_q = 1.0 / blob[B_Q]
    reach2 = reach * reach
    for i in range(y0, y1):
        dy = i + 0.5 - cy
        for j in range(x0, x1):
            dx = j + 0.5 - cx
            u = dx * c + dy * s
            v = (-dx * s + dy * c) * inv_q
            r2 = u * u + v * v
            if r2 < reach2:
                x = (r2 + soft2) * inv_re2
                _deposit(layer, i, j, amp * math.exp(-bn * (math.exp(0.5 * inv_n * math.log(x)) - core)), blob)


@njit(cache=True, fastmath=True)
def _draw_star(layer, blob):
    """Moffat (beta 3) star of width B_SIZE, with four diffraction spikes of length B_N (0: none)."""
    size = layer.shape[0]
    cx, cy, amp, width, spike = blob[B_X], blob[B_Y], blob[B_AMP], blob[B_SIZE], blob[B_N]
    core = width * math.sqrt(max((amp / 0.01) ** (1.0 / 3.0) - 1.0, 0.0))  # f < 0.01 beyond
    reach = min(max(core, spike) + 2.0, 1.5 * size)
    y0 = max(0, int(cy - reach))
    y1 = min(size, int(cy + reach) + 1)
    x0 = max(0, int(cx - reach))
    x1 = min(size, int(cx + reach) + 1)
    inv_w2 = 1.0 / (width * width)
    for i in range(y0, y1):
        dy = i + 0.5 - cy
        for j in range(x0, x1):
            dx = j + 0.5 - cx
            t = 1.0 + (dx * dx + dy * dy) * inv_w2
            f = amp / (t * t * t)
            if spike > 0.0:
                adx = abs(dx)
                ady = abs(dy)
                if adx < 2.5 and ady < spike:
                    f += 0.04 * amp * math.exp(-adx * adx / 0.8 - 3.0 * ady / spike)
                if ady < 2.5 and adx < spike:
                    f += 0.04 * amp * math.exp(-ady * ady / 0.8 - 3.0 * adx / spike)
            _deposit(layer, i, j, f, blob)


@njit(cache=True, fastmath=True)
def _draw_trail(layer, blob):
    """Satellite trail: a straight Gaussian line across the whole image."""
    size = layer.shape[0]
    cx, cy, amp, width = blob[B_X], blob[B_Y], blob[B_AMP], blob[B_SIZE]
    nx = -math.sin(blob[B_PA])
    ny = math.cos(blob[B_PA])
    inv_w2 = 1.0 / (2.0 * width * width)
    reach = 4.0 * width
    for i in range(size):
        dy = i + 0.5 - cy
        for j in range(size):
            d = (j + 0.5 - cx) * nx + dy * ny
            if abs(d) < reach:
                _deposit(layer, i, j, amp * math.exp(-d * d * inv_w2), blob)


# --------------------------------------------------------------------------- PSF, level, sky, stretch


@njit(cache=True, fastmath=True, error_model="numpy")
def _blur(layer, scratch, sigma, y0, y1, x0, x1):
    """Separable Gaussian blur of the window layer[y0:y1, x0:x1], in place.

    Reads the unblurred pixels around the window (zero beyond the image), so
    that the blurred window joins its surroundings without a seam. Rows are
    flattened over (x, channel) and copied into padded buffers, so that the
    inner loops vectorize.
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = 2 * radius + 1
    w = np.empty(taps, dtype=np.float32)
    total = 0.0
    for k in range(taps):
        d = k - radius
        w[k] = math.exp(-0.5 * d * d / (sigma * sigma))
        total += w[k]
    for k in range(taps):
        w[k] /= total
    size = layer.shape[0]
    flat = layer.reshape(size, size * 3)
    tmp = scratch.reshape(size, size * 3)
    m0 = 3 * x0
    n = 3 * (x1 - x0)
    pad = 3 * radius
    line = np.empty(n + 2 * pad, dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    r0 = max(0, y0 - radius)
    r1 = min(size, y1 + radius)
    for i in range(r0, r1):  # horizontal pass, rows the vertical pass will read
        for m in range(n + 2 * pad):
            src = m0 - pad + m
            line[m] = flat[i, src] if src >= 0 and src < 3 * size else 0.0
        for m in range(n):
            acc[m] = 0.0
        for k in range(taps):
            wk = w[k]
            off = 3 * k
            for m in range(n):
                acc[m] += wk * line[m + off]
        for m in range(n):
            tmp[i, m0 + m] = acc[m]
    for i in range(y0, y1):  # vertical pass, window rows only
        for m in range(n):
            acc[m] = 0.0
        for k in range(taps):
            ii = i + k - radius
            if ii >= r0 and ii < r1:
                wk = w[k]
                for m in range(n):
                    acc[m] += wk * tmp[ii, m0 + m]
        for m in range(n):
            flat[i, m0 + m] = acc[m]


@njit(cache=True, fastmath=True, error_model="numpy")
def _scale_to_level(p, galaxy):
    """Scales the galaxy layer so that its mean brightness on the characteristic ellipse is P_LEVEL.

    Measured after the blur, on 32 points of the ellipse: what the eye sees
    of a galaxy, whatever its profile.
    """
    size = galaxy.shape[0]
    level = 0.0
    cos_pa = math.cos(p[P_PA])
    sin_pa = math.sin(p[P_PA])
    for k in range(32):
        t = 2.0 * math.pi * k / 32.0
        u = p[P_RC] * math.cos(t)
        v = p[P_RC] * p[P_RC_Q] * math.sin(t)
        i = min(size - 1, max(0, int(p[P_CY] + u * sin_pa + v * cos_pa)))
        j = min(size - 1, max(0, int(p[P_CX] + u * cos_pa - v * sin_pa)))
        level += (galaxy[i, j, 0] + galaxy[i, j, 1] + galaxy[i, j, 2]) / 96.0
    scale = np.float32(p[P_LEVEL] / level) if level > 0.0 else np.float32(0.0)
    flat = galaxy.reshape(size * size * 3)
    for m in range(size * size * 3):
        flat[m] *= scale


@njit(cache=True, fastmath=True, error_model="numpy")
def _draw_galaxy_layer(p, blobs, galaxy, scratch):
    """The main galaxy and its own blobs into `galaxy`, blurred by the PSF and scaled to its level."""
    size = galaxy.shape[0]
    galaxy[:, :, :] = 0.0
    _draw_galaxy(p, galaxy, p[P_BOX])
    soft = 0.25 + 2.0 * p[P_PSF] ** 2  # companions may lie outside the blurred window: soften their cores
    for k in range(blobs.shape[0]):
        if blobs[k, B_KIND] == KIND_GALAXY_BLOB:
            _draw_sersic_blob(galaxy, blobs[k], soft, 1e-4 * blobs[k, B_AMP])
    # PSF blur where it shows: the inner part of the galaxy (outside it, the light varies slowly)
    win = p[P_BLUR]
    y0 = max(0, int(p[P_CY] - win))
    y1 = min(size, int(p[P_CY] + win) + 1)
    x0 = max(0, int(p[P_CX] - win))
    x1 = min(size, int(p[P_CX] + win) + 1)
    _blur(galaxy, scratch, p[P_PSF], y0, y1, x0, x1)
    _scale_to_level(p, galaxy)


@njit(cache=True, fastmath=True, error_model="numpy")
def _draw_foreground(p, blobs, galaxy):
    """The sharp things on top of the scaled galaxy: background galaxies, stars, trails."""
    for k in range(blobs.shape[0]):
        blob = blobs[k]
        kind = blob[B_KIND]
        if kind == KIND_SHARP_BLOB:
            _draw_sersic_blob(galaxy, blob, 2.0 * p[P_PSF] ** 2, 0.01)  # 0.01: 0.4 of an 8-bit step
        elif kind == KIND_STAR:
            _draw_star(galaxy, blob)
        elif kind == KIND_TRAIL:
            _draw_trail(galaxy, blob)


@njit(cache=True, fastmath=True, error_model="numpy")
def _sky_noise(p, seed, size, noise):
    """Sky noise on a coarse grid (step 2-4 px) into noise[:nc, :nc], nc = size // step + 3.

    Bilinearly interpolated later, it makes blotchy grain like the resampled
    SDSS frames, which survives JPEG as theirs does; mostly common to the
    channels (grey-green grain). The grid is scaled up by what the
    interpolation loses, to keep the per-pixel sigma.
    """
    step = int(p[P_NOISE_STEP])
    nc = size // step + 3
    var = 0.0  # variance lost to the interpolation, to restore the per-pixel sigma
    for k in range(step):
        w = (k + 0.5) / step - 0.5 - math.floor((k + 0.5) / step - 0.5)
        var += (1.0 - w) ** 2 + w * w
    gain_noise = step / var
    state = seed
    for i in range(nc):
        for j in range(nc):
            state, bits = _next(state)
            common = _gauss4(bits)
            for c in range(3):
                state, bits = _next(state)
                noise[i, j, c] = (0.75 * common + 0.66 * _gauss4(bits)) * (gain_noise * p[P_SKY_SIGMA + c])


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _add_sky_row(f, sky, row_noise, col_index, col_weight):
    """Row f (S * 3,) plus the sky and the noise interpolated along the row."""
    for j in range(col_index.shape[0]):
        wj = col_weight[j]
        m = 3 * col_index[j]
        for c in range(3):
            f[3 * j + c] += sky[c] + row_noise[m + c] + wj * (row_noise[m + 3 + c] - row_noise[m + c])


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _stretch_gains(f, gain, stretch):
    """gain * asinh(L) / L of each pixel's mean L, from the table indexed by sqrt(|L|) where it reaches."""
    top = np.float32(_STRETCH_MAX * _STRETCH_STEPS - 1.0)
    for j in range(gain.shape[0]):
        lum = (f[3 * j] + f[3 * j + 1] + f[3 * j + 2]) * np.float32(1.0 / 3.0)
        x = math.sqrt(abs(lum)) * np.float32(_STRETCH_STEPS)
        if x < top:
            k = int(x)
            gain[j] = stretch[k] + (x - k) * (stretch[k + 1] - stretch[k])
        else:
            gain[j] = STRETCH_GAIN * math.asinh(lum) / lum


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _byte(v, k):
    return np.uint8(min(max(v * k + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _to_8bit(f, gain, o):
    """Stretched row to 8 bits; a saturated pixel keeps its colour (all channels scaled by the brightest)."""
    for j in range(gain.shape[0]):
        g = gain[j]
        v0 = f[3 * j] * g
        v1 = f[3 * j + 1] * g
        v2 = f[3 * j + 2] * g
        k = min(np.float32(1.0), np.float32(255.0) / max(max(v0, max(v1, v2)), np.float32(1e-3)))
        o[3 * j] = _byte(v0, k)
        o[3 * j + 1] = _byte(v1, k)
        o[3 * j + 2] = _byte(v2, k)


@njit(cache=True, fastmath=True, error_model="numpy")
def _add_sky_and_stretch(p, galaxy, noise, stretch, out):
    """Sky and the noise interpolated from its grid onto the flux, then the asinh stretch into out, row by row."""
    size = out.shape[0]
    step = int(p[P_NOISE_STEP])
    nc = size // step + 3
    flat_noise = noise.reshape(noise.shape[0], noise.shape[1] * 3)
    col_index = np.empty(size, dtype=np.int64)
    col_weight = np.empty(size, dtype=np.float32)
    for j in range(size):
        g = (j + 0.5) / step - 0.5 + 1.0  # grid index 0 lies half a cell before the image
        col_index[j] = int(g)
        col_weight[j] = g - int(g)
    sky = np.empty(3, dtype=np.float32)
    for c in range(3):
        sky[c] = p[P_SKY_RGB + c]
    row_noise = np.empty(nc * 3, dtype=np.float32)
    gain = np.empty(size, dtype=np.float32)
    flux = galaxy.reshape(size, size * 3)
    pixels = out.reshape(size, size * 3)
    for i in range(size):
        # the noise interpolated between grid rows i0 and i0 + 1
        gi = (i + 0.5) / step - 0.5 + 1.0
        i0 = int(gi)
        wi = np.float32(gi - i0)
        a = flat_noise[i0]
        b = flat_noise[i0 + 1]
        for m in range(nc * 3):
            row_noise[m] = a[m] + wi * (b[m] - a[m])
        f = flux[i]
        _add_sky_row(f, sky, row_noise, col_index, col_weight)
        _stretch_gains(f, gain, stretch)
        _to_8bit(f, gain, pixels[i])


# --------------------------------------------------------------------------- one image, a batch


@njit(cache=True, fastmath=True, error_model="numpy")
def _render_one(p, blobs, seed, stretch, galaxy, scratch, noise, out):
    """One image into out (S, S, 3) uint8 from its parameter row p and its blob rows.

    galaxy and scratch (S, S, 3) float32 and noise (the sky-noise grid) are
    work buffers, kept by the caller across images.
    """
    size = out.shape[0]
    _draw_galaxy_layer(p, blobs, galaxy, scratch)
    _draw_foreground(p, blobs, galaxy)
    _sky_noise(p, seed, size, noise)
    _add_sky_and_stretch(p, galaxy, noise, stretch, out)


@njit(cache=True)
def _stretch_table():
    """gain * asinh(L) / L sampled at sqrt(L) = k / _STRETCH_STEPS."""
    n = int(_STRETCH_MAX * _STRETCH_STEPS) + 1
    table = np.empty(n, dtype=np.float32)
    table[0] = STRETCH_GAIN
    for k in range(1, n):
        lum = (k / _STRETCH_STEPS) ** 2
        table[k] = STRETCH_GAIN * math.asinh(lum) / lum
    return table


@njit(cache=True, parallel=True, nogil=True)
def render_batch(params, blobs, n_blobs, seeds, out, n_workers):
    """Draw images b = 0..B-1 into out (B, S, S, 3) uint8.

    params (B, N_PARAMS) float64, blobs (B, K, N_BLOB) float64 of which the
    first n_blobs[b] rows are used, seeds (B,) uint64 for the sky noise.
    Each of n_workers takes every n_workers-th image and keeps its work
    buffers (fresh large arrays cost page faults); an image depends only on
    its own inputs, so the result does not depend on n_workers.
    """
    n_img = out.shape[0]
    size = out.shape[1]
    stretch = _stretch_table()
    for w in prange(n_workers):
        galaxy = np.empty((size, size, 3), dtype=np.float32)
        scratch = np.empty((size, size, 3), dtype=np.float32)
        noise = np.empty((size // 2 + 3, size // 2 + 3, 3), dtype=np.float32)  # big enough for step >= 2
        for b in range(w, n_img, n_workers):
            _render_one(params[b], blobs[b, :n_blobs[b]], seeds[b], stretch, galaxy, scratch, noise, out[b])
