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
def _lerp(table, r_scaled):
    """table sampled at r = 0, step, 2 step, ...; r_scaled = r / step; 0 beyond the table."""
    k = int(r_scaled)
    if k + 1 >= table.shape[0]:
        return 0.0
    a = table[k]
    return a + (r_scaled - k) * (table[k + 1] - a)


_STEP = 0.1  # radial step of the per-image profile tables, px


@njit(cache=True, fastmath=True)
def _draw_galaxy(p, layer, radius):
    """Main galaxy into `layer` (S, S, 3) float32, inside a circle that fades out over its outer quarter.

    Radial profiles (bulge, disc, ring, and the radial phase of the arms) are
    tabulated once per image, so that a pixel costs a few multiplications and
    no transcendental functions; cos(m phi) comes from powers of (x + iy) / r.
    The tables end at `radius`: a component stops where its own elliptical
    radius passes it, by then far below one 8-bit step (see P_BOX).
    """
    size = layer.shape[0]
    cx = p[P_CX]
    cy = p[P_CY]
    cos_pa = math.cos(p[P_PA])
    sin_pa = math.sin(p[P_PA])
    inv_step = 1.0 / _STEP
    n_tab = int(radius * inv_step) + 2
    radii = np.arange(n_tab) * _STEP

    # bulge (Sérsic, elliptical or boxy), tabulated by its elliptical radius
    b_amp = p[P_BULGE_AMP]
    b_inv_q = 1.0 / p[P_BULGE_Q]
    b_boxy = p[P_BULGE_BOXY]
    bulge = np.zeros(n_tab, dtype=np.float32)
    if b_amp > 0.0:
        b_n = p[P_BULGE_N]
        b_bn = _sersic_b(b_n)
        inv_re2 = 1.0 / (p[P_BULGE_RE] * p[P_BULGE_RE])
        for k in range(n_tab):
            x = (radii[k] * radii[k] + 0.25) * inv_re2
            bulge[k] = b_amp * math.exp(-b_bn * (x ** (0.5 / b_n) - 1.0))
    # disc (its centre may be offset from the bulge), ring, arms: by the deprojected radius
    d_amp = p[P_DISC_AMP]
    d_inv_q = 1.0 / p[P_DISC_Q]
    d_dx = p[P_DISC_DX]
    d_dy = p[P_DISC_DY]
    disc = np.zeros(n_tab, dtype=np.float32)
    ring = np.zeros(n_tab, dtype=np.float32)
    arm_amp = np.zeros(n_tab, dtype=np.float32)
    arm_cos = np.zeros(n_tab, dtype=np.float32)
    arm_sin = np.zeros(n_tab, dtype=np.float32)
    m_arms = int(p[P_ARM_M])
    a_sharp = int(p[P_ARM_SHARP])
    k2 = 1.0  # mean of ((1 + cos) / 2)^k is C(2k, k) / 4^k: normalise the arm light to mean 1
    for k in range(1, a_sharp + 1):
        k2 *= (2.0 * k - 1.0) / (2.0 * k)
    a_norm = 1.0 / k2
    r_amp = p[P_RING_AMP]
    if d_amp > 0.0:
        inv_h = 1.0 / p[P_DISC_H]
        a_rin = p[P_ARM_RIN]
        inv_tan = 1.0 / p[P_ARM_TANPSI]
        r_inv_w = 1.0 / p[P_RING_W]
        for k in range(n_tab):
            r = radii[k]
            disc[k] = d_amp * math.exp(-r * inv_h)
            if r_amp > 0.0:
                z = (r - p[P_RING_R]) * r_inv_w
                ring[k] = r_amp * math.exp(-0.5 * z * z)
            if m_arms > 0 and r > 0.3 * a_rin:
                ramp = min((r - 0.3 * a_rin) / (0.7 * a_rin), 1.0)
                outer = r - 3.5 / inv_h  # arms fade out beyond 3.5 scale lengths
                if outer > 0.0:
                    ramp *= math.exp(-outer * inv_h)
                arm_amp[k] = p[P_ARM_AMP] * ramp
                beta = p[P_ARM_PHASE] - m_arms * math.log(r / a_rin) * inv_tan
                arm_cos[k] = math.cos(beta)
                arm_sin[k] = math.sin(beta)
    # bar (deprojected plane)
    bar_amp = p[P_BAR_AMP]
    bar_inv_a = 1.0 / p[P_BAR_A]
    bar_inv_b = 1.0 / p[P_BAR_B]
    cos_bar = math.cos(p[P_BAR_ANGLE])
    sin_bar = math.sin(p[P_BAR_ANGLE])
    r_c0 = math.cos(p[P_RING_PHI0])
    r_s0 = math.sin(p[P_RING_PHI0])
    r_cosspan = p[P_RING_COSSPAN]
    # dust lane along the major axis of the projected disc
    dust = p[P_DUST_DEPTH]
    dust_inv_w = 1.0 / p[P_DUST_W]
    dust_off = p[P_DUST_OFFSET]
    dust_len = 6.0 * p[P_DISC_H]
    b0 = p[P_BULGE_RGB]
    b1 = p[P_BULGE_RGB + 1]
    b2 = p[P_BULGE_RGB + 2]

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
            fr = 0.0
            fg = 0.0
            fb = 0.0
            if b_amp > 0.0:
                vb = v * b_inv_q
                if b_boxy != 2.0:
                    rb = (abs(u) ** b_boxy + abs(vb) ** b_boxy) ** (1.0 / b_boxy)
                else:
                    rb = math.sqrt(u * u + vb * vb)
                f = _lerp(bulge, rb * inv_step)
                fr += f * b0
                fg += f * b1
                fb += f * b2
            if d_amp > 0.0:
                ud = u - d_dx
                vd = (v - d_dy) * d_inv_q
                rd = math.sqrt(ud * ud + vd * vd)
                rs = rd * inv_step
                f = _lerp(disc, rs)
                if f > 0.0:
                    arm = 0.0
                    if m_arms > 0:
                        arm = _lerp(arm_amp, rs)
                        if arm > 0.0:
                            # cos(m phi + beta(r)) with (c, s) = (cos, sin)(m phi) from powers of (ud + i vd) / rd
                            c1 = ud / rd
                            s1 = vd / rd
                            c = c1
                            sn = s1
                            for _ in range(m_arms - 1):
                                c, sn = c * c1 - sn * s1, c * s1 + sn * c1
                            cb = _lerp(arm_cos, rs)
                            sb = _lerp(arm_sin, rs)
                            sv = 0.5 + 0.5 * (c * cb - sn * sb)
                            sk = 1.0
                            for _ in range(a_sharp):
                                sk *= sv
                            fa = f * arm * sk * a_norm
                            fr += fa * p[P_ARM_RGB]
                            fg += fa * p[P_ARM_RGB + 1]
                            fb += fa * p[P_ARM_RGB + 2]
                    g = f * (1.0 - arm)
                    fr += g * p[P_DISC_RGB]
                    fg += g * p[P_DISC_RGB + 1]
                    fb += g * p[P_DISC_RGB + 2]
                if bar_amp > 0.0:
                    xb = (ud * cos_bar + vd * sin_bar) * bar_inv_a
                    yb = (-ud * sin_bar + vd * cos_bar) * bar_inv_b
                    t = xb * xb + yb * yb
                    if t < 16.0:
                        fbar = bar_amp * math.exp(-0.5 * t * t)
                        fr += fbar * b0
                        fg += fbar * b1
                        fb += fbar * b2
                if r_amp > 0.0:
                    fring = _lerp(ring, rs)
                    if r_cosspan > -1.0 and (ud * r_c0 + vd * r_s0) <= r_cosspan * rd:
                        fring = 0.0
                    fr += fring * p[P_RING_RGB]
                    fg += fring * p[P_RING_RGB + 1]
                    fb += fring * p[P_RING_RGB + 2]
            if dust > 0.0 and abs(u) < dust_len:
                z = (v - dust_off) * dust_inv_w
                if z * z < 16.0:
                    a = 1.0 - dust * math.exp(-0.5 * z * z) * (1.0 - abs(u) / dust_len)
                    fr *= a
                    fg *= a
                    fb *= a
            fade = (radius - math.sqrt(dx * dx + dy * dy)) * inv_fade
            if fade < 1.0:
                fade = max(fade, 0.0)
                fr *= fade
                fg *= fade
                fb *= fade
            layer[i, j, 0] += fr
            layer[i, j, 1] += fg
            layer[i, j, 2] += fb


