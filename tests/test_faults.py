"""The README's fault table, row by row: what each fault does, and what is kept.

Every command is run as a user runs it (galaxyprep's `main`, galaxytrain's
typer app), and a fault must end in one `error:` line and exit code 1, or in
a listed skip, never a traceback, and never touch what the user did not ask
to replace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO
from galaxyprep import exclusive_lock, read_info
from galaxyprep.cli import main as galaxyprep_main
from galaxyprep.synth import synthesize
from galaxytrain.cli import app as galaxytrain_app

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """A small synthetic data set in the Kaggle layout, and a zip of its images."""
    root = tmp_path_factory.mktemp("kaggle")
    data = synthesize(root / "data", 24, n_test=4, seed=2)
    archive = root / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(data.train_images.glob("*.jpg")):
            zf.write(p, f"images_training_rev1/{p.name}")
    return data, archive


def prep(capsys, *args) -> tuple[int, str]:
    """Run `galaxyprep ARGS`; (exit code, stderr)."""
    try:
        galaxyprep_main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def train(*args) -> tuple[int, str]:
    result = CliRunner().invoke(galaxytrain_app, [str(a) for a in args])
    return result.exit_code, result.stderr


def one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


def build_args(kaggle, out, *extra):
    data, _ = kaggle
    return ("build", "--images", data.train_images, "--labels", data.labels_csv, "--crop", "200", "--size", "32",
            "--out", out, "-q", *extra)


# -- one writer per output ---------------------------------------------------------------------------

def test_a_second_build_on_the_same_output_is_refused_naming_the_first(kaggle, tmp_path, capsys):
    out = tmp_path / "c.h5"
    with exclusive_lock(out):
        one_line(*prep(capsys, *build_args(kaggle, out)), str(out), f"PID {os.getpid()}")
    assert not out.exists() and not out.with_name("c.h5.partial").exists()
    assert prep(capsys, *build_args(kaggle, out))[0] == 0  # the lock went with its holder


def test_two_builds_at_once_one_wins_with_a_solo_builds_bytes(kaggle, tmp_path, capsys):
    out = tmp_path / "c.h5"
    args = [sys.executable, "-m", "galaxyprep", *map(str, build_args(kaggle, out, "--workers", "1",
                                                                      "--batch-size", "4"))]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out.with_name(".c.h5.lock")
    deadline = time.time() + 60
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second = subprocess.run(args, capture_output=True, text=True)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    if lock.exists() or second.returncode == 1:  # the second one met the first one's lock
        one_line(second.returncode, second.stderr, "is being written by another job", f"PID {first.pid}")
    raced = out.read_bytes()
    out.unlink()
    assert prep(capsys, *build_args(kaggle, out, "--workers", "1", "--batch-size", "4"))[0] == 0
    assert out.read_bytes() == raced


def test_a_second_fit_predict_or_score_on_the_same_output_is_refused(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=24, size=24)
    run = tmp_path / "run"
    with exclusive_lock(run):
        one_line(*train("fit", "--data", data, "--out", run, "--epochs", "1"), f"PID {os.getpid()}")
    assert not run.exists()
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    for command, option, out in (("predict", "--out", tmp_path / "s.csv"), ("score", "--report", tmp_path / "r.json")):
        with exclusive_lock(out):
            one_line(*train(command, "--run", run, "--data", data, option, out), f"PID {os.getpid()}")
        assert not out.exists()


# -- outputs never clobber inputs or foreign files -------------------------------------------------------

def test_build_refuses_to_write_over_its_inputs_or_foreign_files(kaggle, tmp_path, capsys):
    data, archive = kaggle
    before = archive.read_bytes(), data.labels_csv.read_bytes()
    one_line(*prep(capsys, "build", "--images", archive, "--out", archive, "-q"), "is also the command's --images")
    one_line(*prep(capsys, *build_args(kaggle, data.labels_csv)), "is also the command's --labels")
    assert (archive.read_bytes(), data.labels_csv.read_bytes()) == before

    folder = tmp_path / "outdir"
    folder.mkdir()
    one_line(*prep(capsys, *build_args(kaggle, folder)), "is a folder")
    assert list(folder.iterdir()) == [] and not (tmp_path / "outdir.partial").exists()

    foreign = tmp_path / "notes.h5"
    foreign.write_text("my notes")
    one_line(*prep(capsys, *build_args(kaggle, foreign)), "is not a galaxyprep HDF5 file", "--overwrite")
    assert foreign.read_text() == "my notes"
    assert prep(capsys, *build_args(kaggle, foreign, "--overwrite"))[0] == 0
    assert read_info(foreign).n_images == 24
    assert prep(capsys, *build_args(kaggle, foreign))[0] == 0  # its own file: replaced without asking


def test_predict_score_and_preview_never_write_over_their_inputs(make_galaxy_file, tmp_path, capsys):
    data = make_galaxy_file(n=24, size=24)
    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    before = data.read_bytes()
    one_line(*train("predict", "--run", run, "--data", data, "--out", data), "is also the command's --data")
    one_line(*train("score", "--run", run, "--data", data, "--report", data), "is also the command's --data")
    one_line(*train("predict", "--run", run / "best.keras", "--data", data, "--out", run / "best.keras"),
             "is also the command's --run")
    one_line(*prep(capsys, "preview", data, "--out", data), "is also the command's input file")
    assert data.read_bytes() == before

    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    one_line(*train("predict", "--run", run, "--data", data, "--out", mine), "is not a submission CSV")
    assert mine.read_text() == "a,b\n1,2\n"
    assert train("predict", "--run", run, "--data", data, "--out", mine, "--overwrite")[0] == 0
    assert train("predict", "--run", run, "--data", data, "--out", mine)[0] == 0  # now a submission: replaced
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    one_line(*train("score", "--run", run, "--data", data, "--report", notes), "is not a score report")
    assert notes.read_text() == '{"mine": 1}'


def test_predict_and_score_never_replace_a_file_of_their_run_or_a_shard_of_their_data(kaggle, tmp_path, capsys):
    """--overwrite replaces an output the user named, never the run's model or state, nor a shard of the input."""
    synthetic, _ = kaggle
    data = tmp_path / "v.h5"
    assert prep(capsys, "build", "--images", synthetic.train_images, "--labels", synthetic.labels_csv,
                "--size", "24", "--out", data, "--scheduler", "local", "--shard-images", "8", "--chunk-images", "8",
                "--no-progress")[0] == 0
    shards = sorted((tmp_path / "v.h5.parts").glob("part-*.h5"))
    assert len(shards) >= 2
    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    kept = {path: path.read_bytes() for path in [*shards, run / "best.keras", run / "last.keras", run / "state.json"]}
    one_line(*train("predict", "--run", run, "--data", data, "--out", run / "best.keras", "--overwrite"),
             "is also the command's --run")
    one_line(*train("score", "--run", run, "--data", data, "--report", run / "last.keras", "--overwrite"),
             "is also the command's --run")
    one_line(*train("score", "--run", run / "best.keras", "--data", data, "--report", run / "state.json",
                    "--overwrite"), "is also the command's --run")
    one_line(*train("predict", "--run", run, "--data", data, "--format", "hdf5", "--out", shards[1], "--overwrite"),
             "is also the command's --data")
    assert all(path.read_bytes() == before for path, before in kept.items())
    assert train("fit", "--data", data, "--out", run, "--epochs", "2")[0] == 0  # still resumes


