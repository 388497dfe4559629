"""fit --hours: the epochs planned from the first epoch's time, kept on resume, shared by an ensemble."""

from __future__ import annotations

import itertools
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from galaxyprep import InputError
from galaxytrain.config import FitConfig
from galaxytrain.models import load_model
from galaxytrain.run_dir import read_history_csv
from galaxytrain.training import budget, fit, fit_ensemble
from galaxytrain.training.schedule import scheduled_learning_rate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

#: Every epoch takes 100 s by the budget's clock: 0.1 h plans int(0.9 * 360 // 100) = 3 epochs.
EPOCH_S, HOURS, PLANNED, CEILING = 100.0, 0.1, 3, 6


def _config(data, out, **kw):
    base = dict(epochs=CEILING, hours=HOURS, batch_size=16, progress=False, lr_schedule="cosine", limit=64)
    base.update(kw)
    return FitConfig(data=data, out=out, **base)


@pytest.fixture
def tiny(make_galaxy_file):
    return make_galaxy_file(n=64, size=24, seed=5)


@pytest.fixture
def slow_clock(monkeypatch):
    """The budget's clock, moving EPOCH_S at every reading: each epoch timed takes EPOCH_S."""
    ticks = itertools.count(step=EPOCH_S)
    monkeypatch.setattr(budget, "perf_counter", lambda: float(next(ticks)))


def test_planned_epochs_fill_the_margin_of_the_budget_within_the_ceiling():
    assert budget.planned_epochs(33.7, 1.5, 150) == int(budget.MARGIN * 5400 // 33.7) == 144
    assert budget.planned_epochs(20.0, 1.5, 150) == 150  # a fast machine stops at the ceiling
    assert budget.planned_epochs(62.0, 1.5, 150) == 78   # an AVX2-only one trains fewer
    assert budget.planned_epochs(9999.0, 0.1, 150) == 1  # the epoch already trained
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="epoch_seconds"):
            budget.planned_epochs(bad, 1.0, 10)


def test_a_budgeted_run_plans_at_its_first_epoch_and_the_schedule_spans_the_plan(tiny, tmp_path, slow_clock):
    out = tmp_path / "run"
    logged: list[str] = []
    result = fit(_config(tiny, out), log=logged.append)
    assert result.epochs_done == result.planned_epochs == PLANNED
    state = json.loads((out / "state.json").read_text())
    assert state["plan"] == {"hours": HOURS, "ceiling": CEILING, "margin": budget.MARGIN, "epoch_seconds": EPOCH_S,
                             "epochs": PLANNED}
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["epochs"] == PLANNED and record["config"]["hours"] == HOURS
    assert record["plan"] == state["plan"]
    plan_line = [line for line in logged if line.startswith("time budget 0.1 h")]
    assert len(plan_line) == 1 and f"trains {PLANNED} epochs of the {CEILING} asked" in plan_line[0], logged
    assert any(line.startswith(f"epoch 1/{PLANNED}:") for line in logged), logged

    rows = read_history_csv(out / "history.csv")
    steps = int(np.ceil(record["split"]["n_train"] / 16))
    # The first epoch ran towards the ceiling; from the second the cosine spans the plan, to 0 at its end.
    lr = lambda step, epochs: scheduled_learning_rate("cosine", 1e-3, step / (epochs * steps))  # noqa: E731
    assert rows[0]["learning_rate"] == pytest.approx(lr(steps - 1, CEILING), rel=1e-4)
    assert rows[1]["learning_rate"] == pytest.approx(lr(2 * steps - 1, PLANNED), rel=1e-4)
    assert rows[2]["learning_rate"] == pytest.approx(lr(3 * steps - 1, PLANNED), rel=1e-4)

    # The same command again: the plan stands (not timed again), nothing to do.
    again = fit(_config(tiny, out, hours=10.0), log=lambda s: None)
    assert again.epochs_done == PLANNED and again.initial_epoch == PLANNED


def test_a_killed_budgeted_run_resumes_its_plan_and_equals_the_uninterrupted_one(tiny, tmp_path, monkeypatch,
                                                                                slow_clock):
    from galaxytrain.training import callbacks

    whole = fit(_config(tiny, tmp_path / "whole"), log=lambda s: None)
    original = callbacks.RunDirCallback.on_epoch_end

    def killed_after_the_first(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.RunDirCallback, "on_epoch_end", killed_after_the_first)
        with pytest.raises(KeyboardInterrupt):
            fit(_config(tiny, tmp_path / "resumed"), log=lambda s: None)
    # Resumed on a machine ten times as fast: a new timing would plan the ceiling; the plan made stands.
    faster = itertools.count(step=EPOCH_S / 10)
    monkeypatch.setattr(budget, "perf_counter", lambda: float(next(faster)))
    resumed = fit(_config(tiny, tmp_path / "resumed"), log=lambda s: None)
    assert resumed.initial_epoch == 1 and resumed.epochs_done == whole.epochs_done == PLANNED
    a = load_model(tmp_path / "whole" / "last.keras")
    b = load_model(tmp_path / "resumed" / "last.keras")
    for x, y in zip(a.get_weights() + [v.numpy() for v in a.optimizer.variables],
                    b.get_weights() + [v.numpy() for v in b.optimizer.variables]):
        np.testing.assert_array_equal(x, y)


def test_an_ensemble_shares_the_budget_and_its_members_train_the_first_ones_plan(tiny, tmp_path, slow_clock):
    logged: list[str] = []
    results = fit_ensemble(_config(tiny, tmp_path / "ens", hours=2 * HOURS), [0, 1], log=logged.append)
    assert [r.epochs_done for r in results] == [PLANNED, PLANNED]
    first, second = (json.loads((tmp_path / "ens" / m / "config.json").read_text())["config"]
                     for m in ("seed0", "seed1"))
    assert first["hours"] == pytest.approx(HOURS) and first["epochs"] == PLANNED
    assert second["hours"] is None and second["epochs"] == PLANNED  # not timed again: the members are alike
    assert any("0.2 h for 2 members, 0.1 h each" in line for line in logged), logged


def test_a_run_started_without_a_budget_keeps_its_epochs(tiny, tmp_path, slow_clock):
    out = tmp_path / "run"
    fit(_config(tiny, out, epochs=1, hours=None), log=lambda s: None)
    logged: list[str] = []
    result = fit(_config(tiny, out), log=logged.append)
    assert result.epochs_done == 1 and result.planned_epochs is None
    assert any("started without a budget and keeps its length (1 epoch)" in line for line in logged), logged


def test_bad_budgets_are_input_errors(tiny, tmp_path):
    for hours, message in ((-1.0, "must be a number of hours"), (float("nan"), "must be a number of hours")):
        with pytest.raises(InputError, match=message):
            fit(_config(tiny, tmp_path / "bad", hours=hours), log=lambda s: None)
    with pytest.raises(InputError, match="under --strategy mirrored give --epochs"):
        _config(tiny, tmp_path / "bad", strategy="mirrored").check()
    assert not (tmp_path / "bad").exists()


def test_the_cli_passes_hours_on(tiny, tmp_path):
    from typer.testing import CliRunner

    from galaxytrain.cli import app

    result = CliRunner().invoke(app, ["fit", "--data", str(tiny), "--out", str(tmp_path / "run"), "--hours", "-2",
                                      "--no-progress"])
    assert result.exit_code == 1 and "--hours: must be a number of hours" in result.output, result.output
    assert "Traceback" not in result.output
