"""An ensemble folder: runs of one training that differ only in their seed, predicted as their average.

``galaxytrain fit --seeds 0 1 2 --out ENS`` trains ``ENS/seed0``,
``ENS/seed1`` and ``ENS/seed2``, each an ordinary run directory (resumable,
locked, scored alone if one wishes), and ``ENS/ensemble.json`` names them.
``score`` and ``predict`` given ``--run ENS`` average the members, as they
average runs given by repeated ``--run``. With ``--unlabelled`` the members
teach a student (`galaxytrain.training.student`), ``ENS/student``, which the
manifest names as one more member, trained on ``ENS/student.h5``. This module is the folder's one reader
and writer.
"""

from __future__ import annotations

import json
from pathlib import Path

from galaxyprep import InputError, write_json_atomic

FORMAT = "galaxytrain-ensemble"
FORMAT_VERSION = 1
MANIFEST = "ensemble.json"
#: The member run trained on the others' soft votes (``fit --unlabelled``), and its training file.
STUDENT = "student"
STUDENT_FILE = "student.h5"


def member_name(seed: int) -> str:
    return f"seed{int(seed)}"


def prepare_ensemble(folder: str | Path, seeds: list[int], overwrite: bool = False,
                     student: bool = False) -> list[Path]:
    """The member run folders of `seeds` in `folder`, named in its manifest before any trains.

    With `student`, the manifest also names the student (`STUDENT`), trained
    after them; the folders returned are the seeds' alone.

    A folder that holds something other than an ensemble is refused (as a
    run folder is); an ensemble's manifest takes the members given, and
    members not named again are left in place, unlisted.
    """
    folder = Path(folder)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError("--seeds", f"give distinct seeds, got {seeds}")
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "exists and is not a folder; an ensemble is a folder of runs")
    if folder.is_dir() and any(folder.iterdir()) and _manifest(folder) is None and not overwrite:
        raise InputError(folder, "holds files that are not a galaxytrain ensemble; use another --out")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / MANIFEST, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                          "members": [member_name(s) for s in seeds] + ([STUDENT] if student else []),
                                          "seeds": seeds})
    return [folder / member_name(s) for s in seeds]


def read_members(folder: str | Path) -> list[Path] | None:
    """The trained member run folders an ensemble folder names, or None if `folder` is not an ensemble."""
    data = _manifest(Path(folder))
    if data is None:
        return None
    members = [Path(folder) / str(name) for name in data["members"]]
    missing = [m.name for m in members if not (m / "best.keras").exists()]
    if missing:
        raise InputError(folder, f"its member run(s) {', '.join(missing)} are not trained yet; run the same "
                                 "`galaxytrain fit --seeds ...` again to finish them")
    return members


def _manifest(folder: Path) -> dict | None:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(manifest, "is damaged: not readable as JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("members"), list):
        raise InputError(manifest, "is not a galaxytrain ensemble manifest")
    return data
