"""How the models shipped in galaxytrain/pretrained/ were made, as a script that makes them again.

    python scripts/train_pretrained.py                  # build, fit, export: about 2 h on 2 cores
    python scripts/train_pretrained.py --stage export   # only repackage a finished run
    python scripts/train_pretrained.py --name synth     # the network --recipe best-synth starts from

It runs the README's own commands on the shared Kaggle images. `best` is the
student of the most accurate recipe: the recipe's build of all labelled
images in ../shared/data/gz and of the unlabelled test images beside them,
`galaxytrain fit --recipe best-synth-distil --unlabelled TEST` (two teachers,
seeds 0 and 1, each keeping its own 10% for validation, then the student,
seed 0, on the labelled galaxies and the teachers' votes on the test ones),
then the student's best model exported with its model card into the package:
one network, which learnt from the three-model average's soft votes. Rerun it
whenever the recipe changes; the card records the commit it was made at.

`--name best-three` ships the same training's three networks as one
ensemble, the recipe's most accurate predictor: the two teachers are
exported into its folder, and the student is `best` itself, checked to be
this run's student (so export `best` first).

`--name synth` makes the simulation-pretrained network instead: `galaxyprep
synth` galaxies (no real data), built and trained as SHIPPED says, the first
stage of `fit --recipe best-synth` (and so of `best`'s teachers and student).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "gz"
BIN = Path(sys.executable).parent

#: How each shipped model is made: the recipe it trains with; for a student, the folder of unlabelled
#: images its teachers vote on; for a simulation-pretrained one the `galaxyprep synth` galaxies, its
#: epochs (instead of the recipe's) and the recipe that starts from it; for an ensemble, the shipped
#: model whose training it shares (its student).
SHIPPED: dict[str, dict] = {
    "best": dict(recipe="best-synth-distil", unlabelled="images_test"),
    "best-three": dict(recipe="best-synth-distil", unlabelled="images_test", student_of="best"),
    "synth": dict(recipe="best", synth=dict(n=12_000, seed=0), epochs=12, for_recipe="best-synth"),
}


#: A recipe's ensemble measured on galaxies none of its networks trained on (bench/RESULTS.md): the same
#: recipe trained by bench/bench_vgg6_real.py on the shared galaxies outside its GalaxyID-hash holdout.
HOLDOUT: dict[str, dict] = {
    "best-synth-distil": dict(rmse=0.0873, networks=[0.0884, 0.0889, 0.0881], n_train=4230, n=1156,
                              source='bench/RESULTS.md, "The student stage in one command"'),
}


def run(*command: str) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pretrained",
                        help="folder for the build and the run (not part of the package)")
    parser.add_argument("--name", default="best", choices=sorted(SHIPPED), help="the shipped model's name")
    parser.add_argument("--seed", type=int, default=None,
                        help="the run's seed, for a recipe of one run [default: 0]; a recipe of several names its own")
    parser.add_argument("--stage", choices=["all", "build", "fit", "export"], default="all")
    args = parser.parse_args()
    how = SHIPPED[args.name]
    from galaxytrain.ensemble import STUDENT
    from galaxytrain.recipes import get_recipe

    recipe = get_recipe(how["recipe"])
    if recipe.seeds and args.seed is not None:
        parser.error(f"--name {args.name} trains --recipe {recipe.name}, whose seeds are its own {list(recipe.seeds)}")
    seed = [] if recipe.seeds else ["--seed", str(args.seed or 0)]
    work_name = how.get("student_of", args.name)  # an ensemble's files are its student's
    data = args.work / f"{work_name}.h5"
    # a recipe of several runs trains an ensemble folder; the shipped network is its student
    run_dir = args.work / (f"run-{work_name}" if recipe.seeds else f"run-{work_name}-s{args.seed or 0}")
    shipped_run = run_dir / STUDENT if recipe.student else run_dir
    images, labels = SHARED / "images", SHARED / "training_solutions_rev1.csv"
    build = [str(BIN / "galaxyprep"), "build", "--recipe", recipe.data.name]
    if "synth" in how:
        kaggle = args.work / f"{args.name}-galaxies"
        images, labels = kaggle / "images_training_rev1", kaggle / "training_solutions_rev1.csv"
        if args.stage in ("all", "build") and not labels.exists():
            run(str(BIN / "galaxyprep"), "synth", "--out", str(kaggle), *_synth_options(how), "-q")
    if args.stage in ("all", "build") and not data.exists():
        run(*build, "--images", str(images), "--labels", str(labels), "--out", str(data))
    unlabelled = []
    if "unlabelled" in how:
        test = args.work / f"{work_name}-test.h5"
        if args.stage in ("all", "build") and not test.exists():
            run(*build, "--images", str(SHARED / how["unlabelled"]), "--out", str(test))
        unlabelled = ["--unlabelled", str(test)]
    if args.stage in ("all", "fit"):
        # rerunning resumes an interrupted fit exactly
        epochs = ["--epochs", str(how["epochs"])] if "epochs" in how else []
        run(str(BIN / "galaxytrain"), "fit", "--recipe", recipe.name, "--data", str(data), "--out", str(run_dir),
            *seed, *unlabelled, *epochs, "--no-progress")
    if args.stage in ("all", "export") and "student_of" in how:
        export_ensemble(run_dir, data, args.name, how["student_of"])
    elif args.stage in ("all", "export"):
        export(shipped_run, data, args.name, seed, teachers=run_dir if recipe.student else None)


def _synth_options(how: dict) -> list[str]:
    return ["--n", str(how["synth"]["n"]), "--seed", str(how["synth"]["seed"])]


def evaluate(run_dir: Path, data: Path) -> dict:
    """The card's figures, on the run's own validation split, computed in float32 (every CPU has it)."""
    import numpy as np

    from galaxyprep import QUESTION_NAMES, QUESTION_SLICES, GalaxyFile
    from galaxytrain.data.split import split_rows
    from galaxytrain.inference import TrainedModel
    from galaxytrain.inference.trained import run_record
    from galaxytrain.models import load_model_for_prediction
    from galaxytrain.models.pretrained import compact_weights

    record = run_record(run_dir)
    with GalaxyFile(data) as f:
        ids, images, labels = f.ids.copy(), f.images(0, f.n_images), np.asarray(f.checked_labels(), np.float64)
    train, val = split_rows(ids, record["split"]["val_fraction"], record["split"]["seed"])
    model = load_model_for_prediction(run_dir / "best.keras", lambda saved: "float32")
    trained = TrainedModel(model, run_dir / "best.keras", str(run_dir), record)

    def predicted(tta: int) -> np.ndarray:
        return np.clip(trained.predict(images[val], ids=ids[val], tta=tta).mean.astype(np.float64), 0, 1)

    def rmse(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean((p - labels[val]) ** 2)))

    full, one = predicted(trained.tta), predicted(1)
    model.set_weights([w.astype(np.float32) for w in compact_weights(model.get_weights())])
    half = predicted(trained.tta)
    mean = labels[train].mean(axis=0)
    return {"tta": trained.tta, "n_val": int(len(val)), "rmse_tta": rmse(full), "rmse_1": rmse(one),
            "rmse_mean_predictor": rmse(np.broadcast_to(mean, full.shape)),
            "float16_max_abs_change": float(np.abs(half - full).max()),
            "float16_rmse_change": rmse(half) - rmse(full),
            "question_rmse": {q: float(np.sqrt(np.mean((full[:, sl] - labels[val][:, sl]) ** 2)))
                              for q, sl in zip(QUESTION_NAMES, QUESTION_SLICES)}}


def made_by(name: str, seed: list[str]) -> dict:
    """The card's command, commit, machine and date."""
    import datetime

    sys.path.insert(0, str(ROOT))
    from bench._common import machine
    from galaxytrain.compute import cpu_bfloat16_units

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {"command": " ".join(["python scripts/train_pretrained.py --name", name, *seed]),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "machine": f"{machine()}; bfloat16 units: {', '.join(cpu_bfloat16_units()) or 'none'}",
            "date": datetime.date.today().isoformat()}


