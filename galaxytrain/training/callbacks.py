"""What happens around each epoch: the run directory's commit, the tree head's warm-up, divergence."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from galaxyprep import InputError, Progress

from ..gpu import peak_gpu_memory, reset_peak_gpu_memory
from ..models import set_normalize
from ..run_dir import RunDir
from .curves import plot_training_curve
from .rng_state import seed_generator_states
from .schedule import averaged_weights, is_averaging

Log = Callable[[str], None]


class RunDirCallback(keras.callbacks.Callback):
    """At each epoch end: a history row, then last/best models and state committed atomically."""

    def __init__(self, run: RunDir, state: dict, monitor: str, n_train: int, baseline: float | None,
                 log: Log, total_epochs: int, restart_best_at: int | None = None):
        super().__init__()
        self.run, self.state, self.monitor = run, state, monitor
        self.n_train, self.baseline, self.log = n_train, baseline, log
        self.total_epochs = total_epochs
        self.restart_best_at = restart_best_at  # 1-based epoch that any finite value makes best
        self._t0 = 0.0

    def set_total_epochs(self, epochs: int) -> None:
        self.total_epochs = int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        reset_peak_gpu_memory()
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._t0
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        # Through numpy: under tf.distribute the rate is a MirroredVariable, which float() refuses.
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["learning_rate"] = float(f"{rate:.7g}")
        row["epoch_time_s"] = round(seconds, 3)
        row["images_per_s"] = round(self.n_train / seconds, 1) if seconds > 0 else None
        peak = peak_gpu_memory()
        row["peak_gpu_mib"] = None if peak is None else round(peak / 2**20, 1)
        value = row.get(self.monitor)
        best = None if row["epoch"] == self.restart_best_at else self.state.get("best_value")
        improved = value is not None and np.isfinite(value) and (best is None or value < best)
        state = self.state
        state["history"] = [r for r in state["history"] if r["epoch"] < row["epoch"]] + [row]
        state["epochs_done"] = row["epoch"]
        if improved:
            state["best_epoch"], state["best_value"] = row["epoch"], value
        state["seed_generators"] = seed_generator_states(self.model)
        self.run.commit_epoch(self.model, state, improved,
                              best_weights=averaged_weights if is_averaging(self.model) else None)
        plot_training_curve(state["history"], self.run.curve, baseline=self.baseline)
        note = "saved best.keras" if improved else f"best: epoch {state['best_epoch']}"
        metrics = ", ".join(f"{k} {row[k]:.5f}" for k in ("loss", "rmse", "val_loss", "val_rmse") if k in row)
        speed = f"{seconds:.1f} s" + ("" if row["images_per_s"] is None else f", {row['images_per_s']:.0f} images/s")
        if row["peak_gpu_mib"] is not None:
            speed += f", peak GPU memory {row['peak_gpu_mib']:.0f} MiB"
        self.log(f"epoch {row['epoch']}/{self.total_epochs}: {metrics}; {speed}; {note}")


class ValidateAveragedWeights(keras.callbacks.Callback):
    """Validate the optimizer's moving average of the weights (``--ema``); train the trained ones on."""

    def __init__(self):
        super().__init__()
        self._block = None

    def on_test_begin(self, logs=None):
        self._block = averaged_weights(self.model)
        self._block.__enter__()

    def on_test_end(self, logs=None):
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(None, None, None)


class EnableTreeNormalization(keras.callbacks.Callback):
    """Train the first ``at_epoch`` epochs without the tree normalisation, then with it.

    Epochs count from 0 as in Keras: with ``at_epoch=2`` epochs 0 and 1 run
    unnormalised and the normalisation is on from epoch 2 on (and after
    training). ``at_epoch=0`` normalises throughout.
    """

    def __init__(self, at_epoch: int, verbose: bool = False):
        super().__init__()
        if at_epoch < 0:
            raise ValueError(f"at_epoch must be >= 0, got {at_epoch}")
        self.at_epoch = int(at_epoch)
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        # Set every epoch, so that a run resumed with initial_epoch > at_epoch is right too.
        set_normalize(self.model, epoch >= self.at_epoch)
        if self.verbose and epoch == self.at_epoch:
            print(f"\nepoch {epoch + 1}: tree normalisation on")

    def on_train_end(self, logs=None):
        set_normalize(self.model, True)


