"""The Galaxy Zoo 2 decision tree behind the 37 Kaggle columns.

One place holds the tree so that synthetic labels, label validation, the
network's tree head and per-question metrics all agree on it.
"""

from __future__ import annotations

import numpy as np

#: (question, number of answers), in Kaggle column order.
_ANSWERS = (
    ("Class1", 3),   # smooth / features or disc / star or artefact
    ("Class2", 2),   # edge-on: yes / no
    ("Class3", 2),   # bar: yes / no
    ("Class4", 2),   # spiral arms: yes / no
    ("Class5", 4),   # bulge: none / noticeable / obvious / dominant
    ("Class6", 2),   # anything odd: yes / no
    ("Class7", 3),   # roundness: completely / in between / cigar
    ("Class8", 7),   # odd feature: ring / lens / disturbed / irregular / other / merger / dust lane
    ("Class9", 3),   # edge-on bulge: rounded / boxy / none
    ("Class10", 3),  # arm winding: tight / medium / loose
    ("Class11", 6),  # number of arms: 1 / 2 / 3 / 4 / more / can't tell
)

CLASS_NAMES: tuple[str, ...] = tuple(
    f"{q}.{a + 1}" for q, n in _ANSWERS for a in range(n)
)
N_CLASSES = len(CLASS_NAMES)  # 37


def _slices() -> tuple[slice, ...]:
    out, start = [], 0
    for _, n in _ANSWERS:
        out.append(slice(start, start + n))
        start += n
    return tuple(out)


#: Column range of each question (0-based, end exclusive).
QUESTION_SLICES: tuple[slice, ...] = _slices()
QUESTION_NAMES: tuple[str, ...] = tuple(q for q, _ in _ANSWERS)

#: Question index -> column of the answer that leads to it (None: asked of all).
#: Ordered so that a parent is always scaled before its children.
PARENT_COLUMN: dict[int, int | None] = {
    0: None,                           # Q1 always asked
    1: CLASS_NAMES.index("Class1.2"),  # Q2 <- features/disc
    2: CLASS_NAMES.index("Class2.2"),  # Q3 <- not edge-on
    3: CLASS_NAMES.index("Class2.2"),  # Q4 <- not edge-on
    4: CLASS_NAMES.index("Class2.2"),  # Q5 <- not edge-on
    5: None,                           # Q6 asked of all (its votes sum to 1)
    6: CLASS_NAMES.index("Class1.1"),  # Q7 <- smooth
    7: CLASS_NAMES.index("Class6.1"),  # Q8 <- something odd
    8: CLASS_NAMES.index("Class2.1"),  # Q9 <- edge-on
    9: CLASS_NAMES.index("Class4.1"),  # Q10 <- spiral arms
    10: CLASS_NAMES.index("Class4.1"),  # Q11 <- spiral arms
}

#: The order in which questions are scaled (parents first).
SCALING_ORDER: tuple[int, ...] = (0, 5, 1, 6, 7, 2, 3, 4, 8, 9, 10)


def parent_totals(labels: np.ndarray) -> np.ndarray:
    """Fraction of votes that reached each question, shape (N, 11).

    The Kaggle fractions are cumulative: each question's answers sum to the
    fraction of the crowd that was asked it, i.e. the parent answer.
    """
    labels = np.asarray(labels, dtype=np.float64)
    totals = np.ones((labels.shape[0], len(QUESTION_SLICES)))
    for q, col in PARENT_COLUMN.items():
        if col is not None:
            totals[:, q] = labels[:, col]
    return totals


def _sum_minus_parent(labels: np.ndarray) -> np.ndarray:
    """(N, 11): each question's answers summed, less the fraction of the crowd that reached it."""
    labels = np.asarray(labels, dtype=np.float64)
    totals = parent_totals(labels)
    return np.stack([labels[:, sl].sum(axis=1) - totals[:, q] for q, sl in enumerate(QUESTION_SLICES)], axis=1)


def tree_violation(labels: np.ndarray) -> np.ndarray:
    """Largest |sum(answers) - parent| per row: 0 for labels that obey the tree."""
    return np.abs(_sum_minus_parent(labels)).max(axis=1)


#: How far a vote fraction may stray outside [0, 1] (the crowd fractions' rounding).
LABEL_TOLERANCE = 1e-4

#: How far a question's answers may sum above the fraction of the crowd that reached it. The
#: Kaggle labels obey the tree to 1.5e-6 (6-decimal rounding); this allows rounding to 3 decimals.
TREE_TOLERANCE = 1e-3


def tree_excess(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest sum(answers) - parent over the questions, and the question where it is."""
    excess = _sum_minus_parent(labels)
    return excess.max(axis=1), excess.argmax(axis=1)


def invalid_label_rows(labels: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> np.ndarray:
    """(N,) bool: the rows that `label_problem` refuses, for a whole array at once."""
    y = np.asarray(labels, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(y).all(axis=1) | (y < -tolerance).any(axis=1) | (y > 1 + tolerance).any(axis=1)
    return bad | (tree_excess(np.nan_to_num(y))[0] > TREE_TOLERANCE)


def label_problem(vec: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> str:
    """Why one row of 37 vote fractions cannot be a Galaxy Zoo label, or "" if it can.

    Each value finite and in [0, 1] (give or take `tolerance`); each question's
    answers summing to at most its parent answer plus TREE_TOLERANCE.
    """
    vec = np.asarray(vec, dtype=np.float64)
    if not np.all(np.isfinite(vec)):
        return f"{CLASS_NAMES[int(np.flatnonzero(~np.isfinite(vec))[0])]} is not a number"
    out = np.flatnonzero((vec < -tolerance) | (vec > 1 + tolerance))
    if out.size:
        return f"{CLASS_NAMES[int(out[0])]} = {vec[out[0]]:g} is outside [0, 1]"
    excess, question = tree_excess(vec[None, :])
    if excess[0] > TREE_TOLERANCE:
        q = int(question[0])
        sl = QUESTION_SLICES[q]
        parent = "1 (everyone)" if PARENT_COLUMN[q] is None else f"{vec[PARENT_COLUMN[q]]:g} ({CLASS_NAMES[PARENT_COLUMN[q]]})"
        return (f"the answers to {QUESTION_NAMES[q]} sum to {vec[sl].sum():g}, more than the {parent} "
                f"of the crowd that reached it")
    return ""


def normalize_tree(raw: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Reference (numpy) form of the tree output layer (Dieleman 2015).

    Per question relu(z) / (sum relu(z) + eps), then scaled by the parent
    answer, parents first. Used to test the Keras head and to build labels.
    """
    raw = np.maximum(np.asarray(raw, dtype=np.float64), 0.0)
    out = np.empty_like(raw)
    for q in SCALING_ORDER:
        sl = QUESTION_SLICES[q]
        part = raw[:, sl] / (raw[:, sl].sum(axis=1, keepdims=True) + eps)
        col = PARENT_COLUMN[q]
        if col is not None:
            part = part * out[:, col : col + 1]
        out[:, sl] = part
    return out
