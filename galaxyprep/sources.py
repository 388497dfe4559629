"""The Kaggle data as downloaded: a folder or zip of <GalaxyID>.jpg, a labels CSV or its zip.

Reading straight from the zip avoids a 1.7 GB extraction. Each thread gets its
own ZipFile handle, since one handle's file position cannot be shared; it is
kept per process, so the many small sources of a cluster build's shards
(`ImageSource.subset`) do not each re-read the archive's directory.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .tree import CLASS_NAMES, LABEL_TOLERANCE, label_problem



@dataclass
class Problem:
    """One input item left out of the build, and why."""

    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


#: Open zip handles of this process, per thread: {path: ZipFile}. Reset in a forked child.
_zip_handles = threading.local()

#: <GalaxyID>.jpg or .jpeg, the suffix in any case; ASCII digits only (str.isdigit takes others too).
_IMAGE_NAME = re.compile(r"([0-9]+)\.(?:[jJ][pP][gG]|[jJ][pP][eE][gG])")


class ImageSource:
    """GalaxyID -> JPEG bytes, from a folder or a zip archive."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ids: dict[int, str] = {}
        self.problems: list[Problem] = []
        self.ignored = 0  # files that are not <GalaxyID>.jpg (README, .DS_Store, ...)
        self._root = str(self.path)
        self._zip_key: tuple | None = None
        if self.path.is_dir():
            self.kind = "folder"
            names = _walk_folder(self.path, self.problems)
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise InputError(self.path, "neither a folder of JPEGs nor a zip archive")
            self.kind = "zip"
            st = self.path.stat()  # which archive: a handle kept open must not outlive a replaced file
            self._zip_key = (str(self.path), st.st_mtime_ns, st.st_size)
            try:
                with zipfile.ZipFile(self.path) as zf:
                    names = [i.filename for i in zf.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError) as exc:
                raise InputError(self.path, f"unreadable zip archive ({exc})") from None
        else:
            raise InputError(self.path, "no such folder or zip archive")
        self._index(names)
        if not self.ids and not self.problems:
            raise InputError(self.path, f"no <GalaxyID>.jpg images found in this {self.kind}")

    def _index(self, names: list[str]) -> None:
        # One regular expression per name, not PurePosixPath (46,928 paths took 0.2 s that way) nor a
        # chain of string tests (88 ms): the index is built before any worker starts, on one core.
        ids = self.ids
        dupes: dict[int, list[str]] = {}
        match = _IMAGE_NAME.fullmatch
        ignored = 0
        for name in sorted(names):
            folder, _, base = name.rpartition("/")
            m = match(base)
            if m is None or (folder and "__MACOSX" in folder.split("/")):
                ignored += 1
                continue
            gid = int(m[1])
            if gid in ids:
                dupes.setdefault(gid, [ids[gid]]).append(name)
            else:
                ids[gid] = name
        self.ignored += ignored
        if dupes:
            for gid in [g for g in ids if g in dupes]:  # in the order of their first copies
                found = dupes[gid]
                del ids[gid]
                self.problems.append(Problem(self.describe(found[0]),
                                             f"duplicate GalaxyID {gid}, also in {', '.join(found[1:])}; all copies left out"))

    def describe(self, name: str) -> str:
        """A path the user can find: the file, or archive:member."""
        return str(self.path / name) if self.kind == "folder" else f"{self.path}:{name}"

    def subset(self, ids) -> "ImageSource":
        """The same source limited to `ids`: small enough to send to a cluster worker with its task."""
        part = object.__new__(ImageSource)
        part.path, part.kind = self.path, self.kind  # shown in problems as the user gave it
        part._root = os.path.abspath(self._root)  # read from a worker whose working folder is not ours
        part._zip_key = None if self._zip_key is None else (os.path.abspath(self._zip_key[0]),) + self._zip_key[1:]
        part.ids = {int(g): self.ids[int(g)] for g in ids}
        part.problems, part.ignored = [], 0
        return part

    def forget_handles(self) -> None:
        """Open fresh zip handles from now on: a forked child must not share its parent's file position."""
        global _zip_handles
        _zip_handles = threading.local()

    def read(self, gid: int) -> bytes:
        """The raw bytes of one image; safe to call from several threads."""
        name = self.ids[gid]
        if self.kind == "folder":
            return read_file(os.path.join(self._root, name))  # str join: pathlib costs us per image
        zf = _zip_handle(self._zip_key)
        try:
            return zf.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged member: that image only
            raise OSError(f"damaged archive member: {exc}") from None


