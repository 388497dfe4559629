"""A trained run scored on a labelled file: ``galaxytrain score``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import GalaxyFile, InputError, check_output, exclusive_lock

from ..evaluation import build_report, format_report, write_report
from .predict import predict_runs
from .trained import as_runs


def score_run(run: str | Path | Sequence[str | Path], data: str | Path, report_path: str | Path,
              plots_dir: str | Path | None = None, tta: int | None = None, batch_size: int = 64,
              log: Callable[[str], None] = print, overwrite: bool = False) -> dict:
    """Predict a labelled file, report, write JSON (with `rmse`).

    Several runs are scored as one ensemble: the average of their predictions.
    """
    data = Path(data)
    report_path = Path(report_path)
    runs = as_runs(run)
    check_output(report_path, [("--data", data)] + [("--run", r) for r in runs], is_report, "score report (JSON)",
                 overwrite)
    with exclusive_lock(report_path):
        return _score(runs, data, report_path, plots_dir, tta, batch_size, log)


def is_report(path: Path) -> bool:
    """Whether `path` is a JSON report of `score` (a file this command may replace)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"rmse", "question_accuracy", "leaderboard"} <= set(report)


def _score(runs: list[Path], data: Path, report_path: Path, plots_dir: str | Path | None, tta: int | None,
           batch_size: int,
           log: Callable[[str], None]) -> dict:
    with GalaxyFile(data) as f:
        if not f.has_labels:
            raise InputError(data, "has no labels (a test set?); score needs a labelled file; "
                                   "use `galaxytrain predict` for a submission")
        y_true = np.asarray(f.checked_labels(), dtype=np.float64)
        found = predict_runs(runs, f, tta, batch_size)
    ids, preds, trained_runs, tta = found.ids, found.mean, found.runs, found.tta
    trained = trained_runs[0]
    if plots_dir is None:
        plots_dir = report_path.with_name(report_path.stem + "_plots")
    cfg = trained.record.get("config", {})
    meta = {
        "run": str(trained.run_path),
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
    report = build_report(y_true, np.clip(preds, 0.0, 1.0), plots_dir=Path(plots_dir), meta=meta)
    write_report(report, report_path)
    log(format_report(report))
    log(f"wrote {report_path}")
    return report
