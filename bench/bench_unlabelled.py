"""The unlabelled galaxies: teachers' soft votes on the 1,197 unlabelled test images, learnt by one net.

Dieleman found no use for the test images because hard pseudo-labels do not
suit vote fractions. Soft ones do: the teachers (trained runs, averaged
with the recipe's 16 views) predict the 37 vote fractions of every
unlabelled galaxy in ../shared/data/gz/images_test, and a student trains
with `galaxytrain fit --recipe best` (or `--recipe`) on the labelled training galaxies of
bench_vgg6_real.py's split plus those galaxies with the teachers' votes as
labels (knowledge distillation through unlabelled images). It is scored on
the same 1,156 holdout galaxies as the teachers, which nothing here chose
anything on; fit's 10% validation split mixes labelled and soft-labelled
galaxies.

    python bench/bench_unlabelled.py --teacher RUN [--teacher RUN ...] [--seeds 0 1] [--recipe best-synth]

The students are also scored averaged with each other (several seeds), and
with the teachers.

The student's file is built from a folder of links to the shared JPEGs (no
copies) and a labels CSV of the true rows and the soft ones. Writes
bench/out/unlabelled.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, SHARED_GZ, build_file, galaxytrain, machine  # noqa: E402

TAG = "c207_69_s2026"



def _score(runs: list[Path], holdout: Path, report: Path) -> float:
    if not report.exists():
        galaxytrain(["score", *[a for r in runs for a in ("--run", str(r))], "--data", str(holdout),
                      "--report", str(report), "--tta", "16", "--no-progress"])
    return float(json.loads(report.read_text())["rmse"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, action="append", required=True,
                    help="a run folder trained on the split's training galaxies (repeat: their average)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="the students' fit --seed, one each")
    ap.add_argument("--name", default="distil", help="names the student's files in bench/out")
    ap.add_argument("--recipe", default="best", help="the students' fit --recipe (best-synth: from pretrained:synth)")
    args = ap.parse_args()
    holdout = OUT / f"real_holdout_{TAG}.h5"
    train_ids = OUT / f"ids_train_{TAG}.txt"
    if not holdout.exists() or not train_ids.exists():
        raise SystemExit("run `python bench/bench_vgg6_real.py --recipe best` first: it makes the split and holdout")
    test_images = SHARED_GZ / "images_test"

    # 1. The teachers' soft votes on the unlabelled galaxies (the recipe's 16 views).
    soft = OUT / f"{args.name}_soft_{TAG}.csv"
    if not soft.exists():
        galaxytrain(["predict", *[a for r in args.teacher for a in ("--run", str(r))], "--images", str(test_images),
                      "--out", str(soft), "--tta", "16", "--no-progress"])
    soft_rows = pd.read_csv(soft)

    # 2. One labels CSV (true rows of the training galaxies, soft rows of the others) and one folder of links.
    ids = np.loadtxt(train_ids, dtype=np.int64)
    labels = pd.read_csv(SHARED_GZ / "training_solutions_rev1.csv")
    true_rows = labels[labels["GalaxyID"].isin(ids)]
    union = pd.concat([true_rows, soft_rows[labels.columns]], ignore_index=True)
    labels_csv = OUT / f"{args.name}_labels_{TAG}.csv"
    union.to_csv(labels_csv, index=False, float_format="%.6f")
    folder = OUT / f"{args.name}_images_{TAG}"
    folder.mkdir(exist_ok=True)
    for source, wanted in ((SHARED_GZ / "images", set(true_rows["GalaxyID"])),
                           (test_images, set(soft_rows["GalaxyID"]))):
        for galaxy in wanted:
            link = folder / f"{galaxy}.jpg"
            if not link.exists():
                link.symlink_to((source / f"{galaxy}.jpg").resolve())
    data = build_file(folder, OUT / f"{args.name}_{TAG}.h5", labels_csv, size=69, crop=207)

    # 3. The students, and everything scored on the holdout.
    students = [OUT / "runs" / f"{args.name}_{TAG}_seed{seed}" for seed in args.seeds]
    for seed, run in zip(args.seeds, students):
        galaxytrain(["fit", "--recipe", args.recipe, "--data", str(data), "--out", str(run), "--seed", str(seed),
                      "--no-progress"])
    rows = []
    for teacher in args.teacher:
        rows.append({"model": f"teacher {teacher.name}",
                     "holdout_rmse": _score([teacher], holdout, OUT / f"report_{teacher.name}_tta16.json")})
    if len(args.teacher) > 1:
        rows.append({"model": f"teachers averaged ({len(args.teacher)})",
                     "holdout_rmse": _score(args.teacher, holdout, OUT / f"report_{args.name}_teachers_{TAG}.json")})
    for seed, run in zip(args.seeds, students):
        state = json.loads((run / "state.json").read_text())
        rows.append({"model": f"student seed {seed} ({len(true_rows)} labelled + {len(soft_rows)} soft-labelled "
                              "galaxies)",
                     "holdout_rmse": _score([run], holdout, OUT / f"report_{args.name}_{TAG}_seed{seed}.json"),
                     "minutes": round(sum(r["epoch_time_s"] for r in state["history"]) / 60, 1)})
    seeds = "_".join(map(str, args.seeds))
    if len(students) > 1:
        rows.append({"model": f"students averaged ({len(students)})",
                     "holdout_rmse": _score(students, holdout, OUT / f"report_{args.name}_students_{seeds}.json")})
    rows.append({"model": f"teachers and students averaged ({len(args.teacher) + len(students)})",
                 "holdout_rmse": _score([*args.teacher, *students], holdout,
                                        OUT / f"report_{args.name}_all_{seeds}.json")})
    (OUT / "unlabelled.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
    print(machine())
    for row in rows:
        print(f"  {row['model']}: holdout RMSE {row['holdout_rmse']:.4f}"
              + (f" ({row['minutes']} min of training)" if "minutes" in row else ""))


if __name__ == "__main__":
    main()
