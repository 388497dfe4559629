"""GalaxyBatches: coverage, alignment, epoch shuffles, contiguous reads, worker processes, Keras fit."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from galaxyprep import InputError  # noqa: E402
from galaxytrain.data import CentreView, DihedralView, GalaxyBatches  # noqa: E402


def stored(path):
    with h5py.File(path, "r") as f:
        labels = f["labels"][:] if "labels" in f else None
        return f["images"][:], f["ids"][:], labels, f.attrs["mean"], f.attrs["std"]


def one_epoch(ds):
    return [ds[i] for i in range(len(ds))]


def epoch_ids(ds):
    return np.concatenate([ds.batch_ids(i) for i in range(len(ds))])


@pytest.mark.parametrize("batch_size, block_images", [(16, 8), (10, 8), (7, 3), (64, 8)])
def test_every_selected_row_once_per_epoch(make_galaxy_file, batch_size, block_images):
    path = make_galaxy_file(n=120, size=8, chunk_images=8)
    _, ids, _, _, _ = stored(path)
    rows = np.flatnonzero(np.random.default_rng(1).random(120) < 0.7)
    ds = GalaxyBatches(path, rows, batch_size=batch_size, block_images=block_images, normalize=False)
    assert len(ds) == -(-len(rows) // batch_size)
    for _ in range(3):
        batches = one_epoch(ds)
        sizes = [len(x) for x, _ in batches]
        assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size
        got = epoch_ids(ds)
        assert len(got) == len(rows)
        assert np.array_equal(np.sort(got), ids[rows])
        ds.on_epoch_end()


def test_batches_hold_the_stored_image_and_label_of_their_id(make_galaxy_file):
    path = make_galaxy_file(n=90, size=12, chunk_images=8, seed=3)
    images, ids, labels, mean, std = stored(path)
    row_of = {int(i): r for r, i in enumerate(ids)}
    rows = np.arange(5, 90, 2)
    ds = GalaxyBatches(path, rows, batch_size=16, seed=4)
    for epoch in range(2):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape[1:] == (12, 12, 3)
            file_rows = [row_of[int(g)] for g in ds.batch_ids(i)]
            np.testing.assert_allclose(x * std.astype(np.float32) + mean.astype(np.float32),
                                       images[file_rows], atol=1e-3)
            np.testing.assert_array_equal(y, labels[file_rows])
        ds.on_epoch_end()


def test_normalization_uses_the_file_statistics(make_galaxy_file):
    path = make_galaxy_file(n=40, size=8)
    images, _, _, mean, std = stored(path)
    ds = GalaxyBatches(path, batch_size=40, shuffle=False, labels=False)
    x = ds[0]
    expected = (images.astype(np.float32) - mean.astype(np.float32)) * (1 / std).astype(np.float32)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_dihedral_batches_are_transforms_of_the_stored_images(make_galaxy_file):
    path = make_galaxy_file(n=48, size=8, seed=5)
    images, ids, labels, _, _ = stored(path)
    row_of = {int(i): r for r, i in enumerate(ids)}
    ds = GalaxyBatches(path, batch_size=16, view=DihedralView(8), normalize=False, seed=2)
    used = set()
    for i in range(len(ds)):
        x, y = ds[i]
        for k, galaxy in enumerate(ds.batch_ids(i)):
            image = images[row_of[int(galaxy)]]
            codes = [c for c in range(8) if np.array_equal(x[k], _dihedral(image, c))]
            assert codes, f"batch {i} item {k} is not a rotation/flip of galaxy {galaxy}"
            used.update(codes)
            np.testing.assert_array_equal(y[k], labels[row_of[int(galaxy)]])
    assert len(used) >= 6  # 48 random draws of 8 codes
    # The augmentation itself is a function of (seed, epoch, batch).
    np.testing.assert_array_equal(ds[1][0], ds[1][0])


def _dihedral(image, code):
    turned = np.rot90(image, code % 4)
    return turned[:, ::-1] if code >= 4 else turned


def test_unshuffled_is_file_order_and_ids_in_order_match(make_galaxy_file):
    path = make_galaxy_file(n=70, size=8)
    images, ids, _, _, _ = stored(path)
    rows = np.array([3, 1, 4, 15, 9, 26, 53, 58, 69])  # unsorted on purpose
    ds = GalaxyBatches(path, rows, batch_size=4, shuffle=False, normalize=False, labels=False)
    x = np.concatenate(one_epoch(ds))
    order = np.sort(rows)
    np.testing.assert_array_equal(x, images[order])
    np.testing.assert_array_equal(ds.ids_in_order(), ids[order])
    ds.on_epoch_end()
    np.testing.assert_array_equal(np.concatenate(one_epoch(ds)), x)


def test_order_changes_with_epoch_and_repeats_for_same_seed_and_epoch(make_galaxy_file):
    path = make_galaxy_file(n=200, size=8, chunk_images=8)
    a = GalaxyBatches(path, batch_size=16, seed=1)
    b = GalaxyBatches(path, batch_size=16, seed=1)
    c = GalaxyBatches(path, batch_size=16, seed=2)
    e0 = a.ids_in_order()
    a.on_epoch_end()
    e1 = a.ids_in_order()
    assert not np.array_equal(e0, e1)
    assert np.array_equal(np.sort(e0), np.sort(e1))
    b.set_epoch(1)
    assert np.array_equal(b.ids_in_order(), e1)  # same (seed, epoch), another object
    np.testing.assert_array_equal(b[3][0], a[3][0])
    b.set_epoch(0)
    assert np.array_equal(b.ids_in_order(), e0)
    assert not np.array_equal(c.ids_in_order(), e0)
    # Shuffled beyond the block level: a batch is not just runs of consecutive ids...
    assert np.any(np.abs(np.diff(a.batch_ids(0))) != 1)
    # ...and by default a batch gathers several blocks, so epochs group galaxies differently.
    assert a.block_images < a.batch_size
    groups_1 = {frozenset(a.batch_ids(i).tolist()) for i in range(len(a))}
    groups_0 = {frozenset(b.batch_ids(i).tolist()) for i in range(len(b))}
    assert len(groups_0 & groups_1) < len(a) // 2


def test_reads_are_contiguous_slices_only(make_galaxy_file, monkeypatch):
    path = make_galaxy_file(n=160, size=8, chunk_images=8)
    rows = np.flatnonzero(np.random.default_rng(0).random(160) < 0.8)
    keys = []
    original = h5py.Dataset.__getitem__

    def spy(self, key, *args, **kwargs):
        keys.append((self.name, key))
        return original(self, key, *args, **kwargs)

    ds = GalaxyBatches(path, rows, batch_size=16, block_images=8, view=DihedralView(8))
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    one_epoch(ds)
    image_keys = [k for name, k in keys if name == "/images"]
    assert image_keys and len(keys) == 2 * len(image_keys)  # images and labels read alike
    for key in image_keys:
        assert isinstance(key, slice) and key.step in (None, 1), key
    # A batch of 16 touches at most 3 blocks of 8: few reads, and about one pass over the data.
    assert len(image_keys) <= 3 * len(ds)
    read = sum(k.stop - k.start for k in image_keys)
    assert len(rows) <= read <= rows[-1] - rows[0] + 1 + 2 * len(ds) * 8


def test_handle_is_opened_per_process(make_galaxy_file, monkeypatch):
    path = make_galaxy_file(n=40, size=8)
    ds = GalaxyBatches(path, batch_size=8, shuffle=False)
    first = ds[0]
    handle = ds._file.get()
    assert handle.is_open
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 100_000)
    second = ds[0]
    assert ds._file.get() is not handle and ds._file.get().is_open
    assert handle.is_open  # the "parent's" handle is left alone
    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[1], first[1])
    monkeypatch.undo()
    ds.close()


def _fork_batch(args):
    ds, index = args
    x, y = ds[index]
    return os.getpid(), x, y, ds.batch_ids(index)


def test_forked_workers_read_the_same_batches(make_galaxy_file):
    path = make_galaxy_file(n=96, size=8, chunk_images=8)
    ds = GalaxyBatches(path, batch_size=16, view=DihedralView(8), seed=3)
    ds.set_epoch(2)
    expected = one_epoch(ds)  # opens the file and runs the parallel kernels before the fork
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        # A worker that dies (e.g. OpenMP used after fork) would hang a plain map.
        results = pool.map_async(_fork_batch, [(ds, i) for i in range(len(ds))], chunksize=1).get(timeout=60)
    assert {pid for pid, *_ in results} - {os.getpid()}
    for (pid, x, y, ids), (ex, ey) in zip(results, expected):
        assert pid != os.getpid()
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert np.array_equal(np.sort(np.concatenate([r[3] for r in results])), np.sort(ds.ids_in_order()))


def test_pickles_without_the_handle(make_galaxy_file):
    path = make_galaxy_file(n=50, size=8)
    ds = GalaxyBatches(path, batch_size=8, view=DihedralView(8), seed=9)
    ds.set_epoch(3)
    x, y = ds[2]
    assert ds._file._value is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file._value is None and ds._file._value is not None
    assert clone.epoch == 3 and clone.workers == ds.workers
    cx, cy = clone[2]
    np.testing.assert_array_equal(cx, x)
    np.testing.assert_array_equal(cy, y)


def test_labels(make_galaxy_file):
    unlabelled = make_galaxy_file(n=20, size=8, labels=False, name="test.h5")
    with pytest.raises(InputError, match="has no labels"):
        GalaxyBatches(unlabelled)
    x = GalaxyBatches(unlabelled, batch_size=8, labels=False)[0]
    assert isinstance(x, np.ndarray) and x.shape == (8, 8, 8, 3)
    labelled = make_galaxy_file(n=20, size=8)
    assert isinstance(GalaxyBatches(labelled, labels=False, batch_size=8)[0], np.ndarray)
    x, y = GalaxyBatches(labelled, batch_size=8)[0]
    assert y.shape == (8, 37)


def test_keras_settings_reach_the_base_class(make_galaxy_file):
    path = make_galaxy_file(n=20, size=8)
    ds = GalaxyBatches(path, workers=3, use_multiprocessing=True, max_queue_size=4)
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (3, True, 4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(view=CentreView(9)), "the view is 9 pixels"),
    (dict(seed=-1), "seed"),
    (dict(block_images=0), "block_images"),
    (dict(rows=np.array([0, 20])), "rows"),
    (dict(rows=np.array([1, 1])), "repeat"),
    (dict(rows=np.array([], dtype=np.int64)), "no rows"),
    (dict(rows=np.array([0.5])), "rows"),
])
def test_bad_arguments(make_galaxy_file, kwargs, match):
    path = make_galaxy_file(n=20, size=8)
    with pytest.raises(ValueError, match=match):
        GalaxyBatches(path, **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        GalaxyBatches(tmp_path / "absent.h5")


def test_index_out_of_range(make_galaxy_file):
    ds = GalaxyBatches(make_galaxy_file(n=20, size=8), batch_size=8)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-1]


FIT_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    from pathlib import Path
    import numpy as np
    import keras
    from galaxytrain.data import DihedralView, GalaxyBatches

    path, log = sys.argv[1], Path(sys.argv[2])

    class Logged(GalaxyBatches):
        def __getitem__(self, index):
            batch = super().__getitem__(index)
            np.save(log / f"{os.getpid()}_{self.epoch}_{index}.npy", self.batch_ids(index))
            return batch

    rows = np.arange(100)
    train = Logged(path, rows[:80], batch_size=16, block_images=8, view=DihedralView(8), seed=1,
                   workers=2, use_multiprocessing=True)
    val = GalaxyBatches(path, rows[80:], batch_size=16, shuffle=False, workers=2, use_multiprocessing=True)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(37)])
    model.compile("adam", "mse")
    pin_epoch = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: train.set_epoch(epoch))
    history = model.fit(train, validation_data=val, epochs=2, verbose=0, callbacks=[pin_epoch])
    print("MAIN_PID", os.getpid(), "EPOCHS", len(history.history["loss"]), "VAL", len(history.history["val_loss"]))
""")


