"""How TensorFlow computes a training here: which CPU kernels, which float type, whether XLA compiles it.

Each choice follows the hardware, with an option that forces it, because the
wrong one costs several times the training time:

- **oneDNN kernels on every x86 CPU.** TensorFlow turns its oneDNN kernels on
  by itself only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX; an
  AVX2-only CPU gets Eigen's. `prefer_onednn` asks for oneDNN everywhere
  (before TensorFlow is imported; TF_ENABLE_ONEDNN_OPTS=0 still says no):
  galaxy_parts trained 1.8x (a bare step) to 2.5x (`fit --recipe best`)
  faster with them on this project's AMD EPYC limited to AVX2
  (bench/RESULTS.md).
- **Mixed precision only on units built for it** (`choose_precision`).
  Emulated it costs far more than it saves: on a 2-core AMD EPYC with AVX2
  only, galaxy_parts trained at 3 images/s in bfloat16 against 22 in float32
  (TensorFlow #45441 reports the same). With no explicit choice a GPU of
  compute capability 7.0 or more (tensor cores) computes in float16
  (``mixed_float16``, with Keras' loss scaling); a CPU in bfloat16
  (``mixed_bfloat16``) only where its flags name a bfloat16 unit that oneDNN
  uses: ``amx_bf16`` or ``avx512_bf16`` on x86, ``bf16`` on 64-bit Arm; read
  from /proc/cpuinfo (so on other systems the CPU counts as having none),
  less those that ONEDNN_MAX_CPU_ISA hides, and none without oneDNN;
  everything else in float32.
  Variables and the model's outputs stay float32 under either mixed policy.
- **Prediction in the model's precision where it is native** (`inference_policy`):
  a model trained in bfloat16 predicts in float32 on a CPU without the units.
- **XLA off on a CPU** (`choose_jit_compile`): measured per model, it lost
  for every one, in float32 and bfloat16, with oneDNN at AVX-512 or AVX2
  (galaxy_parts 0.28-0.66x, vgg6 0.09-0.19x, galaxy_cnn 0.43-0.64x;
  bench/bench_train_speed.py). On a GPU Keras decides ("auto").
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

#: CPU flags (as /proc/cpuinfo spells them) of units that run bfloat16 natively.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
#: Tensor cores, whose float16 matmuls and convolutions mixed precision is for.
MIN_FLOAT16_CAPABILITY = (7, 0)

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def prefer_onednn() -> None:
    """Ask TensorFlow for its oneDNN kernels on any x86 CPU; a TF_ENABLE_ONEDNN_OPTS already set wins.

    Only has an effect before TensorFlow is imported (galaxytrain's
    ``__init__`` calls it).
    """
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs its oneDNN kernels (False where that cannot be asked)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def choose_jit_compile(requested: bool | None, on_gpu: bool) -> tuple[bool | str, str]:
    """Keras' ``jit_compile`` for `requested` (True/False forced, None: by the device), and why."""
    if requested is not None:
        return requested, "--jit-compile" if requested else "--no-jit-compile"
    if on_gpu:
        return "auto", "on a GPU Keras compiles with XLA where the model allows it"
    return False, "off on a CPU, where it trained every model here slower (bench/bench_train_speed.py)"


@dataclass(frozen=True)
class Precision:
    """A Keras dtype policy and, for the log, why it was chosen."""

    policy: str
    reason: str

    @property
    def mixed(self) -> bool:
        return self.policy != "float32"


#: ONEDNN_MAX_CPU_ISA values (oneDNN's names) below which oneDNN uses no x86 bfloat16 unit, and
#: those that allow AVX512_BF16 but not AMX.
_ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
_ISA_WITHOUT_AMX = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512")


def cpu_bfloat16_units(cpuinfo: str | None = None, max_isa: str | None = None,
                       onednn: bool | None = None) -> tuple[str, ...]:
    """The CPU's bfloat16 units among CPU_BFLOAT16_FLAGS that oneDNN may use; () without /proc/cpuinfo.

    oneDNN's ONEDNN_MAX_CPU_ISA (read from the environment when `max_isa`
    is None) hides the units above it: with AVX2 a bfloat16 CPU computes
    as an AVX2-only one does, which is how such a CPU is imitated here.
    Without oneDNN (`onednn` False; None: TF_ENABLE_ONEDNN_OPTS=0 in the
    environment says so) TensorFlow's Eigen kernels use none of them.
    """
    if onednn is None:
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip() not in ("0", "false", "False")
    if not onednn:
        return ()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return ()
    max_isa = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if max_isa is None else max_isa).strip().upper()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86 says flags, Arm says Features
            flags.update(value.split())
    if max_isa in _ISA_WITHOUT_BF16:
        flags -= {"amx_bf16", "avx512_bf16"}
    elif max_isa in _ISA_WITHOUT_AMX:
        flags.discard("amx_bf16")
    return tuple(flag for flag in CPU_BFLOAT16_FLAGS if flag in flags)


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """(major, minor) of each visible GPU, None where TensorFlow does not say."""
    import tensorflow as tf

    out: list[tuple[int, int] | None] = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (RuntimeError, ValueError):
            capability = None
        out.append(tuple(int(v) for v in capability) if capability else None)
    return out


