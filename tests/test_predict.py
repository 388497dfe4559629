"""predict_file, the Kaggle submission file, test-time augmentation, and score."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest

from galaxyprep import CLASS_NAMES, GalaxyFile, InputError, read_info
from galaxytrain.data import Normalization, TestTimeViews
from galaxytrain.data.views import TTA_TURNS, TTA_VIEWS
from galaxytrain.evaluation import rmse
from galaxytrain.inference import predict_file, predict_submission, score_run, write_submission

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = 24


def _pixel_model(size: int = SIZE, scale: float = 1.0) -> keras.Model:
    """A deterministic, orientation-sensitive model: 37 fixed linear maps of the flattened image.

    Its outputs leave [0, 1], so clipping shows; rotating the image changes them,
    so test-time augmentation shows.
    """
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(37, name="out")
    model = keras.Model(inputs, dense(x))
    rng = np.random.default_rng(7)
    w = rng.normal(scale=scale / np.sqrt(size * size * 3), size=(size * size * 3, 37)).astype(np.float32)
    dense.set_weights([w, np.full(37, 0.5, dtype=np.float32)])
    return model


def _reference(model, images_u8, mean, std, views):
    """Plain numpy: normalize, transform, apply the model's linear map, average over views."""
    w, b = model.get_layer("out").get_weights()
    x = (images_u8.astype(np.float64) - mean) / std
    outs = []
    for k, mirrored in views:
        v = x[:, :, ::-1] if mirrored else x
        v = np.rot90(v, k=k, axes=(1, 2))
        outs.append(v.reshape(len(v), -1) @ w + b)
    return np.mean(outs, axis=0)


def _read(path):
    with GalaxyFile(path) as f:
        return f.images(0, f.n_images), f.ids, (f.labels() if f.has_labels else None)


@pytest.fixture
def run_dir(tmp_path):
    """A run directory with best.keras and a config.json whose training normalization is known."""
    run = tmp_path / "run"
    run.mkdir()
    _pixel_model().save(run / "best.keras")
    record = {"config": {"model": "pixel", "head": "sigmoid"},
              "data": {"path": "train.h5", "mean": [100.0, 110.0, 120.0], "std": [50.0, 60.0, 70.0]}}
    (run / "config.json").write_text(json.dumps(record))
    return run


@pytest.mark.parametrize("tta", [1, 2, 4, 8])
def test_test_time_views_are_the_listed_symmetries_in_order(tta):
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    views = TestTimeViews(5, tta)(x).reshape(tta, 2, 5, 5, 3)
    # TTA_VIEWS lists (quarter turns, mirrored): mirror the columns first, then turn.
    reference = [np.rot90(np.flip(x, axis=2) if m else x, k, axes=(1, 2)) for k, m in TTA_VIEWS[tta]]
    np.testing.assert_array_equal(views, np.stack(reference))
    assert len({v.tobytes() for v in views}) == tta


def test_test_time_views_refuse_other_counts():
    with pytest.raises(InputError, match="--tta"):
        TestTimeViews(5, 3)


@pytest.mark.parametrize("tta", [1, 2, 4, 8])
def test_predict_file_matches_numpy_reference(make_galaxy_file, tta):
    path = make_galaxy_file(n=21, size=SIZE, labels=False, first_id=5000)
    images, ids, _ = _read(path)
    info = read_info(path)
    model = _pixel_model()
    got_ids, preds = predict_file(model, path, tta=tta, batch_size=8)
    np.testing.assert_array_equal(got_ids, ids)
    expected = _reference(model, images, info.mean, info.std, TTA_VIEWS[tta])
    np.testing.assert_allclose(preds, expected, atol=2e-5)
    if tta > 1:  # the views really were averaged: this model is not symmetric
        plain = _reference(model, images, info.mean, info.std, TTA_VIEWS[1])
        assert np.abs(plain - expected).max() > 1e-3


def test_predict_file_uses_the_given_normalization(make_galaxy_file):
    path = make_galaxy_file(n=5, size=SIZE, labels=False)
    images, _, _ = _read(path)
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([40.0, 50.0, 60.0])
    model = _pixel_model()
    _, preds = predict_file(model, path, normalization=Normalization(mean, std))
    np.testing.assert_allclose(preds, _reference(model, images, mean, std, TTA_VIEWS[1]), atol=2e-5)


