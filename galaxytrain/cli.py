"""``galaxytrain``: fit, score and predict. Each command is a thin wrapper over a plain function.

TensorFlow is imported only inside the commands, after TF_CPP_MIN_LOG_LEVEL
is set, so that ``--help`` is instant and start-up is quiet. Expected input
problems (galaxyprep.errors.InputError) end in one line, ``error: <path>:
<problem>``, and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal, Optional

import typer

from galaxyprep.errors import InputError

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
    model: str = typer.Option("vgg6", "--model", help="Model name (galaxytrain models lists them)."),
    epochs: int = typer.Option(20, "--epochs", help="Total epochs (a resumed run continues up to this)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Fraction held out for validation (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the shuffle and the weights."),
    augment: Literal["none", "dihedral"] = typer.Option("none", "--augment",
                                help="dihedral: random 90-degree turns and flips."),
    workers: int = typer.Option(1, "--workers", help="Loader threads (or processes)."),
    use_multiprocessing: bool = typer.Option(False, "--use-multiprocessing/--no-use-multiprocessing"),
    max_queue_size: int = typer.Option(10, "--max-queue-size", help="Batches prepared ahead."),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="Adam learning rate."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N images (quick tries)."),
    gpu_memory_limit: Optional[str] = typer.Option(
        None, "--gpu-memory-limit", help="Cap GPU memory, e.g. 12GiB (imitates a smaller card; turns memory growth off)."),
    memory_growth: bool = typer.Option(True, "--memory-growth/--no-memory-growth",
                                       help="Allocate GPU memory as needed rather than all at once."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="mixed_float16 compute (GPU)."),
    head: Literal["sigmoid", "tree"] = typer.Option("sigmoid", "--head",
                             help="37 sigmoids, or outputs normalised along the decision tree."),
    loss: Literal["bce", "mse"] = typer.Option("bce", "--loss",
                             help="Binary cross-entropy (the student project's) or MSE (the metric's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard a run already in --out and start again."),
) -> None:
    """Train a model; writes best.keras, last.keras, history.csv, config.json, training_curve.png."""

    def action() -> None:
        from .config import FitConfig
        from .fit import fit as fit_run

        config = FitConfig(data=data, out=out, model=model, epochs=epochs, batch_size=batch_size,
                           val_fraction=val_fraction, seed=seed, augment=augment, workers=workers,
                           use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size,
                           learning_rate=learning_rate, limit=limit, gpu_memory_limit=gpu_memory_limit,
                           memory_growth=memory_growth, mixed_precision=mixed_precision, head=head,
                           loss=loss, overwrite=overwrite)
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
    run: Path = typer.Option(..., "--run", help="Run directory (or a .keras file)."),
    data: Path = typer.Option(..., "--data", help="Labelled galaxyprep file to score on."),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report to write [default: <run>/report.json]."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for ROC plots [default: beside the report]."),
    tta: int = typer.Option(1, "--tta", help="Average over this many dihedral views: 1, 2, 4 or 8."),
    batch_size: int = typer.Option(64, "--batch-size"),
) -> None:
    """Score a trained model: RMSE, per-question accuracy, ROC AUC, leaderboard place."""

    def action() -> None:
        from .predict import score_run

        target = report if report is not None else (run if run.is_dir() else run.parent) / "report.json"
        score_run(run, data, target, plots_dir=plots, tta=int(tta), batch_size=batch_size, log=_echo)

    _run(action)


@app.command()
def predict(
    run: Path = typer.Option(..., "--run", help="Run directory (or a .keras file)."),
    data: Path = typer.Option(..., "--data", help="galaxyprep file of the images to predict (labels not needed)."),
    out: Path = typer.Option(..., "--out", help="Submission CSV to write."),
    tta: int = typer.Option(1, "--tta", help="Average over this many dihedral views: 1, 2, 4 or 8."),
    batch_size: int = typer.Option(64, "--batch-size"),
) -> None:
    """Write a Kaggle submission (GalaxyID,Class1.1,...,Class11.6) for every image of a file."""

    def action() -> None:
        from .predict import predict_submission

        predict_submission(run, data, out, tta=int(tta), batch_size=batch_size, log=_echo)

    _run(action)


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
