"""Helpers shared by the bench scripts: where data is, machine description, the repeated set."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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


def repeated_labels(copies: int) -> Path:
    """Labels for `repeated_images(copies)`: each copy keeps its original's label row."""
    out = OUT / f"labels_x{copies}.csv"
    if out.exists():
        return out
    lines = (SHARED_GZ / "training_solutions_rev1.csv").read_text().splitlines()
    body = [line.split(",", 1) for line in lines[1:] if line]
    rows = [lines[0]] + [f"{k}{gid},{rest}" for k in range(copies) for gid, rest in body]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(out)
    return out


def build_file(images: Path, out: Path, labels: Path | None = None, size: int = 96, crop: int = 200,
               limit: int | None = None, ids_file: Path | None = None) -> Path:
    """A galaxyprep file for a bench, built once and reused."""
    from galaxyprep.builder import BuildConfig, build

    if not out.exists():
        build(BuildConfig(images=images, out=out, labels=labels, size=size, crop=crop, limit=limit, ids_file=ids_file))
    return out


def zipped(folder: Path, labels: Path) -> tuple[Path, Path]:
    """`folder`'s JPEGs and the labels CSV as Kaggle ships them: each in a deflated zip (made once)."""
    import zipfile

    images_zip, labels_zip = OUT / f"{folder.name}.zip", OUT / f"{labels.stem}.zip"
    for path, members, inside in ((images_zip, sorted(folder.glob("*.jpg")), folder.name),
                                  (labels_zip, [labels], None)):
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for m in members:
                zf.write(m, f"{inside}/{m.name}" if inside else m.name)
        tmp.replace(path)
    return images_zip, labels_zip


def galaxytrain(args: list[str]) -> None:
    """One `galaxytrain` command in this interpreter's environment, from the repository; fails loudly."""
    subprocess.run([sys.executable, "-m", "galaxytrain", *args], check=True, cwd=REPO)
