"""The training curve a user looks at first: loss and RMSE per epoch against the mean predictor."""

from __future__ import annotations

import math
from pathlib import Path

from galaxyprep import atomic_write


def plot_training_curve(history: list[dict], path: Path, baseline: float | None = None) -> None:
    """Loss and RMSE per epoch (train and validation) as a PNG, written atomically.

    `baseline` is the validation RMSE of predicting the training mean: a model
    whose curve does not go below that line has learnt nothing from the images.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    for ax, key, title in ((fig.add_subplot(1, 2, 1), "loss", "loss"), (fig.add_subplot(1, 2, 2), "rmse", "RMSE")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = [row.get(prefix + key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [math.nan if v is None else v for v in values], style, ms=3,
                        label="validation" if prefix else "training")
        if key == "rmse" and baseline is not None:
            ax.axhline(baseline, color="grey", ls="--", lw=1, label=f"mean predictor ({baseline:.4f})")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
