"""The closed lists of names that options take, each stated once.

The CLI's options, `FitConfig.check`, the data pipeline and the model
registry all read these, so a new choice is added in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

Augment = Literal["none", "dihedral", "rotate"]
Head = Literal["sigmoid", "tree"]
Loss = Literal["bce", "mse"]
LrSchedule = Literal["constant", "cosine", "step"]
OutputFormat = Literal["csv", "hdf5"]
#: none: one process, one device; mirrored: the GPUs (or logical CPUs) of this machine;
#: multi-worker: the processes TF_CONFIG lists, each with its own device(s).
Strategy = Literal["none", "mirrored", "multi-worker"]

AUGMENTS: tuple[str, ...] = get_args(Augment)
HEADS: tuple[str, ...] = get_args(Head)
LOSSES: tuple[str, ...] = get_args(Loss)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
STRATEGIES: tuple[str, ...] = get_args(Strategy)

#: Keras' names of the losses.
KERAS_LOSSES: dict[str, str] = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}
