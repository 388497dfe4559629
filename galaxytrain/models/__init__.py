"""Models by name: a registry that the CLI, fit and the tests share.

A model family is a function ``build(input_shape, head) -> keras.Model``
registered under a name with `register_model`. Every family ends in the same
37-output head so that loss, metrics and submission code never depend on
which network produced the numbers.
"""

from __future__ import annotations

from typing import Callable

import keras

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


def create_model(name: str, input_shape: tuple[int, int, int], *, head: Head = "sigmoid",
                 **kw) -> keras.Model:
    """Build an uncompiled model; head is "sigmoid" (37 sigmoids) or "tree" (GalaxyTreeHead)."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; available: {', '.join(HEADS)}")
    return _REGISTRY[name](tuple(int(v) for v in input_shape), head=head, **kw)


# Importing a family registers it (and its custom layers, for loading).
from . import galaxy_cnn, galaxy_parts, vgg6  # noqa: E402,F401
from .io import load_model, load_model_for_prediction, saved_policy  # noqa: E402
from .tree_head import GalaxyTreeHead, set_normalize  # noqa: E402

__all__ = ["GalaxyTreeHead", "InputShapeError", "UnknownModelError", "available_models", "create_model",
           "load_model", "load_model_for_prediction", "output_head", "register_model", "saved_policy",
           "set_normalize"]
