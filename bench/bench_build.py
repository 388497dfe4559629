"""The bars of `galaxyprep build` (issues 2 and 13), measured in one run.

1. Build throughput >= 1.3 x the full-frame decode limit: reading and
   decoding alone (simplejpeg, whole frames at the same DCT scale, all
   cores) over the same files, the faster of threads and forked processes;
   and >= 0.85 x the window decoder's own limit (reading and decoding only
   the centre window alone). The VM's speed drifts by several percent from
   minute to minute, so the bench alternates limits, build, limits, build,
   ..., limits (--passes builds), compares each build with the mean of the
   limits just before and after it, and reports every ratio and their mean.
   A build with the full-frame decoder (--no-crop-decode) runs beside, for
   information.
2. Build throughput >= 4 x the naive pipeline (Pillow, one process: open,
   convert to RGB, crop 200, bilinear resize to 96, float32 array). That is
   the student project's plain Pillow (ANCHORS.md's "naive pipeline" row), run
   from a throwaway venv in bench/out; the same pipeline on the Pillow-SIMD
   this project installs is printed beside it.
3. Flat memory: peak resident memory of a build of 5,866 and of 46,928 images
   (the real images repeated 8 times under new IDs) differs by < 50 MB,
   counting the build process and each of its decode workers.

    python bench/bench_build.py [--copies 8] [--passes 3] [--crop 200 --size 96]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, machine, repeated_images, warm_page_cache  # noqa: E402


def _decode_files(chunk: list[Path], min_side: int, shape: tuple[int, int, int]) -> None:
    import simplejpeg

    from galaxyprep.sources import read_file  # the build's own way of reading a file

    buf = np.empty(shape, np.uint8)
    for p in chunk:
        simplejpeg.decode_jpeg(read_file(str(p)), min_height=min_side, min_width=min_side, buffer=buf)


def _decode_windows(chunk: list[Path], window_args: tuple) -> None:
    from galaxyprep import _cropdecode
    from galaxyprep.sources import read_file

    buf = np.empty(window_args[-2:] + (3,), np.uint8)
    for p in chunk:
        _cropdecode.decode_window(read_file(str(p)), *window_args, buf)


def decode_limit(files: list[Path], crop: int, size: int, workers: int, processes: bool = False,
                 window: bool = False) -> float:
    """Images/s of read + DCT-scaled decode alone on `workers` threads, or forked processes.

    `window`: the window decoder on the centre window alone; else simplejpeg
    on whole frames. The process pool is started before the clock: the limit
    pays no start-up.
    """
    from galaxyprep.decode import make_plan

    plan = make_plan(424, 424, crop, size, window=window)
    chunks = [files[i: i + 64] for i in range(0, len(files), 64)]
    if window:
        work, args = _decode_windows, ((plan.scale_num, plan.scaled_height, plan.scaled_width) + plan.window,)
    else:
        work, args = _decode_files, (plan.min_side, (plan.scaled_height, plan.scaled_width, 3))
    if processes:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.starmap(work, [(chunks[0][:2],) + args] * workers)  # started and warm
            t = time.perf_counter()
            pool.starmap(work, [(c,) + args for c in chunks], chunksize=1)
            return len(files) / (time.perf_counter() - t)
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: work(c, *args), chunks))
    return len(files) / (time.perf_counter() - t)


NAIVE = """
import sys, time, numpy as np, PIL
from PIL import Image
crop, size = int(sys.argv[1]), int(sys.argv[2])
files = [line.strip() for line in sys.stdin if line.strip()]
t = time.perf_counter()
for p in files:
    with Image.open(p) as img:
        img = img.convert("RGB")
        w, h = img.size
        left, top = (w - crop) // 2, (h - crop) // 2
        img = img.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BILINEAR)
        np.asarray(img, dtype=np.float32) / 255.0
