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
from .label_schema import LabelSchema, own_columns_problem
from .tree import CLASS_NAMES, LABEL_TOLERANCE, TREE_TOLERANCE, tree_excess



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
#: The file stores GalaxyIDs as int64.
_MAX_GALAXY_ID = 2**63 - 1


class ImageSource:
    """GalaxyID -> JPEG bytes, from a folder or a zip archive."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ids: dict[int, str] = {}
        self.problems: list[Problem] = []
        self.ignored = 0  # files that are not <GalaxyID>.jpg (README, .DS_Store, ...)
        self.duplicates: list[str] = []  # GalaxyIDs stored more than once with the same bytes, one copy used
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
            if gid > _MAX_GALAXY_ID:
                self.problems.append(Problem(self.describe(name), f"GalaxyID {m[1]} is larger than a 64-bit "
                                                                  "integer holds; left out"))
                continue
            if gid in ids:
                dupes.setdefault(gid, [ids[gid]]).append(name)
            else:
                ids[gid] = name
        self.ignored += ignored
        for gid in [g for g in ids if g in dupes]:  # in the order of their first copies
            found = dupes[gid]
            if self._same_bytes(found):  # one galaxy stored twice: the first name (sorted) is used
                self.duplicates.append(f"GalaxyID {gid}: {self.describe(found[0])} used, the same bytes as "
                                       f"{', '.join(self.describe(n) for n in found[1:])}")
                continue
            del ids[gid]
            self.problems.append(Problem(self.describe(found[0]),
                                         f"duplicate GalaxyID {gid} with other bytes in "
                                         f"{', '.join(self.describe(n) for n in found[1:])}; "
                                         "all copies left out (which is the galaxy?)"))

    def _same_bytes(self, names: list[str]) -> bool:
        try:
            first = self._read_name(names[0])
            return all(self._read_name(name) == first for name in names[1:])
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError):
            return False

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
        part.problems, part.ignored, part.duplicates = [], 0, []
        return part

    def forget_handles(self) -> None:
        """Open fresh zip handles from now on: a forked child must not share its parent's file position."""
        global _zip_handles
        _zip_handles = threading.local()

    def read(self, gid: int) -> bytes:
        """The raw bytes of one image; safe to call from several threads."""
        return self._read_name(self.ids[gid])

    def _read_name(self, name: str) -> bytes:
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
    """Validated label rows by GalaxyID, with the rows that were refused, and what their columns are."""

    path: Path
    values: dict[int, np.ndarray]
    problems: list[Problem] = field(default_factory=list)
    schema: LabelSchema = field(default_factory=LabelSchema.kaggle)


def _labels(path: Path, values: dict[int, np.ndarray], problems: list[Problem], schema: LabelSchema) -> Labels:
    """The result of a reader: the Kaggle tree as it is; one's own columns' kinds taken from the valid rows."""
    if not schema.is_tree:
        schema = LabelSchema.of_values(schema.columns, np.stack(list(values.values())))
    return Labels(path, values, problems, schema)


def read_labels(path: str | Path) -> Labels:
    """Read training_solutions_rev1.csv (or the zip holding it), or a CSV of one's own label columns.

    A header holding all 37 Kaggle columns is the decision tree (other
    columns are ignored, rows are checked against the tree); any other
    header is ``GalaxyID`` and one's own columns, each value in [0, 1]
    (`galaxyprep.label_schema`). Rows with the wrong number of fields, unparsable or NaN values, values
    outside [0, 1] or a repeated GalaxyID are reported and left out; a wrong
    header stops with an InputError.

    The result is exactly that of the row-by-row reader `_read_labels_rows`
    (same values bit for bit, same problems in the same order): plain rows
    (ASCII digits, '.', 'e', '+', '-' and the right number of commas) are
    parsed in blocks with np.loadtxt, whose float conversion is CPython's
    correctly rounded PyOS_string_to_double, the very function behind float()
    (numpy's textreading/conversions.c); every other row, every row whose
    values could fail `label_problem` and every row of a block that numpy
    refuses goes through `_label_row`, the one source of the messages. A file
    with quotes, NUL characters, lone carriage returns or very long lines is
    read row by row throughout.
    """
    path = Path(path)
    text, shown = _labels_text(path)
    if '"' in text or "\x00" in text or ("\r" in text and text.count("\r") != text.count("\r\n")):
        return _read_labels_rows(path, text, shown)
    try:
        return _read_labels_fast(path, text, shown)
    except _Irregular:
        return _read_labels_rows(path, text, shown)