def export(run_dir: Path, data: Path, name: str, seed: list[str], teachers: Path | None = None) -> None:
    """Ship `run_dir` as `name`; `teachers`: the ensemble folder whose student `run_dir` is."""
    from galaxytrain.ensemble import STUDENT, read_members
    from galaxytrain.models.pretrained import PRETRAINED_ROOT, export_run
    from galaxytrain.recipes import get_recipe

    evaluation = evaluate(run_dir, data)
    made = made_by(name, seed)
    how = SHIPPED[name]
    recipe = get_recipe(how["recipe"])
    network = f"{recipe.options['model']}, {recipe.options['head']} head"
    synthetic = student = None
    if "synth" in how:
        synthetic = {"command": "galaxyprep synth " + " ".join(_synth_options(how)), "recipe": how["for_recipe"]}
        summary = (f"the {recipe.name} recipe's network ({network}) pretrained for {how['epochs']} epochs on "
                   f"{how['synth']['n']:,} galaxyprep synth galaxies, the start of --recipe {how['for_recipe']}; "
                   f"validation RMSE {evaluation['rmse_tta']:.4f} on synthetic galaxies")
    elif teachers is not None:
        student = _student_card(teachers, [m for m in read_members(teachers) if m.name != STUDENT], data, evaluation)
        summary = (f"the student of the {recipe.name} recipe ({network}): one network trained on the shared "
                   f"Kaggle images and its two teachers' soft votes on the shared test images; validation RMSE "
                   f"{evaluation['rmse_tta']:.4f} with {evaluation['tta']} views")
    else:
        summary = (f"the {recipe.name} recipe ({network}) trained on the shared Kaggle images; validation RMSE "
                   f"{evaluation['rmse_tta']:.4f} with {evaluation['tta']} views")
    shipped = export_run(run_dir, PRETRAINED_ROOT / name, summary=summary, evaluation=evaluation, made_by=made,
                         synthetic=synthetic, student=student)
    print(f"exported {run_dir} -> {shipped.folder} ({shipped.meta['weights']['bytes'] / 1e6:.1f} MB): "
          f"validation RMSE {evaluation['rmse_tta']:.4f} ({evaluation['tta']} views), {evaluation['rmse_1']:.4f} "
          f"(1 view), mean predictor {evaluation['rmse_mean_predictor']:.4f}")


