"""The galaxytrain command: bad input in one line, kill -9 and resume, and a real (synthetic) training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from typer.testing import CliRunner

from galaxyprep.cli import app as prep_app
from galaxytrain.cli import app
from galaxytrain.run_dir import read_history_csv

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_help_lists_the_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("fit", "score", "predict", "models"):
        assert command in result.stdout
    assert "vgg6" in _invoke("models").stdout


def test_bad_inputs_give_one_line_and_exit_1(make_galaxy_file, tmp_path):
    labelled = make_galaxy_file(n=24, size=24, labels=True, name="train.h5")
    unlabeled = make_galaxy_file(n=8, size=24, labels=False, name="test.h5")
    other_size = make_galaxy_file(n=8, size=32, labels=True, name="big.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("this is not HDF5\n")
    run = tmp_path / "run"

    _one_error_line(_invoke("fit", "--data", unlabeled, "--out", run), str(unlabeled), "no labels")
    _one_error_line(_invoke("fit", "--data", labelled, "--out", run, "--model", "vgg99"), "vgg99", "vgg6")
    _one_error_line(_invoke("fit", "--data", junk, "--out", run), str(junk), "HDF5")
    _one_error_line(_invoke("fit", "--data", tmp_path / "nope.h5", "--out", run), "nope.h5", "no such file")
    _one_error_line(_invoke("fit", "--data", labelled, "--out", run, "--gpu-memory-limit", "lots"),
                    "--gpu-memory-limit")
    _one_error_line(_invoke("score", "--run", tmp_path / "missing", "--data", labelled), "missing", "no such run")
    _one_error_line(_invoke("predict", "--run", tmp_path / "missing", "--data", unlabeled, "--out", tmp_path / "s.csv"),
                    "missing", "no such run")

    # A trained run, then files it cannot take.
    fitted = _invoke("fit", "--data", labelled, "--out", run, "--epochs", "1", "--batch-size", "8")
    assert fitted.exit_code == 0, fitted.output
    _one_error_line(_invoke("score", "--run", run, "--data", unlabeled), str(unlabeled), "no labels")
    _one_error_line(_invoke("score", "--run", run, "--data", other_size), str(other_size), "32x32x3", "24x24x3")
    _one_error_line(_invoke("predict", "--run", run, "--data", junk, "--out", tmp_path / "s.csv"), str(junk))
    _one_error_line(_invoke("predict", "--run", run, "--data", unlabeled, "--out", tmp_path / "s.csv", "--tta", "3"),
                    "--tta")
    _one_error_line(_invoke("fit", "--data", labelled, "--out", run, "--epochs", "2", "--seed", "5"),
                    str(run), "seed", "--overwrite")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "best.keras").write_bytes(b"half a model")
    _one_error_line(_invoke("predict", "--run", damaged, "--data", unlabeled, "--out", tmp_path / "s.csv"),
                    "best.keras", "not a .keras model file")
    assert not (tmp_path / "s.csv").exists()


def _state(run: Path) -> dict | None:
    try:
        return json.loads((run / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_kill_9_mid_training_then_the_same_command_resumes(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=192, size=32, seed=5, chunk_images=16)
    run = tmp_path / "run"
    epochs = 6
    cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out", str(run),
           "--epochs", str(epochs), "--batch-size", "16"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = _state(run)
            if state and state["epochs_done"] >= 1:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.02)
        else:
            pytest.fail("no epoch completed in 120 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = _state(run)["epochs_done"]
    assert 1 <= done < epochs, "the run finished before it could be killed: make it longer"

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    # It continues right after the last committed epoch, and runs no epoch twice.
    assert f"resuming {run} at epoch {done + 1}/{epochs} ({done} epoch" in second.stdout
    assert f"epoch {done}/{epochs}:" not in second.stdout
    assert f"epoch {done + 1}/{epochs}:" in second.stdout
    history = read_history_csv(run / "history.csv")
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    assert _state(run)["epochs_done"] == epochs
    assert not list(run.glob("*.tmp*"))

    # The optimizer carried on: its step count covers all epochs, not only the resumed ones.
    import keras

    steps = int(np.ceil(json.loads((run / "config.json").read_text())["split"]["n_train"] / 16))
    model = keras.models.load_model(run / "last.keras")
    assert int(model.optimizer.iterations) == epochs * steps


@pytest.mark.slow
def test_synthetic_galaxies_train_below_the_mean_predictor(tmp_path):
    from galaxyprep.builder import BuildConfig, build
    from galaxyprep.synth import synthesize

    syn = synthesize(tmp_path / "synth", 800, n_test=40, seed=11, size=128)
    hold = synthesize(tmp_path / "holdout", 200, seed=12, size=128)
    train_h5, test_h5, hold_h5 = tmp_path / "train.h5", tmp_path / "test.h5", tmp_path / "holdout.h5"
    build(BuildConfig(images=syn.train_images, labels=syn.labels_csv, out=train_h5, crop=96, size=48))
    build(BuildConfig(images=syn.test_images, out=test_h5, crop=96, size=48))
    build(BuildConfig(images=hold.train_images, labels=hold.labels_csv, out=hold_h5, crop=96, size=48))

    run = tmp_path / "run"
    fitted = _invoke("fit", "--data", train_h5, "--out", run, "--epochs", "8", "--batch-size", "32",
                     "--val-fraction", "0.2", "--augment", "dihedral")
    assert fitted.exit_code == 0, fitted.output
    config = json.loads((run / "config.json").read_text())
    baseline = config["baseline_val_rmse_mean_predictor"]
    best = min(row["val_rmse"] for row in read_history_csv(run / "history.csv"))
    assert best < 0.9 * baseline, (best, baseline)

    report_path = tmp_path / "report.json"
    scored = _invoke("score", "--run", run, "--data", hold_h5, "--report", report_path, "--tta", "4")
    assert scored.exit_code == 0, scored.output
    report = json.loads(report_path.read_text())
    assert report["rmse"] < report["rmse_mean_predictor"]

    submission = tmp_path / "submission.csv"
    predicted = _invoke("predict", "--run", run, "--data", test_h5, "--out", submission)
    assert predicted.exit_code == 0, predicted.output
    assert len(submission.read_text().splitlines()) == 41


def _sigterm_when(cmd: list[str], ready, wait_s: float = 120, env: dict | None = None) -> tuple[int, str, float]:
    """Run `cmd`, send SIGTERM once ready() is true; (exit code, stderr, seconds from the signal to the end)."""
    env = env or dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while not ready() and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        sent = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_ends_a_fit_at_once_and_the_same_command_resumes(make_galaxy_file, tmp_path):
    """SIGTERM (kill, a batch scheduler) unwinds as Ctrl-C: exit 143, one line, the run resumable."""
    data = make_galaxy_file(n=192, size=32, seed=5, chunk_images=16)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out", str(run), "--epochs", "40",
           "--batch-size", "16"]
    code, err, took = _sigterm_when(cmd, lambda: (_state(run) or {}).get("epochs_done", 0) >= 1)
    assert code == 143 and took < 30, err
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM): interrupted (a fit resumes")
    done = _state(run)["epochs_done"]
    assert 1 <= done < 40 and not list(run.glob("*.tmp*"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    again = subprocess.run(cmd[:-4] + ["--epochs", str(done + 1), "--batch-size", "16"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"resuming {run} at epoch {done + 1}" in again.stdout, again.stderr


def test_sigterm_during_predict_from_jpegs_leaves_no_temporary_files(tmp_path):
    from galaxyprep.synth import synthesize

    syn = synthesize(tmp_path / "syn", 300, seed=4, size=128)
    data = tmp_path / "d.h5"
    assert CliRunner().invoke(prep_app, ["build", "--images", str(syn.train_images), "--labels",
                                         str(syn.labels_csv), "--crop", "100", "--size", "24", "--out", str(data),
                                         "-q"]).exit_code == 0
    run = tmp_path / "run"
    assert _invoke("fit", "--data", data, "--out", run, "--epochs", "1", "--model", "galaxy_cnn").exit_code == 0
    out = tmp_path / "preds" / "s.csv"
    out.parent.mkdir()
    code, err, _ = _sigterm_when([sys.executable, "-m", "galaxytrain", "predict", "--run", str(run), "--images",
                                  str(syn.train_images), "--out", str(out), "--tta", "32", "--no-progress"],
                                 lambda: bool(list(out.parent.glob(".galaxytrain-*/images.h5"))))
    assert code == 143, err
    assert "terminated (SIGTERM)" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in out.parent.iterdir()) == []  # no .galaxytrain-* folder, no lock, no output


def test_an_interrupt_reported_by_a_c_extension_ends_as_the_interrupt(capsys):
    """SIGTERM landing in h5py's attribute callback surfaced as SystemError: a traceback and exit 1 (seen once)."""
    import typer

    from galaxyprep import Terminated
    from galaxyprep.interrupts import interrupt_behind
    from galaxytrain.cli import _run

    def in_callback(interrupt: BaseException):
        def action():
            try:
                raise interrupt
            except BaseException as exc:
                raise SystemError("FastRLock.__exit__ returned a result with an exception set") from exc
        return action

    for interrupt, code, first in ((Terminated(), 143, "terminated (SIGTERM): "), (KeyboardInterrupt(), 130, "")):
        with pytest.raises(typer.Exit) as stopped:
            _run(in_callback(interrupt))
        assert stopped.value.exit_code == code
        assert capsys.readouterr().err.splitlines() == [first + "interrupted before the output was written; run "
                                                                 "the same command again"]
    with pytest.raises(SystemError):  # a SystemError of its own is not hidden
        _run(in_callback(ValueError("no interrupt")))
    assert interrupt_behind(ValueError()) is None


