"""galaxyprep build: round trip, identical folder/zip builds, determinism, resume, bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from galaxyprep.builder import BuildConfig, build
from galaxyprep.cli import main
from galaxyprep.decode import make_plan, decode_into
from galaxyprep.errors import InputError
from galaxyprep.galaxy_file import read_info
from galaxyprep.tree import CLASS_NAMES, normalize_tree

from conftest import SHARED_GZ
from reference import crop_area_resample

N_GOOD = 12


def _good_jpegs(n: int) -> dict[int, bytes]:
    """Real Kaggle JPEGs where ../shared has them, smooth synthetic 424x424 ones otherwise."""
    real = sorted((SHARED_GZ / "images").glob("*.jpg"))[:n] if (SHARED_GZ / "images").is_dir() else []
    if real:
        return {int(p.stem): p.read_bytes() for p in real}
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:424, :424]
    out = {}
    for k in range(n):
        blob = np.exp(-((yy - 212) ** 2 + (xx - 212 - k) ** 2) / (2 * (20 + 3 * k) ** 2))
        img = (blob[..., None] * rng.uniform(80, 250, 3) + rng.normal(0, 3, (424, 424, 3))).clip(0, 255)
        out[200000 + k] = simplejpeg.encode_jpeg(img.astype(np.uint8), quality=90)
    return out


def _labels_csv(path: Path, ids, extra_rows: list[str] = ()) -> Path:
    rng = np.random.default_rng(1)
    y = normalize_tree(rng.random((len(ids), 37)))
    lines = ["GalaxyID," + ",".join(CLASS_NAMES)]
    lines += [f"{gid}," + ",".join(f"{v:.6f}" for v in row) for gid, row in zip(ids, y)]
    lines += list(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A folder and a zip of the same good images, and their labels (plus 3 rows without images)."""
    root = tmp_path_factory.mktemp("good")
    jpegs = _good_jpegs(N_GOOD)
    folder = root / "images_training_rev1"
    folder.mkdir()
    for gid, data in jpegs.items():
        (folder / f"{gid}.jpg").write_bytes(data)
    (folder / "README.txt").write_text("not an image")
    archive = root / "images_training_rev1.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for gid, data in jpegs.items():
            zf.writestr(f"images_training_rev1/{gid}.jpg", data)
    ids = sorted(jpegs)
    labels = _labels_csv(root / "training_solutions_rev1.csv", ids + [1, 2, 3])
    labels_zip = root / "training_solutions_rev1.zip"
    with zipfile.ZipFile(labels_zip, "w") as zf:
        zf.write(labels, "training_solutions_rev1.csv")
    return {"root": root, "folder": folder, "zip": archive, "labels": labels, "labels_zip": labels_zip,
            "jpegs": jpegs, "ids": ids}


