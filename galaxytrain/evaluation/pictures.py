"""Pictures of the answers: a gallery of the best and worst galaxies, and per-question accuracy as bars.

A user looks at these before reading a table: the gallery shows galaxies as
the network saw them (uint8 RGB of its input size, not normalized) with the
crowd's and the model's top answers to the first questions of the decision
tree; the bar chart shows how often the model's top answer is the crowd's,
next to what always giving the most common answer would score. Plain
functions of numpy arrays, drawn on matplotlib's Agg canvas (no pyplot state)
and written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxyprep import CLASS_NAMES, QUESTION_NAMES, QUESTION_SLICES, atomic_write, parent_totals

from .metrics import DEFAULT_MIN_REACHED, picks_crowd_top

GALLERY_FILE = "gallery.png"
QUESTION_ACCURACY_FILE = "question_accuracy.png"

#: Galaxies shown on each side of the gallery (best, worst).
GALLERY_K = 8

#: Short human names of the 37 answers (Willett et al. 2013, table 2).
ANSWER_NAMES: dict[str, str] = dict(zip(CLASS_NAMES, (
    "smooth", "features/disc", "star/artefact",
    "edge-on", "not edge-on",
    "bar", "no bar",
    "spiral", "no spiral",
    "no bulge", "small bulge", "obvious bulge", "dominant bulge",
    "odd", "not odd",
    "round", "in between", "cigar",
    "ring", "lens/arc", "disturbed", "irregular", "other", "merger", "dust lane",
    "rounded bulge", "boxy bulge", "no bulge",
    "tight arms", "medium arms", "loose arms",
    "1 arm", "2 arms", "3 arms", "4 arms", "5+ arms", "arms ?",
)))

#: What each question asks, in a word or two (axis labels of the bar chart).
QUESTION_TOPICS: dict[str, str] = dict(zip(QUESTION_NAMES, (
    "shape", "edge-on", "bar", "spiral", "bulge", "odd?", "roundness", "odd what", "bulge shape", "winding", "arms",
)))

#: The questions a gallery panel answers, in tree order; each is shown where the crowd reached it.
#: Q1 always; then Q7 (smooth) or Q2 (disc); after Q2, Q9 (edge-on) or Q4 (face-on).
GALLERY_QUESTIONS: tuple[str, ...] = ("Class1", "Class7", "Class2", "Class9", "Class4")


def per_galaxy_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(N,) RMSE of each galaxy over its 37 outputs: the Kaggle metric, one galaxy at a time."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"expected two (N, K) arrays of one shape, got {t.shape} and {p.shape}")
    return np.sqrt(np.mean((t - p) ** 2, axis=1))


def gallery_rows(errors: np.ndarray, k: int = GALLERY_K) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the k lowest errors (best first) and the k highest (worst first).

    The two never share a galaxy: with fewer than 2k rows the best side gets
    the larger half. Ties keep file order (a stable sort), so the choice is
    reproducible.
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n_best = min(k, (e.size + 1) // 2)
    n_worst = min(k, e.size - n_best)
    order = np.argsort(e, kind="stable")
    return order[:n_best], order[e.size - n_worst:][::-1]


def _answer_lines(t: np.ndarray, p: np.ndarray, min_reached: float) -> list[tuple[str, bool]]:
    """One galaxy's reached gallery questions as (text, model agrees) lines: crowd answer, model answer."""
    reached = parent_totals(t[None])[0] >= min_reached
    lines = []
    for name in GALLERY_QUESTIONS:
        q = QUESTION_NAMES.index(name)
        if not reached[q]:
            continue
        sl = QUESTION_SLICES[q]
        crowd, model = sl.start + int(np.argmax(t[sl])), sl.start + int(np.argmax(p[sl]))
        agrees = bool(picks_crowd_top(t[None, sl], p[None, sl])[0])
        text = (f"Q{q + 1:<2} {ANSWER_NAMES[CLASS_NAMES[crowd]]:<13.13} {t[crowd]:.2f} {'=' if agrees else 'x'} "
                f"{ANSWER_NAMES[CLASS_NAMES[model]]:<13.13} {p[model]:.2f}")
        lines.append((text, agrees))
    return lines


