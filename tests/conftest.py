"""Shared fixtures: where the real data lives, and tiny galaxyprep files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GZ = Path(os.environ.get("GALAXY_SHARED_DATA", REPO.parent / "shared" / "data" / "gz"))


@pytest.fixture(scope="session")
def shared_gz() -> Path:
    """The real Kaggle sample in ../shared/data/gz; tests that need it skip without it."""
    if not (SHARED_GZ / "images").is_dir():
        pytest.skip(f"real data not found at {SHARED_GZ}")
    return SHARED_GZ


@pytest.fixture
def make_galaxy_file(tmp_path):
    """Factory: a valid galaxyprep file of random pixels and tree-consistent labels."""
    from galaxyprep.galaxy_file import write_galaxy_file
    from galaxyprep.tree import normalize_tree

    def make(n: int = 50, size: int = 32, labels: bool = True, seed: int = 0, name: str = "tiny.h5",
             chunk_images: int = 8, first_id: int = 100000, crop: int | None = None) -> Path:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        y = normalize_tree(rng.random((n, 37))).astype(np.float32) if labels else None
        return write_galaxy_file(tmp_path / name, images, ids, y, crop=crop or size, chunk_images=chunk_images)

    return make
