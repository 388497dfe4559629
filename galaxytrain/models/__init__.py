"""Models by name: a registry that the CLI, fit and the tests share.

A model family is a function ``build(input_shape, head, outputs) -> keras.Model``
registered under a name with `register_model`. Every family ends in the same
head (`output_head`: one output per label column of the training file, the
37 Kaggle columns by default) so that loss, metrics and submission code
never depend on which network produced the numbers.
"""

from __future__ import annotations

from typing import Callable

import keras

from galaxyprep import N_CLASSES

from ..choices import HEADS, Head
from .heads import output_head

ModelBuilder = Callable[..., keras.Model]

_REGISTRY: dict[str, ModelBuilder] = {}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


class InputShapeError(ValueError):
    """An input shape that a model family cannot take (too small, not RGB)."""


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make ``create_model(name, ...)`` call the decorated builder."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str) -> ModelBuilder:
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """The keyword arguments a family takes beyond shape, head and outputs (e.g. "dropout")."""
    import inspect

    return [p for p in inspect.signature(_builder(name)).parameters if p not in ("input_shape", "head", "outputs")]


def create_model(name: str, input_shape: tuple[int, int, int], *, head: Head = "sigmoid",
                 outputs: int = N_CLASSES, **kw) -> keras.Model:
    """Build an uncompiled model; head is "sigmoid" (`outputs` sigmoids) or "tree" (GalaxyTreeHead, 37 outputs)."""
    builder = _builder(name)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; available: {', '.join(HEADS)}")
    if head == "tree" and outputs != N_CLASSES:
        raise ValueError(f"the tree head gives the 37 Kaggle columns, not {outputs} outputs")
    return builder(tuple(int(v) for v in input_shape), head=head, outputs=int(outputs), **kw)


# Importing a family registers it (and its custom layers, for loading).
from . import galaxy_cnn, galaxy_parts, vgg6  # noqa: E402,F401
from .io import load_model, load_model_for_prediction, saved_policy  # noqa: E402
from .tree_head import GalaxyTreeHead, set_normalize  # noqa: E402

__all__ = ["GalaxyTreeHead", "InputShapeError", "UnknownModelError", "available_models", "create_model",
           "load_model", "load_model_for_prediction", "model_options", "output_head", "register_model", "saved_policy",
           "set_normalize"]
