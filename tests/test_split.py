"""The train/validation split: fixed per GalaxyID, independent of the rest of the file."""

from __future__ import annotations

import numpy as np
import pytest

from galaxytrain.data.split import split_rows, unit_hash


def real_like_ids(n: int, seed: int = 0) -> np.ndarray:
    """Sorted unique GalaxyIDs in the range the Kaggle set uses (100008..999967)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(100_000, 1_000_000), size=n, replace=False)).astype(np.int64)


def test_disjoint_complete_and_sorted():
    ids = real_like_ids(5000)
    train, val = split_rows(ids, 0.2, seed=3)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(ids)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert train.dtype == np.int64 and val.dtype == np.int64


def test_deterministic():
    ids = real_like_ids(3000)
    a = split_rows(ids, 0.1, seed=7)
    b = split_rows(ids.copy(), 0.1, seed=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_seed_changes_the_split():
    ids = real_like_ids(10_000)
    val0 = set(ids[split_rows(ids, 0.1, seed=0)[1]])
    val1 = set(ids[split_rows(ids, 0.1, seed=1)[1]])
    # Independent draws: about 10% of one validation set falls in the other.
    overlap = len(val0 & val1) / len(val0)
    assert 0.05 < overlap < 0.15


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_fraction_within_tolerance(fraction):
    ids = real_like_ids(10_000, seed=1)
    _, val = split_rows(ids, fraction, seed=0)
    # Binomial standard deviation on 10k draws is at most 0.005: allow 4 sigma.
    assert abs(len(val) / len(ids) - fraction) < 0.02


def test_consecutive_ids_split_like_random_ones():
    ids = np.arange(100_000, 110_000, dtype=np.int64)
    _, val = split_rows(ids, 0.1, seed=0)
    assert abs(len(val) / len(ids) - 0.1) < 0.02
    # No periodic pattern: validation rows spread over the whole range.
    counts = np.histogram(val, bins=10, range=(0, len(ids)))[0]
    assert counts.min() > 50


def test_side_depends_only_on_the_galaxy():
    """A subset of the galaxies (a smaller file) puts each of them on the same side."""
    big = real_like_ids(8000, seed=2)
    rng = np.random.default_rng(5)
    small = np.sort(rng.choice(big, size=3000, replace=False))
    _, val_big = split_rows(big, 0.15, seed=11)
    _, val_small = split_rows(small, 0.15, seed=11)
    assert set(small[val_small]) == set(big[val_big]) & set(small)
    # Order of the ids in the file does not matter either.
    shuffled = rng.permutation(small)
    _, val_shuffled = split_rows(shuffled, 0.15, seed=11)
    assert set(shuffled[val_shuffled]) == set(small[val_small])


def test_zero_fraction_gives_empty_val():
    ids = real_like_ids(100)
    train, val = split_rows(ids, 0.0, seed=0)
    assert val.size == 0 and np.array_equal(train, np.arange(100))


def test_empty_ids():
    train, val = split_rows(np.zeros(0, dtype=np.int64), 0.1, seed=0)
    assert train.size == 0 and val.size == 0


def test_unit_hash_is_uniform():
    u = unit_hash(np.arange(20_000, dtype=np.int64), seed=0)
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    # Each bin expects 1000 (sd about 31).
    assert counts.min() > 850 and counts.max() < 1150


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), "0.1", None, True])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_rows(real_like_ids(10), fraction, seed=0)


@pytest.mark.parametrize("seed", [1.5, "1", None, True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        split_rows(real_like_ids(10), 0.1, seed=seed)


@pytest.mark.parametrize("ids", [np.zeros((3, 2), dtype=np.int64), np.array([1.5, 2.5]), np.array(["a", "b"])])
def test_bad_ids(ids):
    with pytest.raises(ValueError, match="ids"):
        split_rows(ids, 0.1, seed=0)