def _draw_galaxy(ax, image: np.ndarray, galaxy_id: int, error: float, lines: list[tuple[str, bool]]) -> None:
    """One panel: the image, its ID and RMSE as the title, and the answers (green agrees, red not) under it."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{galaxy_id}  RMSE {error:.3f}", fontsize=8, family="monospace")
    ax.text(0.5, -0.04, f"{'Q':<4}{'crowd':<21}{'model':<18}", transform=ax.transAxes, ha="center", va="top",
            fontsize=6, family="monospace", color="grey")
    for i, (text, agrees) in enumerate(lines):
        ax.text(0.5, -0.04 - 0.11 * (i + 1), text, transform=ax.transAxes, ha="center", va="top",
                fontsize=6, family="monospace", color="tab:green" if agrees else "tab:red")


def write_gallery(images: np.ndarray, ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, out_dir: Path,
                  *, k: int = GALLERY_K, n_scored: int | None = None,
                  min_reached: float = DEFAULT_MIN_REACHED) -> Path:
    """``gallery.png``: the k best and k worst of the given galaxies by per-galaxy RMSE, side by side.

    ``images`` are uint8 (N, T, T, 3), what the network saw, row for row with
    ``ids``, ``y_true`` and ``y_pred``; a caller with a large set passes only
    the rows `gallery_rows` chose (it picks the same ones again here) and the
    set's size as ``n_scored`` for the title.
    """
    from matplotlib.figure import Figure  # Agg through savefig, never a GUI backend

    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(ids):
        raise ValueError(f"expected uint8 (N, T, T, 3) images, one per ID, got {images.dtype} {images.shape}")
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    errors = per_galaxy_rmse(t, p)
    best, worst = gallery_rows(errors, k)
    cols = 2
    rows = max(1, -(-max(len(best), len(worst)) // cols))
    fig = Figure(figsize=(9.6, 2.9 * rows + 0.9), dpi=120)
    head, body = fig.subfigures(2, 1, height_ratios=[0.9, 2.9 * rows])
    scored = len(ids) if n_scored is None else n_scored
    head.text(0.5, 0.5, f"The best and the worst of {scored} galaxies, as the network saw them "
              f"({images.shape[1]} px)\nper question reached: the crowd's top answer (vote fraction), = or x, the model's "
              "(its output); green =: the model's top answer is the crowd's", ha="center", va="center", fontsize=9, color="dimgrey")
    for sub, side, chosen in zip(body.subfigures(1, 2, wspace=0.04), ("best", "worst"), (best, worst)):
        sub.suptitle(f"{len(chosen)} {side}: per-galaxy RMSE, {'lowest' if side == 'best' else 'highest'} first",
                     fontsize=11, weight="bold", color="tab:green" if side == "best" else "tab:red", y=0.99)
        axes = np.atleast_1d(sub.subplots(rows, cols, gridspec_kw={"hspace": 0.6, "top": 0.92, "bottom": 0.1,
                                                                   "left": 0.04, "right": 0.96})).ravel()
        for ax in axes[len(chosen):]:
            ax.set_axis_off()
        for ax, row in zip(axes, chosen):
            _draw_galaxy(ax, images[row], int(ids[row]), float(errors[row]), _answer_lines(t[row], p[row], min_reached))
    return _save(fig, Path(out_dir) / GALLERY_FILE)


def write_question_accuracy_chart(accuracy: dict, baseline: dict | None, out_dir: Path) -> Path:
    """``question_accuracy.png``: one bar per question, its galaxy count under it, the baseline as a marker.

    ``accuracy`` is `question_accuracy`'s result, ``baseline``
    `most_common_answer_accuracy`'s; a question no galaxy reached gets no bar
    and "n/a".
    """
    from matplotlib.figure import Figure

    per_question = accuracy["per_question"]
    names = list(per_question)
    x = np.arange(len(names))
    values = [per_question[q]["accuracy"] for q in names]
    fig = Figure(figsize=(10, 4.6), dpi=100)
    ax = fig.add_subplot()
    ax.bar(x, [np.nan if v is None else v for v in values], width=0.6, color="tab:blue", label="model")
    if baseline is not None:
        base = [baseline[q]["accuracy"] for q in names]
        ax.scatter(x, [np.nan if b is None else b for b in base], marker="_", s=900, linewidths=2.5, color="black",
                   zorder=3, label="always the most common crowd answer")
    for i, v in enumerate(values):  # inside the bar's top, clear of the baseline marker above or across it
        inside = v is not None and v >= 0.1
        ax.text(i, v - 0.015 if inside else (v or 0) + 0.015, "n/a" if v is None else f"{v:.2f}", ha="center",
                va="top" if inside else "bottom", fontsize=8, color="white" if inside else "grey")
    ax.set_xticks(x, [f"Q{i + 1}\n{QUESTION_TOPICS[q]}\n{_galaxies(per_question[q]['n'])}" for i, q in enumerate(names)],
                  fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("top answer == crowd's top answer")
    ax.set_title(f"Per-question accuracy over galaxies where >= {accuracy['min_reached']:g} of the crowd reached "
                 f"the question (mean {_fmt(accuracy['mean'])})", fontsize=10, pad=24)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8, markerscale=0.4)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / QUESTION_ACCURACY_FILE)


def _galaxies(n: int) -> str:
    return f"{n} galax{'y' if n == 1 else 'ies'}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _save(fig, path: Path) -> Path:
    """The figure as a PNG that appears whole or not at all."""
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path
