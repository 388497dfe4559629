"""Trained models shipped inside the package, so that a first prediction needs no training and no network.

One folder per model under ``galaxytrain/pretrained/``::

    <name>/model.json     the architecture, the training record (crop, size, normalisation,
                          recipe), the card's figures, and the SHA-256 of the weights
    <name>/weights.npz    the weights, float16 (half the bytes of float32; what that moves
                          the predictions by is measured and stated in the card)
    <name>/MODEL_CARD.md  how it was made, how good it is, what it is for, its limits, the data's terms

A shipped ensemble is a folder whose model.json names its member networks
(shipped models, by names such as ``best-three/seed0`` for one kept in its
own folder, or ``best`` for one shipped alone) with each one's weights'
SHA-256: prediction averages them, and a member re-exported without the
ensemble is refused rather than silently mixed with the others.

This module is the format's one reader and one writer. A model is verified
before use: weights whose SHA-256 is not the one model.json names are refused.
scripts/train_pretrained.py makes the shipped models.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from galaxyprep import InputError, atomic_write, write_json_atomic, write_text_atomic

FORMAT = "galaxytrain-pretrained"
VERSION = 1
#: Where the shipped models live: package data, installed with the code.
PRETRAINED_ROOT = Path(__file__).resolve().parent.parent / "pretrained"
#: How a shipped model is named where a run folder could be meant (--pretrained NAME says it by itself).
PREFIX = "pretrained:"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its folder and what its model.json says."""

    name: str
    folder: Path
    meta: dict

    @property
    def summary(self) -> str:
        return str(self.meta.get("summary", ""))

    @property
    def record(self) -> dict:
        """The training record in a run's config.json layout: {"config": ..., "data": ..., "split": ...}."""
        return self.meta.get("record", {})

    @property
    def weights_path(self) -> Path:
        return self.folder / self.meta.get("weights", {}).get("file", "weights.npz")

    @property
    def card_path(self) -> Path:
        return self.folder / "MODEL_CARD.md"

    @property
    def is_ensemble(self) -> bool:
        return "members" in self.meta

    def members(self) -> list["ShippedModel"]:
        """An ensemble's networks, each checked to be the one the ensemble was exported with."""
        root = self.folder.parents[self.name.count("/")]
        found = []
        for member in self.meta.get("members", []):
            model = find_shipped(str(member.get("name")), root)
            if model is None or model.is_ensemble:
                raise InputError(self.folder / "model.json", f"names the member {member.get('name')!r}, which is not a "
                                                             "shipped network here; reinstall galaxytrain")
            if model.meta.get("weights", {}).get("sha256") != member.get("sha256"):
                raise InputError(model.folder / "model.json",
                                 f"is not the network the shipped ensemble {self.name!r} was made with (its weights' "
                                 "SHA-256 differs): one was exported without the other; reinstall galaxytrain")
            found.append(model)
        return found

    def load(self, choose_policy: Callable[[str], str] | None = None):
        """The Keras model, ready to predict, after checking the weights' SHA-256."""
        from .io import model_from_architecture

        weights = [_as_float32(w) for w in self.stored_weights()]
        return model_from_architecture(self.meta["architecture"], weights, choose_policy, source=self.weights_path)

    def stored_weights(self) -> list[np.ndarray]:
        """The weights as stored (float16 where compacted), after checking their SHA-256 against model.json."""
        path = self.weights_path
        if not path.is_file():
            raise InputError(path, f"the weights of shipped model {self.name!r} are missing; reinstall galaxytrain")
        data = path.read_bytes()
        want = self.meta.get("weights", {}).get("sha256")
        if hashlib.sha256(data).hexdigest() != want:
            raise InputError(path, f"does not match the SHA-256 in {self.folder / 'model.json'}: the shipped "
                                   f"model {self.name!r} was changed or damaged; reinstall galaxytrain")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[f"w{i:04d}"] for i in range(len(npz.files))]


def shipped_models(root: Path | None = None) -> dict[str, ShippedModel]:
    """Every shipped model by name (folders whose model.json is this format) under `root` (the package's)."""
    root = PRETRAINED_ROOT if root is None else root
    found = {}
    for meta_path in sorted(root.glob("*/model.json")) if root.is_dir() else []:
        meta = _read_meta(meta_path)
        if meta is not None:
            found[meta_path.parent.name] = ShippedModel(meta_path.parent.name, meta_path.parent, meta)
    return found


