"""What a file's label columns are: the 37 Kaggle vote fractions of the decision tree, or a user's own.

A labels CSV that holds all 37 Kaggle columns is the Galaxy Zoo tree: its
rows are checked against the tree and a network may end in the tree head.
Any other CSV (``GalaxyID`` and numeric columns of one's own, e.g. for
fine-tuning) is taken column by column: each value must lie in [0, 1], a
vote fraction or a 0/1 class, and nothing is assumed about how the columns
relate. The file keeps the columns and the kind of each, so that training,
scoring and prediction never guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tree import CLASS_NAMES, LABEL_TOLERANCE, invalid_label_rows, label_problem

#: fraction: a value in [0, 1] (a vote fraction, a probability); binary: 0 or 1 only (a class).
KINDS = ("fraction", "binary")


@dataclass(frozen=True)
class LabelSchema:
    """The label columns of a file, in order, and the kind of each."""

    columns: tuple[str, ...]
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.kinds) or not self.columns:
            raise ValueError(f"{len(self.columns)} columns but {len(self.kinds)} kinds")
        if any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds must be among {KINDS}, got {self.kinds}")

    @classmethod
    def kaggle(cls) -> "LabelSchema":
        return cls(CLASS_NAMES, ("fraction",) * len(CLASS_NAMES))

    @classmethod
    def of_values(cls, columns: tuple[str, ...] | list[str], values: np.ndarray) -> "LabelSchema":
        """The schema of `columns` holding `values` (N, K): a column of 0s and 1s only is binary.

        The Kaggle tree's columns are vote fractions whatever a sample of them holds.
        """
        columns = tuple(columns)
        if columns == CLASS_NAMES:
            return cls.kaggle()
        v = np.asarray(values, dtype=np.float64).reshape(-1, len(columns))
        binary = ((v == 0) | (v == 1)).all(axis=0) if len(v) else np.zeros(len(columns), bool)
        return cls(columns, tuple("binary" if b else "fraction" for b in binary))

    @classmethod
    def from_stored(cls, columns, kinds=None) -> "LabelSchema":
        """What a file's ``labels`` attributes say; a file without kinds holds vote fractions."""
        columns = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in columns)
        if kinds is None or len(kinds) != len(columns):
            return cls(columns, ("fraction",) * len(columns))
        return cls(columns, tuple(k.decode() if isinstance(k, bytes) else str(k) for k in kinds))

    @property
    def is_tree(self) -> bool:
        """The 37 Kaggle columns in their order: the decision tree's checks and head apply."""
        return self.columns == CLASS_NAMES

    @property
    def width(self) -> int:
        return len(self.columns)

    @property
    def binary(self) -> list[int]:
        """Indices of the 0/1 columns."""
        return [j for j, k in enumerate(self.kinds) if k == "binary"]

    def describe(self) -> str:
        if self.is_tree:
            return "the 37 Kaggle vote fractions (Galaxy Zoo decision tree)"
        shown = ", ".join(f"{c} ({'0/1' if k == 'binary' else 'fraction'})"
                          for c, k in zip(self.columns[:6], self.kinds[:6]))
        more = f", ... ({self.width} in all)" if self.width > 6 else ""
        return f"{self.width} own column{'s' if self.width != 1 else ''}: {shown}{more}"

    def row_problem(self, vec: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> str:
        """Why one row cannot be a label of this schema, or "" if it can."""
        if self.is_tree:
            return label_problem(vec, tolerance)
        return _value_problem(np.asarray(vec, dtype=np.float64), self.columns, tolerance)

    def invalid_rows(self, labels: np.ndarray, tolerance: float = LABEL_TOLERANCE) -> np.ndarray:
        """(N,) bool: the rows `row_problem` refuses, for a whole array at once."""
        if self.is_tree:
            return invalid_label_rows(labels, tolerance)
        y = np.asarray(labels, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(y).all(axis=1) | (y < -tolerance).any(axis=1) | (y > 1 + tolerance).any(axis=1)


def _value_problem(vec: np.ndarray, columns: tuple[str, ...], tolerance: float) -> str:
    if not np.all(np.isfinite(vec)):
        return f"{columns[int(np.flatnonzero(~np.isfinite(vec))[0])]} is not a number"
    out = np.flatnonzero((vec < -tolerance) | (vec > 1 + tolerance))
    if out.size:
        return (f"{columns[int(out[0])]} = {vec[out[0]]:g} is outside [0, 1] (own columns are vote fractions "
                "or 0/1 classes)")
    return ""


def own_columns_problem(columns: list[str]) -> str:
    """Why a header's own label columns (after GalaxyID) cannot be used, or ""."""
    if not columns:
        return "no label columns after GalaxyID"
    empty = [i + 2 for i, c in enumerate(columns) if not c]
    if empty:
        return f"column {empty[0]} of the header has no name"
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            return f"column {c!r} appears twice in the header"
        seen.add(c)
    if "GalaxyID" in seen:
        return "'GalaxyID' appears twice in the header"
    return ""
