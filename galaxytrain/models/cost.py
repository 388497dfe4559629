"""What a model costs to run: floating-point operations per image, counted from the model itself.

Only Conv2D and Dense layers are counted (2 FLOPs per multiply-add, the
usual convention); pooling, activations, biases and the head's normalisation
add well under 1%. Shapes are read with a batch of one image pushed through
the model, so a layer that sees more rows than images (galaxy_parts' eight
parts per galaxy) counts every row. A training step is taken as three
forward passes: the backward pass of a convolution or matmul costs two (one
for the input's gradient, one for the weights').
"""

from __future__ import annotations

import keras
import numpy as np

#: Forward + backward of conv and dense layers, in forward passes.
TRAINING_PASSES = 3


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through `model`'s Conv2D and Dense layers."""
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    if not layers:
        return 0
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    image = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    outputs = probe([image], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0
    for layer, out in zip(layers, outputs):
        positions = int(np.prod(out.shape[:-1]))  # rows x output pixels
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            fan_in = kh * kw * int(layer.kernel.shape[-2]) // int(layer.groups)
        else:
            fan_in = int(layer.kernel.shape[0])
        total += 2 * positions * fan_in * int(out.shape[-1])
    return total


def training_flops(model: keras.Model) -> int:
    """FLOPs of one image in a training step (forward and backward)."""
    return TRAINING_PASSES * forward_flops(model)