def test_a_model_replaced_in_a_run_folder_is_refused(make_galaxy_file, tmp_path):
    """Another run's best.keras copied over this one's: its SHA-256 is not the one state.json recorded."""
    data = make_galaxy_file(n=24, size=24)
    for name, seed in (("run", "0"), ("other", "1")):
        assert train("fit", "--data", data, "--out", tmp_path / name, "--epochs", "1", "--seed", seed)[0] == 0
    run = tmp_path / "run"
    assert train("predict", "--run", run, "--data", data, "--out", tmp_path / "ok.csv")[0] == 0
    (run / "best.keras").write_bytes((tmp_path / "other" / "best.keras").read_bytes())
    for args in (("--run", run), ("--run", run / "best.keras")):
        one_line(*train("predict", *args, "--data", data, "--out", tmp_path / "sub.csv"),
                 "is not the model this run saved")
        one_line(*train("score", *args, "--data", data, "--report", tmp_path / "r.json"),
                 "is not the model this run saved")
    assert not (tmp_path / "sub.csv").exists() and not (tmp_path / "r.json").exists()


def test_fit_refuses_a_folder_of_other_files_and_a_damaged_state(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=24, size=24)
    project = tmp_path / "myproj"
    project.mkdir()
    (project / "config.json").write_text('{"my": "settings"}')
    (project / "history.csv").write_text("my,history\n")
    one_line(*train("fit", "--data", data, "--out", project, "--epochs", "1"), "not a galaxytrain run", "--overwrite")
    assert (project / "config.json").read_text() == '{"my": "settings"}'
    assert (project / "history.csv").read_text() == "my,history\n"

    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    best = (run / "best.keras").read_bytes()
    (run / "state.json").write_text("garbage")
    one_line(*train("fit", "--data", data, "--out", run, "--epochs", "2", "--learning-rate", "0.01"),
             "state.json is damaged", "--overwrite")
    assert (run / "best.keras").read_bytes() == best
    assert train("fit", "--data", data, "--out", run, "--epochs", "1", "--overwrite")[0] == 0


