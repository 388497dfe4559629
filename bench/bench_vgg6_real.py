"""A training recipe on the real images, scored on galaxies it never saw.

The 5,866 real labelled images in ../shared are split by GalaxyID (a hash,
as `galaxytrain.split` does) into a training file and a holdout file; the
model trains on the first (with fit's own 10% validation split for
checkpoint selection: the holdout plays no part in any choice) and is scored
once on the second, next to the mean predictor (the training labels' mean,
applied to the holdout).

Without --recipe: the student project's VGG6 (binary cross-entropy, Adam,
crop 200 -> 96, 20 epochs, batches of 64). With --recipe NAME: `galaxytrain
fit --recipe NAME`, on files built with the recipe's crop and size, scored
with its number of test-time views; --crop, --size, --epochs and --tta
override them.

    python bench/bench_vgg6_real.py [--epochs 20] [--size 96] [--holdout 0.2] [--tta 1]
    python bench/bench_vgg6_real.py --recipe best
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
    ap.add_argument("--recipe", default=None, help="a galaxytrain recipe (best, baseline)")
    ap.add_argument("--epochs", type=int, default=None, help="[default: 20, or the recipe's]")
    ap.add_argument("--crop", type=int, default=None, help="[default: 200, or the recipe's]")
    ap.add_argument("--size", type=int, default=None, help="[default: 96, or the recipe's]")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--model", default=None, help="[default: vgg6, or the recipe's]")
    ap.add_argument("--tta", type=int, default=None, help="[default: 1, or the recipe's]")
    ap.add_argument("--name", default=None, help="run name under bench/out/runs [default: recipe or model]")
    ap.add_argument("--extra", default="", help="more `galaxytrain fit` options, e.g. '--augment dihedral'")
    args = ap.parse_args()
    from galaxytrain.recipes import get_recipe
    from galaxytrain.split import split_rows

    recipe = get_recipe(args.recipe) if args.recipe else None
    crop = args.crop or (recipe.crop if recipe else 200)
    size = args.size or (recipe.size if recipe else 96)
    tta = args.tta or (recipe.tta if recipe else 1)
    ids = np.array(sorted(int(p.stem) for p in (SHARED_GZ / "images").glob("*.jpg")), dtype=np.int64)
    train_rows, hold_rows = split_rows(ids, args.holdout, args.split_seed)
    OUT.mkdir(parents=True, exist_ok=True)
    # The split depends on the IDs and the seed only; files of another crop get their own names.
    tag = f"{size}_s{args.split_seed}" if crop == 200 else f"c{crop}_{size}_s{args.split_seed}"
    for name, rows in (("train", train_rows), ("holdout", hold_rows)):
        (OUT / f"ids_{name}_{tag}.txt").write_text("\n".join(str(i) for i in ids[rows]) + "\n")
    labels = SHARED_GZ / "training_solutions_rev1.csv"
    train = build_file(SHARED_GZ / "images", OUT / f"real_train_{tag}.h5", labels, size=size, crop=crop,
                       ids_file=OUT / f"ids_train_{tag}.txt")
    hold = build_file(SHARED_GZ / "images", OUT / f"real_holdout_{tag}.h5", labels, size=size, crop=crop,
                      ids_file=OUT / f"ids_holdout_{tag}.txt")
    label = args.name or (f"recipe_{args.recipe}" if recipe else (args.model or "vgg6"))
    run = OUT / f"runs/{label}_{tag}"
    print(machine())
    print(f"train {len(train_rows):,} / holdout {len(hold_rows):,} real galaxies, crop {crop} -> {size}")
    options = []
    if recipe:
        options += ["--recipe", recipe.name]
    else:
        options += ["--model", args.model or "vgg6", "--batch-size", "64"]
    if args.model and recipe:
        options += ["--model", args.model]
    if args.epochs or not recipe:
        options += ["--epochs", str(args.epochs or 20)]
    cmd = ["fit", "--data", str(train), "--out", str(run)] + options + ["--overwrite"] + args.extra.split()
    galaxytrain = str(Path(sys.executable).parent / "galaxytrain")
    t = time.perf_counter()
    subprocess.run([galaxytrain] + cmd, check=True)
    train_s = time.perf_counter() - t
    report = OUT / f"report_{label}_{tag}.json"
    subprocess.run([galaxytrain, "score", "--run", str(run), "--data", str(hold), "--report", str(report),
                    "--tta", str(tta)], check=True)
    r = json.loads(report.read_text())
    state = json.loads((run / "state.json").read_text())
    best = next(row for row in state["history"] if row["epoch"] == state["best_epoch"])
    import h5py

    with h5py.File(train) as f:
        mean = f["labels"][:].mean(axis=0)
    with h5py.File(hold) as f:
        y = f["labels"][:]
    mean_rmse = float(np.sqrt(((y - mean) ** 2).mean()))
    qa = r["question_accuracy"]
    summary = {
        "command": "galaxytrain fit " + " ".join(cmd[5:]), "crop": crop, "size": size, "tta": tta,
        "train_minutes": round(train_s / 60, 2),
        "epoch_seconds_sum": round(sum(row["epoch_time_s"] for row in state["history"]), 1),
        "best_epoch": state["best_epoch"], "val_rmse": best.get("val_rmse"),
        "holdout_rmse": r["rmse"], "holdout_mean_predictor_rmse": mean_rmse,
        "question_accuracy": {k: v["accuracy"] for k, v in qa["per_question"].items()},
        "question_accuracy_mean": qa["mean"],
    }
    (OUT / f"summary_{label}_{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['command']} trained {train_s / 60:.1f} min on this CPU "
          f"(best epoch {state['best_epoch']}, validation RMSE {best.get('val_rmse'):.4f})")
    print(f"holdout RMSE {r['rmse']:.4f} (tta {tta})  vs mean predictor (training mean) {mean_rmse:.4f}  "
          f"ratio {r['rmse'] / mean_rmse:.3f}; per-question accuracy mean {qa['mean']:.3f}")


if __name__ == "__main__":
    main()
