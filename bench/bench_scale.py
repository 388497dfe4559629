"""Issue 12's scaling bench, each part measured in one run against its baseline.

``--part build``: `galaxyprep build --scheduler` (shards on a Dask cluster of this machine's
cores) against a plain build of the same real images, alternated pass by pass: on a running
cluster of worker processes (what `--scheduler tcp://...` sees), consolidated, and with
`--scheduler local` starting its LocalCluster inside the timing (threads, its default; and
spawned worker processes). Then both kinds as commands, in fresh processes, where importing Dask
counts too. Then galaxytrain's loader reading the plain, the virtual and the consolidated file
(images per CPU second of its one process).

``--part fit``: `galaxytrain fit --strategy multi-worker` with two
worker processes on localhost against one, on the real images; the ratio of their training
images/s, measured in one run.

Both runs use the same per-replica batch (so the two workers take twice the images per step)
and read the mean speed of the chief's epochs after the first from its history.csv (the
first also traces the step function). On one 2-core machine two workers share the same cores, so the
ratio is expected below 1: it measures what the coordination (gRPC all-reduce of every
gradient, two TensorFlow runtimes on the same cores) costs, not a speed-up.

    python bench/bench_scale.py --part build [--copies 1] [--passes 3] [--workers 2] [--zipped]
    python bench/bench_scale.py --part fit [--size 64] [--limit 2048] [--epochs 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (OUT, REPO, SHARED_GZ, build_file, machine, repeated_images, repeated_labels,  # noqa: E402
                     warm_page_cache, zipped)

PARTS = ("build", "fit", "all")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def fit_workers(data: Path, n_workers: int, args) -> dict:
    """One `fit --strategy multi-worker` with `n_workers` local processes; the chief's epochs after the first."""
    out = OUT / f"scale_fit_{n_workers}w"
    hosts = [f"localhost:{p}" for p in _free_ports(n_workers)]
    procs = []
    t = time.perf_counter()
    for index in range(n_workers):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO),
               "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        cmd = [sys.executable, "-m", "galaxytrain", "fit", "--data", str(data), "--out", str(out), "--overwrite",
               "--strategy", "multi-worker", "--model", args.model, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--limit", str(args.limit), "--no-progress"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=args.timeout) for p in procs]
    seconds = time.perf_counter() - t
    for p, (stdout, stderr) in zip(procs, outputs):
        if p.returncode:
            raise SystemExit(f"a worker failed (exit {p.returncode}):\n{(stdout + stderr)[-3000:]}")
    prints = {o.strip().splitlines()[-1] for o, _ in outputs}
    if len(prints) != 1:
        raise SystemExit(f"the workers' fingerprints differ: {sorted(prints)}")
    from galaxytrain.run_dir import read_history_csv

    history = read_history_csv(out / "history.csv")
    timed = history[1:] or history  # the first epoch also traces the step function
    last = history[-1]
    record = json.loads((out / "config.json").read_text())["distribute"]
    return {"images_per_s": sum(r["images_per_s"] for r in timed) / len(timed),
            "epoch_s": sum(r["epoch_time_s"] for r in timed) / len(timed), "wall_s": seconds,
            "global_batch": record["global_batch"], "images_per_epoch": record["images_per_epoch"],
            "val_rmse": last.get("val_rmse"), "fingerprint": prints.pop().split(": ")[-1]}


def _timed_build(images: Path, labels: Path | None, out: Path, **extra) -> float:
    from galaxyprep import BuildConfig, build_galaxy_file

    t0 = time.perf_counter()
    build_galaxy_file(BuildConfig(images=images, labels=labels, out=out, overwrite=True, **extra))
    return time.perf_counter() - t0