# -- what is read is validated ------------------------------------------------------------------------------

def _edit(path, **attrs):
    with h5py.File(path, "a") as f:
        for key, value in attrs.items():
            if value is None:
                del f.attrs[key]
            else:
                f.attrs[key] = value


@pytest.mark.parametrize("attrs, problem", [
    (dict(mean=None), "no 'mean'/'std'"),
    (dict(std=np.array([10.0, 0.0, 10.0])), "unusable normalization"),
    (dict(mean=np.array([np.nan, 1.0, 1.0])), "unusable normalization"),
])
def test_a_file_with_a_bad_normalization_is_refused_by_info_and_fit(make_galaxy_file, tmp_path, capsys, attrs,
                                                                    problem):
    data = make_galaxy_file(n=24, size=24)
    _edit(data, **attrs)
    one_line(*prep(capsys, "info", data), problem)
    one_line(*train("fit", "--data", data, "--out", tmp_path / "run", "--epochs", "1"), problem)


@pytest.mark.parametrize("value, problem", [(np.nan, "is not a number"), (1e6, "outside [0, 1]"),
                                            (0.9, "sum to")])
def test_labels_that_cannot_be_vote_fractions_are_refused_by_fit_and_score(make_galaxy_file, tmp_path, value,
                                                                           problem):
    data = make_galaxy_file(n=24, size=24)
    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    with h5py.File(data, "a") as f:
        y = f["labels"][:]
        y[5, 0:3] = [value, 0.9, 0.9] if value == 0.9 else [value, 0.0, 0.0]  # Class1 sums to 2.7
        f["labels"][:] = y
        gid = int(f["ids"][5])
    one_line(*train("fit", "--data", data, "--out", tmp_path / "run2", "--epochs", "1"), f"GalaxyID {gid}", problem)
    one_line(*train("score", "--run", run, "--data", data, "--report", tmp_path / "r.json"), problem)


def test_label_rows_that_break_the_tree_are_left_out_of_a_build(kaggle, tmp_path, capsys):
    data, _ = kaggle
    lines = data.labels_csv.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1:4] = ["0.9", "0.9", "0.9"]  # Class1 answers summing to 2.7
    bad_id = cells[0]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
    out = tmp_path / "t.h5"
    assert prep(capsys, "build", "--images", data.train_images, "--labels", labels, "--crop", "200", "--size", "32",
                "--out", out, "-q")[0] == 0
    info = read_info(out)
    assert info.n_images == 23
    assert any(f"GalaxyID {bad_id}" in s["problem"] and "Class1 sum to 2.7" in s["problem"] for s in info.skipped)