def test_predict_writes_the_exact_kaggle_format_clipped(make_galaxy_file, run_dir, tmp_path):
    # IDs not ascending in position order would be a bug; the file holds them ascending.
    path = make_galaxy_file(n=30, size=SIZE, labels=False, first_id=200000, name="test.h5")
    images, ids, _ = _read(path)
    out = tmp_path / "sub" / "submission.csv"
    predict_submission(run_dir, path, out, tta=1, batch_size=7, log=lambda s: None)
    lines = out.read_text().splitlines()
    assert lines[0] == "GalaxyID," + ",".join(CLASS_NAMES)
    assert len(lines) == 31
    table = pd.read_csv(out)
    assert list(table.columns) == ["GalaxyID", *CLASS_NAMES]
    np.testing.assert_array_equal(table["GalaxyID"].to_numpy(), ids)
    values = table[list(CLASS_NAMES)].to_numpy()
    raw = _reference(_pixel_model(), images, np.array([100.0, 110.0, 120.0]), np.array([50.0, 60.0, 70.0]),
                     TTA_VIEWS[1])
    assert raw.min() < 0 and raw.max() > 1  # the test means something
    np.testing.assert_allclose(values, np.clip(raw, 0, 1), atol=2e-5)
    assert not list(out.parent.glob(".*partial"))


def test_write_submission_rejects_wrong_shapes(tmp_path):
    with pytest.raises(ValueError):
        write_submission(tmp_path / "s.csv", np.arange(3), np.zeros((3, 36)))
    assert not (tmp_path / "s.csv").exists()


def test_score_writes_json_with_the_rmse_of_the_predictions(make_galaxy_file, run_dir, tmp_path):
    path = make_galaxy_file(n=40, size=SIZE, labels=True, name="holdout.h5")
    _, _, labels = _read(path)
    report_path = tmp_path / "out" / "report.json"
    printed = []
    report = score_run(run_dir, path, report_path, tta=2, batch_size=16, log=printed.append)
    saved = json.loads(report_path.read_text())
    from galaxytrain.inference import load_run

    trained = load_run(run_dir)
    _, preds = predict_file(trained.model, path, tta=2, normalization=trained.normalization)
    expected = rmse(labels, np.clip(preds, 0, 1))
    assert saved["rmse"] == pytest.approx(expected, rel=1e-6) == report["rmse"]
    assert saved["meta"]["tta"] == 2 and saved["meta"]["n_images"] == 40
    assert saved["meta"]["run"] == str(run_dir)
    assert any("RMSE" in line for line in printed)
    plots = report_path.parent / "report_plots"
    assert plots.is_dir() and any(plots.glob("*.png"))


