"""A trained model as one object: loaded once, from a run folder or a shipped name, then passed to inference.

A run folder (or a .keras file in one) and a model shipped in the package
(`galaxytrain.models.pretrained`) become the same `TrainedModel`: the Keras
model plus the record of its training (a run's config.json layout), from
which prediction takes the crop, size, normalisation and test-time views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

from galaxyprep import GalaxyFile, InputError

from ..compute import inference_policy
from ..data import Normalization
from ..models import load_model_for_prediction
from ..models.pretrained import PREFIX, ShippedModel, shipped_model, shipped_models
from ..recipes import RECIPES
from ..run_dir import RunDir


@dataclass
class TrainedModel:
    """A Keras model ready to predict, and the record of the training that made it.

    `source` names it in logs and reports: the run folder, or
    ``pretrained:<name>`` for a shipped model.
    """

    model: object
    model_path: Path
    source: str
    record: dict = field(default_factory=dict)
    #: The side of the images the model takes (its input_shape), kept after the model is released.
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.model is not None and self.input_size is None:
            self.input_size = int(self.model.input_shape[1])

    @property
    def normalization(self) -> Normalization | None:
        """The training file's normalization, or None when the record does not say."""
        data = self.record.get("data", {})
        if "mean" in data and "std" in data:
            return Normalization(data["mean"], data["std"])
        return None

    @property
    def source_size(self) -> int | None:
        """The stored image size the model was trained from (its input may be a view of it)."""
        size = self.record.get("data", {}).get("image_size")
        return None if size is None else int(size)

    @property
    def crop(self) -> int | None:
        """The centre crop, in original pixels, of the images it was trained on."""
        crop = self.record.get("data", {}).get("crop")
        return None if crop is None else int(crop)

    @property
    def recipe(self) -> str | None:
        return self.record.get("config", {}).get("recipe")

    @property
    def tta(self) -> int:
        """The test-time views its recipe was measured with (1 without a recipe): what predict uses by default."""
        return record_tta(self.record)

    def release(self) -> None:
        """Free the Keras model (an ensemble predicts with one model in memory at a time)."""
        self.model = None

    def predict(self, images, *, tta: int | None = None, batch_size: int = 64, ids: Sequence[int] | None = None,
                progress: Callable[[int, int], None] | None = None):
        """Predictions for a galaxyprep file, a folder or zip of JPEGs, or an array of images.

        An array is (N, H, W, 3) uint8 RGB: either images as the Kaggle JPEGs
        decode (the centre `crop` pixels are cut and area-averaged to the
        model's size, as galaxyprep builds them), or already at the model's
        stored size. `ids` name an array's rows (default 0..N-1). Returns
        `Predictions` (``.ids``, ``.mean``, ``.spread``, ``.to_frame()``).
        """
        from .predict import predict_source

        return predict_source([self], images, tta=tta, batch_size=batch_size, ids=ids, progress=progress)


#: What inference takes as a model: a loaded one, a run folder (Path or str), or a shipped name (str).
ModelSource = Union[TrainedModel, str, Path]


def load(source: ModelSource, which: str = "best") -> TrainedModel:
    """A run folder, a .keras file of one, or a shipped model's name, loaded once and verified.

    A str that names a shipped model (``galaxytrain models``) loads it,
    unless a path of that name exists too: then say which with
    ``pretrained:<name>`` or ``./<name>``. A Path is always a run.
    """
    if isinstance(source, TrainedModel):
        return source
    shipped = _shipped_name(source)
    if shipped is not None:
        return load_shipped(shipped_model(shipped))
    return load_run(source, which)


def _shipped_name(source: str | Path) -> str | None:
    if isinstance(source, Path):
        return None
    if source.startswith(PREFIX):
        return source[len(PREFIX):]
    if source in shipped_models():
        if Path(source).exists():
            raise InputError(source, f"is both a path and a shipped model's name: say pretrained:{source} or "
                                     f"./{source}")
        return source
    return None


def load_shipped(shipped: ShippedModel) -> TrainedModel:
    """A shipped model, its weights checked against model.json's SHA-256."""
    return TrainedModel(shipped.load(inference_policy), shipped.weights_path, PREFIX + shipped.name,
                        dict(shipped.record))


