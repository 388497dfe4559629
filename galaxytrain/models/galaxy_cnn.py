"""galaxy_cnn: a compact convolutional net for galaxy images, trainable on a CPU.

Stages of 3x3 convolutions ('same' padding, BatchNorm unless turned off, ReLU), each ending in a
2x2 max-pool that halves the image, widths doubling from stage to stage; then
flattening (or global average pooling), dropout, one dense layer and the
37-output head; with the decision-tree head its inputs pass through softplus
(see `output_head`). Meant for 48-80 px inputs of randomly rotated views
(fit's ``--augment rotate``) and the decision-tree head.
"""

from __future__ import annotations

import keras

from galaxyprep import N_CLASSES

from . import InputShapeError, register_model
from .heads import output_head


def _conv_relu(x, filters: int, name: str, momentum: float | None):
    if momentum is None:
        return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def conv_stages(x, widths: tuple[int, ...], convs: tuple[int, ...], bn_momentum: float | None,
                pool_padding: str = "valid"):
    """Stage s: ``convs[s]`` 3x3 conv-(BN-)ReLU blocks of ``widths[s]`` filters, then a 2x2 max-pool.

    ``bn_momentum`` None: no BatchNorm (convolutions with biases).
    ``pool_padding`` "valid" drops the last row and column of an odd-sized
    map (5 -> 2); "same" pools them alone (5 -> 3).
    """
    for s, (width, n) in enumerate(zip(widths, convs), start=1):
        for c in range(1, n + 1):
            x = _conv_relu(x, width, f"conv{s}_{c}", bn_momentum)
        x = keras.layers.MaxPooling2D(2, padding=pool_padding, name=f"pool{s}")(x)
    return x


@register_model("galaxy_cnn")
def build_galaxy_cnn(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES,
                     widths: tuple[int, ...] = (32, 64, 128, 256), convs: tuple[int, ...] = (1, 1, 2, 1),
                     dense: int = 256, dropout: float = 0.25, pool: str = "flatten",
                     bn_momentum: float | None = 0.9) -> keras.Model:
    """Stage s: ``convs[s]`` convolutions of ``widths[s]`` filters, then a 2x2 max-pool.

    ``pool``: "gap" averages the last feature map over the image; "flatten"
    keeps where each feature sits (e.g. centre against outskirts). BatchNorm's
    running statistics follow the weights faster than Keras' default (0.99):
    an epoch of these data sets is only ~70 batches. ``bn_momentum`` None:
    no BatchNorm, which trained better in 12-epoch trials (bench/RESULTS.md);
    BatchNorm stays the default so that earlier runs rebuild the same net.
    """
    if pool not in ("gap", "flatten"):
        raise ValueError(f"pool must be gap or flatten, got {pool!r}")
    if len(widths) != len(convs) or not widths:
        raise ValueError(f"widths and convs need one entry per stage, got {widths} and {convs}")
    min_size = 2 ** len(widths)
    if min(input_shape[:2]) < min_size:
        raise InputShapeError(f"galaxy_cnn with {len(widths)} stages needs images of at least "
                              f"{min_size}x{min_size} pixels, got {input_shape[0]}x{input_shape[1]}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_stages(inputs, widths, convs, bn_momentum)
    if pool == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="drop1")(x)
    x = keras.layers.Dense(dense, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="drop2")(x)
    outputs = output_head(x, head, outputs)
    return keras.Model(inputs, outputs, name="galaxy_cnn")