def _with_size(jpeg: bytes, width: int, height: int) -> bytes:
    b = bytearray(jpeg)
    sof = max(b.find(b"\xff\xc0"), b.find(b"\xff\xc2"))
    b[sof + 5: sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(b)


def test_a_jpeg_header_claiming_a_huge_image_is_refused_before_anything_is_allocated(kaggle, tmp_path, capsys):
    import resource

    data, _ = kaggle
    folder = tmp_path / "bomb"
    folder.mkdir()
    jpeg = next(iter(sorted(data.train_images.glob("*.jpg")))).read_bytes()
    (folder / "123.jpg").write_bytes(_with_size(jpeg, 65000, 65000))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line(*prep(capsys, "build", "--images", folder, "--out", tmp_path / "b.h5", "-q"), "65000x65000", "Mpx")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB: no 12 GiB buffer


def test_a_galaxy_id_beyond_64_bits_is_left_out_and_named(kaggle, tmp_path, capsys):
    """A file named 99999999999999999999999.jpg was an OverflowError traceback; now one skipped image."""
    data, _ = kaggle
    folder = tmp_path / "images"
    shutil.copytree(data.train_images, folder)
    huge = folder / "99999999999999999999999.jpg"
    huge.write_bytes(next(iter(sorted(data.train_images.glob("*.jpg")))).read_bytes())
    code, err = prep(capsys, "build", "--images", folder, "--labels", data.labels_csv, "--out", tmp_path / "a.h5",
                     "--size", "24", "--no-progress")
    assert code == 0 and "Traceback" not in err
    info = read_info(tmp_path / "a.h5")
    assert info.n_images == 24
    assert any(str(huge) == s["file"] and "64-bit" in s["problem"] for s in info.skipped), info.skipped


def test_an_unreadable_subfolder_is_reported_like_an_unreadable_file(kaggle, tmp_path, capsys, monkeypatch):
    data, _ = kaggle
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for p in sorted(data.train_images.glob("*.jpg"))[:6]:
        (root / p.name).write_bytes(p.read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):  # root reads every folder: unreadability is imitated
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "u.h5"
    assert prep(capsys, "build", "--images", root, "--out", out, "-q")[0] == 0
    assert any("unreadable folder" in s["problem"] for s in read_info(out).skipped)
    code, err = prep(capsys, "build", "--images", root, "--out", tmp_path / "v.h5", "--on-error", "fail", "-q")
    # Each problem is reported as it is found, then the one error that stops the build.
    one_line(code, err.strip().splitlines()[-1], "unreadable folder", "Permission denied", "nothing written")
    assert not (tmp_path / "v.h5").exists()


# -- every number option is checked ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--workers", "-2"), ("--workers", "0"), ("--chunk-images", "0"),
                                           ("--chunk-images", "-5"), ("--batch-size", "0"), ("--limit", "0")])
def test_build_number_options_are_checked(kaggle, tmp_path, capsys, option, value):
    one_line(*prep(capsys, *build_args(kaggle, tmp_path / "n.h5", option, value)), option)


def test_preview_count_is_checked(make_galaxy_file, tmp_path, capsys):
    one_line(*prep(capsys, "preview", make_galaxy_file(n=4, size=16), "--out", tmp_path / "p.png", "--n", "0"), "--n")


# -- damaged JPEGs ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_mutated_jpegs_never_crash_hang_or_print_a_traceback():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import fuzz_jpeg
    finally:
        sys.path.pop(0)
    counts = fuzz_jpeg.run(400, seconds=240, seed=1, log=lambda line: None)
    assert counts["mutants"] == 400 and counts["skipped"] > 100


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused(make_galaxy_file, tmp_path, value):
    """inf was accepted and written to config.json as null."""
    data = make_galaxy_file(n=24, size=24)
    one_line(*train("fit", "--data", data, "--out", tmp_path / "run", "--learning-rate", value), "--learning-rate")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_says_what_each_command_leaves(monkeypatch):
    """Only fit has something to resume; predict said it had."""
    import galaxytrain.inference
    import galaxytrain.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(galaxytrain.inference, "predict_submission", interrupted)
    monkeypatch.setattr(galaxytrain.training, "fit", interrupted)
    code, err = train("predict", "--run", "r", "--data", "d.h5", "--out", "s.csv")
    assert code == 130 and "resumes" not in err and "interrupted" in err
    code, err = train("fit", "--data", "d.h5", "--out", "r")
    assert code == 130 and "a fit resumes from its last completed epoch" in err


def test_an_output_folder_that_cannot_be_written_is_one_line(kaggle, make_galaxy_file, tmp_path, capsys, monkeypatch):
    """A read-only folder (or file system): the lock beside the output cannot be made. It was a traceback."""
    data = make_galaxy_file(n=40, size=24)
    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    one_line(*prep(capsys, *build_args(kaggle, tmp_path / "ro" / "x.h5")), "cannot write in", "Permission denied")
    one_line(*train("fit", "--data", data, "--out", tmp_path / "run2", "--epochs", "1"), "cannot write in")
    one_line(*train("predict", "--run", run, "--data", data, "--out", tmp_path / "s.csv"), "cannot write in")
    one_line(*train("score", "--run", run, "--data", data, "--report", tmp_path / "r.json"), "cannot write in")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "r.json").exists()


