"""A time budget (``fit --hours``): as many epochs as fit in it on this machine, planned once.

The length of a run with a decaying learning rate must be known before the
decay starts, and the speed of a machine only once it has trained. So a
budgeted run trains its first epoch towards ``--epochs`` (the ceiling),
then plans: the epochs of that first epoch's time (training, validation)
that fill `MARGIN` of the budget, at most the ceiling. The plan is
committed with the first epoch in state.json, and the schedules span it
from the second epoch on; a resumed run reads the plan back instead of
timing again, so it continues the run it interrupted. The plan depends on
the machine, as a budget must: a faster machine trains more epochs.
"""

from __future__ import annotations

import math
from time import perf_counter
from typing import Callable

import keras

#: The fraction of the budget planned for epochs; the rest covers what the first epoch's time does not
#: show (each epoch's checkpoint, about 2% of its time here; the start; a machine slower later).
MARGIN = 0.9


def planned_epochs(epoch_seconds: float, hours: float, ceiling: int, margin: float = MARGIN) -> int:
    """The whole epochs of `epoch_seconds` in `margin` of `hours`: at least 1 (the one timed), at most `ceiling`."""
    if not (epoch_seconds > 0 and math.isfinite(epoch_seconds)):
        raise ValueError(f"epoch_seconds must be positive and finite, got {epoch_seconds!r}")
    return max(1, min(int(ceiling), int(margin * hours * 3600.0 // epoch_seconds)))


def describe_plan(plan: dict) -> str:
    """The plan in one line of the log."""
    # The share of the ceiling is said because a deep cut costs accuracy (README: --hours), a small one little.
    kept = " (the --epochs ceiling)" if plan["epochs"] == plan["ceiling"] else \
        f" of the {plan['ceiling']} asked (--epochs; {plan['epochs'] / plan['ceiling']:.0%})"
    return (f"time budget {plan['hours']:.3g} h: the first epoch took {plan['epoch_seconds']:.1f} s, so this run "
            f"trains {plan['epochs']} epochs{kept}, {plan['margin']:.0%} of the budget; the learning-rate schedule "
            "spans them from epoch 2")


class PlanEpochs(keras.callbacks.Callback):
    """At the first epoch's end: the plan into `state` (committed with the epoch), told to `on_plan`.

    From then on training stops at the planned epoch. Put it before the
    callback that commits the epoch, so that the commit holds the plan.
    """

    def __init__(self, hours: float, ceiling: int, state: dict, on_plan: Callable[[int], None]):
        super().__init__()
        self.hours, self.ceiling, self.state, self.on_plan = float(hours), int(ceiling), state, on_plan
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if "plan" not in self.state:
            seconds = perf_counter() - self._t0
            self.state["plan"] = {"hours": self.hours, "ceiling": self.ceiling, "margin": MARGIN,
                                  "epoch_seconds": round(seconds, 3),
                                  "epochs": planned_epochs(seconds, self.hours, self.ceiling)}
            self.on_plan(self.state["plan"]["epochs"])
        if epoch + 1 >= self.state["plan"]["epochs"]:
            self.model.stop_training = True
