"""galaxy_parts: one conv stack shared by the turned and mirrored corner parts of the image (after Dieleman 2015).

The input is turned by 0, 90, 180 and 270 degrees and the top-left part of
each turn is kept: four overlapping corner parts, each with the galaxy's
centre at its bottom-right corner; by default the mirror image's four too.
One stack of galaxy_cnn stages sees all eight (a batch eight times as
large), and the dense layers see their features side by side. Turning or
mirroring the input then only reorders the parts: the net shares what it
learns across orientations instead of learning each one from augmented
examples, which is what small data sets need. Eight parts of 5/8 of the
side cost about 3x one full view.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from galaxyprep import N_CLASSES

from . import InputShapeError, register_model
from .heads import output_head
from .galaxy_cnn import conv_stages


@keras.saving.register_keras_serializable(package="galaxytrain")
class RotatedCornerParts(keras.layers.Layer):
    """(B, S, S, C) -> (nB, P, P, C): the top-left P x P of the input turned by k x 90 degrees, part-major.

    n = 4 parts (k = 0..3), or 8 with ``flips``: then parts 4..7 are those
    of the input flipped left-right.
    """

    def __init__(self, part: int, flips: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.part = int(part)
        self.flips = bool(flips)

    @property
    def n_parts(self) -> int:
        return 8 if self.flips else 4

    def call(self, x):
        parts = []
        for image in ([x, ops.flip(x, axis=2)] if self.flips else [x]):
            for k in range(4):
                parts.append(image[:, : self.part, : self.part, :])
                image = ops.flip(ops.transpose(image, (0, 2, 1, 3)), axis=1)  # 90 degrees anticlockwise
        return ops.concatenate(parts, axis=0)

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else self.n_parts * input_shape[0]
        return (b, self.part, self.part, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "part": self.part, "flips": self.flips}


@keras.saving.register_keras_serializable(package="galaxytrain")
class ConcatParts(keras.layers.Layer):
    """(nB, F) in RotatedCornerParts' order -> (B, nF): each galaxy's n part features side by side."""

    def __init__(self, n_parts: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.n_parts = int(n_parts)

    def call(self, x):
        n, f = self.n_parts, x.shape[-1]
        x = ops.reshape(x, (n, -1, f))
        return ops.reshape(ops.transpose(x, (1, 0, 2)), (-1, n * f))

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.n_parts
        return (b, self.n_parts * input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n_parts": self.n_parts}


@keras.saving.register_keras_serializable(package="galaxytrain")
class Maxout(keras.layers.Layer):
    """(B, k*U) -> (B, U): the largest of each unit's k pieces (Goodfellow et al. 2013), as Dieleman's dense layers."""

    def __init__(self, pieces: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pieces = int(pieces)

    def call(self, x):
        units = x.shape[-1] // self.pieces
        return ops.max(ops.reshape(x, (-1, units, self.pieces)), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] // self.pieces)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


@register_model("galaxy_parts")
def build_galaxy_parts(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES,
                       part_fraction: float = 0.625, flips: bool = True,
                       widths: tuple[int, ...] = (32, 64, 128, 256),
                       convs: tuple[int, ...] = (1, 1, 2, 1), dense: int = 256, dropout: float = 0.25,
                       bn_momentum: float | None = None, dense_layers: int = 1, pieces: int = 1,
                       pool_padding: str = "valid", name: str = "galaxy_parts") -> keras.Model:
    """``part_fraction`` of the side per part (Dieleman: 45 of 69 px); ``flips``: the mirrored
    image's four parts too (8 in all); stages as in galaxy_cnn, without BatchNorm by default;
    ``dense_layers`` of ``dense`` units, ReLU, or maxout of ``pieces`` when more than 1;
    ``pool_padding`` as in `conv_stages`.

    The defaults were chosen on fit's validation split of the real images
    (12-epoch trials, bench/RESULTS.md): no BatchNorm beat BatchNorm, and 8
    parts beat 4.
    """
    if input_shape[0] != input_shape[1]:
        raise InputShapeError(f"galaxy_parts needs square images, got {input_shape[0]}x{input_shape[1]}")
    part = math.ceil(input_shape[0] * part_fraction)
    if part < 2 ** len(widths):
        raise InputShapeError(f"galaxy_parts with {len(widths)} stages needs parts of at least {2 ** len(widths)} "
                              f"pixels; {input_shape[0]} px images give {part} px parts")
    inputs = keras.Input(shape=input_shape, name="image")
    parts = RotatedCornerParts(part, flips=flips, name="parts")
    x = parts(inputs)
    x = conv_stages(x, widths, convs, bn_momentum, pool_padding)
    x = keras.layers.Flatten(name="flatten")(x)
    x = ConcatParts(parts.n_parts, name="concat_parts")(x)
    x = keras.layers.Dropout(dropout, name="drop1")(x)
    for i in range(1, dense_layers + 1):
        if pieces > 1:
            x = Maxout(pieces, name=f"maxout{i}")(keras.layers.Dense(dense * pieces, name=f"fc{i}")(x))
        else:
            x = keras.layers.Dense(dense, activation="relu", name=f"fc{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"drop{i + 1}")(x)
    outputs = output_head(x, head, outputs)
    return keras.Model(inputs, outputs, name=name)


@register_model("galaxy_parts_maxout")
def build_galaxy_parts_maxout(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES,
                              dropout: float = 0.25, **options) -> keras.Model:
    """galaxy_parts with Dieleman's dense part: two maxout layers of 2 pieces where galaxy_parts has one ReLU layer."""
    return build_galaxy_parts(input_shape, head, outputs, dropout=dropout, dense_layers=2, pieces=2,
                              name="galaxy_parts_maxout", **options)


@register_model("galaxy_parts_lite")
def build_galaxy_parts_lite(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES,
                            **options) -> keras.Model:
    """galaxy_parts with Dieleman's four convolutions (32, 64, 128, 128 filters, one per stage): 52% of the FLOPs.

    For CPUs that cannot train galaxy_parts' epochs in time. Measured on the
    bench holdout (bench/RESULTS.md), it lost more than galaxy_parts cut to
    the same time budget, so no recipe uses it.
    """
    options = {"widths": (32, 64, 128, 128), "convs": (1, 1, 1, 1), **options}
    return build_galaxy_parts(input_shape, head, outputs, name="galaxy_parts_lite", **options)


@register_model("galaxy_parts_centre")
def build_galaxy_parts_centre(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES,
                              **options) -> keras.Model:
    """galaxy_parts whose dense layer also sees the features next to the galaxy's centre.

    A 40 px part of a 64 px view reaches 8 px past the centre. Its last
    feature map is 5x5, and galaxy_parts' last pool keeps 2x2 of it: the
    row and column over the centre, computed at full cost, are dropped.
    Here that pool is padded (3x3 kept): the same convolutions, 2.25x the
    dense layer's weights (+1% FLOPs). Measured in the most accurate recipe
    (bench/RESULTS.md), its three scored 0.9% worse than galaxy_parts' (the
    convolutions before the pool already see the centre), so no recipe
    uses it.
    """
    options = {"pool_padding": "same", **options}
    return build_galaxy_parts(input_shape, head, outputs, name="galaxy_parts_centre", **options)
