"""``galaxytrain``: fit, score and predict. Each command is a thin wrapper over a plain function.

TensorFlow is imported only inside the commands, after TF_CPP_MIN_LOG_LEVEL
is set, so that ``--help`` is instant and start-up is quiet. Expected input
problems (galaxyprep.InputError) end in one line, ``error: <path>:
<problem>``, and exit code 1; anything else is a bug and keeps its traceback.
Each default is stated once: fit's in `FitConfig` (the help reads them from
there), the others in the option that has them.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Callable, List, Optional

import typer

from galaxyprep import InputError, Terminated, interrupts_unmasked, sigterm_interrupts

from . import __version__
from .choices import Augment, Head, Loss, LrSchedule, OutputFormat, Strategy
from .config import FINETUNE_DEFAULTS, FitConfig

# Plain help (no rich markup, which ate every "[default: ...]"), wide enough for the option texts.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"max_content_width": 120},
                  help="Train Galaxy Zoo morphology models from a galaxyprep HDF5 file.")

_FIT_DEFAULTS = {f.name: f.default for f in fields(FitConfig)}
_TTA_HELP = ("Average over this many views: 1, 2, 4, 8 dihedral; 16, 24, 32: the 8 at 2, 3, 4 turns spaced over "
             "90 degrees. [default: the run's recipe's (best: 16), else 1]")


def _d(name: str, text: str, defaults: dict | None = None) -> str:
    """A fit option's help with its default appended: `defaults`' (finetune's), else FitConfig's.

    A recipe may set another.
    """
    value = defaults[name] if defaults and name in defaults else _FIT_DEFAULTS[name]
    shown = "none" if value is None else value
    return f"{text} [default: {shown}]"


def _version(value: bool) -> None:
    if value:
        import galaxyprep

        typer.echo(f"galaxytrain {__version__} (galaxyprep {galaxyprep.__version__})")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train Galaxy Zoo morphology models from a galaxyprep HDF5 file."""


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: What Ctrl-C leaves, by command: only a fit has something to resume.
_INTERRUPTED = "interrupted before the output was written; run the same command again"
_FIT_INTERRUPTED = "interrupted (a fit resumes from its last completed epoch: run the same command again)"


def _run(action: Callable[[], object], interrupted: str = _INTERRUPTED) -> None:
    """Call `action`; an InputError becomes one line on stderr and exit code 1, Ctrl-C `interrupted` and 130.

    SIGTERM (kill, a batch scheduler, a notebook server shutting down) ends it
    the same way, with the same cleanup, and exit code 143.
    """
    _quiet_tensorflow()
    try:
        with sigterm_interrupts(), interrupts_unmasked():  # an interrupt h5py reported is still the interrupt
            from .gpu import import_tensorflow_quietly

            import_tensorflow_quietly()
            action()
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        typer.echo(("terminated (SIGTERM): " if terminated else "") + interrupted, err=True)
        raise typer.Exit(143 if terminated else 130) from None


def _echo(line: str) -> None:
    typer.echo(line)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep HDF5 file (galaxyprep build)."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning the same command resumes it."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", metavar="NAME",
        help="A named set of the options below (best, baseline; `galaxytrain recipes`); options given explicitly "
             "win. The file must be built as the recipe says (galaxyprep build --recipe NAME)."),
    allow_other_build: bool = typer.Option(
        False, "--allow-other-build", help="With --recipe: train on a file of another crop or size than the "
                                           "recipe's (the log says what that changes)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME",
                                        help=_d("model", "Model name (galaxytrain models).")),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=_d("epochs", "Total epochs (a resumed run "
                                                                             "continues up to this).")),
    hours: Optional[float] = typer.Option(None, "--hours", help=_d(
        "hours", "Hours to train for: after the first epoch, as many epochs as fit in them at its speed, with a "
                 "margin (--epochs at most), the learning-rate schedule spanning them; an ensemble's members "
                 "share them. 0: no budget, exactly --epochs.")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_d("batch_size", "Images per step; per replica under --strategy.")),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction",
                                                 help=_d("val_fraction", "Fraction held out for validation (0: none).")),
    seed: Optional[int] = typer.Option(None, "--seed", help=_d("seed", "Seed of the split, the shuffle and the "
                                                                       "weights.")),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", metavar="S,S,...",
        help="Train one run per seed (e.g. 0,1,2) into --out as an ensemble folder; score and predict take the "
             "folder and average its runs. Rerunning resumes the member that was interrupted."),
    unlabelled: Optional[Path] = typer.Option(
        None, "--unlabelled", metavar="FILE",
        help="With --seeds or an ensemble recipe: after the members, a student trains on --data and on the members' "
             "soft votes for this galaxyprep file's unlabelled galaxies (built alike, e.g. the test set), and joins "
             "the ensemble as one more member."),
    augment: Optional[Augment] = typer.Option(None, "--augment", help=_d(
        "augment", "dihedral: random 90-degree turns and flips; rotate: any angle, zoom, shift, flip.")),
    input_size: Optional[int] = typer.Option(None, "--input-size", help=_d(
        "input_size", "Model input: centre (or random rotated) views of this many pixels of the stored images; "
                      "none: the stored size.")),
    max_shift: Optional[float] = typer.Option(None, "--max-shift", help=_d("max_shift", "rotate: largest shift "
                                                                                        "in pixels.")),
    max_zoom: Optional[float] = typer.Option(None, "--max-zoom", help=_d("max_zoom", "rotate: zoom log-uniform "
                                                                                     "in [1/Z, Z].")),
    loader_workers: Optional[int] = typer.Option(None, "--loader-workers", help=_d(
        "loader_workers", "Threads (or, with --use-multiprocessing, processes) preparing batches.")),
    use_multiprocessing: Optional[bool] = typer.Option(
        None, "--use-multiprocessing/--no-use-multiprocessing",
        help=_d("use_multiprocessing", "Loader workers as forked processes instead of threads.")),
    max_queue_size: Optional[int] = typer.Option(None, "--max-queue-size", help=_d("max_queue_size",
                                                                                   "Batches prepared ahead.")),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help=_d(
        "learning_rate", "Adam learning rate (the peak of a schedule).")),
    lr_schedule: Optional[LrSchedule] = typer.Option(None, "--lr-schedule", help=_d(
        "lr_schedule", "cosine: to 0 at the last epoch; step: x0.1 at half, x0.01 at three quarters.")),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=_d(
        "weight_decay", "AdamW's decoupled weight decay (0: Adam).")),
    patience: Optional[int] = typer.Option(None, "--patience", help=_d(
        "patience", "Stop after this many epochs without a better validation loss (the best epoch is kept).")),
    ema: Optional[float] = typer.Option(None, "--ema", metavar="MOMENTUM", help=_d(
        "ema", "Weight averaging: validate and keep a moving average of the weights with this momentum per "
               "step (e.g. 0.995; 0: none).")),
    colour_noise: Optional[float] = typer.Option(None, "--colour-noise", metavar="SIGMA", help=_d(
        "colour_noise", "Shift each training view's colours along the training pixels' principal colour axes "
                        "by N(0, SIGMA) of each axis' spread (Krizhevsky's PCA noise; 0: none).")),
    dropout: Optional[float] = typer.Option(None, "--dropout", help=_d(
        "dropout", "Dropout rate of the dense layers (galaxy_cnn, galaxy_parts); none: the model's own, 0.25.")),
    init_from: Optional[str] = typer.Option(None, "--init-from", metavar="RUN", help=_d(
        "init_from", "Start from the weights of this run folder (or pretrained:NAME) of the same network, head "
                     "and label columns, every layer training (a pretraining stage, e.g. on galaxyprep synth "
                     "galaxies); none: new weights from the seed.")),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N images (quick tries)."),
    gpu_memory_limit: Optional[str] = typer.Option(
        None, "--gpu-memory-limit", metavar="SIZE",
        help="Cap GPU memory, e.g. 12GiB (imitates a smaller card; turns memory growth off)."),
    memory_growth: bool = typer.Option(_FIT_DEFAULTS["memory_growth"], "--memory-growth/--no-memory-growth",
                                       help="Allocate GPU memory as needed rather than all at once."),
    mixed_precision: Optional[bool] = typer.Option(
        None, "--mixed-precision/--no-mixed-precision",
        help="float16 compute on a GPU, bfloat16 on a CPU; --no-mixed-precision: float32. [default: by the "
             "hardware: float16 on a GPU with tensor cores, bfloat16 on a CPU with AMX, AVX512_BF16 or Arm BF16, "
             "else float32; a resumed run keeps its own where it runs natively]"),
    jit_compile: Optional[bool] = typer.Option(
        None, "--jit-compile/--no-jit-compile",
        help="Compile each training step with XLA. [default: off on a CPU, where it was slower for every model; "
             "Keras' choice on a GPU]"),
    head: Optional[Head] = typer.Option(None, "--head", help=_d(
        "head", "37 sigmoids, or outputs normalised along the decision tree.")),
    loss: Optional[Loss] = typer.Option(None, "--loss", help=_d(
        "loss", "Binary cross-entropy (the student project's) or MSE (the metric's).")),
    tree_warmup_epochs: Optional[int] = typer.Option(None, "--tree-warmup-epochs", help=_d(
        "tree_warmup_epochs", "Train the first K epochs with the tree normalisation off (--head tree).")),
    tensorboard: Optional[Path] = typer.Option(
        None, "--tensorboard", help="Also log every epoch's metrics and learning rate for TensorBoard in this "
                                    "folder (`tensorboard --logdir DIR`)."),
    progress: bool = typer.Option(_FIT_DEFAULTS["progress"], "--progress/--no-progress", show_default=True,
                                  help="A live bar inside each epoch on a terminal (a log gets one line per "
                                       "epoch either way)."),
    strategy: Optional[Strategy] = typer.Option(None, "--strategy", help=_d(
        "strategy", "tf.distribute. mirrored: this machine's GPUs; multi-worker: the processes in TF_CONFIG (run "
                    "the same command in each; the chief writes --out, which every worker must see). Under a "
                    "strategy --batch-size is per replica (a step takes batch size x replicas images) and "
                    "--learning-rate is used as given, not scaled.")),
    join_timeout: Optional[float] = typer.Option(None, "--join-timeout", help=_d(
        "join_timeout", "multi-worker: seconds to wait for every worker of TF_CONFIG to join, then stop with one "
                        "line (0: no limit).")),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard what is in --out and start again."),
) -> None:
    """Train a model; writes best.keras, last.keras, history.csv, config.json, training_curve.png."""

    def action() -> None:
        from .recipes import recipe_seeds, resolve_fit_config
        from .training import fit as fit_run

        config = resolve_fit_config(
            recipe, data, out, model=model, epochs=epochs, hours=hours, batch_size=batch_size,
            val_fraction=val_fraction, seed=seed, augment=augment, input_size=input_size, max_shift=max_shift,
            max_zoom=max_zoom,
            loader_workers=loader_workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size,
            learning_rate=learning_rate, lr_schedule=lr_schedule, weight_decay=weight_decay, limit=limit,
            gpu_memory_limit=gpu_memory_limit, memory_growth=memory_growth, mixed_precision=mixed_precision,
            jit_compile=jit_compile, head=head, loss=loss, tree_warmup_epochs=tree_warmup_epochs, overwrite=overwrite,
            allow_other_build=allow_other_build, tensorboard=tensorboard, progress=progress, strategy=strategy,
            join_timeout=join_timeout, patience=patience, ema=ema, colour_noise=colour_noise,
            dropout=dropout, init_from=init_from, unlabelled=unlabelled)
        members = recipe_seeds(recipe, seed, None if seeds is None else _parse_seeds(seeds))
        if members is not None:
            from .training import fit_ensemble

            for result in fit_ensemble(config, members, log=_echo):
                _say_done(result)
            _echo(f"ensemble: {out} (score and predict take it with --run {out})")
            return
        result = fit_run(config, log=_echo)
        _say_done(result)
        if result.weights_fingerprint is not None:  # the last line: workers of one run print the same
            _echo(f"final weights fingerprint: {result.weights_fingerprint}")

    _run(action, _FIT_INTERRUPTED)


