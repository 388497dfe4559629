"""Training speed of each model against this machine's matrix-multiply limit, with and without XLA.

For each model (at the input size its recipe or the quick start uses) and
each precision (float32 everywhere; mixed_bfloat16 where the CPU runs it
natively, or with --precisions), a compiled model trains on a batch of 64
random images in memory (`train_on_batch`), XLA off and on (`jit_compile`):
three untimed steps, then the median of --steps timed ones. The limit is
the matrix multiply of the same machine, measured in the same run before and
after the models (numpy's sgemm and TensorFlow's matmul, float32; TensorFlow
bfloat16 where trained in it). FLOPs per training image come from the model
(galaxytrain.models.cost: Conv2D and Dense multiply-adds x 2, three forward
passes a step).

With --torch, the same galaxy_parts net written in PyTorch trains on the same
arrays on the CPU as the peer (float32, eager and torch.compile where it
works); torch is installed for the bench only (`pip install torch==2.13.0`),
never a dependency of the package.

With --part fit, what a user runs instead: `galaxytrain fit --recipe best
--limit 512 --epochs 2` on the recipe's build of the real images, with no
precision option, with --mixed-precision and with --no-mixed-precision (in
that order, then again in reverse), and the second epoch's images/s of the
first against the faster of the other two.

    python bench/bench_train_speed.py [--models galaxy_parts vgg6 galaxy_cnn] [--steps 24] [--torch]
    python bench/bench_train_speed.py --part fit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, SHARED_GZ, build_file, machine  # noqa: E402

#: model -> (input size, head): the recipe's or the quick start's.
MODELS = {"galaxy_parts": (64, "tree"), "vgg6": (96, "sigmoid"), "galaxy_cnn": (64, "tree")}
BATCH = 64


def cpu_flags() -> str:
    """The flags that decide CPU training speed: AVX-512 subsets, AMX, bfloat16, FMA, AVX2."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    keep = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "avx_vnni")]
    return " ".join(sorted(set(keep))) or "none of avx2/avx512/amx"


