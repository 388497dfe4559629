"""fit(): the run directory it writes, resuming, refusing, and the GPU options on a CPU machine."""

from __future__ import annotations

import csv
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from galaxyprep import GalaxyFile, InputError
from galaxytrain.config import FitConfig
from galaxytrain.gpu import configure_gpus, parse_memory_size, peak_gpu_memory
from galaxytrain.data import split_rows
from galaxytrain.evaluation import rmse
from galaxytrain.inference import predict_file
from galaxytrain.models import load_model
from galaxytrain.run_dir import RunDir, read_history_csv, sha256_file
from galaxytrain.training import fit

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ARTIFACTS = {"best.keras", "last.keras", "history.csv", "config.json", "state.json", "training_curve.png"}


def _config(data, out, **kw):
    base = dict(epochs=2, batch_size=16, progress=False)
    base.update(kw)
    return FitConfig(data=data, out=out, **base)


def _labels_ids(path):
    with GalaxyFile(path) as f:
        return f.labels().astype(np.float64), f.ids


@pytest.fixture
def tiny(make_galaxy_file):
    return make_galaxy_file(n=96, size=24, seed=3)


def test_fit_writes_every_artifact_and_consistent_numbers(tiny, tmp_path):
    out = tmp_path / "run"
    logged = []
    result = fit(_config(tiny, out), log=logged.append)
    assert ARTIFACTS <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp*"))
    assert result.epochs_done == 2 and result.initial_epoch == 0

    history = read_history_csv(out / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    with open(out / "history.csv", newline="") as f:
        header = next(csv.reader(f))
    for column in ("loss", "rmse", "val_loss", "val_rmse", "epoch_time_s", "learning_rate"):
        assert column in header
        assert all(row[column] is not None for row in history)

    config = json.loads((out / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and config["config"]["model"] == "vgg6"
    assert set(FitConfig.__dataclass_fields__) <= set(config["config"])
    labels, ids = _labels_ids(tiny)
    data = config["data"]
    assert data["n_images"] == data["n_used"] == 96 and data["image_size"] == 24
    assert data["file_bytes"] == tiny.stat().st_size and len(data["mean"]) == len(data["std"]) == 3
    assert config["split"]["seed"] == 0

    # The split is split_rows', and the logged baseline is the numpy mean predictor on it.
    train_rows, val_rows = split_rows(ids, 0.1, 0)
    assert config["split"]["n_val"] == len(val_rows) > 0
    expected = np.sqrt(np.mean((labels[val_rows] - labels[train_rows].mean(axis=0)) ** 2))
    assert result.baseline_val_rmse == pytest.approx(expected, rel=1e-9)

    # The RMSE metric Keras logged for validation is the Kaggle RMSE of last.keras on those rows.
    model = load_model(out / "last.keras", compile=False)
    _, preds = predict_file(model, tiny, tta=1, batch_size=32)
    assert history[-1]["val_rmse"] == pytest.approx(rmse(labels[val_rows], preds[val_rows]), abs=2e-5)

    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    assert state["last_sha256"] == sha256_file(out / "last.keras")
    best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
    assert state["best_epoch"] == result.best_epoch == best_epoch
    assert state["best_sha256"] == sha256_file(out / "best.keras")
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_validation_split_every_galaxy_trains_and_the_lowest_training_loss_is_kept(tiny, tmp_path):
    # --val-fraction 0 (a final model on all of one's galaxies; bench/RESULTS.md measured it for ensemble
    # members): nothing is held out, so best.keras is the epoch of lowest training loss, and no validation
    # figures are recorded.
    out = tmp_path / "run"
    logged = []
    result = fit(_config(tiny, out, epochs=3, val_fraction=0.0), log=logged.append)
    split = json.loads((out / "config.json").read_text())["split"]
    assert split["n_train"] == 96 and split["n_val"] == 0
    state = json.loads((out / "state.json").read_text())
    assert state["monitor"] == "loss"
    history = read_history_csv(out / "history.csv")
    assert all(row.get("val_loss") is None for row in history)
    assert state["best_epoch"] == result.best_epoch == min(history, key=lambda r: r["loss"])["epoch"]
    assert state["best_sha256"] == sha256_file(out / "best.keras")
    assert result.best_val_rmse is None and result.baseline_val_rmse is None
    assert any("96 train, 0 validation" in line for line in logged)


def test_fit_resumes_with_the_optimizer_state_and_refuses_other_options(tiny, tmp_path):
    out = tmp_path / "run"
    fit(_config(tiny, out, epochs=1, limit=64), log=lambda s: None)
    steps = int(np.ceil(len(split_rows(_labels_ids(tiny)[1][:64], 0.1, 0)[0]) / 16))
    logged = []
    result = fit(_config(tiny, out, epochs=2, limit=64), log=logged.append)
    assert result.initial_epoch == 1 and result.epochs_done == 2
    assert any("resuming" in line and "epoch 2/2" in line for line in logged)
    assert [row["epoch"] for row in read_history_csv(out / "history.csv")] == [1, 2]
    model = load_model(out / "last.keras")
    assert int(model.optimizer.iterations) == 2 * steps  # continued, not restarted

    # Nothing left to do: no training, no change.
    before = sha256_file(out / "last.keras")
    assert fit(_config(tiny, out, epochs=2, limit=64), log=lambda s: None).epochs_done == 2
    assert sha256_file(out / "last.keras") == before

    with pytest.raises(InputError, match="learning_rate") as err:
        fit(_config(tiny, out, epochs=3, limit=64, learning_rate=0.01), log=lambda s: None)
    assert "--overwrite" in str(err.value) and str(out) in str(err.value)
    with pytest.raises(InputError, match="images"):
        fit(_config(tiny, out, epochs=3, limit=48), log=lambda s: None)

    result = fit(_config(tiny, out, epochs=1, limit=64, learning_rate=0.01, overwrite=True), log=lambda s: None)
    assert result.initial_epoch == 0 and result.epochs_done == 1
    assert json.loads((out / "config.json").read_text())["config"]["learning_rate"] == 0.01


def test_prediction_normalizes_exactly_as_training_did_and_old_rounded_records_still_resume(tiny, tmp_path):
    from galaxytrain.inference import load_run

    out = tmp_path / "run"
    fit(_config(tiny, out, epochs=1, limit=64), log=lambda s: None)
    with GalaxyFile(tiny) as f:
        mean, std = f.normalization
    norm = load_run(out).normalization
    np.testing.assert_array_equal(norm.mean, mean)  # bit for bit: config.json keeps full precision
    np.testing.assert_array_equal(norm.std, std)
    assert not np.array_equal(np.round(mean, 6), mean)  # so a 6-decimal copy would have differed

    # A run recorded before full precision (6 decimals) is still the same data, and resumes.
    record = json.loads((out / "config.json").read_text())
    record["data"]["mean"] = [round(v, 6) for v in record["data"]["mean"]]
    record["data"]["std"] = [round(v, 6) for v in record["data"]["std"]]
    (out / "config.json").write_text(json.dumps(record))
    assert fit(_config(tiny, out, epochs=2, limit=64), log=lambda s: None).initial_epoch == 1


def test_recover_finishes_an_interrupted_commit_and_drops_a_partial_one(tiny, tmp_path):
    import keras

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    state = {"epochs_done": 1, "best_epoch": 1, "best_value": 0.5,
             "history": [{"epoch": 1, "loss": 1.0, "val_loss": 0.5}]}
    run.commit_epoch(model, state, improved=True)
    good = sha256_file(run.last)

    # Killed after the state commit, before the rename: the temporary file is the real epoch.
    stale = run.path / "stale.keras"
    model.layers[0].kernel.assign(np.zeros((3, 2), dtype=np.float32))
    model.save(stale)
    os.replace(run.last, run.last_tmp)
    os.replace(stale, run.last)
    recovered = run.recover()
    assert "damaged" not in recovered and sha256_file(run.last) == good and not run.last_tmp.exists()

    # Killed while writing the next epoch: the partial file goes, the committed one stays.
    run.last_tmp.write_bytes(b"half a zip")
    recovered = run.recover()
    assert "damaged" not in recovered and not run.last_tmp.exists() and sha256_file(run.last) == good

    run.last.write_bytes(b"corrupt")
    assert "damaged" in run.recover()


def test_bad_inputs_are_input_errors(make_galaxy_file, tmp_path):
    unlabeled = make_galaxy_file(n=20, size=24, labels=False, name="test.h5")
    with pytest.raises(InputError, match="no labels"):
        fit(_config(unlabeled, tmp_path / "a"), log=lambda s: None)
    with pytest.raises(InputError, match="unknown model"):
        fit(_config(unlabeled, tmp_path / "a", model="vgg7"), log=lambda s: None)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match="junk.h5"):
        fit(_config(junk, tmp_path / "a"), log=lambda s: None)
    with pytest.raises(InputError, match="no such file"):
        fit(_config(tmp_path / "missing.h5", tmp_path / "a"), log=lambda s: None)
    small = make_galaxy_file(n=20, size=16, name="small.h5")
    with pytest.raises(InputError, match="at least 20x20"):
        fit(_config(small, tmp_path / "b"), log=lambda s: None)
    with pytest.raises(InputError, match="--val-fraction"):
        fit(_config(small, tmp_path / "b", val_fraction=1.5), log=lambda s: None)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("text, expected", [
    ("12GiB", 12 * 2**30), ("12GB", 12 * 10**9), ("512MiB", 512 * 2**20), ("1.5 GiB", 3 * 2**29),
    ("100", 100), ("8mb", 8 * 10**6),
])
def test_parse_memory_size(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["twelve", "12XB", "-1GiB", "0GiB", ""])
def test_parse_memory_size_rejects_nonsense(text):
    with pytest.raises(InputError, match="--gpu-memory-limit"):
        parse_memory_size(text)


def test_gpu_options_on_a_machine_without_gpu_log_and_carry_on():
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    lines = []
    previous = keras.mixed_precision.global_policy()
    try:
        setup = configure_gpus("12GiB", memory_growth=True, mixed_precision=True, log=lines.append)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # float16 has no fast CPU path
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert setup.n_gpus == 0 and setup.memory_limit_mib is None
    assert any("no GPU" in line for line in lines)
    assert peak_gpu_memory() is None


def test_rotated_views_tree_warmup_and_cosine_schedule_agree_with_predict(make_galaxy_file, tmp_path):
    from galaxytrain.inference import load_run
    from galaxytrain.models.tree_head import tree_heads
    from galaxytrain.training.schedule import scheduled_learning_rate

    data = make_galaxy_file(n=80, size=27, seed=4)
    out = tmp_path / "run"
    options = dict(head="tree", loss="mse", augment="rotate", input_size=22, max_shift=2.0, max_zoom=1.2,
                   tree_warmup_epochs=1, lr_schedule="cosine", learning_rate=0.004, weight_decay=1e-4)
    fit(_config(data, out, epochs=1, **options), log=lambda s: None)
    # Epoch 1 was the warm-up: its checkpoint has the tree normalisation off; predict switches it on.
    raw = load_model(out / "last.keras", compile=False)
    assert [head.normalize for head in tree_heads(raw)] == [False]
    assert [head.normalize for head in tree_heads(load_run(out, "last").model)] == [True]

    logged = []
    result = fit(_config(data, out, epochs=3, **options), log=logged.append)  # resumed
    assert result.initial_epoch == 1 and result.epochs_done == 3
    assert any("seen as 22x22 views" in line for line in logged)
    record = json.loads((out / "config.json").read_text())
    assert record["model"]["input_shape"] == [22, 22, 3] and record["config"]["input_size"] == 22
    assert record["config"]["augment"] == "rotate" and record["data"]["image_size"] == 27
    assert type(load_model(out / "last.keras").optimizer).__name__ == "AdamW"
    # The first normalised epoch is best whatever the warm-up's loss was.
    assert result.best_epoch >= 2

    # The learning rate of each epoch's last batch: epoch 1 from a one-epoch cosine, then the three-epoch one.
    labels, ids = _labels_ids(data)
    train_rows, val_rows = split_rows(ids, 0.1, 0)
    steps = int(np.ceil(len(train_rows) / 16))
    history = read_history_csv(out / "history.csv")
    expected = [0.004 * 0.5 * (1 + np.cos(np.pi * (steps - 1) / steps))]
    expected += [0.004 * 0.5 * (1 + np.cos(np.pi * (e * steps - 1) / (3 * steps))) for e in (2, 3)]
    np.testing.assert_allclose([row["learning_rate"] for row in history], expected, rtol=1e-5)
    assert scheduled_learning_rate("cosine", 0.004, 1.0) == pytest.approx(0.0, abs=1e-12)

    # What validation measured is what score and predict compute: the same centre view.
    for which, epoch in (("last", 3), ("best", result.best_epoch)):
        trained = load_run(out, which)
        _, preds = predict_file(trained.model, data, tta=1, batch_size=32, normalization=trained.normalization,
                                  source_size=trained.source_size)
        row = next(r for r in history if r["epoch"] == epoch)
        assert row["val_rmse"] == pytest.approx(rmse(labels[val_rows], preds[val_rows]), abs=2e-5)
    with pytest.raises(InputError, match="but the model takes 22x22x3"):
        predict_file(trained.model, data, tta=1)  # without the run's word, a smaller input is refused


def test_learning_rate_schedules_and_new_option_checks(tiny, tmp_path):
    from galaxytrain.training.schedule import scheduled_learning_rate

    assert scheduled_learning_rate("constant", 0.01, 0.7) == 0.01
    assert scheduled_learning_rate("cosine", 0.01, 0.0) == pytest.approx(0.01)
    assert scheduled_learning_rate("cosine", 0.01, 0.5) == pytest.approx(0.005)
    assert [scheduled_learning_rate("step", 1.0, p) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        scheduled_learning_rate("linear", 0.01, 0.1)
    for kw, option in [(dict(tree_warmup_epochs=2), "--head tree"), (dict(input_size=4), "--input-size"),
                       (dict(max_zoom=0.5), "--max-zoom"), (dict(lr_schedule="linear"), "--lr-schedule"),
                       (dict(weight_decay=-1.0), "--weight-decay"), (dict(augment="twist"), "--augment")]:
        with pytest.raises(InputError, match=option):
            fit(_config(tiny, tmp_path / "x", **kw), log=lambda s: None)
    with pytest.raises(InputError, match="smaller than --input-size 30"):
        fit(_config(tiny, tmp_path / "x", input_size=30), log=lambda s: None)


RESUME_OPTIONS = dict(model="galaxy_cnn", head="tree", loss="mse", augment="rotate", input_size=20,
                      lr_schedule="cosine", tree_warmup_epochs=1, weight_decay=1e-4, epochs=3, batch_size=16,
                      ema=0.9, colour_noise=0.2)


def _run_killed(tiny, out, monkeypatch, epoch: int, batch: int | None):
    """fit, killed (KeyboardInterrupt) after epoch `epoch`'s commit, or inside it at `batch`."""
    from galaxytrain.training import callbacks

    original = callbacks.RunDirCallback.on_epoch_end

    def end(self, e, logs=None):
        original(self, e, logs)
        if batch is None and e + 1 == epoch:
            raise KeyboardInterrupt

    def batch_end(self, b, logs=None):
        if batch is not None and self.state["epochs_done"] == epoch and b == batch:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.RunDirCallback, "on_epoch_end", end)
        patch.setattr(callbacks.RunDirCallback, "on_train_batch_end", batch_end, raising=False)
        with pytest.raises(KeyboardInterrupt):
            fit(_config(tiny, out, **RESUME_OPTIONS), log=lambda s: None)
    return fit(_config(tiny, out, **RESUME_OPTIONS), log=lambda s: None)


@pytest.mark.slow
@pytest.mark.parametrize("epoch, batch", [(1, None), (2, None), (1, 2)])
def test_a_killed_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tiny, tmp_path, monkeypatch, epoch, batch):
    whole = fit(_config(tiny, tmp_path / "whole", **RESUME_OPTIONS), log=lambda s: None)
    resumed = _run_killed(tiny, tmp_path / "resumed", monkeypatch, epoch, batch)
    assert resumed.initial_epoch == epoch and resumed.epochs_done == 3
    timing = {"epoch_time_s", "images_per_s"}
    strip = [{k: v for k, v in row.items() if k not in timing} for row in whole.history]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed.history] == strip
    a = load_model(tmp_path / "whole" / "last.keras")
    b = load_model(tmp_path / "resumed" / "last.keras")
    for x, y in zip(a.get_weights() + [v.numpy() for v in a.optimizer.variables],
                    b.get_weights() + [v.numpy() for v in b.optimizer.variables]):
        np.testing.assert_array_equal(x, y)
    assert len(a.optimizer.variables) > 2 * len(a.trainable_weights) + 1  # moments and the weights' average
    best_a = load_model(tmp_path / "whole" / "best.keras").get_weights()
    best_b = load_model(tmp_path / "resumed" / "best.keras").get_weights()
    for x, y in zip(best_a, best_b):
        np.testing.assert_array_equal(x, y)


