"""The Python API: ``galaxyprep.build(...)`` does what ``galaxyprep build`` does, from a notebook.

It raises InputError (the shell's one line, as an exception) and never
exits; a recipe gives crop and size exactly as ``--recipe`` does.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Callable

from .builder import BuildConfig, BuildSummary
from .builder import build as run_build
from .recipes import data_recipe

_DEFAULT = BuildConfig(images=Path("."), out=Path("."))


def build_config(images: str | Path, out: str | Path, labels: str | Path | None = None, *,
                 recipe: str | None = None, crop: int | None = None, size: int | None = None,
                 **options) -> BuildConfig:
    """A BuildConfig: crop and size from `recipe` unless given, every other option BuildConfig's field of that name."""
    names = {f.name for f in fields(BuildConfig)} - {"images", "out", "labels", "crop", "size"}
    unknown = set(options) - names
    if unknown:
        raise TypeError(f"unknown build options: {', '.join(sorted(unknown))}")
    chosen = data_recipe(recipe) if recipe is not None else None
    crop = crop if crop is not None else chosen.crop if chosen else _DEFAULT.crop
    size = size if size is not None else chosen.size if chosen else _DEFAULT.size
    return BuildConfig(images=Path(images), out=Path(out), labels=None if labels is None else Path(labels),
                       crop=crop, size=size, **options)


def build(images: str | Path, out: str | Path, labels: str | Path | None = None, *, recipe: str | None = None,
          crop: int | None = None, size: int | None = None,
          progress: Callable[[int, int], None] | None = None,
          report: Callable[[str], None] | None = None, **options) -> BuildSummary:
    """Build one chunked HDF5 file from a folder or zip of Kaggle JPEGs (and, for training, the labels CSV).

    `options` are BuildConfig's fields (ids_file=, limit=, overwrite=, ...).
    Returns the BuildSummary (``.lines()`` is what the shell prints).
    """
    return run_build(build_config(images, out, labels, recipe=recipe, crop=crop, size=size, **options),
                     progress=progress, report=report)
