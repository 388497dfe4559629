"""`galaxyprep preview`: the original JPEG beside what the network will see.

A quick visual check that the crop is centred on the galaxy and that the
downsample kept its structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .decode import probe_size
from .errors import InputError
from .atomic import atomic_write
from .galaxy_file import GalaxyFile
from .outputs import check_output
from .sources import ImageSource


def preview(path: str | Path, out: str | Path, n: int = 8, seed: int = 0, tile: int = 212) -> Path:
    """Write a PNG grid: per row, the original (crop box drawn) and the stored image.

    Where the original JPEGs are no longer at the recorded source, only the
    stored images are shown.
    """
    out = Path(out)
    if n < 1:
        raise InputError("--n", f"must be at least 1, got {n}")
    check_output(out, [("input file", path)], _is_png, "PNG image")
    with GalaxyFile(path) as f:
        total = f.n_images
        rows = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
        stored = np.stack([f.images(int(r), int(r) + 1)[0] for r in rows])
        ids = f.ids[rows]
        info = f.info
    crop, source_path = info.crop, info.source
    source = _open_source(source_path)
    cols = 2 if source is not None else 1
    sheet = Image.new("RGB", (cols * tile + (cols + 1) * 4, len(rows) * (tile + 4) + 4), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for k, (gid, img) in enumerate(zip(ids, stored)):
        y = 4 + k * (tile + 4)
        x = 4
        if source is not None:
            original = _original(source, int(gid), crop, tile)
            if original is not None:
                sheet.paste(original, (x, y))
            x += tile + 4
        sheet.paste(Image.fromarray(img).resize((tile, tile), Image.NEAREST), (x, y))
        draw.text((x + 4, y + 4), f"{gid} ({img.shape[0]}px)", fill=(255, 255, 0))
    with atomic_write(out, "wb") as f:
        sheet.save(f, format="PNG")
    return out


def _is_png(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _open_source(source_path: str) -> ImageSource | None:
    if not source_path:
        return None
    try:
        return ImageSource(source_path)
    except InputError:
        return None


def _original(source: ImageSource, gid: int, crop: int, tile: int) -> Image.Image | None:
    if gid not in source.ids:
        return None
    try:
        data = source.read(gid)
        height, width = probe_size(data)
        import io

        img = Image.open(io.BytesIO(data)).convert("RGB")
    except (OSError, ValueError):
        return None
    draw = ImageDraw.Draw(img)
    if crop:
        y0, x0 = (height - crop) // 2, (width - crop) // 2
        draw.rectangle([x0, y0, x0 + crop - 1, y0 + crop - 1], outline=(0, 255, 0), width=2)
    return img.resize((tile, tile), Image.BILINEAR)
