"""Optimizer, loss and learning-rate schedule: how the weights move.

The schedule is a function of the position in the training alone, so that
a resumed run continues the same curve.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
import numpy as np

from ..choices import KERAS_LOSSES, LR_SCHEDULES, Loss, LrSchedule


def compile_model(model: keras.Model, loss: Loss, learning_rate: float, weight_decay: float = 0.0,
                  scales: dict[str, float] | None = None, ema: float = 0.0) -> None:
    """Adam (AdamW with weight decay), the chosen loss, and an RMSE metric (the Kaggle score).

    `scales` (fine-tuning): a learning-rate factor per variable path, for
    the encoder's variables; they learn only while the optimizer's gate is
    open (`LayerwiseAdam`). `ema` > 0: the optimizer also keeps a moving
    average of the weights (Keras' ``use_ema``), an optimizer variable that
    a resumed run gets back; see `averaged_weights`.
    """
    averaging = dict(use_ema=True, ema_momentum=float(ema)) if ema > 0 else {}
    if scales is not None:
        optimizer = LayerwiseAdam(scales=scales, learning_rate=learning_rate, **averaging)
    elif weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay, **averaging)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, **averaging)
    model.compile(optimizer=optimizer, loss=KERAS_LOSSES[loss],
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])


def _averaging_optimizer(model: keras.Model):
    """The optimizer that keeps the weights' moving average (under a loss-scale wrapper too), or None."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not getattr(optimizer, "use_ema", False) or not hasattr(optimizer, "_model_variables_moving_average"):
        return None
    return optimizer


def is_averaging(model: keras.Model) -> bool:
    """Whether the model's optimizer keeps a moving average of its weights (``--ema``)."""
    return _averaging_optimizer(model) is not None


@contextmanager
def averaged_weights(model: keras.Model):
    """Within the block the model holds the optimizer's moving average of its weights; after it, exactly
    the trained weights again (copied, not swapped by arithmetic as Keras' SwapEMAWeights does, which
    rounds them). Without weight averaging the block sees the weights as they are.
    """
    optimizer = _averaging_optimizer(model)
    if optimizer is None:
        yield
        return
    variables = list(optimizer._trainable_variables)
    trained = [keras.ops.convert_to_numpy(v) for v in variables]
    for v, average in zip(variables, optimizer._model_variables_moving_average):
        v.assign(keras.ops.convert_to_numpy(average))
    try:
        yield
    finally:
        for v, value in zip(variables, trained):
            v.assign(value)


@keras.saving.register_keras_serializable(package="galaxytrain")
class LayerwiseAdam(keras.optimizers.Adam):
    """Adam with a learning-rate factor per variable, and a gate that freezes the scaled ones.

    Fine-tuning (as zoobot does it): the new head learns at the full rate;
    each encoder variable at ``scales[path]`` of it (smaller the further from
    the head, layer-wise decay), and only while ``encoder_gate`` is 1. The
    gate is a variable of the optimizer, set at each epoch's start from the
    epoch number alone (`OpenEncoder`), so it is saved with the optimizer and
    a resumed run continues exactly. Adam's step is proportional to the
    learning rate, so a factor scales the step itself. Variables not in
    `scales` (the head) learn at the full rate, ungated.
    """

    def __init__(self, scales: dict[str, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scales = {str(k): float(v) for k, v in (scales or {}).items()}
        self._factors: list[float | None] = []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.encoder_gate = self.add_variable((), initializer="zeros", dtype="float32", name="encoder_gate")
        self._factors = [self.scales.get(v.path) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors[self._get_variable_index(variable)]
        if factor is None:
            return super().update_step(gradient, variable, learning_rate)
        gate = keras.ops.cast(self.encoder_gate, "float32")
        return super().update_step(gradient, variable, keras.ops.cast(learning_rate, "float32") * gate * factor)

    def get_config(self):
        return {**super().get_config(), "scales": dict(self.scales)}


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

    def set_total_epochs(self, epochs: int) -> None:
        """Span `epochs` from the next batch on (a budget's plan, `budget.PlanEpochs`)."""
        self.total_steps = max(1, int(epochs) * self.steps_per_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + int(batch)
        self.model.optimizer.learning_rate.assign(scheduled_learning_rate(self.schedule, self.base,
                                                                          step / self.total_steps))