def _read_meta(meta_path: Path) -> dict | None:
    """A model.json of this format, or None (not one, or not readable)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def find_shipped(name: str, root: Path | None = None) -> ShippedModel | None:
    """The shipped model `name` (with or without the ``pretrained:`` prefix), or None when none has that name.

    A name with a slash is an ensemble's member in the ensemble's folder (``best-three/seed0``).
    """
    name = name.removeprefix(PREFIX)
    root = PRETRAINED_ROOT if root is None else root
    parts = Path(name).parts
    if len(parts) > 1:
        if ".." in parts or Path(name).is_absolute():
            return None
        meta = _read_meta(root / name / "model.json")
        return None if meta is None else ShippedModel(name, root / name, meta)
    return shipped_models(root).get(name)


def shipped_model(name: str, root: Path | None = None) -> ShippedModel:
    """The shipped model `name` (see `find_shipped`), or one line naming those there are."""
    found = find_shipped(name, root)
    if found is None:
        there = ", ".join(shipped_models(root)) or "none are installed"
        raise InputError(f"--pretrained {name.removeprefix(PREFIX)}",
                         f"no shipped model of that name; shipped: {there} (galaxytrain models)")
    return found


def compact_weights(weights: list[np.ndarray]) -> list[np.ndarray]:
    """The weights as shipped: float32 arrays stored as float16, others as they are."""
    out = []
    for w in weights:
        w = np.asarray(w)
        if w.dtype == np.float32:
            if np.abs(w).max(initial=0.0) >= np.finfo(np.float16).max:
                raise ValueError("a weight is beyond float16's range; ship this model in float32")
            w = w.astype(np.float16)
        out.append(w)
    return out


def _as_float32(w: np.ndarray) -> np.ndarray:
    return w.astype(np.float32) if w.dtype == np.float16 else w


def write_shipped_model(folder: Path, *, architecture: dict, weights: list[np.ndarray], record: dict,
                        summary: str, card: dict, name: str | None = None) -> ShippedModel:
    """Write one shipped model folder (weights compacted to float16, the card from `card`); model.json goes last.

    `name`: what it is loaded by (the folder's name unless it is an ensemble's member, ``best-three/seed0``).
    """
    name = folder.name if name is None else name
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"w{i:04d}": w for i, w in enumerate(compact_weights(weights))})
    data = buffer.getvalue()
    weights_path = folder / "weights.npz"
    with atomic_write(weights_path, "wb") as f:
        f.write(data)
    card = {**card, "weights_bytes": len(data)}
    write_text_atomic(folder / "MODEL_CARD.md", model_card(name, summary, record, card))
    meta = {"format": FORMAT, "version": VERSION, "name": name, "summary": summary,
            "weights": {"file": weights_path.name, "sha256": hashlib.sha256(data).hexdigest(), "dtype": "float16",
                        "bytes": len(data)},
            "record": record, "card": card, "architecture": architecture}
    write_json_atomic(folder / "model.json", meta)
    return ShippedModel(name, folder, meta)


def write_shipped_ensemble(folder: Path, members: list[ShippedModel], *, summary: str, card: dict) -> ShippedModel:
    """Write a shipped ensemble: model.json naming `members` (already shipped) with their SHA-256, and its card."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "MODEL_CARD.md", ensemble_card(folder.name, summary, card))
    meta = {"format": FORMAT, "version": VERSION, "name": folder.name, "summary": summary,
            "members": [{"name": m.name, "sha256": m.meta["weights"]["sha256"]} for m in members], "card": card}
    write_json_atomic(folder / "model.json", meta)
    return ShippedModel(folder.name, folder, meta)


