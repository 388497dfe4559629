"""One evaluation report: numbers as JSON, a terminal table, optional ROC plots.

The report is plain JSON (no NaN: undefined values are null) so that runs can
be compared by any tool; plots use matplotlib's Agg canvas, imported only when
plots are asked for, so scoring works on a headless machine without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxyprep import CLASS_NAMES, QUESTION_NAMES, jsonable, write_json_atomic

from .leaderboard import BENCHMARKS, TOP_SCORES, leaderboard_place
from .metrics import (
    DEFAULT_MIN_REACHED,
    binary_auc,
    most_common_answer_accuracy,
    question_accuracy,
    rmse,
    rmse_mean_predictor,
    roc_auc_binarized,
    roc_curve_points,
)
from .pictures import write_question_accuracy_chart

AUC_THRESHOLD = 0.5


def build_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    plots_dir: Path | None = None,
    meta: dict | None = None,
) -> dict:
    """Score predictions against labels; with ``plots_dir``, also write PNGs there.

    Plots: ``question_accuracy.png`` (per-question accuracy against always
    giving the most common answer), ``roc_<class>.png`` for each of the 37
    classes and ``roc_grid.png`` with all of them; a class with one label
    value only gets an empty, labelled panel. (`score` adds a gallery of
    images, which this function does not have.)
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    score = rmse(t, p)
    auc = roc_auc_binarized(t, p, threshold=AUC_THRESHOLD)
    defined = [v for v in auc.values() if v is not None]
    report = {
        "n_images": int(t.shape[0]),
        "rmse": score,
        "rmse_mean_predictor": rmse_mean_predictor(t),
        "rmse_mean_predictor_note": "constant prediction = mean label vector of this same set",
        "question_accuracy": question_accuracy(t, p, min_reached=DEFAULT_MIN_REACHED),
        "question_accuracy_note": (
            f"top predicted answer == crowd's top answer, over galaxies where at least "
            f"{DEFAULT_MIN_REACHED:g} of the crowd was asked the question"
        ),
        "question_accuracy_most_common": most_common_answer_accuracy(t, min_reached=DEFAULT_MIN_REACHED),
        "question_accuracy_most_common_note": "the same accuracy for always giving the answer that is most often "
                                              "the crowd's top answer on this same set",
        "roc_auc": auc,
        "roc_auc_summary": {
            "label_rule": f"y_true >= {AUC_THRESHOLD:g}",
            "mean": float(np.mean(defined)) if defined else None,
            "min": float(np.min(defined)) if defined else None,
            "n_defined": len(defined),
            "undefined": [k for k, v in auc.items() if v is None],
        },
        "leaderboard": leaderboard_place(score),
        "meta": meta or {},
        "plots": [],
    }
    if plots_dir is not None:
        chart = write_question_accuracy_chart(report["question_accuracy"], report["question_accuracy_most_common"],
                                              Path(plots_dir))
        report["plots"] = [str(f) for f in [chart, *write_roc_plots(t, p, Path(plots_dir), auc)]]
    return jsonable(report)