def test_sigterm_during_a_build_keeps_it_for_resume(shared_gz, tmp_path):
    out = tmp_path / "t.h5"
    cmd = [sys.executable, "-m", "galaxyprep", "build", "--images", str(shared_gz / "images"), "--crop", "200",
           "--size", "96", "--out", str(out), "--workers", "1", "--no-progress"]
    partial = out.with_name(out.name + ".partial")
    code, err, _ = _sigterm_when(cmd, lambda: partial.exists() and partial.stat().st_size > 20_000_000, 60)
    if code == 0:
        pytest.skip("the build finished before the signal arrived")
    assert code == 143, err
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM): what was written is kept")
    assert not out.exists() and out.with_name(out.name + ".partial").exists()
    resumed = subprocess.run(cmd + ["--resume"], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "wrote 5,866 images" in resumed.stdout, resumed.stderr  # from its checkpoint


def test_loader_processes_end_quietly(make_galaxy_file, tmp_path):
    """Keras ends its loader pool with SIGTERM: a child that kept the CLI's handler printed a traceback each."""
    data = make_galaxy_file(n=192, size=32, seed=5, chunk_images=16)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--epochs", "2", "--batch-size", "16", "--use-multiprocessing",
                           "--loader-workers", "2", "--no-progress"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Terminated" not in done.stderr, done.stderr[-2000:]
