"""Peak GPU memory and epoch time of VGG6 on a full-size (61,578-image) file under a 12 GiB cap.

Answers "does the student project's model train on a 12 GB card, and how
fast?" on any GPU: ``--gpu-memory-limit 12GiB`` makes TensorFlow behave as
if the card had 12 GiB. Without ``--data`` a synthetic file of random pixels
is written first, streamed in blocks (never the whole set in memory), and
kept for the next run. On a machine without a GPU it still runs; use
``--limit`` there for a smoke test.

    python bench/bench_gpu_memory.py                       # GPU: full size, 1 epoch
    python bench/bench_gpu_memory.py --limit 512 --size 48 # CPU smoke test
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

N_KAGGLE_TRAIN = 61_578
HERE = Path(__file__).resolve().parent


def synthetic_file(path: Path, n: int, size: int, seed: int = 0, block: int = 512) -> Path:
    """A galaxyprep file of random pixels and tree-consistent labels, written block by block."""
    from galaxyprep import __version__ as prep_version
    from galaxyprep import GalaxyFileWriter, LabelSchema, normalize_tree, read_info

    if path.exists():
        info = read_info(path)
        if info.n_images == n and info.size == size and info.has_labels:
            print(f"reusing {path} ({n} images {size}x{size})")
            return path
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with GalaxyFileWriter(path, size, n, LabelSchema.kaggle(), chunk_images=64) as writer:
        for lo in range(0, n, block):
            k = min(block, n - lo)
            images = rng.integers(0, 256, size=(k, size, size, 3), dtype=np.uint8)
            flat = images.reshape(k, -1, 3)
            sums = np.concatenate([flat.sum(axis=1, dtype=np.float64),
                                   np.square(flat, dtype=np.float64).sum(axis=1)], axis=1)
            labels = normalize_tree(rng.random((k, 37))).astype(np.float32)
            writer.append(images, np.arange(100_000 + lo, 100_000 + lo + k, dtype=np.int64), labels, sums)
        writer.commit({"crop": size, "size": size, "source": "bench/bench_gpu_memory.py random pixels",
                       "labels_source": "random, tree-normalized", "build_params": {"seed": seed},
                       "skipped": [], "galaxyprep_version": prep_version, "decoder": "none"})
    print(f"wrote {path} ({n} images {size}x{size}, {path.stat().st_size / 2**30:.2f} GiB) "
          f"in {time.perf_counter() - t0:.1f} s")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a labelled galaxyprep file (default: a synthetic one)")
    parser.add_argument("--n", type=int, default=N_KAGGLE_TRAIN, help="images in the synthetic file")
    parser.add_argument("--size", type=int, default=96, help="image size of the synthetic file")
    parser.add_argument("--limit", type=int, help="train on the first N images only (and synthesize only N)")
    parser.add_argument("--epochs", type=int, default=2, help="2: the second epoch is the steady-state time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--gpu-memory-limit", default="12GiB")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--use-multiprocessing", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "gpu_memory")
    args = parser.parse_args(argv)

    from galaxyprep import InputError
    from galaxytrain.gpu import import_tensorflow_quietly

    args.out.mkdir(parents=True, exist_ok=True)
    try:
        data = args.data
        if data is None:
            n = args.n if args.limit is None else min(args.n, args.limit)
            data = synthetic_file(args.out / f"synthetic_{n}_{args.size}.h5", n, args.size)
        import_tensorflow_quietly()
        from galaxytrain.config import FitConfig
        from galaxytrain.training import fit

        config = FitConfig(data=data, out=args.out / "run", model="vgg6", epochs=args.epochs,
                           batch_size=args.batch_size, limit=args.limit, gpu_memory_limit=args.gpu_memory_limit,
                           mixed_precision=args.mixed_precision, loader_workers=args.workers,
                           use_multiprocessing=args.use_multiprocessing, overwrite=True)
        result = fit(config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU only"
    print()
    print(f"device: {device}; memory limit {args.gpu_memory_limit if gpus else 'n/a (no GPU)'}; "
          f"batch {args.batch_size}; mixed precision {args.mixed_precision}")
    print(f"{'epoch':>5} {'time s':>8} {'images/s':>9} {'peak GPU MiB':>13} {'val RMSE':>9}")
    for row in result.history:
        peak = "-" if row.get("peak_gpu_mib") is None else f"{row['peak_gpu_mib']:.0f}"
        val = "-" if row.get("val_rmse") is None else f"{row['val_rmse']:.4f}"
        print(f"{row['epoch']:>5} {row['epoch_time_s']:>8.1f} {row['images_per_s']:>9.0f} {peak:>13} {val:>9}")
    summary = {"device": device, "data": str(data), "args": {k: str(v) for k, v in vars(args).items()},
               "history": result.history}
    (args.out / "bench_gpu_memory.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'bench_gpu_memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
