"""The Kaggle submission: ``galaxytrain predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import CLASS_NAMES, GalaxyFile, atomic_write, check_output, exclusive_lock

from .predict import predict_runs
from .trained import as_runs


def write_submission(path: str | Path, ids: np.ndarray, preds: np.ndarray) -> Path:
    """Kaggle's format: header GalaxyID,Class1.1,...,Class11.6; values clipped to [0, 1]."""
    path = Path(path)
    preds = np.clip(np.asarray(preds, dtype=np.float64), 0.0, 1.0)
    if preds.shape != (len(ids), len(CLASS_NAMES)):
        raise ValueError(f"predictions are {preds.shape}, expected ({len(ids)}, {len(CLASS_NAMES)})")
    with atomic_write(path, "w") as f:
        f.write(",".join(("GalaxyID",) + tuple(CLASS_NAMES)) + "\n")
        body = np.column_stack([np.asarray(ids, dtype=np.float64), preds])
        np.savetxt(f, body, fmt=["%d"] + ["%.6f"] * len(CLASS_NAMES), delimiter=",")
    return path


def is_submission(path: Path) -> bool:
    """Whether `path` is a CSV in Kaggle's submission format (a file this command may replace)."""
    header = ",".join(("GalaxyID",) + tuple(CLASS_NAMES))
    with open(path, "rb") as f:
        return f.read(len(header)).decode("ascii", errors="replace") == header


def predict_submission(run: str | Path | Sequence[str | Path], data: str | Path, out: str | Path, tta: int = 1,
                       batch_size: int = 64, log: Callable[[str], None] = print, overwrite: bool = False) -> Path:
    """The whole of ``galaxytrain predict``; several runs are averaged."""
    runs = as_runs(run)
    check_output(out, [("--data", data)] + [("--run", r) for r in runs], is_submission, "submission CSV", overwrite)
    with exclusive_lock(out), GalaxyFile(data) as f:  # the file opened once for every run of an ensemble
        ids, preds, trained = predict_runs(runs, f, tta, batch_size)
        path = write_submission(out, ids, preds)
    log(f"wrote {path} ({len(ids)} galaxies, {', '.join(str(t.model_path) for t in trained)}, tta {tta})")
    return path
