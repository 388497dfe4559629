"""``galaxytrain predict``: a Kaggle submission CSV, or predictions as HDF5, from a file or from JPEGs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import (CLASS_NAMES, BuildConfig, InputError, atomic_write, build_galaxy_file, check_output,
                        exclusive_lock)

from ..choices import OutputFormat
from .predict import predict_runs
from .predictions_file import is_predictions_file, write_predictions
from .trained import as_runs, protected_paths, run_record


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


def predict_submission(run: str | Path | Sequence[str | Path], data: str | Path | None, out: str | Path,
                       tta: int | None = None, batch_size: int = 64, log: Callable[[str], None] = print,
                       overwrite: bool = False, images: str | Path | None = None,
                       format: OutputFormat = "csv") -> Path:
    """The whole of ``galaxytrain predict``: a galaxyprep file (`data`) or JPEGs (`images`) -> CSV or HDF5.

    Several runs are averaged. JPEGs are built first, into a temporary file
    beside `out`, with galaxyprep's pipeline at the runs' crop and size.
    """
    runs = as_runs(run)
    if (data is None) == (images is None):
        raise InputError("--data/--images", "give one of them: a galaxyprep file, or a folder or zip of JPEGs")
    is_ours = is_submission if format == "csv" else is_predictions_file
    kind = "submission CSV" if format == "csv" else "galaxytrain predictions file"
    check_output(out, [("--images", images)] + protected_paths(runs, data), is_ours, kind,
                 overwrite)
    with exclusive_lock(out):
        if images is None:
            found = predict_runs(runs, data, tta, batch_size)
        else:
            with tempfile.TemporaryDirectory(prefix=".galaxytrain-", dir=Path(out).resolve().parent) as tmp:
                built = build_for_runs(runs, images, Path(tmp) / "images.h5", log)
                found = predict_runs(runs, built, tta, batch_size)
        source = str(images if images is not None else data)
        if format == "csv":
            path = write_submission(out, found.ids, found.mean)
        else:
            path = write_predictions(out, found.ids, found.mean, found.spread, {
                "source": source, "runs": [str(t.model_path) for t in found.runs], "tta": found.tta})
    log(f"wrote {path} ({len(found.ids)} galaxies, {', '.join(str(t.model_path) for t in found.runs)}, "
        f"tta {found.tta})")
    return path


def build_for_runs(runs: Sequence[Path], images: str | Path, out: Path, log: Callable[[str], None]) -> Path:
    """A galaxyprep file of `images` at the crop and size the runs were trained on."""
    builds = set()
    for run in runs:
        data = run_record(run).get("data", {})
        if not data.get("crop") or not data.get("image_size"):
            raise InputError(run, "its config.json does not say the crop and size it was trained on; build the "
                                  "images with `galaxyprep build` and predict with --data")
        builds.add((int(data["crop"]), int(data["image_size"])))
    if len(builds) > 1:
        raise InputError("--run", f"the runs were trained on different builds ({sorted(builds)}); predict each "
                                  "from its own file")
    crop, size = builds.pop()
    summary = build_galaxy_file(BuildConfig(images=Path(images), out=out, crop=crop, size=size))
    log(f"built {summary.n_written:,} images from {images} at --crop {crop} --size {size}"
        + (f"; left out {len(summary.skipped)} (first: {summary.skipped[0]})" if summary.skipped else ""))
    return out
