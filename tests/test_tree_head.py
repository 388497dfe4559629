"""The Keras tree head against the numpy reference ``galaxyprep.tree.normalize_tree``."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from galaxyprep.tree import QUESTION_SLICES, normalize_tree, tree_violation  # noqa: E402
from galaxytrain.models import GalaxyTreeHead, set_normalize  # noqa: E402
from galaxytrain.training.callbacks import EnableTreeNormalization  # noqa: E402


def _raw(n: int, seed: int, every_question_positive: bool = True) -> np.ndarray:
    """Random pre-activations; optionally with one positive entry per question, where the tree holds."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, size=(n, 37)).astype(np.float32)
    if every_question_positive:
        for sl in QUESTION_SLICES:
            cols = rng.integers(sl.start, sl.stop, size=n)
            z[np.arange(n), cols] = np.abs(z[np.arange(n), cols]) + 0.1
    return z


def _tiny_model(normalize: bool = True) -> keras.Model:
    inp = keras.Input((6,))
    x = keras.layers.Dense(37, kernel_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    return keras.Model(inp, GalaxyTreeHead(normalize=normalize, name="tree")(x))


def test_matches_numpy_reference_and_obeys_tree():
    z = _raw(256, 0)
    y = GalaxyTreeHead()(z).numpy()
    np.testing.assert_allclose(y, normalize_tree(z), atol=1e-6)
    assert tree_violation(y).max() < 1e-6
    assert y.min() >= 0.0 and y.max() <= 1.0 + 1e-6


def test_question_with_no_positive_input_gives_zeros_not_nan():
    z = _raw(64, 1, every_question_positive=False)
    z[:, QUESTION_SLICES[1]] = -1.0  # Q2 dead: all its outputs and those below it are 0
    y = GalaxyTreeHead()(z).numpy()
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, normalize_tree(z), atol=1e-6)
    assert np.all(y[:, QUESTION_SLICES[1]] == 0.0) and np.all(y[:, QUESTION_SLICES[2]] == 0.0)


def test_leaves_tree_consistent_vectors_unchanged():
    """Why relu is the unnormalised output: switching on keeps what was learnt."""
    y = normalize_tree(np.random.default_rng(2).random((50, 37)))
    np.testing.assert_allclose(GalaxyTreeHead()(y.astype(np.float32)).numpy(), y, atol=1e-5)


def _input_gradient(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(GalaxyTreeHead()(zv) * tf.constant(w))
    return tape.gradient(loss, zv).numpy()


def test_gradients_flow_to_inputs():
    rng = np.random.default_rng(4)
    z = rng.uniform(0.1, 2.0, size=(32, 37)).astype(np.float32)  # every unit alive
    w = rng.normal(size=(32, 37)).astype(np.float32)
    g = _input_gradient(z, w)
    assert np.all(np.isfinite(g))
    assert np.mean(g != 0.0) > 0.99
    # Against a central finite difference of the numpy reference.
    zd, wd = z.astype(np.float64), w.astype(np.float64)
    for i, j in zip(rng.integers(0, 32, 12), rng.integers(0, 37, 12)):
        up, down = zd.copy(), zd.copy()
        up[i, j] += 1e-4
        down[i, j] -= 1e-4
        fd = ((normalize_tree(up) * wd).sum() - (normalize_tree(down) * wd).sum()) / 2e-4
        assert g[i, j] == pytest.approx(fd, rel=1e-2, abs=1e-4)


def test_no_gradient_through_negative_inputs():
    z = _raw(32, 3, every_question_positive=False)
    g = _input_gradient(z, np.random.default_rng(5).normal(size=z.shape).astype(np.float32))
    assert np.all(np.isfinite(g))
    assert np.all(g[z < 0] == 0.0)
    assert np.any(g[z > 0] != 0.0)


def test_dead_question_gradients_are_finite():
    z = tf.Variable(-np.ones((4, 37), dtype=np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(GalaxyTreeHead()(z))
    g = tape.gradient(loss, z).numpy()
    assert np.all(np.isfinite(g)) and np.all(g == 0.0)


def test_switch_without_recompiling():
    model = _tiny_model()
    x = np.random.default_rng(6).normal(size=(20, 6)).astype(np.float32)
    raw = model.layers[1](x).numpy()
    on = model.predict(x, verbose=0)
    fn = model.predict_function
    assert set_normalize(model, False) == 1
    off = model.predict(x, verbose=0)
    assert model.predict_function is fn  # the same compiled function saw the new flag
    np.testing.assert_allclose(off, np.maximum(raw, 0), atol=1e-6)
    np.testing.assert_allclose(on, normalize_tree(raw), atol=1e-6)
    set_normalize(model, True)
    np.testing.assert_allclose(model.predict(x, verbose=0), on, atol=1e-7)
    with pytest.raises(ValueError):
        set_normalize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), True)


def test_callback_switches_on_at_epoch():
    model = _tiny_model()
    model.compile(optimizer="adam", loss="mse")
    head = model.get_layer("tree")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                seen.append(head.normalize)

    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = normalize_tree(rng.random((32, 37))).astype(np.float32)
    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0,
                     callbacks=[EnableTreeNormalization(at_epoch=2), Record()])
    assert seen == [False, False, True, True]
    assert head.normalize  # left on after training
    assert np.all(np.isfinite(hist.history["loss"]))
    # A resumed run past the switch epoch normalises from its first batch.
    set_normalize(model, False)
    seen.clear()
    model.fit(x, y, epochs=5, initial_epoch=3, batch_size=16, verbose=0,
              callbacks=[EnableTreeNormalization(at_epoch=2), Record()])
    assert seen == [True, True]


def test_nested_model_and_saving_roundtrip(tmp_path):
    inner = _tiny_model()
    outer = keras.Sequential([keras.Input((6,)), inner])
    assert set_normalize(outer, False) == 1
    x = np.random.default_rng(8).normal(size=(10, 6)).astype(np.float32)
    path = tmp_path / "tiny.keras"
    outer.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), outer.predict(x, verbose=0))
    set_normalize(outer, True)
    set_normalize(loaded, True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), outer.predict(x, verbose=0))
    cfg = loaded.layers[0].get_layer("tree").get_config()
    assert cfg["normalize"] is True and cfg["eps"] == 1e-12


def test_computes_in_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((6,))
        out = GalaxyTreeHead()(keras.layers.Dense(37)(inp))
        model = keras.Model(inp, out)
        y = model(np.zeros((3, 6), dtype=np.float32))  # every question dead: 0 / (0 + eps)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(y)))


def test_rejects_wrong_width():
    with pytest.raises(ValueError, match="37"):
        GalaxyTreeHead()(np.zeros((2, 36), dtype=np.float32))
