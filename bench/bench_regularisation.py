"""Closing the generalisation gap: each change to --recipe best measured against the recipe itself.

Every trial is `galaxytrain fit --recipe best --epochs 50` on the half of
bench_vgg6_real.py's training galaxies that bench_learning_curve.py built
(2,355 galaxies, fit's 10% split validating), with one change; seed 0 for
all, so each trial sees the same split, the same first weights and the same
batches. Half the data and 50 epochs keep a trial near 11 minutes on 2
cores while the net still overfits (the question the changes answer). Each
run is then scored with the recipe's 16 views on the fixed 1,156-galaxy
holdout, which no trial chose anything on. A run already complete is reused.

The trial "synth" is simulation as pretraining: `galaxyprep synth` makes
12,000 galaxies whose votes obey the decision tree, `fit --recipe best
--epochs 12` trains on them (its minutes reported apart), and the trial
starts from those weights (`--init-from`) instead of the seed's. "synth30"
pretrains 30 epochs on the same galaxies: does a longer first stage help?

    python bench/bench_regularisation.py [--trials base ema colour ...] [--precision native|float32]

Writes bench/out/regularisation.json and prints one table: fit's best
validation RMSE, the holdout RMSE, both against the base trial, and the
training minutes (summed epoch times).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from _common import OUT, galaxytrain, machine  # noqa: E402
from scripts.train_pretrained import SHIPPED  # noqa: E402

TAG = "c207_69_s2026"
EPOCHS = 50
#: The synthetic pretraining stage, as the shipped pretrained:synth was made: galaxies and their seed.
SYNTH_N, SYNTH_SEED = SHIPPED["synth"]["synth"]["n"], SHIPPED["synth"]["synth"]["seed"]
SYNTH_DIR = OUT / "synth_pretrain"
#: Pretraining trial -> its epochs on the synthetic galaxies ("synth": the shipped network's).
SYNTH_EPOCHS = {"synth": SHIPPED["synth"]["epochs"], "synth30": 30}


def synth_run(epochs: int) -> Path:
    return OUT / "runs" / f"synth_pretrain_{SYNTH_N // 1000}k_e{epochs}"


#: name -> (what changes, the options added to `fit --recipe best --epochs 50`).
TRIALS: dict[str, tuple[str, list[str]]] = {
    "base": ("--recipe best as it is", []),
    "ema": ("weight averaging, momentum 0.995 per step (about 5 epochs here)", ["--ema", "0.995"]),
    "colour": ("colour noise, sigma 0.1 of each colour axis' spread", ["--colour-noise", "0.1"]),
    "wd": ("decoupled weight decay 0.2 (AdamW)", ["--weight-decay", "0.2"]),
    "dropout": ("dropout 0.5 before and after the dense layer (the recipe's 0.25)", ["--dropout", "0.5"]),
    "maxout": ("Dieleman's dense part: two maxout layers of 2 pieces for one ReLU layer (galaxy_parts_maxout)",
               ["--model", "galaxy_parts_maxout"]),
    "views": ("stronger views: zoom up to 1.3, shifts up to 4 px (the recipe's 1.15 and 2)",
              ["--max-zoom", "1.3", "--max-shift", "4"]),
    **{name: (f"first {epochs} epochs of best on {SYNTH_N:,} galaxyprep synth galaxies",
              ["--init-from", str(synth_run(epochs))]) for name, epochs in SYNTH_EPOCHS.items()},
}


def pretrain_on_synth(epochs: int, extra: list[str]) -> float:
    """The synthetic stage (made once): its galaxies, their file at best's crop and size, the run; its minutes."""
    images = SYNTH_DIR / "gz"
    if not (images / "training_solutions_rev1.csv").exists():
        subprocess.run([sys.executable, "-m", "galaxyprep", "synth", "--out", str(images), "--n", str(SYNTH_N),
                        "--seed", str(SYNTH_SEED), "-q"], check=True)
    data = SYNTH_DIR / "synth_c207_69.h5"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "galaxyprep", "build", "--recipe", "best", "--images",
                        str(images / "images_training_rev1"), "--labels", str(images / "training_solutions_rev1.csv"),
                        "--out", str(data), "--no-progress"], check=True)
    run = synth_run(epochs)
    galaxytrain(["fit", "--recipe", "best", "--epochs", str(epochs), "--data", str(data), "--out", str(run),
                  "--no-progress", *extra])
    state = json.loads((run / "state.json").read_text())
    return round(sum(row["epoch_time_s"] for row in state["history"]) / 60, 1)


def trial(name: str, data: Path, holdout: Path, precision: str) -> dict:
    what, options = TRIALS[name]
    run = OUT / "runs" / f"reg_{name}_{TAG}"
    report = OUT / f"report_reg_{name}_{TAG}.json"
    extra = [] if precision == "native" else ["--no-mixed-precision"]
    before = pretrain_on_synth(SYNTH_EPOCHS[name], extra) if name in SYNTH_EPOCHS else 0.0
    galaxytrain(["fit", "--recipe", "best", "--epochs", str(EPOCHS), "--data", str(data), "--out", str(run),
                  "--no-progress", *options, *extra])
    if not report.exists() or report.stat().st_mtime < (run / "best.keras").stat().st_mtime:
        galaxytrain(["score", "--run", str(run), "--data", str(holdout), "--report", str(report),
                      "--no-progress"])
    state = json.loads((run / "state.json").read_text())
    record = json.loads((run / "config.json").read_text())
    best = next(row for row in state["history"] if row["epoch"] == state["best_epoch"])
    last = state["history"][-1]
    return {"trial": name, "change": what, "options": options, "best_epoch": state["best_epoch"],
            "val_rmse": best["val_rmse"], "train_rmse_last": last["rmse"], "val_rmse_last": last["val_rmse"],
            "holdout_rmse": json.loads(report.read_text())["rmse"],
            "minutes": round(sum(row["epoch_time_s"] for row in state["history"]) / 60, 1),
            "pretraining_minutes": before,
            "policy": record.get("gpu", {}).get("policy")}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    ap.add_argument("--precision", choices=["native", "float32"], default="native")
    args = ap.parse_args()
    data, holdout = OUT / f"curve_2_{TAG}.h5", OUT / f"real_holdout_{TAG}.h5"
    if not data.exists() or not holdout.exists():
        raise SystemExit("run `python bench/bench_vgg6_real.py --recipe best` and "
                         "`python bench/bench_learning_curve.py --fractions 2` first: they build the files")
    names = ["base"] + [n for n in args.trials if n != "base"]
    rows = [trial(name, data, holdout, args.precision) for name in names]
    base = rows[0]
    out = OUT / "regularisation.json"
    out.write_text(json.dumps({"machine": machine(), "epochs": EPOCHS, "trials": rows}, indent=1) + "\n")
    print(machine())
    print(f"{'trial':<8} {'best epoch':>10} {'val RMSE':>9} {'vs base':>8} {'holdout':>8} {'vs base':>8} "
          f"{'train/val at end':>17} {'minutes':>8}")
    for r in rows:
        dv = r["val_rmse"] / base["val_rmse"] - 1
        dh = r["holdout_rmse"] / base["holdout_rmse"] - 1
        print(f"{r['trial']:<8} {r['best_epoch']:>10} {r['val_rmse']:>9.4f} {dv:>+8.1%} {r['holdout_rmse']:>8.4f} "
              f"{dh:>+8.1%} {r['train_rmse_last']:>8.4f}/{r['val_rmse_last']:.4f} {r['minutes']:>8.1f}"
              + (f" (+{r['pretraining_minutes']} pretraining)" if r["pretraining_minutes"] else ""))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
