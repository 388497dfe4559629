"""Loading models this package saved: the custom layers registered, damaged files one line.

Loading lives with the models (as in timm): training resumes through it,
prediction loads through it, and neither needs the other.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from galaxyprep import InputError

from .tree_head import GalaxyTreeHead, set_normalize


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a .keras file written by this package.

    compile=True restores loss, metrics and the optimizer state (to resume);
    prediction needs none of them. Importing this package registered every
    model family's custom layers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "not a .keras model file (not a zip archive): damaged or not written by Keras 3")
    try:
        return keras.models.load_model(path, custom_objects={"GalaxyTreeHead": GalaxyTreeHead}, compile=compile)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot load the model ({reason})") from None


def load_model_for_prediction(path: str | Path) -> keras.Model:
    """The model with its tree normalisation on: a checkpoint of a warm-up epoch was saved with it off."""
    model = load_model(path, compile=False)
    try:
        set_normalize(model, True)
    except ValueError:  # no tree head: nothing to switch
        pass
    return model
