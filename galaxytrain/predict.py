"""Predictions from a trained run: Kaggle submissions (`predict`) and scored reports (`score`).

Both read the file in order, in contiguous slices, and normalize with the
mean and std of the *training* file (from the run's config.json), so that a
test file built separately is fed exactly as the training images were.
Test-time augmentation averages the model over dihedral views of each batch,
and beyond 8 views over dihedral views of the images turned by fractions of a
right angle too. A model trained on views smaller than the stored images (fit's
``--input-size``) sees the same centre view here that its validation saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep.errors import InputError
from galaxyprep.galaxy_file import open_galaxy_file, read_info
from galaxyprep.kernels import normalize_batch
from galaxyprep.tree import CLASS_NAMES

#: The dihedral views averaged for each --tta value: (quarter turns, mirrored).
TTA_VIEWS: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (1, False), (2, False), (3, False)),
    8: tuple((k, m) for m in (False, True) for k in range(4)),
}

#: --tta values beyond 8: the 8 dihedral views at each of these turns (degrees) of the image.
TTA_TURNS: dict[int, tuple[float, ...]] = {
    16: (0.0, 45.0),
    24: (0.0, 30.0, 60.0),
    32: (0.0, 22.5, 45.0, 67.5),
}
TTA_CHOICES = tuple(TTA_VIEWS) + tuple(TTA_TURNS)


def _check_tta(tta: int) -> None:
    if tta not in TTA_CHOICES:
        raise InputError("--tta", f"must be one of {', '.join(map(str, TTA_CHOICES))}, got {tta}")


@dataclass
class TrainedRun:
    """A model ready to predict, and what its run directory says about it."""

    model: object
    model_path: Path
    run_path: Path
    record: dict = field(default_factory=dict)

    @property
    def normalization(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) of the training file, or None when the run does not say."""
        data = self.record.get("data", {})
        if "mean" in data and "std" in data:
            return np.asarray(data["mean"], dtype=np.float64), np.asarray(data["std"], dtype=np.float64)
        return None

    @property
    def source_size(self) -> int | None:
        """The stored image size the model was trained from (its input may be a view of it)."""
        size = self.record.get("data", {}).get("image_size")
        return None if size is None else int(size)


def load_run(run: str | Path, which: str = "best") -> TrainedRun:
    """Load ``<run>/best.keras`` (or ``last``), or a .keras file given directly, ready to predict."""
    run = Path(run)
    if run.is_file() and run.suffix == ".keras":
        return TrainedRun(_load_for_prediction(run), run, run.parent, _read_record(run.parent))
    if not run.exists():
        raise InputError(run, "no such run directory")
    if not run.is_dir():
        raise InputError(run, "not a run directory or .keras model file")
    model_path = run / f"{which}.keras"
    if not model_path.exists():
        raise InputError(run, f"not a trained run directory (no {model_path.name}); train one with `galaxytrain fit`")
    return TrainedRun(_load_for_prediction(model_path), model_path, run, _read_record(run))


def _load_for_prediction(path: Path):
    """The model with its tree normalisation on: a checkpoint of a warm-up epoch was saved with it off."""
    from .fit import load_keras_model
    from .tree_head import set_normalize

    model = load_keras_model(path, compile=False)
    try:
        set_normalize(model, True)
    except ValueError:  # no tree head: nothing to switch
        pass
    return model


def _read_record(run: Path) -> dict:
    try:
        return json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def dihedral_views(x: np.ndarray, tta: int) -> np.ndarray:
    """(B, S, S, C) -> (tta * B, S, S, C): the batch under each view of TTA_VIEWS[tta], view-major."""
    if tta not in TTA_VIEWS:
        raise InputError("--tta", f"must be one of {', '.join(map(str, TTA_VIEWS))}, got {tta}")
    if tta == 1:
        return x
    views = []
    for quarter_turns, mirrored in TTA_VIEWS[tta]:
        v = np.flip(x, axis=2) if mirrored else x
        views.append(np.rot90(v, k=quarter_turns, axes=(1, 2)))
    return np.ascontiguousarray(np.concatenate(views, axis=0))


