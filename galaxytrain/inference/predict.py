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

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import N_CLASSES, GalaxyFile, InputError

from ..data import GalaxyBatches, Normalization, TestTimeViews
from ..data.views import check_tta
from .trained import TrainedRun, load_run


def predict_file(model, data: str | Path | GalaxyFile, tta: int = 1, batch_size: int = 64, *,
                 normalization: Normalization | None = None, source_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GalaxyIDs (file order) and the model's (N, 37) predictions averaged over `tta` views.

    `normalization` is the training file's; without it the data file's own
    statistics are used. A model whose input is smaller than the file's
    images takes their centre view, but only when `source_size` (the stored
    size it was trained from) says that is how it was trained.
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
            preds[lo:lo + k] = p.reshape(tta, rows, -1)[:, :k].mean(axis=0)
            if progress is not None:
                progress(lo + k, len(ids))
        return ids.copy(), preds
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


def predict_runs(runs: Sequence[str | Path], data: str | Path | GalaxyFile, tta: int = 1, batch_size: int = 64,
                 ) -> tuple[np.ndarray, np.ndarray, list[TrainedRun]]:
    """GalaxyIDs and the average prediction of one or more trained runs (an ensemble), each over `tta` views.

    Models are loaded and applied one at a time, so an ensemble needs the
    memory of one model.
    """
    total = None
    trained_runs = []
    for run in runs:
        trained = load_run(run)
        ids, preds = predict_file(trained.model, data, tta, batch_size, normalization=trained.normalization,
                                  source_size=trained.source_size)
        total = preds.astype(np.float64) if total is None else total + preds
        trained.input_size = int(trained.model.input_shape[1])
        trained.model = None  # free it before the next one
        trained_runs.append(trained)
    return ids, (total / len(trained_runs)).astype(np.float32), trained_runs