def test_round_trip_matches_reference_pipeline(good, tmp_path):
    out = tmp_path / "train.h5"
    summary = build(BuildConfig(images=good["folder"], labels=good["labels"], out=out, crop=200, size=48, batch_size=5))
    assert summary.n_written == N_GOOD and summary.labels_without_images == 3 and summary.ignored_files == 1
    assert not out.with_name("train.h5.partial").exists()
    plan = make_plan(424, 424, 200, 48)
    box = 200 * plan.scale
    y0 = (plan.scaled_height - box) / 2
    expected_labels = np.loadtxt(good["labels"], delimiter=",", skiprows=1)
    with h5py.File(out) as f:
        assert f["ids"][:].tolist() == good["ids"]
        assert f["images"].chunks[0] >= 1 and f["images"].dtype == np.uint8
        assert list(f["labels"].attrs["columns"]) == list(CLASS_NAMES)
        for row, gid in enumerate(good["ids"]):
            decoded = np.empty((plan.scaled_height, plan.scaled_width, 3), np.uint8)
            decode_into(good["jpegs"][gid], plan, decoded)
            exact = crop_area_resample(decoded, y0, y0, box, box, 48)
            assert np.abs(f["images"][row].astype(float) - exact).max() <= 0.502
            want = expected_labels[expected_labels[:, 0] == gid, 1:][0]
            np.testing.assert_allclose(f["labels"][row], want, atol=1e-6)
        pixels = f["images"][:].reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(f.attrs["mean"], pixels.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(f.attrs["std"], pixels.std(axis=0), rtol=1e-9)
    info = read_info(out)
    assert info.crop == 200 and info.size == 48 and info.has_labels and info.build_params["size"] == 48


def test_folder_and_zip_inputs_give_identical_files(good, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    build(BuildConfig(images=good["folder"], labels=good["labels"], out=a, size=32))
    build(BuildConfig(images=good["zip"], labels=good["labels_zip"], out=b, size=32))
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in ("images", "ids", "labels"):
            assert np.array_equal(fa[name][:], fb[name][:])
        np.testing.assert_array_equal(fa.attrs["mean"], fb.attrs["mean"])
        np.testing.assert_array_equal(fa.attrs["std"], fb.attrs["std"])


def test_direct_io_and_buffered_writes_give_the_same_datasets(good, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    build(BuildConfig(images=good["folder"], labels=good["labels"], out=a, size=96, batch_size=5, direct_io=True))
    build(BuildConfig(images=good["folder"], labels=good["labels"], out=b, size=96, batch_size=5, direct_io=False))
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert fa["images"].shape == (N_GOOD, 96, 96, 3)
        for name in ("images", "ids", "labels"):
            assert np.array_equal(fa[name][:], fb[name][:])
        np.testing.assert_array_equal(fa.attrs["mean"], fb.attrs["mean"])


def test_two_builds_of_the_same_input_are_byte_identical(good, tmp_path):
    out = tmp_path / "a.h5"
    # 96 px: chunks of 12 images, 331,776 bytes, written with O_DIRECT where tmp allows it
    config = BuildConfig(images=good["zip"], labels=good["labels"], out=out, size=96, batch_size=7)
    build(config)
    first = out.read_bytes()
    time.sleep(1.1)  # HDF5 stamps objects with the time in whole seconds, unless told not to
    build(config)
    assert out.read_bytes() == first


def test_test_set_without_labels_limit_and_id_list(good, tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("GalaxyID\n" + "\n".join(str(g) for g in good["ids"][::2]) + "\n999\n")
    out = tmp_path / "test.h5"
    summary = build(BuildConfig(images=good["zip"], out=out, size=32, ids_file=ids_file, limit=4))
    assert summary.not_in_id_list == 1
    with h5py.File(out) as f:
        assert "labels" not in f
        assert f["ids"][:].tolist() == good["ids"][::2][:4]


def test_interrupted_build_leaves_no_output_and_resumes(good, tmp_path, monkeypatch):
    import galaxyprep.builder as build_module

    out = tmp_path / "r.h5"
    config = BuildConfig(images=good["folder"], labels=good["labels"], out=out, size=32, batch_size=2, resume=True)
    monkeypatch.setattr(build_module, "CHECKPOINT_EVERY", 2)
    real = build_module.GalaxyFileWriter.append
    calls = {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C after 3 batches of 2; the checkpoint after batch 2 holds 4 images
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(build_module.GalaxyFileWriter, "append", interrupting)
    with pytest.raises(KeyboardInterrupt):
        build(config)
    assert not out.exists() and out.with_name("r.h5.partial").exists()
    monkeypatch.setattr(build_module.GalaxyFileWriter, "append", real)
    summary = build(config)
    assert summary.resumed_from == 4  # the last checkpoint; the 3rd batch is redone
    reference = tmp_path / "ref.h5"
    build(BuildConfig(images=good["folder"], labels=good["labels"], out=reference, size=32))
    with h5py.File(out) as f, h5py.File(reference) as g:
        for name in ("images", "ids", "labels"):
            assert np.array_equal(f[name][:], g[name][:])
        np.testing.assert_allclose(f.attrs["mean"], g.attrs["mean"])
        assert "rows_done" not in f.attrs


def _lock_held(target: Path) -> bool:
    import fcntl

    from galaxyprep.outputs import lock_path

    fd = os.open(lock_path(target), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor drops the lock it took


def _processes_mentioning(token: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            pass
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc: Linux")
def test_a_build_killed_with_sigkill_takes_its_workers_along_and_resumes(good, tmp_path):
    import signal

    out = tmp_path / "killed.h5"
    config = {"images": good["folder"], "labels": good["labels"], "out": out, "size": 96, "batch_size": 2}
    code = f"""
import os, signal
from pathlib import Path
import galaxyprep.builder as b
b.CHECKPOINT_EVERY = 2
real, calls = b.GalaxyFileWriter.append, []
def append(self, *args):
    calls.append(1)
    if len(calls) == 4:  # a kill -9 after the checkpoint that follows batch 2
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args)
b.GalaxyFileWriter.append = append
b.build(b.BuildConfig(images=Path({str(good["folder"])!r}), labels=Path({str(good["labels"])!r}),
                      out=Path({str(out)!r}), size=96, batch_size=2, resume=True))
"""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:  # not a pipe: orphaned workers would hold it open and run() wait for them
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=fh, timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.read_text()
    deadline = time.time() + 10
    # A worker's /proc cmdline empties when its memory goes, a few ms before its files (the inherited lock) close.
    while (_processes_mentioning(str(out)) or _lock_held(out)) and time.time() < deadline:
        time.sleep(0.01)
    orphans = _processes_mentioning(str(out))
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "decode workers outlived their killed build"
    assert not out.exists() and out.with_name("killed.h5.partial").exists()
    summary = build(BuildConfig(**config, resume=True))
    assert summary.resumed_from == 4  # the last checkpoint; batch 3 is redone
    reference = tmp_path / "ref.h5"
    build(BuildConfig(**{**config, "out": reference}))
    with h5py.File(out) as f, h5py.File(reference) as g:
        for name in ("images", "ids", "labels"):
            assert np.array_equal(f[name][:], g[name][:])
        np.testing.assert_allclose(f.attrs["mean"], g.attrs["mean"])


# ---------------------------------------------------------------- bad input

def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (424, 424), (10, 20, 30, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (424, 424)).save(buf, format="PNG")
    return buf.getvalue()


def _bad_files(sample: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (content, words the one-line message must contain)."""
    rng = np.random.default_rng(3)
    corrupt = bytearray(sample)
    corrupt[700:] = rng.integers(0, 256, len(corrupt) - 700, dtype=np.uint8).tobytes()
    grey = simplejpeg.encode_jpeg(np.full((424, 424, 1), 90, np.uint8), colorspace="GRAY")
    small = simplejpeg.encode_jpeg(np.full((300, 300, 3), 90, np.uint8))
    return {
        "300001.jpg": (sample[: len(sample) // 2], "truncated"),
        "300002.jpg": (bytes(corrupt), "corrupt"),
        "300003.jpg": (_png_bytes(), "not a JPEG"),
        "300004.jpg": (b"", "empty file"),
        "300005.jpg": (grey, "greyscale"),
        "300006.jpg": (_cmyk_jpeg(), "CMYK"),
        "300007.jpg": (small, "300x300"),
    }


@pytest.fixture
def bad_input(good, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for gid, data in good["jpegs"].items():
        (folder / f"{gid}.jpg").write_bytes(data)
    sample = next(iter(good["jpegs"].values()))
    bad = _bad_files(sample)
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    dup = good["ids"][0]
    (folder / f"0{dup}.jpg").write_bytes(good["jpegs"][good["ids"][1]])  # same GalaxyID twice, another image
    header = "GalaxyID," + ",".join(CLASS_NAMES)
    valid = normalize_tree(np.full((1, 37), 0.5))[0]  # obeys the tree: only its GalaxyID is wrong
    ok_row = lambda gid: f"{gid}," + ",".join(f"{v:.6f}" for v in valid)  # noqa: E731
    bad_ids = [int(n.split(".")[0]) for n in bad]
    extra = [
        "400001,0.5,0.5",                                         # too few fields
        "400002," + ",".join(["abc"] + ["0.1"] * 36),             # not a number
        "400003," + ",".join(["nan"] + ["0.1"] * 36),             # NaN
        "400004," + ",".join(["1.5"] + ["0.1"] * 36),             # out of range
        ok_row(good["ids"][1]),                                   # duplicate label row
    ]
    labels = _labels_csv(tmp_path / "labels.csv", good["ids"] + bad_ids, extra)
    labels.write_text(labels.read_text().replace(header, header, 1))
    expected = {name: words for name, (_, words) in bad.items()}
    return {"folder": folder, "labels": labels, "expected": expected, "dup": dup, "dup2": good["ids"][1]}


def test_every_bad_input_is_skipped_and_listed(bad_input, tmp_path, capsys):
    out = tmp_path / "skip.h5"
    with pytest.raises(SystemExit) as stop:
        main(["build", "--images", str(bad_input["folder"]), "--labels", str(bad_input["labels"]),
              "--out", str(out), "--size", "32", "--quiet"])
    assert stop.value.code == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("skipped: ")]
    for name, words in bad_input["expected"].items():
        hits = [line for line in lines if name in line]
        assert len(hits) == 1 and words in hits[0], (name, hits)
    assert any("duplicate GalaxyID" in line and str(bad_input["dup"]) in line for line in lines)
    for line_no, words in [(2 + N_GOOD + 7, "fields"), (3 + N_GOOD + 7, "unparsable"), (4 + N_GOOD + 7, "not a number"),
                           (5 + N_GOOD + 7, "outside [0, 1]"), (6 + N_GOOD + 7, "duplicate GalaxyID")]:
        assert any(f"line {line_no}:" in line and words in line for line in lines), (line_no, words)
    info = read_info(out)
    listed = json.dumps(info.skipped)
    for name in bad_input["expected"]:
        assert name in listed
    with h5py.File(out) as f:
        written = set(f["ids"][:].tolist())
    assert bad_input["dup"] not in written and bad_input["dup2"] not in written
    assert len(written) == N_GOOD - 2


def test_on_error_fail_exits_nonzero_and_writes_nothing(bad_input, tmp_path):
    out = tmp_path / "fail.h5"
    proc = subprocess.run([sys.executable, "-m", "galaxyprep", "build", "--images", str(bad_input["folder"]),
                           "--labels", str(bad_input["labels"]), "--out", str(out), "--size", "32",
                           "--on-error", "fail", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "--on-error fail" in error_lines[0]
    assert not out.exists() and not out.with_name("fail.h5.partial").exists()


def test_decode_failure_with_on_error_fail_removes_partial(good, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for gid, data in good["jpegs"].items():
        (folder / f"{gid}.jpg").write_bytes(data)
    (folder / "999999.jpg").write_bytes(b"")
    out = tmp_path / "x.h5"
    with pytest.raises(InputError, match="999999.jpg: empty file"):
        build(BuildConfig(images=folder, out=out, size=32, on_error="fail", batch_size=4))
    assert not out.exists() and not out.with_name("x.h5.partial").exists()


@pytest.mark.parametrize("direct_io, where", [(True, "rows"), (False, "rows"), (True, "commit")])
def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(good, tmp_path, monkeypatch, direct_io, where):
    import errno

    import galaxyprep.direct_io as dio
    import galaxyprep.galaxy_file as gf

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "commit":  # the metadata HDF5 writes last
        monkeypatch.setattr(gf.GalaxyFileWriter, "commit", full)
    elif direct_io:        # the pixels' own descriptors
        monkeypatch.setattr(dio.RawRowWriter, "write_rows", full)
    else:                  # through HDF5
        monkeypatch.setattr(gf.GalaxyFileWriter, "_write_images", full)
    out = tmp_path / "full.h5"
    with pytest.raises(InputError, match=r"full.h5: cannot write: No space left on device; nothing written"):
        build(BuildConfig(images=good["folder"], out=out, size=32, batch_size=4, direct_io=direct_io))
    assert not out.exists() and not out.with_name("full.h5.partial").exists()


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_worker_processes_and_threads_build_identical_files(bad_input, tmp_path, kind):
    """Forked workers write the same file as threads, bad images included, from a folder or a zip.

    The zip case catches a worker reading through a handle inherited from the
    parent (which opened the archive to plan the build): shared file
    positions give corrupt reads.
    """
    images = bad_input["folder"]
    if kind == "zip":
        images = tmp_path / "images.zip"
        with zipfile.ZipFile(images, "w") as zf:
            for p in sorted(bad_input["folder"].iterdir()):
                zf.write(p, f"images_training_rev1/{p.name}")
    files = {}
    for processes in (True, False):
        out = tmp_path / f"{kind}_{processes}.h5"
        summary = build(BuildConfig(images=images, labels=bad_input["labels"], out=out, size=32, batch_size=3,
                                    workers=2, processes=processes))
        assert len(summary.skipped) >= len(bad_input["expected"])
        files[processes] = out
    with h5py.File(files[True]) as fa, h5py.File(files[False]) as fb:
        assert len(fa["ids"]) == N_GOOD - 2
        for name in ("images", "ids", "labels"):
            assert np.array_equal(fa[name][:], fb[name][:]), name
        assert fa.attrs["skipped"] == fb.attrs["skipped"]
        np.testing.assert_array_equal(fa.attrs["mean"], fb.attrs["mean"])


def test_damaged_zip_member_is_skipped_with_one_line(good, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for gid, data in good["jpegs"].items():
            zf.writestr(f"{gid}.jpg", data)
    victim = good["ids"][3]
    raw = bytearray(archive.read_bytes())
    at = raw.find(good["jpegs"][victim][2000:2100])
    raw[at: at + 50] = bytes(50)  # the CRC no longer matches
    archive.write_bytes(bytes(raw))
    summary = build(BuildConfig(images=archive, out=tmp_path / "z.h5", size=32))
    assert summary.n_written == N_GOOD - 1
    assert [p.file for p in summary.skipped] == [f"{archive}:{victim}.jpg"]
    assert "damaged archive member" in summary.skipped[0].problem


@pytest.mark.parametrize("args,words", [
    (["--images", "/no/such/dir"], "no such folder or zip archive"),
    (["--images", "{bad_zip}"], "neither a folder of JPEGs nor a zip archive"),
    (["--images", "{folder}", "--labels", "{not_csv}"], "not a Galaxy Zoo labels CSV"),
    (["--images", "{folder}", "--labels", "/no/labels.csv"], "no such labels file"),
    (["--images", "{folder}", "--crop", "500"], "larger than the 424x424 images"),
    (["--images", "{folder}", "--compression", "zstd"], "is not one of"),
])
def test_cli_bad_arguments_give_one_line(good, tmp_path, capsys, args, words):
    bad_zip = tmp_path / "fake.zip"
    bad_zip.write_text("hello")
    not_csv = tmp_path / "labels.csv"
    not_csv.write_text("id,a,b\n1,2,3\n")
    values = {"bad_zip": bad_zip, "folder": good["folder"], "not_csv": not_csv}
    args = [a.format(**values) for a in args]
    out = tmp_path / "o.h5"
    with pytest.raises(SystemExit) as stop:
        main(["build", *args, "--out", str(out), "--quiet"])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert not out.exists()


def test_info_and_preview_commands(good, tmp_path, capsys):
    out = tmp_path / "p.h5"
    build(BuildConfig(images=good["zip"], labels=good["labels"], out=out, size=32))
    with pytest.raises(SystemExit):
        main(["info", str(out)])
    text = capsys.readouterr().out
    assert f"{N_GOOD} images 32x32x3" in text and "mean (R, G, B)" in text and "(uint8 - mean) / std" in text
    png = tmp_path / "preview.png"
    with pytest.raises(SystemExit):
        main(["preview", str(out), "--out", str(png), "--n", "3"])
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[1] > 3 * 100


def test_corrupt_hdf5_gives_one_line(tmp_path, capsys):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SystemExit) as stop:
        main(["info", str(bogus)])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable HDF5 file" in err[0]


def test_a_dead_decode_worker_is_one_line_and_leaves_no_file(good, tmp_path, monkeypatch):
    import os
    import signal

    import galaxyprep.decode_pool as decode_pool

    if not decode_pool.processes_available():
        pytest.skip("decode workers are threads here")

    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(decode_pool, "decode_resample", die)  # the forked workers inherit the patch
    out = tmp_path / "dead.h5"
    with pytest.raises(InputError, match="decode worker process died"):
        build(BuildConfig(images=good["folder"], out=out, size=32, batch_size=4))
    assert not out.exists() and not out.with_name("dead.h5.partial").exists()


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_a_partial_file_that_cannot_be_read_is_started_again_with_a_line(good, tmp_path, monkeypatch, compression):
    """A compressed build killed before its first checkpoint left a partial file whose datasets HDF5
    could not read (KeyError: bad object header version number), and --resume failed on it every time."""
    import galaxyprep.builder as build_module

    out = tmp_path / "r.h5"
    config = BuildConfig(images=good["folder"], labels=good["labels"], out=out, size=32, batch_size=2, resume=True,
                         compression=compression)
    monkeypatch.setattr(build_module, "CHECKPOINT_EVERY", 2)
    real = build_module.GalaxyFileWriter.append
    calls = {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(build_module.GalaxyFileWriter, "append", interrupting)
    with pytest.raises(KeyboardInterrupt):
        build(config)
    partial = out.with_name("r.h5.partial")
    with h5py.File(partial, "a") as f:  # what a kill can leave: the root and its attributes readable, a dataset not
        del f["images"]
    monkeypatch.setattr(build_module.GalaxyFileWriter, "append", real)
    lines: list[str] = []
    summary = build(config, report=lines.append)
    assert summary.resumed_from == 0 and summary.n_written > 0
    assert any("cannot be read" in line and "starting again" in line for line in lines), lines
    with h5py.File(out) as f:
        assert f["images"].shape[0] == summary.n_written