def test_predict_from_jpegs_accounts_for_every_file(kaggle, make_galaxy_file, tmp_path):
    """Duplicates named (identical copies: one used; different bytes: refused), every reason kept, ignored counted."""
    from galaxytrain.inference.predictions_file import read_predictions

    data, _ = kaggle
    run = tmp_path / "run"
    built = tmp_path / "train.h5"
    assert prep_ok(build_args(kaggle, built))
    assert train("fit", "--data", built, "--out", run, "--epochs", "1")[0] == 0
    jpegs = sorted(data.train_images.glob("*.jpg"))
    folder = tmp_path / "mixed"
    (folder / "sub1").mkdir(parents=True)
    (folder / "sub2").mkdir()
    for p in jpegs[:6]:
        shutil.copyfile(p, folder / p.name)
    same = jpegs[6]
    shutil.copyfile(same, folder / "sub1" / same.name)
    shutil.copyfile(same, folder / "sub2" / same.name)                 # the same galaxy twice: one used
    other = jpegs[7]
    shutil.copyfile(other, folder / other.name)
    shutil.copyfile(jpegs[8], folder / ("0" + other.name))             # another image under the same GalaxyID
    (folder / "9.jpg").write_text("not a JPEG")                         # left out: not an image
    (folder / "notes.txt").write_text("hello")                          # ignored
    (folder / "Thumbs.db").write_bytes(b"\0")                           # ignored
    out = tmp_path / "p.h5"
    result = CliRunner().invoke(galaxytrain_app, ["predict", "--run", str(run), "--images", str(folder), "--out",
                                                  str(out), "--format", "hdf5", "--no-progress"])
    assert result.exit_code == 0, result.output
    found = read_predictions(out)
    ids, meta = found.ids, found.meta
    assert sorted(ids) == sorted(int(p.stem) for p in jpegs[:7])
    reasons = {Path(item["file"]).name: item["problem"] for item in meta["skipped"]}
    clash = [f"{name}: {why}" for name, why in reasons.items() if "with other bytes" in why]
    assert len(clash) == 1 and "0" + other.name in clash[0] and f"/{other.name}" in clash[0]
    assert "9.jpg" in reasons and meta["ignored_files"] == 2
    assert len(meta["duplicates"]) == 1 and same.stem in meta["duplicates"][0]
    log = result.output
    assert log.count("left out: ") == 2 and "the same bytes as" in log
    assert "2 left out, 2 ignored (not <GalaxyID>.jpg), 1 stored twice and used once" in log


def prep_ok(args) -> bool:
    try:
        galaxyprep_main([str(a) for a in args])
    except SystemExit as exc:
        return not exc.code
    return True


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_for_every_command_and_leaves_nothing_half_written(kaggle, make_galaxy_file, tmp_path,
                                                                                   capsys, monkeypatch):
    """Measured on a 2 MB tmpfs too (RESULTS); here the disk fills where each command writes."""
    import keras

    from galaxyprep.galaxy_file import GalaxyFileWriter
    from galaxytrain.inference import score as score_module
    from galaxytrain.inference import submission

    data = make_galaxy_file(n=40, size=24)
    run = tmp_path / "run"
    assert train("fit", "--data", data, "--out", run, "--epochs", "1")[0] == 0
    with monkeypatch.context() as m:
        m.setattr(GalaxyFileWriter, "append", _disk_full)
        one_line(*prep(capsys, *build_args(kaggle, tmp_path / "b.h5")), "b.h5: cannot write: No space left",
                 "nothing written")
        assert not list(tmp_path.glob("b.h5*"))
    with monkeypatch.context() as m:
        m.setattr(keras.Model, "save", _disk_full)
        one_line(*train("fit", "--data", data, "--out", run, "--epochs", "2"), f"{run}: cannot write",
                 "keeps its last completed epoch")
    assert not list(run.glob("*.tmp*"))
    with monkeypatch.context() as m:
        m.setattr(submission, "write_submission", _disk_full)
        one_line(*train("predict", "--run", run, "--data", data, "--out", tmp_path / "s.csv", "--no-progress"),
                 "s.csv: cannot write")
        m.setattr(score_module, "write_report", _disk_full)
        one_line(*train("score", "--run", run, "--data", data, "--report", tmp_path / "r.json", "--no-progress"),
                 "r.json: cannot write", "no report written")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "r.json").exists()
    assert not (tmp_path / "r_plots").exists()  # half a plots folder is not left behind
    resumed = CliRunner().invoke(galaxytrain_app, ["fit", "--data", str(data), "--out", str(run), "--epochs", "2"])
    assert resumed.exit_code == 0 and "resuming" in resumed.stdout  # from the last completed epoch
