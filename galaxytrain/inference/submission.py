"""``galaxytrain predict``: a Kaggle submission CSV, or predictions as HDF5, from a file or from JPEGs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import CLASS_NAMES, GalaxyFile, InputError, atomic_write, check_output, disk_errors, exclusive_lock

from ..choices import OutputFormat
from .predict import build_for_models, predict_runs
from .predictions_file import is_predictions_file, write_predictions
from .score import with_progress
from .trained import ModelSource, as_sources, protected_paths


def write_submission(path: str | Path, ids: np.ndarray, preds: np.ndarray,
                     columns: tuple[str, ...] = CLASS_NAMES) -> Path:
    """Kaggle's format: header GalaxyID,Class1.1,...,Class11.6 (or a model's own `columns`), values in [0, 1]."""
    path = Path(path)
    preds = np.clip(np.asarray(preds, dtype=np.float64), 0.0, 1.0)
    if preds.shape != (len(ids), len(columns)):
        raise ValueError(f"predictions are {preds.shape}, expected ({len(ids)}, {len(columns)})")
    with atomic_write(path, "w") as f:
        f.write(_header(columns) + "\n")
        body = np.column_stack([np.asarray(ids, dtype=np.float64), preds])
        np.savetxt(f, body, fmt=["%d"] + ["%.6f"] * len(columns), delimiter=",")
    return path


def _header(columns: tuple[str, ...]) -> str:
    return ",".join(("GalaxyID",) + tuple(columns))


def is_submission(path: Path, columns: tuple[str, ...] = CLASS_NAMES) -> bool:
    """Whether `path` is a CSV of this format with these columns (a file this command may replace)."""
    header = (_header(columns) + "\n").encode()
    with open(path, "rb") as f:
        return f.read(len(header)) == header


def predict_submission(run: ModelSource | Sequence[ModelSource], data: str | Path | None, out: str | Path,
                       tta: int | None = None, batch_size: int = 64, log: Callable[[str], None] = print,
                       overwrite: bool = False, images: str | Path | None = None,
                       format: OutputFormat = "csv", progress: bool = False) -> Path:
    """The whole of ``galaxytrain predict``: a galaxyprep file (`data`) or JPEGs (`images`) -> CSV or HDF5.

    `run`: a run folder, a shipped model's name, a loaded `TrainedModel`,
    or several (averaged). JPEGs are built first, into a temporary file
    beside `out`, with galaxyprep's pipeline at the models' crop and size.
    """
    runs = as_sources(run)
    if (data is None) == (images is None):
        raise InputError("--data/--images", "give one of them: a galaxyprep file, or a folder or zip of JPEGs")
    columns = runs[0].label_schema.columns
    is_ours = (lambda path: is_submission(path, columns)) if format == "csv" else is_predictions_file
    kind = "submission CSV" if format == "csv" else "galaxytrain predictions file"
    check_output(out, [("--images", images)] + protected_paths(runs, data), is_ours, kind,
                 overwrite)
    with disk_errors(out, "nothing written"):
        return _predict_submission(runs, data, out, tta, batch_size, log, images, format, progress)


def _predict_submission(runs: list, data, out, tta, batch_size, log, images, format, progress) -> Path:
    """predict_submission once its arguments are checked: under the output's lock, the output written last."""
    with exclusive_lock(out):
        counts = {}
        if images is None:
            found = _predict(runs, Path(data), tta, batch_size, progress)
        else:
            with tempfile.TemporaryDirectory(prefix=".galaxytrain-", dir=Path(out).resolve().parent) as tmp:
                built = build_for_models(runs, images, Path(tmp) / "images.h5", log)
                found = _predict(runs, built.out, tta, batch_size, progress)
            counts = {"skipped": [{"file": p.file, "problem": p.problem} for p in built.skipped],
                      "ignored_files": built.ignored_files, "duplicates": built.duplicates}
        source = str(images if images is not None else data)
        if format == "csv":
            path = write_submission(out, found.ids, found.mean, found.columns)
        else:
            path = write_predictions(out, found.ids, found.mean, found.spread, {
                "source": source, "runs": [str(t.model_path) for t in found.models], "tta": found.tta, **counts},
                found.columns)
    accounted = "" if not counts else (f"; of the files: {len(counts['skipped'])} left out, "
                                       f"{counts['ignored_files']} ignored (not <GalaxyID>.jpg), "
                                       f"{len(counts['duplicates'])} stored twice and used once")
    log(f"wrote {path} ({len(found.ids)} galaxies, {', '.join(t.source for t in found.models)}, tta {found.tta}"
        f"{accounted})")
    return path


def _predict(runs: list[ModelSource], data: Path, tta: int | None, batch_size: int, progress: bool):
    with GalaxyFile(data) as f:
        return with_progress(lambda step: predict_runs(runs, f, tta, batch_size, step), len(runs) * f.n_images,
                             "predict", progress)
