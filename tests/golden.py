"""Golden outputs: what a build, a short fit, predict and score produced before the restructuring.

`tests/golden.json` was recorded from the code as it stood before galaxytrain
was split into subpackages (2026-12-01, commit aadc6cb), with
``python tests/golden.py --record``; `test_golden.py` reruns the same jobs and
demands the same bytes. Re-record only for a change of behaviour that is
meant, and say so in the commit. Re-recorded once, after the restructuring
had passed it unchanged: prediction now normalizes with the training file's
mean and std at full precision, not a 6-decimal copy (histories and builds
identical; scored RMSEs moved by 3e-10 and 2e-9; submission bytes changed).
Re-recorded a second time when fit stopped letting Keras shuffle the order of
the (already shuffled) batches, for exact resume: builds identical, the short
fits' numbers moved as a different batch order moves them. And a third time
when the build started decoding only the centre window: the pixels, ids,
labels, mean and std are identical (tests/test_window_decode.py builds with
both decoders and compares); the build hashes moved with the attributes that
name the decoder, the decoded window and the new `crop_decode` option.

Training is bit-identical between two runs on one CPU, so the numbers are
compared exactly on the machine they were recorded on (same CPU model and
flags, same TensorFlow). On another CPU oneDNN may pick other kernels; there
they are compared to a relative 1e-3 and the file hashes are not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"

#: The two short fits: the sigmoid baseline with dihedral turns, and a tree head on rotated views.
FITS = {
    "vgg6_dihedral": dict(model="vgg6", augment="dihedral", epochs=2, batch_size=16),
    "cnn_tree_rotate": dict(model="galaxy_cnn", head="tree", loss="mse", augment="rotate", input_size=20,
                            lr_schedule="cosine", epochs=2, batch_size=16, tree_warmup_epochs=1),
}
HISTORY_KEYS = ("epoch", "loss", "rmse", "val_loss", "val_rmse", "learning_rate")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def machine_signature() -> str:
    """CPU model, flags and TensorFlow version: where exact equality of training can be demanded."""
    import tensorflow as tf

    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags")), "")
    return sha256_bytes(f"{platform.machine()}|{model}|{flags}|{tf.__version__}".encode())[:16]


def tiny_files(folder: Path) -> tuple[Path, Path]:
    """A labelled and an unlabelled file of random pixels (the tests' `make_galaxy_file`, seeds fixed)."""
    from galaxyprep import normalize_tree, write_galaxy_file

    out = []
    for name, n, seed, labelled in (("train.h5", 96, 3, True), ("test.h5", 40, 11, False)):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, 24, 24, 3), dtype=np.uint8)
        ids = np.arange(100000, 100000 + n, dtype=np.int64)
        y = normalize_tree(rng.random((n, 37))).astype(np.float32) if labelled else None
        out.append(write_galaxy_file(folder / name, images, ids, y, crop=24, chunk_images=8))
    return out[0], out[1]


def run_fit(data: Path, out: Path, options: dict) -> list[dict]:
    from galaxytrain.config import FitConfig
    from galaxytrain.run_dir import read_history_csv
    from galaxytrain.training import fit

    fit(FitConfig(data=data, out=out, progress=False, **options), log=lambda line: None)

    return [{k: row[k] for k in HISTORY_KEYS} for row in read_history_csv(out / "history.csv")]


def run_inference(run: Path, labelled: Path, unlabelled: Path, folder: Path) -> dict:
    from galaxytrain.inference import predict_submission, score_run

    found = {}
    for tta in (1, 16):
        sub = predict_submission(run, unlabelled, folder / f"sub{tta}.csv", tta=tta, batch_size=16,
                                 log=lambda line: None)
        found[f"submission_tta{tta}_sha256"] = sha256_bytes(sub.read_bytes())
    report = score_run(run, labelled, folder / "report.json", plots_dir=folder / "plots", tta=8, batch_size=32,
                       log=lambda line: None)
    found["report"] = {k: report[k] for k in ("n_images", "rmse", "rmse_mean_predictor", "question_accuracy",
                                              "roc_auc", "roc_auc_summary")}
    return found


def run_builds(folder: Path, shared_gz: Path | None) -> dict:
    """sha256 of two builds: synthetic JPEGs (anywhere) and the first 300 real ones (where ../shared is).

    The file records its input and output paths as given, so the builds run
    inside `folder` on relative paths (the real images through links): the
    bytes then depend on nothing but the inputs and the code.
    """
    from galaxyprep.build import BuildConfig, build
    from galaxyprep.synth import synthesize

    found = {}
    here = os.getcwd()
    os.chdir(folder)
    try:
        synthesize("synth", 30, n_test=0, seed=7)
        build(BuildConfig(images=Path("synth/images_training_rev1"), labels=Path("synth/training_solutions_rev1.csv"),
                          out=Path("synth.h5"), crop=200, size=64, workers=2))
        found["build_synth_sha256"] = sha256_bytes(Path("synth.h5").read_bytes())
        if shared_gz is not None:
            os.symlink(shared_gz / "images", "real_images")
            os.symlink(shared_gz / "training_solutions_rev1.csv", "real_labels.csv")
            build(BuildConfig(images=Path("real_images"), labels=Path("real_labels.csv"), out=Path("real.h5"),
                              crop=200, size=96, limit=300, workers=2))
            found["build_real_sha256"] = sha256_bytes(Path("real.h5").read_bytes())
    finally:
        os.chdir(here)
    return found


def run_all(folder: Path, shared_gz: Path | None) -> dict:
    labelled, unlabelled = tiny_files(folder)
    found = {"machine": machine_signature(), "fits": {}}
    for name, options in FITS.items():
        run = folder / name
        found["fits"][name] = {"history": run_fit(labelled, run, options),
                               **run_inference(run, labelled, unlabelled, folder / f"{name}_out")}
    found.update(run_builds(folder, shared_gz))
    return found


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/golden.py --record   (rewrites tests/golden.json)")
    sys.path.insert(0, str(HERE))
    from conftest import SHARED_GZ

    with tempfile.TemporaryDirectory() as tmp:
        found = run_all(Path(tmp), SHARED_GZ if (SHARED_GZ / "images").is_dir() else None)
    GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
