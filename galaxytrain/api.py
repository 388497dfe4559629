"""The Python API: what the shell commands do, as functions a notebook calls.

    import galaxyprep, galaxytrain
    galaxyprep.build(images="images_training_rev1", labels="training_solutions_rev1.csv",
                     out="train.h5", recipe="best")
    galaxytrain.fit("train.h5", "runs/best", recipe="best")
    galaxytrain.finetune("own.h5", "runs/own", pretrained="best")   # one's own label columns
    model = galaxytrain.load("runs/best")          # or a shipped model: galaxytrain.load("best")
    table = model.predict("images_test_rev1").to_frame()

Every function raises (galaxyprep.InputError for what the user must fix,
with the same one-line message the shell prints) and never exits. A recipe
resolves exactly as ``--recipe`` does: its values, then every option given.
TensorFlow is imported on the first call, not by ``import galaxytrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from .inference import ModelSource, Predictions, TrainedModel
    from .training import FitResult


def fit(data: str | Path, out: str | Path, recipe: str | None = None, *, seeds: Sequence[int] | None = None,
        log: Callable[[str], None] = print, **options) -> "FitResult | list[FitResult]":
    """Train (or resume) a run, as ``galaxytrain fit``: `options` are FitConfig's fields (epochs=, model=, ...).

    Rerunning the same call resumes the run from its last completed epoch.
    `seeds`: one run per seed in the ensemble folder `out` (``--seeds``),
    a list of results; predict and score take the folder as one model. An
    ensemble recipe (best-ensemble) trains its own seeds unless `seed` is given.
    ``unlabelled="test.h5"`` with an ensemble: the members' soft votes on
    those galaxies then teach a student, the last member (``fit --unlabelled``).
    """
    _tensorflow()
    from .recipes import recipe_seeds, resolve_fit_config
    from .training import fit as fit_run
    from .training import fit_ensemble

    options.setdefault("progress", False)  # a notebook gets one line per epoch, not a terminal bar
    if seeds is not None and "seed" in options:
        raise TypeError("give seed= or seeds=, not both")
    config = resolve_fit_config(recipe, data, out, **options)
    members = recipe_seeds(recipe, options.get("seed"), seeds)
    if members is not None:
        return fit_ensemble(config, members, log=log)
    return fit_run(config, log=log)


def finetune(data: str | Path, out: str | Path, pretrained: str | None = "best", *, start: str | Path | None = None,
             log: Callable[[str], None] = print, **options) -> "FitResult":
    """Fine-tune a shipped model (`pretrained`) or a run folder (`start`) on a file of one's own label columns.

    As ``galaxytrain finetune``: a new head for the file's columns, the
    encoder frozen for the first epochs and then learning at layer-wise
    rates, stopping on its own validation split. `options` are FitConfig's
    fields (epochs=, frozen_epochs=, layer_decay=, learning_rate=, ...).
    Rerunning the same call resumes the run.
    """
    _tensorflow()
    from .models.pretrained import PREFIX
    from .training import fit as fit_run
    from .training.finetune import resolve_finetune_config

    source = Path(start) if start is not None else PREFIX + str(pretrained).removeprefix(PREFIX)
    options.setdefault("progress", False)
    return fit_run(resolve_finetune_config(source, data, out, **options), log=log)


def load(source: "ModelSource", which: str = "best") -> "TrainedModel":
    """A run folder (its best.keras, or ``which="last"``) or a shipped model by name, loaded and verified once."""
    _tensorflow()
    from .inference import load as load_model

    return load_model(source, which)


def predict(model: "ModelSource | Sequence[ModelSource]", images, *, tta: int | None = None,
            batch_size: int = 64, ids: Sequence[int] | None = None) -> "Predictions":
    """Predictions of one model or the average of several, for a file, a folder or zip of JPEGs, or an array."""
    _tensorflow()
    from .inference import predict_source
    from .inference.trained import as_sources

    return predict_source(as_sources(model), images, tta=tta, batch_size=batch_size, ids=ids)


def score(model: "ModelSource | Sequence[ModelSource]", data: str | Path, report: str | Path, *,
          tta: int | None = None, batch_size: int = 64, overwrite: bool = False,
          log: Callable[[str], None] = print) -> dict:
    """Score on a labelled galaxyprep file, as ``galaxytrain score``: writes the JSON report and plots, returns it."""
    _tensorflow()
    from .inference import score_run

    return score_run(model, data, report, tta=tta, batch_size=batch_size, overwrite=overwrite, log=log)


def list_pretrained() -> dict[str, str]:
    """The shipped trained models, name -> one line about each (``galaxytrain models``)."""
    from .models.pretrained import shipped_models

    return {name: model.summary for name, model in shipped_models().items()}


def _tensorflow() -> None:
    """TensorFlow imported without its C++ start-up chatter (as the shell commands do)."""
    from .gpu import import_tensorflow_quietly

    import_tensorflow_quietly()