def test_several_runs_are_averaged_as_an_ensemble(make_galaxy_file, run_dir, tmp_path):
    from typer.testing import CliRunner

    from galaxytrain.cli import app

    other = tmp_path / "other"
    other.mkdir()
    _pixel_model(scale=3.0).save(other / "best.keras")
    (other / "config.json").write_text((run_dir / "config.json").read_text())
    path = make_galaxy_file(n=20, size=SIZE, labels=True, name="holdout.h5")
    images, ids, labels = _read(path)
    mean, std = np.array([100.0, 110.0, 120.0]), np.array([50.0, 60.0, 70.0])
    expected = (_reference(_pixel_model(), images, mean, std, TTA_VIEWS[2])
                + _reference(_pixel_model(scale=3.0), images, mean, std, TTA_VIEWS[2])) / 2
    out = tmp_path / "ens.csv"
    result = CliRunner().invoke(app, ["predict", "--run", str(run_dir), "--run", str(other), "--data", str(path),
                                      "--out", str(out), "--tta", "2"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(pd.read_csv(out)[list(CLASS_NAMES)].to_numpy(), np.clip(expected, 0, 1), atol=2e-5)
    report = score_run([run_dir, other], path, tmp_path / "r.json", tta=2, log=lambda s: None)
    assert report["rmse"] == pytest.approx(rmse(labels, np.clip(expected, 0, 1)), rel=1e-5)
    assert report["meta"]["ensemble"] == [str(run_dir / "best.keras"), str(other / "best.keras")]


def test_score_and_predict_refuse_bad_inputs(make_galaxy_file, run_dir, tmp_path):
    unlabeled = make_galaxy_file(n=6, size=SIZE, labels=False, name="test.h5")
    with pytest.raises(InputError, match="no labels"):
        score_run(run_dir, unlabeled, tmp_path / "r.json", log=lambda s: None)
    other_size = make_galaxy_file(n=6, size=SIZE + 8, labels=False, name="big.h5")
    with pytest.raises(InputError, match=f"{SIZE + 8}x{SIZE + 8}x3 but the model takes {SIZE}x{SIZE}x3"):
        predict_submission(run_dir, other_size, tmp_path / "s.csv", log=lambda s: None)
    with pytest.raises(InputError, match="no such run directory"):
        predict_submission(tmp_path / "nowhere", unlabeled, tmp_path / "s.csv", log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no best.keras"):
        predict_submission(tmp_path / "empty", unlabeled, tmp_path / "s.csv", log=lambda s: None)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.h5"):
        predict_submission(run_dir, junk, tmp_path / "s.csv", log=lambda s: None)
    with pytest.raises(InputError, match="--tta"):
        predict_submission(run_dir, unlabeled, tmp_path / "s.csv", tta=3, log=lambda s: None)
    assert not (tmp_path / "s.csv").exists()


def _turned_reference(model, images_u8, mean, std, turns, size):
    """Numpy: the centre (or turned) view of each stored image, then the 8 dihedral views, averaged."""
    from test_augment import rotate_zoom_reference

    outs = []
    for turn in turns:
        views = np.stack([rotate_zoom_reference(im, turn, 1.0, 0.0, 0.0, False, size) for im in images_u8])
        outs.append(_reference(model, views, mean, std, TTA_VIEWS[8]))
    return np.mean(outs, axis=0)


@pytest.mark.parametrize("tta", [16, 24, 32])
def test_rotated_test_time_views_match_numpy_reference(make_galaxy_file, tta):

    path = make_galaxy_file(n=11, size=SIZE, labels=False)
    images, _, _ = _read(path)
    info = read_info(path)
    model = _pixel_model()
    _, preds = predict_file(model, path, tta=tta, batch_size=4)
    assert len(TTA_TURNS[tta]) * 8 == tta
    expected = _turned_reference(model, images, info.mean, info.std, TTA_TURNS[tta], SIZE)
    # The kernel and the reference may round a pixel differently now and then: far below a view's effect.
    np.testing.assert_allclose(preds, expected, atol=2e-4)
    _, eight = predict_file(model, path, tta=8, batch_size=4)
    assert np.abs(preds - eight).max() > 1e-2


@pytest.mark.parametrize("stored", [SIZE + 6, SIZE + 5])
def test_a_model_trained_on_views_predicts_from_the_centre_view(make_galaxy_file, stored):
    path = make_galaxy_file(n=9, size=stored, labels=False)
    images, _, _ = _read(path)
    info = read_info(path)
    model = _pixel_model()  # takes SIZE x SIZE
    for tta in (1, 8, 16):
        _, preds = predict_file(model, path, tta=tta, batch_size=4, source_size=stored)
        turns = (0.0,) if tta <= 8 else (0.0, 45.0)
        if tta == 1:
            from test_augment import rotate_zoom_reference

            centre = np.stack([rotate_zoom_reference(im, 0.0, 1.0, 0.0, 0.0, False, SIZE) for im in images])
            if stored % 2 == SIZE % 2:  # a whole-pixel margin: the plain middle of the image
                m = (stored - SIZE) // 2
                np.testing.assert_array_equal(centre, images[:, m:m + SIZE, m:m + SIZE])
            expected = _reference(model, centre, info.mean, info.std, TTA_VIEWS[1])
        else:
            expected = _turned_reference(model, images, info.mean, info.std, turns, SIZE)
        np.testing.assert_allclose(preds, expected, atol=2e-4)
    # Trained from another stored size (or nobody says): the file does not fit the model.
    for source in (None, stored + 1):
        with pytest.raises(InputError, match=f"but the model takes {SIZE}x{SIZE}x3"):
            predict_file(model, path, source_size=source)


def test_load_run_switches_the_tree_normalisation_on(tmp_path):
    from galaxyprep import normalize_tree
    from galaxytrain.models import create_model
    from galaxytrain.inference import load_run
    from galaxytrain.models import set_normalize

    model = create_model("vgg6", (SIZE, SIZE, 3), head="tree")
    set_normalize(model, False)  # as a checkpoint of a warm-up epoch was saved
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    x = np.random.default_rng(0).normal(size=(16, SIZE, SIZE, 3)).astype(np.float32)
    raw = np.asarray(keras.models.load_model(run / "best.keras")(x))
    loaded = np.asarray(load_run(run).model(x))
    assert np.abs(loaded - raw).max() > 1e-3  # the switch made a difference
    np.testing.assert_allclose(loaded, normalize_tree(raw), atol=1e-5)