@pytest.mark.slow
def test_keras_fit_with_worker_processes_sees_every_sample(make_galaxy_file, tmp_path):
    path = make_galaxy_file(n=100, size=8, chunk_images=8)
    _, ids, _, _, _ = stored(path)
    log = tmp_path / "batches"
    log.mkdir()
    script = tmp_path / "fit_workers.py"
    script.write_text(FIT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its worker pool
        out, err = proc.communicate()
        pytest.fail(f"model.fit with workers=2, use_multiprocessing=True hung; batches logged: "
                    f"{sorted(p.name for p in log.iterdir())}\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    words = out.split()
    main_pid = words[words.index("MAIN_PID") + 1]
    assert words[words.index("EPOCHS") + 1] == "2" and words[words.index("VAL") + 1] == "2"
    # Batches computed in worker processes, by epoch (the main process only
    # peeks at a few batches to learn the output signature).
    seen: dict[int, dict[int, np.ndarray]] = {0: {}, 1: {}}
    worker_pids = set()
    for p in log.iterdir():
        pid, epoch, index = p.stem.split("_")
        if pid == main_pid:
            continue
        worker_pids.add(pid)
        assert int(index) not in seen[int(epoch)], f"batch {index} of epoch {epoch} computed twice"
        seen[int(epoch)][int(index)] = np.load(p)
    assert len(worker_pids) >= 2
    for epoch, batches in seen.items():
        assert sorted(batches) == list(range(5)), f"epoch {epoch}: batches {sorted(batches)}"
        assert np.array_equal(np.sort(np.concatenate(list(batches.values()))), ids[:80])
    assert any(not np.array_equal(seen[0][i], seen[1][i]) for i in range(5))  # reshuffled in the workers