def _timed_command(images: Path, labels: Path, out: Path, workers: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "galaxyprep", "build", "--images", str(images), "--labels", str(labels),
           "--out", str(out), "--overwrite", "--decode-workers", str(workers), "-q", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _loader_rate(path: Path, passes: int = 2) -> float:
    """Images per CPU second that galaxytrain's loader reads and normalizes from a file (one process).

    CPU time, not wall time: the loader is one thread here, and CPU time does
    not move with what else the VM is running.
    """
    from galaxytrain.data import GalaxyBatches

    batches = GalaxyBatches(path, batch_size=64, seed=0)
    n = 0
    t0 = time.process_time()
    for _ in range(passes):
        for k in range(len(batches)):
            n += len(batches[k][0])
    return n / (time.process_time() - t0)


def part_build(args) -> None:
    """Dask build (warm cluster, LocalCluster started by the build, consolidated) against a plain build."""
    import logging

    from distributed import LocalCluster

    copies, passes, workers = args.copies, args.passes, args.workers
    images = repeated_images(copies) if copies > 1 else SHARED_GZ / "images"
    labels = repeated_labels(copies) if copies > 1 else SHARED_GZ / "training_solutions_rev1.csv"
    warm_page_cache(images)
    n = sum(1 for _ in images.glob("*.jpg"))
    kind = "real JPEGs"
    if args.zipped:  # read from the archives, as Kaggle ships them
        images, labels = zipped(images, labels)
        images.read_bytes()
        kind = f"real JPEGs from {images.name}"
    work = OUT / "scale"
    work.mkdir(parents=True, exist_ok=True)
    plain, virtual, one = work / "plain.h5", work / "virtual.h5", work / "consolidated.h5"
    times: dict[str, list[float]] = {"plain": [], "cluster (running)": [], "cluster local (with start)": [],
                                     "local, worker processes": [], "cluster, consolidated": []}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        address = cluster.scheduler_address
        _timed_build(images, labels, virtual, scheduler=address, workers=workers)  # workers import, numba loads
        for _ in range(passes):  # alternated: the VM's speed drifts minute to minute
            times["plain"].append(_timed_build(images, labels, plain, workers=workers))
            times["cluster (running)"].append(_timed_build(images, labels, virtual, scheduler=address))
            times["cluster, consolidated"].append(_timed_build(images, labels, one, scheduler=address,
                                                               consolidate=True))
    for _ in range(passes):  # no other cluster running: as a user's --scheduler local (threads; or processes)
        times["cluster local (with start)"].append(
            _timed_build(images, labels, virtual, scheduler="local", workers=workers))
        times["plain"].append(_timed_build(images, labels, plain, workers=workers))
        times["local, worker processes"].append(
            _timed_build(images, labels, virtual, scheduler="local", workers=workers, processes=True))
    print(f"\nbuild of {n:,} {kind} (crop 200 -> 96, {workers} workers), best of each:")
    base = n / min(times["plain"])
    for name, ts in times.items():
        rate = n / min(ts)
        print(f"  {name:<28} {rate:8,.0f} images/s  {rate / base:5.2f} x plain   "
              f"(each: {', '.join(f'{t:.2f}' for t in ts)} s)")
    cli = {"plain": [], "--scheduler local": []}
    for _ in range(passes):  # fresh processes: Python's start, the imports (Dask's too) and the exit count
        for name, extra in (("plain", []), ("--scheduler local", ["--scheduler", "local"])):
            cli[name].append(_timed_command(images, labels, plain if name == "plain" else virtual, workers, extra))
    print(f"the same builds as commands (wall time of `galaxyprep build`, best of {passes}):")
    for name, ts in cli.items():
        print(f"  {name:<28} {min(ts):8.2f} s  {min(cli['plain']) / min(ts):5.2f} x plain   "
              f"(each: {', '.join(f'{t:.2f}' for t in ts)} s)")
    files = (("plain", plain), ("virtual", virtual), ("consolidated", one))
    rates = {name: max(_loader_rate(path) for _ in range(passes)) for name, path in files}
    print("galaxytrain loader (GalaxyBatches, batch 64, normalized, one process, per CPU second):")
    for name, rate in rates.items():
        print(f"  {name:<14} {rate:9,.0f} images/s  {rate / rates['plain']:5.2f} x plain")


def part_fit(args) -> None:
    data = build_file(SHARED_GZ / "images", OUT / f"real_{args.size}.h5", SHARED_GZ / "training_solutions_rev1.csv",
                      size=args.size)
    print(f"fit: {args.model}, {args.limit} images of {data.name}, {args.epochs} epochs, batch {args.batch_size} "
          "per replica; mean speed of the epochs after the first")
    results = {}
    for n in (1, 2):
        results[n] = r = fit_workers(data, n, args)
        print(f"  {n} worker(s): {r['images_per_s']:,.0f} images/s ({r['images_per_epoch']} images per epoch in "
              f"{r['epoch_s']:.1f} s, global batch {r['global_batch']}); whole run {r['wall_s']:.0f} s; "
              f"val RMSE {r['val_rmse']:.4f}; fingerprint {r['fingerprint']}")
    ratio = results[2]["images_per_s"] / results[1]["images_per_s"]
    print(f"images/s 2 workers / 1 worker = {ratio:.2f} (one machine, {os.cpu_count()} cores: below 1 is the "
          "coordination cost, not a result about several machines)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=PARTS, default="all", help="which measurement")
    ap.add_argument("--copies", type=int, default=1, help="build: the real images repeated this many times")
    ap.add_argument("--passes", type=int, default=3, help="build: alternated passes of each kind")
    ap.add_argument("--zipped", action="store_true", help="build: from the images and labels zipped (made once)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build: worker processes")
    ap.add_argument("--size", type=int, default=64, help="stored image size of the bench file")
    ap.add_argument("--limit", type=int, default=2048, help="images used (fit --limit)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32, help="per replica")
    ap.add_argument("--model", default="vgg6")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds before a hung worker fails the bench")
    args = ap.parse_args()
    print(machine())
    if args.part in ("build", "all"):
        part_build(args)
    if args.part in ("fit", "all"):
        part_fit(args)


if __name__ == "__main__":
    main()
