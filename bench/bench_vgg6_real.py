"""A training recipe on the real images, scored on galaxies it never saw.

The 5,866 real labelled images in ../shared are split by GalaxyID (a hash,
as `galaxytrain.data.split` does) into a training file and a holdout file; the
model trains on the first (with fit's own 10% validation split for
checkpoint selection: the holdout plays no part in any choice) and is scored
once on the second, next to the mean predictor (the training labels' mean,
applied to the holdout).

Without --recipe: the student project's VGG6 (binary cross-entropy, Adam,
crop 200 -> 96, 20 epochs, batches of 64). With --recipe NAME: `galaxytrain
fit --recipe NAME`, on files built with the recipe's crop and size, scored
with its number of test-time views; --crop, --size, --epochs and --tta
override them. With --seeds A B ...: one run per seed (fit's --seed: its
validation split, shuffle and initial weights), each scored alone, then
their average as an ensemble; an ensemble recipe (best-ensemble) runs its
own seeds so. A recipe with a student (best-synth-distil) trains as one
`fit --unlabelled` on the unlabelled images_test galaxies, and each of its
members, the student last, is scored alone and then all of them averaged.

    python bench/bench_vgg6_real.py [--epochs 20] [--size 96] [--holdout 0.2] [--tta 1]
    python bench/bench_vgg6_real.py --recipe best [--seeds 0 1] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="train one run per seed (fit --seed) and score each and their average (an ensemble)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep finished runs (fit resumes them, or has nothing to do) instead of --overwrite")
    ap.add_argument("--extra", default="", help="more `galaxytrain fit` options, e.g. '--augment dihedral'")
    args = ap.parse_args()
    from galaxytrain.recipes import get_recipe
    from galaxytrain.data import split_rows

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
    galaxytrain = str(Path(sys.executable).parent / "galaxytrain")
    # An ensemble recipe's members run here one by one (fit --seed S), so that each is scored alone too;
    # one with a student runs as the one command a user gives (the student needs its teachers), its
    # members scored alone after it.
    seeds = args.seeds or (list(recipe.seeds) if recipe and recipe.seeds else [None])
    fit_options = options + ([] if args.reuse else ["--overwrite"]) + args.extra.split()
    runs = []
    one_command = recipe is not None and recipe.student and not args.seeds  # the student needs its teachers
    if one_command:
        unlabelled = build_file(SHARED_GZ / "images_test", OUT / f"real_test_{tag.rsplit('_s', 1)[0]}.h5",
                                size=size, crop=crop)
        folder = OUT / f"runs/{label}_{tag}"
        subprocess.run([galaxytrain, "fit", "--data", str(train), "--out", str(folder), "--unlabelled",
                        str(unlabelled)] + fit_options, check=True)
        runs = [folder / name for name in json.loads((folder / "ensemble.json").read_text())["members"]]
        fit_options += ["--unlabelled", str(unlabelled)]  # for the command the summary shows
    for seed in [] if one_command else seeds:
        run = OUT / (f"runs/{label}_{tag}" + ("" if seed is None else f"_seed{seed}"))
        seed_option = [] if seed is None else ["--seed", str(seed)]
        subprocess.run([galaxytrain, "fit", "--data", str(train), "--out", str(run)] + fit_options + seed_option,
                       check=True)
        runs.append(run)

    from galaxyprep import GalaxyFile

    with GalaxyFile(train) as f:
        mean = f.labels().mean(axis=0)
    with GalaxyFile(hold) as f:
        y = f.labels()
    mean_rmse = float(np.sqrt(((y - mean) ** 2).mean()))
    # Each run alone, then (with several seeds) their average: the ensemble.
    scored = [([run], run.name) for run in runs] + ([(runs, f"ensemble of {len(runs)}")] if len(runs) > 1 else [])
    if one_command:  # what the student adds to its teachers
        scored.insert(-1, (runs[:-1], f"teachers of {len(runs) - 1}"))
    results = []
    for members, name in scored:
        suffix = "" if seeds == [None] else "_" + name.replace(" ", "_")
        report = OUT / f"report_{label}_{tag}{suffix}.json"
        subprocess.run([galaxytrain, "score"] + [a for run in members for a in ("--run", str(run))]
                       + ["--data", str(hold), "--report", str(report), "--tta", str(tta)], check=True)
        r = json.loads(report.read_text())
        results.append((name, members, r))
    # One run per seed; the command shown is the one they share.
    one_by_one = seeds != [None] and not one_command
    command = "galaxytrain fit " + " ".join(fit_options) + (f" --seed S for S in {seeds}" if one_by_one else "")
    summary = {"command": command, "crop": crop, "size": size, "tta": tta, "seeds": seeds,
               "holdout_mean_predictor_rmse": mean_rmse, "results": []}
    for name, members, r in results:
        qa = r["question_accuracy"]
        entry = {"name": name, "holdout_rmse": r["rmse"], "question_accuracy_mean": qa["mean"],
                 "question_accuracy": {k: v["accuracy"] for k, v in qa["per_question"].items()},
                 "train_minutes": round(sum(_epoch_seconds(_state(m)) for m in members) / 60, 2)}
        if len(members) == 1:
            state = _state(members[0])
            best = next(row for row in state["history"] if row["epoch"] == state["best_epoch"])
            entry.update(best_epoch=state["best_epoch"], val_rmse=best.get("val_rmse"))
        summary["results"].append(entry)
    (OUT / f"summary_{label}_{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{command}: mean predictor (training mean) on the holdout {mean_rmse:.4f}")
    for entry in summary["results"]:
        extra = (f", best epoch {entry['best_epoch']}, validation RMSE {entry['val_rmse']:.4f}"
                 if entry.get("val_rmse") is not None else "")
        print(f"  {entry['name']}: holdout RMSE {entry['holdout_rmse']:.4f} (tta {tta}), per-question accuracy "
              f"mean {entry['question_accuracy_mean']:.3f}; trained {entry['train_minutes']:.1f} min on this CPU{extra}")


def _state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


def _epoch_seconds(state: dict) -> float:
    """Training time of a run: the sum of its epochs' times (a reused run's too)."""
    return float(sum(row["epoch_time_s"] for row in state["history"]))


if __name__ == "__main__":
    main()