class _Irregular(Exception):
    """The fast reader cannot promise the row-by-row reader's result: use that."""


def _labels_header(reader, shown: str) -> tuple[list[str], list[int], LabelSchema]:
    """The header's cells, the column of each label column in it, and the schema rows are checked by.

    All 37 Kaggle columns: the tree, in Kaggle's order. Otherwise every
    column after GalaxyID is a label column of one's own.
    """
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(shown, "empty labels file") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    if not header:  # was an IndexError (a traceback) building the message below
        raise InputError(shown, "the first line is empty; expected the header 'GalaxyID,Class1.1,...'")
    if header[0] != "GalaxyID":
        raise InputError(shown, f"first column is {header[0]!r} (expected 'GalaxyID'): not a Galaxy Zoo labels CSV")
    if all(c in header for c in CLASS_NAMES):
        return header, [header.index(c) for c in CLASS_NAMES], LabelSchema.kaggle()
    own = header[1:]
    problem = own_columns_problem(own)
    if problem:
        raise InputError(shown, f"{problem}; expected 'GalaxyID' and the 37 Kaggle columns, or 'GalaxyID' and "
                                "columns of one's own")
    return header, list(range(1, len(header))), LabelSchema(tuple(own), ("fraction",) * len(own))


def _label_row(row: list[str], n_fields: int, order: list[int],
               schema: LabelSchema) -> tuple[str, int | None, np.ndarray | None] | None:
    """One CSV row: None for a blank row, else (problem, GalaxyID, float64 values); problem "" if valid."""
    if not row or all(not cell.strip() for cell in row):
        return None
    if len(row) != n_fields:
        return f"{len(row)} fields, expected {n_fields}", None, None
    try:
        gid = int(row[0])
    except ValueError:
        return f"GalaxyID {row[0]!r} is not an integer", None, None
    try:
        vec = np.array([float(row[i]) for i in order], dtype=np.float64)
    except ValueError as exc:
        return f"GalaxyID {gid}: unparsable value ({exc})", gid, None
    bad = schema.row_problem(vec, LABEL_TOLERANCE)
    if bad:
        return f"GalaxyID {gid}: {bad}", gid, None
    return "", gid, vec


def _duplicate_problem(gid: int) -> str:
    return f"duplicate GalaxyID {gid}; all its rows left out"


def _read_labels_rows(path: str | Path, text: str | None = None, shown: str | None = None) -> Labels:
    """The reference reader: Python's csv module and `_label_row`, one row at a time."""
    path = Path(path)
    if text is None:
        text, shown = _labels_text(path)
    reader = csv.reader(io.StringIO(text))
    header, order, schema = _labels_header(reader, shown)
    values: dict[int, np.ndarray] = {}
    problems: list[Problem] = []
    duplicated: set[int] = set()
    for line_no, row in enumerate(_csv_rows(reader, shown), start=2):
        checked = _label_row(row, len(header), order, schema)
        if checked is None:
            continue
        bad, gid, vec = checked
        where = f"{shown} line {line_no}"
        if bad:
            problems.append(Problem(where, bad))
            continue
        if gid in values or gid in duplicated:
            if gid in values:
                del values[gid]
            duplicated.add(gid)
            problems.append(Problem(where, _duplicate_problem(gid)))
            continue
        values[gid] = np.clip(vec, 0.0, 1.0).astype(np.float32)
    if not values:
        raise InputError(shown, "no valid label rows")
    return _labels(path, values, problems, schema)