def write_roc_plots(y_true: np.ndarray, y_pred: np.ndarray, plots_dir: Path,
                    auc: dict[str, float | None] | None = None) -> list[Path]:
    """One ROC PNG per class plus a 37-panel grid; returns the files written."""
    from matplotlib.figure import Figure  # Figure + savefig uses Agg, never a GUI backend

    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if auc is None:
        auc = roc_auc_binarized(t, p, threshold=AUC_THRESHOLD)
    plots_dir.mkdir(parents=True, exist_ok=True)
    labels = t >= AUC_THRESHOLD

    def draw(ax, j: int, small: bool) -> None:
        name = CLASS_NAMES[j]
        ax.set_xlim(-0.02, 1.02)  # a little margin, or a perfect curve hides in the frame
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        fs = 7 if small else 10
        if auc[name] is None:
            kind = "positive" if labels[:, j].all() else "negative"
            ax.set_title(f"{name}: undefined", fontsize=fs)
            ax.text(0.5, 0.5, f"all {labels.shape[0]} labels {kind}\n(no ROC curve)",
                    ha="center", va="center", fontsize=fs, color="grey")
        else:
            fpr, tpr, _ = roc_curve_points(labels[:, j], p[:, j])
            ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
            ax.plot(fpr, tpr, lw=1.0 if small else 1.5)
            ax.set_title(f"{name}  AUC {auc[name]:.3f}", fontsize=fs)
        if small:
            ax.tick_params(labelsize=5)
        else:
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")

    written = []
    for j, name in enumerate(CLASS_NAMES):
        fig = Figure(figsize=(4, 4), dpi=80)
        draw(fig.add_subplot(), j, small=False)
        fig.tight_layout()
        out = plots_dir / f"roc_{name}.png"
        fig.savefig(out)
        written.append(out)

    cols = 7
    rows = -(-len(CLASS_NAMES) // cols)
    fig = Figure(figsize=(cols * 2.0, rows * 2.1), dpi=80)
    axes = fig.subplots(rows, cols).ravel()
    for j in range(len(CLASS_NAMES)):
        draw(axes[j], j, small=True)
    for ax in axes[len(CLASS_NAMES):]:
        ax.set_axis_off()
    fig.suptitle(f"ROC per class (label = vote fraction >= {AUC_THRESHOLD:g}), "
                 f"{labels.shape[0]} images")
    fig.tight_layout()
    out = plots_dir / "roc_grid.png"
    fig.savefig(out)
    written.append(out)
    return written


def build_columns_report(y_true: np.ndarray, y_pred: np.ndarray, columns: tuple[str, ...], kinds: tuple[str, ...],
                         *, meta: dict | None = None) -> dict:
    """Score predictions of one's own label columns: RMSE overall and per column, ROC AUC of each 0/1 column.

    Nothing of the Kaggle tree applies (no questions, no leaderboard): the
    columns are whatever the labels file held. Each mean predictor is
    measured on this same set, like `rmse_mean_predictor`.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(columns):
        raise ValueError(f"labels {t.shape} and predictions {p.shape} for {len(columns)} columns")
    per_column = {}
    for j, (name, kind) in enumerate(zip(columns, kinds)):
        row = {"kind": kind, "rmse": rmse(t[:, j], p[:, j]),
               "rmse_mean_predictor": rmse_mean_predictor(t[:, j:j + 1])}
        if kind == "binary":
            row["roc_auc"] = binary_auc(t[:, j] >= 0.5, p[:, j])
            row["positives"] = int((t[:, j] >= 0.5).sum())
        per_column[name] = row
    return jsonable({
        "n_images": int(t.shape[0]),
        "rmse": rmse(t, p),
        "rmse_mean_predictor": rmse_mean_predictor(t),
        "rmse_mean_predictor_note": "constant prediction = mean label vector of this same set",
        "columns": list(columns),
        "per_column": per_column,
        "meta": meta or {},
        "plots": [],
    })


def format_columns_report(report: dict) -> str:
    """A `build_columns_report` as a terminal table."""
    k = len(report["columns"])
    lines = [f"Evaluation on {report['n_images']} images, {k} own label column{'s' if k != 1 else ''}", "",
             f"  {f'RMSE (all {k} outputs)':<44}{report['rmse']:.5f}",
             f"  {'mean predictor on this set':<44}{report['rmse_mean_predictor']:.5f}", "",
             f"  {'column':<24}{'kind':>10}{'RMSE':>10}{'mean pred.':>12}{'ROC AUC':>10}"]
    for name, row in report["per_column"].items():
        auc = _fmt(row.get("roc_auc"), ".3f") if row["kind"] == "binary" else ""
        lines.append(f"  {name:<24.24}{'0/1' if row['kind'] == 'binary' else 'fraction':>10}{row['rmse']:>10.5f}"
                     f"{row['rmse_mean_predictor']:>12.5f}{auc:>10}")
    return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_report(report: dict) -> str:
    """The report as a terminal table."""
    lines = []
    n = report["n_images"]
    lines.append(f"Evaluation on {n} images")
    lines.append("")
    lines.append(f"  {'RMSE (all 37 outputs)':<44}{report['rmse']:.5f}")
    lines.append(f"  {'mean predictor on this set':<44}{report['rmse_mean_predictor']:.5f}")
    anchors = [("Kaggle 1st place (private)", TOP_SCORES[0]), ("Kaggle 3rd place (private)", TOP_SCORES[2])]
    anchors += [(f"Kaggle {name}", s) for name, s in BENCHMARKS]
    for name, s in anchors:
        lines.append(f"  {name:<44}{s:.5f}")
    lb = report["leaderboard"]
    where = f"{lb['place']} of {lb['of']}" if lb["place"] is not None else \
        f"{lb['place_range'][0]}-{lb['place_range'][1]} of {lb['of']}"
    lines.append(f"  {'leaderboard place (indicative)':<44}{where}")
    lines.append("")

    qa = report["question_accuracy"]
    lines.append(f"Per-question accuracy (top answer vs crowd's; question reached by >= "
                 f"{qa['min_reached']:g} of the crowd)")
    lines.append(f"  {'question':<10}{'accuracy':>10}{'galaxies':>10}")
    for name in QUESTION_NAMES:
        row = qa["per_question"][name]
        lines.append(f"  {name:<10}{_fmt(row['accuracy'], '.3f'):>10}{row['n']:>10}")
    lines.append(f"  {'mean':<10}{_fmt(qa['mean'], '.3f'):>10}")
    lines.append("")

    s = report["roc_auc_summary"]
    lines.append(f"ROC AUC per class (label: {s['label_rule']}): mean {_fmt(s['mean'], '.3f')}, "
                 f"min {_fmt(s['min'], '.3f')}, defined for {s['n_defined']} of {len(CLASS_NAMES)}")
    if s["undefined"]:
        lines.append(f"  undefined (one label value only): {', '.join(s['undefined'])}")
    if report.get("plots"):
        lines.append(f"  {len(report['plots'])} plots in {Path(report['plots'][0]).parent}")
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> Path:
    """Write the report as strict JSON, atomically (temporary file, then rename)."""
    return write_json_atomic(path, report)