def _say_done(result) -> None:
    """The last line of a fit: where the run is and its best epoch."""
    if result.best_epoch is not None:
        what = f"val RMSE {result.best_val_rmse:.5f}" if result.best_val_rmse is not None else "lowest training loss"
        base = "" if result.baseline_val_rmse is None else f" (mean predictor {result.baseline_val_rmse:.5f})"
        _echo(f"done: {result.epochs_done} epochs in {result.run_dir}; best epoch {result.best_epoch}, {what}{base}")


def _parse_seeds(text: str) -> list[int]:
    """--seeds 0,1,2 (or "0 1 2")."""
    try:
        seeds = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise InputError("--seeds", f"expected seeds as 0,1,2; got {text!r}") from None
    if not seeds:
        raise InputError("--seeds", "give at least one seed, e.g. 0,1,2")
    return seeds


def _f(name: str, text: str) -> str:
    """A finetune option's help: its default is FINETUNE_DEFAULTS', else FitConfig's."""
    return _d(name, text, FINETUNE_DEFAULTS)


@app.command()
def finetune(
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep file of your own columns (galaxyprep build "
                                                  "--labels OWN.csv), built as the start model's data."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning the same command resumes it."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="NAME",
                                             help="Start from a model shipped with galaxytrain (galaxytrain models)."),
    start: Optional[Path] = typer.Option(None, "--from", metavar="RUN", help="Or start from a run directory of "
                                                                             "galaxytrain fit."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=_f("epochs", "Most epochs in all.")),
    frozen_epochs: Optional[int] = typer.Option(None, "--frozen-epochs", help=_f(
        "frozen_epochs", "First epochs in which only the new head learns.")),
    layer_decay: Optional[float] = typer.Option(None, "--layer-decay", help=_f(
        "layer_decay", "Each encoder layer learns at this factor of the rate of the one above it.")),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help=_f(
        "learning_rate", "The head's Adam learning rate (the peak of the schedule).")),
    lr_schedule: Optional[LrSchedule] = typer.Option(None, "--lr-schedule", help=_f("lr_schedule", "Schedule.")),
    patience: Optional[int] = typer.Option(None, "--patience", help=_f(
        "patience", "Stop after this many epochs without a better validation loss; the best epoch is kept.")),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help=_f(
        "val_fraction", "Fraction held out to choose the epoch and stop.")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_f("batch_size", "Images per step.")),
    loss: Optional[Loss] = typer.Option(None, "--loss", help=_f("loss", "mse, or bce for 0/1 columns.")),
    augment: Optional[Augment] = typer.Option(None, "--augment", help="[default: the start model's]"),
    seed: Optional[int] = typer.Option(None, "--seed", help=_f("seed", "Seed of the split, shuffle and new head.")),
    mixed_precision: Optional[bool] = typer.Option(
        None, "--mixed-precision/--no-mixed-precision", help="As for fit. [default: by the hardware]"),
    progress: bool = typer.Option(_FIT_DEFAULTS["progress"], "--progress/--no-progress", show_default=True,
                                  help="A live bar inside each epoch on a terminal."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard what is in --out and start again."),
) -> None:
    """Fine-tune a trained model on your own label columns: a new head, the encoder frozen, then layer-wise rates."""

    def action() -> None:
        from .training import fit as fit_run
        from .training.finetune import resolve_finetune_config

        config = resolve_finetune_config(
            _start(pretrained, start), data, out, epochs=epochs, frozen_epochs=frozen_epochs,
            layer_decay=layer_decay, learning_rate=learning_rate, lr_schedule=lr_schedule, patience=patience,
            val_fraction=val_fraction, batch_size=batch_size, loss=loss, augment=augment, seed=seed,
            mixed_precision=mixed_precision, progress=progress, overwrite=overwrite)
        _say_done(fit_run(config, log=_echo))

    _run(action, _FIT_INTERRUPTED)


