"""Train a model on a galaxyprep file into a run directory that survives kill -9.

`fit(FitConfig) -> FitResult` is the whole of ``galaxytrain fit``; the CLI
only parses options into a `FitConfig`. A run directory that already holds
completed epochs of the same configuration is resumed from ``last.keras``
(weights and optimizer state) at the next epoch; one with a different
configuration is refused unless ``overwrite`` is set (see `resume`).
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from galaxyprep import N_CLASSES, GalaxyFile, InputError, disk_errors, exclusive_lock, same_path

from ..compute import choose_jit_compile, onednn_enabled, recorded_policy
from ..config import FitConfig
from ..data import ColourNoise, GalaxyBatches, Normalization, RotateRanges, colour_axes, training_view
from ..models import InputShapeError, available_models, create_model, load_model, model_options
from ..models.pretrained import PREFIX
from ..recipes import check_recipe_data, get_recipe
from ..run_dir import RunDir
from . import distribute
from .callbacks import (EnableTreeNormalization, EpochProgress, LogLearningRate, OpenEncoder, RunDirCallback,
                        StopOnDivergence, StopWhenStale, ValidateAveragedWeights, is_stale)
from .budget import PlanEpochs, describe_plan
from .data_record import DATA_KEYS, TrainingData, prepare_data
from .finetune import check_start_data, finetune_model
from .init_weights import check_init_data, initialised_model
from .resume import prepare_run_dir
from .rng_state import restore_seed_generator_states
from .schedule import LearningRateSchedule, compile_model, extension_note

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
    #: `distribute.weights_fingerprint` of the final weights: equal across the workers of one run.
    weights_fingerprint: str | None = None
    #: The epochs a time budget (``--hours``) planned for the run; None without one.
    planned_epochs: int | None = None


def fit(config: FitConfig, log: Log = print) -> FitResult:
    """Train (or resume training) as `config` says; raise InputError for bad input."""
    config.check()
    if config.unlabelled is not None:
        raise InputError("--unlabelled", "teaches a student with an ensemble's soft votes: give --seeds (or an "
                                         "ensemble recipe) too")
    if config.init_from is not None and not config.init_from.startswith(PREFIX):
        config.init_from = str(Path(config.init_from).resolve())  # the same run, resumed from anywhere
    if config.model not in available_models():
        raise InputError(f"--model {config.model}", f"unknown model; available: {', '.join(available_models())}")
    if same_path(config.out, config.data):
        raise InputError(config.out, "is also the command's --data; choose another --out")
    with disk_errors(config.out, "the run keeps its last completed epoch: free space and run the same command "
                                 "again"):
        return _fit(config, log)


def fit_ensemble(config: FitConfig, seeds: list[int], log: Log = print) -> list[FitResult]:
    """`config` trained once per seed into the members of an ensemble folder (`galaxytrain.ensemble`) at config.out.

    Each member is an ordinary run, trained in turn: rerunning the same call
    resumes the member that was interrupted and passes over finished ones.
    `score` and `predict` given the folder average its members. With
    ``unlabelled``, the members then teach a student (`student`), the last
    member. A time budget (``hours``) is shared: the first member plans its
    epochs within its part, and the others (the student too) train as many.
    """
    from ..ensemble import STUDENT, prepare_ensemble
    from .student import DEFAULT_VIEWS, check_unlabelled, student_file

    config.check()
    recipe = get_recipe(config.recipe) if config.recipe is not None else None
    if recipe is not None and recipe.student and config.unlabelled is None:
        raise InputError("--unlabelled", f"recipe {recipe.name} trains a student on unlabelled galaxies: give their "
                                         f"galaxyprep file (`galaxyprep build --images FOLDER --recipe "
                                         f"{recipe.data.name} --out FILE`, no --labels)")
    with exclusive_lock(config.out):
        # Checked before the members train for hours, not after.
        unlabelled = None if config.unlabelled is None else check_unlabelled(config.data, config.unlabelled)
        members = prepare_ensemble(config.out, seeds, config.overwrite, student=unlabelled is not None)
        results: list[FitResult] = []
        planned = None
        shares = len(members) + (unlabelled.cost if unlabelled is not None else 0.0)
        if config.hours:
            student = "" if unlabelled is None else \
                f", and a student {config.hours * unlabelled.cost / shares:.3g} h (it trains on more galaxies)"
            log(f"ensemble {config.out}: a time budget of {config.hours:g} h for {len(members)} members, "
                f"{config.hours / shares:.3g} h each{student}; the first plans the epochs of all")
        for seed, member in zip(seeds, members):
            log(f"ensemble {config.out}: member {member.name} (--seed {seed}), {len(results) + 1} of {len(members)}")
            results.append(fit(_member(config, member, seed, planned, shares), log))
            planned = planned or results[-1].planned_epochs
        if unlabelled is not None:
            views = recipe.tta if recipe is not None else DEFAULT_VIEWS
            data, replaced = student_file(config.out, members, config.data, unlabelled.path, views, config.progress,
                                          log)
            if replaced and RunDir(config.out / STUDENT).state.exists():
                log(f"ensemble {config.out}: its student learnt other votes; it trains again from its start")
                RunDir(config.out / STUDENT).clear()
            log(f"ensemble {config.out}: the student (--seed {seeds[0]}), on {unlabelled.labelled_images:,} labelled "
                f"and {unlabelled.n_new:,} soft-labelled galaxies")
            results.append(fit(_member(config, config.out / STUDENT, seeds[0], planned, shares, unlabelled.cost,
                                       data=data), log))
        return results


def _member(config: FitConfig, out: Path, seed: int, planned: int | None, shares: float,
            cost: float = 1.0, data: Path | None = None) -> FitConfig:
    """One member's config: its folder, seed and data, and its part of a time budget (the first's plan for the rest).

    `shares` is the ensemble's time in members' epochs; `cost`, this member's (the student's is larger).
    """
    one = replace(config, out=out, seed=int(seed), unlabelled=None, data=config.data if data is None else data)
    if config.hours and planned is None:
        one.hours = config.hours * cost / shares
    elif config.hours:
        one.epochs, one.hours = planned, None
    one.recipe = config.recipe
    return one


def _fit(config: FitConfig, log: Log) -> FitResult:
    if config.strategy != "none":
        return _fit_distributed(config, log)
    with exclusive_lock(config.out), GalaxyFile(config.data) as f:  # one fit per run directory
        data = _checked_data(config, f, log)
        run = RunDir(config.out)
        state = prepare_run_dir(run, config, data.record)
        resumed = recorded_policy(run.read_config()) if state["epochs_done"] > 0 else None
        previous_policy = keras.mixed_precision.global_policy()
        try:
            _configure_gpus(config, data, log, resumed)
            return _train(config, f, run, state, data, log)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)


def _checked_data(config: FitConfig, f: GalaxyFile, log: Log) -> TrainingData:
    """The recipe's data check, then the split and record (`f` is this process's one handle)."""
    if config.recipe is not None:
        info = f.info
        check_recipe_data(get_recipe(config.recipe), info.crop, info.size, config.data, info.source,
                          info.labels_source, config.allow_other_build, log)
    data = prepare_data(config, f)
    if config.start_from is not None:
        check_start_data(config, f, data.record)
    if config.init_from is not None:
        check_init_data(config, f, data.record, input_size(config, f.size))
    return data


def _configure_gpus(config: FitConfig, data: TrainingData, log: Log, resumed_policy: str | None = None) -> None:
    """GPU options and the precision (before TensorFlow runs any op), noted in the data record."""
    from ..gpu import configure_gpus

    gpu = configure_gpus(config.gpu_memory_limit, config.memory_growth, config.mixed_precision, log=log,
                         resumed_policy=resumed_policy)
    jit_compile, why = choose_jit_compile(config.jit_compile, gpu.n_gpus > 0)
    log(f"XLA: {jit_compile if jit_compile == 'auto' else 'on' if jit_compile else 'off'} ({why}); "
        f"CPU kernels: {'oneDNN' if onednn_enabled() else 'Eigen (TF_ENABLE_ONEDNN_OPTS=0)'}")
    data.record["gpu"] = {"n_gpus": gpu.n_gpus, "memory_growth": gpu.memory_growth,
                          "memory_limit_mib": gpu.memory_limit_mib, "mixed_precision": gpu.mixed_precision,
                          "policy": gpu.precision.policy, "precision_reason": gpu.precision.reason,
                          "jit_compile": jit_compile}


def _train(config: FitConfig, f: GalaxyFile, run: RunDir, state: dict, data: TrainingData, log: Log) -> FitResult:
    size = input_size(config, f.size)
    initial_epoch = int(state["epochs_done"])
    planning = _budget(config, state, run, data, initial_epoch, log)
    model = _start_model(config, size, state, run.last, data, log)
    _log_start(config, data, model, size, initial_epoch, run, log)
    if initial_epoch >= config.epochs or is_stale(state, config.patience):
        log(f"{run.path} already has {initial_epoch} epochs (asked for {config.epochs}"
            f"{f', or to stop after {config.patience} without progress' if config.patience else ''}): nothing to do")
        return _result(run, state, initial_epoch, data.baseline, distribute.weights_fingerprint(model))
    train, val = _datasets(config, f, data, size)
    run.write_config(data.record)  # after the datasets, which note their colour axes in it
    train.set_epoch(initial_epoch)  # a resumed epoch sees the order it would have seen
    state["monitor"] = "val_loss" if val is not None else "loss"
    try:
        # shuffle=False: the batches are already shuffled, from (seed, epoch, index); Keras'
        # own shuffle of their order draws on a global generator that a resumed run cannot replay.
        model.fit(train, validation_data=val, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=_callbacks(config, run, state, data, len(train), log, planning=planning), verbose=0,
                  shuffle=False)
    finally:
        for ds in (train, val):
            if ds is not None:
                ds.close()
    return _result(run, state, initial_epoch, data.baseline, distribute.weights_fingerprint(model))


def _budget(config: FitConfig, state: dict, run: RunDir, data: TrainingData, initial_epoch: int, log: Log) -> bool:
    """Whether this run plans its epochs at its first epoch's end (``--hours``; `budget`).

    A run that planned before keeps its plan; one that started without a
    budget keeps the epochs it started with (a budget is planned from the
    start, never part-way). Either way config.epochs becomes the run's length.
    """
    if not config.hours:
        return False
    plan = state.get("plan")
    if plan is None and initial_epoch == 0:
        return True
    if plan is not None:
        _adopt_plan(config, data, plan)
        return False
    config.epochs = data.record["config"]["epochs"] = \
        int((run.read_config() or {}).get("config", {}).get("epochs") or config.epochs)
    log(f"note: --hours plans a run's epochs at its first epoch; {run.path} started without a budget and "
        f"keeps its length ({config.epochs} epoch{'s' if config.epochs != 1 else ''})")
    return False


def _adopt_plan(config: FitConfig, data: TrainingData, plan: dict) -> None:
    """The plan's epochs become the run's length, in `config` and in the record config.json keeps."""
    config.epochs = data.record["config"]["epochs"] = int(plan["epochs"])
    data.record["plan"] = plan


def _fit_distributed(config: FitConfig, log: Log) -> FitResult:
    """`fit` under tf.distribute (see `distribute`): the chief writes config.out, the others a scratch folder."""
    role = distribute.worker_role(config.strategy)
    scratch = None if role.is_chief else distribute.scratch_dir(role)
    run = RunDir(config.out if scratch is None else scratch)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        with exclusive_lock(config.out) if scratch is None else nullcontext(), GalaxyFile(config.data) as f:
            data = _checked_data(config, f, log)
            _configure_gpus(config, data, log)
            strategy = distribute.make_strategy(role, log, config.join_timeout)  # before TensorFlow runs any op
            replicas = int(strategy.num_replicas_in_sync)
            global_batch = config.batch_size * replicas
            steps = len(data.train_rows) // global_batch
            if steps == 0:
                raise InputError("--batch-size", f"{config.batch_size} per replica x {replicas} replicas = "
                                                 f"{global_batch} images per step, more than the "
                                                 f"{len(data.train_rows)} training images")
            data.record["distribute"] = {"strategy": config.strategy, "replicas": replicas,
                                         "workers": role.n_workers, "per_replica_batch": config.batch_size,
                                         "global_batch": global_batch, "steps_per_epoch": steps,
                                         "images_per_epoch": steps * global_batch}
            distribute.check_same_training(strategy, role, _training_key(config, data))
            # The chief decides where the run stands; the others wait for it and start from the same place.
            # A refusal is passed on (as -1), so that no worker waits for a chief that has stopped.
            state, refused = None, None
            if role.is_chief:
                try:
                    state = prepare_run_dir(run, config, data.record)
                except InputError as exc:
                    refused = exc
            done = -1 if refused is not None else 0 if state is None else int(state["epochs_done"])
            initial_epoch = distribute.chief_value(strategy, role, done)
            if refused is not None:
                raise refused
            if initial_epoch < 0:
                raise InputError(config.out, "the chief refused this run directory (its log says why)")
            if state is None:
                prepare_run_dir(run, config, data.record)  # the empty scratch folder
                state = distribute.chief_state(config.out, initial_epoch)
            return _train_distributed(config, f, run, state, data, strategy, role, steps, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _training_key(config: FitConfig, data: TrainingData) -> dict:
    """What must be equal in every worker of one training (paths may differ between machines)."""
    record = data.record
    # The epochs too: a worker told to stop earlier would leave the others waiting in a collective.
    return {"config": config.resume_key(), "epochs": config.epochs,
            "data": {k: record["data"][k] for k in (*DATA_KEYS, "labels")}, "split": record["split"],
            "distribute": record["distribute"], "precision": record["gpu"]["policy"]}


def _train_distributed(config: FitConfig, f: GalaxyFile, run: RunDir, state: dict, data: TrainingData, strategy,
                       role: distribute.Role, steps: int, log: Log) -> FitResult:
    size = input_size(config, f.size)
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = config.batch_size * replicas
    initial_epoch = int(state["epochs_done"])
    # every worker resumes from the chief's last.keras
    model = _start_model(config, size, state, RunDir(config.out).last, data, log, strategy.scope())
    _log_start(config, data, model, size, initial_epoch, run, log)
    n_train = len(data.train_rows)
    log(f"{role.describe()}; " + ("writes the run directory" if role.is_chief else
                                   f"its checkpoints go to the scratch folder {run.path}, deleted at the end")
        + f"; batch {config.batch_size} per replica x {replicas} = {global_batch} per step, learning rate "
          f"{config.learning_rate:g} as given (not scaled); {steps} steps per epoch, the last "
          f"{n_train - steps * global_batch} of {n_train} training images of each epoch's order left out")
    if initial_epoch >= config.epochs:
        log(f"{config.out} already has {initial_epoch} epochs (asked for {config.epochs}): nothing to do")
        return _result(run, state, initial_epoch, data.baseline, distribute.weights_fingerprint(model))
    train = _training_batches(config, f, data, size, global_batch)
    run.write_config(data.record)  # after the batches, which note their colour axes in it
    record = distribute.RowRecord(os.environ.get(distribute.RECORD_ROWS_ENV))
    loader = dict(threads=config.loader_workers, prefetch=config.max_queue_size)

    def train_share(global_step: int, replica: int):
        epoch, step = divmod(global_step, steps)
        return distribute.train_share(train.order, config.seed, epoch, step, replica, replicas)

    def record_train(global_step: int, replica: int, rows) -> None:
        record.add("train", *divmod(global_step, steps), replica, rows)

    train_ds = distribute.distributed_batches(strategy, train, initial_epoch * steps, config.epochs * steps,
                                              train_share, record=record_train, **loader)
    val = val_ds = None
    val_steps = None
    if len(data.val_rows):
        val = GalaxyBatches(f, data.val_rows, batch_size=config.batch_size, shuffle=False, seed=config.seed,
                            view=training_view("none", size))
        shares = distribute.val_shares(len(data.val_rows), config.batch_size, replicas)
        val_steps = len(shares)

        def val_share(step: int, replica: int):
            return shares[step][replica], np.random.default_rng([config.seed, step, replica])

        def record_val(step: int, replica: int, rows) -> None:
            record.add("val", 0, step, replica, rows)

        val_ds = distribute.distributed_batches(strategy, val, 0, val_steps, val_share, record=record_val, **loader)
    state["monitor"] = "val_loss" if val is not None else "loss"
    distribute.pin_keras(model, strategy, role, config.batch_size, size)
    callbacks = _callbacks(config, run, state, data, steps, log, n_images=steps * global_batch,
                           batch_size=global_batch, tensorboard=role.is_chief)
    import tensorflow as tf

    try:
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, validation_steps=val_steps, callbacks=callbacks, verbose=0, shuffle=False)
    except tf.errors.UnavailableError as exc:  # a peer died: its heartbeats stop and the collectives abort
        raise InputError("TF_CONFIG", f"{distribute.lost_peer(exc)}; {config.out} keeps epoch "
                                      f"{state['epochs_done']}: start every worker again with the same command "
                                      "to resume") from None
    finally:
        for ds in (train, val):
            if ds is not None:
                ds.close()
        record.write(f"{role.task_type}{role.index}")
    return _result(run, state, initial_epoch, data.baseline, distribute.weights_fingerprint(model))


def _start_model(config: FitConfig, size: int, state: dict, last: Path, data: TrainingData, log: Log,
                 scope=None) -> keras.Model:
    """The model a run starts from (built or loaded within `scope`), noted in the data record.

    Weights and dropout follow the seed. A resumed run gets its dropout
    generators' states back from state.json (Keras does not save them), so
    it continues exactly.
    """
    initial_epoch = int(state["epochs_done"])
    keras.utils.set_random_seed(config.seed)
    with scope or nullcontext():
        if initial_epoch > 0:
            model = load_model(last)
        elif config.start_from is not None:
            model = finetune_model(config, data.train_mean)
        elif config.init_from is not None:
            model = initialised_model(build_model(config, size, len(data.train_mean)), config.init_from)
        else:
            model = build_model(config, size, len(data.train_mean))
    if data.record["gpu"]["jit_compile"] != "auto":  # "auto" is compile's default, resolved there
        model.jit_compile = data.record["gpu"]["jit_compile"]
    if initial_epoch > 0 and not restore_seed_generator_states(model, state.get("seed_generators")):
        log("note: this run's state.json has no dropout generator states (written by an older version): "
            "the resumed epochs draw other dropout masks than an uninterrupted run would")
    data.record["model"] = {"name": config.model, "head": config.head, "params": int(model.count_params()),
                            "input_shape": [size, size, 3]}
    return model


def _datasets(config: FitConfig, f: GalaxyFile, data: TrainingData,
              size: int) -> tuple[GalaxyBatches, GalaxyBatches | None]:
    """Training batches (shuffled, augmented) and validation batches (file order, centre view)."""
    loader = dict(workers=config.loader_workers, use_multiprocessing=config.use_multiprocessing,
                  max_queue_size=config.max_queue_size)
    if config.use_multiprocessing:
        f.check_room_for_readers(f"each loader process (--use-multiprocessing, --loader-workers "
                                 f"{config.loader_workers})", config.loader_workers)
    train = _training_batches(config, f, data, size, config.batch_size, **loader)
    if not len(data.val_rows):
        return train, None
    val = GalaxyBatches(f, data.val_rows, batch_size=config.batch_size, shuffle=False, seed=config.seed,
                        view=training_view("none", size), **loader)
    return train, val


def _training_batches(config: FitConfig, f: GalaxyFile, data: TrainingData, size: int, batch_size: int,
                      **loader) -> GalaxyBatches:
    """The training rows, shuffled, in fit's random views and colour noise."""
    view = training_view(config.augment, size, RotateRanges(max_shift=config.max_shift, max_zoom=config.max_zoom))
    return GalaxyBatches(f, data.train_rows, batch_size=batch_size, shuffle=True, seed=config.seed, view=view,
                         colour=colour_noise(config, f, data), **loader)