print(len(files) / (time.perf_counter() - t), PIL.__version__)
"""


def plain_pillow_python() -> str:
    """An interpreter with plain Pillow (the student project's), in a throwaway venv under bench/out."""
    venv = OUT / "plain-pillow-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pillow", "numpy"], check=True)
    return str(py)


def naive(python: str, files: list[Path], crop: int, size: int) -> tuple[float, str]:
    """Images/s of the naive pipeline (Pillow, one process) under `python`, and its PIL version."""
    proc = subprocess.run([python, "-c", NAIVE, str(crop), str(size)], input="\n".join(map(str, files)),
                          capture_output=True, text=True, check=True)
    rate, version = proc.stdout.split()
    return float(rate), version


def build_in_child(folder: Path, out: Path, crop: int, size: int, limit: int | None, processes: bool = True,
                   crop_decode: bool = True) -> dict:
    """Run one build in a fresh process; it reports its images/s and peak RSS (its own, its workers').

    The system is made quiet first and the output deleted after: left on disk, a 1.3 GB file is
    written back by the kernel's flusher threads 30 s later, on the CPUs of whatever runs then
    (measured once: the second and third builds 15% and 6% slower than the first), and
    replacing it would time the kernel dropping its pages.
    """
    out.unlink(missing_ok=True)
    os.sync()
    code = f"""
import json, resource, time
from pathlib import Path
from galaxyprep.build import BuildConfig, build
s = build(BuildConfig(images=Path({str(folder)!r}), out=Path({str(out)!r}), crop={crop}, size={size}, limit={limit!r},
                      processes={processes!r}, crop_decode={crop_decode!r}))
print(json.dumps({{"decoder": s.decoder, "n": s.n_written, "seconds": s.seconds, "rate": s.images_per_second,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--crop", type=int, default=200)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--naive-n", type=int, default=3000, help="images timed for the (slow) naive pipeline")
    ap.add_argument("--passes", type=int, default=3,
                    help="full builds, each between two decode-limit measurements (the VM's speed drifts)")
    args = ap.parse_args()
    workers = os.cpu_count() or 1
    folder = repeated_images(args.copies)
    files = sorted(folder.iterdir())
    n_real = len(files) // args.copies
    print(machine())
    print(f"input: {len(files):,} JPEGs ({args.copies} x {n_real:,} real images), crop {args.crop} -> {args.size}")
    warm_page_cache(folder)
    build_in_child(folder, OUT / "warmup.h5", args.crop, args.size, 512)  # numba cache, imports

    def limit_now(window: bool) -> tuple[float, float]:
        return (decode_limit(files, args.crop, args.size, workers, window=window),
                decode_limit(files, args.crop, args.size, workers, processes=True, window=window))

    # limits, build, limits, build, ..., limits: each build is compared with the limits measured
    # just before and just after it, the faster of threads and processes each time.
    limits, windows = [limit_now(False)], [limit_now(True)]
    fulls = []
    for _ in range(args.passes):
        fulls.append(build_in_child(folder, OUT / "full.h5", args.crop, args.size, None))
        limits.append(limit_now(False))
        windows.append(limit_now(True))
    around = [(max(limits[k]) + max(limits[k + 1])) / 2 for k in range(args.passes)]
    around_w = [(max(windows[k]) + max(windows[k + 1])) / 2 for k in range(args.passes)]
    ratios = [f["rate"] / lim for f, lim in zip(fulls, around)]
    ratios_w = [f["rate"] / lim for f, lim in zip(fulls, around_w)]
    full = fulls[-1]
    frames = build_in_child(folder, OUT / "frames.h5", args.crop, args.size, None, crop_decode=False)
    threads = build_in_child(folder, OUT / "threads.h5", args.crop, args.size, None, processes=False)
    small = build_in_child(folder, OUT / "small.h5", args.crop, args.size, n_real)
    slow, plain_version = naive(plain_pillow_python(), files[: args.naive_n], args.crop, args.size)
    simd, simd_version = naive(sys.executable, files[: args.naive_n], args.crop, args.size)
    limit_t = [t for t, _ in limits]
    limit_p = [p for _, p in limits]
    rates = [f["rate"] for f in fulls]
    window_t = [t for t, _ in windows]
    window_p = [p for _, p in windows]
    rows = [
        ("full-frame decode limit, %d threads" % workers, f"{np.mean(limit_t):,.0f} images/s",
         "(passes: %s)" % ", ".join(f"{v:,.0f}" for v in limit_t)),
        ("full-frame decode limit, %d forked processes" % workers, f"{np.mean(limit_p):,.0f} images/s",
         "(passes: %s)" % ", ".join(f"{v:,.0f}" for v in limit_p)),
        ("window decode limit, %d threads" % workers, f"{np.mean(window_t):,.0f} images/s",
         "(passes: %s)" % ", ".join(f"{v:,.0f}" for v in window_t)),
        ("window decode limit, %d forked processes" % workers, f"{np.mean(window_p):,.0f} images/s",
         "(passes: %s)" % ", ".join(f"{v:,.0f}" for v in window_p)),
        ("galaxyprep build, %s images" % f"{full['n']:,}", f"{np.mean(rates):,.0f} images/s",
         "(passes: %s; %d worker processes)" % (", ".join(f"{v:,.0f}" for v in rates), workers)),
        ("galaxyprep build --no-crop-decode (full frames)", f"{frames['rate']:,.0f} images/s", "(for information)"),
        ("galaxyprep build, threads instead of processes", f"{threads['rate']:,.0f} images/s", "(for information)"),
        (f"naive pipeline, Pillow {plain_version}, one process", f"{slow:,.0f} images/s", f"over {args.naive_n:,} images"),
        (f"naive pipeline, Pillow-SIMD {simd_version}, one process", f"{simd:,.0f} images/s", "(for information)"),
        ("peak RSS, build of %s images" % f"{small['n']:,}", f"{small['peak_rss_mb']:,.0f} MB",
         f"+ {small['peak_worker_rss_mb']:,.0f} MB per worker"),
        ("peak RSS, build of %s images" % f"{full['n']:,}", f"{full['peak_rss_mb']:,.0f} MB",
         f"+ {full['peak_worker_rss_mb']:,.0f} MB per worker"),
    ]
    for name, value, note in rows:
        print(f"  {name:<55} {value:>16}  {note}")
    ratio_limit = float(np.mean(ratios))
    ratio_naive = float(np.mean(rates)) / slow
    # Parent and every worker (a worker's pages are mostly shared with the parent: counted twice here).
    total = {k: r["peak_rss_mb"] + workers * r["peak_worker_rss_mb"] for k, r in (("small", small), ("full", full))}
    rss_diff = total["full"] - total["small"]
    ratio_window = float(np.mean(ratios_w))
    print(f"decoder: {full['decoder']}")
    print(f"build / full-frame decode limit = {ratio_limit:.3f}, mean of {args.passes} passes: "
          f"{', '.join(f'{r:.3f}' for r in ratios)} (bar >= 1.3) {'PASS' if ratio_limit >= 1.3 else 'FAIL'}")
    print(f"build / window decode limit     = {ratio_window:.3f}, mean of {args.passes} passes: "
          f"{', '.join(f'{r:.3f}' for r in ratios_w)} (bar >= 0.85) {'PASS' if ratio_window >= 0.85 else 'FAIL'}")
    print(f"build / naive        = {ratio_naive:.1f} (bar >= 4) {'PASS' if ratio_naive >= 4 else 'FAIL'}")
    print(f"build / naive (SIMD) = {np.mean(rates) / simd:.1f} (no bar: the same pipeline on the installed Pillow-SIMD)")
    print(f"peak RSS difference  = {rss_diff:+.0f} MB, parent + {workers} workers (bar < 50 MB) "
          f"{'PASS' if abs(rss_diff) < 50 else 'FAIL'}")


if __name__ == "__main__":
    main()
