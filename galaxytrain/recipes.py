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

from galaxyprep import InputError

from .config import FitConfig


@dataclass(frozen=True)
class Recipe:
    """FitConfig values, plus the data build and test-time views they were measured with."""

    name: str
    summary: str
    options: dict = field(default_factory=dict)
    crop: int = 200
    size: int = 96
    tta: int = 1


RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(
        name="baseline",
        summary="the student project's VGG6: sigmoid outputs, binary cross-entropy, Adam 1e-3, no augmentation",
        options=dict(model="vgg6", head="sigmoid", loss="bce", augment="none", learning_rate=1e-3,
                     lr_schedule="constant", weight_decay=0.0, batch_size=64, epochs=20, input_size=None,
                     tree_warmup_epochs=0),
        crop=200, size=96, tta=1),
    "best": Recipe(
        name="best",
        summary="galaxy_parts (one conv stack over 8 turned and mirrored corner parts) with the decision-tree "
                "head and MSE, random rotations/zooms/shifts/flips of 64 px views of 207 px crops stored at "
                "69 px, Adam with cosine decay, mixed precision (bfloat16 on a CPU), 16 test-time views",
        options=dict(model="galaxy_parts", head="tree", loss="mse", augment="rotate", input_size=64,
                     max_shift=2.0, max_zoom=1.15, learning_rate=1e-3, lr_schedule="cosine",
                     weight_decay=0.0, batch_size=64, epochs=150, tree_warmup_epochs=0, mixed_precision=True),
        crop=207, size=69, tta=16),
}


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"--recipe {name}", f"unknown recipe; available: {', '.join(recipe_names())}")
    return RECIPES[name]


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
    return FitConfig(data=data, out=out, recipe=recipe, **values)