#: Training images whose pixels give the colour axes of --colour-noise (the first ones in file order).
COLOUR_SAMPLE = 1024


def colour_noise(config: FitConfig, f: GalaxyFile, data: TrainingData) -> ColourNoise | None:
    """--colour-noise's transform, its axes from the first training images' pixels (noted in the record)."""
    if not config.colour_noise:
        return None
    rows = np.sort(data.train_rows)[:COLOUR_SAMPLE]
    images = f.images(int(rows[0]), int(rows[-1]) + 1)[rows - rows[0]]
    axes = colour_axes(images, Normalization(*f.normalization))
    data.record["colour_axes"] = np.round(axes, 6).tolist()
    return ColourNoise(axes, float(config.colour_noise))


def _callbacks(config: FitConfig, run: RunDir, state: dict, data: TrainingData, steps_per_epoch: int,
               log: Log, n_images: int | None = None, batch_size: int | None = None,
               tensorboard: bool = True, planning: bool = False) -> list[keras.callbacks.Callback]:
    """The progress bar first (closed before our epoch line), then the schedules, then the commit.

    The schedules act at epoch and batch begin, from the epoch number alone,
    so a resumed run picks them up where it stopped. `planning` (``--hours``):
    the plan after the first epoch, before its commit, sets every callback's
    length (config.epochs until then being the ceiling).
    """
    warmup = config.tree_warmup_epochs if config.head == "tree" else 0
    # A terminal gets a live bar inside each epoch; a log file only our line per epoch.
    live = config.progress and sys.stderr.isatty()
    n_images = len(data.train_rows) if n_images is None else n_images  # per epoch (fewer under a strategy)
    batch_size = config.batch_size if batch_size is None else batch_size
    callbacks: list[keras.callbacks.Callback] = [EpochProgress(n_images, batch_size, config.epochs)] if live else []
    if config.ema:
        callbacks.append(ValidateAveragedWeights())
    if warmup:
        callbacks.append(EnableTreeNormalization(at_epoch=warmup))
    if config.lr_schedule != "constant":
        callbacks.append(LearningRateSchedule(config.lr_schedule, config.learning_rate, config.epochs,
                                              steps_per_epoch))
    if config.start_from is not None:
        callbacks.append(OpenEncoder(config.frozen_epochs, log))
    callbacks.append(StopOnDivergence(run.path, state))
    if config.tensorboard is not None and tensorboard:
        callbacks += [LogLearningRate(), keras.callbacks.TensorBoard(log_dir=str(config.tensorboard))]
    # The first epoch with the tree normalisation on starts the choice of best.keras afresh:
    # losses of the unnormalised outputs are not comparable with the model that is kept.
    commit = RunDirCallback(run, state, state["monitor"], n_images, data.baseline, log, total_epochs=config.epochs,
                            restart_best_at=warmup + 1 if warmup else None)
    callbacks.append(commit)
    if config.patience:
        callbacks.append(StopWhenStale(state, config.patience, log))
    if planning:
        def on_plan(epochs: int) -> None:
            _adopt_plan(config, data, state["plan"])
            run.write_config(data.record)
            for callback in callbacks:
                if hasattr(callback, "set_total_epochs"):
                    callback.set_total_epochs(epochs)
            log(describe_plan(state["plan"]))

        callbacks.insert(callbacks.index(commit), PlanEpochs(config.hours, config.epochs, state, on_plan))
    return callbacks