def load_run(run: str | Path, which: str = "best") -> TrainedModel:
    """Load ``<run>/best.keras`` (or ``last``), or a .keras file given directly, ready to predict."""
    run = Path(run)
    if run.is_file() and run.suffix == ".keras":
        return TrainedModel(_load(_verified(RunDir(run.parent), run)), run, str(run.parent), run_record(run))
    if not run.exists():
        raise InputError(run, "no such run directory")
    if not run.is_dir():
        raise InputError(run, "not a run directory or .keras model file")
    run_dir = RunDir(run)
    model_path = run_dir.best if which == "best" else run_dir.last
    if not model_path.exists():
        raise InputError(run, f"not a trained run directory (no {model_path.name}); train one with `galaxytrain fit`")
    return TrainedModel(_load(_verified(run_dir, model_path)), model_path, str(run), run_record(run))


def run_record(run: str | Path) -> dict:
    """The config.json record of a run directory, or of the run a .keras file in one belongs to ({} if none)."""
    run = Path(run)
    return RunDir(run.parent if run.suffix == ".keras" else run).read_config() or {}


def record_of(source: ModelSource) -> dict:
    """A model's training record, without loading its weights."""
    if isinstance(source, TrainedModel):
        return source.record
    shipped = _shipped_name(source)
    return dict(shipped_model(shipped).record) if shipped is not None else run_record(source)


def record_tta(record: dict) -> int:
    """The test-time views of a record's recipe; 1 without one."""
    name = record.get("config", {}).get("recipe")
    return RECIPES[name].tta if name in RECIPES else 1


def _verified(run_dir: RunDir, model: Path) -> Path:
    try:
        return run_dir.verified(model)
    except ValueError as exc:
        raise InputError(model, f"{exc}; predict with the run that made it, or train again") from None


def protected_paths(sources: Sequence[ModelSource], data: str | Path | None) -> list[tuple[str, Path]]:
    """(option, path) of every file an output of score or predict must never replace.

    The runs' files (a .keras given directly and its run folder's), a
    shipped model's files, the data file and, for a virtual file, each shard
    it reads.
    """
    out: list[tuple[str, Path]] = []
    for source in sources:
        if isinstance(source, TrainedModel):
            out.append(("--run", source.model_path))
            continue
        shipped = _shipped_name(source)
        if shipped is not None:
            folder = shipped_model(shipped).folder
            out += [("--pretrained", path) for path in folder.iterdir()]
            continue
        run = Path(source)
        run_dir = RunDir(run.parent if run.suffix == ".keras" else run)
        out += [("--run", run)] + [("--run", path) for path in run_dir.files()]
    if data is not None:
        out.append(("--data", Path(data)))
        try:
            with GalaxyFile(data) as f:
                out += [("--data", part) for part in f.parts]
        except InputError:
            pass  # the command says what is wrong with it when it reads it
    return out


def _load(path: Path):
    """The model, computing in its own precision where this hardware runs it natively, else in float32."""
    return load_model_for_prediction(path, inference_policy)


def as_sources(sources: ModelSource | Sequence[ModelSource]) -> list[ModelSource]:
    """One model or several (an ensemble) as a list; at least one."""
    found = [sources] if isinstance(sources, (str, Path, TrainedModel)) else list(sources)
    if not found:
        raise InputError("--run", "give at least one run directory or --pretrained model")
    return found


def check_same_build(trained: TrainedModel, f: GalaxyFile) -> None:
    """Refuse a file of another crop or size than the model's training file: the galaxies would be seen otherwise."""
    data = trained.record.get("data", {})
    crop, size = data.get("crop"), data.get("image_size")
    info = f.info
    if (crop and info.crop and int(crop) != info.crop) or (size and int(size) != info.size):
        raise InputError(f.path, f"was built with --crop {info.crop} --size {info.size} ({info.size}x{info.size}x3 "
                                 f"images), but {trained.source} was trained on --crop {crop} --size {size} files "
                                 f"({size}x{size}x3); rebuild it with `galaxyprep build --crop {crop} --size {size} "
                                 f"--images ... --out ...`")


def stack_images(images) -> np.ndarray:
    """An (N, H, W, 3) uint8 array from an array or a list of (H, W, 3) images (one line if it is not one)."""
    try:
        array = np.asarray(images)
    except ValueError:
        raise InputError("images", "the images differ in shape; give images of one size") from None
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] != array.shape[2]:
        raise InputError("images", f"expected square RGB images, an (N, H, H, 3) array; got shape {array.shape}")
    if array.dtype != np.uint8:
        raise InputError("images", f"expected uint8 pixels (0-255, as JPEGs decode); got {array.dtype}")
    return array
