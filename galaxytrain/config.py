"""Every option of a training run in one dataclass.

The same object is written to ``config.json`` and compared on resume: the
fields in `RESUME_KEYS` decide what a run *is* (changing one of them and
continuing would mix two different trainings); the others only say how to
run it (epochs may grow, workers and GPU options may change).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

AUGMENTS = ("none", "dihedral")
HEADS = ("sigmoid", "tree")
LOSSES = ("bce", "mse")

#: Options that must match a run directory's config.json to resume it.
RESUME_KEYS = ("model", "head", "loss", "learning_rate", "batch_size", "val_fraction", "seed",
               "augment", "limit", "mixed_precision")


@dataclass
class FitConfig:
    """Options of `galaxytrain fit`; defaults are the CLI's."""

    data: Path
    out: Path
    model: str = "vgg6"
    epochs: int = 20
    batch_size: int = 64
    val_fraction: float = 0.1
    seed: int = 0
    augment: str = "none"
    workers: int = 1
    use_multiprocessing: bool = False
    max_queue_size: int = 10
    learning_rate: float = 1e-3
    limit: int | None = None
    gpu_memory_limit: str | None = None
    memory_growth: bool = True
    mixed_precision: bool = False
    head: str = "sigmoid"
    loss: str = "bce"
    overwrite: bool = False
    verbose: int | str = "auto"

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.out = Path(self.out)

    def check(self) -> None:
        """Raise InputError for an option out of range (before any heavy work)."""
        from galaxyprep.errors import InputError

        def bad(option: str, problem: str) -> None:
            raise InputError(option, problem)

        if self.epochs < 1:
            bad("--epochs", f"must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            bad("--batch-size", f"must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            bad("--val-fraction", f"must be in [0, 1), got {self.val_fraction}")
        if self.augment not in AUGMENTS:
            bad("--augment", f"must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.head not in HEADS:
            bad("--head", f"must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.loss not in LOSSES:
            bad("--loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.seed < 0:
            bad("--seed", f"must be 0 or more, got {self.seed}")
        if self.workers < 1:
            bad("--workers", f"must be at least 1, got {self.workers}")
        if self.max_queue_size < 1:
            bad("--max-queue-size", f"must be at least 1, got {self.max_queue_size}")
        if not self.learning_rate > 0:
            bad("--learning-rate", f"must be positive, got {self.learning_rate}")
        if self.limit is not None and self.limit < 2:
            bad("--limit", f"must be at least 2, got {self.limit}")

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        out = asdict(self)
        out["data"] = str(self.data)
        out["out"] = str(self.out)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        """Inverse of `to_dict`; keys this version does not know are dropped."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resume_key(self) -> dict:
        """The options that identify the training (see RESUME_KEYS)."""
        d = self.to_dict()
        return {k: d[k] for k in RESUME_KEYS}
