"""Train a model on a galaxyprep file into a run directory that survives kill -9.

`fit(FitConfig) -> FitResult` is the whole of ``galaxytrain fit``; the CLI
only parses options into a `FitConfig`. A run directory that already holds
completed epochs of the same configuration is resumed from ``last.keras``
(weights and optimizer state) at the next epoch; one with a different
configuration is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import hashlib
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from galaxyprep.errors import InputError
from galaxyprep.galaxy_file import open_galaxy_file, read_info

from .config import FitConfig
from .run_dir import RunDir, new_state

Log = Callable[[str], None]

#: Data-file facts that must be unchanged to resume a run.
DATA_KEYS = ("n_used", "image_size", "ids_sha256", "mean", "std")


@dataclass
class FitResult:
    """What a call to `fit` left in the run directory."""

    run_dir: Path
    epochs_done: int
    initial_epoch: int
    best_epoch: int | None
    best_val_loss: float | None
    best_val_rmse: float | None
    baseline_val_rmse: float | None
    history: list[dict] = field(default_factory=list)


def fit(config: FitConfig, log: Log = print) -> FitResult:
    """Train (or resume training) as `config` says; raise InputError for bad input."""
    config.check()
    from .models import available_models

    if config.model not in available_models():
        raise InputError(f"--model {config.model}", f"unknown model; available: {', '.join(available_models())}")
    data = describe_data(config.data, config.limit)
    labels = _read_labels(config.data, data["n_used"])
    ids = _read_ids(config.data, data["n_used"])
    train_rows, val_rows = _split(ids, config.val_fraction, config.seed)
    if len(train_rows) == 0:
        raise InputError(config.data, f"no training images left after holding out {len(val_rows)} for "
                                      "validation; use more images or a smaller --val-fraction")
    baseline = _mean_predictor_rmse(labels, train_rows, val_rows)
    record = {
        "config": config.to_dict(),
        "data": data,
        "split": {"seed": config.seed, "val_fraction": config.val_fraction,
                  "n_train": int(len(train_rows)), "n_val": int(len(val_rows)),
                  "val_rows_sha256": _sha256(np.asarray(val_rows, dtype=np.int64))},
        "baseline_val_rmse_mean_predictor": baseline,
        "versions": _versions(),
    }

    run = RunDir(config.out)
    state = _prepare_run_dir(run, config, record)

    from .gpu import configure_gpus

    previous_policy = keras.mixed_precision.global_policy()
    try:
        gpu = configure_gpus(config.gpu_memory_limit, config.memory_growth, config.mixed_precision, log=log)
        record["gpu"] = {"n_gpus": gpu.n_gpus, "memory_growth": gpu.memory_growth,
                         "memory_limit_mib": gpu.memory_limit_mib, "mixed_precision": gpu.mixed_precision}
        return _train(config, run, state, record, train_rows, val_rows, baseline, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: FitConfig, run: RunDir, state: dict, record: dict, train_rows, val_rows,
           baseline: float | None, log: Log) -> FitResult:
    stored = record["data"]["image_size"]
    size = input_size(config, stored)
    initial_epoch = int(state["epochs_done"])
    # Weights, dropout and Keras' own shuffles follow the seed; a resumed run continues
    # from a seed of its own so that it does not replay the first epoch's dropout masks.
    keras.utils.set_random_seed(config.seed + initial_epoch)
    model = load_keras_model(run.last) if initial_epoch > 0 else build_model(config, size)
    record["model"] = {"name": config.model, "head": config.head, "params": int(model.count_params()),
                       "input_shape": [size, size, 3]}
    n_train, n_val = len(train_rows), len(val_rows)
    view = "" if size == stored else f", seen as {size}x{size} views"
    log(f"data: {config.data} ({record['data']['n_used']} images {stored}x{stored}{view}; "
        f"{n_train} train, {n_val} validation, split seed {config.seed})")
    if config.recipe is not None:
        from .recipes import get_recipe

        recipe = get_recipe(config.recipe)
        built = (record["data"].get("crop"), stored)
        note = ("" if built == (recipe.crop, recipe.size) else
                f" (measured on files built with --crop {recipe.crop} --size {recipe.size}; "
                f"this one has crop {built[0]}, size {built[1]})")
        log(f"recipe: {config.recipe}{note}")
    log(f"model: {config.model} ({model.count_params():,} parameters, head {config.head}, loss {config.loss})")
    if baseline is not None:
        log(f"validation RMSE of predicting the training mean: {baseline:.5f}")
    if initial_epoch > 0:
        log(f"resuming {run.path} at epoch {initial_epoch + 1}/{config.epochs} "
            f"({initial_epoch} epoch{'s' if initial_epoch != 1 else ''} done)")
    if initial_epoch >= config.epochs:
        log(f"{run.path} already has {initial_epoch} epochs (asked for {config.epochs}): nothing to do")
        return _result(run, state, initial_epoch, baseline)
    run.write_config(record)

    from .loader import GalaxyBatches

    loader_kw = dict(workers=config.workers, use_multiprocessing=config.use_multiprocessing,
                     max_queue_size=config.max_queue_size)
    from .augment import RotateRanges

    train = GalaxyBatches(config.data, rows=train_rows, batch_size=config.batch_size, shuffle=True,
                          augment=None if config.augment == "none" else config.augment,
                          seed=config.seed, out_size=size,
                          rotate_ranges=RotateRanges(max_shift=config.max_shift, max_zoom=config.max_zoom),
                          **loader_kw)
    val = None
    if n_val:
        val = GalaxyBatches(config.data, rows=val_rows, batch_size=config.batch_size, shuffle=False,
                            augment=None, seed=config.seed, out_size=size, **loader_kw)
    train.set_epoch(initial_epoch)  # a resumed epoch sees the order it would have seen
    monitor = "val_loss" if val is not None else "loss"
    state["monitor"] = monitor
    warmup = config.tree_warmup_epochs if config.head == "tree" else 0
    # The first epoch with the tree normalisation on starts the choice of best.keras afresh:
    # losses of the unnormalised outputs are not comparable with the model that is kept.
    callback = RunDirCallback(run, state, monitor, n_train, baseline, log,
                              restart_best_at=warmup + 1 if warmup else None)
    schedule_callbacks = []
    if warmup:
        from .tree_head import EnableTreeNormalization

        schedule_callbacks.append(EnableTreeNormalization(at_epoch=warmup))
    if config.lr_schedule != "constant":
        schedule_callbacks.append(LearningRateSchedule(config.lr_schedule, config.learning_rate,
                                                       config.epochs, len(train)))
    # A terminal gets Keras' progress bar; a log file gets only our line per epoch.
    verbose = config.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    keras_verbose = 1 if verbose == 1 else 0
    callback.total_epochs = config.epochs
    try:
        # The progress bar first, so that its epoch line comes before ours.
        # The schedules act at epoch and batch begin, from the epoch number alone, so a resumed run
        # picks them up where it stopped.
        callbacks = ([keras.callbacks.ProgbarLogger()] if keras_verbose else []) + schedule_callbacks + [callback]
        model.fit(train, validation_data=val, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=keras_verbose)
    finally:
        for ds in (train, val):
            close = getattr(ds, "close", None)
            if callable(close):
                close()
    return _result(run, state, initial_epoch, baseline)


def input_size(config: FitConfig, stored: int) -> int:
    """The model's input size: config.input_size, or the stored size; never more than stored."""
    if config.input_size is None:
        return int(stored)
    if config.input_size > stored:
        raise InputError(config.data, f"holds {stored}x{stored} images, smaller than --input-size "
                                      f"{config.input_size}; rebuild it with a larger --size or lower --input-size")
    return int(config.input_size)


