"""The synthetic data set on disk, in the layout of the Kaggle Galaxy Zoo challenge.

Two JPEG folders named by GalaxyID and the training labels CSV, with the
real files' JPEG settings, so that everything downstream reads it as it
reads the real data.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np
import simplejpeg

from ..atomic import write_text_atomic
from ..errors import InputError
from ..tree import CLASS_NAMES
from .streams import TEST, TRAIN, check_arguments, galaxy_ids, plan, render_range

TRAIN_FOLDER = "images_training_rev1"
TEST_FOLDER = "images_test_rev1"
LABELS_CSV = "training_solutions_rev1.csv"

_JPEG_QUALITY = 75  # the real images use the libjpeg quality-75 tables, 4:2:0
_BATCH = 64


@dataclass(frozen=True)
class SynthResult:
    """What `synthesize` wrote, and how long it took."""

    out_dir: Path
    n_train: int
    n_test: int
    train_images: Path
    test_images: Path | None
    labels_csv: Path
    seconds: float


def _write_csv(path: Path, ids: np.ndarray, labels: np.ndarray) -> None:
    """Kaggle solution CSV, rows by GalaxyID; written under a temporary name, then renamed."""
    order = np.argsort(ids, kind="stable")
    lines = ["GalaxyID," + ",".join(CLASS_NAMES)]
    for i in order:
        lines.append(f"{ids[i]}," + ",".join(f"{v:.6f}" for v in labels[i]))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _prepare_folders(out: Path, overwrite: bool) -> None:
    """Refuses to mix a new set with old images; with overwrite, removes them (and the CSV) first."""
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "is a file, not a folder")
    for folder in (out / TRAIN_FOLDER, out / TEST_FOLDER):
        if folder.exists() and not folder.is_dir():
            raise InputError(str(folder), "is a file, not a folder")
        old = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if old and not overwrite:
            raise InputError(str(folder), f"already holds {len(old)} images; choose a new folder or overwrite")
        for f in old:
            f.unlink()
    csv_path = out / LABELS_CSV
    if csv_path.exists() and overwrite:
        csv_path.unlink()


def synthesize(out_dir: str | Path, n: int, *, n_test: int = 0, seed: int = 0, size: int = 424,
               workers: int | None = None, progress: Callable[[int], None] | None = None,
               overwrite: bool = False) -> SynthResult:
    """Write a synthetic data set in the Kaggle layout under out_dir; the same arguments give the same bytes.

    n training images with labels, n_test test images without. The training
    set does not depend on n_test, and a smaller n gives a subset of a larger
    one. The CSV is written last (under a temporary name, then renamed), so a
    folder with the CSV is complete. A folder that already holds images is
    refused unless overwrite=True, which first removes the *.jpg files in the
    two image folders and the old CSV, so no stale image survives.
    """
    check_arguments(n, n_test, seed, size)
    start_time = time.perf_counter()
    out = Path(out_dir)
    _prepare_folders(out, overwrite)
    train_dir = out / TRAIN_FOLDER
    test_dir = out / TEST_FOLDER
    train_dir.mkdir(parents=True, exist_ok=True)
    if n_test > 0:
        test_dir.mkdir(parents=True, exist_ok=True)

    train_ids, test_ids = galaxy_ids(seed, n, n_test)
    train_truth, labels, train_params = plan(seed, TRAIN, n, size)
    parts = [(TRAIN, train_truth, train_params, train_ids, train_dir)]
    if n_test > 0:
        test_truth, _, test_params = plan(seed, TEST, n_test, size)
        parts.append((TEST, test_truth, test_params, test_ids, test_dir))
    threads = max(1, workers if workers is not None else (os.cpu_count() or 1))
    old_threads = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _render_and_write(parts, seed, size, threads, progress)
    finally:
        numba.set_num_threads(old_threads)
    _write_csv(out / LABELS_CSV, train_ids, labels)
    return SynthResult(out, n, n_test, train_dir, test_dir if n_test > 0 else None, out / LABELS_CSV,
                       time.perf_counter() - start_time)


def _render_and_write(parts: list, seed: int, size: int, threads: int,
                      progress: Callable[[int], None] | None) -> None:
    """Renders batch after batch while a thread pool encodes and writes the previous one."""

    def encode_and_write(image: np.ndarray, path: Path) -> None:
        path.write_bytes(simplejpeg.encode_jpeg(image, quality=_JPEG_QUALITY, colorspace="RGB",
                                                colorsubsampling="420"))

    done = 0
    with ThreadPoolExecutor(threads) as pool:
        pending: list = []  # the previous batch encodes while the next one renders
        for part, truth, params, ids, folder in parts:
            for start in range(0, len(ids), _BATCH):
                stop = min(start + _BATCH, len(ids))
                images = render_range(truth, params, seed, part, start, stop, size)
                done = _wait(pending, done, progress)
                pending = [pool.submit(encode_and_write, images[k], folder / f"{ids[start + k]}.jpg")
                           for k in range(stop - start)]
        _wait(pending, done, progress)


def _wait(pending: list, done: int, progress: Callable[[int], None] | None) -> int:
    """Waits for a batch's writes (raising what they raised) and reports them: images count once on disk."""
    for future in pending:
        future.result()
    if pending:
        done += len(pending)
        if progress is not None:
            progress(done)
    return done
