"""galaxyprep build --scheduler: a real Dask LocalCluster of processes, never a mock.

Every cluster build is compared with a plain build of the same input: ids,
pixels, labels, mean, std, the skipped list and every attribute but the
build's own record must be equal.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from conftest import SHARED_GZ  # noqa: E402
from galaxyprep import GalaxyFile, InputError, build_galaxy_file  # noqa: E402
from galaxyprep.builder import BuildConfig  # noqa: E402
from galaxyprep.cli import main  # noqa: E402
from galaxyprep.cluster_build import default_shard_images, parts_folder, shard_bounds  # noqa: E402
from galaxyprep.synth import synthesize  # noqa: E402
from galaxyprep.tree import CLASS_NAMES  # noqa: E402

N_IMAGES = 300
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """N_IMAGES real Kaggle JPEGs (synthetic where ../shared is absent), their labels, and three bad files."""
    root = tmp_path_factory.mktemp("cluster_inputs")
    folder = root / "images"
    folder.mkdir()
    real = sorted((SHARED_GZ / "images").glob("*.jpg"))[:N_IMAGES] if (SHARED_GZ / "images").is_dir() else []
    if real:
        for p in real:
            (folder / p.name).symlink_to(p)
        ids = {int(p.stem) for p in real}
        lines = (SHARED_GZ / "training_solutions_rev1.csv").read_text().splitlines()
        labels = root / "labels.csv"
        labels.write_text("\n".join([lines[0]] + [r for r in lines[1:] if int(r.split(",")[0]) in ids]) + "\n")
    else:
        data = synthesize(root / "synth", N_IMAGES, seed=5)
        for p in data.train_images.glob("*.jpg"):
            (folder / p.name).symlink_to(p)
        labels = data.labels_csv
    good = sorted(folder.glob("*.jpg"))
    (folder / "1.jpg").write_bytes(good[0].read_bytes()[:300])          # truncated
    (folder / "2.jpg").write_text("not a JPEG at all")                    # not an image
    (folder / "3.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))      # a PNG under a .jpg name
    rows = labels.read_text().splitlines()
    row = rows[1].split(",", 1)[1]
    labels.write_text("\n".join(rows + [f"{g},{row}" for g in (1, 2, 3)]) + "\n")
    return {"images": folder, "labels": labels}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, reached by address as a remote cluster would be."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as c:
        yield c.scheduler_address


def config(inputs, out, **extra) -> BuildConfig:
    return BuildConfig(images=inputs["images"], labels=inputs["labels"], out=out, crop=200, size=48, chunk_images=16,
                       **extra)


@pytest.fixture(scope="module")
def plain(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "plain.h5"
    build_galaxy_file(config(inputs, out))
    return out


def shard_index(path: Path) -> int:
    """The index of a shard file, part-<generation>-<index>.h5."""
    return int(re.fullmatch(r"part-[0-9a-f]{8}-(\d{5})\.h5", path.name).group(1))


def shard(out: Path, index: int) -> Path:
    """The shard file of `index` that OUT maps."""
    return next(p for p in parts_folder(out).glob("part-*.h5") if shard_index(p) == index)


def assert_same_file(a: Path, b: Path) -> None:
    """The same rows, normalization, skipped list and attributes (but the build's own record)."""
    with GalaxyFile(a) as fa, GalaxyFile(b) as fb:
        assert np.array_equal(fa.ids, fb.ids)
        assert np.array_equal(fa.images(0, fa.n_images), fb.images(0, fb.n_images))
        assert np.array_equal(fa.labels(), fb.labels())
        for x, y in zip(fa.normalization, fb.normalization):
            assert np.array_equal(x, y)  # exact: combined from exact integer sums
        ia, ib = fa.info, fb.info
        assert ia.skipped == ib.skipped and len(ia.skipped) == 3
        own = {"build_params", "parts", "shards", "chunk_images", "compression"}
        assert {k: v for k, v in ia.attrs.items() if k not in own} == \
               {k: v for k, v in ib.attrs.items() if k not in own}


def test_a_cluster_build_reads_back_identical_to_a_plain_build(inputs, plain, cluster, tmp_path):
    out = tmp_path / "virtual.h5"
    summary = build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64))
    assert_same_file(plain, out)
    assert len(summary.skipped) == 3 and summary.n_written == N_IMAGES
    with GalaxyFile(out) as f:
        assert f.is_virtual and len(f.parts) == 5  # 303 ids in shards of 64
        assert all(p.parent == parts_folder(out) for p in f.parts)
    assert [shard_index(p) for p in sorted(parts_folder(out).iterdir())] == list(range(5))
    # the file and its shards move together: the mappings are relative
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(out, moved / out.name)
    shutil.move(parts_folder(out), parts_folder(moved / out.name))
    assert_same_file(plain, moved / out.name)