def export_run(run: str | Path, folder: str | Path, *, summary: str, evaluation: dict, made_by: dict,
               synthetic: dict | None = None, student: dict | None = None, name: str | None = None) -> ShippedModel:
    """Ship a run's verified best.keras as `folder`: compact weights, its record, and a model card.

    `evaluation` holds the figures measured on the run's own validation
    split (scripts/train_pretrained.py measures them); `made_by` the
    command, commit, machine and date. The record keeps what prediction
    needs (config, data's crop, size and normalisation, split), not the
    training machine's paths. `synthetic` ({"command", "recipe"}): the run
    trained on galaxyprep synth galaxies, for the recipe that starts from it.
    `student` (its teachers and galaxy counts): the run is an ensemble's
    student (``fit --unlabelled``), whose own split mixes labelled galaxies
    with soft-labelled ones; `evaluation` is on the labelled ones.
    """
    from ..run_dir import RunDir
    from .io import load_model

    run_dir = RunDir(run)
    record = run_dir.read_config()
    state = run_dir.read_state()
    if record is None or state is None:
        raise InputError(run, "not a finished galaxytrain run (no config.json or state.json)")
    model = load_model(run_dir.verified(run_dir.best), compile=False)
    data = {k: v for k, v in record["data"].items() if k not in ("path", "source", "file_bytes")}
    config = {k: v for k, v in record["config"].items() if k not in ("data", "out", "tensorboard", "overwrite")}
    shipped_record = {"config": config, "data": data, "split": record.get("split", {}), "model": record.get("model"),
                      "gpu": record.get("gpu"), "versions": record.get("versions"),
                      "baseline_val_rmse_mean_predictor": record.get("baseline_val_rmse_mean_predictor")}
    if record.get("start"):  # a fine-tuned run: what it started from (and so its test-time views)
        shipped_record["start"] = {k: v for k, v in record["start"].items() if k != "weights"}
    training = {"epochs": state.get("epochs_done"), "best_epoch": state.get("best_epoch"),
                "minutes": run_dir.minutes_trained()}
    card = {"evaluation": evaluation, "made_by": made_by, "training": training}
    if synthetic:
        card["synthetic"] = synthetic
    if student:
        card["student"] = student
    return write_shipped_model(Path(folder), architecture=json.loads(model.to_json()), weights=model.get_weights(),
                               record=shipped_record, summary=summary, card=card, name=name)


#: The Limits of a model card for a model trained on the real images ({n_train}: its training galaxies).
_REAL_LIMITS = """- Trained on {n_train:,} galaxies, about a tenth of the Kaggle training set, all with GalaxyID >= 817377;
  a model trained on all 61,578 should do better.
- Vote fractions are what volunteers said, not ground truth. The low RMSE of the questions few galaxies reach
  (Class8, odd features; Class9, the bulge of edge-on disks) comes from the many galaxies whose votes there are
  near zero; `galaxytrain score` reports per-question accuracy over the galaxies that reach each question.
- Not tested on other surveys (DECaLS, HSC, DESI), other bands, other framings or pixel scales: build and score
  your own labelled images before trusting it there.
- Computed in float32 wherever the CPU has no native bfloat16; in bfloat16 (as trained) where it has. The two differ
  by rounding only."""

_LEADERBOARD_SCALE = """For scale (../shared/ANCHORS.md, private leaderboard): the Kaggle winner's best single model scored 0.0769 and his
17-model ensemble 0.0749, trained on the full 61,578 images; the central-pixel benchmark scored 0.1619.

"""

_KAGGLE_TERMS = """The images and labels are the Kaggle competition "Galaxy Zoo - The Galaxy Challenge" data (Galaxy Zoo 2
classifications of SDSS images); their use falls under the competition's data terms. Credit Willett et al. 2013
(MNRAS 435, 2835), Dieleman, Willett & Dambre 2015 (MNRAS 450, 1441), and SDSS. The data is not this project's own."""