def export_ensemble(folder: Path, data: Path, name: str, student_name: str) -> None:
    """Ship the ensemble folder's teachers in PRETRAINED_ROOT/`name`/ and the ensemble of them and the student.

    The student is the shipped `student_name`, refused unless its weights are
    this folder's student's (an ensemble of networks from two trainings would
    describe neither).
    """
    import numpy as np

    from galaxyprep import QUESTION_NAMES, QUESTION_SLICES, GalaxyFile
    from galaxytrain.data.split import split_rows
    from galaxytrain.ensemble import STUDENT, read_members
    from galaxytrain.inference import TrainedModel
    from galaxytrain.inference.predict import predict_source
    from galaxytrain.inference.trained import run_record
    from galaxytrain.models import load_model_for_prediction
    from galaxytrain.models.pretrained import (PREFIX, PRETRAINED_ROOT, compact_weights, export_run, shipped_model,
                                               write_shipped_ensemble)
    from galaxytrain.recipes import get_recipe
    from galaxytrain.run_dir import RunDir

    student = shipped_model(student_name)
    run_weights = load_model_for_prediction(folder / STUDENT / "best.keras", lambda saved: "float32").get_weights()
    stored = student.stored_weights()
    if len(stored) != len(run_weights) or not all(np.array_equal(a, b) for a, b in
                                                   zip(stored, compact_weights(run_weights))):
        raise SystemExit(f"the shipped {student_name!r} is not {folder / STUDENT}'s best model: export it first "
                         f"(--name {student_name} --stage export)")
    made = made_by(name, [])
    networks, described = [], []
    for teacher in [m for m in read_members(folder) if m.name != STUDENT]:
        evaluation = evaluate(teacher, data)
        seed = run_record(teacher)["config"]["seed"]
        summary = (f"teacher seed {seed} of the shipped ensemble {name} (its student is {student_name!r}); "
                   f"validation RMSE {evaluation['rmse_tta']:.4f} with {evaluation['tta']} views on its own split")
        networks.append(export_run(teacher, PRETRAINED_ROOT / name / teacher.name, summary=summary,
                                   evaluation=evaluation, made_by=made, name=f"{name}/{teacher.name}"))
        described.append({"role": f"teacher, seed {seed}", "evaluation": evaluation, "run": teacher})
    networks.append(student)
    described.append({"role": "student, the shipped `best`" if student_name == "best" else "student",
                      "evaluation": student.meta["card"]["evaluation"], "run": folder / STUDENT})

    # the student's labelled validation galaxies, predicted in float32 from the shipped (float16) weights
    split = student.record["split"]
    with GalaxyFile(data) as f:
        ids, images, labels = f.ids.copy(), f.images(0, f.n_images), np.asarray(f.checked_labels(), np.float64)
    train, val = split_rows(ids, split["val_fraction"], split["seed"])
    loaded = [TrainedModel(n.load(lambda saved: "float32"), n.weights_path, PREFIX + n.name, dict(n.record))
              for n in networks]
    tta = loaded[-1].tta

    def predicted(views: int) -> np.ndarray:
        found = predict_source(loaded, images[val], tta=views, ids=ids[val]).mean
        return np.clip(found.astype(np.float64), 0, 1)

    def rmse(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean((p - labels[val]) ** 2)))

    full, one = predicted(tta), predicted(1)
    members = []
    for network, about in zip(networks, described):
        record = run_record(about["run"])
        own_train, _ = split_rows(ids, record["split"]["val_fraction"], record["split"]["seed"])
        same_split = record["split"]["seed"] == split["seed"]
        members.append({"name": network.name, "role": about["role"], "val_rmse_tta": about["evaluation"]["rmse_tta"],
                        "n_val": about["evaluation"]["n_val"], "minutes": RunDir(about["run"]).minutes_trained(),
                        "rmse_tta_here": about["evaluation"]["rmse_tta"] if same_split else None,
                        "trained_on_val": int(np.isin(val, own_train).sum())})
    student_card = student.meta["card"]["student"]
    evaluation = {"tta": tta, "n_val": int(len(val)), "rmse_tta": rmse(full), "rmse_1": rmse(one),
                  "rmse_mean_predictor": rmse(np.broadcast_to(labels[train].mean(axis=0), full.shape)),
                  "question_rmse": {q: float(np.sqrt(np.mean((full[:, sl] - labels[val][:, sl]) ** 2)))
                                    for q, sl in zip(QUESTION_NAMES, QUESTION_SLICES)}}
    recipe = student.record["config"]["recipe"]
    card = {"evaluation": evaluation, "made_by": made, "members": members, "recipe": recipe,
            "data": {"n_labelled": student_card["n_labelled"], "n_unlabelled": student_card["n_unlabelled"],
                     "n_labelled_train": student_card["n_labelled_train"], "build": get_recipe(recipe).data.name,
                     "crop": student.record["data"]["crop"], "image_size": student.record["data"]["image_size"]}}
    held = HOLDOUT.get(recipe)
    if held:
        card["holdout"] = held
    # a teacher of another split trained on most of the student's validation galaxies: quote the clean figure
    measured = (f"the recipe scored {held['rmse']:.4f} RMSE on galaxies none of its networks trained on (bench)"
                if held else "see its card for its validation RMSE, optimistic by its teachers' own splits")
    summary = (f"the {recipe} recipe's {len(networks)} networks averaged, its teachers and their student "
               f"{student_name!r}: the most accurate shipped, at {len(networks)}x the prediction time; {measured}")
    shipped = write_shipped_ensemble(PRETRAINED_ROOT / name, networks, summary=summary, card=card)
    print(f"exported {folder} -> {shipped.folder}: {len(networks)} networks, validation RMSE "
          f"{evaluation['rmse_tta']:.4f} ({tta} views), {evaluation['rmse_1']:.4f} (1 view)")