def test_consolidate_writes_one_plain_file_and_removes_the_shards(inputs, plain, cluster, tmp_path):
    out = tmp_path / "one.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64, consolidate=True))
    assert_same_file(plain, out)
    with GalaxyFile(out) as f:
        assert not f.is_virtual and f.parts == []
    assert not parts_folder(out).exists()


def test_a_missing_shard_is_one_line_not_zeros(inputs, cluster, tmp_path):
    out = tmp_path / "holed.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=128))
    gone = shard(out, 1)
    gone.unlink()
    with pytest.raises(InputError, match=f"{gone.name} is missing"):
        GalaxyFile(out)


_OPEN_UNDER_A_LIMIT = """
import os, resource, sys
from galaxyprep import GalaxyFile, InputError
now = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (now + int(sys.argv[2]), now + int(sys.argv[3])))
try:
    with GalaxyFile(sys.argv[1]) as f:
        x = f.images(0, f.n_images)
        print("all-zero images:", int((x.reshape(len(x), -1).max(axis=1) == 0).sum()))
except InputError as exc:
    print("refused:", exc)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_more_shards_than_open_files_allowed_get_room_or_one_line_never_zeros(inputs, cluster, tmp_path):
    """HDF5 reads a shard it cannot open (the open-file limit reached) as zeros, without a word."""
    out = tmp_path / "many.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=16))
    n_parts = len(list(parts_folder(out).glob("part-*.h5")))

    def read(soft_spare: int, hard_spare: int) -> str:
        return subprocess.run([sys.executable, "-c", _OPEN_UNDER_A_LIMIT, str(out), str(soft_spare), str(hard_spare)],
                              capture_output=True, text=True, timeout=120, cwd=REPO).stdout.strip()

    assert n_parts == 19
    assert read(5, n_parts + 500) == "all-zero images: 0"  # the soft limit is raised for it
    refused = read(5, 10)  # the hard limit is too low: one line, not 303 black galaxies
    assert refused.startswith("refused:") and "19 shard files must all stay open" in refused, refused


_WRITE_UNDER_A_LIMIT = """
import os, resource, sys
from pathlib import Path
from galaxyprep.galaxy_file import write_consolidated_galaxy_file, write_virtual_galaxy_file
parts = sorted(Path(sys.argv[1]).glob("part-*.h5"))
now = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (now + 8, now + 8))
write_virtual_galaxy_file(Path(sys.argv[2]) / "v.h5", parts, {})
write_consolidated_galaxy_file(Path(sys.argv[2]) / "c.h5", parts, {}, 16)
print("written")
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_out_is_written_over_more_shards_than_open_files_allowed(inputs, plain, cluster, tmp_path):
    """The client opens one shard at a time to write OUT, virtual or consolidated."""
    out = tmp_path / "many.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=16))
    done = subprocess.run([sys.executable, "-c", _WRITE_UNDER_A_LIMIT, str(parts_folder(out)), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.stdout.strip() == "written", done.stderr[-2000:]
    with GalaxyFile(tmp_path / "c.h5") as c, GalaxyFile(plain) as p:
        assert np.array_equal(c.images(0, c.n_images), p.images(0, p.n_images))


def test_resume_builds_only_the_missing_shards_and_equals_a_whole_build(inputs, plain, cluster, tmp_path):
    out = tmp_path / "resumed.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64))
    parts = parts_folder(out)
    kept = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    out.unlink()  # as if the build had died before writing OUT, with two shards not done
    names = {k: shard(out, k).name for k in range(5)}
    shard(out, 1).unlink()
    shard(out, 3).rename(parts / names[3].replace(".h5", ".1a2b3c.h5.partial"))  # a killed attempt's file
    summary = build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64, resume=True))
    assert summary.resumed_from == 61 + 64 + 47  # shards 0, 2 and 4 kept (0 holds the 3 bad ids; 4 is the last 47)
    assert_same_file(plain, out)
    now = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    assert sorted(now) == sorted(names.values())  # the same generation taken up; the stray attempt is gone
    assert all(now[names[k]] == kept[names[k]] for k in (0, 2, 4))
    # a different build into the same output does not take those shards
    other = build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64, resume=True, limit=200))
    assert other.resumed_from == 0 and other.n_written == 197


