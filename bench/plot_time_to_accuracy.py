"""Validation RMSE against training wall time, one curve per run folder: what a recipe buys per hour.

Reads each run's history.csv (fit writes every epoch's time and validation
RMSE there) and plots the best-so-far validation RMSE against the summed
epoch times; prints each run's time to reach a few RMSE levels. Runs on
the same validation split compare; runs on other machines compare only
after scaling by their speed.

    python bench/plot_time_to_accuracy.py RUN [RUN ...] [--out bench/out/time_to_accuracy.png]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT  # noqa: E402

LEVELS = (0.12, 0.11, 0.10, 0.097, 0.095)


def curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative minutes and best-so-far validation RMSE after each epoch."""
    with open(run / "history.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("val_rmse")]
    if not rows:
        raise SystemExit(f"{run}: no validation RMSE in history.csv")
    minutes = np.cumsum([float(row["epoch_time_s"]) for row in rows]) / 60
    best = np.minimum.accumulate([float(row["val_rmse"]) for row in rows])
    return minutes, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=OUT / "time_to_accuracy.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in args.runs:
        minutes, best = curve(run)
        ax.plot(minutes, best, label=f"{run.name} ({len(best)} epochs, {minutes[-1]:.0f} min)")
        reached = ", ".join(f"{level}: {minutes[np.argmax(best <= level)]:.0f} min" if (best <= level).any()
                            else f"{level}: not reached" for level in LEVELS)
        print(f"{run.name}: best validation RMSE {best[-1]:.4f} after {minutes[-1]:.1f} min; {reached}")
    ax.set_xlabel("training wall time (minutes, sum of epoch times)")
    ax.set_ylabel("best validation RMSE so far (1 view)")
    ax.set_ylim(top=0.14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
