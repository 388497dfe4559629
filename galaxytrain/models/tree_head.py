"""The Galaxy Zoo decision tree as a Keras output layer (Dieleman 2015).

Per question: relu, divide by the sum (+1e-12), then multiply by the vote
fraction of the answer that leads to the question, parents first. The output
then obeys the tree by construction. Dieleman trained with the normalisation
switched off at first, because the network did not converge with it from
the start; here a non-trainable flag, saved with the model, switches it without
recompiling.

With the normalisation off the head outputs relu(z): the first step of the
normalised path, so a network that has learnt targets this way keeps them when
the normalisation comes on (the tree normalisation leaves a vector that already
obeys the tree unchanged). A sigmoid would not: it changes what z means at the
moment of the switch.
"""

from __future__ import annotations

import keras
from keras import ops

from galaxyprep import N_CLASSES, PARENT_COLUMN, QUESTION_SLICES, SCALING_ORDER

_N = N_CLASSES


def _question_of_column(col: int) -> int:
    for q, sl in enumerate(QUESTION_SLICES):
        if sl.start <= col < sl.stop:
            return q
    raise ValueError(col)


@keras.saving.register_keras_serializable(package="galaxytrain")
class GalaxyTreeHead(keras.layers.Layer):
    """37 raw outputs -> 37 vote fractions that obey the Galaxy Zoo tree.

    ``normalize``: the starting state of the switch (see ``set_normalize``).
    Always computes in float32, so that ``eps`` is representable under a
    mixed-precision policy.
    """

    def __init__(self, normalize: bool = True, eps: float = 1e-12, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_normalize = bool(normalize)
        self.eps = float(eps)
        self.normalize_flag = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(1.0 if normalize else 0.0),
            trainable=False,
            name="normalize",
            dtype="float32",
        )

    def build(self, input_shape):
        if input_shape[-1] != _N:
            raise ValueError(f"GalaxyTreeHead needs {_N} inputs, got shape {input_shape}")
        self.built = True

    @property
    def normalize(self) -> bool:
        """Whether the tree normalisation is on now."""
        return bool(keras.ops.convert_to_numpy(self.normalize_flag) > 0.5)

    def set_normalize(self, on: bool) -> None:
        self.normalize_flag.assign(1.0 if on else 0.0)

    def _tree(self, r):
        parts: dict[int, object] = {}
        for q in SCALING_ORDER:
            sl = QUESTION_SLICES[q]
            part = r[:, sl.start:sl.stop]
            part = part / (ops.sum(part, axis=-1, keepdims=True) + self.eps)
            col = PARENT_COLUMN[q]
            if col is not None:
                pq = _question_of_column(col)
                k = col - QUESTION_SLICES[pq].start
                part = part * parts[pq][:, k:k + 1]
            parts[q] = part
        return ops.concatenate([parts[q] for q in range(len(QUESTION_SLICES))], axis=-1)

    def call(self, inputs):
        r = ops.relu(inputs)
        return ops.where(self.normalize_flag > 0.5, self._tree(r), r)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"normalize": self.initial_normalize, "eps": self.eps})
        return config


def tree_heads(layer) -> list[GalaxyTreeHead]:
    if isinstance(layer, GalaxyTreeHead):
        return [layer]
    found = []
    for sub in getattr(layer, "layers", []):
        found.extend(tree_heads(sub))
    return found


def set_normalize(model: keras.Model, on: bool) -> int:
    """Switch the tree normalisation of every GalaxyTreeHead in ``model``; returns how many.

    Takes effect on the next batch, compiled or not: the flag is a variable.
    """
    heads = tree_heads(model)
    if not heads:
        raise ValueError("the model has no GalaxyTreeHead layer")
    for head in heads:
        head.set_normalize(on)
    return len(heads)
