"""Helpers shared by the bench scripts: where data is, machine description, the repeated set."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_GZ = Path(os.environ.get("GALAXY_SHARED_DATA", REPO.parent / "shared" / "data" / "gz"))
OUT = REPO / "bench" / "out"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, {date.today()}"


def repeated_images(copies: int) -> Path:
    """The real training JPEGs repeated `copies` times under new GalaxyIDs, as a test set (hard links)."""
    src = sorted((SHARED_GZ / "images").glob("*.jpg"))
    if not src:
        raise SystemExit(f"bench needs the real images in {SHARED_GZ / 'images'}")
    folder = OUT / f"images_x{copies}"
    expected = len(src) * copies
    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == expected:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for p in src:
            dst = folder / f"{k}{p.stem}.jpg"  # new GalaxyID: copy number prefixed
            if not dst.exists():
                try:
                    os.link(p, dst)
                except OSError:
                    dst.write_bytes(p.read_bytes())
    return folder


def warm_page_cache(folder: Path) -> None:
    """Read every file once so that no timed pass pays for the disk."""
    subprocess.run(["cat"] + [str(p) for p in sorted(folder.iterdir())[:1]], capture_output=True)
    for p in folder.iterdir():
        p.read_bytes()
