"""Is the loader fast enough to keep a CPU busy training? Numbers measured in one run.

(a) images/s of iterating GalaxyBatches alone for one epoch (augmentation on);
(b) images/s of VGG6 train steps on this machine, data already in memory;
(c) seconds for one epoch of ``model.fit`` from GalaxyBatches vs from in-RAM
    float32 arrays (same rows, normalization and batch size);
(d) images/s of the augmentation kernels alone.

Bars: (a)/(b) >= 5 and (c) GalaxyBatches / in-RAM <= 1.10.

    .venv/bin/python bench/bench_loader.py --data train.h5 --limit 2000
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="galaxyprep HDF5 file with labels")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--augment", default="dihedral", choices=["none", "dihedral"])
    parser.add_argument("--workers", type=int, default=1, help="GalaxyBatches workers for the fit in (c)")
    parser.add_argument("--use-multiprocessing", action="store_true")
    parser.add_argument("--steps", type=int, default=20, help="timed train steps for (b)")
    parser.add_argument("--repeats", type=int, default=2, help="timed fit epochs per source in (c); best kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from galaxyprep import read_info
    from galaxytrain.data.kernels import dihedral_batch, dihedral_batch_serial, rotate_zoom_batch, rotate_zoom_batch_serial
    from galaxytrain.data import GalaxyBatches, training_view

    info = read_info(args.data)
    n = info.n_images if args.limit is None else min(args.limit, info.n_images)
    rows = np.arange(n, dtype=np.int64)
    size = info.size
    view = training_view(args.augment, size)
    print(f"data {args.data}: {n} of {info.n_images} images, {size}x{size}, chunks of {info.chunk_images}, "
          f"compression {info.compression}; batch {args.batch_size}; {os.cpu_count()} CPUs")
    results = []

    # (a) The loader alone, in this process, one epoch (after one batch to compile the kernels).
    ds = GalaxyBatches(args.data, rows, batch_size=args.batch_size, view=view, seed=args.seed)
    ds[0]
    t = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    loader_rate = n / (time.perf_counter() - t)
    results.append((f"(a) GalaxyBatches epoch, augment={args.augment}", f"{loader_rate:,.0f} images/s"))
    ds.close()

    # (b) Train steps on one in-memory batch.
    model = _vgg6((size, size, 3))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    ref = GalaxyBatches(args.data, rows, batch_size=args.batch_size, shuffle=False)
    xb, yb = ref[0]
    for _ in range(3):
        model.train_on_batch(xb, yb)
    t = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(xb, yb)
    train_rate = args.steps * len(xb) / (time.perf_counter() - t)
    results.append(("(b) VGG6 train steps, data in memory", f"{train_rate:,.0f} images/s"))

    # (c) One fit epoch from GalaxyBatches vs from arrays in RAM.
    x = np.concatenate([ref[i][0] for i in range(len(ref))])
    y = np.concatenate([ref[i][1] for i in range(len(ref))])
    ref.close()
    train = GalaxyBatches(args.data, rows, batch_size=args.batch_size, view=view, seed=args.seed,
                          workers=args.workers, use_multiprocessing=args.use_multiprocessing)
    # One model per source, same initial weights: alternating two input pipelines
    # on one model makes Keras retrace its train function at each switch, which
    # once cost ~9 s an epoch here and is no property of either source.
    model_file, model_ram = _vgg6((size, size, 3)), _vgg6((size, size, 3))
    model_ram.set_weights(model_file.get_weights())
    for m in (model_file, model_ram):
        m.compile(optimizer="adam", loss="binary_crossentropy")
    model_file.fit(train, epochs=1, verbose=0)  # trace, the last short batch too
    model_ram.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    t_file, t_ram = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        model_file.fit(train, epochs=1, verbose=0)
        t_file.append(time.perf_counter() - t)
        t = time.perf_counter()
        model_ram.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
        t_ram.append(time.perf_counter() - t)
    train.close()
    source = f"workers={args.workers}{', processes' if args.use_multiprocessing else ''}"
    results.append((f"(c) fit epoch from GalaxyBatches ({source})", f"{min(t_file):.2f} s  (all: {_list(t_file)})"))
    results.append(("(c) fit epoch from in-RAM float32 arrays", f"{min(t_ram):.2f} s  (all: {_list(t_ram)})"))

    # (d) Augmentation kernels on random pixels.
    rng = np.random.default_rng(args.seed)
    for s in sorted({size, 64}):
        batch = rng.integers(0, 256, size=(256, s, s, 3), dtype=np.uint8)
        out = np.empty_like(batch)
        codes = rng.integers(0, 8, size=len(batch))
        params = (rng.uniform(0, 360, len(batch)), np.exp(rng.uniform(-0.26, 0.26, len(batch))),
                  rng.uniform(-4, 4, len(batch)), rng.uniform(-4, 4, len(batch)),
                  rng.integers(0, 2, len(batch)).astype(np.uint8))
        for name, kernel, kernel_args in [
            ("dihedral_batch", dihedral_batch, (batch, codes, out)),
            ("dihedral_batch_serial", dihedral_batch_serial, (batch, codes, out)),
            ("rotate_zoom_batch", rotate_zoom_batch, (batch, *params, out)),
            ("rotate_zoom_batch_serial", rotate_zoom_batch_serial, (batch, *params, out)),
        ]:
            rate = _rate(lambda: kernel(*kernel_args), len(batch))
            results.append((f"(d) {name} {s}x{s}", f"{rate:,.0f} images/s"))

    width = max(len(name) for name, _ in results)
    print()
    for name, value in results:
        print(f"{name:<{width}}  {value}")
    ratio_ab = loader_rate / train_rate
    ratio_c = min(t_file) / min(t_ram)
    print()
    print(f"(a)/(b) loader / training rate = {ratio_ab:.1f}x   (bar >= 5x: {'ok' if ratio_ab >= 5 else 'MISSED'})")
    print(f"(c) GalaxyBatches / in-RAM epoch = {ratio_c:.3f}x  (bar <= 1.10x: {'ok' if ratio_c <= 1.10 else 'MISSED'})")


def _vgg6(input_shape):
    from galaxytrain.models import create_model

    return create_model("vgg6", input_shape)


def _rate(fn, n_images: int, repeats: int = 5) -> float:
    fn()  # compile / warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def _list(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
