"""An ensemble's student: one more net, trained on the labelled galaxies and the members' soft votes on unlabelled ones.

Dieleman found no use for the test images: hard pseudo-labels do not suit
vote fractions. Soft ones do. After an ensemble's members have trained
(`fit.fit_ensemble` with ``unlabelled``):

1. the members, averaged over the recipe's test-time views, predict the 37
   vote fractions of every galaxy of the unlabelled file;
2. one galaxyprep file, ``ENS/student.h5``, holds the labelled galaxies with
   their labels and the unlabelled ones with those votes;
3. the student trains on it as any run does (``ENS/student``, the first
   member's seed, its own 10% validation split) and joins the ensemble, so
   ``score`` and ``predict --run ENS`` average it with its teachers.

Measured on the bench holdout (recipe best-synth-distil, bench/RESULTS.md):
the two members averaged 0.0876, the three 0.0873 (an earlier training on
another VM: 0.0879 and 0.0874). The
student file names the teachers' weights and the unlabelled galaxies it was
made from; a rerun reuses it while they are the same and makes it again when
they are not, so each step resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from galaxyprep import (GalaxyFile, InputError, LabelSchema, Progress, check_joinable, normalize_tree,
                        write_joined_galaxy_file)

from ..ensemble import STUDENT_FILE
from ..run_dir import RunDir, sha256_file
from .data_record import sha256_array

Log = Callable[[str], None]

#: Test-time views of the members' soft votes without a recipe (a recipe's own views otherwise).
DEFAULT_VIEWS = 16
_KIND = "student_of"  # the key of a student file's made_from: the teachers and galaxies


@dataclass(frozen=True)
class UnlabelledGalaxies:
    """The unlabelled file, checked against the labelled one before any member trains."""

    path: Path
    #: Its galaxies that the labelled file does not hold: the ones the student adds.
    n_new: int
    labelled_images: int

    @property
    def cost(self) -> float:
        """The student's epoch time in members' epochs (it trains on more images)."""
        return (self.labelled_images + self.n_new) / max(self.labelled_images, 1)


def check_unlabelled(labelled: str | Path, unlabelled: str | Path) -> UnlabelledGalaxies:
    """One line if the student could not learn from `unlabelled`: another build, or no galaxy new to it."""
    unlabelled = Path(unlabelled).resolve()
    if not unlabelled.is_file():
        raise InputError(unlabelled, "no such galaxyprep file (build the unlabelled images with `galaxyprep build "
                                     "--images FOLDER --recipe NAME --out FILE`, no --labels)")
    with GalaxyFile(labelled) as lab, GalaxyFile(unlabelled) as unl:
        check_joinable(lab, unl)  # the join's own check, before the members train rather than after
        new = int(np.count_nonzero(~np.isin(unl.ids, lab.ids)))
        if new == 0:
            raise InputError(unlabelled, f"holds no galaxy that {lab.path} does not: nothing for a student to learn")
        return UnlabelledGalaxies(unlabelled, new, lab.n_images)


def student_file(folder: Path, teachers: list[Path], labelled: Path, unlabelled: Path, views: int,
                 progress: bool, log: Log) -> tuple[Path, bool]:
    """``folder/student.h5``, and whether it replaced one made from other teachers or galaxies.

    It holds the labelled galaxies and the teachers' soft votes on the
    unlabelled ones. Made once per set of teachers' weights and unlabelled
    galaxies (a resumed ensemble reuses it); made again when either changed
    (e.g. the members trained on to more epochs), and then a student trained
    on the old votes must start again: the run record does not see labels change.
    """
    from ..inference import predict_runs

    out = folder / STUDENT_FILE
    with GalaxyFile(labelled) as lab, GalaxyFile(unlabelled) as unl:
        # The files by content, not path: moved, they are the same; rebuilt (other labels or pixels), not.
        made_from = {"teachers": {t.name: sha256_file(RunDir(t).best) for t in teachers}, "views": int(views),
                     "labelled": {"ids_sha256": sha256_array(lab.ids), "labels_sha256": sha256_array(lab.labels()),
                                  "mean": lab.info.mean.tolist()},
                     "unlabelled": {"ids_sha256": sha256_array(unl.ids), "mean": unl.info.mean.tolist()}}
        replaced = out.exists()
        if replaced:
            found = _made_from(out)
            if found is None:
                raise InputError(out, "is not a student file that galaxytrain made; move it out of the ensemble "
                                      "folder")
            if found == made_from:
                log(f"student: {out} holds the teachers' soft votes already")
                return out, False
            log(f"student: {out} was made from other teachers or galaxies; making it again")
        log(f"student: the {len(teachers)} teachers' soft votes on the {unl.n_images:,} galaxies of {unl.path} "
            f"({views} views each)")
        bar = Progress(len(teachers) * unl.n_images, "soft votes", "galaxies") if progress else None
        try:
            votes = predict_runs(teachers, unl, tta=views, progress=None if bar is None else
                                 (lambda done, total: bar.update(done)))
        finally:
            if bar is not None:
                bar.close()
        source = f"{lab.info.labels_source} + the soft votes of {', '.join(str(t) for t in teachers)}"
        write_joined_galaxy_file(out, lab, unl, soft_labels(votes.mean, lab.label_schema),
                                 {"labels_source": source}, made_from={_KIND: made_from})
    log(f"student: wrote {out}")
    return out, replaced


def soft_labels(votes: np.ndarray, schema: LabelSchema) -> np.ndarray:
    """The teachers' average as labels the file accepts: in [0, 1], and along the decision tree for its columns.

    A tree head's votes obey the tree already (an average of answers that
    do still does) and pass unchanged; independent sigmoids' get Dieleman's
    normalisation, each answer a share of its parent's.
    """
    votes = np.clip(np.asarray(votes, dtype=np.float64), 0.0, 1.0)
    return (normalize_tree(votes) if schema.is_tree else votes).astype(np.float32)


def _made_from(path: Path) -> dict | None:
    """What a student file was made from; {} if it cannot be read (made again); None if it is not one."""
    try:
        with GalaxyFile(path) as f:
            found = f.made_from
    except (InputError, OSError):
        return {}
    return None if found is None or _KIND not in found else found[_KIND]