def build_model(config: FitConfig, size: int):
    """A new compiled model for `config` and square images of `size`."""
    from .models import InputShapeError, create_model

    try:
        model = create_model(config.model, (size, size, 3), head=config.head)
    except InputShapeError as exc:
        raise InputError(config.data, str(exc)) from None
    compile_model(model, config.loss, config.learning_rate, config.weight_decay)
    return model


def compile_model(model, loss: str, learning_rate: float, weight_decay: float = 0.0) -> None:
    """Adam (AdamW with weight decay), the chosen loss, and an RMSE metric (the Kaggle score)."""
    losses = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}
    if weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer, loss=losses[loss], metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])


def scheduled_learning_rate(schedule: str, base: float, progress: float) -> float:
    """The learning rate at `progress` (0 at the first batch, 1 after the last) of a training."""
    progress = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return float(base)
    if schedule == "cosine":
        return float(base * 0.5 * (1.0 + np.cos(np.pi * progress)))
    if schedule == "step":
        return float(base * (1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


class LearningRateSchedule(keras.callbacks.Callback):
    """Set the optimizer's learning rate before every batch from (epoch, batch) alone.

    A function of the position in the training, not of a counter, so that a
    resumed run continues the same curve (a run resumed with more epochs
    stretches the rest of it).
    """

    def __init__(self, schedule: str, base: float, epochs: int, steps_per_epoch: int):
        super().__init__()
        scheduled_learning_rate(schedule, base, 0.0)  # rejects an unknown name now
        self.schedule, self.base = schedule, float(base)
        self.total_steps = max(1, int(epochs) * int(steps_per_epoch))
        self.steps_per_epoch = int(steps_per_epoch)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + int(batch)
        self.model.optimizer.learning_rate.assign(scheduled_learning_rate(self.schedule, self.base,
                                                                          step / self.total_steps))


def load_keras_model(path: Path, compile: bool = True):
    """Load a .keras file written by this package (custom layers registered).

    compile=True restores loss, metrics and the optimizer state (to resume);
    prediction needs none of them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "not a .keras model file (not a zip archive): damaged or not written by Keras 3")
    # Importing the registry registers every model family's custom layers (and the tree head).
    from . import models  # noqa: F401
    from .tree_head import GalaxyTreeHead

    custom = {"GalaxyTreeHead": GalaxyTreeHead}
    try:
        return keras.models.load_model(path, custom_objects=custom, compile=compile)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot load the model ({reason})") from None


def _result(run: RunDir, state: dict, initial_epoch: int, baseline: float | None) -> FitResult:
    history = list(state["history"])
    best = next((row for row in history if row["epoch"] == state.get("best_epoch")), None)
    return FitResult(run_dir=run.path, epochs_done=int(state["epochs_done"]), initial_epoch=initial_epoch,
                     best_epoch=state.get("best_epoch"),
                     best_val_loss=None if best is None else best.get("val_loss"),
                     best_val_rmse=None if best is None else best.get("val_rmse"),
                     baseline_val_rmse=baseline, history=history)


# -- run directory ----------------------------------------------------------------------------

def _prepare_run_dir(run: RunDir, config: FitConfig, record: dict) -> dict:
    """The state to start from: a fresh one, or the run's own when it can be resumed."""
    state = run.recover() if run.path.exists() else None
    if state is None or state.get("epochs_done", 0) == 0:
        if run.path.exists():
            run.clear()
        return new_state()
    if config.overwrite:
        run.clear()
        return new_state()
    old = run.read_config() or {}
    differences = _differences(old, record)
    if differences:
        raise InputError(run.path, "holds a run with other options (" + "; ".join(differences) +
                         "); use --overwrite to start again, or another --out")
    if "damaged" in state:
        raise InputError(run.path, f"cannot resume: {state['damaged']}; use --overwrite to start again")
    return state


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    old_cfg = FitConfig.from_dict(old["config"]).resume_key() if "config" in old else {}
    new_cfg = FitConfig.from_dict(new["config"]).resume_key()
    for key, value in new_cfg.items():
        if old_cfg.get(key) != value:
            out.append(f"{key}: {old_cfg.get(key)!r} -> {value!r}")
    old_data, new_data = old.get("data", {}), new["data"]
    if old_data.get("image_size") != new_data["image_size"]:
        out.append(f"image size: {old_data.get('image_size')} -> {new_data['image_size']}")
    elif any(old_data.get(key) != new_data[key] for key in DATA_KEYS):
        out.append(f"the data file holds other images ({old_data.get('path')} -> {new_data['path']})")
    return out


# -- the data file ----------------------------------------------------------------------------

def describe_data(path: Path, limit: int | None = None, need_labels: bool = True) -> dict:
    """What config.json records about the training file (raises InputError for a bad one)."""
    path = Path(path)
    info = read_info(path)
    if need_labels and not info.has_labels:
        raise InputError(path, "has no labels (a test set?); training and scoring need a labelled file")
    n = info.n_images if limit is None else min(int(limit), info.n_images)
    if n < 2:
        raise InputError(path, f"holds {info.n_images} image(s); at least 2 are needed")
    return {
        "path": str(path.resolve()),
        "file_bytes": path.stat().st_size,
        "n_images": info.n_images,
        "n_used": n,
        "image_size": info.size,
        "crop": info.crop,
        "mean": [round(float(v), 6) for v in info.mean],
        "std": [round(float(v), 6) for v in info.std],
        "ids_sha256": _sha256(_read_ids(path, n)),
        "source": info.source,
        "chunk_images": info.chunk_images,
        "compression": info.compression,
    }


def _read_ids(path: Path, n: int) -> np.ndarray:
    with open_galaxy_file(path) as f:
        return np.asarray(f["ids"][:n], dtype=np.int64)


def _read_labels(path: Path, n: int) -> np.ndarray:
    with open_galaxy_file(path) as f:
        return np.asarray(f["labels"][:n], dtype=np.float64)


def _split(ids: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if val_fraction == 0:
        return np.arange(len(ids), dtype=np.int64), np.zeros(0, dtype=np.int64)
    from .split import split_rows

    train_rows, val_rows = split_rows(ids, val_fraction, seed)
    return np.asarray(train_rows, dtype=np.int64), np.asarray(val_rows, dtype=np.int64)


def _mean_predictor_rmse(labels: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray) -> float | None:
    """Validation RMSE of predicting the training mean: the line a model has to get under."""
    if len(val_rows) == 0:
        return None
    mean = labels[train_rows].mean(axis=0)
    return float(np.sqrt(np.mean((labels[val_rows] - mean) ** 2)))


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _versions() -> dict:
    import platform

    import tensorflow as tf

    from . import __version__

    return {"galaxytrain": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# -- per-epoch bookkeeping ------------------------------------------------------------------------

class RunDirCallback(keras.callbacks.Callback):
    """At each epoch end: a history row, then last/best models and state committed atomically."""

    def __init__(self, run: RunDir, state: dict, monitor: str, n_train: int, baseline: float | None,
                 log: Log, restart_best_at: int | None = None):
        super().__init__()
        self.run, self.state, self.monitor = run, state, monitor
        self.n_train, self.baseline, self.log = n_train, baseline, log
        self.restart_best_at = restart_best_at  # 1-based epoch that any finite value makes best
        self.total_epochs: int | None = None
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        from .gpu import reset_peak_gpu_memory

        reset_peak_gpu_memory()
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from .gpu import peak_gpu_memory

        seconds = time.perf_counter() - self._t0
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        row["learning_rate"] = float(f"{float(self.model.optimizer.learning_rate):.7g}")
        row["epoch_time_s"] = round(seconds, 3)
        row["images_per_s"] = round(self.n_train / seconds, 1) if seconds > 0 else None
        peak = peak_gpu_memory()
        row["peak_gpu_mib"] = None if peak is None else round(peak / 2**20, 1)
        value = row.get(self.monitor)
        best = None if row["epoch"] == self.restart_best_at else self.state.get("best_value")
        improved = value is not None and np.isfinite(value) and (best is None or value < best)
        state = self.state
        state["history"] = [r for r in state["history"] if r["epoch"] < row["epoch"]] + [row]
        state["epochs_done"] = row["epoch"]
        if improved:
            state["best_epoch"], state["best_value"] = row["epoch"], value
        self.run.commit_epoch(self.model, state, improved, baseline=self.baseline)
        note = "saved best.keras" if improved else f"best: epoch {state['best_epoch']}"
        metrics = ", ".join(f"{k} {row[k]:.5f}" for k in ("loss", "rmse", "val_loss", "val_rmse") if k in row)
        speed = f"{seconds:.1f} s" + ("" if row["images_per_s"] is None else f", {row['images_per_s']:.0f} images/s")
        if row["peak_gpu_mib"] is not None:
            speed += f", peak GPU memory {row['peak_gpu_mib']:.0f} MiB"
        self.log(f"epoch {row['epoch']}/{self.total_epochs}: {metrics}; {speed}; {note}")
