"""Fine-tuning against training from scratch, on the real galaxies, through the shell commands a user types.

Two experiments, each scored on galaxies no model here trained on:

``bar``: the issue's user. 600 galaxies labelled with two columns of one's
own (``smooth`` = Class1.1, ``edge_on`` = Class2.1), built with ``galaxyprep
build --recipe best --labels``; ``galaxytrain finetune --pretrained best``
against ``galaxytrain fit --recipe best --head sigmoid --loss mse --epochs
20`` on the same file and the mean predictor, scored on the shipped model's
620 validation galaxies (it never trained on them; the 600 come from its
training galaxies, as a user's labels of catalogue galaxies would).

``curve``: a question the starting model never saw. A variant of the best
recipe is trained on 34 columns, the 37 without Q7 (roundness of smooth
galaxies: Class7.1-7.3), on the galaxies outside the bench's fixed holdout
(`galaxyprep.split`, 1,156 galaxies). Then 100, 300 and 1,000 of its
galaxies labelled with Q7 alone are used to fine-tune it, and to train
the same network from scratch with the same options (epochs, patience,
validation split, schedule); each is scored on the holdout's Q7.

    python bench/bench_finetune.py [--stage data|variant|bar|curve|report|all] [--work build/finetune]

Every stage reuses what an earlier one left (runs resume), so an
interrupted bench goes on where it stopped. Prints the tables; `report`
writes bench/out/finetune.json and bench/plots/finetune_curve.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, REPO, SHARED_GZ, machine  # noqa: E402

from galaxyprep import HOLDOUT_FRACTION, HOLDOUT_SEED, in_holdout, unit_hash  # noqa: E402

Q7 = ["Class7.1", "Class7.2", "Class7.3"]
#: The curve's plot, kept with the code (bench/RESULTS.md shows it).
PLOT = REPO / "bench" / "plots" / "finetune_curve.png"
SIZES = (100, 300, 1000)
#: The options both sides of the curve share: the only difference is where the weights start.
SHARED = ["--epochs", "40", "--patience", "10", "--val-fraction", "0.2", "--batch-size", "32"]


def sh(args: list[str], log: Path) -> float:
    """Run a command (python -m ...), its output appended to `log`; seconds taken. Stops the bench if it fails."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(args)}\n")
        f.flush()
        done = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(args)}; see {log}")
    return time.perf_counter() - t0


def write_csv(table: pd.DataFrame, ids, columns: dict[str, str], path: Path) -> Path:
    """GalaxyID and `columns` (own name -> Kaggle column) for `ids`, as a user's labels CSV."""
    rows = table.loc[np.sort(np.asarray(ids))]
    out = pd.DataFrame({"GalaxyID": rows.index})
    for own, kaggle in columns.items():
        out[own] = rows[kaggle].to_numpy()
    out.to_csv(path, index=False, float_format="%.6f")
    return path


def build(csv: Path, out: Path, log: Path) -> Path:
    if not out.exists():
        sh(["galaxyprep", "build", "--recipe", "best", "--images", str(SHARED_GZ / "images"), "--labels", str(csv),
            "--out", str(out)], log)
    return out


def score(run: Path, data: Path, log: Path, pretrained: bool = False) -> dict:
    """The report of `run` on `data` (kept beside the run; reused)."""
    report = run.parent / f"{run.name}-on-{data.stem}.json"
    if not report.exists():
        source = ["--pretrained", run.name] if pretrained else ["--run", str(run)]
        sh(["galaxytrain", "score", *source, "--data", str(data), "--report", str(report), "--no-progress"], log)
    return json.loads(report.read_text())


def seconds_of(run: Path) -> float:
    history = pd.read_csv(run / "history.csv")
    return float(history["epoch_time_s"].sum())


