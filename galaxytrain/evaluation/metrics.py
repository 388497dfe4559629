"""Scores for 37-column Galaxy Zoo predictions (numpy only).

RMSE is the Kaggle metric. Per-question accuracy says whether the model picks
the crowd's favourite answer, which is what a user of the catalogue cares
about. The binarized ROC AUC reproduces the student project's per-class plots;
it is only defined for classes with both labels present.
"""

from __future__ import annotations

import numpy as np

from galaxyprep import CLASS_NAMES, QUESTION_NAMES, QUESTION_SLICES, parent_totals

#: A question counts as reached for a galaxy when at least this fraction of
#: the crowd was asked it (a majority of the voters got there).
DEFAULT_MIN_REACHED = 0.5

#: Two crowd answers whose fractions differ by no more than this are a tie.
_TIE_TOL = 1e-9


def _as_float_array(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray, *, tree: bool = True) -> tuple[np.ndarray, np.ndarray]:
    t = _as_float_array(y_true, "y_true")
    p = _as_float_array(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    if t.size == 0:
        raise ValueError("no values to score")
    if tree and (t.ndim != 2 or t.shape[1] != len(CLASS_NAMES)):
        raise ValueError(f"expected shape (N, {len(CLASS_NAMES)}), got {t.shape}")
    return t, p


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root of the mean squared error over every output of every image (Kaggle's metric)."""
    t, p = _check_pair(y_true, y_pred, tree=False)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def rmse_mean_predictor(y_true: np.ndarray) -> float:
    """RMSE of predicting the mean label vector of ``y_true`` for every image.

    The baseline a model must beat. Measured with the labels it is scored on,
    so it is slightly optimistic compared with a mean taken from training data.
    """
    t = _as_float_array(y_true, "y_true")
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, K) array, got shape {t.shape}")
    return rmse(t, np.broadcast_to(t.mean(axis=0), t.shape))


def question_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, *, min_reached: float = DEFAULT_MIN_REACHED
) -> dict:
    """Per question: how often the top predicted answer is the crowd's top answer.

    A galaxy counts for a question only if the question was *reached*: the
    fraction of the crowd that was asked it (``parent_totals``: 1 for Q1 and Q6,
    the parent answer's vote fraction otherwise) is at least ``min_reached``.
    The prediction is right when its argmax within the question's columns is
    one of the crowd's top answers (ties within 1e-9 all count as top).

    Returns ``{"min_reached", "per_question": {"Class1": {"accuracy", "n"}, ...},
    "mean", "n_questions"}``; ``accuracy`` is None for a question no galaxy
    reached, and ``mean`` is the unweighted mean over questions with an accuracy.
    """
    t, p = _check_pair(y_true, y_pred)
    per_question: dict[str, dict] = {}
    for name, sl, rows in _reached_questions(t, min_reached):
        n = int(rows.sum())
        if n == 0:
            per_question[name] = {"accuracy": None, "n": 0}
            continue
        correct = picks_crowd_top(t[rows, sl], p[rows, sl])
        per_question[name] = {"accuracy": float(correct.mean()), "n": n}
    defined = [v["accuracy"] for v in per_question.values() if v["accuracy"] is not None]
    return {
        "min_reached": float(min_reached),
        "per_question": per_question,
        "mean": float(np.mean(defined)) if defined else None,
        "n_questions": len(defined),
    }


def _reached_questions(t: np.ndarray, min_reached: float):
    """(question name, its columns, boolean rows of the galaxies that reached it) for each question."""
    reached = parent_totals(t) >= min_reached
    for q, (name, sl) in enumerate(zip(QUESTION_NAMES, QUESTION_SLICES)):
        yield name, sl, reached[:, q]


def crowd_top(answers: np.ndarray) -> np.ndarray:
    """Boolean (n, A): which answers of one question are the crowd's top ones (ties within 1e-9 all count)."""
    a = np.asarray(answers, dtype=np.float64)
    return a >= a.max(axis=1, keepdims=True) - _TIE_TOL


def picks_crowd_top(true_answers: np.ndarray, pred_answers: np.ndarray) -> np.ndarray:
    """Boolean (n,): whether the top predicted answer of one question is one of the crowd's top answers."""
    picks = np.argmax(np.asarray(pred_answers), axis=1)
    return crowd_top(true_answers)[np.arange(len(picks)), picks]


def most_common_answer_accuracy(y_true: np.ndarray, *, min_reached: float = DEFAULT_MIN_REACHED) -> dict:
    """Per question: the accuracy of always giving the answer that is most often the crowd's top answer.

    The baseline for `question_accuracy`, scored the same way over the same
    reached galaxies: a galaxy whose crowd ties between answers counts for each
    of them, so the chosen answer is the constant prediction that scores best
    (the first one on a tie of counts). It is measured on the labels it is
    scored against, so it is slightly optimistic, like `rmse_mean_predictor`.

    Returns ``{"Class1": {"answer": "Class1.1", "accuracy", "n"}, ...}``;
    ``answer`` and ``accuracy`` are None for a question no galaxy reached.
    """
    t = _as_float_array(y_true, "y_true")
    if t.ndim != 2 or t.shape[1] != len(CLASS_NAMES):
        raise ValueError(f"expected shape (N, {len(CLASS_NAMES)}), got {t.shape}")
    out: dict[str, dict] = {}
    for name, sl, rows in _reached_questions(t, min_reached):
        n = int(rows.sum())
        if n == 0:
            out[name] = {"answer": None, "accuracy": None, "n": 0}
            continue
        counts = crowd_top(t[rows, sl]).sum(axis=0)
        best = int(np.argmax(counts))
        out[name] = {"answer": CLASS_NAMES[sl.start + best], "accuracy": float(counts[best] / n), "n": n}
    return out


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    return ((starts + 1 + ends) / 2.0)[inverse]


def _binary_pair(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Flattened boolean labels and float scores of one class, and the class counts."""
    y = np.asarray(labels).astype(bool).ravel()
    s = _as_float_array(scores, "scores").ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    n_pos = int(y.sum())
    return y, s, n_pos, y.size - n_pos


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula; None if one class is absent."""
    y, s, n_pos, n_neg = _binary_pair(labels, scores)
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = _average_ranks(s)[y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_binarized(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Per-class ROC AUC with labels binarized as ``y_true >= threshold``.

    The score is the predicted vote fraction itself. A class whose binarized
    labels are all 0 or all 1 has no ROC curve: its AUC is None (never NaN).
    """
    t, p = _check_pair(y_true, y_pred)
    labels = t >= threshold
    return {name: binary_auc(labels[:, j], p[:, j]) for j, name in enumerate(CLASS_NAMES)}


def roc_curve_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, from (0, 0) to (1, 1).

    Returns ``(fpr, tpr, thresholds)``; ``thresholds[0]`` is +inf (nothing
    predicted positive), then the distinct scores in decreasing order. Needs
    both classes present.
    """
    y, s, n_pos, n_neg = _binary_pair(labels, scores)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both positive and negative labels")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of equal scores: the curve moves once per distinct score.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds
