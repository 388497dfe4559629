"""Named training recipes: every option of a result, under one name.

``galaxytrain fit --recipe best`` trains the toolkit's best model end to end;
``--recipe baseline`` the original student project's VGG6. A recipe fills in
the options the command line leaves unset: an option given explicitly always
wins, and the resolved values are what config.json records (so a run resumes
with the same command). A recipe also says how its data file was built and
how many test-time views it was scored with; those are for the user (and
bench/bench_vgg6_real.py), since fit only sees the finished file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from galaxyprep import DataRecipe, InputError, data_recipe

from .config import FitConfig


@dataclass(frozen=True)
class Recipe:
    """FitConfig values, plus the data build and test-time views they were measured with.

    The data build (crop, size) is galaxyprep's `DataRecipe` of the same name.
    """

    name: str
    summary: str
    options: dict = field(default_factory=dict)
    tta: int = 1
    #: galaxyprep's data recipe whose file this one trains on; None: the one of the same name.
    data_name: str | None = None
    #: An ensemble recipe: one member run per seed (``fit --seeds``), averaged by score and predict;
    #: None: one run.
    seeds: tuple[int, ...] | None = None
    #: An ensemble recipe whose members then teach a student on unlabelled galaxies (``fit --unlabelled``).
    student: bool = False

    @property
    def data(self) -> DataRecipe:
        return data_recipe(self.data_name or self.name)

    @property
    def crop(self) -> int:
        return self.data.crop

    @property
    def size(self) -> int:
        return self.data.size


#: The best recipe's options; best-150 differs in its epochs alone.
_BEST = dict(model="galaxy_parts", head="tree", loss="mse", augment="rotate", input_size=64, max_shift=2.0,
             max_zoom=1.15, learning_rate=1e-3, lr_schedule="cosine", weight_decay=0.0, batch_size=64, epochs=80,
             tree_warmup_epochs=0)
#: best started from the shipped simulation-pretrained network; its recipes differ in their seeds alone.
_BEST_SYNTH = {**_BEST, "init_from": "pretrained:synth"}

RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(
        name="baseline",
        summary="the student project's VGG6: sigmoid outputs, binary cross-entropy, Adam 1e-3, no augmentation",
        options=dict(model="vgg6", head="sigmoid", loss="bce", augment="none", learning_rate=1e-3,
                     lr_schedule="constant", weight_decay=0.0, batch_size=64, epochs=20, input_size=None,
                     tree_warmup_epochs=0),
        tta=1),
    "best": Recipe(
        name="best",
        summary="galaxy_parts (one conv stack over 8 turned and mirrored corner parts) with the decision-tree "
                "head and MSE, random rotations/zooms/shifts/flips of 64 px views of 207 px crops stored at "
                "69 px, Adam with cosine decay over 80 epochs, 16 test-time views; about 72 min on 2 cores in "
                "float32 for the 5,866 shared images",
        options=_BEST,
        tta=16),
    "best-150": Recipe(
        name="best-150",
        summary="best with cosine decay over 150 epochs: 1.9x the time; 0.0890 on the bench holdout against "
                "best's 0.0899 (within the 0.0006 between two seeds)",
        options={**_BEST, "epochs": 150},
        tta=16, data_name="best"),
    "best-synth": Recipe(
        name="best-synth",
        summary="best started from the shipped network pretrained on 12,000 galaxyprep synth galaxies "
                "(--init-from pretrained:synth) instead of new weights: best's time (the pretraining is shipped); "
                "0.0889 and 0.0887 on the bench holdout (seeds 0, 1) against best's 0.0899 and 0.0898, a gain "
                "that grows with fewer labelled galaxies (-2.2% at half of them)",
        options=_BEST_SYNTH,
        tta=16, data_name="best"),
    "best-synth-ensemble": Recipe(
        name="best-synth-ensemble",
        summary="two runs of best-synth (seeds 0 and 1) averaged by score and predict: 0.0879 and 0.0876 (two "
                "trainings, two VMs) on the bench holdout against best-ensemble's 0.0889, at the same cost (twice "
                "best's time: about 90 min with bfloat16, 2.4 h in float32 on 2 cores for the 5,866 shared "
                "images); best-synth-distil adds a student",
        options=_BEST_SYNTH,
        tta=16, data_name="best", seeds=(0, 1)),
    "best-synth-distil": Recipe(
        name="best-synth-distil",
        summary="best-synth-ensemble, then a third member: a best-synth student trained on the labelled galaxies "
                "and the two members' soft votes (16 views) on unlabelled ones (fit --unlabelled FILE, e.g. the "
                "test set), the three averaged by score and predict: 0.0873 on the bench holdout against its pair's "
                "0.0876 (0.0871 with another student seed; 0.0874 against 0.0879 in an earlier training on another "
                "VM); the most accurate recipe. "
                "Three trainings, the student's 1.2x a member's on the shared images: about 1.7 h with bfloat16 on "
                "2 cores (Zen 5), 2.8-3.8 h in float32, 4.4-5.0 h with AVX2 only, for the 5,866 shared and 1,197 "
                "test images (--hours 3 caps it: at 48 epochs instead of 80 the three scored 1.9% worse)",
        options=_BEST_SYNTH,
        tta=16, data_name="best", seeds=(0, 1), student=True),
    "best-ensemble": Recipe(
        name="best-ensemble",
        summary="two runs of best (seeds 0 and 1, each validating on its own 10%) averaged by score and "
                "predict: 0.0889 on the bench holdout against 0.0899 and 0.0898 alone; twice best's time "
                "(about 90 min with bfloat16, 2.4 h in float32 on 2 cores for the 5,866 shared images)",
        options=_BEST,
        tta=16, data_name="best", seeds=(0, 1)),
}


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"--recipe {name}", f"unknown recipe; available: {', '.join(recipe_names())}")
    return RECIPES[name]


def recipe_seeds(recipe: str | None, seed: int | None, seeds) -> list[int] | None:
    """The members to train: `seeds` given, else the recipe's own unless one `seed` was asked for."""
    if seeds is not None:
        if seed is not None:
            raise InputError("--seed/--seeds", "give one seed, or an ensemble's seeds, not both")
        return [int(s) for s in seeds]
    if recipe is None or seed is not None:
        return None
    own = get_recipe(recipe).seeds
    return None if own is None else list(own)


