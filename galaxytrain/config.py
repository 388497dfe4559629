"""Every option of a training run in one dataclass.

The same object is written to ``config.json`` and compared on resume: the
fields in `RESUME_KEYS` decide what a run *is* (changing one of them and
continuing would mix two different trainings); the others only say how to
run it (epochs may grow, workers, GPU options and the precision may change).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from galaxyprep import InputError

from .choices import AUGMENTS, HEADS, LOSSES, LR_SCHEDULES, STRATEGIES, Augment, Head, Loss, LrSchedule, Strategy

#: Options that must match a run directory's config.json to resume it.
RESUME_KEYS = ("model", "head", "loss", "learning_rate", "batch_size", "val_fraction", "seed",
               "augment", "limit", "input_size", "max_shift", "max_zoom",
               "tree_warmup_epochs", "lr_schedule", "weight_decay", "strategy", "start_from", "frozen_epochs",
               "layer_decay", "ema", "colour_noise", "dropout", "init_from")


#: What `galaxytrain finetune` sets unless told otherwise, over FitConfig's defaults (stated once: the
#: CLI's help and `galaxytrain.finetune` read them here).
FINETUNE_DEFAULTS: dict = dict(epochs=40, frozen_epochs=4, layer_decay=0.75, learning_rate=1e-3,
                               lr_schedule="cosine", val_fraction=0.2, patience=10, loss="mse", batch_size=32)


@dataclass
class FitConfig:
    """Options of `galaxytrain fit`; defaults are the CLI's."""

    data: Path
    out: Path
    model: str = "vgg6"
    #: The epochs of the run; with `hours`, the most it may plan.
    epochs: int = 20
    #: A time budget: after the first epoch, plan as many epochs as fit in this many hours at its speed
    #: (at most `epochs`; `galaxytrain.training.budget`), committed with that epoch, so a resumed run keeps
    #: them. An ensemble's members share it. None or 0: exactly `epochs`. Not a resume key.
    hours: float | None = None
    batch_size: int = 64
    val_fraction: float = 0.1
    seed: int = 0
    augment: Augment = "none"
    loader_workers: int = 1
    use_multiprocessing: bool = False
    max_queue_size: int = 10
    learning_rate: float = 1e-3
    limit: int | None = None
    gpu_memory_limit: str | None = None
    memory_growth: bool = True
    #: True: bfloat16 on a CPU, float16 on a GPU; False: float32; None: by the hardware
    #: (galaxytrain.compute). Not a resume key: a run may go on in another precision, said in the log.
    mixed_precision: bool | None = None
    #: XLA for the training step: True/False forced, None: off on a CPU, Keras' "auto" on a GPU
    #: (galaxytrain.compute). Not a resume key either.
    jit_compile: bool | None = None
    head: Head = "sigmoid"
    loss: Loss = "bce"
    #: The model's input: the centre (or, with augment "rotate", a random view) of this many
    #: pixels of the stored images; None: the stored size.
    input_size: int | None = None
    #: augment "rotate": shift U(-max_shift, max_shift) input pixels, zoom log-uniform in [1/max_zoom, max_zoom].
    max_shift: float = 4.0
    max_zoom: float = 1.3
    #: Epochs trained with the tree head's normalisation off (Dieleman's trick); head "tree" only.
    tree_warmup_epochs: int = 0
    #: constant; cosine (per batch, to 0 at the last epoch); step (x0.1 at half, x0.01 at three quarters).
    lr_schedule: LrSchedule = "constant"
    #: Decoupled weight decay (AdamW) when > 0; plain Adam at 0.
    weight_decay: float = 0.0
    #: The named recipe the other values started from, for the record. Not an argument: only
    #: `galaxytrain.recipes.resolve_fit_config` (behind ``fit --recipe`` and ``galaxytrain.fit(recipe=...)``)
    #: sets it, after filling in the recipe's values, so that a record never names a recipe it did not train.
    recipe: str | None = field(default=None, init=False)
    #: Train a recipe on a file built with another crop or size than the recipe's (said in the log).
    allow_other_build: bool = False
    #: A folder for TensorBoard's event files (every epoch's metrics and learning rate); None: none.
    tensorboard: Path | None = None
    overwrite: bool = False
    #: A live bar inside each epoch on a terminal (images/s, time left); never in a log, which gets
    #: one line per epoch either way.
    progress: bool = True
    #: tf.distribute: none (one process), mirrored (this machine's GPUs), multi-worker (TF_CONFIG's
    #: processes). Under a strategy ``batch_size`` is per replica: a step takes batch_size x replicas
    #: images; the learning rate is used as given, not scaled.
    strategy: Strategy = "none"
    #: Stop once the validation loss has not improved for this many epochs (None: train every epoch).
    #: Not a resume key: like --epochs, it says how long to go on.
    patience: int | None = None
    #: Fine-tuning (`galaxytrain finetune`): the trained model the run starts from ("pretrained:NAME" or a
    #: run folder), given a new head for the file's label columns; None: a new model.
    start_from: str | None = None
    #: Fine-tuning: epochs in which only the new head learns, before the encoder joins.
    frozen_epochs: int = 0
    #: Fine-tuning: each layer of the encoder learns at this factor of the rate of the one above it
    #: (the layer under the head at layer_decay, the one under it at its square, ...); 1: all alike.
    layer_decay: float = 1.0
    #: Weight averaging (Polyak): validate, and keep as best.keras, an exponential moving average of the
    #: trained weights with this momentum per step; 0: the trained weights themselves.
    ema: float = 0.0
    #: Colour noise (Krizhevsky et al. 2012, as Dieleman 2015 used it): each training view's pixels move
    #: along the principal axes of the training pixels' colours by N(0, colour_noise) of each axis' spread.
    colour_noise: float = 0.0
    #: The dropout rate of the model's dense layers (galaxy_cnn, galaxy_parts); None: the model's own (0.25).
    dropout: float | None = None
    #: A pretraining stage: start from the weights of this run folder (or "pretrained:NAME") of the same
    #: network, head and label columns, every layer training from the first step (e.g. a run on
    #: `galaxyprep synth` galaxies before the real ones); None: new weights from the seed.
    init_from: str | None = None
    #: An ensemble's student (`galaxytrain.training.student`): a galaxyprep file of unlabelled galaxies,
    #: built as `data` was, on which the members' soft votes teach one more member; None: no student.
    #: Not a resume key: the members train as without it.
    unlabelled: Path | None = None
    #: multi-worker: seconds a worker waits for every other worker of TF_CONFIG to join before it
    #: gives up with one line (a peer never started, started with another --data, or given the same
    #: index); 0 waits for ever. Not a resume key.
    join_timeout: float = 600.0

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.out = Path(self.out)
        self.tensorboard = None if self.tensorboard is None else Path(self.tensorboard)
        self.unlabelled = None if self.unlabelled is None else Path(self.unlabelled)

    def check(self) -> None:
        """Raise InputError for an option out of range (before any heavy work)."""
        def bad(option: str, problem: str) -> None:
            raise InputError(option, problem)

        if self.epochs < 1:
            bad("--epochs", f"must be at least 1, got {self.epochs}")
        if self.hours is not None and not 0 <= self.hours < 1e4:
            bad("--hours", f"must be a number of hours (0: no budget, exactly --epochs), got {self.hours}")
        if self.hours and self.strategy != "none":
            bad("--hours", f"plans one process's epochs; under --strategy {self.strategy} give --epochs")
        if self.unlabelled is not None and self.strategy != "none":
            bad("--unlabelled", f"trains an ensemble's student in one process; under --strategy {self.strategy} "
                                "train the members, then the student on a file of their soft votes")
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
        if self.loader_workers < 1:
            bad("--loader-workers", f"must be at least 1, got {self.loader_workers}")
        if self.max_queue_size < 1:
            bad("--max-queue-size", f"must be at least 1, got {self.max_queue_size}")
        if not 0 <= self.join_timeout < math.inf:
            bad("--join-timeout", f"must be 0 (no limit) or a number of seconds, got {self.join_timeout}")
        if not 0 < self.learning_rate < math.inf:
            bad("--learning-rate", f"must be positive and finite, got {self.learning_rate}")
        if self.limit is not None and self.limit < 2:
            bad("--limit", f"must be at least 2, got {self.limit}")
        if self.input_size is not None and self.input_size < 8:
            bad("--input-size", f"must be at least 8 pixels, got {self.input_size}")
        if not 0 <= self.max_shift < 1e6:
            bad("--max-shift", f"must be 0 or more, got {self.max_shift}")
        if not 1 <= self.max_zoom < 1e6:
            bad("--max-zoom", f"must be at least 1 (no zoom), got {self.max_zoom}")
        if self.tree_warmup_epochs < 0:
            bad("--tree-warmup-epochs", f"must be 0 or more, got {self.tree_warmup_epochs}")
        if self.tree_warmup_epochs > 0 and self.head != "tree":
            bad("--tree-warmup-epochs", f"switches the tree head's normalisation; it needs --head tree, "
                                        f"not {self.head}")
        if self.lr_schedule not in LR_SCHEDULES:
            bad("--lr-schedule", f"must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.strategy not in STRATEGIES:
            bad("--strategy", f"must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy != "none" and self.use_multiprocessing:
            bad("--use-multiprocessing", f"applies to --strategy none only; under --strategy {self.strategy} "
                                         "batches come from tf.data threads (--loader-workers of them)")
        if not 0 <= self.weight_decay < 1:
            bad("--weight-decay", f"must be in [0, 1), got {self.weight_decay}")
        if not 0 <= self.ema < 1:
            bad("--ema", f"must be in [0, 1) (a momentum per step, e.g. 0.995; 0: none), got {self.ema}")
        if not 0 <= self.colour_noise <= 10:
            bad("--colour-noise", f"must be in [0, 10] (a fraction of each colour axis' spread), got "
                                  f"{self.colour_noise}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            bad("--dropout", f"must be in [0, 1), got {self.dropout}")
        if self.patience is not None and self.patience < 1:
            bad("--patience", f"must be at least 1 epoch, got {self.patience}")
        if self.frozen_epochs < 0:
            bad("--frozen-epochs", f"must be 0 or more, got {self.frozen_epochs}")
        if not 0 < self.layer_decay <= 1:
            bad("--layer-decay", f"must be in (0, 1], got {self.layer_decay}")
        if self.start_from is None and (self.frozen_epochs or self.layer_decay != 1.0):
            bad("--frozen-epochs/--layer-decay", "apply to fine-tuning (galaxytrain finetune) only")
        if self.init_from is not None and self.start_from is not None:
            bad("--init-from", "starts a fit from another run's weights; fine-tuning (galaxytrain finetune) "
                               "has its own start model")
        if self.start_from is not None:
            if self.weight_decay > 0:
                bad("--weight-decay", "is not available when fine-tuning (it would also shrink a frozen encoder)")
            if self.dropout is not None:
                bad("--dropout", "is the start model's when fine-tuning")
            if self.head != "sigmoid":
                bad("--head", f"a fine-tuned model gets a new sigmoid head for the file's columns, not {self.head}")
            if self.frozen_epochs >= self.epochs:
                bad("--frozen-epochs", f"{self.frozen_epochs} leaves none of the {self.epochs} epochs to the "
                                       "encoder; give fewer, or more --epochs")

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        out = asdict(self)
        out["data"] = str(self.data)
        out["out"] = str(self.out)
        out["tensorboard"] = None if self.tensorboard is None else str(self.tensorboard)
        out["unlabelled"] = None if self.unlabelled is None else str(self.unlabelled)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        """Inverse of `to_dict`; keys this version does not know are dropped."""
        names = {f.name for f in fields(cls) if f.init}
        config = cls(**{k: v for k, v in d.items() if k in names})
        config.recipe = d.get("recipe")  # a record's own word, written by a resolved config
        return config

    def resume_key(self) -> dict:
        """The options that identify the training (see RESUME_KEYS)."""
        d = self.to_dict()
        return {k: d[k] for k in RESUME_KEYS}
