"""The model registry and the student project's VGG6, layer for layer."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from galaxytrain.models import (
    InputShapeError,
    UnknownModelError,
    available_models,
    create_model,
    register_model,
)
from galaxytrain.models.heads import output_head
from galaxytrain.models.vgg6 import MIN_INPUT_SIZE

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# (class, filters/units/pool/rate, activation) of each layer after the input.
VGG6_LAYERS = [
    (keras.layers.Conv2D, 16, "relu"),
    (keras.layers.Conv2D, 16, "relu"),
    (keras.layers.MaxPooling2D, 2, None),
    (keras.layers.Dropout, 0.25, None),
    (keras.layers.Conv2D, 32, "relu"),
    (keras.layers.Conv2D, 32, "relu"),
    (keras.layers.MaxPooling2D, 4, None),
    (keras.layers.Dropout, 0.25, None),
    (keras.layers.Flatten, None, None),
    (keras.layers.Dense, 256, "relu"),
    (keras.layers.Dropout, 0.5, None),
    (keras.layers.Dense, 37, "sigmoid"),
]


def _describe(layer):
    if isinstance(layer, keras.layers.Conv2D):
        assert layer.kernel_size == (3, 3) and layer.padding == "valid" and layer.strides == (1, 1)
        return type(layer), layer.filters, layer.activation.__name__
    if isinstance(layer, keras.layers.MaxPooling2D):
        assert layer.pool_size[0] == layer.pool_size[1]
        return type(layer), layer.pool_size[0], None
    if isinstance(layer, keras.layers.Dropout):
        return type(layer), layer.rate, None
    if isinstance(layer, keras.layers.Dense):
        return type(layer), layer.units, layer.activation.__name__
    return type(layer), None, None


def _expected_params(size: int) -> int:
    """VGG6's parameter count from the layer arithmetic ('valid' convs, floor pools)."""
    s = (size - 4) // 2
    s = (s - 4) // 4
    conv = (3 * 9 * 16 + 16) + (16 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 9 * 32 + 32)
    flat = s * s * 32
    return conv + flat * 256 + 256 + 256 * 37 + 37


def test_registry_lists_vgg6_and_rejects_unknown_names():
    assert "vgg6" in available_models()
    with pytest.raises(UnknownModelError, match="vgg6"):  # the message lists what exists
        create_model("no-such-net", (32, 32, 3))
    with pytest.raises(ValueError, match="head"):
        create_model("vgg6", (32, 32, 3), head="softmax")


def test_register_model_adds_a_family_and_refuses_a_second_builder_for_a_name():
    @register_model("_test_tiny")
    def build(input_shape, head="sigmoid", outputs=37):
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, output_head(keras.layers.GlobalAveragePooling2D()(inputs), head, outputs))

    try:
        assert "_test_tiny" in available_models()
        assert create_model("_test_tiny", (8, 8, 3)).output_shape == (None, 37)
        assert create_model("_test_tiny", (8, 8, 3), outputs=5).output_shape == (None, 5)  # a file's own columns
        with pytest.raises(ValueError, match="the tree head gives the 37 Kaggle columns, not 5"):
            create_model("_test_tiny", (8, 8, 3), head="tree", outputs=5)
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_tiny")(lambda input_shape, head="sigmoid": None)
    finally:
        from galaxytrain import models

        models._REGISTRY.pop("_test_tiny", None)


@pytest.mark.parametrize("size", [96, 32])
def test_vgg6_is_the_student_projects_layer_sequence(size):
    model = create_model("vgg6", (size, size, 3))
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    assert [_describe(l) for l in layers] == VGG6_LAYERS
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, 37)
    assert model.count_params() == _expected_params(size)


def test_vgg6_parameter_count_at_96():
    assert create_model("vgg6", (96, 96, 3)).count_params() == 845_621


def test_vgg6_outputs_are_probabilities():
    model = create_model("vgg6", (32, 32, 3))
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (4, 37) and np.all((y >= 0) & (y <= 1))


def test_tree_head_replaces_the_sigmoid_by_a_softplus_dense_and_the_tree_layer():
    from galaxytrain.models import GalaxyTreeHead

    model = create_model("vgg6", (32, 32, 3), head="tree")
    dense, head = model.layers[-2], model.layers[-1]
    assert isinstance(dense, keras.layers.Dense) and dense.units == 37
    # Positive inputs: the tree layer's ReLU (and its unnormalised warm-up path) never cuts a gradient.
    assert dense.activation.__name__ == "softplus"
    assert isinstance(head, GalaxyTreeHead)
    body = [_describe(l) for l in model.layers[1:-2]]
    assert body == VGG6_LAYERS[:-1]
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (3, 37)
    assert np.all((y >= 0) & (y <= 1 + 1e-6))