def _zip_handle(key: tuple) -> zipfile.ZipFile:
    """This thread's open handle on the archive (path, mtime, size), opened once: the directory
    of 61k names costs ~0.1 s to read."""
    handles = _zip_handles.__dict__
    zf = handles.get(key)
    if zf is None:
        zf = handles[key] = zipfile.ZipFile(key[0])
    return zf


def read_file(path: str) -> bytes:
    """A whole file's bytes with two system calls and no file object: 10 against 16 us for a 14 KB JPEG.

    (bench/RESULTS.md; the build reads every image once, and the decoder
    takes 160 us an image, so the file object's cost showed.)
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, 1 << 16)
        if len(data) < 1 << 16:
            return data
        chunks = [data]
        while more := os.read(fd, 1 << 20):
            chunks.append(more)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _walk_folder(root: Path, problems: list[Problem]) -> list[str]:
    """Every file name below root; a folder that cannot be read is a problem, never a silent gap."""
    names = []

    def unreadable(exc: OSError) -> None:
        problems.append(Problem(str(exc.filename or root), f"unreadable folder ({exc.strerror or exc}): "
                                                            "its images are left out"))

    for dirpath, _, files in os.walk(root, onerror=unreadable):
        rel = str(Path(dirpath).relative_to(root))
        if rel == ".":
            names.extend(files)
        else:
            names.extend(os.path.join(rel, f) for f in files)
    return names


@dataclass
class Labels:
    """Validated label rows by GalaxyID, with the rows that were refused."""

    path: Path
    values: dict[int, np.ndarray]
    problems: list[Problem] = field(default_factory=list)


def read_labels(path: str | Path) -> Labels:
    """Read training_solutions_rev1.csv (or the zip holding it), row by row.

    Rows with the wrong number of fields, unparsable or NaN values, values
    outside [0, 1] or a repeated GalaxyID are reported and left out; a wrong
    header stops with an InputError.
    """
    path = Path(path)
    text, shown = _labels_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(shown, "empty labels file") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    if not header or header[0] != "GalaxyID":
        raise InputError(shown, f"first column is {header[0]!r} (expected 'GalaxyID'): not a Galaxy Zoo labels CSV")
    missing = [c for c in CLASS_NAMES if c not in header]
    if missing:
        raise InputError(shown, f"missing label columns {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    order = [header.index(c) for c in CLASS_NAMES]
    values: dict[int, np.ndarray] = {}
    problems: list[Problem] = []
    duplicated: set[int] = set()
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"{shown} line {line_no}"
        if len(row) != len(header):
            problems.append(Problem(where, f"{len(row)} fields, expected {len(header)}"))
            continue
        try:
            gid = int(row[0])
        except ValueError:
            problems.append(Problem(where, f"GalaxyID {row[0]!r} is not an integer"))
            continue
        try:
            vec = np.array([float(row[i]) for i in order], dtype=np.float64)
        except ValueError as exc:
            problems.append(Problem(where, f"GalaxyID {gid}: unparsable value ({exc})"))
            continue
        bad = label_problem(vec, LABEL_TOLERANCE)
        if bad:
            problems.append(Problem(where, f"GalaxyID {gid}: {bad}"))
            continue
        if gid in values or gid in duplicated:
            if gid in values:
                del values[gid]
            duplicated.add(gid)
            problems.append(Problem(where, f"duplicate GalaxyID {gid}; all its rows left out"))
            continue
        values[gid] = np.clip(vec, 0.0, 1.0).astype(np.float32)
    if not values:
        raise InputError(shown, "no valid label rows")
    return Labels(path, values, problems)


def _labels_text(path: Path) -> tuple[str, str]:
    if not path.is_file():
        raise InputError(path, "no such labels file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            csvs = [n for n in zf.namelist() if n.lower().endswith(".csv") and "__MACOSX" not in n]
            if len(csvs) != 1:
                raise InputError(path, f"expected one CSV inside the zip, found {len(csvs)}")
            raw, shown = zf.read(csvs[0]), f"{path}:{csvs[0]}"
    else:
        raw, shown = path.read_bytes(), str(path)
    try:
        return raw.decode("utf-8"), shown
    except UnicodeDecodeError:
        raise InputError(shown, "not a text CSV file") from None


def read_id_list(path: str | Path) -> set[int]:
    """GalaxyIDs, one per line (a header or a CSV's first column is fine)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such ID list")
    ids = set()
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        cell = line.split(",")[0].strip()
        if not cell or (line_no == 1 and not cell.isdigit()):
            continue
        if not cell.isdigit():
            raise InputError(path, f"line {line_no}: {cell!r} is not a GalaxyID")
        ids.add(int(cell))
    return ids

