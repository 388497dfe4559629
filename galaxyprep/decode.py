"""JPEG decoding with libjpeg-turbo's DCT-domain scaling: the centre window only, or the full frame.

Decoding at the largest 1/8-step scale that still leaves the crop at least
`size` pixels wide does most of the downsampling inside the IDCT, for free.
The window decoder (`_cropdecode`, a C extension on the system's
libjpeg-turbo) then skips the IDCT, upsampling and colour conversion of
everything outside the rows and columns the resample reads, plus a margin of
WINDOW_MARGIN pixels for the chroma upsampling's context: its pixels are
those of the full-frame decode, bit for bit (tests/test_window_decode.py).
Where the extension was not built, simplejpeg decodes the full frame
(the fastest full-frame decoder here, bench/bench_decoders.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simplejpeg

from .kernels import AreaPlan, area_weights, plan_area_resample

try:
    from . import _cropdecode
except ImportError:  # built without the libjpeg headers: the full-frame decoder does the work
    _cropdecode = None

#: Scaled pixels decoded around what the resample reads. Fancy chroma upsampling at full scale
#: needs 1 (measured: without it the window's edge columns differed by up to 14 levels); 2 is safe.
WINDOW_MARGIN = 2


def window_decoder_available() -> bool:
    return _cropdecode is not None


def fused_available(plan: DecodePlan) -> bool:
    """Whether `decode_resample_block` can do this plan's images (window decoding with the extension)."""
    return plan.window is not None and _cropdecode is not None and hasattr(_cropdecode, "decode_resample")

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
    resample: AreaPlan   # reads the decoded buffer: the window, or the whole frame
    scale_num: int = 8   # the DCT scale in eighths
    window: tuple[int, int, int, int] | None = None  # (top, left, height, width) decoded; None: the frame

    @property
    def buffer_shape(self) -> tuple[int, int, int]:
        """What one decoded image fills: the window, or the whole scaled frame."""
        if self.window is None:
            return (self.scaled_height, self.scaled_width, 3)
        return (self.window[2], self.window[3], 3)

    @property
    def scale(self) -> float:
        return self.scaled_height / self.height

    def describe(self) -> dict:
        found = {"jpeg_size": [self.height, self.width], "dct_scaled_size": [self.scaled_height, self.scaled_width],
                 "dct_scale": round(self.scale, 6), "crop": self.crop, "size": self.size}
        if self.window is not None:
            found["decoded_window"] = list(self.window)
        return found


class DecodeError(Exception):
    """The image cannot be used; the message says why in a few words."""


def make_plan(height: int, width: int, crop: int, size: int, dct_scaling: bool = True,
              window: bool = False) -> DecodePlan:
    """Pick the DCT scale for a centre crop of `crop` pixels resampled to `size`.

    `window`: decode only what the resample reads (with the window decoder);
    the resample is the same, its indices moved into the window.
    """
    if crop > min(height, width):
        raise ValueError(f"crop {crop} is larger than the {height}x{width} images")
    if size > crop:
        raise ValueError(f"size {size} is larger than the crop {crop}: that would upsample")
    min_side = math.ceil(max(height, width) * size / crop) if dct_scaling else 0
    sh, sw = _scaled_size(height, width, min_side)
    sy, sx = sh / height, sw / width
    box_h, box_w = crop * sy, crop * sx
    y0, x0 = (sh - box_h) / 2, (sw - box_w) / 2
    resample = plan_area_resample(y0, x0, box_h, box_w, sh, sw, size, size)
    scale_num = next(m for m in range(1, 17) if math.ceil(height * m / 8) == sh and math.ceil(width * m / 8) == sw)
    if not window:
        return DecodePlan(height, width, crop, size, sh, sw, min_side, resample, scale_num)
    rows, cols = _read_span(y0, box_h, sh, size), _read_span(x0, box_w, sw, size)
    top, bottom = max(rows[0] - WINDOW_MARGIN, 0), min(rows[1] + WINDOW_MARGIN, sh)
    left, right = max(cols[0] - WINDOW_MARGIN, 0), min(cols[1] + WINDOW_MARGIN, sw)
    return DecodePlan(height, width, crop, size, sh, sw, min_side, resample.shifted(top, left), scale_num,
                      (top, left, bottom - top, right - left))


def _read_span(start: float, length: float, n_in: int, n_out: int) -> tuple[int, int]:
    """[first, end) of the input pixels an area resample of [start, start + length) reads."""
    first, weights = area_weights(start, length, n_in, n_out)
    return int(first.min()), int(first.max()) + weights.shape[1]


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
    """Decode one JPEG at the planned DCT scale into out, uint8 of `plan.buffer_shape`.

    strict=True makes libjpeg's warnings (truncated data, corrupt segments)
    errors instead of silently grey-filled pixels.
    """
    check_header(data, plan)
    if plan.window is not None:
        top, left, h, w = plan.window
        try:
            warnings = _cropdecode.decode_window(data, plan.scale_num, plan.scaled_height, plan.scaled_width,
                                                 top, left, h, w, out)
        except ValueError as exc:
            raise DecodeError(f"corrupt or truncated JPEG ({_short(exc)})") from None
        if warnings:  # strict, as simplejpeg is asked to be: a warning means grey-filled or damaged pixels
            raise DecodeError(f"corrupt or truncated JPEG ({warnings} libjpeg warning{'s' * (warnings > 1)})")
        return
    try:
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=plan.min_side, min_width=plan.min_side,
                               buffer=out, strict=True)
    except ValueError as exc:
        raise DecodeError(f"corrupt or truncated JPEG ({_short(exc)})") from None


def decode_resample_block(datas: list, plan: DecodePlan, out: np.ndarray, sums: np.ndarray) -> list[int]:
    """Decode and resample a block of JPEGs in one C call, without the GIL; return the indices it did not do.

    datas[i] (bytes, or None for an image that could not be read) goes to
    out[i] (uint8, (size, size * 3)) and sums[i]: the same bits as
    `decode_into` followed by `kernels.resample_area_serial`. Only plain
    JPEGs of the planned size, decoded without a single libjpeg warning, are
    done here; for any other index the caller takes the long way
    (`decode_into`), which refuses it with the usual one-line problem or, for
    an unusual but valid header, decodes it. Their rows are left untouched.
    """
    rp = plan.resample
    return _cropdecode.decode_resample(datas, plan.height, plan.width, plan.scale_num, plan.scaled_height,
                                       plan.scaled_width, *plan.window, rp.y_first, rp.y_weights, rp.x_weights,
                                       rp.x_runs, out, sums)


def probe_size(data: bytes) -> tuple[int, int]:
    """(height, width) of a JPEG, to plan a build from its first good image."""
    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    return h, w


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
