"""Fuzz `galaxyprep build` with mutated real JPEGs: no crash, no hang, no traceback, every bad image one line.

Usage: python bench/fuzz_jpeg.py --n 3000 [--seconds 600]

Mutants of the real Kaggle images (../shared/data/gz, or synthetic galaxies
without it): random bit flips, truncations, bytes spliced from another
image's header, zeroed runs, a header claiming a huge size. Each batch of
mutants is built in a subprocess with a time limit; the build must exit 0
(bad images skipped and listed) or 1 with one `error:` line, never crash,
hang or print a traceback, and a file it writes must read back.
tests/test_faults.py runs it on a few hundred mutants.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED_GZ = HERE.parent.parent / "shared" / "data" / "gz"


def seeds(n: int) -> list[bytes]:
    """Real JPEGs where ../shared has them, synthetic ones otherwise."""
    real = sorted((SHARED_GZ / "images").glob("*.jpg"))[:n]
    if real:
        return [p.read_bytes() for p in real]
    from galaxyprep.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        out = synthesize(Path(tmp) / "s", n, seed=11)
        return [p.read_bytes() for p in sorted(out.train_images.glob("*.jpg"))]


def mutate(data: bytes, rng: np.random.Generator, others: list[bytes]) -> bytes:
    """One mutant: the kinds of damage a download or a disk does, and a hostile header."""
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # bit flips anywhere
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncated
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 2:  # bit flips in the header only
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, min(len(b), 700)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 3:  # another image's header spliced in
        other = others[int(rng.integers(0, len(others)))]
        cut = int(rng.integers(2, min(len(other), 700)))
        b = bytearray(other[:cut]) + b[cut:]
    elif kind == 4:  # a zeroed run
        i = int(rng.integers(0, len(b)))
        b[i: i + int(rng.integers(1, 400))] = bytes(min(len(b) - i, 400))
    else:  # a frame header claiming a huge size
        sof = max(b.find(b"\xff\xc0"), b.find(b"\xff\xc2"))
        if sof > 0:
            size = int(rng.integers(4096, 65536)).to_bytes(2, "big")
            b[sof + 5: sof + 9] = size + size
    return bytes(b)


def run(n: int, seconds: float, batch: int = 200, seed: int = 0, log=print) -> dict:
    """Build `n` mutants in batches; returns counts; raises AssertionError on any failure."""
    rng = np.random.default_rng(seed)
    originals = seeds(64)
    t0 = time.perf_counter()
    counts = {"mutants": 0, "builds": 0, "skipped": 0, "refused": 0}
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        while counts["mutants"] < n and time.perf_counter() - t0 < seconds:
            folder = Path(tmp) / f"b{k}"
            folder.mkdir()
            m = min(batch, n - counts["mutants"])
            for j in range(m):
                data = originals[j % len(originals)] if j < 8 else mutate(originals[j % len(originals)], rng, originals)
                (folder / f"{100000 + j}.jpg").write_bytes(data)
            out = Path(tmp) / f"b{k}.h5"
            proc = subprocess.run([sys.executable, "-m", "galaxyprep", "build", "--images", str(folder), "--crop", "200",
                                   "--size", "32", "--out", str(out), "--workers", "2", "-q"],
                                  capture_output=True, text=True, timeout=300)
            text = proc.stdout + proc.stderr
            assert "Traceback" not in text, text[-3000:]
            assert proc.returncode in (0, 1), f"exit {proc.returncode}: {text[-2000:]}"
            if proc.returncode == 1:
                assert text.strip().splitlines()[-1].startswith("error: "), text[-2000:]
                counts["refused"] += 1
            else:
                from galaxyprep import read_info

                info = read_info(out)
                assert info.n_images + len(info.skipped) == m, (info.n_images, len(info.skipped), m)
                counts["skipped"] += len(info.skipped)
            counts["mutants"] += m
            counts["builds"] += 1
            k += 1
    counts["seconds"] = round(time.perf_counter() - t0, 1)
    log(f"{counts['mutants']} images ({counts['mutants'] - 8 * counts['builds']} mutants) in {counts['builds']} "
        f"builds, {counts['seconds']} s: no crash, hang or traceback; {counts['skipped']} images skipped with a "
        f"reason, {counts['refused']} builds refused with one line")
    return counts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="images in all (8 of each batch of 200 unmutated)")
    ap.add_argument("--seconds", type=float, default=600, help="stop starting batches after this long")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run(args.n, args.seconds, seed=args.seed)
