"""What a run records about its data: the file's description, the split, the line to beat.

config.json keeps it, and a resumed run must find the same: the same images
(by their IDs' hash), the same normalization, the same validation rows.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field

import keras
import numpy as np

from galaxyprep import GalaxyFile, InputError

from ..config import FitConfig
from ..data import split_rows

#: Data-file facts that must be unchanged to resume a run.
DATA_KEYS = ("n_used", "image_size", "ids_sha256", "mean", "std")


@dataclass
class TrainingData:
    """The rows to train and validate on, and the record config.json keeps of them."""

    record: dict
    train_rows: np.ndarray
    val_rows: np.ndarray
    baseline: float | None  # validation RMSE of predicting the training mean
    train_mean: np.ndarray | None = None  # (K,) the training rows' mean label: where a new head starts
    notes: list[str] = field(default_factory=list)  # what the log should say about the data


def prepare_data(config: FitConfig, f: GalaxyFile) -> TrainingData:
    """Describe the file, split it, measure the mean predictor; InputError for a file that cannot train."""
    data = describe_data(f, config.limit)
    schema = f.label_schema
    if config.head == "tree" and not schema.is_tree:
        raise InputError(config.data, f"holds {schema.describe()}; the tree head (--head tree, as in --recipe "
                                      f"{config.recipe or 'best'}) needs the 37 Kaggle columns: use --head sigmoid")
    n = data["n_used"]
    labels = np.asarray(f.checked_labels(n), dtype=np.float64)
    train_rows, val_rows = _split(f.ids[:n], config.val_fraction, config.seed)
    if len(train_rows) == 0:
        raise InputError(config.data, f"no training images left after holding out {len(val_rows)} for "
                                      "validation; use more images or a smaller --val-fraction")
    baseline = mean_predictor_rmse(labels, train_rows, val_rows)
    notes = []
    if config.val_fraction > 0 and len(val_rows) == 0 and n * config.val_fraction >= 10:
        # The split hashes GalaxyIDs: galaxies chosen by the same hash (e.g. all from the training side of
        # another run with this seed) never reach the validation side.
        notes.append(f"note: none of the {n} galaxies fell on the validation side of --val-fraction "
                     f"{config.val_fraction:g} with --seed {config.seed} (about {n * config.val_fraction:.0f} "
                     "expected): were they chosen by the same GalaxyID hash, as another run's training side? "
                     "Without validation the epoch of lowest training loss is kept; another --seed splits them")
    record = {
        "config": config.to_dict(),
        "data": data,
        "split": {"seed": config.seed, "val_fraction": config.val_fraction,
                  "n_train": int(len(train_rows)), "n_val": int(len(val_rows)),
                  "val_rows_sha256": sha256_array(np.asarray(val_rows, dtype=np.int64))},
        "baseline_val_rmse_mean_predictor": baseline,
        "versions": _versions(),
    }
    return TrainingData(record, train_rows, val_rows, baseline, labels[train_rows].mean(axis=0), notes)


def describe_data(f: GalaxyFile, limit: int | None = None, need_labels: bool = True) -> dict:
    """What config.json records about the training file (raises InputError for a bad one)."""
    info = f.info
    if need_labels and not info.has_labels:
        raise InputError(f.path, "has no labels (a test set?); training and scoring need a labelled file")
    n = info.n_images if limit is None else min(int(limit), info.n_images)
    if n < 2:
        raise InputError(f.path, f"holds {info.n_images} image(s); at least 2 are needed")
    return {
        "path": str(f.path.resolve()),
        "file_bytes": f.path.stat().st_size,
        "n_images": info.n_images,
        "n_used": n,
        "image_size": info.size,
        "crop": info.crop,
        # Full precision: prediction normalizes with these, and must do exactly what training did.
        "mean": [float(v) for v in info.mean],
        "std": [float(v) for v in info.std],
        "ids_sha256": sha256_array(f.ids[:n]),
        "source": info.source,
        "chunk_images": info.chunk_images,
        "compression": info.compression,
        # What the model's outputs are: prediction names its columns, score scores them.
        "labels": None if info.label_schema is None else {"columns": list(info.label_schema.columns),
                                                          "kinds": list(info.label_schema.kinds)},
    }


def mean_predictor_rmse(labels: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray) -> float | None:
    """Validation RMSE of predicting the training mean: the line a model has to get under."""
    if len(val_rows) == 0:
        return None
    mean = labels[train_rows].mean(axis=0)
    return float(np.sqrt(np.mean((labels[val_rows] - mean) ** 2)))


def sha256_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _split(ids: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if val_fraction == 0:
        return np.arange(len(ids), dtype=np.int64), np.zeros(0, dtype=np.int64)
    train_rows, val_rows = split_rows(ids, val_fraction, seed)
    return np.asarray(train_rows, dtype=np.int64), np.asarray(val_rows, dtype=np.int64)


def _versions() -> dict:
    import tensorflow as tf

    from .. import __version__

    return {"galaxytrain": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