def test_too_small_input_is_a_clear_error():
    create_model("vgg6", (MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3))  # the smallest that works
    with pytest.raises(InputShapeError, match=f"at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"):
        create_model("vgg6", (MIN_INPUT_SIZE - 1, MIN_INPUT_SIZE - 1, 3))


def test_mixed_precision_keeps_the_output_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for head in ("sigmoid", "tree"):
            model = create_model("vgg6", (32, 32, 3), head=head)
            assert model.layers[1].compute_dtype == "float16"
            assert model.layers[-1].compute_dtype == "float32"
            assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_galaxy_cnn_stages_pools_and_heads():
    model = create_model("galaxy_cnn", (64, 64, 3), head="tree")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 37)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [32, 64, 128, 128, 256]
    assert all(l.padding == "same" and not l.use_bias for l in convs)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers) == len(convs)
    # Four 2x2 pools: 64 -> 4, flattened with its place in the image kept.
    assert model.get_layer("flatten").output.shape[-1] == 4 * 4 * 256
    assert model.layers[-1].__class__.__name__ == "GalaxyTreeHead"
    # Positive values into the tree layer: its ReLU never cuts a gradient.
    assert model.get_layer("predictions_logits").activation.__name__ == "softplus"
    gap = create_model("galaxy_cnn", (48, 48, 3), pool="gap", widths=(8, 16), convs=(1, 1))
    assert gap.get_layer("gap").output.shape[-1] == 16
    out = np.asarray(gap(np.zeros((2, 48, 48, 3), np.float32)))
    assert out.shape == (2, 37) and np.all((out >= 0) & (out <= 1))
    with pytest.raises(InputShapeError, match="at least 16x16"):
        create_model("galaxy_cnn", (12, 12, 3))
    with pytest.raises(ValueError, match="pool"):
        create_model("galaxy_cnn", (64, 64, 3), pool="max")
    plain = create_model("galaxy_cnn", (32, 32, 3), widths=(8, 16), convs=(1, 2), bn_momentum=None)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in plain.layers)
    plain_convs = [l for l in plain.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(plain_convs) == 3 and all(l.use_bias and l.activation.__name__ == "relu" for l in plain_convs)


def test_galaxy_parts_are_the_turned_corners_of_the_input():
    from galaxytrain.models.galaxy_parts import ConcatParts, RotatedCornerParts

    x = np.random.default_rng(0).random((3, 10, 10, 3)).astype(np.float32)
    parts = np.asarray(RotatedCornerParts(7)(x))  # turns only
    assert parts.shape == (12, 7, 7, 3)
    for k in range(4):  # k-major: all galaxies' part k, then part k + 1
        np.testing.assert_array_equal(parts[3 * k: 3 * (k + 1)], np.rot90(x, k, axes=(1, 2))[:, :7, :7])
    # Each part has the image centre at its bottom-right corner: the four cover the image.
    np.testing.assert_array_equal(parts[3:6, 6, 6], np.rot90(x, 1, axes=(1, 2))[:, 6, 6])
    mirrored = np.asarray(RotatedCornerParts(7, flips=True)(x))
    assert mirrored.shape == (24, 7, 7, 3)
    np.testing.assert_array_equal(mirrored[:12], parts)
    for k in range(4):
        np.testing.assert_array_equal(mirrored[12 + 3 * k: 12 + 3 * (k + 1)],
                                      np.rot90(x[:, :, ::-1], k, axes=(1, 2))[:, :7, :7])
    feats = np.arange(4 * 3 * 2, dtype=np.float32).reshape(12, 2)  # part k of galaxy b: row 3k + b
    side = np.asarray(ConcatParts()(feats))
    np.testing.assert_array_equal(side[1], np.concatenate([feats[1], feats[4], feats[7], feats[10]]))


def test_galaxy_parts_turning_the_input_by_90_degrees_reorders_the_part_features(tmp_path):
    from galaxytrain.models.galaxy_parts import ConcatParts

    model = create_model("galaxy_parts", (32, 32, 3), head="tree", widths=(8, 16), convs=(1, 1), dense=16)
    assert model.output_shape == (None, 37)
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    features = keras.Model(model.input, model.get_layer("concat_parts").output)
    a = np.asarray(features(x)).reshape(2, 8, -1)
    turned = np.asarray(features(np.rot90(x, 1, axes=(1, 2)).copy())).reshape(2, 8, -1)
    # Part k of the turned image is part k + 1 of the original; of its mirror image, part k - 1.
    np.testing.assert_allclose(turned[:, :4], np.roll(a[:, :4], -1, axis=1), atol=1e-5)
    np.testing.assert_allclose(turned[:, 4:], np.roll(a[:, 4:], 1, axis=1), atol=1e-5)
    # Mirroring the input swaps the two sets of four.
    mirrored = np.asarray(features(x[:, :, ::-1].copy())).reshape(2, 8, -1)
    np.testing.assert_allclose(mirrored, np.concatenate([a[:, 4:], a[:, :4]], axis=1), atol=1e-5)
    out = np.asarray(model(x))
    assert out.shape == (2, 37) and np.all((out >= 0) & (out <= 1))
    assert isinstance(ConcatParts().compute_output_shape((8, 5)), tuple)
    path = tmp_path / "parts.keras"
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(x)), out, atol=1e-6)
    with pytest.raises(InputShapeError, match="parts of at least"):
        create_model("galaxy_parts", (20, 20, 3))


