"""A trained model as one object: loaded once, from a run folder or a shipped name, then passed to inference.

A run folder (or a .keras file in one) and a model shipped in the package
(`galaxytrain.models.pretrained`) become the same `TrainedModel`: the Keras
model plus the record of its training (a run's config.json layout), from
which prediction takes the crop, size, normalisation and test-time views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

from galaxyprep import GalaxyFile, InputError, LabelSchema

from ..compute import inference_policy
from ..data import Normalization
from ..models import load_model_for_prediction
from ..models.pretrained import PREFIX, ShippedModel, find_shipped, shipped_model
from ..recipes import RECIPES
from ..ensemble import read_members
from ..run_dir import RunDir


class TrainedModel:
    """A Keras model ready to predict, and the record of the training that made it.

    `source` names it in logs and reports: the run folder, or
    ``pretrained:<name>`` for a shipped model. The record is read once, when
    the object is made; the weights are loaded (and verified) when `model` is
    first used, or given directly, so that an ensemble of many runs is
    described at once and held in memory one model at a time.
    """

    def __init__(self, model, model_path: Path, source: str, record: dict | None = None,
                 input_size: int | None = None, loader: Callable[[Callable[[str], str] | None], object] | None = None):
        self._model = model
        self.model_path = Path(model_path)
        self.source = source
        self.record = record or {}
        #: loader(choose_policy): the weights, verified, in a new Keras model computing in the policy chosen.
        self._loader = loader
        #: The side of the images the model takes (its input_shape), kept after the model is released.
        self.input_size = input_size if input_size is not None or model is None else int(model.input_shape[1])

    @property
    def model(self):
        """The Keras model, loaded and verified on first use."""
        if self._model is None:
            if self._loader is None:
                raise ValueError(f"{self.source}: the model was released and cannot be loaded again")
            self._model = self._loader(inference_policy)
            self.input_size = int(self._model.input_shape[1])
        return self._model

    def fresh_model(self, policy: str):
        """A new Keras model of these weights (verified) computing in `policy`, apart from `model`: to fine-tune."""
        if self._loader is None:
            raise ValueError(f"{self.source}: this model was given loaded and cannot be loaded afresh")
        return self._loader(lambda saved: policy)

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def __repr__(self) -> str:
        return f"TrainedModel({self.source!r}, loaded={self.is_loaded})"

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
    def label_schema(self) -> LabelSchema:
        """What its outputs are: the columns of the file it was trained on (the 37 Kaggle ones by default)."""
        return record_schema(self.record)

    @property
    def recipe(self) -> str | None:
        return self.record.get("config", {}).get("recipe")

    @property
    def tta(self) -> int:
        """The test-time views its recipe was measured with (1 without a recipe): what predict uses by default."""
        return record_tta(self.record)

    def release(self) -> None:
        """Free the Keras model (an ensemble predicts with one model in memory at a time); it reloads on use."""
        self._model = None

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


def load(source: ModelSource, which: str = "best", lazy: bool = False) -> TrainedModel:
    """A run folder, a .keras file of one, or a shipped model's name, loaded once and verified.

    A str that names a shipped model (``galaxytrain models``) loads it,
    unless a path of that name exists too: then say which with
    ``pretrained:<name>`` or ``./<name>``. A Path is always a run. `lazy`:
    read the record now, load the weights when the model is first used.
    """
    if isinstance(source, TrainedModel):
        return source
    shipped = _shipped_name(source)
    if shipped is not None:
        model = shipped_model(shipped)
        if model.is_ensemble:
            names = ", ".join(m["name"] for m in model.meta["members"])
            raise InputError(source, f"is a shipped ensemble of {len(model.meta['members'])} networks: predict or "
                                     f"score it whole (galaxytrain.predict, --pretrained {model.name}), or load one "
                                     f"of them ({names})")
        trained = describe_shipped(model)
    else:
        members = read_members(source) if Path(source).is_dir() else None
        if members is not None:
            raise InputError(source, f"is an ensemble of {len(members)} runs: predict or score it whole "
                                     f"(galaxytrain.predict, --run {source}), or load one of its member folders")
        trained = describe_run(source, which)
    if not lazy:
        trained.model  # noqa: B018 - load and verify now
    return trained


def _shipped_name(source: str | Path) -> str | None:
    if isinstance(source, Path):
        return None
    if source.startswith(PREFIX):
        return source[len(PREFIX):]
    if find_shipped(source) is not None:
        if Path(source).exists():
            raise InputError(source, f"is both a path and a shipped model's name: say pretrained:{source} or "
                                     f"./{source}")
        return source
    return None


def describe_shipped(shipped: ShippedModel) -> TrainedModel:
    """A shipped model, its weights checked against model.json's SHA-256 when loaded."""
    return TrainedModel(None, shipped.weights_path, PREFIX + shipped.name, dict(shipped.record),
                        loader=shipped.load)


