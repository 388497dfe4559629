"""Weight averaging (--ema) and colour noise (--colour-noise): what is validated is what is kept, and
the noise is the plain formula, on real pixels."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from galaxyprep import GalaxyFile, InputError
from galaxytrain.config import FitConfig
from galaxytrain.data import ColourNoise, GalaxyBatches, Normalization, RotatedView, colour_axes
from galaxytrain.evaluation import rmse
from galaxytrain.models import load_model
from galaxytrain.training import fit
from galaxytrain.training.schedule import averaged_weights

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _config(data, out, **kw):
    base = dict(epochs=3, batch_size=16, progress=False, model="galaxy_cnn", head="tree", loss="mse")
    base.update(kw)
    return FitConfig(data=data, out=out, **base)


@pytest.fixture
def tiny(make_galaxy_file):
    return make_galaxy_file(n=96, size=24, seed=3)


def colour_axes_reference(images: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy: the covariance of the normalized pixels' RGB, and its eigen-decomposition."""
    x = (images.reshape(-1, 3).astype(np.float64) - mean) / std
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / (len(x) - 1)
    return cov, np.linalg.eigvalsh(cov)


def _real_or_random_images(shared_gz_or_none) -> np.ndarray:
    if shared_gz_or_none is None:
        return np.random.default_rng(0).integers(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    from PIL import Image

    paths = sorted((shared_gz_or_none / "images").glob("*.jpg"))[:8]
    return np.stack([np.asarray(Image.open(p).convert("RGB"))[112:312, 112:312] for p in paths])


@pytest.mark.parametrize("real", [False, True])
def test_colour_axes_span_the_pixels_covariance_on_real_galaxies(real, request):
    shared = request.getfixturevalue("shared_gz") if real else None
    images = _real_or_random_images(shared)
    mean = images.reshape(-1, 3).mean(axis=0)
    std = images.reshape(-1, 3).std(axis=0)
    axes = colour_axes(images, Normalization(mean, std))
    cov, eigenvalues = colour_axes_reference(images, mean, std)
    # Columns: orthogonal directions whose squared lengths are the covariance's eigenvalues...
    np.testing.assert_allclose(np.sort(np.sum(axes ** 2, axis=0)), eigenvalues, rtol=1e-4, atol=1e-9)
    gram = axes.T @ axes
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-5 * eigenvalues.max())
    # ...which together rebuild it.
    np.testing.assert_allclose(axes @ axes.T, cov, rtol=1e-4, atol=1e-6 * eigenvalues.max())


def test_colour_noise_moves_each_image_as_a_whole_by_the_formula():
    rng = np.random.default_rng(5)
    axes = np.linalg.qr(rng.normal(size=(3, 3)))[0] * np.array([0.9, 0.3, 0.05])
    x = rng.normal(size=(4, 6, 6, 3)).astype(np.float32)
    out = ColourNoise(axes, 0.5)(x.copy(), np.random.default_rng(11))
    alpha = np.random.default_rng(11).normal(0.0, 0.5, (4, 3))
    expected = x + (alpha @ axes.T)[:, None, None, :]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    # sigma 0 leaves the batch as it was.
    np.testing.assert_array_equal(ColourNoise(axes, 0.0)(x.copy(), np.random.default_rng(1)), x)


def test_a_batch_with_colour_noise_has_the_same_views_shifted_per_image(tiny):
    with GalaxyFile(tiny) as f:
        axes = colour_axes(f.images(0, 32), Normalization(*f.normalization))
    view = RotatedView(20)
    plain = GalaxyBatches(tiny, batch_size=16, seed=4, view=view)
    noisy = GalaxyBatches(tiny, batch_size=16, seed=4, view=view, colour=ColourNoise(axes, 0.3))
    (x0, y0), (x1, y1) = plain[1], noisy[1]
    np.testing.assert_array_equal(y0, y1)
    shift = (x1 - x0).reshape(len(x0), -1, 3)
    np.testing.assert_allclose(shift, shift[:, :1, :].repeat(shift.shape[1], axis=1), atol=1e-5)
    assert np.abs(shift[:, 0, :]).max() > 1e-3  # it moved
    with pytest.raises(ValueError, match="normalized"):
        GalaxyBatches(tiny, batch_size=16, normalize=False, colour=ColourNoise(axes, 0.3))


def test_best_keras_holds_the_averaged_weights_that_were_validated(tiny, tmp_path):
    from galaxytrain.training.data_record import prepare_data

    config = _config(tiny, tmp_path / "run", ema=0.9, epochs=1, mixed_precision=False)
    result = fit(config, log=lambda s: None)
    best = load_model(tmp_path / "run" / "best.keras")
    last = load_model(tmp_path / "run" / "last.keras")
    # best.keras' RMSE on fit's validation rows is the history's val_rmse: it is what was validated.
    with GalaxyFile(tiny) as f:
        rows = np.sort(prepare_data(config, f).val_rows)
        y = f.labels()[rows]
    val = GalaxyBatches(tiny, rows, batch_size=16, shuffle=False)
    assert rmse(best.predict(val, verbose=0), y) == pytest.approx(result.history[0]["val_rmse"], rel=1e-4)
    # It is the average that last.keras' optimizer keeps, not last.keras' trained weights.
    trained = [w.copy() for w in last.get_weights()]
    with averaged_weights(last):
        averaged = [w.copy() for w in last.get_weights()]
    for a, b in zip(best.get_weights(), averaged):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(averaged, trained))
    # After the block the model holds its trained weights again, bit for bit.
    for a, b in zip(last.get_weights(), trained):
        np.testing.assert_array_equal(a, b)


def test_colour_noise_is_recorded_and_new_options_are_checked(tiny, tmp_path):
    import json

    fit(_config(tiny, tmp_path / "run", epochs=1, augment="rotate", input_size=20, colour_noise=0.2),
        log=lambda s: None)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["colour_noise"] == 0.2 and np.asarray(record["colour_axes"]).shape == (3, 3)
    for bad in (dict(ema=1.0), dict(ema=-0.1), dict(ema=float("nan")), dict(colour_noise=-1.0),
                dict(colour_noise=float("inf"))):
        with pytest.raises(InputError, match="--ema|--colour-noise"):
            _config(tiny, tmp_path / "x", **bad).check()
    # Another --ema is another run: refused on resume.
    with pytest.raises(InputError, match="ema"):
        fit(_config(tiny, tmp_path / "run", epochs=2, augment="rotate", input_size=20, colour_noise=0.2,
                    ema=0.9), log=lambda s: None)


def test_dropout_sets_the_dense_layers_rate_where_a_model_has_them(tiny, tmp_path):
    from galaxytrain.training.fit import build_model

    for name in ("galaxy_cnn", "galaxy_parts"):
        model = build_model(_config(tiny, tmp_path / "x", model=name, dropout=0.5), 32)
        rates = [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"]
        assert rates and all(r == 0.5 for r in rates)
        default = build_model(_config(tiny, tmp_path / "x", model=name), 32)
        assert all(layer.rate == 0.25 for layer in default.layers if layer.__class__.__name__ == "Dropout")
    with pytest.raises(InputError, match="vgg6 has no dropout"):
        build_model(_config(tiny, tmp_path / "x", model="vgg6", head="sigmoid", dropout=0.5), 24)
    for bad in (1.0, -0.1):
        with pytest.raises(InputError, match="--dropout"):
            _config(tiny, tmp_path / "x", dropout=bad).check()