def stage_data(work: Path) -> dict:
    table = pd.read_csv(SHARED_GZ / "training_solutions_rev1.csv").set_index("GalaxyID")
    ids = np.sort(np.array([int(p.stem) for p in (SHARED_GZ / "images").glob("*.jpg")]))
    ids = ids[np.isin(ids, table.index)]
    log = work / "build.log"
    # bar: the shipped model's validation galaxies (fit's split: seed 0, 10%) and 600 of its training ones
    shipped_val = unit_hash(ids, 0) < 0.1
    pool = ids[~shipped_val]
    user = pool[np.argsort(unit_hash(pool, 21), kind="stable")[:600]]
    bar_cols = {"smooth": "Class1.1", "edge_on": "Class2.1"}
    files = {"bar_train": build(write_csv(table, user, bar_cols, work / "bar_train.csv"), work / "bar_train.h5", log),
             "bar_eval": build(write_csv(table, ids[shipped_val], bar_cols, work / "bar_eval.csv"),
                               work / "bar_eval.h5", log)}
    # curve: the variant's 34 columns outside the holdout; Q7 subsets of them; the holdout's Q7
    holdout = in_holdout(ids, HOLDOUT_FRACTION, HOLDOUT_SEED)
    train = ids[~holdout]
    without_q7 = {c: c for c in table.columns if c not in Q7}
    files["variant"] = build(write_csv(table, train, without_q7, work / "variant.csv"), work / "variant.h5", log)
    q7 = {c.replace("Class", "Q"): c for c in Q7}
    order = train[np.argsort(unit_hash(train, 17), kind="stable")]
    for n in SIZES:  # nested: the 300 hold the 100
        files[f"q7_{n}"] = build(write_csv(table, order[:n], q7, work / f"q7_{n}.csv"), work / f"q7_{n}.h5", log)
    files["q7_holdout"] = build(write_csv(table, ids[holdout], q7, work / "q7_holdout.csv"),
                                work / "q7_holdout.h5", log)
    return files


def stage_variant(work: Path, files: dict) -> Path:
    run = work / "variant"
    sh(["galaxytrain", "fit", "--recipe", "best", "--head", "sigmoid", "--loss", "mse", "--epochs", "40",
        "--data", str(files["variant"]), "--out", str(run), "--no-progress"], work / "variant.log")
    return run


def stage_bar(work: Path, files: dict) -> dict:
    log = work / "bar.log"
    tuned, scratch = work / "bar_finetune", work / "bar_scratch"
    sh(["galaxytrain", "finetune", "--pretrained", "best", "--data", str(files["bar_train"]), "--out", str(tuned),
        "--no-progress"], log)
    sh(["galaxytrain", "fit", "--recipe", "best", "--head", "sigmoid", "--loss", "mse", "--epochs", "20",
        "--data", str(files["bar_train"]), "--out", str(scratch), "--no-progress"], log)
    out = {}
    for name, run in (("finetune --pretrained best", tuned), ("fit --recipe best --head sigmoid --loss mse "
                                                              "--epochs 20", scratch)):
        report = score(run, files["bar_eval"], log)
        out[name] = {"rmse": report["rmse"], "per_column": {k: v["rmse"] for k, v in report["per_column"].items()},
                     "cpu_s": seconds_of(run), "mean_predictor": report["rmse_mean_predictor"]}
    return out


def stage_curve(work: Path, files: dict, variant: Path) -> dict:
    log = work / "curve.log"
    out = {}
    for n in SIZES:
        data = files[f"q7_{n}"]
        tuned, scratch = work / f"q7_{n}_finetune", work / f"q7_{n}_scratch"
        sh(["galaxytrain", "finetune", "--from", str(variant), "--data", str(data), "--out", str(tuned), *SHARED,
            "--no-progress"], log)
        sh(["galaxytrain", "fit", "--recipe", "best", "--head", "sigmoid", "--loss", "mse", "--lr-schedule",
            "cosine", "--learning-rate", "1e-3", *SHARED, "--data", str(data), "--out", str(scratch),
            "--no-progress"], log)
        row = {}
        for name, run in (("finetune", tuned), ("scratch", scratch)):
            report = score(run, files["q7_holdout"], log)
            row[name] = {"rmse": report["rmse"], "cpu_s": seconds_of(run),
                         "epochs": int(pd.read_csv(run / "history.csv")["epoch"].max())}
        row["mean_predictor"] = _train_mean_rmse(data, files["q7_holdout"])
        out[n] = row
    return out


