"""Fine-tuning: a trained model's encoder under a new head for a file of one's own label columns.

The recipe is zoobot's: the head is replaced (one sigmoid per column of
the file); the encoder is frozen while the new head learns alone for
``frozen_epochs``, then learns too, each layer at ``layer_decay`` times the
rate of the layer above it, so that the features nearest the pixels move
least; the run stops on its own validation split (``patience``) and keeps
the best epoch. It is a `fit` run in every other way: resumable exactly,
locked, and scored and predicted like any run.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from galaxyprep import GalaxyFile, InputError, data_recipe

from ..config import FINETUNE_DEFAULTS, FitConfig
from ..inference.trained import TrainedModel, load
from ..models.heads import output_head
from ..models.pretrained import PREFIX
from ..recipes import RECIPES
from ..run_dir import sha256_file
from .schedule import compile_model

#: The start model's options a fine-tuning keeps: its network, and the views it learnt from.
_KEPT = ("model", "input_size", "augment", "max_shift", "max_zoom")


def start_model(start: str | Path) -> TrainedModel:
    """The model to start from, described (its weights load when the run begins)."""
    return load(start if isinstance(start, Path) or str(start).startswith(PREFIX) else Path(start), lazy=True)


def resolve_finetune_config(start: str | Path, data: str | Path, out: str | Path, **options) -> FitConfig:
    """A FitConfig that fine-tunes `start` ("pretrained:NAME", or a run folder) on `data` into `out`.

    The start model's network and training views are kept (options may
    change the views, not the network); `FINETUNE_DEFAULTS`, then every
    option not None, set the rest.
    """
    trained = start_model(start)
    recorded = trained.record.get("config", {})
    if not recorded.get("model"):
        raise InputError(trained.source, "its record does not say which network it is; fine-tune a run of "
                                         "`galaxytrain fit` or a shipped model")
    given = {k: v for k, v in options.items() if v is not None}
    for fixed in ("model", "input_size"):
        if given.get(fixed, recorded.get(fixed)) != recorded.get(fixed):
            raise InputError(f"--{fixed.replace('_', '-')}", f"is the start model's own when fine-tuning "
                                                           f"({recorded.get(fixed)}), not {given[fixed]}")
    values = {k: recorded[k] for k in _KEPT if k in recorded}
    values.update(FINETUNE_DEFAULTS, head="sigmoid")
    values.update(given)
    # a run folder (its best.keras) or the .keras file given: the record names exactly the weights started from
    source = trained.source if trained.source.startswith(PREFIX) else str(Path(start).resolve())
    return FitConfig(data=data, out=out, start_from=source, **values)


def check_start_data(config: FitConfig, f: GalaxyFile, record: dict) -> None:
    """Refuse a file built otherwise than the start model's data (crop, size), with the command that builds it.

    Notes the start model in `record` (its source and weights' SHA-256), so
    that a resumed run is refused when the start model has changed.
    """
    trained = start_model(config.start_from)
    check_same_build(trained, f)
    record["start"] = {"source": trained.source, "weights": str(trained.model_path),
                       "sha256": sha256_file(trained.model_path), "recipe": trained.recipe, "tta": trained.tta,
                       "columns": list(trained.label_schema.columns)}


def check_same_build(trained: TrainedModel, f: GalaxyFile) -> None:
    """Refuse a file built with another crop or size than `trained`'s data, with the command that builds it."""
    data = trained.record.get("data", {})
    crop, size = data.get("crop"), data.get("image_size")
    info = f.info
    if (crop, size) == (info.crop, info.size):
        return
    recipe = RECIPES.get(trained.recipe or "")
    if recipe is not None:
        command = data_recipe(recipe.data_name or recipe.name).build_command(
            info.source or "IMAGES", info.labels_source or "LABELS", "OUT.h5")
    else:
        command = (f"galaxyprep build --crop {crop} --size {size} --images {info.source or 'IMAGES'} "
                   f"--labels {info.labels_source or 'LABELS'} --out OUT.h5")
    raise InputError(f.path, f"was built with --crop {info.crop} --size {info.size}; {trained.source} was "
                             f"trained on --crop {crop} --size {size}: build its file with `{command}`")


def finetune_model(config: FitConfig, label_mean: np.ndarray) -> keras.Model:
    """The start model's encoder under a new sigmoid head for the file's columns, compiled with layer-wise rates.

    The head's biases start at the logit of the training labels' mean
    (`label_mean`), so that the first frozen epochs fit the features, not
    the columns' averages. Built in the current precision policy, so that
    it trains as a new model would.
    """
    trained = start_model(config.start_from)
    base = trained.fresh_model(keras.mixed_precision.global_policy().name)
    features = head_input(base)
    model = keras.Model(base.inputs, output_head(features, "sigmoid", len(label_mean)), name=base.name)
    head = model.get_layer("predictions")
    p = np.clip(np.asarray(label_mean, dtype=np.float64), 1e-3, 1 - 1e-3)
    head.bias.assign(np.log(p / (1 - p)).astype("float32"))
    compile_model(model, config.loss, config.learning_rate, scales=encoder_scales(model, config.layer_decay),
                  ema=config.ema)
    return model


def head_input(model: keras.Model):
    """The tensor the output head takes: the encoder's features (the tree head's logits layer, or the sigmoid's)."""
    names = {layer.name for layer in model.layers}
    for name in ("predictions_logits", "predictions"):
        if name in names:
            return model.get_layer(name).input
    raise InputError(model.name, "has no output head of this package (no 'predictions' layer) to replace")


def encoder_scales(model: keras.Model, decay: float) -> dict[str, float]:
    """The learning-rate factor of each encoder variable: decay ** (its layer's depth below the head).

    Depth counts layers with weights, from 1 for the one under the head; the
    head itself ("predictions") is left out and learns at the full rate.
    """
    weighted = [layer for layer in model.layers if layer.trainable_weights and layer.name != "predictions"]
    scales: dict[str, float] = {}
    for depth, layer in enumerate(reversed(weighted), start=1):
        for variable in layer.trainable_weights:
            scales[variable.path] = float(decay ** depth)
    return scales