class KillMidTask(WorkerPlugin):
    """SIGKILLs the first worker that starts a shard, once a shard's file is being written."""

    def __init__(self, marker: str, parts: str):
        self.marker, self.parts = marker, parts

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "galaxyprep-shard" not in str(key):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {key}".encode())
        os.close(fd)

        def kill_when_writing():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(".partial" in n for n in os.listdir(self.parts)):
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_when_writing, daemon=True).start()


def test_a_worker_killed_mid_shard_is_retried_and_the_result_is_exact(inputs, plain, tmp_path):
    out = tmp_path / "killed.h5"
    marker = tmp_path / "killed-worker"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as c, Client(c) as client:
        parts_folder(out).mkdir()
        client.register_plugin(KillMidTask(str(marker), str(parts_folder(out))))
        build_galaxy_file(config(inputs, out, scheduler=c.scheduler_address, shard_images=128))
    pid, key = marker.read_text().split()
    assert "galaxyprep-shard" in key
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # that worker is gone, and its shard was built again elsewhere
    assert_same_file(plain, out)
    assert [shard_index(p) for p in sorted(parts_folder(out).iterdir())] == list(range(3))


class KillEveryTime(WorkerPlugin):
    """SIGKILLs any worker that starts shard 1: a crash that comes back whichever worker runs it."""

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "galaxyprep-shard-1-" in str(key):
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_shard_that_kills_every_worker_is_one_line_and_keeps_the_others(inputs, tmp_path, capsys):
    import dask

    out = tmp_path / "doomed.h5"
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.CRITICAL) as c, Client(c) as client:
        client.register_plugin(KillEveryTime())
        with pytest.raises(SystemExit) as stop:
            main(["build", "--images", str(inputs["images"]), "--out", str(out), "--scheduler", c.scheduler_address,
                  "--chunk-images", "16", "--shard-images", "128", "-q"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(r"shard 1 \(\d+ images from here\) killed its worker", errors[0]), err
    assert not out.exists()
    kept = [shard_index(p) for p in parts_folder(out).glob("part-*.h5") if p.name.count(".") == 1]
    assert 1 not in kept and kept  # what finished stays for --resume


class OtherVersion(WorkerPlugin):
    def setup(self, worker):
        import galaxyprep.cluster_build

        galaxyprep.cluster_build.__version__ = "0.0.0-elsewhere"


def test_a_worker_running_another_galaxyprep_is_refused_before_any_shard(inputs, tmp_path):
    out = tmp_path / "mixed.h5"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as c, Client(c) as client:
        client.register_plugin(OtherVersion())
        with pytest.raises(InputError, match="runs galaxyprep 0.0.0-elsewhere"):
            build_galaxy_file(config(inputs, out, scheduler=c.scheduler_address))
    assert not list(parts_folder(out).iterdir())


def test_scheduler_local_from_the_command_line(inputs, plain, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    with pytest.raises(SystemExit) as stop:
        main(["build", "--images", str(inputs["images"]), "--labels", str(inputs["labels"]), "--out", str(out),
              "--crop", "200", "--size", "48", "--scheduler", "local", "--decode-workers", "2", "-q"])
    assert stop.value.code == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("skipped: ") == 3
    assert "wrote 300 images" in captured.out
    assert_same_file(plain, out)


@pytest.mark.parametrize("extra", [
    {"processes": True},   # local is threads by default; this spawns worker processes
    {"direct_io": False},  # threads writing their shards through HDF5 (write_direct_chunk), not in place
])
def test_scheduler_local_equals_a_plain_build(inputs, plain, tmp_path, extra):
    out = tmp_path / "local.h5"
    build_galaxy_file(config(inputs, out, scheduler="local", workers=2, shard_images=64, **extra))
    assert_same_file(plain, out)


def test_progress_moves_inside_a_shard_not_only_when_it_ends(inputs, tmp_path, monkeypatch):
    """Workers report each batch as a Dask event; one shard of GZ DESI is half a minute of a core."""
    import galaxyprep.cluster_build as cluster_build

    decode = cluster_build.decode_resample

    def slowly(*args):  # the local cluster's workers are threads of this process: they run this
        time.sleep(0.02)
        return decode(*args)

    monkeypatch.setattr(cluster_build, "decode_resample", slowly)
    monkeypatch.setattr(cluster_build, "PROGRESS_EVERY_S", 0.01)
    seen: list[tuple[int, int]] = []
    build_galaxy_file(config(inputs, tmp_path / "p.h5", scheduler="local", workers=1, batch_size=8),
                      progress=lambda done, total: seen.append((done, total)))
    total = N_IMAGES + 3  # the three bad files are done too
    assert len(shard_bounds(total, 16)) == 1 and seen[0] == (0, total) and seen[-1] == (total, total)
    inside = [done for done, _ in seen if 0 < done < total]
    assert inside and all(done % 8 == 0 for done in inside), seen  # batches of the one shard, as they ended
    assert seen == sorted(seen)


@pytest.mark.parametrize("n, chunk, limit", [(5866, 32, None), (61578, 32, None), (303, 16, 64), (303, 16, 128),
                                             (2049, 32, None), (10, 16, None), (1, 1, None), (8_670_000, 32, None)])
def test_shards_are_whole_chunks_within_one_chunk_of_each_other(n, chunk, limit):
    bounds = shard_bounds(n, chunk, limit)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, in GalaxyID order
    assert all(lo % chunk == 0 and hi > lo for lo, hi in bounds)
    cap = -(-limit // chunk) * chunk if limit else default_shard_images(n, chunk)
    assert max(hi - lo for lo, hi in bounds) <= cap and len(bounds) == -(-n // cap)
    sizes = [hi - lo for lo, hi in bounds[:-1]]  # the last holds the partial chunk
    assert not sizes or max(sizes) - min(sizes) <= chunk


@pytest.mark.parametrize("args, words", [
    (["--consolidate"], "--consolidate: only applies to a cluster build"),
    (["--shard-images", "64"], "--shard-images: only applies to a cluster build"),
    (["--scheduler", "local", "--shard-images", "0"], "--shard-images: must be at least 1"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
])
def test_cluster_options_are_checked_in_one_line(inputs, tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.setattr("galaxyprep.cluster_build.CONNECT_TIMEOUT_S", 2)
    with pytest.raises(SystemExit) as stop:
        main(["build", "--images", str(inputs["images"]), "--out", str(tmp_path / "x.h5"), "-q", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and len(err.strip().splitlines()) == 1 and words in err, err


def test_on_error_fail_stops_at_a_bad_image_and_leaves_nothing(inputs, cluster, tmp_path, capsys):
    out = tmp_path / "fail.h5"
    with pytest.raises(SystemExit) as stop:
        main(["build", "--images", str(inputs["images"]), "--out", str(out), "--scheduler", cluster,
              "--on-error", "fail", "-q"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--on-error fail: nothing written" in errors[0], err
    assert not out.exists() and not parts_folder(out).exists()


def test_a_parts_folder_holding_other_files_is_refused(inputs, cluster, tmp_path):
    out = tmp_path / "guarded.h5"
    parts_folder(out).mkdir()
    (parts_folder(out) / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):
        build_galaxy_file(config(inputs, out, scheduler=cluster))
    assert (parts_folder(out) / "notes.txt").read_text() == "mine"


def test_the_loader_reads_a_virtual_file_as_a_plain_one(inputs, plain, cluster, tmp_path):
    from galaxytrain.data import GalaxyBatches

    out = tmp_path / "loader.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64))
    a = GalaxyBatches(plain, batch_size=32, seed=3)
    b = GalaxyBatches(out, batch_size=32, seed=3)
    assert len(a) == len(b)
    for k in range(len(a)):
        (xa, ya), (xb, yb) = a[k], b[k]
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert len(CLASS_NAMES) == ya.shape[1]


def test_a_rebuild_whose_scheduler_cannot_be_reached_leaves_the_old_out_readable(inputs, tmp_path, monkeypatch):
    """--overwrite to a closed port: one InputError before OUT.parts/ is touched (it was emptied first)."""
    from galaxyprep import cluster_build

    out = tmp_path / "v.h5"
    build_galaxy_file(config(inputs, out, scheduler="local", shard_images=64))
    before = {p.name: p.read_bytes() for p in parts_folder(out).iterdir()}
    monkeypatch.setattr(cluster_build, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        build_galaxy_file(config(inputs, out, scheduler="tcp://127.0.0.1:1", shard_images=64, overwrite=True))
    assert {p.name: p.read_bytes() for p in parts_folder(out).iterdir()} == before
    with GalaxyFile(out) as f:
        assert f.n_images > 0 and f.images(0, f.n_images).any()
    fresh = tmp_path / "never.h5"
    with pytest.raises(InputError, match="cannot reach"):
        build_galaxy_file(config(inputs, fresh, scheduler="tcp://127.0.0.1:1"))
    assert not parts_folder(fresh).exists()


@pytest.mark.parametrize("address", ["bogus", "localhost:abc", "tcp://host"])
def test_a_malformed_scheduler_address_is_one_line_at_once(inputs, tmp_path, capsys, address):
    started = time.monotonic()
    with pytest.raises(SystemExit) as ended:
        main(["build", "--images", str(inputs["images"]), "--out", str(tmp_path / "x.h5"), "--scheduler", address,
              "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 1 and err[-1].startswith(f"error: --scheduler {address}: not a scheduler address")
    assert time.monotonic() - started < 15 and not parts_folder(tmp_path / "x.h5").exists()


@pytest.mark.parametrize("damage", ["copied over", "unlabelled", "other crop", "truncated", "empty"])
def test_out_vouches_for_its_shards(inputs, cluster, tmp_path, damage):
    """A shard that is not the one OUT was built over is refused in one line naming it, never read."""
    out = tmp_path / "v.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=128))
    parts = sorted(parts_folder(out).iterdir())
    victim = parts[1]
    if damage == "copied over":
        shutil.copyfile(parts[2], victim)
    elif damage in ("unlabelled", "other crop"):
        other = tmp_path / "other.h5"
        extra = {"labels": None} if damage == "unlabelled" else {"crop": 180}
        build_galaxy_file(replace(config(inputs, other, scheduler=cluster, shard_images=128), **extra))
        shutil.copyfile(sorted(parts_folder(other).iterdir())[1], victim)
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:4096])
    else:
        victim.write_bytes(b"")
    with pytest.raises(InputError) as err:
        GalaxyFile(out)
    message = str(err.value)
    assert victim.name in message and "Rebuild it: `galaxyprep build" in message and "--overwrite" in message
    assert "\n" not in message


def test_a_rebuild_keeps_the_old_out_whole_until_the_new_one_is_complete(inputs, cluster, tmp_path, monkeypatch):
    """A new generation of shards beside the old; a stale copy of OUT never reads the new build's pixels."""
    from galaxyprep import cluster_build

    out = tmp_path / "v.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=128))
    old_parts = sorted(p.name for p in parts_folder(out).iterdir())
    with GalaxyFile(out) as f:
        old_pixels = f.images(0, f.n_images)
    stale = tmp_path / "stale.h5"
    shutil.copyfile(out, stale)  # a copy kept beside it: it maps the same shard files
    (tmp_path / "stale.h5.parts").symlink_to(parts_folder(out))

    real_run = cluster_build._run

    def dies_after_one_shard(client, todo, results, *args, **kwargs):
        real_run(client, todo[:1], results, *args, **kwargs)
        raise InputError("worker", "lost (as if the cluster went away mid-build)")

    monkeypatch.setattr(cluster_build, "_run", dies_after_one_shard)
    with pytest.raises(InputError, match="lost"):
        build_galaxy_file(replace(config(inputs, out, scheduler=cluster, shard_images=128, overwrite=True), crop=150))
    with GalaxyFile(out) as f:  # the old OUT, whole, while the rebuild's first shard sits beside it
        assert np.array_equal(f.images(0, f.n_images), old_pixels) and f.info.crop == 200
    assert set(old_parts) < {p.name for p in parts_folder(out).iterdir()}
    monkeypatch.setattr(cluster_build, "_run", real_run)
    build_galaxy_file(replace(config(inputs, out, scheduler=cluster, shard_images=128, overwrite=True,
                                     resume=True), crop=150))
    with GalaxyFile(out) as f:
        assert f.info.crop == 150
    assert not set(old_parts) & {p.name for p in parts_folder(out).iterdir()}  # the old generation is gone
    assert not list(parts_folder(out).glob("building-*"))
    with pytest.raises(InputError, match="is missing"):
        GalaxyFile(stale)  # refused, where it once read the crop-150 pixels under its crop-200 attributes


def test_resume_consolidate_over_older_shards_leaves_one_plain_file(inputs, plain, cluster, tmp_path):
    out = tmp_path / "c.h5"
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64))
    build_galaxy_file(config(inputs, out, scheduler=cluster, shard_images=64, consolidate=True, resume=True,
                             overwrite=True))
    assert_same_file(plain, out)
    assert not parts_folder(out).exists()


def test_a_port_that_is_not_a_dask_scheduler_ends_in_bounded_time(inputs, tmp_path, monkeypatch):
    """An HTTP server accepts the connection and never answers Dask's handshake: it held the lock 12 minutes."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from galaxyprep import cluster_build

    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    server.daemon_threads = True  # its handler waits for a request line Dask never sends
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(cluster_build, "CONNECT_TIMEOUT_S", 1)
    monkeypatch.setattr(cluster_build, "ANSWER_GRACE_S", 2)
    out = tmp_path / "h.h5"
    started = time.monotonic()
    try:
        with pytest.raises(InputError, match="no Dask scheduler answered within 3 s"):
            build_galaxy_file(config(inputs, out, scheduler=f"tcp://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 30
    assert not out.exists() and not parts_folder(out).exists()
    build_galaxy_file(config(inputs, out, scheduler="local", shard_images=128))  # the lock was let go
    assert GalaxyFile(out).n_images == N_IMAGES


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_loader_processes_without_room_for_the_shards_are_refused_in_one_line(inputs, cluster, tmp_path):
    """Each forked loader opens every shard again: refused in the parent, not in a TF traceback from a worker."""
    import resource

    out = tmp_path / "many.h5"
    build_galaxy_file(replace(config(inputs, out, scheduler=cluster, shard_images=4), chunk_images=4, size=24))
    n_parts = len(list(parts_folder(out).glob("part-*.h5")))
    cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(out), "--out", str(tmp_path / "run"), "--epochs",
           "1", "--model", "galaxy_cnn", "--use-multiprocessing", "--loader-workers", "2", "--no-progress"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    found = {}
    for limit in (n_parts + 120, n_parts + 150, n_parts + 180):  # around room for the parent and the loaders
        found[limit] = subprocess.run(cmd + ["--overwrite"], env=env, capture_output=True, text=True, timeout=300,
                                      cwd=REPO,
                                      preexec_fn=lambda n=limit: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)))
    for limit, done in found.items():  # each one either trains or is refused in one line; never a traceback
        assert "Traceback" not in done.stderr, (limit, done.stderr[-1500:])
        assert done.returncode == 0 or "loader process" in done.stderr, (limit, done.stderr[-1500:])
    refused = [d for d in found.values() if d.returncode]
    assert refused, "every limit had room: lower them"
    errors = [line for line in refused[0].stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f"its {n_parts} shard files must all stay open while each loader process" in errors[0]