def test_a_diverged_fit_is_an_error_that_keeps_the_last_good_epoch(tiny, tmp_path):
    from galaxytrain.training.callbacks import StopOnDivergence, TrainingDiverged

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="diverged.*no epoch was completed"):
        fit(_config(tiny, out, learning_rate=1e6, loss="mse", head="tree"), log=lambda s: None)
    assert not (out / "best.keras").exists() and not (out / "last.keras").exists()

    # After good epochs: the error names what is kept, and nothing is committed past it.
    state = {"epochs_done": 2, "best_epoch": 2}
    stop = StopOnDivergence(out, state)
    stop.on_epoch_begin(2)
    stop.on_train_batch_end(0, {"loss": 0.5})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingDiverged, match=r"batch 4 of epoch 3; .*keeps epoch 2"):
            stop.on_train_batch_end(3, {"loss": bad})
    with pytest.raises(TrainingDiverged, match="at epoch 3;"):
        stop.on_epoch_end(2, {"loss": float("nan")})


def test_extending_a_cosine_run_says_what_the_learning_rate_does(tiny, tmp_path):
    """--epochs 2 then 3 on a cosine run: the schedule of a 3-epoch run, taken up at epoch 3, said in the log."""
    from galaxytrain.training.schedule import scheduled_learning_rate

    out = tmp_path / "run"
    fit(_config(tiny, out, epochs=2, limit=64, lr_schedule="cosine"), log=lambda s: None)
    logged: list[str] = []
    fit(_config(tiny, out, epochs=3, limit=64, lr_schedule="cosine"), log=logged.append)
    note = [line for line in logged if line.startswith("--epochs 2 -> 3")]
    assert len(note) == 1 and "taken up at epoch 3" in note[0], logged
    at_start = scheduled_learning_rate("cosine", 1e-3, 2 / 3)
    assert f"{at_start:.3g} there" in note[0]
    rows = read_history_csv(out / "history.csv")
    steps = int(np.ceil(len(split_rows(_labels_ids(tiny)[1][:64], 0.1, 0)[0]) / 16))
    # history's learning rate is the last batch's: epoch 3 follows the 3-epoch curve, epoch 2 the 2-epoch one
    assert rows[2]["learning_rate"] == pytest.approx(scheduled_learning_rate("cosine", 1e-3, (3 * steps - 1) / (3 * steps)),
                                                     rel=1e-4)
    assert rows[1]["learning_rate"] == pytest.approx(scheduled_learning_rate("cosine", 1e-3, (2 * steps - 1) / (2 * steps)),
                                                     rel=1e-4)
    quiet: list[str] = []
    fit(_config(tiny, tmp_path / "plain", epochs=1, limit=64, lr_schedule="cosine"), log=quiet.append)
    assert not any(line.startswith("--epochs") for line in quiet)
