"""Predictions of trained models for every galaxy of a file, of JPEGs, or of an array, averaged over views and models.

Images are read in order, in contiguous slices, and go through the same
two steps as a training batch (the `TestTimeViews` view, then the
normalisation), with the mean and std of the *training* file (from the
model's record), so that a test file built separately is fed exactly as the
training images were. A model trained on views smaller than the stored
images (fit's ``--input-size``) sees the same centre view here that its
validation saw.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from galaxyprep import BuildConfig, BuildSummary, GalaxyFile, InputError, build_galaxy_file, crop_resize

from ..data import Normalization, TestTimeViews
from ..data.views import check_tta
from .trained import ModelSource, TrainedModel, as_sources, check_same_build, stack_images


def predict_file(model, data: str | Path | GalaxyFile, tta: int = 1, batch_size: int = 64, *,
                 normalization: Normalization | None = None, source_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None, spread: bool = False):
    """GalaxyIDs (file order) and the model's (N, K) predictions averaged over `tta` views.

    `normalization` is the training file's; without it the data file's own
    statistics are used. A model whose input is smaller than the file's
    images takes their centre view, but only when `source_size` (the stored
    size it was trained from) says that is how it was trained. With
    `spread`, also the (N, K) standard deviation over the views: how much
    the model's answer depends on the galaxy's orientation.
    """
    check_tta(tta)
    f = data if isinstance(data, GalaxyFile) else GalaxyFile(data)
    try:
        size = _model_size(model, f.path, f.size, source_size)
        norm = normalization or Normalization(*f.normalization)
        preds, spreads = _predict_rows(model, f.images, len(f.ids), size, tta, batch_size, norm, progress, spread)
        return (f.ids.copy(), preds, spreads) if spread else (f.ids.copy(), preds)
    finally:
        if f is not data:
            f.close()


def _predict_rows(model, read: Callable[[int, int], np.ndarray], n: int, size: int, tta: int, batch_size: int,
                  normalization: Normalization, progress: Callable[[int, int], None] | None, spread: bool):
    """(N, K) means (and stds) over the views of rows read in contiguous slices: the view, then normalisation.

    The same two steps, in the same order, as a training batch's
    (`GalaxyBatches` with a `TestTimeViews` view).
    """
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    view = TestTimeViews(size, tta)
    width = int(model.output_shape[-1])
    preds = np.empty((n, width), dtype=np.float32)
    spreads = np.empty((n, width), dtype=np.float32) if spread else None
    # Every call gets a full batch (the last one padded, the padding's outputs dropped),
    # so that the predict function is traced once.
    rows = min(batch_size, max(n, 1))
    for lo in range(0, n, batch_size):
        k = min(lo + batch_size, n) - lo
        x = normalization(view(read(lo, lo + k))).reshape(tta, k, size, size, 3)
        if k < rows:
            x = np.concatenate([x, np.zeros((tta, rows - k, size, size, 3), dtype=x.dtype)], axis=1)
        p = np.asarray(model.predict_on_batch(x.reshape(tta * rows, size, size, 3)), dtype=np.float32)
        views = p.reshape(tta, rows, -1)[:, :k]
        preds[lo:lo + k] = views.mean(axis=0)
        if spreads is not None:
            spreads[lo:lo + k] = views.std(axis=0)
        if progress is not None:
            progress(lo + k, n)
    return preds, spreads


def _model_size(model, path, stored: int, source_size: int | None) -> int:
    """The model's input side, checked against the stored images' (one line if they cannot meet)."""
    expected = tuple(model.input_shape[1:])
    size = int(expected[0])
    is_view = source_size == stored and size < stored
    if expected[2] != 3 or expected[0] != expected[1] or (size != stored and not is_view):
        wanted = source_size if source_size is not None else size
        raise InputError(path, f"images are {stored}x{stored}x3 but the model takes "
                               f"{'x'.join(str(v) for v in expected)}; rebuild the file with --size {wanted}")
    return size


@dataclass
class Predictions:
    """One row per galaxy, in the order of the input: GalaxyIDs, and the K answers averaged over views and models."""

    ids: np.ndarray
    mean: np.ndarray            # (N, K): the average over the models and their test-time views
    spread: np.ndarray | None   # (N, K): std over the test-time views, averaged over the models; None at tta 1
    models: list[TrainedModel]
    tta: int
    #: Images of a folder or zip that were left out, each with its reason (none for a file or an array).
    skipped: list[str] = field(default_factory=list)

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of the K answers: the label columns the models were trained on (Kaggle's 37 by default)."""
        return self.models[0].label_schema.columns

    def to_frame(self, clip: bool = True):
        """A pandas DataFrame indexed by GalaxyID with the models' columns (clipped to [0, 1], as submitted)."""
        import pandas as pd

        values = np.clip(self.mean, 0.0, 1.0) if clip else self.mean
        return pd.DataFrame(values, index=pd.Index(self.ids, name="GalaxyID"), columns=list(self.columns))


