"""Predictions as HDF5 (`predict --format hdf5`): the one writer and reader of that file.

Beside the Kaggle CSV, what a catalogue needs: GalaxyIDs, the predicted
columns (Kaggle's 37 vote fractions, or a fine-tuned model's own) with
their names, and, with several test-time views, how
much the answer moved between views (as zoobot saves its predictions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from galaxyprep import CLASS_NAMES, InputError

FORMAT = "galaxytrain-predictions"
FORMAT_VERSION = 1


@dataclass
class PredictionsFile:
    """What a predictions file holds."""

    ids: np.ndarray
    predictions: np.ndarray
    spread: np.ndarray | None
    columns: list[str]
    meta: dict


def write_predictions(path: str | Path, ids: np.ndarray, predictions: np.ndarray, spread: np.ndarray | None,
                      meta: dict, columns: tuple[str, ...] = CLASS_NAMES) -> Path:
    """`ids` (N,), `predictions` (N, K) clipped to [0, 1] with their K `columns`, `spread` (N, K) or None;
    written atomically."""
    if np.shape(predictions)[1:] != (len(columns),):
        raise ValueError(f"predictions are {np.shape(predictions)}, for {len(columns)} columns")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["meta"] = json.dumps(meta)
            f.create_dataset("ids", data=np.asarray(ids, dtype=np.int64))
            d = f.create_dataset("predictions", data=np.clip(np.asarray(predictions, dtype=np.float32), 0.0, 1.0))
            d.attrs["columns"] = np.array(columns, dtype=h5py.string_dtype())
            if spread is not None:
                s = f.create_dataset("spread", data=np.asarray(spread, dtype=np.float32))
                s.attrs["meaning"] = "standard deviation over the test-time views, averaged over the runs"
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_predictions_file(path: str | Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_predictions(path: str | Path) -> PredictionsFile:
    """A file written by `write_predictions`, or InputError saying why not."""
    if not is_predictions_file(path):
        raise InputError(path, "not a galaxytrain predictions file (galaxytrain predict --format hdf5)")
    with h5py.File(path, "r") as f:
        spread = f["spread"][:] if "spread" in f else None
        return PredictionsFile(ids=f["ids"][:], predictions=f["predictions"][:], spread=spread,
                               columns=[c.decode() if isinstance(c, bytes) else str(c)
                                        for c in f["predictions"].attrs["columns"]],
                               meta=json.loads(f.attrs["meta"]))
