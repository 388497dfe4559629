"""Train a model on a galaxyprep file into a run directory that survives kill -9.

`fit(FitConfig) -> FitResult` is the whole of ``galaxytrain fit``; the CLI
only parses options into a `FitConfig`. A run directory that already holds
completed epochs of the same configuration is resumed from ``last.keras``
(weights and optimizer state) at the next epoch; one with a different
configuration is refused unless ``overwrite`` is set (see `resume`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras

from galaxyprep import GalaxyFile, InputError, exclusive_lock, same_path

from ..config import FitConfig
from ..data import GalaxyBatches, RotateRanges, training_view
from ..models import InputShapeError, available_models, create_model, load_model
from ..recipes import check_recipe_data, get_recipe
from ..run_dir import RunDir
from .callbacks import EnableTreeNormalization, EpochProgress, LogLearningRate, RunDirCallback, StopOnDivergence
from .data_record import TrainingData, prepare_data
from .resume import prepare_run_dir
from .rng_state import restore_seed_generator_states
from .schedule import LearningRateSchedule, compile_model

Log = Callable[[str], None]


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
    if config.model not in available_models():
        raise InputError(f"--model {config.model}", f"unknown model; available: {', '.join(available_models())}")
    from ..gpu import configure_gpus

    if same_path(config.out, config.data):
        raise InputError(config.out, "is also the command's --data; choose another --out")
    with exclusive_lock(config.out), GalaxyFile(config.data) as f:  # one fit per run directory
        if config.recipe is not None:
            info = f.info
            check_recipe_data(get_recipe(config.recipe), info.crop, info.size, config.data, info.source,
                              info.labels_source, config.allow_other_build, log)
        data = prepare_data(config, f)  # the one handle of this process; loader workers open their own
        run = RunDir(config.out)
        state = prepare_run_dir(run, config, data.record)
        previous_policy = keras.mixed_precision.global_policy()
        try:
            gpu = configure_gpus(config.gpu_memory_limit, config.memory_growth, config.mixed_precision, log=log)
            data.record["gpu"] = {"n_gpus": gpu.n_gpus, "memory_growth": gpu.memory_growth,
                                  "memory_limit_mib": gpu.memory_limit_mib, "mixed_precision": gpu.mixed_precision}
            return _train(config, f, run, state, data, log)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: FitConfig, f: GalaxyFile, run: RunDir, state: dict, data: TrainingData, log: Log) -> FitResult:
    size = input_size(config, f.size)
    initial_epoch = int(state["epochs_done"])
    # Weights and dropout follow the seed. A resumed run gets its dropout generators' states
    # back from state.json (Keras does not save them), so it continues exactly.
    keras.utils.set_random_seed(config.seed)
    model = load_model(run.last) if initial_epoch > 0 else build_model(config, size)
    if initial_epoch > 0 and not restore_seed_generator_states(model, state.get("seed_generators")):
        log("note: this run's state.json has no dropout generator states (written by an older version): "
            "the resumed epochs draw other dropout masks than an uninterrupted run would")
    data.record["model"] = {"name": config.model, "head": config.head, "params": int(model.count_params()),
                            "input_shape": [size, size, 3]}
    _log_start(config, data, model, size, initial_epoch, run, log)
    if initial_epoch >= config.epochs:
        log(f"{run.path} already has {initial_epoch} epochs (asked for {config.epochs}): nothing to do")
        return _result(run, state, initial_epoch, data.baseline)
    run.write_config(data.record)
    train, val = _datasets(config, f, data, size)
    train.set_epoch(initial_epoch)  # a resumed epoch sees the order it would have seen
    state["monitor"] = "val_loss" if val is not None else "loss"
    try:
        # shuffle=False: the batches are already shuffled, from (seed, epoch, index); Keras'
        # own shuffle of their order draws on a global generator that a resumed run cannot replay.
        model.fit(train, validation_data=val, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=_callbacks(config, run, state, data, len(train), log), verbose=0, shuffle=False)
    finally:
        for ds in (train, val):
            if ds is not None:
                ds.close()
    return _result(run, state, initial_epoch, data.baseline)


def _datasets(config: FitConfig, f: GalaxyFile, data: TrainingData,
              size: int) -> tuple[GalaxyBatches, GalaxyBatches | None]:
    """Training batches (shuffled, augmented) and validation batches (file order, centre view)."""
    loader = dict(workers=config.loader_workers, use_multiprocessing=config.use_multiprocessing,
                  max_queue_size=config.max_queue_size)
    view = training_view(config.augment, size, RotateRanges(max_shift=config.max_shift, max_zoom=config.max_zoom))
    train = GalaxyBatches(f, data.train_rows, batch_size=config.batch_size, shuffle=True, seed=config.seed,
                          view=view, **loader)
    if not len(data.val_rows):
        return train, None
    val = GalaxyBatches(f, data.val_rows, batch_size=config.batch_size, shuffle=False, seed=config.seed,
                        view=training_view("none", size), **loader)
    return train, val


def _callbacks(config: FitConfig, run: RunDir, state: dict, data: TrainingData, steps_per_epoch: int,
               log: Log) -> list[keras.callbacks.Callback]:
    """The progress bar first (closed before our epoch line), then the schedules, then the commit.

    The schedules act at epoch and batch begin, from the epoch number alone,
    so a resumed run picks them up where it stopped.
    """
    warmup = config.tree_warmup_epochs if config.head == "tree" else 0
    # A terminal gets a live bar inside each epoch; a log file only our line per epoch.
    live = config.progress and sys.stderr.isatty()
    callbacks: list[keras.callbacks.Callback] = [EpochProgress(len(data.train_rows), config.batch_size,
                                                               config.epochs)] if live else []
    if warmup:
        callbacks.append(EnableTreeNormalization(at_epoch=warmup))
    if config.lr_schedule != "constant":
        callbacks.append(LearningRateSchedule(config.lr_schedule, config.learning_rate, config.epochs,
                                              steps_per_epoch))
    callbacks.append(StopOnDivergence(run.path, state))
    if config.tensorboard is not None:
        callbacks += [LogLearningRate(), keras.callbacks.TensorBoard(log_dir=str(config.tensorboard))]
    # The first epoch with the tree normalisation on starts the choice of best.keras afresh:
    # losses of the unnormalised outputs are not comparable with the model that is kept.
    callbacks.append(RunDirCallback(run, state, state["monitor"], len(data.train_rows), data.baseline, log,
                                    total_epochs=config.epochs, restart_best_at=warmup + 1 if warmup else None))
    return callbacks


def _log_start(config: FitConfig, data: TrainingData, model: keras.Model, size: int, initial_epoch: int,
               run: RunDir, log: Log) -> None:
    stored = data.record["data"]["image_size"]
    view = "" if size == stored else f", seen as {size}x{size} views"
    log(f"data: {config.data} ({data.record['data']['n_used']} images {stored}x{stored}{view}; "
        f"{len(data.train_rows)} train, {len(data.val_rows)} validation, split seed {config.seed})")
    if config.recipe is not None:
        log(f"recipe: {config.recipe}")
    log(f"model: {config.model} ({model.count_params():,} parameters, head {config.head}, loss {config.loss})")
    if data.baseline is not None:
        log(f"validation RMSE of predicting the training mean: {data.baseline:.5f}")
    if initial_epoch > 0:
        log(f"resuming {run.path} at epoch {initial_epoch + 1}/{config.epochs} "
            f"({initial_epoch} epoch{'s' if initial_epoch != 1 else ''} done)")


def input_size(config: FitConfig, stored: int) -> int:
    """The model's input size: config.input_size, or the stored size; never more than stored."""
    if config.input_size is None:
        return int(stored)
    if config.input_size > stored:
        raise InputError(config.data, f"holds {stored}x{stored} images, smaller than --input-size "
                                      f"{config.input_size}; rebuild it with a larger --size or lower --input-size")
    return int(config.input_size)


def build_model(config: FitConfig, size: int) -> keras.Model:
    """A new compiled model for `config` and square images of `size`."""
    try:
        model = create_model(config.model, (size, size, 3), head=config.head)
    except InputShapeError as exc:
        raise InputError(config.data, str(exc)) from None
    compile_model(model, config.loss, config.learning_rate, config.weight_decay)
    return model


def _result(run: RunDir, state: dict, initial_epoch: int, baseline: float | None) -> FitResult:
    history = list(state["history"])
    best = next((row for row in history if row["epoch"] == state.get("best_epoch")), None)
    return FitResult(run_dir=run.path, epochs_done=int(state["epochs_done"]), initial_epoch=initial_epoch,
                     best_epoch=state.get("best_epoch"),
                     best_val_loss=None if best is None else best.get("val_loss"),
                     best_val_rmse=None if best is None else best.get("val_rmse"),
                     baseline_val_rmse=baseline, history=history)