@njit(cache=True, fastmath=True)
def _draw_sersic_blob(layer, cx, cy, amp, re, n, q, pa, rgb0, rgb1, rgb2, soft2, floor):
    """Elliptical Sérsic blob whose core (softened by `soft2` px^2) has brightness `amp`; drawn down to `floor`."""
    size = layer.shape[0]
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
    c = math.cos(pa)
    s = math.sin(pa)
    inv_q = 1.0 / q
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
                f = amp * math.exp(-bn * (math.exp(0.5 * inv_n * math.log(x)) - core))
                layer[i, j, 0] += f * rgb0
                layer[i, j, 1] += f * rgb1
                layer[i, j, 2] += f * rgb2


@njit(cache=True, fastmath=True)
def _draw_star(layer, cx, cy, amp, width, spike, rgb0, rgb1, rgb2):
    """Moffat (beta 3) star with optional four diffraction spikes of length `spike`."""
    size = layer.shape[0]
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
            layer[i, j, 0] += f * rgb0
            layer[i, j, 1] += f * rgb1
            layer[i, j, 2] += f * rgb2


@njit(cache=True, fastmath=True)
def _draw_trail(layer, cx, cy, amp, width, angle, rgb0, rgb1, rgb2):
    """Satellite trail: a straight Gaussian line across the whole image."""
    size = layer.shape[0]
    nx = -math.sin(angle)
    ny = math.cos(angle)
    inv_w2 = 1.0 / (2.0 * width * width)
    reach = 4.0 * width
    for i in range(size):
        dy = i + 0.5 - cy
        for j in range(size):
            d = (j + 0.5 - cx) * nx + dy * ny
            if abs(d) < reach:
                f = amp * math.exp(-d * d * inv_w2)
                layer[i, j, 0] += f * rgb0
                layer[i, j, 1] += f * rgb1
                layer[i, j, 2] += f * rgb2


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
def _render_one(p, blobs, n_blobs, seed, galaxy, scratch, noise, row_noise, col_index, col_weight, gain, stretch,
                out):
    """One image into out (S, S, 3) uint8; all other arrays but p, blobs and stretch are work buffers."""
    size = out.shape[0]
    galaxy[:, :, :] = 0.0
    _draw_galaxy(p, galaxy, p[P_BOX])
    soft = 0.25 + 2.0 * p[P_PSF] ** 2  # companions may lie outside the blurred window: soften their cores
    for k in range(n_blobs):
        q = blobs[k]
        if q[B_KIND] == KIND_GALAXY_BLOB:
            _draw_sersic_blob(galaxy, q[B_X], q[B_Y], q[B_AMP], q[B_SIZE], q[B_N], q[B_Q], q[B_PA],
                              q[B_RGB], q[B_RGB + 1], q[B_RGB + 2], soft, 1e-4 * q[B_AMP])
    # PSF blur where it shows: the inner part of the galaxy (outside it, the light varies slowly)
    win = p[P_BLUR]
    y0 = max(0, int(p[P_CY] - win))
    y1 = min(size, int(p[P_CY] + win) + 1)
    x0 = max(0, int(p[P_CX] - win))
    x1 = min(size, int(p[P_CX] + win) + 1)
    _blur(galaxy, scratch, p[P_PSF], y0, y1, x0, x1)
    # scale the galaxy so that its mean brightness on the characteristic ellipse is P_LEVEL
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
    # the sharp things on top: background galaxies, stars, trails
    for k in range(n_blobs):
        q = blobs[k]
        kind = q[B_KIND]
        if kind == KIND_SHARP_BLOB:
            _draw_sersic_blob(galaxy, q[B_X], q[B_Y], q[B_AMP], q[B_SIZE], q[B_N], q[B_Q], q[B_PA],
                              q[B_RGB], q[B_RGB + 1], q[B_RGB + 2], 2.0 * p[P_PSF] ** 2, 0.01)  # 0.4 of a step
        elif kind == KIND_STAR:
            _draw_star(galaxy, q[B_X], q[B_Y], q[B_AMP], q[B_SIZE], q[B_N],
                       q[B_RGB], q[B_RGB + 1], q[B_RGB + 2])
        elif kind == KIND_TRAIL:
            _draw_trail(galaxy, q[B_X], q[B_Y], q[B_AMP], q[B_SIZE], q[B_PA],
                        q[B_RGB], q[B_RGB + 1], q[B_RGB + 2])
    # sky noise on a coarse grid (step 2-4 px), bilinearly interpolated: blotchy grain like the resampled
    # SDSS frames, which survives JPEG as theirs does; mostly common to the channels (grey-green grain)
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
    flat_noise = noise.reshape(noise.shape[0], noise.shape[1] * 3)
    for j in range(size):
        g = (j + 0.5) / step - 0.5 + 1.0  # grid index 0 lies half a cell before the image
        col_index[j] = int(g)
        col_weight[j] = g - int(g)
    sky = np.empty(3, dtype=np.float32)
    for c in range(3):
        sky[c] = p[P_SKY_RGB + c]
    flux = galaxy.reshape(size, size * 3)
    pixels = out.reshape(size, size * 3)
    top = np.float32(_STRETCH_MAX * _STRETCH_STEPS - 1.0)
    for i in range(size):
        # row i: galaxy plus sky plus the noise interpolated between grid rows i0 and i0 + 1
        gi = (i + 0.5) / step - 0.5 + 1.0
        i0 = int(gi)
        wi = np.float32(gi - i0)
        a = flat_noise[i0]
        b = flat_noise[i0 + 1]
        for m in range(nc * 3):
            row_noise[m] = a[m] + wi * (b[m] - a[m])
        f = flux[i]
        for j in range(size):
            wj = col_weight[j]
            m = 3 * col_index[j]
            for c in range(3):
                f[3 * j + c] += sky[c] + row_noise[m + c] + wj * (row_noise[m + 3 + c] - row_noise[m + c])
        # asinh stretch, gain * asinh(L) / L of the mean L, from a table indexed by sqrt(|L|)
        for j in range(size):
            lum = (f[3 * j] + f[3 * j + 1] + f[3 * j + 2]) * np.float32(1.0 / 3.0)
            x = math.sqrt(abs(lum)) * np.float32(_STRETCH_STEPS)
            if x < top:
                k = int(x)
                gain[j] = stretch[k] + (x - k) * (stretch[k + 1] - stretch[k])
            else:
                gain[j] = STRETCH_GAIN * math.asinh(lum) / lum
        # to 8 bits; a saturated pixel keeps its colour (all channels scaled by the brightest)
        o = pixels[i]
        for j in range(size):
            g = gain[j]
            v0 = f[3 * j] * g
            v1 = f[3 * j + 1] * g
            v2 = f[3 * j + 2] * g
            k = min(np.float32(1.0), np.float32(255.0) / max(max(v0, max(v1, v2)), np.float32(1e-3)))
            o[3 * j] = np.uint8(min(max(v0 * k + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
            o[3 * j + 1] = np.uint8(min(max(v1 * k + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))
            o[3 * j + 2] = np.uint8(min(max(v2 * k + np.float32(0.5), np.float32(0.0)), np.float32(255.0)))


_STRETCH_STEPS = 64.0  # table entries per unit of sqrt(L)
_STRETCH_MAX = 64.0    # the table covers sqrt(L) < 64; beyond, asinh is computed


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
        row_noise = np.empty((size // 2 + 3) * 3, dtype=np.float32)
        col_index = np.empty(size, dtype=np.int64)
        col_weight = np.empty(size, dtype=np.float32)
        gain = np.empty(size, dtype=np.float32)
        for b in range(w, n_img, n_workers):
            _render_one(params[b], blobs[b], n_blobs[b], seeds[b], galaxy, scratch, noise, row_noise, col_index,
                        col_weight, gain, stretch, out[b])