def predict_arrays(model, data_path: str | Path, tta: int = 1, batch_size: int = 64, *,
                   normalization: tuple[np.ndarray, np.ndarray] | None = None,
                   source_size: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GalaxyIDs (file order) and the model's (N, 37) predictions averaged over `tta` views.

    `normalization` is the training file's (mean, std); without it the data
    file's own statistics are used. A model whose input is smaller than the
    file's images takes their centre view, but only when `source_size` (the
    stored size it was trained from) says that is how it was trained.
    """
    from .augment import centre_view, rotated_views

    data_path = Path(data_path)
    _check_tta(tta)
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    info = read_info(data_path)
    expected = tuple(model.input_shape[1:])
    size = int(expected[0])
    is_view = source_size == info.size and size < info.size
    if expected[2] != 3 or expected[0] != expected[1] or (size != info.size and not is_view):
        wanted = source_size if source_size is not None else size
        raise InputError(data_path, f"images are {info.size}x{info.size}x3 but the model takes "
                                    f"{'x'.join(str(v) for v in expected)}; rebuild the file with --size {wanted}")
    mean, std = normalization if normalization is not None else (info.mean, info.std)
    mean32 = np.asarray(mean, dtype=np.float32)
    inv_std32 = (1.0 / np.asarray(std, dtype=np.float64)).astype(np.float32)
    turns = TTA_TURNS.get(tta, (0.0,))
    dihedral = min(tta, 8)
    with open_galaxy_file(data_path) as f:
        images = f["images"]
        ids = np.asarray(f["ids"][:], dtype=np.int64)
        n = len(ids)
        preds = np.empty((n, len(CLASS_NAMES)), dtype=np.float32)
        # Every call gets a full batch (the last one padded with stale rows, whose outputs
        # are dropped), so that the predict function is traced once.
        rows = min(batch_size, max(n, 1))
        buf = np.zeros((rows, size, size, 3), dtype=np.float32)
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            k = hi - lo
            raw = images[lo:hi]
            views = []
            for turn in turns:
                pixels = centre_view(raw, size) if turn == 0 else rotated_views(raw, size, turn)
                normalize_batch(pixels, mean32, inv_std32, buf[:k])
                views.append(dihedral_views(buf, dihedral))
            x = views[0] if len(views) == 1 else np.concatenate(views, axis=0)
            p = np.asarray(model.predict_on_batch(x), dtype=np.float32)
            preds[lo:hi] = p.reshape(tta, rows, -1)[:, :k].mean(axis=0)
            if progress is not None:
                progress(hi, n)
    return ids, preds


def write_submission(path: str | Path, ids: np.ndarray, preds: np.ndarray) -> Path:
    """Kaggle's format: header GalaxyID,Class1.1,...,Class11.6; values clipped to [0, 1]."""
    path = Path(path)
    preds = np.clip(np.asarray(preds, dtype=np.float64), 0.0, 1.0)
    if preds.shape != (len(ids), len(CLASS_NAMES)):
        raise ValueError(f"predictions are {preds.shape}, expected ({len(ids)}, {len(CLASS_NAMES)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", encoding="ascii", newline="") as f:
        f.write(",".join(("GalaxyID",) + tuple(CLASS_NAMES)) + "\n")
        body = np.column_stack([np.asarray(ids, dtype=np.float64), preds])
        np.savetxt(f, body, fmt=["%d"] + ["%.6f"] * len(CLASS_NAMES), delimiter=",")
    os.replace(tmp, path)
    return path


def _as_runs(run: str | Path | Sequence[str | Path]) -> list[Path]:
    runs = [Path(run)] if isinstance(run, (str, Path)) else [Path(r) for r in run]
    if not runs:
        raise InputError("--run", "give at least one run directory")
    return runs


def predict_runs(runs: Sequence[str | Path], data: str | Path, tta: int = 1, batch_size: int = 64,
                 ) -> tuple[np.ndarray, np.ndarray, list[TrainedRun]]:
    """GalaxyIDs and the average prediction of one or more trained runs (an ensemble), each over `tta` views.

    Models are loaded and applied one at a time, so an ensemble needs the
    memory of one model.
    """
    total = None
    trained_runs = []
    for run in runs:
        trained = load_run(run)
        ids, preds = predict_arrays(trained.model, data, tta, batch_size, normalization=trained.normalization,
                                    source_size=trained.source_size)
        total = preds.astype(np.float64) if total is None else total + preds
        trained.model = None  # free it before the next one
        trained_runs.append(trained)
    return ids, (total / len(trained_runs)).astype(np.float32), trained_runs


def predict_submission(run: str | Path | Sequence[str | Path], data: str | Path, out: str | Path, tta: int = 1,
                       batch_size: int = 64, log: Callable[[str], None] = print) -> Path:
    """The whole of ``galaxytrain predict``; several runs are averaged."""
    ids, preds, trained = predict_runs(_as_runs(run), data, tta, batch_size)
    path = write_submission(out, ids, preds)
    log(f"wrote {path} ({len(ids)} galaxies, {', '.join(str(t.model_path) for t in trained)}, tta {tta})")
    return path


def score_run(run: str | Path | Sequence[str | Path], data: str | Path, report_path: str | Path,
              plots_dir: str | Path | None = None, tta: int = 1, batch_size: int = 64,
              log: Callable[[str], None] = print) -> dict:
    """The whole of ``galaxytrain score``: predict a labelled file, report, write JSON (with `rmse`).

    Several runs are scored as one ensemble: the average of their predictions.
    """
    from .report import build_report, format_report, write_report

    data = Path(data)
    report_path = Path(report_path)
    runs = _as_runs(run)
    if not read_info(data).has_labels:
        raise InputError(data, "has no labels (a test set?); score needs a labelled file; use `galaxytrain predict` for a submission")
    ids, preds, trained_runs = predict_runs(runs, data, tta, batch_size)
    trained = trained_runs[0]
    with open_galaxy_file(data) as f:
        y_true = np.asarray(f["labels"][:], dtype=np.float64)
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
