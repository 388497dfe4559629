"""Predictions of trained runs for every galaxy of a file, averaged over test-time views and runs.

The file is read in order, in contiguous slices, through the same pipeline
as training batches (`GalaxyBatches` with a `TestTimeViews` view), and
normalized with the mean and std of the *training* file (from the run's
config.json), so that a test file built separately is fed exactly as the
training images were. A model trained on views smaller than the stored
images (fit's ``--input-size``) sees the same centre view here that its
validation saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import N_CLASSES, GalaxyFile, InputError

from ..data import GalaxyBatches, Normalization, TestTimeViews
from ..data.views import check_tta
from ..recipes import RECIPES, get_recipe
from .trained import TrainedRun, load_run, run_record


def predict_file(model, data: str | Path | GalaxyFile, tta: int = 1, batch_size: int = 64, *,
                 normalization: Normalization | None = None, source_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None, spread: bool = False):
    """GalaxyIDs (file order) and the model's (N, 37) predictions averaged over `tta` views.

    `normalization` is the training file's; without it the data file's own
    statistics are used. A model whose input is smaller than the file's
    images takes their centre view, but only when `source_size` (the stored
    size it was trained from) says that is how it was trained. With
    `spread`, also the (N, 37) standard deviation over the views: how much
    the model's answer depends on the galaxy's orientation.
    """
    check_tta(tta)
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    f = data if isinstance(data, GalaxyFile) else GalaxyFile(data)
    try:
        size = _model_size(model, f, source_size)
        batches = GalaxyBatches(f, batch_size=batch_size, shuffle=False, labels=False,
                                view=TestTimeViews(size, tta), normalize=normalization or True)
        ids = f.ids
        preds = np.empty((len(ids), N_CLASSES), dtype=np.float32)
        spreads = np.empty((len(ids), N_CLASSES), dtype=np.float32) if spread else None
        # Every call gets a full batch (the last one padded, the padding's outputs dropped),
        # so that the predict function is traced once.
        rows = min(batch_size, max(len(ids), 1))
        for index in range(len(batches)):
            lo = index * batch_size
            k = min(lo + batch_size, len(ids)) - lo
            x = batches[index].reshape(tta, k, size, size, 3)
            if k < rows:
                x = np.concatenate([x, np.zeros((tta, rows - k, size, size, 3), dtype=x.dtype)], axis=1)
            p = np.asarray(model.predict_on_batch(x.reshape(tta * rows, size, size, 3)), dtype=np.float32)
            views = p.reshape(tta, rows, -1)[:, :k]
            preds[lo:lo + k] = views.mean(axis=0)
            if spreads is not None:
                spreads[lo:lo + k] = views.std(axis=0)
            if progress is not None:
                progress(lo + k, len(ids))
        return (ids.copy(), preds, spreads) if spread else (ids.copy(), preds)
    finally:
        if f is not data:
            f.close()


def _model_size(model, f: GalaxyFile, source_size: int | None) -> int:
    """The model's input side, checked against the file's images (one line if they cannot meet)."""
    expected = tuple(model.input_shape[1:])
    size = int(expected[0])
    is_view = source_size == f.size and size < f.size
    if expected[2] != 3 or expected[0] != expected[1] or (size != f.size and not is_view):
        wanted = source_size if source_size is not None else size
        raise InputError(f.path, f"images are {f.size}x{f.size}x3 but the model takes "
                                 f"{'x'.join(str(v) for v in expected)}; rebuild the file with --size {wanted}")
    return size


@dataclass
class Predictions:
    """What `predict_runs` found: one row per galaxy of the file, in file order."""

    ids: np.ndarray
    mean: np.ndarray            # (N, 37): the average over the runs and their test-time views
    spread: np.ndarray | None   # (N, 37): std over the test-time views, averaged over the runs; None at tta 1
    runs: list[TrainedRun]
    tta: int


def predict_runs(runs: Sequence[str | Path], data: str | Path | GalaxyFile, tta: int | None = None,
                 batch_size: int = 64) -> Predictions:
    """The average prediction of one or more trained runs (an ensemble), each over `tta` views.

    `tta` None: the test-time views the first run's recipe was measured
    with (1 without a recipe). Each run must have been trained on files of
    this file's crop and size. Models are loaded and applied one at a time,
    so an ensemble needs the memory of one model.
    """
    tta = default_tta(runs) if tta is None else tta
    f = data if isinstance(data, GalaxyFile) else GalaxyFile(data)
    try:
        total, spread, trained_runs = None, None, []
        for run in runs:
            trained = load_run(run)
            check_same_build(trained, f)
            ids, preds, views = predict_file(trained.model, f, tta, batch_size, normalization=trained.normalization,
                                             source_size=trained.source_size, spread=True)
            total = preds.astype(np.float64) if total is None else total + preds
            spread = views.astype(np.float64) if spread is None else spread + views
            trained.input_size = int(trained.model.input_shape[1])
            trained.model = None  # free it before the next one
            trained_runs.append(trained)
    finally:
        if f is not data:
            f.close()
    n = len(trained_runs)
    return Predictions(ids, (total / n).astype(np.float32), (spread / n).astype(np.float32) if tta > 1 else None,
                       trained_runs, tta)


def default_tta(runs: Sequence[str | Path]) -> int:
    """The test-time views of the first run's recipe (what its accuracy was measured with); 1 without one."""
    name = run_record(runs[0]).get("config", {}).get("recipe")
    return get_recipe(name).tta if name in RECIPES else 1


def check_same_build(trained: TrainedRun, f: GalaxyFile) -> None:
    """Refuse a file of another crop or size than the run's training file: the galaxies would be seen otherwise."""
    data = trained.record.get("data", {})
    crop, size = data.get("crop"), data.get("image_size")
    info = f.info
    if (crop and info.crop and int(crop) != info.crop) or (size and int(size) != info.size):
        raise InputError(f.path, f"was built with --crop {info.crop} --size {info.size} ({info.size}x{info.size}x3 "
                                 f"images), but {trained.run_path} was trained on --crop {crop} --size {size} files "
                                 f"({size}x{size}x3); rebuild it with `galaxyprep build --crop {crop} --size {size} "
                                 f"--images ... --out ...`")
