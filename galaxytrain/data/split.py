"""Train/validation split decided galaxy by galaxy.

A galaxy's side depends only on its GalaxyID, the seed and the fraction,
never on which other galaxies are in the file: a bigger file built later keeps
every galaxy of the old validation set on the validation side, so validation
scores of runs on the two files stay comparable.
"""

from __future__ import annotations

import numbers

import numpy as np

from galaxyprep import unit_hash


def split_rows(ids: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices (train, val) of `ids`; row r is in val when u(ids[r], seed) < val_fraction.

    u is a 64-bit hash of (GalaxyID, seed) mapped to [0, 1), so the expected
    validation share is `val_fraction` and each galaxy's side is fixed.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(f"ids must be a 1-D array of integer GalaxyIDs, got {ids.dtype} of shape {ids.shape}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    u = unit_hash(ids.astype(np.int64, copy=False), int(seed))
    in_val = u < val_fraction
    return np.flatnonzero(~in_val).astype(np.int64), np.flatnonzero(in_val).astype(np.int64)
