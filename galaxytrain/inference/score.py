"""A trained run scored on a labelled file: ``galaxytrain score``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import GalaxyFile, InputError, Progress, check_output, disk_errors, exclusive_lock

from ..data.views import centre_view
from ..evaluation import (build_columns_report, build_report, format_columns_report, format_report, gallery_rows,
                          per_galaxy_rmse, write_gallery, write_report)
from ..evaluation.pictures import GALLERY_K
from .predict import predict_runs
from .trained import ModelSource, TrainedModel, as_sources, protected_paths


def score_run(run: ModelSource | Sequence[ModelSource], data: str | Path, report_path: str | Path,
              plots_dir: str | Path | None = None, tta: int | None = None, batch_size: int = 64,
              log: Callable[[str], None] = print, overwrite: bool = False, gallery: int = GALLERY_K,
              progress: bool = False) -> dict:
    """Predict a labelled file, report, write JSON (with `rmse`) and the plots.

    `run`: a run folder, a shipped model's name, a loaded `TrainedModel`,
    or several (an ensemble, scored as the average of their predictions).
    `progress`: a live count of the galaxies predicted (stderr).
    ``gallery`` galaxies on each side of ``gallery.png`` (best and worst by
    per-galaxy RMSE); 0 writes no gallery.
    """
    data = Path(data)
    report_path = Path(report_path)
    runs = as_sources(run)
    check_output(report_path, protected_paths(runs, data), is_report, "score report (JSON)", overwrite)
    plots = Path(plots_dir) if plots_dir is not None else report_path.with_name(report_path.stem + "_plots")
    made_plots = not plots.exists()
    with exclusive_lock(report_path):
        try:
            with disk_errors(report_path, "no report written"):
                return _score(runs, data, report_path, plots, tta, batch_size, log, gallery, progress)
        except BaseException:
            if made_plots and not report_path.exists():  # half a plots folder is not a result
                shutil.rmtree(plots, ignore_errors=True)
            raise


def is_report(path: Path) -> bool:
    """Whether `path` is a JSON report of `score` (a file this command may replace)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and ({"rmse", "question_accuracy", "leaderboard"} <= set(report)
                                         or {"rmse", "per_column", "columns"} <= set(report))


def _score(runs: list[ModelSource], data: Path, report_path: Path, plots_dir: str | Path | None, tta: int | None,
           batch_size: int, log: Callable[[str], None], gallery: int = GALLERY_K, progress: bool = False) -> dict:
    if plots_dir is None:
        plots_dir = report_path.with_name(report_path.stem + "_plots")
    with GalaxyFile(data) as f:
        if not f.has_labels:
            raise InputError(data, "has no labels (a test set?); score needs a labelled file; "
                                   "use `galaxytrain predict` for a submission")
        y_true = np.asarray(f.checked_labels(), dtype=np.float64)
        schema = f.label_schema
        for trained in runs:
            if trained.label_schema.columns != schema.columns:
                raise InputError(data, f"holds {schema.describe()}, but {trained.source} predicts "
                                       f"{trained.label_schema.describe()}; score a model on a file of its own columns")
        found = with_progress(lambda step: predict_runs(runs, f, tta, batch_size, step), len(runs) * f.n_images,
                              "score", progress)
        ids, trained_runs, tta = found.ids, found.models, found.tta
        preds = np.clip(found.mean, 0.0, 1.0)
        trained = trained_runs[0]
        # The gallery shows the tree's questions: a file of one's own columns has none.
        pictures = [_write_gallery(f, ids, y_true, preds, trained, Path(plots_dir), gallery)] \
            if gallery > 0 and schema.is_tree else []
    cfg = trained.record.get("config", {})
    meta = {
        "run": trained.source,
        "model_file": str(trained.model_path),
        "ensemble": [str(t.model_path) for t in trained_runs] if len(trained_runs) > 1 else None,
        "model": cfg.get("model"),
        "head": cfg.get("head"),
        "trained_on": trained.record.get("data", {}).get("path"),
        "data": str(data.resolve()),
        "n_images": int(len(ids)),
        "tta": tta,
        "predictions_clipped": True,
    }
    if schema.is_tree:
        report = build_report(y_true, preds, plots_dir=Path(plots_dir), meta=meta)
        report["plots"] = [str(p) for p in pictures] + report["plots"]
        text = format_report(report)
    else:
        report = build_columns_report(y_true, preds, schema.columns, schema.kinds, meta=meta)
        text = format_columns_report(report)
    write_report(report, report_path)
    log(text)
    log(f"wrote {report_path}")
    return report


def _write_gallery(f: GalaxyFile, ids: np.ndarray, y_true: np.ndarray, preds: np.ndarray, trained: TrainedModel,
                   plots_dir: Path, k: int) -> Path:
    """The gallery of the k best and k worst galaxies, reading only their rows of the file."""
    best, worst = gallery_rows(per_galaxy_rmse(y_true, preds), k)
    rows = np.sort(np.concatenate([best, worst]))  # file order: write_gallery picks the same ones, in the same order
    images = gallery_images(f, rows, trained.input_size or f.size)
    return write_gallery(images, ids[rows], y_true[rows], preds[rows], plots_dir, k=k, n_scored=len(ids))


def gallery_images(f: GalaxyFile, rows: np.ndarray, size: int) -> np.ndarray:
    """uint8 (len(rows), size, size, 3): the centre view the model saw of each row, read one row at a time.

    A row at a time, so that a gallery of a large file costs a few images of
    memory, not the file (the rows are scattered; one slice would span them all).
    """
    stored = np.stack([f.images(int(r), int(r) + 1)[0] for r in rows]) if len(rows) else \
        np.empty((0, f.size, f.size, 3), dtype=np.uint8)
    return centre_view(stored, size)


def with_progress(work, total: int, label: str, shown: bool):
    """work(step) with step(done, total) drawing galaxyprep's progress line on stderr when `shown`."""
    if not shown:
        return work(None)
    bar = Progress(total, label, unit="galaxies")
    try:
        return work(lambda done, _total: bar.update(done))
    finally:
        bar.close()
