"""Which random stream draws what, so that the same arguments give the same set.

Every block of galaxies draws its truth and its votes from streams of its
own, and every image its blobs and noise seed from its own, all keyed by
(seed, part, ...): a smaller set is the start of a larger one, the training
set does not depend on the test set, and nothing depends on batch size or
thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from ..tree import CLASS_NAMES
from . import render as R
from .population import MAX_BLOBS, blob_rows, draw_population, render_params
from .votes import vote_fractions

FIRST_ID, ID_SPAN = 100000, 900000  # six-digit GalaxyIDs, like the real ones
TRAIN, TEST = 0, 1  # the two parts of a data set draw from separate streams
_BLOCK = 256  # galaxies are drawn in blocks with their own streams, so a set is a prefix of a larger one


def check_arguments(n: int, n_test: int, seed: int, size: int) -> None:
    if n < 1 or n_test < 0:
        raise ValueError(f"need n >= 1 and n_test >= 0, got n={n}, n_test={n_test}")
    if n + n_test > ID_SPAN:
        raise ValueError(f"at most {ID_SPAN} images in all (six-digit GalaxyIDs), got {n + n_test}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 32 <= size <= 2048:
        raise ValueError(f"size must be within 32..2048, got {size}")


def galaxy_ids(seed: int, n: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct six-digit GalaxyIDs: training ids from the front of one permutation, test ids from its back."""
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9,))).permutation(ID_SPAN) + FIRST_ID
    return perm[:n].astype(np.int64), perm[ID_SPAN - n_test:].astype(np.int64)


def plan(seed: int, part: int, count: int, size: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Truth, labels and parameter rows of galaxies 0..count-1 of one part."""
    truths, labels = [], []
    for block in range((count + _BLOCK - 1) // _BLOCK):
        truth = draw_population(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(part, 0, block))),
                                _BLOCK)
        truths.append(truth)
        labels.append(vote_fractions(truth, np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(part, 1, block)))))
    truth = {k: np.concatenate([t[k] for t in truths])[:count] for k in truths[0]} if truths else {}
    label = np.concatenate(labels)[:count] if labels else np.zeros((0, len(CLASS_NAMES)))
    return truth, label, render_params(truth, size) if truths else np.zeros((0, R.N_PARAMS))


def render_range(truth: dict[str, np.ndarray], params: np.ndarray, seed: int, part: int, start: int, stop: int,
                 size: int) -> np.ndarray:
    """Images start..stop-1 of a part, uint8 (B, size, size, 3); each image draws from its own stream."""
    count = stop - start
    rows = params[start:stop].copy()
    blobs = np.zeros((count, MAX_BLOBS, R.N_BLOB))
    n_blobs = np.zeros(count, dtype=np.int64)
    seeds = np.zeros(count, dtype=np.uint64)
    for k in range(count):
        i = start + k
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(part, 2, i)))
        seeds[k] = rng.integers(0, 2**63, dtype=np.uint64)
        blobs[k], n_blobs[k] = blob_rows(truth, i, rows[k], rng, size)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    R.render_batch(rows, blobs, n_blobs, seeds, out, max(1, min(numba.get_num_threads(), count)))
    return out


def synthesize_arrays(n: int, *, seed: int = 0, size: int = 424) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (n,), images (n, size, size, 3) uint8, labels (n, 37)): the training set of `synthesize`, in memory.

    Image k is the same for every n > k, so a small set is the start of a large one.
    """
    check_arguments(n, 0, seed, size)
    truth, labels, params = plan(seed, TRAIN, n, size)
    return galaxy_ids(seed, n, 0)[0], render_range(truth, params, seed, TRAIN, 0, n, size), labels
