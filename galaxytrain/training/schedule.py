"""Optimizer, loss and learning-rate schedule: how the weights move.

The schedule is a function of the position in the training alone, so that
a resumed run continues the same curve.
"""

from __future__ import annotations

import keras
import numpy as np

from ..choices import KERAS_LOSSES, LR_SCHEDULES, Loss, LrSchedule


def compile_model(model: keras.Model, loss: Loss, learning_rate: float, weight_decay: float = 0.0) -> None:
    """Adam (AdamW with weight decay), the chosen loss, and an RMSE metric (the Kaggle score)."""
    if weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer, loss=KERAS_LOSSES[loss],
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])


def scheduled_learning_rate(schedule: LrSchedule, base: float, progress: float) -> float:
    """The learning rate at `progress` (0 at the first batch, 1 after the last) of a training."""
    progress = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return float(base)
    if schedule == "cosine":
        return float(base * 0.5 * (1.0 + np.cos(np.pi * progress)))
    if schedule == "step":
        return float(base * (1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; available: {', '.join(LR_SCHEDULES)}")


def extension_note(schedule: LrSchedule, base: float, old_epochs: int, new_epochs: int, done: int) -> str:
    """What resuming a run with another --epochs does to its learning rate, in one line for the log.

    Extending means: the weights and optimizer carry on, and the schedule is
    the one of a run of the new length, taken up at the epoch reached. For
    a decaying schedule that raises the learning rate again (a warm
    restart): not the run a new-length training from the start would give.
    """
    ended = scheduled_learning_rate(schedule, base, done / max(old_epochs, 1))
    now = scheduled_learning_rate(schedule, base, done / max(new_epochs, 1))
    return (f"--epochs {old_epochs} -> {new_epochs}: the {schedule} learning-rate schedule now spans {new_epochs} "
            f"epochs, taken up at epoch {done + 1}: {now:.3g} there, where the run had reached {ended:.3g}; the "
            f"weights carry on, so this is not the run a {new_epochs}-epoch training from the start gives")


class LearningRateSchedule(keras.callbacks.Callback):
    """Set the optimizer's learning rate before every batch from (epoch, batch) alone.

    A function of the position in the training, not of a counter, so that a
    resumed run continues the same curve (a run resumed with more epochs
    stretches the rest of it).
    """

    def __init__(self, schedule: LrSchedule, base: float, epochs: int, steps_per_epoch: int):
        super().__init__()
        scheduled_learning_rate(schedule, base, 0.0)  # rejects an unknown name now
        self.schedule, self.base = schedule, float(base)
        self.total_steps = max(1, int(epochs) * int(steps_per_epoch))
        self.steps_per_epoch = int(steps_per_epoch)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + int(batch)
        self.model.optimizer.learning_rate.assign(scheduled_learning_rate(self.schedule, self.base,
                                                                          step / self.total_steps))