def _csv_rows(reader, shown: str):
    """The reader's rows; its own error (a carriage return inside a line) as one line, not a traceback."""
    try:
        yield from reader
    except csv.Error as exc:
        raise InputError(shown, f"near line {reader.line_num}: not readable as CSV ({exc})") from None


#: Bytes of the labels text handled at a time by the fast reader (about 14,000 Kaggle rows).
_BLOCK_BYTES = 1 << 22
#: Blocks that np.loadtxt refuses are halved down to this many rows, then read row by row.
_MIN_SPLIT = 64
#: The bytes of a plain row: digits, '.', 'e', 'E', '+', '-', ',' (and the newline that ends it).
_PLAIN_BYTES = b"0123456789.eE+-,\n"
_PLAIN = np.zeros(256, dtype=bool)
_PLAIN[np.frombuffer(_PLAIN_BYTES, dtype=np.uint8)] = True
#: The bytes of a plain GalaxyID field.
_ID_BYTE = np.zeros(256, dtype=bool)
_ID_BYTE[np.frombuffer(b"0123456789+-", dtype=np.uint8)] = True


def _read_labels_fast(path: Path, text: str, shown: str) -> Labels:
    """`read_labels` on a text without quotes, NUL or lone CR: blocks of plain rows parsed by numpy.

    Raises _Irregular where only the row-by-row reader gives the right result.
    """
    if "\r" in text:  # (read_labels made sure that each CR is followed by LF)
        text = text.replace("\r\n", "\n")  # every CR ends a line here; csv drops it the same way
    end = text.find("\n")
    header, order, schema = _labels_header(csv.reader(io.StringIO(text if end < 0 else text[: end + 1])), shown)
    n_fields = len(header)
    body = b"" if end < 0 else text[end + 1 :].encode("utf-8")
    del text
    limit = csv.field_size_limit()
    usecols = [0, *order]
    problems: list[tuple[int, str]] = []        # (line number, problem)
    good_lines, good_ids, good_values = [], [], []  # arrays per piece, of the valid rows
    first_line = 2
    pos = 0
    while pos < len(body):
        stop = body.find(b"\n", pos + _BLOCK_BYTES)
        stop = len(body) if stop < 0 else stop + 1
        block = body[pos:stop]
        pos = stop
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        arr = np.frombuffer(block, dtype=np.uint8)
        starts = np.zeros(len(lines), dtype=np.int64)
        newlines = np.flatnonzero(arr == 10)[: len(lines) - 1]
        starts[1:] = newlines + 1
        ends = np.empty(len(lines), dtype=np.int64)
        ends[:-1] = newlines
        ends[-1] = len(block) - block.endswith(b"\n")
        if int((ends - starts).max()) > limit:
            raise _Irregular  # csv refuses such a field: leave the error to the reference reader
        comma_at = np.flatnonzero(arr == 44)
        first_comma = np.searchsorted(comma_at, starts)
        plain = np.searchsorted(comma_at, ends) - first_comma == n_fields - 1
        if block.translate(None, _PLAIN_BYTES):  # rare: some line holds other characters
            other_at = np.flatnonzero(~_PLAIN[arr])
            plain &= np.searchsorted(other_at, ends) == np.searchsorted(other_at, starts)
        # GalaxyID: 1 to 15 digits and signs (then float64 holds it exactly and int() takes what numpy takes)
        id_end = np.where(plain, comma_at[np.minimum(first_comma, len(comma_at) - 1)] if len(comma_at) else 0, starts)
        id_len = id_end - starts
        plain &= (id_len >= 1) & (id_len <= 15)
        at = np.minimum(starts[:, None] + np.arange(15), len(arr) - 1)
        plain &= (_ID_BYTE[arr[at]] | (np.arange(15) >= id_len[:, None])).all(axis=1)
        line_nos = np.arange(first_line, first_line + len(lines))
        first_line += len(lines)
        by_row = [int(i) for i in np.flatnonzero(~plain & (ends > starts))]
        plain_rows = np.flatnonzero(plain)
        by_row += _parse_plain(lines, plain_rows, usecols, good_lines, good_ids, good_values, line_nos, schema,
                               block if len(plain_rows) == len(lines) else None)
        for i in sorted(by_row):
            checked = _label_row(lines[i].decode("utf-8").split(","), n_fields, order, schema)
            if checked is None:
                continue
            bad, gid, vec = checked
            if bad:
                problems.append((int(line_nos[i]), bad))
                continue
            if not -(1 << 63) <= gid < (1 << 63):
                raise _Irregular
            good_lines.append(line_nos[i : i + 1])
            good_ids.append(np.array([gid], dtype=np.int64))
            good_values.append(np.clip(vec, 0.0, 1.0).astype(np.float32)[None, :])
    if good_lines:
        lines_all = np.concatenate(good_lines)
        ids = np.concatenate(good_ids)
        vals = np.concatenate(good_values)
        by_line = np.argsort(lines_all, kind="stable")
        lines_all, ids, vals = lines_all[by_line], ids[by_line], vals[by_line]
        by_id = np.argsort(ids, kind="stable")  # line order within each GalaxyID
        sorted_ids = ids[by_id]
        repeat = np.zeros(len(ids), dtype=bool)
        repeat[1:] = sorted_ids[1:] == sorted_ids[:-1]
        later = np.zeros(len(ids), dtype=bool)
        later[by_id] = repeat                     # a second or later valid row of its GalaxyID
        dup_ids = np.unique(sorted_ids[repeat])
        keep = ~np.isin(ids, dup_ids)
        problems.extend((int(line), _duplicate_problem(int(gid))) for line, gid in zip(lines_all[later], ids[later]))
        values = dict(zip(ids[keep].tolist(), vals[keep]))
    else:
        values = {}
    problems.sort(key=lambda item: item[0])
    if not values:
        raise InputError(shown, "no valid label rows")
    return _labels(path, values, [Problem(f"{shown} line {line}", bad) for line, bad in problems], schema)