def _start(pretrained: Optional[str], start: Optional[Path]):
    """--pretrained NAME or --from RUN, exactly one."""
    from .models.pretrained import PREFIX

    if (pretrained is None) == (start is None):
        raise InputError("--pretrained/--from", "give one model to start from: --pretrained best, or --from RUN")
    return PREFIX + pretrained if pretrained is not None else start


_RUN_HELP = ("Run directory, ensemble folder (fit --seeds) or .keras file; repeat it to average several (an "
             "ensemble).")
_PRETRAINED_HELP = "Or a model shipped with galaxytrain, by name (galaxytrain models): no training needed."
_PROGRESS_HELP = "A live count of the galaxies predicted, on stderr."


def _sources(run: Optional[List[Path]], pretrained: Optional[str]) -> list:
    """--run folders and a --pretrained name as the models inference takes (Paths are runs, a str a name)."""
    from .models.pretrained import PREFIX

    sources: list = list(run or [])
    if pretrained is not None:
        sources.append(PREFIX + pretrained)
    if not sources:
        raise InputError("--run/--pretrained", "give a run directory (--run) or a shipped model (--pretrained best)")
    return sources


@app.command()
def score(
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep file to score on (built like the model's)."),
    run: Optional[List[Path]] = typer.Option(None, "--run", metavar="PATH", help=_RUN_HELP),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="NAME", help=_PRETRAINED_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report to write. [default: "
                                                                 "<run>/report.json; --pretrained NAME: "
                                                                 "NAME-report.json here]"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for the plots. [default: "
                                                               "<report>_plots beside the report]"),
    tta: Optional[int] = typer.Option(None, "--tta", help=_TTA_HELP),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per prediction call (memory, not results).",
                                   show_default=True),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --report that is not a "
                                                              "score report."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=_PROGRESS_HELP, show_default=True),
) -> None:
    """Score a trained model: RMSE, per-question accuracy, ROC AUC, leaderboard place (own columns: per column)."""

    def action() -> None:
        from .inference import score_run

        sources = _sources(run, pretrained)
        first = sources[0]
        if report is not None:
            target = report
        elif isinstance(first, Path):
            target = (first if first.is_dir() else first.parent) / "report.json"
        else:
            target = Path(f"{pretrained}-report.json")
        score_run(sources, data, target, plots_dir=plots, tta=tta, batch_size=batch_size, log=_echo,
                  overwrite=overwrite, progress=progress)

    _run(action)