def matmul_gflops(bfloat16: bool, n: int = 2048, repeats: int = 6) -> dict:
    """GFLOP/s of an n x n matrix multiply: numpy sgemm, TensorFlow float32 (and bfloat16), best of repeats.

    bfloat16 only where asked: without native units oneDNN's bfloat16 matmul
    is slow, and under ONEDNN_MAX_CPU_ISA=AVX2 it crashed (TensorFlow 2.21).
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    flops = 2.0 * n ** 3

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return flops / min(times) / 1e9

    out = {"numpy_f32": best(lambda: a @ b)}
    ta, tb = tf.constant(a), tf.constant(b)
    out["tf_f32"] = best(lambda: tf.linalg.matmul(ta, tb).numpy())
    if bfloat16:
        ha, hb = tf.cast(ta, tf.bfloat16), tf.cast(tb, tf.bfloat16)
        out["tf_bf16"] = best(lambda: tf.linalg.matmul(ha, hb).numpy())
    return out


def keras_speed(name: str, policy: str, xla: bool, steps: int) -> dict:
    """Training images/s of `name` under `policy`, XLA on or off, and its FLOPs per training image.

    Each step is timed alone (`train_on_batch` returns after the step's
    work), after three untimed steps that compile it; the median step
    stands for the rate, so a step slowed by the VM's neighbours does not.
    """
    import keras

    from galaxytrain.models import create_model
    from galaxytrain.models.cost import training_flops
    from galaxytrain.training.schedule import compile_model

    size, head = MODELS[name]
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = create_model(name, (size, size, 3), head=head)
        compile_model(model, "mse", 1e-3)
        model.jit_compile = xla
        rng = np.random.default_rng(0)
        x = rng.random((BATCH, size, size, 3), dtype=np.float32)
        y = rng.random((BATCH, 37), dtype=np.float32)
        times = []
        for step in range(3 + steps):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            if step >= 3:
                times.append(time.perf_counter() - t)
        return {"images_per_s": BATCH / float(np.median(times)), "train_flops": training_flops(model)}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def torch_galaxy_parts_speed(steps: int, compiled: bool) -> dict | None:
    """galaxytrain's galaxy_parts (8 parts of 40 px, conv stages 32-64-2x128-256, dense 256) in PyTorch.

    The tree head's normalisation is left out (a few hundred FLOPs): a
    linear 37-output layer ends it. Images/s, or None without torch.
    """
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    size, part = 64, 40

    def stage(cin: int, cout: int, n: int) -> list:
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU()]
        return layers + [nn.MaxPool2d(2)]

    class Parts(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = nn.Sequential(*stage(3, 32, 1), *stage(32, 64, 1), *stage(64, 128, 2),
                                       *stage(128, 256, 1), nn.Flatten())
            features = 256 * (part // 16) ** 2
            self.dense = nn.Sequential(nn.Dropout(0.25), nn.Linear(8 * features, 256), nn.ReLU(), nn.Dropout(0.25),
                                       nn.Linear(256, 37))

        def forward(self, x):  # x: (B, C, S, S)
            parts = []
            for image in (x, torch.flip(x, dims=(3,))):
                for _ in range(4):
                    parts.append(image[:, :, :part, :part])
                    image = torch.rot90(image, 1, dims=(2, 3))
            f = self.stack(torch.cat(parts, 0))
            b = x.shape[0]
            f = f.reshape(8, b, -1).transpose(0, 1).reshape(b, -1)
            return self.dense(f)

    net = Parts().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((BATCH, 3, size, size), dtype=np.float32))
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(rng.random((BATCH, 37), dtype=np.float32))
    step_fn = net
    if compiled:
        try:
            step_fn = torch.compile(net)
        except Exception:  # noqa: BLE001 - a peer that cannot compile is reported as such
            return None

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = ((step_fn(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    try:
        for _ in range(3):
            step()
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported as such
        print(f"  torch{' compiled' if compiled else ''}: failed ({type(exc).__name__}: {str(exc)[:200]})")
        return None
    return {"images_per_s": BATCH / float(np.median([step() for _ in range(steps)])), "version": torch.__version__}


def fit_precisions(passes: int = 2) -> None:
    """`galaxytrain fit --recipe best --limit 512 --epochs 2` with each precision option; epoch 2's images/s."""
    import csv
    import subprocess

    from galaxytrain.recipes import get_recipe

    if not (SHARED_GZ / "images").is_dir():
        raise SystemExit(f"--part fit needs the real images in {SHARED_GZ / 'images'}")
    recipe = get_recipe("best")
    data = build_file(SHARED_GZ / "images", OUT / f"real_best_c{recipe.crop}_{recipe.size}.h5",
                      SHARED_GZ / "training_solutions_rev1.csv", size=recipe.size, crop=recipe.crop)
    galaxytrain = str(Path(sys.executable).parent / "galaxytrain")
    options = {"none": [], "forced bfloat16": ["--mixed-precision"], "forced float32": ["--no-mixed-precision"]}
    rates: dict[str, list[float]] = {name: [] for name in options}
    order = list(options)
    for k in range(passes):
        for name in (order if k % 2 == 0 else order[::-1]):
            run = OUT / "runs" / f"speed_{name.replace(' ', '_')}"
            done = subprocess.run([galaxytrain, "fit", "--recipe", "best", "--data", str(data), "--out", str(run),
                                   "--limit", "512", "--epochs", "2", "--overwrite", "--no-progress"]
                                  + options[name], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {name}: failed\n{done.stderr[-2000:]}")
                continue
            chosen = next((line for line in done.stdout.splitlines() if line.startswith("precision:")), "")
            with open(run / "history.csv") as f:
                rows = list(csv.DictReader(f))
            rates[name].append(float(rows[-1]["images_per_s"]))
            print(f"  pass {k + 1}, {name}: epoch 2 at {rates[name][-1]:.1f} images/s; {chosen}", flush=True)
    mean = {name: sum(v) / len(v) for name, v in rates.items() if v}
    if "none" in mean and len(mean) > 1:
        faster = max((v, name) for name, v in mean.items() if name != "none")
        print(f"no precision option / the faster forced one ({faster[1]}): {mean['none'] / faster[0]:.2f} "
              f"({mean['none']:.1f} against {faster[0]:.1f} images/s, means of {passes} passes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("models", "fit"), default="models")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--precisions", nargs="+", default=None, choices=("float32", "mixed_bfloat16"),
                    help="[default: float32, and mixed_bfloat16 where the CPU runs it natively]")
    ap.add_argument("--steps", type=int, default=24, help="timed steps of 64 images per measurement")
    ap.add_argument("--torch", action="store_true", help="also the PyTorch peer of galaxy_parts (float32)")
    args = ap.parse_args()

    from galaxytrain.gpu import import_tensorflow_quietly
    from galaxytrain.compute import cpu_bfloat16_units

    import_tensorflow_quietly()
    native = cpu_bfloat16_units()
    if args.part == "fit":
        print(machine())
        print(f"CPU flags: {cpu_flags()}; native bfloat16 units: {', '.join(native) or 'none'}")
        fit_precisions()
        return
    precisions = args.precisions or (["float32", "mixed_bfloat16"] if native else ["float32"])
    print(machine())
    print(f"CPU flags: {cpu_flags()}; native bfloat16 units: {', '.join(native) or 'none'}")
    before = matmul_gflops("mixed_bfloat16" in precisions)
    print("matmul GFLOP/s before: " + ", ".join(f"{k} {v:.0f}" for k, v in before.items()))
    rows = []
    for name in args.models:
        for policy in precisions:
            speeds = {xla: keras_speed(name, policy, xla, args.steps) for xla in (False, True)}
            flops = speeds[False]["train_flops"]
            row = {"model": name, "input": MODELS[name][0], "policy": policy, "train_gflop_per_image": flops / 1e9,
                   "images_per_s": speeds[False]["images_per_s"], "images_per_s_xla": speeds[True]["images_per_s"]}
            rows.append(row)
            print(f"{name} {MODELS[name][0]} px, {policy}: {flops / 1e9:.3f} GFLOP per training image; "
                  f"{row['images_per_s']:.1f} images/s without XLA, {row['images_per_s_xla']:.1f} with "
                  f"(XLA / none {row['images_per_s_xla'] / row['images_per_s']:.2f}x)", flush=True)
    torch_rows = {}
    if args.torch and "galaxy_parts" in args.models:
        for compiled in (False, True):
            result = torch_galaxy_parts_speed(args.steps, compiled)
            if result is not None:
                torch_rows["compiled" if compiled else "eager"] = result
                print(f"galaxy_parts in PyTorch {result['version']} ({'torch.compile' if compiled else 'eager'}), "
                      f"float32: {result['images_per_s']:.1f} images/s", flush=True)
    after = matmul_gflops("mixed_bfloat16" in precisions)
    print("matmul GFLOP/s after: " + ", ".join(f"{k} {v:.0f}" for k, v in after.items()))
    limit = {k: (before[k] + after[k]) / 2 for k in before}
    print("\nlimit (mean of before and after), GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in limit.items()))
    print("model | input | precision | GFLOP/image (train) | images/s | XLA images/s | XLA/none | "
          "achieved GFLOP/s (best) | of the limit")
    for row in rows:
        best = max(row["images_per_s"], row["images_per_s_xla"])
        achieved = best * row["train_gflop_per_image"]
        ref = limit["tf_bf16"] if row["policy"] == "mixed_bfloat16" else max(limit["numpy_f32"], limit["tf_f32"])
        row.update(achieved_gflops=achieved, fraction_of_limit=achieved / ref)
        print(f"{row['model']} | {row['input']} | {row['policy']} | {row['train_gflop_per_image']:.3f} | "
              f"{row['images_per_s']:.1f} | {row['images_per_s_xla']:.1f} | "
              f"{row['images_per_s_xla'] / row['images_per_s']:.2f} | {achieved:.0f} | {achieved / ref:.2f}")
    parts = next((r for r in rows if r["model"] == "galaxy_parts" and r["policy"] == "float32"), None)
    for kind, result in torch_rows.items():
        if parts is not None:
            keras_best = max(parts["images_per_s"], parts["images_per_s_xla"])
            print(f"PyTorch {kind} / Keras best, galaxy_parts float32: {result['images_per_s'] / keras_best:.2f}x")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train_speed.json").write_text(json.dumps({"machine": machine(), "cpu_flags": cpu_flags(),
                                                      "limit": limit, "rows": rows, "torch": torch_rows}, indent=1))


if __name__ == "__main__":
    main()