def _parse_plain(lines: list[bytes], rows: np.ndarray, usecols: list[int], good_lines: list, good_ids: list,
                 good_values: list, line_nos: np.ndarray, schema: LabelSchema,
                 whole: bytes | None = None) -> list[int]:
    """Parse lines[rows] with np.loadtxt, keep the rows certainly valid; return the rows to check one by one.

    A block numpy refuses is halved until _MIN_SPLIT rows; those rows go one by one. A row is
    checked one by one unless its values are all finite, within [0, 1] and obey the tree with
    half of TREE_TOLERANCE to spare, so `label_problem` cannot refuse it.
    """
    if len(rows) == 0:
        return []
    try:
        plain_text = whole if whole is not None else b"\n".join([lines[i] for i in rows])
        parsed = np.loadtxt(io.StringIO(plain_text.decode("ascii")), delimiter=",",
                            comments=None, dtype=np.float64, usecols=usecols, ndmin=2)
    except ValueError:
        if len(rows) <= _MIN_SPLIT:
            return rows.tolist()
        half = len(rows) // 2
        return (_parse_plain(lines, rows[:half], usecols, good_lines, good_ids, good_values, line_nos, schema)
                + _parse_plain(lines, rows[half:], usecols, good_lines, good_ids, good_values, line_nos, schema))
    if parsed.shape != (len(rows), len(usecols)):
        raise _Irregular
    vec = parsed[:, 1:]
    with np.errstate(invalid="ignore", over="ignore"):
        doubtful = ~np.isfinite(vec).all(axis=1) | (vec < 0).any(axis=1) | (vec > 1).any(axis=1)
        if schema.is_tree:
            doubtful |= ~(tree_excess(np.nan_to_num(vec))[0] <= TREE_TOLERANCE / 2)
    sure = ~doubtful
    good_lines.append(line_nos[rows[sure]])
    good_ids.append(parsed[sure, 0].astype(np.int64))  # at most 15 digits: exact in a float64
    good_values.append(np.clip(vec[sure], 0.0, 1.0).astype(np.float32))
    return rows[doubtful].tolist()


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

