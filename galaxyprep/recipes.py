"""The data half of galaxytrain's named recipes: how a recipe's file is built.

A recipe's accuracy was measured on files of one crop and size; its name
gives both here, so that ``galaxyprep build --recipe best`` makes exactly
that file and ``galaxytrain fit --recipe best`` can tell a file built
otherwise. The training half (model, augmentation, schedule, test-time
views) lives in `galaxytrain.recipes`, which reads crop and size from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class DataRecipe:
    """A centre crop of `crop` original pixels, area-averaged to `size` x `size`."""

    name: str
    crop: int
    size: int

    def build_command(self, images: str = "IMAGES", labels: str | None = "LABELS", out: str = "OUT.h5") -> str:
        """The command that builds this recipe's file."""
        labels_part = f" --labels {labels}" if labels else ""
        return f"galaxyprep build --recipe {self.name} --images {images}{labels_part} --out {out}"


DATA_RECIPES: dict[str, DataRecipe] = {
    "baseline": DataRecipe("baseline", crop=200, size=96),  # the student project's crop, downsampled
    "best": DataRecipe("best", crop=207, size=69),          # Dieleman's crop and 3x downsampling
}


def data_recipe(name: str) -> DataRecipe:
    if name not in DATA_RECIPES:
        raise InputError(f"--recipe {name}", f"unknown recipe; available: {', '.join(sorted(DATA_RECIPES))}")
    return DATA_RECIPES[name]
