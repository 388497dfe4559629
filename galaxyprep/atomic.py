"""Files that appear whole or not at all, and JSON that any tool can read.

A reader (or a killed job's next run) must never find half a file under the
final name: everything is written under a temporary name in the same folder,
flushed to disk, and renamed over the target, which POSIX makes atomic.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Yield a file open for writing that replaces `path` only when the block ends without an error.

    `mode` is "w" (text, UTF-8, no newline translation) or "wb". On an error
    or an interrupt the temporary file is removed and `path` is untouched.
    The temporary name is fixed (``.NAME.tmp`` beside it), so that one left
    by a kill -9 is simply overwritten by the next write; one writer per
    output is the caller's lock's business.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with open(tmp, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_name(path: str | Path) -> Path:
    """Where `atomic_write` writes `path` before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`text` as the whole content of `path`, atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, data, indent: int = 2) -> Path:
    """`data` as strict JSON (see `jsonable`), atomically."""
    return write_text_atomic(path, json.dumps(jsonable(data), indent=indent, allow_nan=False) + "\n")


def jsonable(x):
    """Builtin types only: numpy scalars and arrays, paths and tuples converted; NaN and inf become None.

    Strict JSON (no NaN) so that any tool reads it; an undefined number is null.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, str):
        return x
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
