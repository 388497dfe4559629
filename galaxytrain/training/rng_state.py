"""The random state a resumed run needs to continue exactly as if it had never stopped.

Everything the loader draws is a function of (seed, epoch, batch), and the
weights and optimizer come back from last.keras. What Keras does not save is
the state of each layer's `SeedGenerator` (dropout masks): a loaded model
starts its generators afresh. Their states are therefore kept in state.json
at every epoch commit and put back on resume, so a run killed anywhere and
resumed gives the weights of the uninterrupted run, bit for bit on a CPU.
"""

from __future__ import annotations

import keras
import numpy as np

_STATE_SUFFIX = "seed_generator_state"


def _generator_states(model: keras.Model) -> list:
    # In the model's variable order, which a saved and reloaded model keeps; names may be
    # renumbered by Keras (seed_generator_3 ...) when other models live in the process.
    return [v for v in model.variables if v.path.endswith(_STATE_SUFFIX)]


def seed_generator_states(model: keras.Model) -> list[list[int]]:
    """Each SeedGenerator's [seed, counter], JSON-ready."""
    return [[int(x) for x in np.asarray(keras.ops.convert_to_numpy(v))] for v in _generator_states(model)]


def restore_seed_generator_states(model: keras.Model, states: list[list[int]] | None) -> bool:
    """Put saved states back; False (nothing changed) when there are none or they do not fit this model."""
    variables = _generator_states(model)
    if not states or len(states) != len(variables):
        return False
    for v, value in zip(variables, states):
        v.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(v.dtype)))
    return True