@app.command()
def predict(
    out: Path = typer.Option(..., "--out", help="File to write: a Kaggle submission CSV, or HDF5 (--format)."),
    run: Optional[List[Path]] = typer.Option(None, "--run", metavar="PATH", help=_RUN_HELP),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="NAME", help=_PRETRAINED_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help="galaxyprep file of the images (labels not needed), "
                                                             "built like the model's."),
    images: Optional[Path] = typer.Option(None, "--images", help="Or a folder or zip of <GalaxyID>.jpg, decoded "
                                                                 "with galaxyprep at the model's crop and size."),
    format: OutputFormat = typer.Option("csv", "--format", help="csv: the Kaggle submission; hdf5: ids, the 37 "
                                                                "columns and (tta > 1) their spread over the views.",
                                        show_default=True),
    tta: Optional[int] = typer.Option(None, "--tta", help=_TTA_HELP),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per prediction call (memory, not results).",
                                   show_default=True),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out of another kind."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=_PROGRESS_HELP, show_default=True),
) -> None:
    """Predict every galaxy of a file or of a folder/zip of JPEGs: a Kaggle submission or an HDF5 catalogue."""

    def action() -> None:
        from .inference import predict_submission

        predict_submission(_sources(run, pretrained), data, out, tta=tta, batch_size=batch_size, log=_echo,
                           overwrite=overwrite, images=images, format=format, progress=progress)

    _run(action)