def resolve_fit_config(recipe: str | None, data: str | Path, out: str | Path, **options) -> FitConfig:
    """FitConfig defaults, overridden by the recipe's values, overridden by every option not None.

    A recipe's tree warm-up is dropped when an explicit ``head`` other than
    "tree" replaces the recipe's tree head (the warm-up would mean nothing).
    """
    names = {f.name for f in fields(FitConfig)} - {"data", "out", "recipe"}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"unknown FitConfig options: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None}
    values: dict = {}
    if recipe is not None:
        values.update(get_recipe(recipe).options)
        if given.get("head", values.get("head")) != "tree" and "tree_warmup_epochs" not in given:
            values["tree_warmup_epochs"] = 0
    values.update(given)
    config = FitConfig(data=data, out=out, **values)
    config.recipe = recipe
    return config


def check_recipe_data(recipe: Recipe, crop: int, size: int, path, source: str = "", labels_source: str = "",
                      allow: bool = False, log=print) -> None:
    """Refuse a file built otherwise than the recipe's (one line with the command that builds it).

    With `allow`, say what the difference changes and go on: the recipe's
    views then cover another field of view than the one it was measured on.
    """
    if (crop, size) == (recipe.crop, recipe.size):
        return
    if not allow:
        command = recipe.data.build_command(source or "IMAGES", labels_source or "LABELS", "OUT.h5")
        raise InputError(path, f"was built with --crop {crop} --size {size}; recipe {recipe.name} was measured on "
                               f"--crop {recipe.crop} --size {recipe.size}: build its file with `{command}`, or "
                               "pass --allow-other-build to train on this one anyway")
    view = recipe.options.get("input_size") or size
    log(f"recipe {recipe.name} on another build (--allow-other-build): its {view} px views cover "
        f"{crop * view / size:.0f} original pixels here, against {recipe.crop * view / recipe.size:.0f} in the "
        f"recipe's files (crop {recipe.crop} -> {recipe.size}); the recipe's accuracy was not measured on this")