def test_a_saved_galaxy_parts_model_loads_in_a_fresh_process(tmp_path):
    """score and predict load models without importing the registry themselves: its custom layers must resolve."""
    import subprocess
    import sys

    path = tmp_path / "parts.keras"
    create_model("galaxy_parts", (32, 32, 3), head="tree", widths=(8, 16), convs=(1, 1), dense=8).save(path)
    code = (f"from galaxytrain.models import load_model; m = load_model({str(path)!r}, compile=False); "
            "print(m.get_layer('parts').n_parts)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "8"


def test_the_lite_variant_has_dielemans_four_convolutions_at_about_half_the_flops():
    from galaxytrain.models.cost import forward_flops

    lite = create_model("galaxy_parts_lite", (64, 64, 3), head="tree")
    convs = {layer.name: layer.filters for layer in lite.layers if isinstance(layer, keras.layers.Conv2D)}
    assert convs == {"conv1_1": 32, "conv2_1": 64, "conv3_1": 128, "conv4_1": 128}
    ratio = forward_flops(lite) / forward_flops(create_model("galaxy_parts", (64, 64, 3), head="tree"))
    assert 0.45 < ratio < 0.6


def test_the_centre_variant_keeps_the_last_row_and_column_of_features_at_the_same_convolutions():
    from galaxytrain.models.cost import forward_flops

    full = create_model("galaxy_parts", (64, 64, 3), head="tree")
    centre = create_model("galaxy_parts_centre", (64, 64, 3), head="tree")
    assert full.get_layer("pool4").output.shape[1:3] == (2, 2)  # 5x5 -> 2x2: the row over the centre dropped
    assert centre.get_layer("pool4").output.shape[1:3] == (3, 3)

    def convs(model):
        return [(layer.name, layer.kernel.shape) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]

    assert convs(centre) == convs(full)
    assert centre.get_layer("fc1").kernel.shape[0] == 8 * 9 * 256
    assert 1.0 < forward_flops(centre) / forward_flops(full) < 1.03


def test_maxout_keeps_the_largest_piece_of_each_unit_and_the_variant_saves(tmp_path):
    from galaxytrain.models.galaxy_parts import Maxout

    x = np.random.default_rng(0).normal(size=(5, 12)).astype("float32")
    want = x.reshape(5, 4, 3).max(axis=-1)  # unit u's pieces are columns 3u..3u+2
    np.testing.assert_array_equal(np.asarray(Maxout(3)(x)), want)
    model = create_model("galaxy_parts_maxout", (32, 32, 3), head="tree", widths=(8, 16), convs=(1, 1), dense=8)
    dense = [layer for layer in model.layers if layer.name in ("fc1", "fc2")]
    assert [layer.units for layer in dense] == [16, 16] and all(layer.activation.__name__ == "linear" for layer in dense)
    assert [layer.name for layer in model.layers if isinstance(layer, Maxout)] == ["maxout1", "maxout2"]
    path = tmp_path / "maxout.keras"
    model.save(path)
    image = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(image)), np.asarray(model(image)), atol=1e-6)
