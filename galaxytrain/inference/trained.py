"""A trained run ready to predict: its model, and what its run directory says about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from galaxyprep import GalaxyFile, InputError

from ..compute import inference_policy
from ..data import Normalization
from ..models import load_model_for_prediction
from ..run_dir import RunDir


@dataclass
class TrainedRun:
    """A model ready to predict, and the record (config.json) of the training that made it."""

    model: object
    model_path: Path
    run_path: Path
    record: dict = field(default_factory=dict)
    #: The side of the images the model takes (its input_shape), kept after the model is freed.
    input_size: int | None = None

    @property
    def normalization(self) -> Normalization | None:
        """The training file's normalization, or None when the run does not say."""
        data = self.record.get("data", {})
        if "mean" in data and "std" in data:
            return Normalization(data["mean"], data["std"])
        return None

    @property
    def source_size(self) -> int | None:
        """The stored image size the model was trained from (its input may be a view of it)."""
        size = self.record.get("data", {}).get("image_size")
        return None if size is None else int(size)


def run_record(run: str | Path) -> dict:
    """The config.json record of a run directory, or of the run a .keras file in one belongs to ({} if none)."""
    run = Path(run)
    return RunDir(run.parent if run.suffix == ".keras" else run).read_config() or {}


def load_run(run: str | Path, which: str = "best") -> TrainedRun:
    """Load ``<run>/best.keras`` (or ``last``), or a .keras file given directly, ready to predict."""
    run = Path(run)
    if run.is_file() and run.suffix == ".keras":
        return TrainedRun(_load(_verified(RunDir(run.parent), run)), run, run.parent, run_record(run))
    if not run.exists():
        raise InputError(run, "no such run directory")
    if not run.is_dir():
        raise InputError(run, "not a run directory or .keras model file")
    run_dir = RunDir(run)
    model_path = run_dir.best if which == "best" else run_dir.last
    if not model_path.exists():
        raise InputError(run, f"not a trained run directory (no {model_path.name}); train one with `galaxytrain fit`")
    return TrainedRun(_load(_verified(run_dir, model_path)), model_path, run, run_record(run))


def _verified(run_dir: RunDir, model: Path) -> Path:
    try:
        return run_dir.verified(model)
    except ValueError as exc:
        raise InputError(model, f"{exc}; predict with the run that made it, or train again") from None


def protected_paths(runs: Sequence[Path], data: str | Path | None) -> list[tuple[str, Path]]:
    """(option, path) of every file an output of score or predict must never replace.

    The runs' files (a .keras given directly and its run folder's), the
    data file and, for a virtual file, each shard it reads.
    """
    out: list[tuple[str, Path]] = []
    for run in runs:
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


def as_runs(run: str | Path | Sequence[str | Path]) -> list[Path]:
    """One run or several (an ensemble) as a list of paths; at least one."""
    runs = [Path(run)] if isinstance(run, (str, Path)) else [Path(r) for r in run]
    if not runs:
        raise InputError("--run", "give at least one run directory")
    return runs