def choose_precision(requested: bool | None, gpus: Sequence[tuple[int, int] | None],
                     cpu_units: Sequence[str]) -> Precision:
    """The policy for `requested` (True/False forced, None: by the hardware) on this hardware.

    Forced mixed precision on hardware without the units is honoured, with
    the reason saying that it is emulated and slow.
    """
    if gpus:
        fast = _tensor_cores(gpus)
        shown = ", ".join("compute capability unknown" if c is None else f"compute capability {c[0]}.{c[1]}"
                          for c in gpus)
        if requested is False:
            return Precision("float32", "--no-mixed-precision")
        if requested is True:
            return Precision("mixed_float16", "--mixed-precision" + ("" if fast else
                             f" (GPU {shown}: no tensor cores, float16 gains little there)"))
        if fast:
            return Precision("mixed_float16", f"GPU with tensor cores ({shown})")
        return Precision("float32", f"GPU without tensor cores ({shown}): mixed precision would not pay")
    native = ", ".join(cpu_units)
    if requested is False:
        return Precision("float32", "--no-mixed-precision")
    if requested is True:
        return Precision("mixed_bfloat16", "--mixed-precision" + (f" (native on this CPU: {native})" if cpu_units
                         else " on a CPU without native bfloat16 (no AMX, AVX512_BF16 or Arm BF16): emulated, "
                              "several times slower than float32 here"))
    if cpu_units:
        return Precision("mixed_bfloat16", f"the CPU runs bfloat16 natively ({native})")
    return Precision("float32", "the CPU has no native bfloat16 (no AMX, AVX512_BF16 or Arm BF16 among its "
                                "flags), where mixed precision runs several times slower")


def natively_fast(policy: str, gpus: Sequence[tuple[int, int] | None], cpu_units: Sequence[str]) -> bool:
    """Whether `policy` runs on units built for it here (float32 always does)."""
    if policy == "float32":
        return True
    if gpus:
        return policy == "mixed_float16" and _tensor_cores(gpus)
    return policy == "mixed_bfloat16" and bool(cpu_units)


def _tensor_cores(gpus: Sequence[tuple[int, int] | None]) -> bool:
    return all(c is not None and c >= MIN_FLOAT16_CAPABILITY for c in gpus)


def training_precision(requested: bool | None, resumed_policy: str | None = None,
                       gpus: Sequence[tuple[int, int] | None] | None = None,
                       cpu_units: Sequence[str] | None = None) -> Precision:
    """The policy of a training that starts, or resumes a run that computed in `resumed_policy`.

    An option given wins. Without one, a resumed run keeps its own policy
    where this hardware runs it natively: an exact resume is one on the same
    hardware in the same precision. On hardware without the units for it
    (a bfloat16 run moved to an AVX2 machine, a float16 one from a GPU to a
    CPU) the policy follows this hardware instead, and the reason says that
    the resumed epochs then differ from an uninterrupted run, as they would
    on other hardware in any precision.
    """
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    cpu_units = cpu_bfloat16_units() if cpu_units is None else cpu_units
    here = choose_precision(requested, gpus, cpu_units)
    if resumed_policy is None or resumed_policy == here.policy:
        return here
    if requested is None and natively_fast(resumed_policy, gpus, cpu_units):
        return Precision(resumed_policy, f"the run's own: it computed in {resumed_policy} before, which this "
                                         f"hardware runs natively (a new run here would take {here.policy})")
    unlike = "not natively here" if requested is None else "before"
    return Precision(here.policy, f"{here.reason}; the resumed run computed in {resumed_policy} {unlike}, so "
                                  "its next epochs differ from an uninterrupted run's")


def recorded_policy(record: dict | None) -> str | None:
    """The policy a run's config.json says it trained in; None for a run that never started."""
    gpu = (record or {}).get("gpu")
    if not gpu:
        return None
    if gpu.get("policy") in POLICIES:
        return gpu["policy"]
    # Written before the policy was recorded: mixed meant float16 on a GPU, bfloat16 on a CPU.
    if not gpu.get("mixed_precision"):
        return "float32"
    return "mixed_float16" if gpu.get("n_gpus") else "mixed_bfloat16"


def inference_policy(saved: str, gpus: Sequence[tuple[int, int] | None] | None = None,
                     cpu_units: Sequence[str] | None = None) -> str:
    """The policy to predict in with a model saved in `saved`: its own where it runs natively, else float32.

    A model trained in bfloat16 on an AMX machine then predicts at float32
    speed on an AVX2 laptop instead of emulating bfloat16 there.
    """
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    cpu_units = cpu_bfloat16_units() if cpu_units is None else cpu_units
    return saved if natively_fast(saved, gpus, cpu_units) else "float32"