def _train_mean_rmse(train: Path, holdout: Path) -> float:
    """The holdout RMSE of predicting the labelled galaxies' mean (what a model must beat, from its own data)."""
    from galaxyprep import GalaxyFile

    with GalaxyFile(train) as f, GalaxyFile(holdout) as g:
        mean = f.labels().astype(np.float64).mean(axis=0)
        y = g.labels().astype(np.float64)
    return float(np.sqrt(np.mean((y - mean) ** 2)))


def report(work: Path, bar: dict | None, curve: dict | None, files: dict) -> None:
    result = {"machine": machine(), "cpu_flags": _flags(), "bar": bar, "curve": curve}
    if bar:
        mean = _train_mean_rmse(files["bar_train"], files["bar_eval"])
        result["bar_mean_predictor_from_600"] = mean
        print(f"bar: 600 own-labelled galaxies (smooth, edge_on), scored on the shipped model's 620 validation "
              f"galaxies; mean of the 600: {mean:.5f}")
        base = bar["fit --recipe best --head sigmoid --loss mse --epochs 20"]["rmse"]
        for name, row in bar.items():
            print(f"  {name:<58} RMSE {row['rmse']:.5f}  ({1 - row['rmse'] / base:+.1%} vs fit, "
                  f"{1 - row['rmse'] / mean:+.1%} vs mean)  {row['cpu_s'] / 60:.1f} min")
    if curve:
        print("curve: Q7 (3 columns), unseen by the variant; scored on the 1,156 holdout galaxies")
        print(f"  {'labels':>7} {'fine-tune':>10} {'scratch':>10} {'mean':>10} {'gain':>8}")
        for n, row in curve.items():
            f, s = row["finetune"]["rmse"], row["scratch"]["rmse"]
            print(f"  {n:>7} {f:>10.5f} {s:>10.5f} {row['mean_predictor']:>10.5f} {1 - f / s:>+8.1%}   "
                  f"({row['finetune']['epochs']} / {row['scratch']['epochs']} epochs, "
                  f"{row['finetune']['cpu_s'] / 60:.1f} / {row['scratch']['cpu_s'] / 60:.1f} min)")
        _plot(curve, PLOT)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "finetune.json").write_text(json.dumps(result, indent=2))
    print(machine())


def _flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return ", ".join(found) or "none of avx2/avx512"


def _plot(curve: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    n = [int(k) for k in curve]
    fig = Figure(figsize=(5.5, 4), dpi=100)
    ax = fig.add_subplot()
    for key, label, style in (("finetune", "fine-tuned from the 34-column variant", "o-"),
                              ("scratch", "same network from scratch", "s--")):
        ax.plot(n, [curve[k][key]["rmse"] for k in curve], style, label=label)
    ax.plot(n, [curve[k]["mean_predictor"] for k in curve], ":", color="grey", label="mean of the labelled set")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    ax.set_xlabel("galaxies labelled with Q7 (roundness)")
    ax.set_ylabel("RMSE on 1,156 holdout galaxies")
    ax.legend(fontsize=8)
    ax.set_title("Fine-tuning on a question the model never saw", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="all", choices=["data", "variant", "bar", "curve", "report", "all"])
    parser.add_argument("--work", type=Path, default=REPO / "build" / "finetune")
    args = parser.parse_args()
    if not (SHARED_GZ / "images").is_dir():
        raise SystemExit(f"this bench needs the real images in {SHARED_GZ}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    files = stage_data(work)
    if args.stage == "data":
        return
    variant = work / "variant"
    if args.stage in ("variant", "all"):
        stage_variant(work, files)
    bar = stage_bar(work, files) if args.stage in ("bar", "all", "report") else None
    curve = stage_curve(work, files, variant) if args.stage in ("curve", "all", "report") else None
    report(work, bar, curve, files)


if __name__ == "__main__":
    main()
