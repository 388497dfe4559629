"""The run directory: what a training leaves behind, written so that kill -9 never corrupts it.

This module is the directory's one reader and one writer: training commits
epochs through it, prediction reads a run's record through it.

Layout::

    config.json          every option, the data file's description, the split
    state.json           epochs done, best so far, the full history, checksums
    last.keras           model + optimizer state after the last completed epoch
    best.keras           model with the lowest validation loss so far
    history.csv          one row per completed epoch (derived from state.json)
    training_curve.png   loss and RMSE per epoch

``state.json`` is the commit point of an epoch. At each epoch end the models
are first written to ``*.tmp.keras``, then the new state (with the SHA-256 of
those files) replaces the old one atomically, then the temporary models are
renamed into place. A run killed anywhere in that sequence is reconciled by
`RunDir.recover`: the model files whose checksums match the state win.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path

from galaxyprep import write_json_atomic, write_text_atomic

STATE_FORMAT = "galaxytrain-state"
STATE_VERSION = 1

#: Columns of history.csv, in this order; any other logged value follows.
HISTORY_COLUMNS = ("epoch", "loss", "rmse", "val_loss", "val_rmse", "learning_rate",
                   "epoch_time_s", "images_per_s", "peak_gpu_mib")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class RunDir:
    """Paths and atomic writers of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.json"
        self.last = self.path / "last.keras"
        self.best = self.path / "best.keras"
        self.history = self.path / "history.csv"
        self.curve = self.path / "training_curve.png"
        self.last_tmp = self.path / "last.tmp.keras"
        self.best_tmp = self.path / "best.tmp.keras"

    # -- reading -------------------------------------------------------------------------

    def read_config(self) -> dict | None:
        return _read_json(self.config)

    def read_state(self) -> dict | None:
        state = _read_json(self.state)
        if state is not None and state.get("format") != STATE_FORMAT:
            return None
        return state

    def problem(self) -> str | None:
        """Why this folder may not be used as it is without --overwrite, or None.

        A missing or empty folder, or one holding this module's run, is fine.
        A folder of other content, or a run whose state.json cannot be read
        (it would be lost), is not.
        """
        if not self.path.exists():
            return None
        if not self.path.is_dir():
            return "exists and is not a folder; a run directory is a folder"
        if not any(self.path.iterdir()):
            return None
        if self.state.exists():
            if self.read_state() is None:
                return f"{self.state.name} is damaged or not this tool's, so the run there cannot be resumed"
            return None
        record = self.read_config()
        if isinstance(record, dict) and isinstance(record.get("config"), dict) and "data" in record:
            return None  # a run stopped before its first epoch
        return "holds files that are not a galaxytrain run"

    def recover(self) -> dict | None:
        """Reconcile the model files with state.json after an interruption; return the state.

        Returns None when there is no completed epoch to resume from.
        """
        state = self.read_state()
        if state is None:
            return None
        for final, tmp, key in ((self.last, self.last_tmp, "last_sha256"), (self.best, self.best_tmp, "best_sha256")):
            want = state.get(key)
            if tmp.exists():
                if want and sha256_file(tmp) == want:
                    os.replace(tmp, final)  # killed after the state commit, before the rename
                else:
                    tmp.unlink()  # killed while writing the next epoch: the state is older
        want = state.get("last_sha256")
        if not want or not self.last.exists() or sha256_file(self.last) != want:
            state["damaged"] = f"{self.last.name} is missing or does not match {self.state.name}"
        return state

    def files(self) -> tuple[Path, ...]:
        """Every file this module writes in the folder (what no other command may replace)."""
        return (self.config, self.state, self.last, self.best, self.history, self.curve,
                self.last_tmp, self.best_tmp)

    def verified(self, model: Path) -> Path:
        """`model` (this run's best.keras or last.keras), or raise ValueError if it is not the one saved.

        state.json holds the SHA-256 of each model it committed; a file
        that differs was replaced or damaged after training. In the instant
        between a commit and its rename the matching file is still the
        temporary one, which is returned instead.
        """
        state = self.read_state()
        key = {self.best.name: "best_sha256", self.last.name: "last_sha256"}.get(model.name)
        want = None if state is None or key is None else state.get(key)
        if not want or sha256_file(model) == want:
            return model
        tmp = self.best_tmp if model.name == self.best.name else self.last_tmp
        if tmp.exists() and sha256_file(tmp) == want:
            return tmp
        raise ValueError(f"is not the model this run saved: its SHA-256 differs from the one {self.state.name} "
                         "recorded (replaced or damaged since)")

    def minutes_trained(self) -> float:
        """Minutes its recorded epochs took, to one decimal (0 before any): a model card's training time."""
        history = (self.read_state() or {}).get("history", [])
        return round(sum(float(row.get("epoch_time_s") or 0) for row in history) / 60, 1)

    # -- writing -------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove this module's files (for --overwrite); other files in the folder stay."""
        for p in self.files():
            p.unlink(missing_ok=True)

    def write_config(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config, record)

    def commit_epoch(self, model, state: dict, improved: bool, best_weights=None) -> None:
        """Save last (and best when improved), then commit `state`, then rename into place.

        `best_weights`: a context manager factory within which the model holds
        the weights that were validated (a moving average), saved as best;
        None: best is the last model. A write that fails before the commit (a
        full disk) removes its temporary models: the run stays at its last
        completed epoch.
        """
        try:
            model.save(self.last_tmp)
            _fsync(self.last_tmp)
            state["last_sha256"] = sha256_file(self.last_tmp)
            if improved and best_weights is None:
                shutil.copyfile(self.last_tmp, self.best_tmp)
                _fsync(self.best_tmp)
                state["best_sha256"] = state["last_sha256"]
            elif improved:
                with best_weights(model):
                    model.save(self.best_tmp)
                _fsync(self.best_tmp)
                state["best_sha256"] = sha256_file(self.best_tmp)
            state["format"] = STATE_FORMAT
            state["version"] = STATE_VERSION
            write_json_atomic(self.state, state)
        except BaseException:
            self.last_tmp.unlink(missing_ok=True)
            self.best_tmp.unlink(missing_ok=True)
            raise
        os.replace(self.last_tmp, self.last)
        if improved:
            os.replace(self.best_tmp, self.best)
        self.write_history(state["history"])

    def write_history(self, history: list[dict]) -> None:
        write_text_atomic(self.history, history_csv(history))


def new_state() -> dict:
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "epochs_done": 0, "monitor": None,
            "best_epoch": None, "best_value": None, "last_sha256": None, "best_sha256": None,
            "history": []}


def history_csv(history: list[dict]) -> str:
    """One row per epoch, HISTORY_COLUMNS first; missing values empty."""
    extra = sorted({k for row in history for k in row} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow(["" if row.get(c) is None else _fmt(row[c]) for c in columns])
    return text.getvalue()


def read_history_csv(path: str | Path) -> list[dict]:
    """history.csv back as a list of dicts of floats (epoch as int)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for raw in csv.DictReader(f):
            row = {k: (float(v) if v != "" else None) for k, v in raw.items()}
            row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
