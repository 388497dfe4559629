"""One's own label columns (build, fit, score, predict) and fine-tuning a trained model on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import galaxyprep
import galaxytrain
from galaxyprep import GalaxyFile, InputError
from galaxytrain.evaluation import rmse
from galaxytrain.inference import predict_submission, score_run
from galaxytrain.inference.predictions_file import read_predictions
from galaxytrain.models import load_model
from galaxytrain.training.finetune import encoder_scales, resolve_finetune_config

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CROP, SIZE = 100, 24


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Synthetic JPEGs with Kaggle labels, the same galaxies with two columns of one's own, and a Kaggle run."""
    from galaxyprep.synth import synthesize

    root = tmp_path_factory.mktemp("own")
    syn = synthesize(root / "synth", 96, n_test=8, seed=4, size=128)
    kaggle = pd.read_csv(syn.labels_csv)
    table = pd.DataFrame({"GalaxyID": kaggle["GalaxyID"], "smooth": kaggle["Class1.1"].round(6),
                          "has_bar": (kaggle["Class1.2"] > 0.4).astype(int)})
    csv = root / "own.csv"
    table.to_csv(csv, index=False)
    data = root / "own.h5"
    galaxyprep.build(syn.train_images, data, csv, crop=CROP, size=SIZE)
    kaggle_file = root / "kaggle.h5"
    galaxyprep.build(syn.train_images, kaggle_file, syn.labels_csv, crop=CROP, size=SIZE)
    start = root / "start"
    galaxytrain.fit(kaggle_file, start, model="galaxy_cnn", head="tree", loss="mse", epochs=1, batch_size=16,
                    input_size=20, augment="rotate", log=lambda s: None)
    return syn, table, data, kaggle_file, start, root


def test_a_file_of_own_columns_records_them_and_their_kinds(own):
    syn, table, data, *_ = own
    with GalaxyFile(data) as f:
        schema = f.label_schema
        assert schema.columns == ("smooth", "has_bar") and schema.kinds == ("fraction", "binary")
        assert not schema.is_tree
        labels = f.checked_labels()
        want = table.set_index("GalaxyID").loc[f.ids]
        np.testing.assert_array_equal(labels, want.to_numpy(np.float32))
        assert "2 own columns: smooth (fraction), has_bar (0/1)" in f.info.label_schema.describe()


def test_a_cluster_build_and_info_keep_the_columns(own, tmp_path):
    from typer.testing import CliRunner

    from galaxyprep.cli import app as prep_app

    syn, table, data, *_ = own
    root = data.parent
    out = tmp_path / "virtual.h5"
    galaxyprep.build(syn.train_images, out, root / "own.csv", crop=CROP, size=SIZE, scheduler="local", workers=2,
                     shard_images=40)
    with GalaxyFile(out) as v, GalaxyFile(data) as plain:
        assert v.is_virtual and v.label_schema == plain.label_schema
        np.testing.assert_array_equal(v.labels(), plain.labels())
    shown = CliRunner().invoke(prep_app, ["info", str(out)])
    assert shown.exit_code == 0 and "label columns: 2 own columns: smooth (fraction), has_bar (0/1)" in shown.output


def test_fit_score_and_predict_carry_the_files_columns(own, tmp_path):
    syn, table, data, kaggle_file, start, root = own
    run = tmp_path / "run"
    with pytest.raises(InputError, match="tree head .* needs the 37 Kaggle columns: use --head sigmoid"):
        galaxytrain.fit(data, run, model="galaxy_cnn", head="tree", epochs=1, log=lambda s: None)
    result = galaxytrain.fit(data, run, model="galaxy_cnn", head="sigmoid", loss="mse", epochs=1, batch_size=16,
                             log=lambda s: None)
    assert result.epochs_done == 1
    model = galaxytrain.load(run)
    assert model.model.output_shape[-1] == 2
    found = model.predict(data)
    frame = found.to_frame()
    assert list(frame.columns) == ["smooth", "has_bar"] and frame.index.name == "GalaxyID"

    lines: list[str] = []
    report = score_run(run, data, tmp_path / "report.json", log=lines.append)
    with GalaxyFile(data) as f:
        y = f.labels().astype(np.float64)
    p = np.clip(found.mean.astype(np.float64), 0, 1)
    assert report["rmse"] == pytest.approx(rmse(y, p), abs=1e-6)
    assert report["per_column"]["smooth"]["rmse"] == pytest.approx(rmse(y[:, :1], p[:, :1]), abs=1e-6)
    assert "roc_auc" in report["per_column"]["has_bar"] and "roc_auc" not in report["per_column"]["smooth"]
    assert "question_accuracy" not in report and "has_bar" in "\n".join(lines)
    assert json.loads((tmp_path / "report.json").read_text())["columns"] == ["smooth", "has_bar"]
    score_run(run, data, tmp_path / "report.json", log=lambda s: None, overwrite=True)  # its own report: replaced

    out = tmp_path / "own.csv"
    predict_submission(run, data, out, log=lambda s: None)
    assert out.read_text().splitlines()[0] == "GalaxyID,smooth,has_bar"
    predict_submission(run, data, out, log=lambda s: None, overwrite=True)  # its own kind of CSV: replaced
    h5 = tmp_path / "own_predictions.h5"
    predict_submission(run, data, h5, log=lambda s: None, format="hdf5")
    assert read_predictions(h5).columns == ["smooth", "has_bar"]

    with pytest.raises(InputError, match="holds 2 own columns.*predicts the 37 Kaggle"):
        score_run(start, data, tmp_path / "wrong.json", log=lambda s: None)
    with pytest.raises(InputError, match="an ensemble averages models of the same columns"):
        galaxytrain.predict([run, start], data)