def _student_card(folder: Path, teachers: list[Path], data: Path, evaluation: dict) -> dict:
    """What the card says of a student: its teachers, and the galaxies it learnt from with and without labels."""
    from galaxyprep import GalaxyFile
    from galaxytrain.ensemble import STUDENT, STUDENT_FILE
    from galaxytrain.inference.trained import record_tta, run_record
    from galaxytrain.run_dir import RunDir

    with GalaxyFile(data) as labelled, GalaxyFile(folder / STUDENT_FILE) as joined:
        n_labelled, n_joined = labelled.n_images, joined.n_images
    split = run_record(folder / STUDENT)["split"]
    described = []
    for teacher in teachers:
        record = run_record(teacher)
        same_split = record["split"]["seed"] == split["seed"]
        # only a teacher that kept the student's validation galaxies out can be scored on them
        described.append({"run": teacher.name, "seed": record["config"]["seed"],
                          "minutes": RunDir(teacher).minutes_trained(),
                          "val_rmse_tta": evaluate(teacher, data)["rmse_tta"] if same_split else None})
    n_labelled_train = n_labelled - evaluation["n_val"]
    return {"teachers": described, "n_labelled": n_labelled, "n_unlabelled": n_joined - n_labelled,
            "n_labelled_train": n_labelled_train, "n_unlabelled_train": split["n_train"] - n_labelled_train,
            "views": record_tta(run_record(teachers[0]))}


if __name__ == "__main__":
    main()
