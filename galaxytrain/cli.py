"""``galaxytrain``: fit, score and predict. Each command is a thin wrapper over a plain function.

TensorFlow is imported only inside the commands, after TF_CPP_MIN_LOG_LEVEL
is set, so that ``--help`` is instant and start-up is quiet. Expected input
problems (galaxyprep.errors.InputError) end in one line, ``error: <path>:
<problem>``, and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional

import typer

from galaxyprep import InputError

from .choices import Augment, Head, Loss, LrSchedule

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train Galaxy Zoo morphology models from a galaxyprep HDF5 file.")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run(action: Callable[[], object]) -> None:
    """Call `action`; an InputError becomes one line on stderr and exit code 1."""
    _quiet_tensorflow()
    try:
        from .gpu import import_tensorflow_quietly

        import_tensorflow_quietly()
        action()
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted (a fit resumes from its last completed epoch: run the same command again)", err=True)
        raise typer.Exit(130) from None


def _echo(line: str) -> None:
    typer.echo(line)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep HDF5 file (galaxyprep build)."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning the same command resumes it."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="A named set of the options below (best, baseline); options given explicitly win."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (galaxytrain models lists them). Default: vgg6."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Total epochs (a resumed run continues up to this). Default: 20."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="[default: 64]"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Fraction held out for validation (0: none). Default: 0.1."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the split, the shuffle and the weights. Default: 0."),
    augment: Optional[Augment] = typer.Option(
        None, "--augment", help="dihedral: random 90-degree turns and flips; rotate: any angle, zoom, shift, flip. Default: none."),
    input_size: Optional[int] = typer.Option(
        None, "--input-size", help="Model input: centre (or random rotated) views of this many pixels of the stored images. Default: the stored size."),
    max_shift: Optional[float] = typer.Option(None, "--max-shift", help="rotate: largest shift in pixels. Default: 4."),
    max_zoom: Optional[float] = typer.Option(None, "--max-zoom", help="rotate: zoom log-uniform in [1/Z, Z]. Default: 1.3."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Loader threads (or processes). Default: 1."),
    use_multiprocessing: Optional[bool] = typer.Option(None, "--use-multiprocessing/--no-use-multiprocessing"),
    max_queue_size: Optional[int] = typer.Option(None, "--max-queue-size", help="Batches prepared ahead. Default: 10."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="Adam learning rate (the peak of a schedule). Default: 0.001."),
    lr_schedule: Optional[LrSchedule] = typer.Option(
        None, "--lr-schedule", help="cosine: to 0 at the last epoch; step: x0.1 at half, x0.01 at three quarters. Default: constant."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW's decoupled weight decay (0: Adam). Default: 0."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N images (quick tries)."),
    gpu_memory_limit: Optional[str] = typer.Option(
        None, "--gpu-memory-limit", help="Cap GPU memory, e.g. 12GiB (imitates a smaller card; turns memory growth off)."),
    memory_growth: bool = typer.Option(True, "--memory-growth/--no-memory-growth",
                                       help="Allocate GPU memory as needed rather than all at once."),
    mixed_precision: Optional[bool] = typer.Option(
        None, "--mixed-precision/--no-mixed-precision",
        help="float16 compute on a GPU, bfloat16 on a CPU (fast only with AMX or AVX512-BF16). Default: off."),
    head: Optional[Head] = typer.Option(
        None, "--head", help="37 sigmoids, or outputs normalised along the decision tree. Default: sigmoid."),
    loss: Optional[Loss] = typer.Option(
        None, "--loss", help="Binary cross-entropy (the student project's) or MSE (the metric's). Default: bce."),
    tree_warmup_epochs: Optional[int] = typer.Option(
        None, "--tree-warmup-epochs", help="Train the first K epochs with the tree normalisation off (--head tree). Default: 0."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard a run already in --out and start again."),
) -> None:
    """Train a model; writes best.keras, last.keras, history.csv, config.json, training_curve.png."""

    def action() -> None:
        from .training import fit as fit_run
        from .recipes import resolve_fit_config

        config = resolve_fit_config(
            recipe, data, out, model=model, epochs=epochs, batch_size=batch_size, val_fraction=val_fraction,
            seed=seed, augment=augment, input_size=input_size, max_shift=max_shift, max_zoom=max_zoom,
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size,
            learning_rate=learning_rate, lr_schedule=lr_schedule, weight_decay=weight_decay, limit=limit,
            gpu_memory_limit=gpu_memory_limit, memory_growth=memory_growth, mixed_precision=mixed_precision,
            head=head, loss=loss, tree_warmup_epochs=tree_warmup_epochs, overwrite=overwrite)
        result = fit_run(config, log=_echo)
        if result.best_epoch is not None:
            what = (f"val RMSE {result.best_val_rmse:.5f}" if result.best_val_rmse is not None
                    else "lowest training loss")
            base = ("" if result.baseline_val_rmse is None
                    else f" (mean predictor {result.baseline_val_rmse:.5f})")
            _echo(f"done: {result.epochs_done} epochs in {result.run_dir}; best epoch {result.best_epoch}, {what}{base}")

    _run(action)


@app.command()
def score(
    run: List[Path] = typer.Option(..., "--run", help="Run directory (or a .keras file); repeat it to score "
                                                     "the average of several (an ensemble)."),
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep file to score on."),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report to write [default: <run>/report.json]."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for ROC plots [default: beside the report]."),
    tta: int = typer.Option(1, "--tta", help="Average over this many views: 1, 2, 4, 8 dihedral; 16, 24, 32: "
                                             "the 8 at 2, 3, 4 turns spaced over 90 degrees."),
    batch_size: int = typer.Option(64, "--batch-size"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --report that is not a score report."),
) -> None:
    """Score a trained model: RMSE, per-question accuracy, ROC AUC, leaderboard place."""

    def action() -> None:
        from .inference import score_run

        first = run[0]
        target = report if report is not None else (first if first.is_dir() else first.parent) / "report.json"
        score_run(run, data, target, plots_dir=plots, tta=int(tta), batch_size=batch_size, log=_echo,
                  overwrite=overwrite)

    _run(action)


@app.command()
def predict(
    run: List[Path] = typer.Option(..., "--run", help="Run directory (or a .keras file); repeat it to average "
                                                     "several (an ensemble)."),
    data: Path = typer.Option(..., "--data", help="galaxyprep file of the images to predict (labels not needed)."),
    out: Path = typer.Option(..., "--out", help="Submission CSV to write."),
    tta: int = typer.Option(1, "--tta", help="Average over this many views: 1, 2, 4, 8 dihedral; 16, 24, 32: "
                                             "the 8 at 2, 3, 4 turns spaced over 90 degrees."),
    batch_size: int = typer.Option(64, "--batch-size"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out that is not a submission CSV."),
) -> None:
    """Write a Kaggle submission (GalaxyID,Class1.1,...,Class11.6) for every image of a file."""

    def action() -> None:
        from .inference import predict_submission

        predict_submission(run, data, out, tta=int(tta), batch_size=batch_size, log=_echo, overwrite=overwrite)

    _run(action)


@app.command("recipes")
def list_recipes() -> None:
    """List the named recipes fit --recipe accepts, with their options."""

    def action() -> None:
        from .recipes import RECIPES

        for recipe in RECIPES.values():
            _echo(f"{recipe.name}: {recipe.summary}")
            _echo("  data: galaxyprep build ... --crop {} --size {}; score/predict --tta {}".format(
                recipe.crop, recipe.size, recipe.tta))
            _echo("  fit: " + " ".join(_flag(k, v) for k, v in recipe.options.items() if v is not None))

    _run(action)


def _flag(name: str, value) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


@app.command("models")
def list_models() -> None:
    """List the model names --model accepts."""

    def action() -> None:
        from .models import available_models

        for name in available_models():
            _echo(name)

    _run(action)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    _quiet_tensorflow()
    app(args=argv, prog_name="galaxytrain")