def model_card(name: str, summary: str, record: dict, card: dict) -> str:
    """MODEL_CARD.md: data, recipe, commit, scores, machine, intended use, limits, and the data's terms."""
    cfg, data, split = record["config"], record["data"], record.get("split", {})
    ev, made, training = card["evaluation"], card["made_by"], card["training"]
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in cfg.items()
                       if k in ("model", "head", "loss", "augment", "input_size", "epochs", "batch_size",
                                "learning_rate", "lr_schedule", "seed"))
    questions = "\n".join(f"| {q} | {v:.4f} |" for q, v in ev.get("question_rmse", {}).items())
    synthetic = card.get("synthetic")  # {"command": ...}: a network pretrained on galaxyprep synth galaxies
    student = card.get("student")  # an ensemble's student: its teachers; what it learnt from, with and without labels
    hash_split = f"(fit's GalaxyID hash split, seed {split.get('seed')}, fraction {split.get('val_fraction')})"
    recipe_line = f"`galaxytrain fit --recipe {cfg.get('recipe')}` ({options})"
    split_line = (f"{split.get('n_train', '?'):,} galaxies trained on, {split.get('n_val', '?'):,} kept for "
                  f"validation\n  {hash_split}")
    n_val, teacher_rows = split.get("n_val", "?"), ""
    if synthetic:
        source = (f"the {data.get('n_images', '?'):,} synthetic galaxies of `{synthetic['command']}` (SDSS-like "
                  "renderings whose volunteers' votes are simulated along the Galaxy Zoo tree)")
        use = (f"The first stage of `galaxytrain fit --recipe {synthetic.get('recipe', '?')}`: a network pretrained "
               f"on simulations, that `fit --init-from pretrained:{name}` trains on real labelled galaxies (the "
               "same crop, size and 37 columns). Predicting real galaxies is not its purpose: its figures above "
               "are on synthetic ones.")
        limits = ("- Its validation galaxies are synthetic, drawn as its training galaxies were: the figures say it "
                  "learnt the simulation, not how it sees real galaxies.")
        terms = ("Synthetic: the images and votes are galaxyprep's own renderings, made again by the command "
                 "above; no third party's data.")
        scale = ""
    else:
        n_labelled = student["n_labelled"] if student else data.get("n_images", "?")
        source = f"the {n_labelled:,} labelled Kaggle training JPEGs of ../shared/data/gz (see its SOURCES.md)"
        use = ("Galaxy Zoo 2 vote fractions (the Kaggle challenge's 37 answers) for SDSS gri colour JPEGs framed as "
               "the challenge's\nare: 424 x 424 pixels, the galaxy centred, scaled to its Petrosian radius. A "
               "starting point for predictions without\ntraining, for fine-tuning on one's own labels, and as a "
               "baseline to beat.")
        limits = _REAL_LIMITS.format(n_train=student["n_labelled_train"] if student else split.get('n_train', '?'))
        terms = _KAGGLE_TERMS
        scale = _LEADERBOARD_SCALE
    if student:
        source += (f" and its {student['n_unlabelled']:,} unlabelled test JPEGs (their labels: the teachers' soft "
                   "votes)")
        recipe_line = (f"`galaxytrain fit --recipe {cfg.get('recipe')} --unlabelled TEST.h5`, whose last member this "
                       f"is ({options}).\n- **Teachers:** the recipe's {len(student['teachers'])} members (seeds "
                       f"{', '.join(str(t['seed']) for t in student['teachers'])}, each keeping its own 10% for "
                       f"validation), averaged over {student['views']} test-time views, voted on the test galaxies; "
                       f"they trained {sum(t['minutes'] for t in student['teachers']):.1f} min before it")
        split_line = (f"{student['n_labelled_train']:,} labelled and {student['n_unlabelled_train']:,} soft-labelled "
                      f"galaxies trained on, {split.get('n_val', '?'):,} kept for validation\n  {hash_split}, "
                      f"{ev.get('n_val', '?'):,} of them labelled: the figures below")
        n_val = ev.get("n_val", "?")
        teacher_rows = "".join(f"\n| its teacher {t['run']} alone, {ev.get('tta')} views | {t['val_rmse_tta']:.4f} |"
                               for t in student["teachers"] if t.get("val_rmse_tta") is not None)
        limits += ("\n- Its validation galaxies were kept out of its training and of the teacher with its seed, not "
                   "out of the\n  other teachers' (each kept its own 10%): the test galaxies' soft votes carry a "
                   "little of what those learnt\n  from them.")
    from ..recipes import RECIPES

    build = RECIPES[cfg["recipe"]].data.name if cfg.get("recipe") in RECIPES else cfg.get("recipe")
    return f"""# Shipped model `{name}`

{summary[:1].upper() + summary[1:]}.

Load it with `galaxytrain.load("{name}")`, or `galaxytrain predict --pretrained {name} --images DIR --out FILE.csv`.

## How it was made
- **Data:** {source},
  built with `galaxyprep build --recipe {build}`: the centre {data.get('crop')} pixels of each 424-pixel
  frame, area-averaged to {data.get('image_size')} pixels.
- **Recipe:** {recipe_line}.
- **Split:** {split_line}.
- **Training:** {training['epochs']} epochs, best validation loss at epoch {training['best_epoch']};
  {training['minutes']} min of training in {record.get('gpu', {}).get('policy', 'float32')} on {made.get('machine')}.
- **Made by:** `{made.get('command')}`, exported at commit {made.get('commit')}, {made.get('date')};
  TensorFlow {record.get('versions', {}).get('tensorflow')}, Keras {record.get('versions', {}).get('keras')}.
- **Stored:** weights as float16 ({card.get('weights_bytes', 0) / 1e6:.1f} MB); rounding them moved the validation predictions by
  at most {ev.get('float16_max_abs_change', float('nan')):.2g} and the RMSE by {ev.get('float16_rmse_change', float('nan')):+.1e}.

## How good
On the {n_val:,} validation galaxies (not trained on; they chose the epoch, so the figure is slightly
optimistic), computed in float32:

| predictor | RMSE over the 37 answers |
| --- | --- |
| this model, {ev.get('tta')} test-time views (the default) | {ev.get('rmse_tta', float('nan')):.4f} |
| this model, 1 view | {ev.get('rmse_1', float('nan')):.4f} |{teacher_rows}
| the training set's mean vote fractions | {ev.get('rmse_mean_predictor', float('nan')):.4f} |

{scale}RMSE per question (validation, {ev.get('tta')} views):

| question | RMSE |
| --- | --- |
{questions}

## Intended use
{use}

## Limits
{limits}

## Data terms
{terms}
"""