def _log_start(config: FitConfig, data: TrainingData, model: keras.Model, size: int, initial_epoch: int,
               run: RunDir, log: Log) -> None:
    stored = data.record["data"]["image_size"]
    view = "" if size == stored else f", seen as {size}x{size} views"
    log(f"data: {config.data} ({data.record['data']['n_used']} images {stored}x{stored}{view}; "
        f"{len(data.train_rows)} train, {len(data.val_rows)} validation, split seed {config.seed})")
    if config.recipe is not None:
        log(f"recipe: {config.recipe}")
    if config.start_from is not None:
        start = data.record["start"]
        log(f"fine-tuning {start['source']} (sha256 {start['sha256'][:12]}): a new head for "
            f"{len(data.record['data']['labels']['columns'])} column(s); the encoder frozen for "
            f"{config.frozen_epochs} epoch(s), then learning at {config.layer_decay:g}^depth of the head's rate")
    if config.init_from is not None:
        start = data.record["init"]
        log(f"weights from {start['source']} (sha256 {start['sha256'][:12]}), every layer training")
    log(f"model: {config.model} ({model.count_params():,} parameters, head {config.head}, loss {config.loss})")
    if data.baseline is not None:
        log(f"validation RMSE of predicting the training mean: {data.baseline:.5f}")
    for note in data.notes:
        log(note)
    if initial_epoch > 0:
        log(f"resuming {run.path} at epoch {initial_epoch + 1}/{config.epochs} "
            f"({initial_epoch} epoch{'s' if initial_epoch != 1 else ''} done)")
        previous = (run.read_config() or {}).get("config", {}).get("epochs")  # config.json is rewritten after
        if previous and previous != config.epochs and config.lr_schedule != "constant" \
                and initial_epoch < config.epochs:
            log(extension_note(config.lr_schedule, config.learning_rate, int(previous), config.epochs,
                               initial_epoch))


