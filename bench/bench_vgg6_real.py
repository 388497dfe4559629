"""The student project's VGG6 recipe on the real images, scored on galaxies it never saw.

The 5,866 real labelled images in ../shared are split by GalaxyID (a hash,
as `galaxytrain.split` does) into a training file and a holdout file; VGG6
(binary cross-entropy, Adam, the model exactly as the student project had
it) trains on the first (with its own 10% validation split for checkpoint
selection) and is scored on the second, next to the mean predictor (the
training labels' mean, applied to the holdout).

    python bench/bench_vgg6_real.py [--epochs 20] [--size 96] [--holdout 0.2] [--tta 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, SHARED_GZ, build_file, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--model", default="vgg6")
    ap.add_argument("--tta", type=int, default=1)
    ap.add_argument("--extra", default="", help="more `galaxytrain fit` options, e.g. '--augment dihedral'")
    args = ap.parse_args()
    from galaxytrain.split import split_rows

    ids = np.array(sorted(int(p.stem) for p in (SHARED_GZ / "images").glob("*.jpg")), dtype=np.int64)
    train_rows, hold_rows = split_rows(ids, args.holdout, args.split_seed)
    OUT.mkdir(parents=True, exist_ok=True)
    tag = f"{args.size}_s{args.split_seed}"
    for name, rows in (("train", train_rows), ("holdout", hold_rows)):
        (OUT / f"ids_{name}_{tag}.txt").write_text("\n".join(str(i) for i in ids[rows]) + "\n")
    labels = SHARED_GZ / "training_solutions_rev1.csv"
    train = build_file(SHARED_GZ / "images", OUT / f"real_train_{tag}.h5", labels, size=args.size,
                       ids_file=OUT / f"ids_train_{tag}.txt")
    hold = build_file(SHARED_GZ / "images", OUT / f"real_holdout_{tag}.h5", labels, size=args.size,
                      ids_file=OUT / f"ids_holdout_{tag}.txt")
    run = OUT / f"runs/{args.model}_{tag}"
    print(machine())
    print(f"train {len(train_rows):,} / holdout {len(hold_rows):,} real galaxies, crop 200 -> {args.size}")
    cmd = ["galaxytrain", "fit", "--data", str(train), "--out", str(run), "--model", args.model,
           "--epochs", str(args.epochs), "--batch-size", "64", "--overwrite"] + args.extra.split()
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / cmd[0])] + cmd[1:], check=True)
    train_s = time.perf_counter() - t
    report = OUT / f"report_{args.model}_{tag}.json"
    subprocess.run([str(Path(sys.executable).parent / "galaxytrain"), "score", "--run", str(run), "--data", str(hold),
                    "--report", str(report), "--tta", str(args.tta)], check=True)
    r = json.loads(report.read_text())
    import h5py

    with h5py.File(train) as f:
        mean = f["labels"][:].mean(axis=0)
    with h5py.File(hold) as f:
        y = f["labels"][:]
    mean_rmse = float(np.sqrt(((y - mean) ** 2).mean()))
    print(f"{args.model} ({' '.join(cmd[3:])}) trained {train_s / 60:.1f} min on this CPU")
    print(f"holdout RMSE {r['rmse']:.4f}  vs mean predictor (training mean) {mean_rmse:.4f}  "
          f"ratio {r['rmse'] / mean_rmse:.3f}; per-question accuracy mean {r['question_accuracy']['mean']:.3f}")


if __name__ == "__main__":
    main()