def load_run(run: str | Path, which: str = "best") -> TrainedModel:
    """Load ``<run>/best.keras`` (or ``last``), or a .keras file given directly, ready to predict."""
    return load(Path(run), which)


def describe_run(run: str | Path, which: str = "best") -> TrainedModel:
    """A run folder's (or a .keras file's) record, read now, and its model, loaded and verified on first use."""
    run = Path(run)
    if run.is_file() and run.suffix == ".keras":
        run_dir, model_path = RunDir(run.parent), run
    elif not run.exists():
        raise InputError(run, "no such run directory")
    elif not run.is_dir():
        raise InputError(run, "not a run directory or .keras model file")
    else:
        run_dir = RunDir(run)
        model_path = run_dir.best if which == "best" else run_dir.last
        if not model_path.exists():
            raise InputError(run, f"not a trained run directory (no {model_path.name}); train one with "
                                  "`galaxytrain fit`")
    return TrainedModel(None, model_path, str(run_dir.path),
                        run_dir.read_config() or {},
                        loader=lambda choose: load_model_for_prediction(_verified(run_dir, model_path), choose))


def run_record(run: str | Path) -> dict:
    """The config.json record of a run directory, or of the run a .keras file in one belongs to ({} if none)."""
    run = Path(run)
    return RunDir(run.parent if run.suffix == ".keras" else run).read_config() or {}


def record_schema(record: dict) -> LabelSchema:
    """The label columns a record's model predicts; records from before own columns predict the Kaggle 37."""
    labels = record.get("data", {}).get("labels")
    return LabelSchema.kaggle() if not labels else LabelSchema.from_stored(labels["columns"], labels.get("kinds"))


def record_tta(record: dict) -> int:
    """The test-time views of a record's recipe (or of the model a fine-tuning started from); 1 without one."""
    name = record.get("config", {}).get("recipe")
    if name in RECIPES:
        return RECIPES[name].tta
    return int(record.get("start", {}).get("tta", 1))  # a fine-tuned model sees as the model it started from


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
    for trained in as_sources(sources):
        if trained.source.startswith(PREFIX):
            folder = trained.model_path.parent
            # an ensemble's network: its own folder's files, and the ensemble folder's around it
            out += [("--pretrained", path) for path in folder.iterdir()]
            out += [("--pretrained", path) for path in folder.parent.iterdir()] if "/" in trained.source else []
        else:
            out += [("--run", trained.model_path)] + [("--run", path) for path in RunDir(trained.source).files()]
    if data is not None:
        out.append(("--data", Path(data)))
        try:
            with GalaxyFile(data) as f:
                out += [("--data", part) for part in f.parts]
        except InputError:
            pass  # the command says what is wrong with it when it reads it
    return out


def as_sources(sources: ModelSource | Sequence[ModelSource]) -> list[TrainedModel]:
    """One model or several (an ensemble), each described once (its record read, its weights not yet loaded)."""
    found = [sources] if isinstance(sources, (str, Path, TrainedModel)) else list(sources)
    if not found:
        raise InputError("--run", "give at least one run directory or --pretrained model")
    return [load(member, lazy=True) for source in found for member in _members(source)]


def _members(source: ModelSource) -> list[ModelSource]:
    """An ensemble folder's member runs (`galaxytrain.ensemble`), a shipped ensemble's networks; others as they are."""
    if isinstance(source, TrainedModel):
        return [source]
    shipped = _shipped_name(source) if isinstance(source, str) else None
    if shipped is not None:  # described here, once: `load` passes a TrainedModel through
        model = shipped_model(shipped)
        return [describe_shipped(m) for m in (model.members() if model.is_ensemble else [model])]
    members = read_members(source) if Path(source).is_dir() else None
    return [source] if members is None else list(members)


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