def test_finetune_freezes_the_encoder_then_opens_it_at_layer_wise_rates(own, tmp_path, monkeypatch):
    syn, table, data, kaggle_file, start, root = own
    out = tmp_path / "ft"
    lines: list[str] = []
    result = galaxytrain.finetune(data, out, start=start, epochs=3, frozen_epochs=1, layer_decay=0.5,
                                  batch_size=16, log=lines.append)
    assert result.epochs_done == 3
    record = json.loads((out / "config.json").read_text())
    assert record["start"]["source"] == str(start.resolve()) and len(record["start"]["sha256"]) == 64
    assert record["config"]["start_from"] == str(start.resolve()) and record["config"]["input_size"] == 20
    assert any("the encoder learns from here on" in line for line in lines)

    base = load_model(start / "best.keras")
    tuned = load_model(out / "last.keras")
    scales = encoder_scales(tuned, 0.5)
    head = [v.path for v in tuned.get_layer("predictions").trainable_weights]
    assert head and not set(head) & set(scales)
    assert sorted(set(scales.values()), reverse=True)[:2] == [0.5, 0.25]
    assert tuned.optimizer.scales == scales  # saved with the optimizer: a resumed run keeps them

    by_path = {v.path: v.numpy() for v in base.trainable_weights}
    moved = [not np.array_equal(v.numpy(), by_path[v.path]) for v in tuned.trainable_weights if v.path in by_path]
    assert len(moved) == len(scales) and all(moved)  # after the frozen epoch the whole encoder learnt

    first = tmp_path / "one"
    from galaxytrain.training.callbacks import RunDirCallback

    original = RunDirCallback.on_epoch_end

    def stop_after_first(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(RunDirCallback, "on_epoch_end", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            galaxytrain.finetune(data, first, start=start, epochs=3, frozen_epochs=1, layer_decay=0.5,
                                 batch_size=16, log=lambda s: None)
    after_one = load_model(first / "last.keras")
    for v in after_one.trainable_weights:
        if v.path in by_path:
            np.testing.assert_array_equal(v.numpy(), by_path[v.path])  # frozen: not a bit moved
    # resumed, it ends where the uninterrupted run did, bit for bit
    galaxytrain.finetune(data, first, start=start, epochs=3, frozen_epochs=1, layer_decay=0.5, batch_size=16,
                         log=lambda s: None)
    for a, b in zip(load_model(first / "last.keras").get_weights(), load_model(out / "last.keras").get_weights()):
        np.testing.assert_array_equal(a, b)

    report = score_run(out, data, tmp_path / "ft.json", log=lambda s: None)
    assert set(report["per_column"]) == {"smooth", "has_bar"}


def test_the_new_head_starts_at_the_columns_mean(own, tmp_path):
    from galaxytrain.training.finetune import finetune_model

    syn, table, data, kaggle_file, start, root = own
    config = resolve_finetune_config(start, data, tmp_path / "x")
    model = finetune_model(config, np.array([0.2, 0.7]))
    np.testing.assert_allclose(model.get_layer("predictions").bias.numpy(), np.log([0.2 / 0.8, 0.7 / 0.3]), rtol=1e-6)
    assert model.output_shape == (None, 2) and model.input_shape == (None, 20, 20, 3)


def test_finetune_refuses_what_it_cannot_do(own, tmp_path):
    syn, table, data, kaggle_file, start, root = own
    other = root / "other.h5"
    if not other.exists():
        galaxyprep.build(syn.train_images, other, root / "own.csv", crop=CROP + 20, size=SIZE)
    with pytest.raises(InputError, match=r"was built with --crop 120 --size 24; .* trained on --crop 100 --size 24: "
                                         r"build its file with `galaxyprep build --crop 100 --size 24"):
        galaxytrain.finetune(other, tmp_path / "a", start=start, epochs=6, log=lambda s: None)
    last = resolve_finetune_config(start / "last.keras", data, tmp_path / "b")
    assert last.start_from == str((start / "last.keras").resolve())  # that file, not the folder's best.keras
    with pytest.raises(InputError, match="--input-size"):
        resolve_finetune_config(start, data, tmp_path / "b", input_size=16)
    with pytest.raises(InputError, match="--frozen-epochs"):
        galaxytrain.finetune(data, tmp_path / "c", start=start, epochs=2, frozen_epochs=2, log=lambda s: None)
    with pytest.raises(InputError, match="--frozen-epochs/--layer-decay"):
        galaxytrain.fit(data, tmp_path / "d", layer_decay=0.5, epochs=1, log=lambda s: None)
    with pytest.raises(InputError, match="no shipped model"):
        galaxytrain.finetune(data, tmp_path / "e", pretrained="nonesuch", log=lambda s: None)
    # a run resumed from another start model is refused
    other_start = tmp_path / "start2"
    galaxytrain.fit(kaggle_file, other_start, model="galaxy_cnn", head="tree", loss="mse", epochs=1, batch_size=16,
                    input_size=20, augment="rotate", seed=1, log=lambda s: None)
    galaxytrain.finetune(data, tmp_path / "f", start=start, epochs=2, frozen_epochs=1, batch_size=16,
                         log=lambda s: None)
    with pytest.raises(InputError, match="the model fine-tuned from"):
        galaxytrain.finetune(data, tmp_path / "f", start=other_start, epochs=3, frozen_epochs=1, batch_size=16,
                             log=lambda s: None)


def test_galaxies_chosen_by_the_split_hash_get_a_note_not_a_silent_empty_validation(tmp_path):
    from galaxyprep import unit_hash, write_galaxy_file

    candidates = np.arange(500000, 502000, dtype=np.int64)
    ids = candidates[unit_hash(candidates, 0) >= 0.1][:120]  # another run's training side, seed 0
    rng = np.random.default_rng(0)
    data = write_galaxy_file(tmp_path / "side.h5", rng.integers(0, 256, (120, 24, 24, 3), dtype=np.uint8), ids,
                             rng.random((120, 2)).astype(np.float32), columns=("a", "b"))
    lines: list[str] = []
    galaxytrain.fit(data, tmp_path / "run", model="galaxy_cnn", epochs=1, batch_size=32, log=lines.append)
    assert any("none of the 120 galaxies fell on the validation side" in line for line in lines)
    lines.clear()
    galaxytrain.fit(data, tmp_path / "run1", model="galaxy_cnn", epochs=1, batch_size=32, seed=1, log=lines.append)
    assert not any("fell on the validation side" in line for line in lines)


def test_the_shell_finetunes_and_a_run_stops_when_stale(own, tmp_path):
    from typer.testing import CliRunner

    from galaxytrain.cli import app
    from galaxytrain.training.callbacks import is_stale

    syn, table, data, kaggle_file, start, root = own
    out = tmp_path / "shell"
    args = ["finetune", "--from", str(start), "--data", str(data), "--out", str(out), "--epochs", "2",
            "--frozen-epochs", "1", "--batch-size", "16", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fine-tuning" in result.output and "done: 2 epochs" in result.output
    again = CliRunner().invoke(app, args)  # finished: nothing to do, and no error
    assert again.exit_code == 0 and "nothing to do" in again.output
    neither = CliRunner().invoke(app, ["finetune", "--data", str(data), "--out", str(tmp_path / "x")])
    assert neither.exit_code == 1 and "give one model to start from" in neither.output

    assert is_stale({"epochs_done": 5, "best_epoch": 2}, 3)
    assert not is_stale({"epochs_done": 5, "best_epoch": 2}, 4)
    assert not is_stale({"epochs_done": 5, "best_epoch": 2}, None)
    lines: list[str] = []
    result = galaxytrain.fit(data, tmp_path / "stale", model="galaxy_cnn", epochs=6, batch_size=16, patience=1,
                             learning_rate=1e-6, log=lines.append)  # a rate too small to improve for long
    history = [row["val_loss"] for row in result.history]
    stops = [i for i in range(1, len(history)) if history[i] >= min(history[:i])]
    assert result.epochs_done == (stops[0] + 1 if stops else 6)
    assert (result.epochs_done < 6) == any(line.startswith("stopped: no better validation loss") for line in lines)
