"""The output head every model family ends in: one sigmoid per label column, or the Kaggle decision tree."""

from __future__ import annotations

import keras

from galaxyprep import N_CLASSES

from ..choices import HEADS, Head
from .tree_head import GalaxyTreeHead


def output_head(x, head: Head, outputs: int = N_CLASSES, name: str = "predictions", softplus_logits: bool = True):
    """Dense(outputs) then sigmoid, or Dense(37) then the decision-tree normalisation (the 37 Kaggle columns only).

    ``softplus_logits`` (tree head): the 37 values entering the tree layer
    pass through softplus, so they stay positive and the layer's ReLU never
    cuts a gradient. With plain logits an answer (or a whole question) whose
    value goes negative gets no gradient and can stay dead for many epochs,
    and the unnormalised warm-up path (ReLU alone) can die entirely (it did:
    vgg6 with a tree warm-up gave all-zero outputs from the first epoch), so
    softplus is the default for every model.
    Kept in float32 so that a mixed_float16 network still produces float32
    outputs for the loss (the Keras mixed-precision rule for the last layer).
    """
    if head == "sigmoid":
        return keras.layers.Dense(outputs, activation="sigmoid", dtype="float32", name=name)(x)
    if head == "tree":
        if outputs != N_CLASSES:
            raise ValueError(f"the tree head gives the 37 Kaggle columns, not {outputs}")
        z = keras.layers.Dense(N_CLASSES, activation="softplus" if softplus_logits else None, dtype="float32",
                               name=f"{name}_logits")(x)
        return GalaxyTreeHead(dtype="float32", name=name)(z)
    raise ValueError(f"unknown head {head!r}; available: {', '.join(HEADS)}")
