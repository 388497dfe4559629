"""JPEG decoding with libjpeg-turbo's DCT-domain scaling (via simplejpeg).

simplejpeg was chosen by measurement (bench/bench_decoders.py, README): it is
the fastest decoder here, decodes straight into a caller's buffer, and
releases the GIL, so threads scale over cores with no pickling. Decoding at
the largest 1/8-step scale that still leaves the crop at least `size` pixels
wide does most of the downsampling inside the IDCT, for free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simplejpeg

from .kernels import AreaPlan, plan_area_resample

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"RIFF": "a RIFF (WebP?) file",
    b"PK\x03\x04": "a zip archive",
}


@dataclass(frozen=True)
class DecodePlan:
    """How every image of a build is decoded and resampled (they share a size)."""

    height: int          # original JPEG size
    width: int
    crop: int
    size: int
    scaled_height: int   # after DCT scaling
    scaled_width: int
    min_side: int        # what simplejpeg is asked for, so that it picks that scale
    resample: AreaPlan

    @property
    def scale(self) -> float:
        return self.scaled_height / self.height

    def describe(self) -> dict:
        return {"jpeg_size": [self.height, self.width], "dct_scaled_size": [self.scaled_height, self.scaled_width],
                "dct_scale": round(self.scale, 6), "crop": self.crop, "size": self.size}


class DecodeError(Exception):
    """The image cannot be used; the message says why in a few words."""


def make_plan(height: int, width: int, crop: int, size: int, dct_scaling: bool = True) -> DecodePlan:
    """Pick the DCT scale for a centre crop of `crop` pixels resampled to `size`."""
    if crop > min(height, width):
        raise ValueError(f"crop {crop} is larger than the {height}x{width} images")
    if size > crop:
        raise ValueError(f"size {size} is larger than the crop {crop}: that would upsample")
    min_side = math.ceil(max(height, width) * size / crop) if dct_scaling else 0
    sh, sw = _scaled_size(height, width, min_side)
    sy, sx = sh / height, sw / width
    box_h, box_w = crop * sy, crop * sx
    y0, x0 = (sh - box_h) / 2, (sw - box_w) / 2
    return DecodePlan(height, width, crop, size, sh, sw, min_side,
                      plan_area_resample(y0, x0, box_h, box_w, sh, sw, size, size))


def _scaled_size(height: int, width: int, min_side: int) -> tuple[int, int]:
    # libjpeg-turbo's scaling factors are M/8; simplejpeg picks the smallest one
    # meeting min_height/min_width. Ask a tiny synthetic JPEG of the same size.
    probe = simplejpeg.encode_jpeg(np.zeros((height, width, 3), np.uint8), quality=50)
    h, w, _, _ = simplejpeg.decode_jpeg_header(probe, min_height=min_side, min_width=min_side)
    return h, w


def check_header(data: bytes, plan: DecodePlan) -> None:
    """Raise DecodeError for anything that is not an RGB JPEG of the planned size."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    if data[:2] != b"\xff\xd8":
        kind = next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
        raise DecodeError(f"not a JPEG ({kind})" if kind else "not a JPEG (no JPEG start marker)")
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise DecodeError(f"corrupt JPEG header ({_short(exc)})") from None
    if colorspace.upper() in ("GRAY",):
        raise DecodeError("greyscale JPEG, expected RGB")
    if colorspace.upper() in ("CMYK", "YCCK"):
        raise DecodeError(f"{colorspace} JPEG, expected RGB")
    if (h, w) != (plan.height, plan.width):
        raise DecodeError(f"image is {w}x{h}, expected {plan.width}x{plan.height} like the rest")


def decode_into(data: bytes, plan: DecodePlan, out: np.ndarray) -> None:
    """Decode one JPEG at the planned DCT scale into out (scaled_h, scaled_w, 3) uint8.

    strict=True makes libjpeg's warnings (truncated data, corrupt segments)
    errors instead of silently grey-filled pixels.
    """
    check_header(data, plan)
    try:
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=plan.min_side, min_width=plan.min_side,
                               buffer=out, strict=True)
    except ValueError as exc:
        raise DecodeError(f"corrupt or truncated JPEG ({_short(exc)})") from None


def probe_size(data: bytes) -> tuple[int, int]:
    """(height, width) of a JPEG, to plan a build from its first good image."""
    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    return h, w


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
