"""What users reach for around fit, score and predict (issue 11): recipes that carry their data,
predicting straight from JPEGs, predictions as HDF5, help that reads, TensorBoard, progress."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from galaxyprep import CLASS_NAMES, Progress, read_info
from galaxyprep.cli import main as galaxyprep_main
from galaxyprep.synth import synthesize
from galaxytrain.cli import app
from galaxytrain.inference.predictions_file import read_predictions
from galaxytrain.recipes import get_recipe

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def train(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def prep(capsys, *args) -> int:
    try:
        galaxyprep_main([str(a) for a in args])
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    """Synthetic JPEGs, their file built by `--recipe best`, and a one-epoch best-recipe run on it."""
    root = tmp_path_factory.mktemp("best")
    data = synthesize(root / "data", 32, n_test=6, seed=4)
    train_h5 = root / "train.h5"
    galaxyprep_main_args = ["build", "--recipe", "best", "--images", str(data.train_images), "--labels",
                            str(data.labels_csv), "--out", str(train_h5), "-q"]
    with pytest.raises(SystemExit) as done:
        galaxyprep_main(galaxyprep_main_args)
    assert done.value.code == 0
    run = root / "run"
    fitted = train("fit", "--recipe", "best", "--data", train_h5, "--out", run, "--epochs", "1", "--batch-size", "8",
                   "--no-mixed-precision")
    assert fitted.exit_code == 0, fitted.output
    return data, train_h5, run


def test_build_recipe_takes_the_recipes_crop_and_size(best_run):
    _, train_h5, _ = best_run
    info = read_info(train_h5)
    recipe = get_recipe("best")
    assert (info.crop, info.size) == (recipe.crop, recipe.size) == (207, 69)


def test_fit_recipe_refuses_a_file_built_otherwise_and_prints_the_build_command(best_run, tmp_path, capsys):
    data, _, _ = best_run
    other = tmp_path / "other.h5"
    assert prep(capsys, "build", "--images", data.train_images, "--labels", data.labels_csv, "--crop", "200",
                "--size", "96", "--out", other, "-q") == 0
    refused = train("fit", "--recipe", "best", "--data", other, "--out", tmp_path / "r", "--epochs", "1")
    assert refused.exit_code == 1
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "--crop 200 --size 96" in line
    assert f"galaxyprep build --recipe best --images {data.train_images} --labels {data.labels_csv}" in line
    assert not (tmp_path / "r").exists()
    allowed = train("fit", "--recipe", "best", "--data", other, "--out", tmp_path / "r", "--epochs", "1",
                    "--batch-size", "8", "--no-mixed-precision", "--allow-other-build", "--limit", "16")
    assert allowed.exit_code == 0, allowed.output
    assert "--allow-other-build" in allowed.output and "cover 133 original pixels" in allowed.output


def test_score_and_predict_refuse_another_crop_and_default_to_the_recipes_views(best_run, tmp_path, capsys):
    data, train_h5, run = best_run
    other = tmp_path / "other.h5"  # the same size, another crop: the galaxies at another scale
    assert prep(capsys, "build", "--images", data.train_images, "--labels", data.labels_csv, "--crop", "180",
                "--size", "69", "--out", other, "-q") == 0
    for command in (("score", "--report", tmp_path / "r.json"), ("predict", "--out", tmp_path / "s.csv")):
        refused = train(command[0], "--run", run, "--data", other, *command[1:])
        assert refused.exit_code == 1 and "--crop 180" in refused.stderr and "--crop 207" in refused.stderr
    predicted = train("predict", "--run", run, "--data", train_h5, "--out", tmp_path / "s.csv")
    assert predicted.exit_code == 0 and "tta 16" in predicted.output  # the recipe's 16 views
    assert "tta 1)" in train("predict", "--run", run, "--data", train_h5, "--out", tmp_path / "s.csv",
                             "--tta", "1").output


def test_predict_from_jpegs_equals_predict_from_the_built_file(best_run, tmp_path, capsys):
    data, _, run = best_run
    test_h5 = tmp_path / "test.h5"
    assert prep(capsys, "build", "--recipe", "best", "--images", data.test_images, "--out", test_h5, "-q") == 0
    from_file = train("predict", "--run", run, "--data", test_h5, "--out", tmp_path / "a.csv", "--tta", "2")
    from_jpegs = train("predict", "--run", run, "--images", data.test_images, "--out", tmp_path / "b.csv",
                       "--tta", "2")
    assert from_file.exit_code == 0 and from_jpegs.exit_code == 0, from_jpegs.output
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert len(a) == 6 and list(a.columns) == ["GalaxyID", *CLASS_NAMES]
    pd.testing.assert_frame_equal(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".galaxytrain-")]  # the temporary build is gone
    neither = train("predict", "--run", run, "--out", tmp_path / "c.csv")
    assert neither.exit_code == 1 and "--data/--images" in neither.stderr


def test_predictions_as_hdf5_hold_ids_columns_and_the_spread_over_views(best_run, tmp_path):
    data, train_h5, run = best_run
    out = tmp_path / "p.h5"
    assert train("predict", "--run", run, "--data", train_h5, "--out", out, "--format", "hdf5",
                 "--tta", "8").exit_code == 0
    found = read_predictions(out)
    csv = tmp_path / "p.csv"
    assert train("predict", "--run", run, "--data", train_h5, "--out", csv, "--tta", "8").exit_code == 0
    table = pd.read_csv(csv)
    np.testing.assert_array_equal(found.ids, table["GalaxyID"].to_numpy())
    np.testing.assert_allclose(found.predictions, table[list(CLASS_NAMES)].to_numpy(), atol=5e-7)
    assert found.columns == list(CLASS_NAMES) and found.meta["tta"] == 8
    assert found.spread.shape == found.predictions.shape and found.spread.max() > 0  # views disagree a little
    one = tmp_path / "one.h5"
    assert train("predict", "--run", run, "--data", train_h5, "--out", one, "--format", "hdf5",
                 "--tta", "1").exit_code == 0
    assert read_predictions(one).spread is None
    refused = train("predict", "--run", run, "--data", train_h5, "--out", csv, "--format", "hdf5")
    assert refused.exit_code == 1 and "not a galaxytrain predictions file" in refused.stderr


def test_help_shows_every_default_once_and_the_version():
    fit_help = " ".join(train("fit", "--help").output.split())  # as read, whatever the wrapping
    assert "[default: 20]" in fit_help and "[default: vgg6]" in fit_help  # from FitConfig, not restated
    assert "Images per step; per replica under --strategy. [default: 64]" in fit_help
    assert "--loader-workers" in fit_help and "--workers" not in fit_help.replace("--loader-workers", "")
    score_help = " ".join(train("score", "--help").output.split())
    assert "JSON report to write. [default: <run>/report.json; --pretrained NAME: NAME-report.json here]" in score_help
    assert "Images per prediction call" in score_help
    version = train("--version")
    assert version.exit_code == 0 and version.output.startswith("galaxytrain ")


def test_tensorboard_gets_every_epochs_metrics_and_learning_rate(make_galaxy_file, tmp_path):
    import tensorflow as tf

    logs = tmp_path / "tb"
    fitted = train("fit", "--data", make_galaxy_file(n=32, size=24), "--out", tmp_path / "run", "--epochs", "2",
                   "--batch-size", "8", "--tensorboard", logs)
    assert fitted.exit_code == 0, fitted.output
    tags = {}
    for event_file in logs.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(event_file)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(event.step)
    assert {"epoch_loss", "epoch_rmse", "epoch_learning_rate"} <= set(tags), sorted(tags)
    assert tags["epoch_loss"] == {0, 1}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal_and_lines_in_a_log():
    log = io.StringIO()
    meter = Progress(1000, "build", stream=log, log_every=0.0)
    for done in (250, 500, 1000):
        meter.update(done)
    meter.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("build: 1,000/1,000 images (100.0%)") and "images/s" in lines[-1]
    screen = _Terminal()
    bar = Progress(1000, "epoch 1/3", stream=screen)
    bar.update(400)
    bar.close()
    assert "epoch 1/3" in screen.getvalue() and "400/1000" in screen.getvalue() and "images/s" in screen.getvalue()