def ensemble_card(name: str, summary: str, card: dict) -> str:
    """MODEL_CARD.md of a shipped ensemble: its networks, how they were made, how good the average is, its limits."""
    ev, made, data = card["evaluation"], card["made_by"], card["data"]
    members = card["members"]
    rows = "\n".join(f"| `{m['name']}` | {m['role']} | {m['val_rmse_tta']:.4f} ({m['n_val']:,}) | {m['minutes']:.1f} |"
                     for m in members)
    alone = "".join(f"\n| `{m['name']}` alone, {ev['tta']} views | {m['rmse_tta_here']:.4f} |"
                    for m in members if m.get("rmse_tta_here") is not None)
    seen = [f"`{m['name']}` trained on {m['trained_on_val']:,} of them" for m in members if m.get("trained_on_val")]
    kept = [f"`{m['name']}`" for m in members if not m.get("trained_on_val")]
    optimistic = (f"\n{' and '.join(kept)} kept them out; {', '.join(seen)} (each network kept its\nown 10%), "
                  "so the average's figures here are optimistic." if seen else "")
    questions = "\n".join(f"| {q} | {v:.4f} |" for q, v in ev.get("question_rmse", {}).items())
    held = card.get("holdout")  # the recipe measured on galaxies none of its networks trained on
    clean = ("" if not held else
             f"\nOn galaxies none of its networks trained on ({held['source']}), the same recipe\ntrained on "
             f"{held['n_train']:,} of the shared galaxies scored **{held['rmse']:.4f}** on {held['n']:,} kept out by "
             f"GalaxyID hash,\nagainst {', '.join(f'{v:.4f}' for v in held['networks'])} for its networks alone.\n")
    first, last = members[0]["name"], members[-1]["name"]
    return f"""# Shipped model `{name}`

{summary[:1].upper() + summary[1:]}.

Predict with it whole: `galaxytrain.predict("{name}", IMAGES)` in Python, or in the shell
`galaxytrain predict --pretrained {name} --images DIR --out FILE.csv` (and `score --pretrained {name}`).
It averages its {len(members)} networks, each over {ev['tta']} test-time views: {len(members)} times the
prediction time of one. Each network also loads alone, by its name (`galaxytrain.load("{first}")`).

## How it was made
| network | role | validation RMSE, {ev['tta']} views, on its own split (galaxies) | minutes of training |
| --- | --- | --- | --- |
{rows}

- **Data:** the {data['n_labelled']:,} labelled Kaggle training JPEGs of ../shared/data/gz (see its SOURCES.md) and its
  {data['n_unlabelled']:,} unlabelled test JPEGs, built with `galaxyprep build --recipe {data['build']}`: the centre
  {data['crop']} pixels of each 424-pixel frame, area-averaged to {data['image_size']} pixels.
- **Recipe:** `galaxytrain fit --recipe {card['recipe']} --unlabelled TEST.h5`: the teachers, then the student on the
  labelled galaxies and the teachers' soft votes on the test ones; {sum(m['minutes'] for m in members):.1f} min of
  training in all on {made.get('machine')}.
- **Made by:** `{made.get('command')}`,
  exported at commit {made.get('commit')}, {made.get('date')}.

## How good
On the student's {ev['n_val']:,} labelled validation galaxies, computed in float32.{optimistic}

| predictor | RMSE over the 37 answers |
| --- | --- |
| this ensemble, {ev['tta']} test-time views (the default) | {ev['rmse_tta']:.4f} |
| this ensemble, 1 view | {ev['rmse_1']:.4f} |{alone}
| the training set's mean vote fractions | {ev['rmse_mean_predictor']:.4f} |
{clean}
{_LEADERBOARD_SCALE}RMSE per question (the student's validation galaxies, {ev['tta']} views):

| question | RMSE |
| --- | --- |
{questions}

## Intended use
The most accurate vote fractions this toolkit gives without training, for the images `{last}` is meant for (Galaxy Zoo
2's 37 answers for SDSS gri colour JPEGs framed as the challenge's), at {len(members)} times its prediction time. To
fine-tune on one's own labels, start from one network (`{last}`).

## Limits
{_REAL_LIMITS.format(n_train=data['n_labelled_train'])}
- Its networks saw the same labelled galaxies but for their own 10%, and the student learnt from the teachers: their
  errors are alike, so the average gains less than {len(members)} independent models would.

## Data terms
{_KAGGLE_TERMS}
"""