class OpenEncoder(keras.callbacks.Callback):
    """Fine-tuning: the encoder frozen for the first ``at_epoch`` epochs (the new head learns alone), then open.

    Sets `LayerwiseAdam`'s gate at each epoch's start from the epoch number
    alone, so that a resumed run is where an uninterrupted one would be.
    """

    def __init__(self, at_epoch: int, log: Log | None = None):
        super().__init__()
        self.at_epoch, self.log = int(at_epoch), log

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)  # under loss scaling
        if not optimizer.built:  # Keras builds it at the first step, after this; the gate must be set before
            optimizer.build(self.model.trainable_variables)
        optimizer.encoder_gate.assign(1.0 if epoch >= self.at_epoch else 0.0)
        if self.log is not None and epoch == self.at_epoch and epoch > 0:
            self.log(f"epoch {epoch + 1}: the encoder learns from here on (layer-wise learning rates)")


class StopWhenStale(keras.callbacks.Callback):
    """Stop once the monitored value has not improved for `patience` epochs (after RunDirCallback's commit).

    Decided from the state's best epoch, which a resumed run reads back, so
    it stops where an uninterrupted one would.
    """

    def __init__(self, state: dict, patience: int, log: Log):
        super().__init__()
        self.state, self.patience, self.log = state, int(patience), log

    def on_epoch_end(self, epoch, logs=None):
        if is_stale(self.state, self.patience):
            self.model.stop_training = True
            self.log(f"stopped: no better validation loss for {self.patience} epochs since epoch "
                     f"{self.state.get('best_epoch')} (--patience {self.patience})")


def is_stale(state: dict, patience: int | None) -> bool:
    """Whether a run's best epoch lies `patience` or more epochs behind the last one done."""
    best = state.get("best_epoch")
    return bool(patience) and best is not None and int(state["epochs_done"]) - int(best) >= int(patience)


class TrainingDiverged(InputError):
    """The loss became NaN or infinite: nothing after it is worth keeping."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stop at the first batch whose loss is not finite, before that epoch is committed.

    The run directory keeps its last completed epoch; the error says which and
    what to change. Placed before `RunDirCallback`, so that an epoch whose
    mean loss is not finite is never committed either.
    """

    def __init__(self, run_dir: Path, state: dict):
        super().__init__()
        self.run_dir, self.state = Path(run_dir), state
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self._check((logs or {}).get("loss"), f"batch {int(batch) + 1} of epoch {self._epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check((logs or {}).get("loss"), f"epoch {int(epoch) + 1}")

    def _check(self, loss, where: str) -> None:
        if loss is None or math.isfinite(float(loss)):
            return
        done = int(self.state.get("epochs_done", 0))
        kept = (f"{self.run_dir} keeps epoch {done} (last.keras; best.keras: epoch {self.state.get('best_epoch')})"
                if done else "no epoch was completed, so no model was saved")
        raise TrainingDiverged(self.run_dir, f"training diverged: loss {float(loss)} at {where}; {kept}; "
                                             "lower --learning-rate and train again (with --overwrite)")


class LogLearningRate(keras.callbacks.Callback):
    """Put the epoch's learning rate into the logs that the callbacks after this one see (TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochProgress(keras.callbacks.Callback):
    """A live bar inside each epoch (images done, images/s, time left), gone before the epoch's line."""

    def __init__(self, n_images: int, batch_size: int, epochs: int):
        super().__init__()
        self.n_images, self.batch_size, self.epochs = n_images, batch_size, epochs
        self._bar: Progress | None = None

    def set_total_epochs(self, epochs: int) -> None:
        self.epochs = int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self._bar = Progress(self.n_images, f"epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(min((int(batch) + 1) * self.batch_size, self.n_images))

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
