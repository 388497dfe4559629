"""The best recipe's learning curve on the real galaxies: what more labelled images should buy.

`galaxytrain fit --recipe best` on 1/8, 1/4, 1/2 and all of the 4,710
training galaxies of bench_vgg6_real.py's split (GalaxyID hash, seed 2026;
the halves nested: each smaller set is part of the larger), each scored on
the same 1,156 holdout galaxies with the recipe's 16 views. A power law
with a floor, RMSE(n) = a n^-b + c, is fitted to the points by least
squares and extrapolated to the Kaggle set's 61,578 images, with an
interval from the fit's covariance (parameters drawn from it, 2.5-97.5
percentiles); with four points and three parameters it is loose, and the
script says how loose.

    python bench/bench_learning_curve.py [--fractions 8 4 2 1] [--precision native|float32]

The full set's run is bench_vgg6_real.py's (``--recipe best``, in float32
when it was recorded) when it exists; other points train here, in the
precision the hardware picks unless told. Writes bench/out/learning_curve.json
and bench/plots/learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, REPO, SHARED_GZ, build_file, galaxytrain, machine  # noqa: E402

TAG = "c207_69_s2026"
KAGGLE_TRAIN = 61_578
#: The winner's best single model on the private leaderboard (ANCHORS.md), for the plot.
WINNER_SINGLE = 0.0767
PLOT = REPO / "bench" / "plots" / "learning_curve.png"


def point(fraction: int, train_ids: np.ndarray, holdout: Path, precision: str) -> dict:
    """Train on 1/`fraction` of the training galaxies (or reuse the run) and score it on the holdout."""
    if fraction == 1 and (OUT / "runs" / f"best80_f32_{TAG}" / "best.keras").exists():
        run, report = OUT / "runs" / f"best80_f32_{TAG}", OUT / f"report_best80_f32_{TAG}.json"
        note = "bench_vgg6_real.py's run, float32"
    else:
        order = train_ids[np.argsort(_hash(train_ids), kind="stable")]
        chosen = np.sort(order[: len(train_ids) // fraction])
        ids_file = OUT / f"ids_curve_{fraction}_{TAG}.txt"
        ids_file.write_text("\n".join(str(i) for i in chosen) + "\n")
        data = build_file(SHARED_GZ / "images", OUT / f"curve_{fraction}_{TAG}.h5",
                          SHARED_GZ / "training_solutions_rev1.csv", size=69, crop=207, ids_file=ids_file)
        run, report = OUT / "runs" / f"curve_{fraction}_{TAG}", OUT / f"report_curve_{fraction}_{TAG}.json"
        options = [] if precision == "native" else ["--no-mixed-precision"]
        galaxytrain(["fit", "--recipe", "best", "--data", str(data), "--out", str(run), "--no-progress", *options])
        note = f"trained here, {precision}"
    if not report.exists():
        galaxytrain(["score", "--run", str(run), "--data", str(holdout), "--report", str(report), "--no-progress"])
    state = json.loads((run / "state.json").read_text())
    record = json.loads((run / "config.json").read_text())
    return {"fraction": fraction, "n_train": int(record["split"]["n_train"]),
            "n_images": int(record["data"]["n_used"]), "holdout_rmse": json.loads(report.read_text())["rmse"],
            "minutes": round(sum(row["epoch_time_s"] for row in state["history"]) / 60, 1),
            "policy": record.get("gpu", {}).get("policy"), "note": note}


def _hash(ids: np.ndarray) -> np.ndarray:
    from galaxyprep import unit_hash

    return unit_hash(ids, 31)



def fit_power_law(n: np.ndarray, rmse: np.ndarray, at: float, draws: int = 4000) -> dict:
    """RMSE(n) = a n^-b + c by least squares; its value at `at` with a 95% interval from the covariance."""
    from scipy.optimize import curve_fit

    def law(x, a, b, c):
        return a * np.power(x, -b) + c

    params, cov = curve_fit(law, n, rmse, p0=(1.0, 0.5, 0.07), bounds=([0, 0, 0], [1e3, 3, 0.2]), maxfev=20000)
    rng = np.random.default_rng(0)
    samples = rng.multivariate_normal(params, cov, size=draws, check_valid="ignore")
    samples = samples[(samples[:, 0] > 0) & (samples[:, 1] > 0) & (samples[:, 2] >= 0)]
    at_values = law(at, *samples.T)
    return {"a": params[0], "b": params[1], "c": params[2], "sd": np.sqrt(np.diag(cov)).tolist(),
            "at": at, "predicted": float(law(at, *params)),
            "interval": [float(np.percentile(at_values, 2.5)), float(np.percentile(at_values, 97.5))],
            "residuals": (rmse - law(n, *params)).tolist()}


def plot(points: list[dict], law: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    n = np.array([p["n_train"] for p in points], dtype=float)
    y = np.array([p["holdout_rmse"] for p in points])
    x = np.geomspace(n.min() * 0.8, KAGGLE_TRAIN * 1.1, 200)
    fig = Figure(figsize=(6, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(n, y, "o", label="best recipe, holdout RMSE (16 views)")
    ax.plot(x, law["a"] * x ** -law["b"] + law["c"], "-",
            label=f"{law['a']:.3g} n^-{law['b']:.2f} + {law['c']:.4f}")
    lo, hi = law["interval"]
    ax.errorbar([law["at"]], [law["predicted"]], yerr=[[law["predicted"] - lo], [hi - law["predicted"]]],
                fmt="s", color="C1", capsize=4, label=f"extrapolated to {KAGGLE_TRAIN:,}: {law['predicted']:.4f}")
    ax.axhline(WINNER_SINGLE, color="grey", ls=":", label=f"winner's best single model {WINNER_SINGLE}")
    ax.set_xscale("log")
    ax.set_xlabel("training galaxies (fit's 90%)")
    ax.set_ylabel("RMSE on 1,156 holdout galaxies")
    ax.legend(fontsize=7)
    ax.set_title("Learning curve of --recipe best", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fractions", type=int, nargs="+", default=[8, 4, 2, 1])
    ap.add_argument("--precision", choices=["native", "float32"], default="native")
    args = ap.parse_args()
    train_ids = np.loadtxt(OUT / f"ids_train_{TAG}.txt", dtype=np.int64) if (OUT / f"ids_train_{TAG}.txt").exists() \
        else None
    holdout = OUT / f"real_holdout_{TAG}.h5"
    if train_ids is None or not holdout.exists():
        raise SystemExit("run `python bench/bench_vgg6_real.py --recipe best` first: it makes the split and holdout")
    points = [point(k, train_ids, holdout, args.precision) for k in sorted(args.fractions, reverse=True)]
    n = np.array([p["n_train"] for p in points], dtype=float)
    y = np.array([p["holdout_rmse"] for p in points])
    law = fit_power_law(n, y, KAGGLE_TRAIN * 0.9)  # fit trains on 90% of what it is given
    print(machine())
    for p in points:
        print(f"  1/{p['fraction']}: {p['n_train']:>5} training galaxies -> holdout RMSE {p['holdout_rmse']:.4f} "
              f"({p['minutes']:.0f} min, {p['policy']}; {p['note']})")
    sd = ", ".join(f"{s:.3g}" for s in law["sd"])
    print(f"  fit: RMSE = {law['a']:.4g} n^-{law['b']:.3f} + {law['c']:.4f} (sd {sd})"
          f"; residuals {', '.join(f'{r:+.4f}' for r in law['residuals'])}")
    print(f"  at {law['at']:,.0f} training galaxies (61,578 given to fit): {law['predicted']:.4f}, 95% interval "
          f"{law['interval'][0]:.4f}-{law['interval'][1]:.4f}; the winner's best single model {WINNER_SINGLE}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "learning_curve.json").write_text(json.dumps({"machine": machine(), "points": points, "law": law},
                                                        indent=2, default=float))
    plot(points, law, PLOT)


if __name__ == "__main__":
    main()
