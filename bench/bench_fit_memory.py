"""Issue 3's flat-host-memory bar: one epoch of `galaxytrain fit` on 5,866 and
on 46,928 images (the real ones repeated 8 times under new IDs); the peak
resident memory of the two runs must differ by less than 200 MB.

Each fit runs in a fresh process that reports its own peak RSS.

    python bench/bench_fit_memory.py [--copies 8] [--size 96] [--model vgg6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, SHARED_GZ, build_file, machine, repeated_images, repeated_labels  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from galaxytrain.config import FitConfig
from galaxytrain.training import fit
data, out, model, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
result = fit(FitConfig(data=Path(data), out=Path(out), model=model, epochs=1, batch_size=64, overwrite=True,
                       val_fraction=0.1, verbose=0), log=lambda line: None)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(data: Path, model: str, size: int) -> dict:
    out = OUT / f"fit_{data.stem}"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(data), str(out), model, str(size)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--model", default="vgg6")
    args = ap.parse_args()
    small = build_file(SHARED_GZ / "images", OUT / f"real_{args.size}.h5", SHARED_GZ / "training_solutions_rev1.csv",
                       size=args.size)
    big = build_file(repeated_images(args.copies), OUT / f"real_x{args.copies}_{args.size}.h5",
                     repeated_labels(args.copies), size=args.size)
    print(machine())
    results = {}
    for name, path in (("small", small), ("big", big)):
        from galaxyprep import read_info

        n = read_info(path).n_images
        results[name] = r = run(path, args.model, args.size)
        print(f"  one epoch of {args.model} on {n:,} images ({path.stat().st_size / 1e9:.2f} GB file): "
              f"{r['seconds']:,.0f} s, peak RSS {r['peak_rss_mb']:,.0f} MB")
    diff = results["big"]["peak_rss_mb"] - results["small"]["peak_rss_mb"]
    print(f"peak RSS difference = {diff:+.0f} MB (bar < 200 MB) {'PASS' if abs(diff) < 200 else 'FAIL'}")


if __name__ == "__main__":
    main()
