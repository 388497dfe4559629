"""GPU set-up before TensorFlow touches the device: memory growth, a memory cap, mixed precision.

TensorFlow fixes its device configuration the first time a GPU is used, so
`configure_gpus` must run before any model is built. Memory growth and a
logical-device memory limit cannot both be set on one GPU: when a limit is
given it wins and growth is left off (and the returned setup says so).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

from galaxyprep import InputError

from .compute import Precision, training_precision

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "tb": 1000**4,
}


def parse_memory_size(text: str | int) -> int:
    """'12GiB' -> bytes; GiB/MiB/KiB are powers of 2, GB/MB/KB powers of 10, no unit is bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise InputError("--gpu-memory-limit", f"cannot read {text!r} as a memory size (e.g. 12GiB, 12GB, 11000MiB)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise InputError("--gpu-memory-limit", f"{text!r} is not a positive size")
    return value


@dataclass(frozen=True)
class GpuSetup:
    """What `configure_gpus` did, for the log and config.json."""

    n_gpus: int
    memory_growth: bool
    memory_limit_mib: int | None
    precision: Precision
    notes: tuple[str, ...] = ()

    @property
    def mixed_precision(self) -> bool:
        return self.precision.mixed


def configure_gpus(memory_limit: str | int | None = None, memory_growth: bool = True,
                   mixed_precision: bool | None = None, log: Callable[[str], None] = print,
                   resumed_policy: str | None = None) -> GpuSetup:
    """Apply the GPU options to every visible GPU, and the precision (see `galaxytrain.compute`).

    `mixed_precision` None chooses by the hardware; `resumed_policy` is the
    policy of the run being resumed, kept where this hardware runs it natively.
    On a machine without a GPU, say so and carry on.
    """
    tf = import_tensorflow_quietly()
    import keras

    limit_bytes = parse_memory_size(memory_limit) if memory_limit is not None else None
    limit_mib = None if limit_bytes is None else max(1, limit_bytes // 2**20)
    notes: list[str] = []
    gpus = tf.config.list_physical_devices("GPU")
    growth_applied = False
    if not gpus:
        notes.append("no GPU found: training on the CPU"
                     + (" (--gpu-memory-limit ignored)" if limit_mib is not None else ""))
    else:
        if limit_mib is not None and memory_growth:
            notes.append(f"GPU memory limited to {limit_mib} MiB; memory growth off "
                         "(TensorFlow cannot do both on one GPU: the limit wins)")
        for gpu in gpus:
            try:
                if limit_mib is not None:
                    tf.config.set_logical_device_configuration(
                        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mib)])
                elif memory_growth:
                    tf.config.experimental.set_memory_growth(gpu, True)
                    growth_applied = True
            except (RuntimeError, ValueError) as exc:  # devices already initialised
                notes.append(f"GPU options not applied to {gpu.name}: {str(exc).splitlines()[0]}")
        notes.append(f"{len(gpus)} GPU(s): " + (f"memory limit {limit_mib} MiB" if limit_mib is not None
                                              else "memory growth on" if growth_applied else "memory growth off"))
    precision = training_precision(mixed_precision, resumed_policy)
    keras.mixed_precision.set_global_policy(precision.policy)
    notes.append(f"precision: {precision.policy}"
                 + (" compute, float32 variables and outputs" if precision.mixed else "") + f" ({precision.reason})")
    for note in notes:
        log(note)
    return GpuSetup(len(gpus), growth_applied, limit_mib if gpus else None, precision, tuple(notes))


#: Start-up lines that TF_CPP_MIN_LOG_LEVEL does not reach (absl logs them before it is set
#: up, TensorFlow issues #79029, #100442) and that say nothing a user can act on.
_STARTUP_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ")
_STARTUP_NOISE_TEXT = ("failed call to cuInit",)


def import_tensorflow_quietly():
    """Import TensorFlow and list the GPUs with its C++ start-up chatter filtered out.

    TF_CPP_MIN_LOG_LEVEL=2 is set first; the info lines absl prints regardless
    (oneDNN, missing CUDA drivers) are dropped, warnings and errors still pass.
    `configure_gpus` reports the devices in one line instead.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines()
            if line.strip() and not line.startswith(_STARTUP_NOISE)
            and not any(t in line for t in _STARTUP_NOISE_TEXT)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
    return tf


def peak_gpu_memory(device: str = "GPU:0") -> int | None:
    """Peak bytes TensorFlow allocated on the GPU since the last reset; None without a GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    try:
        return int(tf.config.experimental.get_memory_info(device)["peak"])
    except (ValueError, RuntimeError):
        return None


def reset_peak_gpu_memory(device: str = "GPU:0") -> None:
    """Start a new peak measurement (per epoch); a no-op without a GPU."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.reset_memory_stats(device)
        except (ValueError, RuntimeError):
            pass