def input_size(config: FitConfig, stored: int) -> int:
    """The model's input size: config.input_size, or the stored size; never more than stored."""
    if config.input_size is None:
        return int(stored)
    if config.input_size > stored:
        raise InputError(config.data, f"holds {stored}x{stored} images, smaller than --input-size "
                                      f"{config.input_size}; rebuild it with a larger --size or lower --input-size")
    return int(config.input_size)


def build_model(config: FitConfig, size: int, outputs: int = N_CLASSES) -> keras.Model:
    """A new compiled model for `config`, square images of `size` and `outputs` label columns."""
    options = {}
    if config.dropout is not None:
        if "dropout" not in model_options(config.model):
            raise InputError("--dropout", f"model {config.model} has no dropout layers to set")
        options["dropout"] = config.dropout
    try:
        model = create_model(config.model, (size, size, 3), head=config.head, outputs=outputs, **options)
    except InputShapeError as exc:
        raise InputError(config.data, str(exc)) from None
    compile_model(model, config.loss, config.learning_rate, config.weight_decay, ema=config.ema)
    return model


def _result(run: RunDir, state: dict, initial_epoch: int, baseline: float | None,
            fingerprint: str | None = None) -> FitResult:
    history = list(state["history"])
    best = next((row for row in history if row["epoch"] == state.get("best_epoch")), None)
    return FitResult(run_dir=run.path, epochs_done=int(state["epochs_done"]), initial_epoch=initial_epoch,
                     best_epoch=state.get("best_epoch"),
                     best_val_loss=None if best is None else best.get("val_loss"),
                     best_val_rmse=None if best is None else best.get("val_rmse"),
                     baseline_val_rmse=baseline, history=history, weights_fingerprint=fingerprint,
                     planned_epochs=(state.get("plan") or {}).get("epochs"))
