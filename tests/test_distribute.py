"""fit --strategy: two real workers on localhost ports, two logical CPUs, TF_CONFIG checked in one line.

The multi-worker runs are real processes (``python -m galaxytrain fit``)
talking over gRPC, each with CUDA_VISIBLE_DEVICES=-1 and a timeout, so that a
hung collective fails the test instead of hanging it. Every worker records
the file rows it read (GALAXYTRAIN_RECORD_ROWS), so the shares can be checked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO
from galaxyprep import InputError
from galaxytrain.cli import app
from galaxytrain.config import FitConfig
from galaxytrain.data import EpochOrder
from galaxytrain.run_dir import read_history_csv
from galaxytrain.training import distribute

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

EPOCHS = 4
PER_REPLICA = 6  # x 2 workers = 12 per step; 84 training images = 7 whole steps, nothing left out
TIMEOUT_S = 240


# -- pure parts: TF_CONFIG, shares, fingerprint ----------------------------------------------------------

def _tf_config(cluster, task) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


def test_the_chief_is_the_chief_task_or_worker_0_and_tf_config_errors_name_the_problem():
    two = {"worker": ["a:1", "b:2"]}
    assert distribute.worker_role("multi-worker", _tf_config(two, {"type": "worker", "index": 0})).is_chief
    assert not distribute.worker_role("multi-worker", _tf_config(two, {"type": "worker", "index": 1})).is_chief
    with_chief = {"chief": ["c:3"], "worker": ["a:1"]}
    role = distribute.worker_role("multi-worker", _tf_config(with_chief, {"type": "worker", "index": 0}))
    assert not role.is_chief and role.n_workers == 2
    assert distribute.worker_role("multi-worker", _tf_config(with_chief, {"type": "chief", "index": 0})).is_chief
    assert distribute.worker_role("mirrored", {}).is_chief

    bad = [({}, "is not set"), ({"TF_CONFIG": "{nope"}, "is not JSON"),
           ({"TF_CONFIG": "[]"}, "'cluster' and a 'task'"),
           (_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, {"type": "worker", "index": 0}), "ps"),
           (_tf_config({"worker": ["a"]}, {"type": "worker", "index": 0}), "host:port"),
           (_tf_config({"worker": ["localhost:abc"]}, {"type": "worker", "index": 0}), "'localhost:abc': a port"),
           (_tf_config({"worker": ["localhost:0", "b:1"]}, {"type": "worker", "index": 0}), "from 1 to 65535"),
           (_tf_config({"worker": [":2222"]}, {"type": "worker", "index": 0}), "after the host"),
           (_tf_config(two, {"type": "worker", "index": 2}), "task.index 2"),
           (_tf_config(two, {"type": "evaluator", "index": 0}), "task.type")]
    for environ, fragment in bad:
        with pytest.raises(InputError) as exc:
            distribute.worker_role("multi-worker", environ)
        text = str(exc.value)
        assert "TF_CONFIG" in text and fragment in text and "\n" not in text, text


def test_replica_shares_are_disjoint_and_cover_each_global_batch():
    order = EpochOrder(84, 12, 3, seed=5, shuffle=True)
    for epoch in range(3):
        seen = []
        for step in range(7):
            parts = [distribute.train_share(order, 5, epoch, step, r, 2)[0] for r in range(2)]
            assert [len(p) for p in parts] == [6, 6]
            assert sorted(np.concatenate(parts)) == sorted(order.batch(epoch, step)[0])
            seen.append(np.concatenate(parts))
        assert sorted(np.concatenate(seen)) == list(range(84))  # every row once per epoch
    shares = distribute.val_shares(13, 4, 2)  # 2 steps; no replica empty; file order; all rows once
    assert len(shares) == 2 and all(len(p) > 0 for step in shares for p in step)
    assert list(np.concatenate([p for step in shares for p in step])) == list(range(13))
    with pytest.raises(InputError, match="validation images for 4 replicas"):
        distribute.val_shares(3, 8, 4)


def test_weights_fingerprint_sees_every_weight():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    first = distribute.weights_fingerprint(model)
    assert len(first) == 16 and first == distribute.weights_fingerprint(model)
    kernel = model.weights[0]
    kernel.assign(keras.ops.convert_to_numpy(kernel) + np.float32(1e-7))
    assert distribute.weights_fingerprint(model) != first


def test_strategy_options_fail_in_one_line(make_galaxy_file, tmp_path, monkeypatch):
    data = make_galaxy_file(n=24, size=24)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for extra, fragment in ((["--strategy", "multi-worker"], "TF_CONFIG"),
                            (["--strategy", "mirrored", "--use-multiprocessing"], "--use-multiprocessing")):
        result = CliRunner().invoke(app, ["fit", "--data", str(data), "--out", str(tmp_path / "run"), *extra])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


# -- two real workers ------------------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(data: Path, out: Path, record: Path, epochs: int, *extra: str,
                   worker_1_extra: tuple[str, ...] = ()) -> list[subprocess.Popen]:
    hosts = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": str(REPO), distribute.RECORD_ROWS_ENV: str(record),
               "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out", str(out),
               "--strategy", "multi-worker", "--epochs", str(epochs), "--batch-size", str(PER_REPLICA),
               "--no-progress", *extra, *(worker_1_extra if index == 1 else ())]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs: list[subprocess.Popen], code: int = 0) -> list[str]:
    """Wait for both workers (killed at the timeout: a hung collective fails here); their logs (stdout).

    TensorFlow's own messages (gRPC, collectives) go to stderr, possibly after
    the fingerprint line; the log a user reads is stdout.
    """
    deadline = time.monotonic() + TIMEOUT_S
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a worker did not finish in {TIMEOUT_S} s (hung collective?)")
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == code, (out + err)[-3000:]
    return [out for out, _ in outputs] if code == 0 else [err for _, err in outputs]


def _fingerprint(log: str) -> str:
    last = log.strip().splitlines()[-1]
    assert last.startswith("final weights fingerprint: "), log[-2000:]
    return last.split(": ")[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    from galaxyprep.galaxy_file import write_galaxy_file
    from galaxyprep.tree import normalize_tree

    rng = np.random.default_rng(7)
    n = 96  # split 84 train / 12 validation
    images = rng.integers(0, 256, size=(n, 24, 24, 3), dtype=np.uint8)
    labels = normalize_tree(rng.random((n, 37))).astype(np.float32)
    return write_galaxy_file(tmp_path_factory.mktemp("dist") / "d.h5", images, np.arange(10**5, 10**5 + n),
                             labels, crop=24, chunk_images=8)


@pytest.fixture(scope="module")
def two_workers(data_file, tmp_path_factory):
    """One uninterrupted 2-worker run of EPOCHS epochs: (run dir, logs, rows each worker recorded)."""
    root = tmp_path_factory.mktemp("mw")
    out, record = root / "run", root / "rows"
    logs = _finish(_start_workers(data_file, out, record, EPOCHS))
    rows = [json.loads((record / f"rows-worker{i}.json").read_text()) for i in range(2)]
    return out, logs, rows


def test_two_workers_finish_agree_and_the_chief_alone_keeps_every_epoch(two_workers):
    out, logs, _ = two_workers
    fingerprints = [_fingerprint(log) for log in logs]
    assert fingerprints[0] == fingerprints[1]
    assert [row["epoch"] for row in read_history_csv(out / "history.csv")] == list(range(1, EPOCHS + 1))
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == EPOCHS
    record = json.loads((out / "config.json").read_text())
    assert record["distribute"]["replicas"] == 2 and record["distribute"]["global_batch"] == 2 * PER_REPLICA
    # The other worker said where its checkpoints went, and that folder is gone.
    scratch = next(line for line in logs[1].splitlines() if "scratch folder" in line)
    folder = Path(scratch.split("scratch folder ")[1].split(",")[0])
    assert str(out) not in scratch and not folder.exists()
    assert "writes the run directory" in logs[0]


def test_workers_read_disjoint_rows_that_cover_the_training_set_every_epoch(two_workers, data_file):
    out, _, rows = two_workers
    n_train = json.loads((out / "config.json").read_text())["split"]["n_train"]
    assert n_train % (2 * PER_REPLICA) == 0  # so that no row is left out of an epoch
    for epoch in range(EPOCHS):
        shares = [[r for kind, e, _, _, rs in worker if kind == "train" and e == epoch for r in rs]
                  for worker in rows]
        assert len(shares[0]) == len(shares[1]) == n_train // 2
        assert not set(shares[0]) & set(shares[1])
        assert len(set(shares[0]) | set(shares[1])) == n_train  # every training row once
    val = [[r for kind, *_, rs in worker if kind == "val" for r in rs] for worker in rows]
    assert not set(val[0]) & set(val[1])
    with_val = json.loads((out / "config.json").read_text())["split"]["n_val"]
    assert len(val[0]) + len(val[1]) == with_val
    # The shares differ from epoch to epoch (the block order reshuffles without on_epoch_end).
    first = {r for kind, e, _, _, rs in rows[0] if kind == "train" and e == 0 for r in rs}
    second = {r for kind, e, _, _, rs in rows[0] if kind == "train" and e == 1 for r in rs}
    assert first != second


def test_two_workers_validate_like_one_process_with_the_same_global_batch(two_workers, data_file, tmp_path):
    from galaxytrain.training import fit

    out, _, _ = two_workers
    single = fit(FitConfig(data=data_file, out=tmp_path / "single", epochs=EPOCHS, batch_size=2 * PER_REPLICA,
                           progress=False), log=lambda line: None)
    distributed = read_history_csv(out / "history.csv")
    # Not the same batches (another epoch order, other dropout masks), so not the same numbers: measured,
    # 0.336 vs 0.350 after epoch 1, 0.122 vs 0.120 after epoch 4, where one epoch still moves it by 0.01.
    for one, two in zip(single.history[-2:], distributed[-2:]):
        assert abs(one["val_rmse"] - two["val_rmse"]) < 0.01, (one, two)
    assert distributed[-1]["val_rmse"] < 0.5 * distributed[0]["val_rmse"]  # and it did learn


def test_a_killed_worker_stops_the_other_in_one_line_and_the_run_resumes_to_the_same_weights(
        two_workers, data_file, tmp_path):
    _, logs, _ = two_workers
    out = tmp_path / "run"
    procs = _start_workers(data_file, out, tmp_path / "rows", EPOCHS)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            try:
                if json.loads((out / "state.json").read_text())["epochs_done"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert all(p.poll() is None for p in procs), "a worker ended before it was killed"
            time.sleep(0.05)
        else:
            pytest.fail("the chief committed no second epoch in time")
        os.kill(procs[1].pid, signal.SIGKILL)  # the other worker: the chief must notice, not hang
        _, err = procs[0].communicate(timeout=TIMEOUT_S)
        assert procs[0].returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: TF_CONFIG: a worker stopped") and "to resume" in last, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.communicate()
    resumed = _finish(_start_workers(data_file, out, tmp_path / "rows", EPOCHS))
    assert "resuming" in resumed[0] and "resuming" in resumed[1]
    assert _fingerprint(resumed[0]) == _fingerprint(resumed[1]) == _fingerprint(logs[0])
    assert [row["epoch"] for row in read_history_csv(out / "history.csv")] == list(range(1, EPOCHS + 1))


def test_mirrored_on_two_logical_cpus_trains_like_two_workers(two_workers, data_file, tmp_path):
    out, logs, _ = two_workers
    code = ("import sys, tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "from galaxytrain.cli import main\n"
            "main(sys.argv[1:])\n")
    run = tmp_path / "mirrored"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PYTHONPATH": str(REPO)}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", code, "fit", "--data", str(data_file), "--out", str(run),
                           "--strategy", "mirrored", "--epochs", str(EPOCHS), "--batch-size", str(PER_REPLICA),
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s) on" in proc.stdout and "CPU:1" in proc.stdout
    _fingerprint(proc.stdout)
    # Two replicas in one process see the same shares as two workers with one each.
    for one, two in zip(read_history_csv(run / "history.csv"), read_history_csv(out / "history.csv")):
        assert abs(one["val_rmse"] - two["val_rmse"]) < 1e-5, (one, two)


@pytest.mark.parametrize("extra", [("--learning-rate", "0.01"), ("--epochs", str(EPOCHS + 1))])
def test_workers_with_other_options_all_stop_in_one_line_instead_of_hanging(data_file, tmp_path, extra):
    """Other --epochs too: found before the first step, not after one worker had finished."""
    errors = _finish(_start_workers(data_file, tmp_path / "run", tmp_path / "rows", 2,
                                    worker_1_extra=extra), code=1)
    for err in errors:
        lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "TF_CONFIG" in lines[0] and "other options" in lines[0], err[-2000:]
        assert "Traceback" not in err
    assert not (tmp_path / "run" / "state.json").exists()


def _lone_worker(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    """Worker 0 of a TF_CONFIG of two, started alone: its peer never comes."""
    hosts = [f"localhost:{p}" for p in _free_ports(2)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO),
           "PYTHONUNBUFFERED": "1",
           "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 0}})}
    cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out", str(out), "--strategy",
           "multi-worker", "--epochs", "1", "--batch-size", str(PER_REPLICA), "--no-progress", *extra]
    # Ctrl-C as at a terminal: a shell starts background jobs (`pytest &`) with SIGINT ignored, which their
    # children inherit and Python keeps, so the SIGINT case failed whenever the suite ran in the background.
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_a_worker_whose_peer_never_joins_gives_up_after_the_join_timeout(data_file, tmp_path):
    proc = _lone_worker(data_file, tmp_path / "run", "--join-timeout", "3")
    started = time.monotonic()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and time.monotonic() - started < 60, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "joined within the --join-timeout (missing: localhost:" in errors[0], err[-2000:]
    assert "Traceback" not in err


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_a_worker_waiting_for_its_peer(data_file, tmp_path, sig, code):
    """It waits inside TensorFlow, where Python's handlers never ran: SIGTERM and Ctrl-C did nothing."""
    proc = _lone_worker(data_file, tmp_path / "run", "--join-timeout", "0")
    try:
        waiting = ""
        while "waiting for the 2 workers" not in waiting:
            line = proc.stdout.readline()
            assert line, proc.communicate()[1][-2000:]
            waiting += line
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code and time.monotonic() - sent < 15, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM): interrupted" if code == 143 else
                                                   "interrupted (a fit resumes")



def test_sigterm_ends_a_training_chief_at_once(data_file, tmp_path):
    """TensorFlow's runtime took SIGTERM over: a chief sent it trained two more epochs. Now it stops, resumable."""
    out = tmp_path / "run"
    procs = _start_workers(data_file, out, tmp_path / "rows.jsonl", 200)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "state.json").exists():
            assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-2000:]
            time.sleep(0.05)
        sent = time.monotonic()
        procs[0].send_signal(signal.SIGTERM)
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == 143 and took < 30, err[-2000:]
    assert json.loads((out / "state.json").read_text())["epochs_done"] < 200