@app.command("recipes")
def list_recipes() -> None:
    """List the named recipes fit --recipe accepts, with their options."""

    def action() -> None:
        from .recipes import RECIPES

        for recipe in RECIPES.values():
            _echo(f"{recipe.name}: {recipe.summary}")
            _echo(f"  data: {recipe.data.build_command()}  (--crop {recipe.crop} --size {recipe.size}); "
                  f"score/predict --tta {recipe.tta}")
            _echo("  fit: " + " ".join(_flag(k, v) for k, v in recipe.options.items() if v is not None)
                  + ("" if recipe.seeds is None else " --seeds " + ",".join(map(str, recipe.seeds)))
                  + (" --unlabelled FILE" if recipe.student else ""))

    _run(action)


def _flag(name: str, value) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


@app.command("models")
def list_models() -> None:
    """List the architectures --model accepts and the trained models --pretrained accepts."""

    def action() -> None:
        from .models import available_models
        from .models.pretrained import shipped_models

        _echo("architectures (fit --model): " + ", ".join(available_models()))
        shipped = shipped_models()
        _echo("trained, shipped with galaxytrain (predict/score --pretrained):" + ("" if shipped else " none"))
        for name, model in shipped.items():
            _echo(f"  {name}: {model.summary} ({model.card_path})")

    _run(action)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    _quiet_tensorflow()
    app(args=argv, prog_name="galaxytrain")
