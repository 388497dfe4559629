"""Which side of a split a galaxy falls on, from its GalaxyID alone.

A galaxy's side depends only on its GalaxyID, the seed and the fraction,
never on which other galaxies are present: ``galaxyprep build --split
holdout`` and fit's validation split (galaxytrain.data.split) draw from the
same hash, and a bigger build later keeps every held-out galaxy held out.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1

#: build --split: the holdout's default share and seed (those of bench/bench_vgg6_real.py's figures).
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 2026


def unit_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """Map int64 ids to float64 in [0, 1), well mixed, one independent draw per (id, seed)."""
    # The seed is hashed before it meets the id: with ``id ^ seed`` alone, seeds
    # 0 and 1 would only swap neighbouring ids and give nearly the same split.
    key = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))[0]
    z = _splitmix64(np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64) ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def in_holdout(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask: the galaxies whose hash falls below `fraction`."""
    return unit_hash(np.asarray(ids, dtype=np.int64), seed) < fraction


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer (Steele, Lea, Flood 2014), elementwise on uint64 with wrap-around."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
