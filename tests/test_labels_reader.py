"""The fast labels reader against the row-by-row reference: the same values bit for bit, the same problems."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from conftest import SHARED_GZ
from galaxyprep import sources
from galaxyprep.errors import InputError
from galaxyprep.tree import CLASS_NAMES, normalize_tree


def _outcome(reader, path):
    try:
        labels = reader(path)
    except InputError as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("labels", [(gid, vec.dtype.str, vec.shape, vec.tobytes()) for gid, vec in labels.values.items()],
            [(p.file, p.problem) for p in labels.problems])


def _assert_same(path):
    want = _outcome(sources._read_labels_rows, path)
    got = _outcome(sources.read_labels, path)
    assert got == want
    if want[0] == "labels":
        assert sources.read_labels(path).schema == sources._read_labels_rows(path).schema
    return want


def _good(rng, n):
    return normalize_tree(rng.random((n, 37)))


def _fmt(v, style):
    return {0: repr(float(v)), 1: f"{v:.6f}", 2: f"{v:g}", 3: f"{v:.3e}", 4: f"+{v:.5f}", 5: f"{v:.17g}"}[style]


def _awkward_rows(rng):
    """(row cells in CLASS_NAMES order, GalaxyID text) lines: every kind of problem and odd but valid forms."""
    vals = _good(rng, 400)
    rows = []

    def row(gid, vec, style=0, edit=None):
        cells = [_fmt(v, style) for v in vec]
        if edit:
            edit(cells)
        rows.append([str(gid), *cells])

    for i in range(300):  # plain rows, several number styles
        row(100000 + i, vals[i], style=i % 6)
    k = iter(range(300, 400))
    row("00100400", vals[next(k)])                    # leading zeros
    row("+100401", vals[next(k)])                     # signed id
    row(" 100402 ", vals[next(k)])                    # spaces around the id (int() takes them)
    row("\u0661\u0660\u0660\u0664\u0660\u0663", vals[next(k)])  # Arabic-Indic digits (int() takes them)
    row("1e5", vals[next(k)])                         # not an integer
    row("100404.0", vals[next(k)])                    # not an integer
    row("abc", vals[next(k)])
    row("", vals[next(k)])
    row("-", vals[next(k)])
    row("5-3", vals[next(k)])
    row("1234567890123456", vals[next(k)])            # 16 digits: beyond the fast path's id
    row(100410, vals[next(k)], edit=lambda c: c.__setitem__(3, "x"))       # unparsable
    row(100411, vals[next(k)], edit=lambda c: c.__setitem__(5, ""))        # empty value
    row(100412, vals[next(k)], edit=lambda c: c.__setitem__(7, "1.2.3"))
    row(100413, vals[next(k)], edit=lambda c: c.__setitem__(0, "nan"))
    row(100414, vals[next(k)], edit=lambda c: c.__setitem__(36, "inf"))
    row(100415, vals[next(k)], edit=lambda c: c.__setitem__(36, "1e999"))
    row(100416, vals[next(k)], edit=lambda c: c.__setitem__(2, "1.5"))     # outside [0, 1]
    row(100417, vals[next(k)], edit=lambda c: c.__setitem__(2, "-0.01"))
    row(100418, vals[next(k)], edit=lambda c: c.__setitem__(36, "-0.00005"))  # within tolerance: clipped
    row(100419, vals[next(k)], edit=lambda c: c.__setitem__(36, "1.00005"))   # ... tree violation
    row(100420, vals[next(k)], edit=lambda c: c.__setitem__(0, f"{min(float(c[0]) + 0.01, 1.0)}"))  # tree
    row(100421, vals[next(k)], edit=lambda c: c.__setitem__(1, " 0.0 "))   # spaces: float() takes them
    row(100422, vals[next(k)], edit=lambda c: c.__setitem__(30, "0_0"))    # underscores: float() takes them
    row(100423, vals[next(k)], edit=lambda c: c.__setitem__(30, "\t0.0\t"))
    row(100424, vals[next(k)], edit=lambda c: c.__setitem__(30, "0.0e0"))
    row(100425, vals[next(k)], edit=lambda c: c.__setitem__(30, "-0.0"))
    row(100426, vals[next(k)], edit=lambda c: c.__setitem__(30, ".0"))
    row(100427, vals[next(k)], edit=lambda c: c.__setitem__(30, "0."))
    row(100428, vals[next(k)], edit=lambda c: c.__setitem__(30, "e0"))
    row(100429, vals[next(k)], edit=lambda c: c.__setitem__(30, "\u0660.0"))  # Arabic-Indic zero
    row(100430, vals[next(k)], edit=lambda c: c.__setitem__(30, "NaN"))
    row(100431, vals[next(k)], edit=lambda c: c.__setitem__(30, "0.0\x0b"))  # vertical tab
    row(100432, vals[next(k)], edit=lambda c: c.__setitem__(30, "0.0\x1c"))  # a separator float() strips
    rows.append(["100433", "0.5"])                                          # too few fields
    rows.append(["100434", *["0"] * 40])                                    # too many
    rows.append(["100435", *["0"] * 37, ""])                                 # a trailing comma
    rows.append([])                                                          # blank lines
    rows.append([" "])
    rows.append(["\t", " "])
    rows.append([""] * 38)                                                   # commas only: blank too
    rows.append([" "] * 38)
    rows.append(["100436", *[""] * 37])
    for gid, idx in ((100000, 360), (100001, 361), (100001, 362), (100002, 363), (100007, 364)):
        row(gid, vals[idx])                           # duplicates of plain rows, one thrice
    row("0100007", vals[365])                         # ... and a duplicate written differently
    row(100003, vals[366], edit=lambda c: c.__setitem__(3, "x"))  # an invalid row of a good id: no duplicate
    row(100436, vals[367])                            # the id of a refused row: kept
    row(100437, vals[368], edit=lambda c: c.__setitem__(0, "nan"))
    row(100437, vals[369], edit=lambda c: c.__setitem__(0, "nan"))  # two refused rows: no duplicate
    row("\u0661\u0660\u0660\u0664\u0660\u0663", vals[370])  # duplicate of the Arabic-Indic id
    return rows


def _write(path, rows, header=None, order=None, extra=False, crlf=False, bom=False, pad="", shuffle_rng=None):
    order = list(range(37)) if order is None else order
    header = header if header is not None else ["GalaxyID", *[CLASS_NAMES[i] for i in order]]
    lines = []
    for r in rows:
        if len(r) == 38:  # a full row: put its cells in the header's order
            r = [r[0], *[r[1 + i] for i in order]]
        if extra and r:
            r = [*r[:10], "note", *r[10:]]
        lines.append(",".join(r))
    if extra:
        header = [*header[:10], "Notes", *header[10:]]
    nl = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + ",".join(f"{pad}{h}{pad}" for h in header) + nl + nl.join(lines) + nl
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize("variant", ["plain", "crlf_bom", "reordered", "extra_column", "padded_header"])
def test_awkward_csv_matches_reference(tmp_path, monkeypatch, variant):
    rng = np.random.default_rng(7)
    rows = _awkward_rows(rng)
    order = list(rng.permutation(37)) if variant == "reordered" else None
    path = _write(tmp_path / "labels.csv", rows, order=order, extra=variant == "extra_column",
                  crlf=variant == "crlf_bom", bom=variant == "crlf_bom", pad=" " if variant == "padded_header" else "")
    want = _assert_same(path)
    assert want[0] == "labels" and len(want[2]) > 30
    # small blocks: rows cut into many blocks, refused blocks halved down to single rows
    monkeypatch.setattr(sources, "_BLOCK_BYTES", 3000)
    monkeypatch.setattr(sources, "_MIN_SPLIT", 2)
    _assert_same(path)
    # and that was the fast reader, not a fallback to the reference
    monkeypatch.setattr(sources, "_read_labels_rows", None)
    assert _outcome(sources.read_labels, path) == want


def test_files_the_fast_reader_leaves_to_the_reference(tmp_path):
    rng = np.random.default_rng(3)
    good = [[str(200000 + i), *[repr(float(v)) for v in vec]] for i, vec in enumerate(_good(rng, 20))]
    cases = {
        "quoted": good[:5] + [['"200100"', *good[5][1:]], ['"200101', *good[6][1:]]] + good[7:],
        "huge_id": good[:5] + [["123456789012345678901234567890", *good[5][1:]]] + good[6:],
        "huge_id_twice": good[:5] + [["123456789012345678901234567890", *good[5][1:]]] * 2,
        "nul": good[:5] + [[good[5][0] + "\x00", *good[5][1:]]] + good[6:],
        "only_bad": [["x", *good[0][1:]], ["1", "2"]],
        "single": good[:1],
        "none": [],
    }
    for name, rows in cases.items():
        _assert_same(_write(tmp_path / f"{name}.csv", rows))
    lone_cr = tmp_path / "lone_cr.csv"
    lone_cr.write_text("GalaxyID," + ",".join(CLASS_NAMES) + "\n" + ",".join(good[0]) + "\r" + ",".join(good[1]) + "\n")
    assert "not readable as CSV" in _assert_same(lone_cr)[2]  # csv's own error, as one line from both
    for name, text in {"empty": "", "blank_first": "\n" + ",".join(good[0]), "wrong_first": "ID,Class1.1\n1,0\n",
                       "no_columns": "GalaxyID\n1\n", "twice": "GalaxyID,bar,bar\n1,0,1\n",
                       "unnamed": "GalaxyID,bar,,ring\n1,0,1,0\n",
                       "header_only": "GalaxyID," + ",".join(CLASS_NAMES)}.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        assert _assert_same(path)[0] == "error"  # an InputError, one line (no IndexError any more)
    not_utf8 = tmp_path / "latin1.csv"
    not_utf8.write_bytes(("GalaxyID," + ",".join(CLASS_NAMES) + "\n\xe9").encode("latin-1"))
    assert _assert_same(not_utf8)[0] == "error"
    archive = tmp_path / "labels.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "single.csv", "training_solutions_rev1.csv")
    assert _assert_same(archive)[0] == "labels"
    with zipfile.ZipFile(archive, "a") as zf:
        zf.write(tmp_path / "single.csv", "other.csv")
    assert _assert_same(archive)[0] == "error"


def test_real_labels_match_reference():
    path = SHARED_GZ / "training_solutions_rev1.csv"
    if not path.is_file():
        pytest.skip(f"real labels not found at {path}")
    want = _assert_same(path)
    assert want[0] == "labels" and len(want[1]) > 1000


def test_own_columns(tmp_path, monkeypatch):
    """Any columns after GalaxyID: values in [0, 1] kept, others refused by row, kinds from the values."""
    rng = np.random.default_rng(11)
    lines = ["GalaxyID,smooth,has_bar,Class1.1"]
    for i in range(300):
        lines.append(f"{300000 + i},{rng.random():.6f},{int(rng.random() < 0.3)},{rng.random():.4g}")
    lines += ["300900,1.5,0,0.2", "300901,nan,1,0.2", "300902,0.5,x,0.2", "300903,0.5,1",
              "300000,0.1,0,0.1", "300904,-0.00005,1,1.00005"]
    path = tmp_path / "own.csv"
    path.write_text("\n".join(lines) + "\n")
    want = _assert_same(path)
    monkeypatch.setattr(sources, "_BLOCK_BYTES", 500)
    monkeypatch.setattr(sources, "_MIN_SPLIT", 2)
    assert _assert_same(path) == want
    labels = sources.read_labels(path)
    assert labels.schema.columns == ("smooth", "has_bar", "Class1.1") and not labels.schema.is_tree
    assert labels.schema.kinds == ("fraction", "binary", "fraction")
    problems = dict(want[2])
    assert "smooth = 1.5 is outside [0, 1]" in problems[f"{path} line 302"]
    assert "smooth is not a number" in problems[f"{path} line 303"]
    assert "duplicate GalaxyID 300000" in problems[f"{path} line 306"]
    assert 300000 not in labels.values and len(labels.values) == 299 + 1  # the clipped row 300904 kept
    np.testing.assert_array_equal(labels.values[300904], np.array([0.0, 1.0, 1.0], np.float32))
