"""Loading models this package saved: the custom layers registered, damaged files one line.

Loading lives with the models (as in timm): training resumes through it,
prediction loads through it, and neither needs the other.
"""

from __future__ import annotations

import json
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import keras

from galaxyprep import InputError

from .tree_head import GalaxyTreeHead, set_normalize


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a .keras file written by this package.

    compile=True restores loss, metrics and the optimizer state (to resume);
    prediction needs none of them. Importing this package registered every
    model family's custom layers.
    """
    path = _checked_file(path)
    with _load_errors(path):
        return keras.models.load_model(path, custom_objects={"GalaxyTreeHead": GalaxyTreeHead}, compile=compile)


def saved_policy(path: str | Path) -> str:
    """The mixed-precision policy a .keras file's layers compute in, or "float32"."""
    return _mixed_policy(_saved_config(Path(path)))


def load_model_for_prediction(path: str | Path,
                              choose_policy: Callable[[str], str] | None = None) -> keras.Model:
    """The model with its tree normalisation on (a checkpoint of a warm-up epoch was saved with it off).

    `choose_policy` maps the saved policy to the one to compute in, e.g.
    float32 for a model trained in bfloat16 on a CPU without bfloat16
    units, where emulated bfloat16 is several times slower. The weights are
    float32 under any policy, so only the rounding of the computation moves.
    """
    path = _checked_file(path)
    config = _saved_config(path)
    saved = _mixed_policy(config)
    policy = saved if choose_policy is None else choose_policy(saved)
    if policy == saved:
        model = load_model(path, compile=False)
    else:  # the architecture with each layer of the saved policy in `policy`, then the file's weights
        with _load_errors(path):
            model = _from_config(config, saved, policy)
            model.load_weights(path)
    return _for_prediction(model)


def model_from_architecture(config: dict, weights: list, choose_policy: Callable[[str], str] | None = None,
                            source: str | Path = "model") -> keras.Model:
    """A model from its Keras architecture (``json.loads(model.to_json())``) and its weights, ready to predict.

    How shipped models load (galaxytrain.models.pretrained): the weights
    travel apart from the architecture, in their own compact file.
    """
    saved = _mixed_policy(config)
    policy = saved if choose_policy is None else choose_policy(saved)
    with _load_errors(Path(source)):
        model = _from_config(config, saved, policy)
        model.set_weights(weights)
    return _for_prediction(model)


def _from_config(config: dict, saved: str, policy: str) -> keras.Model:
    return keras.models.model_from_json(json.dumps(_with_policy(config, saved, policy)),
                                        custom_objects={"GalaxyTreeHead": GalaxyTreeHead})


def _for_prediction(model: keras.Model) -> keras.Model:
    try:
        set_normalize(model, True)
    except ValueError:  # no tree head: nothing to switch
        pass
    return model


def _checked_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "not a .keras model file (not a zip archive): damaged or not written by Keras 3")
    return path


@contextmanager
def _load_errors(path: Path) -> Iterator[None]:
    """Keras' and the file's errors while loading `path` as one InputError line."""
    try:
        yield
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot load the model ({reason})") from None


def _saved_config(path: Path) -> dict:
    """The architecture a .keras file holds ({} where it cannot be read: loading then says why)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def _mixed_policy(config: dict) -> str:
    found = {name for name in _policy_names(config) if name.startswith("mixed_")}
    return found.pop() if len(found) == 1 else "float32"


def _policy_names(node):
    """Every dtype policy name in a Keras config tree."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy":
            yield node.get("config", {}).get("name", "")
        for value in node.values():
            yield from _policy_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _policy_names(value)


def _with_policy(node, old: str, new: str):
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get("name") == old:
            return {**node, "config": {**node["config"], "name": new}}
        return {k: _with_policy(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_policy(v, old, new) for v in node]
    return node
