"""VGG6: the student project's network, layer for layer.

Two 3x3 convolutions of 16, 2x2 max-pool, dropout 0.25, two 3x3 convolutions
of 32, 4x4 max-pool, dropout 0.25, dense 256, dropout 0.5, 37 outputs; ReLU
throughout; Keras' default 'valid' padding (the project set none). Trained
with binary cross-entropy and Adam (see `galaxytrain.fit`). It is kept as the
baseline that the toolkit's other models have to beat.
"""

from __future__ import annotations

import keras

from galaxyprep import N_CLASSES

from . import InputShapeError, register_model
from .heads import output_head


#: Two 'valid' 3x3 convs take 4 px, the 2x2 pool halves, two more take 4 px,
#: and the 4x4 pool needs 4 left: (S - 4) // 2 - 4 >= 4, so S >= 20.
MIN_INPUT_SIZE = 20


@register_model("vgg6")
def build_vgg6(input_shape: tuple[int, int, int], head: str = "sigmoid", outputs: int = N_CLASSES) -> keras.Model:
    """The student project's VGG6 for square RGB inputs of any size >= MIN_INPUT_SIZE."""
    if min(input_shape[:2]) < MIN_INPUT_SIZE:
        raise InputShapeError(f"vgg6 needs images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} "
                         f"pixels, got {input_shape[0]}x{input_shape[1]}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1_1")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1_2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Dropout(0.25, name="drop1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2_1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2_2")(x)
    x = keras.layers.MaxPooling2D(4, name="pool2")(x)
    x = keras.layers.Dropout(0.25, name="drop2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop3")(x)
    outputs = output_head(x, head, outputs)
    return keras.Model(inputs, outputs, name="vgg6")