def predict_runs(sources: Sequence[ModelSource], data: str | Path | GalaxyFile, tta: int | None = None,
                 batch_size: int = 64, progress: Callable[[int, int], None] | None = None) -> Predictions:
    """The average prediction of one or more trained models (an ensemble) on a galaxyprep file.

    `tta` None: the test-time views the first model's recipe was measured
    with (1 without a recipe). Each model must have been trained on files of
    this file's crop and size. Models named by path are loaded and applied
    one at a time, so an ensemble needs the memory of one model; a loaded
    `TrainedModel` is used as it is and kept.
    """
    sources = as_sources(sources)  # each record read once
    tta = sources[0].tta if tta is None else tta
    check_tta(tta)
    f = data if isinstance(data, GalaxyFile) else GalaxyFile(data)
    try:
        size_of = lambda trained: _model_size(trained.model, f.path, f.size, trained.source_size)  # noqa: E731
        return _ensemble(sources, tta, len(f.ids), f.ids, f.images, size_of, batch_size, progress,
                         check=lambda trained: check_same_build(trained, f),
                         own_normalization=lambda: Normalization(*f.normalization))
    finally:
        if f is not data:
            f.close()


def predict_array(sources: Sequence[ModelSource], images, tta: int | None = None, batch_size: int = 64,
                  ids: Sequence[int] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Predictions:
    """Predictions for an (N, H, W, 3) uint8 array: frames as the JPEGs decode, or images at the model's size.

    Frames larger than the model's stored images are cut to the centre
    `crop` pixels and area-averaged to its size (galaxyprep's resample,
    applied to full decoded frames rather than through the JPEG decoder's
    DCT scaling, so the pixels can differ from a build's by a rounding).
    """
    array = stack_images(images)
    ids = np.arange(len(array), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (len(array),):
        raise InputError("ids", f"give one GalaxyID per image: {len(array)} images, {ids.size} ids")
    sources = as_sources(sources)  # each record read once
    tta = sources[0].tta if tta is None else tta
    check_tta(tta)
    first = sources[0].record.get("data", {})
    stored, crop = first.get("image_size"), first.get("crop")
    if stored is None or crop is None:
        raise InputError(sources[0].source, "its record does not say the crop and size it was trained on")
    stored, crop = int(stored), int(crop)
    side = array.shape[1]
    if side != stored:
        if side < crop:
            raise InputError("images", f"are {side}x{side}: give frames of at least {crop} pixels (the model's crop "
                                       f"of the 424-pixel Kaggle frames) or images of {stored}x{stored}")
        array = crop_resize(array, crop, stored)

    def check(trained: TrainedModel) -> None:
        data = trained.record.get("data", {})
        if (data.get("crop"), data.get("image_size")) != (crop, stored):
            raise InputError(trained.source, f"was trained on --crop {data.get('crop')} --size "
                                             f"{data.get('image_size')} images, the ensemble's first on --crop "
                                             f"{crop} --size {stored}; predict with each apart")

    size_of = lambda trained: _model_size(trained.model, "images", stored, trained.source_size)  # noqa: E731
    return _ensemble(sources, tta, len(array), ids, lambda lo, hi: array[lo:hi], size_of, batch_size, progress,
                     check)


def predict_source(sources: Sequence[ModelSource], source, tta: int | None = None, batch_size: int = 64,
                   ids: Sequence[int] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Predictions:
    """Predictions for a galaxyprep file, a folder or zip of JPEGs, or an array of images."""
    sources = as_sources(sources)  # each record read once
    if not isinstance(source, (str, Path)):
        return predict_array(sources, source, tta, batch_size, ids, progress)
    if ids is not None:
        raise InputError("ids", "only an array of images takes ids; files and JPEGs carry their GalaxyIDs")
    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".zip":
        return predict_runs(sources, path, tta, batch_size, progress)
    with tempfile.TemporaryDirectory(prefix="galaxytrain-images-") as tmp:
        built = build_for_models(sources, path, Path(tmp) / "images.h5", log=lambda line: None)
        found = predict_runs(sources, built.out, tta, batch_size, progress)
        found.skipped = [str(p) for p in built.skipped]
        return found


def _ensemble(sources: Sequence[TrainedModel], tta: int, n: int, ids: np.ndarray, read, size_of, batch_size: int,
              progress, check, own_normalization=None) -> Predictions:
    """Each model's views of every row, averaged; a model without a record's normalisation takes the file's own."""
    total = spread = None
    used: list[TrainedModel] = []
    for index, trained in enumerate(sources):
        loaded_here = not trained.is_loaded
        check(trained)
        if trained.label_schema.columns != sources[0].label_schema.columns:
            raise InputError(trained.source, f"predicts {trained.label_schema.describe()}, the ensemble's first "
                                             f"{sources[0].label_schema.describe()}; an ensemble averages models "
                                             "of the same columns")
        norm = trained.normalization
        if norm is None and own_normalization is not None:
            norm = own_normalization()
        elif norm is None:
            raise InputError(trained.source, "its record has no normalisation (mean, std) of its training file")
        step = None if progress is None else (lambda done, total_n, i=index: progress(i * n + done, len(sources) * n))
        preds, views = _predict_rows(trained.model, read, n, size_of(trained), tta, batch_size, norm, step, True)
        total = preds.astype(np.float64) if total is None else total + preds
        spread = views.astype(np.float64) if spread is None else spread + views
        if loaded_here:
            trained.release()  # loaded here: free it before the next one
        used.append(trained)
    k = len(used)
    return Predictions(np.asarray(ids).copy(), (total / k).astype(np.float32),
                       (spread / k).astype(np.float32) if tta > 1 else None, used, tta)


def build_for_models(sources: Sequence[ModelSource], images: str | Path, out: Path,
                     log: Callable[[str], None]) -> BuildSummary:
    """A galaxyprep file of `images` (a folder or zip of JPEGs) at the crop and size the models were trained on.

    Every image left out is said with its reason as it is found, then what
    the build counted (left out, ignored, duplicates): a prediction must
    account for every file it was given.
    """
    builds = set()
    for trained in as_sources(sources):
        data = trained.record.get("data", {})
        if not data.get("crop") or not data.get("image_size"):
            raise InputError(trained.source, "its record does not say the crop and size it was trained on; build the "
                                          "images with `galaxyprep build` and predict with --data")
        builds.add((int(data["crop"]), int(data["image_size"])))
    if len(builds) > 1:
        raise InputError("--run", f"the models were trained on different builds ({sorted(builds)}); predict each "
                                  "from its own file")
    crop, size = builds.pop()
    summary = build_galaxy_file(BuildConfig(images=Path(images), out=out, crop=crop, size=size),
                                report=lambda line: log(f"left out: {line}"))
    log(f"built {summary.n_written:,} images from {images} at --crop {crop} --size {size}")
    for line in summary.lines()[1:]:
        if not line.startswith("decoder:"):
            log(line)
    return summary
