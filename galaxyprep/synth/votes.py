"""Simulated Galaxy Zoo volunteers: the 37 labels of a synthetic galaxy, from the parameters that drew it.

Volunteers answer the decision tree about the truth, not the pixels, so the
labels obey the tree exactly and carry signal that a model can learn from
the images.
"""

from __future__ import annotations

import numpy as np

from ..tree import CLASS_NAMES, PARENT_COLUMN, QUESTION_SLICES, SCALING_ORDER
from .population import DISC, DISTURBED, EDGE_ON, ELLIPTICAL, IRREGULAR, LENS, MERGER, NONE, OTHER, RING, STAR

_CROWD_CONCENTRATION = 25.0  # how much one galaxy's crowd may disagree with the chances (Dirichlet)


def _soft_bins(x: np.ndarray, centres, width: float, floor: float) -> np.ndarray:
    d = (x[:, None] - np.asarray(centres)[None, :]) / width
    p = np.exp(-0.5 * d * d) + floor
    return p / p.sum(axis=1, keepdims=True)


def answer_chances(t: dict[str, np.ndarray]) -> list[np.ndarray]:
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


def vote_fractions(t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Simulated volunteers walk the tree: each question is asked of those who gave its parent answer.

    Fractions are counts over all volunteers of a galaxy, so every question's
    answers sum to its parent answer exactly, as in the Kaggle labels. Each
    galaxy's crowd first gets its own opinion (a Dirichlet draw around the
    chances), then 30-60 volunteers vote: label noise of both kinds.
    """
    chances = answer_chances(t)
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

