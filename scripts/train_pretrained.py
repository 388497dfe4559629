"""How the model shipped in galaxytrain/pretrained/ was made, as a script that makes it again.

    python scripts/train_pretrained.py                  # build, fit, export: about an hour on 2 cores
    python scripts/train_pretrained.py --stage export   # only repackage a finished run
    python scripts/train_pretrained.py --name synth     # the network --recipe best-synth starts from

It runs the README's own commands on the shared Kaggle images: the best
recipe's build of all labelled images in ../shared/data/gz, `galaxytrain fit
--recipe best` with seed 0 (fit keeps its own 10% validation split), then
exports the run's best model with its model card into the package. Rerun it
whenever the best recipe changes; the card records the commit it was made at.

`--name synth` makes the simulation-pretrained network instead: `galaxyprep
synth` galaxies (no real data), built and trained as SHIPPED says, the first
stage of `fit --recipe best-synth`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "gz"
BIN = Path(sys.executable).parent

#: How each shipped model is made: the recipe it trains with, and for a simulation-pretrained one the
#: `galaxyprep synth` galaxies, its epochs (instead of the recipe's) and the recipe that starts from it.
SHIPPED: dict[str, dict] = {
    "best": dict(recipe="best"),
    "synth": dict(recipe="best", synth=dict(n=12_000, seed=0), epochs=12, for_recipe="best-synth"),
}


def run(*command: str) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pretrained",
                        help="folder for the build and the run (not part of the package)")
    parser.add_argument("--name", default="best", choices=sorted(SHIPPED), help="the shipped model's name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=["all", "build", "fit", "export"], default="all")
    args = parser.parse_args()
    data = args.work / f"{args.name}.h5"
    run_dir = args.work / f"run-{args.name}-s{args.seed}"
    how = SHIPPED[args.name]
    images, labels = SHARED / "images", SHARED / "training_solutions_rev1.csv"
    if "synth" in how:
        kaggle = args.work / f"{args.name}-galaxies"
        images, labels = kaggle / "images_training_rev1", kaggle / "training_solutions_rev1.csv"
        if args.stage in ("all", "build") and not labels.exists():
            run(str(BIN / "galaxyprep"), "synth", "--out", str(kaggle), *_synth_options(how), "-q")
    if args.stage in ("all", "build") and not data.exists():
        run(str(BIN / "galaxyprep"), "build", "--recipe", how["recipe"], "--images", str(images),
            "--labels", str(labels), "--out", str(data))
    if args.stage in ("all", "fit"):
        # rerunning resumes an interrupted fit exactly
        epochs = ["--epochs", str(how["epochs"])] if "epochs" in how else []
        run(str(BIN / "galaxytrain"), "fit", "--recipe", how["recipe"], "--data", str(data), "--out", str(run_dir),
            "--seed", str(args.seed), *epochs, "--no-progress")
    if args.stage in ("all", "export"):
        export(run_dir, data, args.name, args.seed)


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


def export(run_dir: Path, data: Path, name: str, seed: int) -> None:
    import datetime

    sys.path.insert(0, str(ROOT))
    from bench._common import machine
    from galaxytrain.compute import cpu_bfloat16_units
    from galaxytrain.models.pretrained import PRETRAINED_ROOT, export_run
    from galaxytrain.recipes import get_recipe

    evaluation = evaluate(run_dir, data)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    made_by = {"command": f"python scripts/train_pretrained.py --name {name} --seed {seed}",
               "commit": commit + (" (with uncommitted changes)" if dirty else ""),
               "machine": f"{machine()}; bfloat16 units: {', '.join(cpu_bfloat16_units()) or 'none'}",
               "date": datetime.date.today().isoformat()}
    how = SHIPPED[name]
    recipe = get_recipe(how["recipe"])
    network = f"{recipe.options['model']}, {recipe.options['head']} head"
    synthetic = None
    if "synth" in how:
        synthetic = {"command": "galaxyprep synth " + " ".join(_synth_options(how)), "recipe": how["for_recipe"]}
        summary = (f"the {recipe.name} recipe's network ({network}) pretrained for {how['epochs']} epochs on "
                   f"{how['synth']['n']:,} galaxyprep synth galaxies, the start of --recipe {how['for_recipe']}; "
                   f"validation RMSE {evaluation['rmse_tta']:.4f} on synthetic galaxies")
    else:
        summary = (f"the {recipe.name} recipe ({network}) trained on the shared Kaggle images; validation RMSE "
                   f"{evaluation['rmse_tta']:.4f} with {evaluation['tta']} views")
    shipped = export_run(run_dir, PRETRAINED_ROOT / name, summary=summary, evaluation=evaluation, made_by=made_by,
                         synthetic=synthetic)
    print(f"exported {run_dir} -> {shipped.folder} ({shipped.meta['weights']['bytes'] / 1e6:.1f} MB): "
          f"validation RMSE {evaluation['rmse_tta']:.4f} ({evaluation['tta']} views), {evaluation['rmse_1']:.4f} "
          f"(1 view), mean predictor {evaluation['rmse_mean_predictor']:.4f}")


if __name__ == "__main__":
    main()
