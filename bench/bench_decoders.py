"""Which JPEG decoder galaxyprep uses, by measurement.

Times, over the same real JPEGs read from memory: one core, ms per image; and
all cores with threads, images per second. Decoders: simplejpeg (full, and at
the DCT scale galaxyprep picks for crop -> size), Pillow (the installed
Pillow-SIMD: full, and with `draft` to the same scale), and OpenCV's reduced
decode if it is installed.

    python bench/bench_decoders.py [--n 2000] [--crop 200 --size 96]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_GZ, machine  # noqa: E402


def decoders(crop: int, size: int) -> dict:
    import simplejpeg
    from PIL import Image

    from galaxyprep.decode import make_plan

    plan = make_plan(424, 424, crop, size)
    side = plan.min_side
    found = {
        "simplejpeg, full 424": lambda d: simplejpeg.decode_jpeg(d),
        f"simplejpeg, DCT-scaled to {plan.scaled_height}": lambda d: simplejpeg.decode_jpeg(d, min_height=side, min_width=side),
    }

    from galaxyprep.decode import window_decoder_available

    if window_decoder_available():
        from galaxyprep import _cropdecode

        window = make_plan(424, 424, crop, size, window=True)
        buf = np.empty(window.buffer_shape, np.uint8)
        args = (window.scale_num, window.scaled_height, window.scaled_width) + window.window
        found[f"galaxyprep window decoder, {window.window[2]}x{window.window[3]} of {window.scaled_height}"] = (
            lambda d: _cropdecode.decode_window(d, *args, np.empty_like(buf)))

    def pil_full(d):
        with Image.open(io.BytesIO(d)) as im:
            return np.asarray(im.convert("RGB"))

    def pil_draft(d):
        with Image.open(io.BytesIO(d)) as im:
            im.draft("RGB", (side, side))
            return np.asarray(im.convert("RGB"))

    import PIL

    found[f"Pillow {PIL.__version__}, full 424"] = pil_full
    found[f"Pillow {PIL.__version__}, draft to {plan.scaled_height}"] = pil_draft
    try:
        import cv2

        def cv_reduced(d):
            return cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)

        found[f"OpenCV {cv2.__version__}, IMREAD_REDUCED_COLOR_2"] = cv_reduced
    except ImportError:
        pass
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--crop", type=int, default=200)
    ap.add_argument("--size", type=int, default=96)
    args = ap.parse_args()
    files = sorted((SHARED_GZ / "images").glob("*.jpg"))[: args.n]
    if not files:
        raise SystemExit(f"needs the real images in {SHARED_GZ / 'images'}")
    data = [p.read_bytes() for p in files]
    workers = os.cpu_count() or 1
    print(machine())
    print(f"{len(data):,} real JPEGs from memory; threads: {workers}")
    results = {}
    for name, fn in decoders(args.crop, args.size).items():
        fn(data[0])
        t = time.perf_counter()
        for d in data:
            fn(d)
        one = (time.perf_counter() - t) / len(data) * 1e3
        chunks = [data[i: i + 64] for i in range(0, len(data), 64)]
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda c: [fn(d) for d in c], chunks))
        threaded = len(data) / (time.perf_counter() - t)
        results[name] = (one, threaded)
        print(f"  {name:<45} {one:6.3f} ms/image on one core   {threaded:7,.0f} images/s on {workers} threads")
    best = max(results, key=lambda k: results[k][1])
    print(f"fastest with threads: {best}")


if __name__ == "__main__":
    main()
