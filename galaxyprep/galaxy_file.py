"""The HDF5 file that `galaxyprep build` writes and `galaxytrain` reads.

Layout (format version 1):

- ``images``: (N, S, S, 3) uint8, RGB, chunked in blocks of whole images
  along axis 0 so that a contiguous slice of images is one or a few chunk reads.
- ``ids``: (N,) int64 GalaxyIDs, ascending.
- ``labels``: (N, K) float32, attributes ``columns`` (their names) and
  ``kinds`` ("fraction" or "binary" per column): the 37 Kaggle vote
  fractions (``Class1.1`` ... ``Class11.6``, the decision tree), or a user's
  own columns (`galaxyprep.label_schema`). Absent in a test set. A file
  without ``kinds`` holds fractions.
- root attributes: ``format`` ("galaxyprep"), ``format_version``, ``crop``,
  ``size``, ``source``, ``labels_source``, ``build_params`` (JSON of every
  build parameter), ``galaxyprep_version``,
  ``decoder``, ``n_images``, ``skipped`` (JSON list of {"file", "problem"}),
  ``mean`` and ``std`` (3,) float64, ``normalization``.

A cluster build (`galaxyprep build --scheduler`) writes shard files, each a
galaxyprep file of its own with ``shard_key`` and ``channel_sums`` (the six
exact per-channel sums its mean and std came from), and then OUT with
``images``, ``ids`` and ``labels`` as HDF5 virtual datasets over them (paths
relative to OUT, root attributes ``parts`` and ``chunk_images`` added) or
one consolidated file. A reader sees the same datasets either way. OUT
vouches for its shards: its ``shards`` attribute (JSON) gives each one's
file, rows, shard key and a fingerprint (of its key, GalaxyIDs, channel
sums, labels and geometry: cheap to check, and different for any other
shard), and every open of OUT checks them, so a shard swapped, copied over,
truncated or rebuilt otherwise is refused in one line, never read.

The images are stored as the uint8 pixels the network sees, not normalized:
uint8 is a quarter of float32 on disk and in the page cache. A reader applies
``(image - mean) / std`` per channel, with ``mean`` and ``std`` measured on
the 0-255 scale over every pixel of the file in the build pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
from h5py._objects import phil as _h5py_lock  # h5py's own lock around every HDF5 call

from .direct_io import RawRowWriter, chunk_offsets
from .errors import InputError
from .label_schema import LabelSchema
from .tree import CLASS_NAMES
from .version import __version__

FORMAT_NAME = "galaxyprep"
FORMAT_VERSION = 1
NORMALIZATION = "float = (uint8 - mean) / std per RGB channel; mean, std on the 0-255 scale"
GZIP_LEVEL = 4  # of `compression="gzip"`, stated rather than left to h5py's default
_SHARD_KEY = "shard_key"
_CHANNEL_SUMS = "channel_sums"
_MADE_FROM = "made_from"  # a joined file's word on its inputs (write_joined_galaxy_file)


@dataclass(frozen=True)
class GalaxyFileInfo:
    """What a galaxyprep HDF5 file holds and how it was made."""

    path: str
    n_images: int
    size: int
    crop: int
    has_labels: bool
    mean: np.ndarray
    std: np.ndarray
    chunk_images: int
    compression: str | None
    source: str
    labels_source: str = ""
    normalization: str = ""
    decoder: str = ""
    decode_plan: str = ""
    galaxyprep_version: str = ""
    build_params: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    parts: list = field(default_factory=list)  # shard files of a virtual file (str paths)
    images_without_labels: int = 0  # what the build left out for want of a label row
    labels_without_images: int = 0  # label rows the build found no image for
    label_schema: LabelSchema | None = None  # the label columns and their kinds (None: no labels)


class GalaxyFile:
    """An open galaxyprep file: the one reader of the format.

    No other module names its datasets or attributes. Open it once per
    process and never use it across a fork (HDF5 handles are not fork-safe
    and do not pickle); `galaxytrain.runtime.PerProcess` reopens it in a
    worker. Every read is one contiguous slice: random fancy indexing of a
    chunked dataset is hundreds of times slower.
    """

    def __init__(self, path: str | Path, rdcc_nbytes: int = 16 * 2**20):
        self.path = Path(path)
        self._f = _open_h5(self.path, rdcc_nbytes)
        # Dataset handles are opened once: one per read re-opened a virtual file's shards every time.
        # Uncompressed chunks are read without a chunk cache: HDF5 then reads just the wanted rows
        # into the caller's array, where a cache reads the whole chunk and copies out of it (44
        # against 101 us of CPU a 16-image block at 96 px; 74 against 161 through a virtual file).
        images = self._f["images"]
        self.n_images = int(images.shape[0])
        self.size = int(images.shape[1])
        self.has_labels = "labels" in self._f
        self.is_virtual = bool(images.is_virtual)
        if self.is_virtual:  # the shards' chunking: a block read is aligned to it the same way
            self.chunk_images = int(self._f.attrs.get("chunk_images", self.n_images))
            self.compression = self._f.attrs.get("compression") or None
        else:
            self.chunk_images = int(images.chunks[0]) if images.chunks else self.n_images
            self.compression = images.compression
        cache = rdcc_nbytes if self.compression is not None else 0
        self._images = _open_dataset(self._f, "images", cache)
        self._labels = _open_dataset(self._f, "labels", cache) if self.has_labels else None
        self._ids: np.ndarray | None = None

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 GalaxyIDs, ascending; read once."""
        if self._ids is None:
            self._ids = np.asarray(self._f["ids"][:], dtype=np.int64)
        return self._ids

    def images(self, lo: int, hi: int) -> np.ndarray:
        """uint8 (hi - lo, S, S, 3): rows lo..hi-1, one contiguous read."""
        return self._images[lo:hi]

    @cached_property
    def label_schema(self) -> LabelSchema | None:
        """The label columns and their kinds (None: no labels)."""
        return _stored_schema(self._f)

    def labels(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """float32 (hi - lo, K) labels of rows lo..hi-1 (all rows by default), K = `label_schema.width`."""
        if not self.has_labels:
            raise InputError(self.path, "has no labels (a test set?); training and scoring need a labelled file")
        return self._labels[lo:self.n_images if hi is None else hi]

    def checked_labels(self, hi: int | None = None) -> np.ndarray:
        """`labels(0, hi)`, refused with one line naming the first row its schema refuses.

        A file written by another tool, or edited, could hold NaN, values out
        of [0, 1], or answers that sum above their parent: training on them
        would be training on garbage without a word.
        """
        labels = self.labels(0, hi)
        schema = self.label_schema
        bad = schema.invalid_rows(labels)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(self.path, f"labels of GalaxyID {int(self.ids[row])} (row {row}): "
                                        f"{schema.row_problem(labels[row])}; "
                                        f"{int(bad.sum())} row(s) like it; rebuild the file from a valid CSV")
        return labels

    @property
    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per RGB channel on the 0-255 scale: what a reader subtracts and divides by."""
        a = self._f.attrs
        if "mean" not in a or "std" not in a:
            raise InputError(self.path, "has no 'mean'/'std' attributes; rebuild it with `galaxyprep build`")
        mean = np.asarray(a["mean"], dtype=np.float64)
        std = np.asarray(a["std"], dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,) or not np.all(np.isfinite(mean)) \
                or not np.all(np.isfinite(std)) or not np.all(std > 0):
            raise InputError(self.path, f"has an unusable normalization (mean {mean.tolist()}, std {std.tolist()}): "
                                        "each must be 3 finite numbers, std above 0; rebuild the file")
        return mean, std

    @property
    def parts(self) -> list[Path]:
        """The shard files a virtual file reads from (none for a plain file)."""
        if not self.is_virtual:
            return []
        return [self.path.parent / name for name in json.loads(self._f.attrs.get("parts", "[]"))]

    def check_room_for_readers(self, reader: str, workers: int = 1) -> None:
        """Room for a forked reader (`reader` says who) to open every shard again on top of this process's files.

        A forked loader inherits every file this process holds, its shards
        included, and opens them all once more; without room its check fails
        inside the loader, where the one line was buried in a TensorFlow
        traceback. Checked here, in the parent, before any is forked.
        """
        if self.is_virtual:  # and the pipes and queues of a pool of `workers` (16 each: measured 196 too few)
            _room_to_open(self.path, len(self.parts), reader, margin=32 + 16 * workers)

    @property
    def shard_key(self) -> str | None:
        """What built this shard of a cluster build (None: not a shard)."""
        key = self._f.attrs.get(_SHARD_KEY)
        return None if key is None else _plain(key)

    @property
    def channel_sums(self) -> np.ndarray:
        """(6,) float64 exact sums of R, G, B and of their squares over every pixel (shards keep them)."""
        if _CHANNEL_SUMS not in self._f.attrs:
            raise InputError(self.path, "keeps no channel sums: not a shard of a cluster build")
        return np.asarray(self._f.attrs[_CHANNEL_SUMS], dtype=np.float64)

    @cached_property
    def info(self) -> GalaxyFileInfo:
        """What the file holds and how it was built, without its pixels (read once: the file is read-only)."""
        attrs = {k: _plain(v) for k, v in self._f.attrs.items()}
        mean, std = self.normalization
        return GalaxyFileInfo(
            path=str(self.path), n_images=self.n_images, size=self.size, crop=int(attrs.get("crop", 0)),
            has_labels=self.has_labels, mean=mean, std=std, chunk_images=self.chunk_images,
            compression=self.compression, source=str(attrs.get("source", "")),
            labels_source=str(attrs.get("labels_source", "")), normalization=str(attrs.get("normalization", "")),
            decoder=str(attrs.get("decoder", "")), decode_plan=str(attrs.get("decode_plan", "")),
            galaxyprep_version=str(attrs.get("galaxyprep_version", "")),
            build_params=json.loads(attrs.get("build_params", "{}")),
            skipped=json.loads(attrs.get("skipped", "[]")), attrs=attrs, parts=[str(p) for p in self.parts],
            images_without_labels=int(attrs.get("images_without_labels", 0)),
            labels_without_images=int(attrs.get("labels_without_images", 0)), label_schema=self.label_schema)

    @property
    def made_from(self) -> dict | None:
        """What `write_joined_galaxy_file` was told the file was made from; None for any other file."""
        text = self._f.attrs.get(_MADE_FROM)
        if text is None:
            return None
        try:
            return json.loads(_plain(text))
        except ValueError:
            raise InputError(self.path, "has a damaged 'made_from' attribute") from None

    @property
    def is_open(self) -> bool:
        return bool(self._f.id.valid)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "GalaxyFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_h5(path: Path, rdcc_nbytes: int) -> h5py.File:
    """The HDF5 file, checked to be a galaxyprep file, or InputError saying why not.

    The chunk cache is enlarged from h5py's 1 MiB so that a block read that
    straddles chunks does not re-read them.
    """
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        f = h5py.File(path, "r", rdcc_nbytes=rdcc_nbytes)
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({_first_line(exc)})") from None
    try:
        _check_layout(f, path)
        _check_parts(f, path)
    except InputError:
        f.close()
        raise
    return f


def _open_dataset(f: h5py.File, name: str, rdcc_nbytes: int) -> h5py.Dataset:
    """A dataset with its own chunk cache size, which a virtual dataset passes on to its shards'."""
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(521, rdcc_nbytes, 0.75)  # HDF5's default slots and policy, our size
    return h5py.Dataset(h5py.h5d.open(f.id, name.encode(), dapl=dapl))


def _check_parts(f: h5py.File, path: Path) -> None:
    """Every shard a virtual file maps must be there: HDF5 would read a missing one as zeros, silently."""
    images = f["images"]
    if not images.is_virtual:
        return
    sources = {s.file_name for s in images.virtual_sources()}
    for source in sources:
        if not (path.parent / source).is_file():
            raise InputError(path, f"its images are in shard files beside it, and {source} is missing; keep "
                                   "the .parts folder next to the file (or rebuild with --consolidate)")
    _room_to_open(path, len(sources))
    if "shards" in f.attrs:  # files written before OUT vouched for its shards have only the mapping
        _check_shards(f, path, json.loads(_plain(f.attrs["shards"])))


def shard_fingerprint(shard: "GalaxyFile") -> str:
    """What identifies a shard's content cheaply: its key, GalaxyIDs, exact channel sums, labels and geometry.

    The channel sums are exact integer sums over every pixel, measured when
    the pixels were written: another shard (another build, crop, or part of
    the ids) differs in them or in its ids. Reading them costs the ids, not
    the pixels.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"key": shard.shard_key, "n": shard.n_images, "size": shard.size,
                         "labels": shard.has_labels, "crop": int(shard._f.attrs.get("crop", 0))},
                        sort_keys=True).encode())
    h.update(np.ascontiguousarray(shard.ids, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(shard.channel_sums, dtype="<f8").tobytes())
    return h.hexdigest()


def _check_shards(f: h5py.File, path: Path, manifest: list) -> None:
    """Each shard is the one OUT was built over (one at a time: there may be more than a process may open)."""
    def refuse(name: str, problem: str) -> None:
        raise InputError(path, f"its shard {name} {problem}; it is not the shard this file was built over, so "
                               f"the file cannot be read. Rebuild it: {_rebuild_command(f, path)}")

    for entry in manifest:
        name = entry["file"]
        try:
            shard = GalaxyFile(path.parent / name)
        except InputError as exc:
            refuse(name, f"cannot be read ({exc.problem})")
        with shard:
            lo, hi = entry["rows"]
            if shard.n_images != hi - lo:
                refuse(name, f"holds {shard.n_images} images where {hi - lo} were written")
            if shard.shard_key != entry["key"]:
                refuse(name, "comes from another build (its shard key differs)")
            if shard_fingerprint(shard) != entry["fingerprint"]:
                refuse(name, "holds other galaxies, pixels or labels than were written (its fingerprint differs)")


def _rebuild_command(f: h5py.File, path: Path) -> str:
    """The build command that made `f`, from its record, with --overwrite."""
    params = json.loads(_plain(f.attrs.get("build_params", "{}")) or "{}")
    labels = f" --labels {params['labels']}" if params.get("labels") else ""
    scheduler = f" --scheduler {params['scheduler']}" if params.get("scheduler") else ""
    return (f"`galaxyprep build --images {params.get('images', 'IMAGES')}{labels} --crop {params.get('crop', '?')} "
            f"--size {params.get('size', '?')}{scheduler} --out {path} --overwrite`")


def _room_to_open(path: Path, n_parts: int, reader: str = "this process", margin: int = 32) -> None:
    """Room for every shard to be open at once, raising this process's soft limit toward the hard one.

    HDF5 keeps each source of a virtual dataset open once read and reads one
    it cannot open as zeros, without a word: with `ulimit -n 256`, 38,928 of
    46,928 images read back zero from a file over 1,467 shards.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    need = _open_files_now() + n_parts + margin  # and a few for whatever the caller opens next
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            return
        except (ValueError, OSError):
            pass
    limit = soft if hard == resource.RLIM_INFINITY else hard
    raise InputError(path, f"its {n_parts} shard files must all stay open while {reader} reads it, and a "
                           f"process may open {limit} files (ulimit -n); raise the limit, or rebuild with "
                           "--consolidate or a larger --shard-images")


def _open_files_now() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):  # Linux, macOS
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 64  # a guess at what a Python process holds


def _check_layout(f: h5py.File, path: Path) -> None:
    if f.attrs.get("format") != FORMAT_NAME:
        raise InputError(path, "not a galaxyprep file (no 'format' attribute); build it with `galaxyprep build`")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise InputError(path, f"galaxyprep format version {version}, this version reads {FORMAT_VERSION}")
    for name in ("images", "ids"):
        if name not in f:
            raise InputError(path, f"missing dataset '{name}'")
    images = f["images"]
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise InputError(path, f"'images' is {images.shape} {images.dtype}, expected (N, S, S, 3) uint8")
    if f["ids"].shape != (images.shape[0],):
        raise InputError(path, "'ids' and 'images' have different lengths")
    if "labels" in f:
        labels = f["labels"]
        columns = labels.attrs.get("columns")
        width = None if columns is None else len(columns)
        if labels.ndim != 2 or width is None or labels.shape != (images.shape[0], width):
            raise InputError(path, f"'labels' is {labels.shape} with {width} named columns, expected "
                                   f"({images.shape[0]}, its columns); rebuild it with `galaxyprep build`")


def is_galaxy_file(path: str | Path) -> bool:
    """Whether `path` is an HDF5 file that galaxyprep wrote (complete or not): one this tool may replace."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_NAME or "build_key" in f.attrs
    except (OSError, ValueError):
        return False


def read_info(path: str | Path) -> GalaxyFileInfo:
    """Summarize a galaxyprep file without reading its pixels."""
    with GalaxyFile(path) as f:
        return f.info


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class GalaxyFileWriter:
    """Streams images into a new galaxyprep file with bounded memory.

    Writes to ``<out>.partial`` and renames it to ``out`` only in `commit`, so
    that an interrupted or failed build never leaves a file that looks
    complete. Datasets are created at their largest extent (`n_max`) and cut to
    the rows written in `commit`: one resize, not one per block (each costs a
    metadata write). With `direct_io` (and no compression) every chunk of
    ``images`` is allocated up front and the pixels are written straight into
    it, with O_DIRECT where the file system allows (`direct_io.RawRowWriter`);
    rows announced but never written (images a build skipped) stay as unused
    file space, one image's bytes each.
    Otherwise whole uncompressed chunks go to the file with
    `write_direct_chunk`, past HDF5's selection and conversion machinery (5.8
    against 8 us per 96 px image, bench/RESULTS.md). Mean and std are
    accumulated from per-image channel sums as blocks arrive. `checkpoint`
    records progress in the partial file so that a build stopped by Ctrl-C or
    a kill can resume.
    """

    def __init__(self, out: str | Path, size: int, n_max: int, labels: LabelSchema | None,
                 chunk_images: int = 64, compression: str | None = None,
                 build_key: str = "", resume: bool = False, direct_io: bool = False):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.build_key = build_key
        self.n = 0
        self.n_max = max(n_max, 1)
        self.resume_state: dict = {}  # what the build asked `checkpoint` to keep
        self.discarded: str | None = None  # why a partial file of an earlier build was not resumed
        self._sums = np.zeros(6, dtype=np.float64)
        self._raw: RawRowWriter | None = None
        if resume and self._reopen(labels):
            self._start_raw(direct_io)
            return
        # No chunk cache: blocks arrive as whole chunks, and the default 1 MiB
        # cache only adds a copy of each (measured: 40 -> 7 us per 96 px image).
        self._f = _create_untimed(self.partial)
        chunk = max(1, min(chunk_images, self.n_max))
        n = self.n_max
        raw = direct_io and compression is None

        def early() -> dict:
            """File space for every chunk now, and no fill: rows are written in place, and the
            file's metadata does not change between checkpoints (a killed build can resume)."""
            if not raw:
                return {}
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            return {"dcpl": dcpl, "fill_time": "never"}

        self._images = self._f.create_dataset(
            "images", shape=(n, size, size, 3), maxshape=(None, size, size, 3), dtype=np.uint8,
            chunks=(chunk, size, size, 3), compression=compression,
            compression_opts=GZIP_LEVEL if compression == "gzip" else None, **early())
        self._ids = self._f.create_dataset("ids", shape=(n,), maxshape=(None,), dtype=np.int64,
                                           chunks=(max(chunk, 1024),), **early())
        self._labels = None
        if labels is not None:
            k = labels.width
            self._labels = self._f.create_dataset("labels", shape=(n, k), maxshape=(None, k),
                                                  dtype=np.float32, chunks=(max(chunk, 256), k), **early())
            _write_schema(self._labels, labels)
        self._start_raw(raw)

    def _start_raw(self, wanted: bool) -> None:
        """Write pixels in place when asked and every chunk of `images` has its file space."""
        offsets = chunk_offsets(self._images) if wanted else None
        if offsets is not None:
            d = self._images
            self._raw = RawRowWriter(self.partial, offsets, d.chunks[0], int(np.prod(d.shape[1:])))

    @property
    def direct_io(self) -> bool:
        """True when pixel rows bypass the page cache (O_DIRECT)."""
        return self._raw is not None and self._raw.direct

    def _reopen(self, labels: LabelSchema | None) -> bool:
        """Continue a partial file of the same build; False if there is none to continue."""
        if not self.partial.exists():
            return False
        try:
            f = h5py.File(self.partial, "a", rdcc_nbytes=0)
        except OSError:
            self.partial.unlink()
            return False
        try:
            if f.attrs.get("build_key", "") != self.build_key or _stored_schema(f) != labels:
                f.close()
                self.partial.unlink()
                return False
            self._images, self._ids = f["images"], f["ids"]
            self._labels = f["labels"] if labels is not None else None
            self.n = int(f.attrs.get("rows_done", 0))
            self.resume_state = json.loads(f.attrs.get("resume_state", "{}"))
            self._sums = np.asarray(f.attrs.get("channel_sums", np.zeros(6)), dtype=np.float64)
        except (KeyError, OSError, ValueError, RuntimeError) as exc:
            # A build killed before its first checkpoint can leave metadata HDF5 never flushed
            # (seen with compression: "bad object header version number").
            try:
                f.close()
            except Exception:  # noqa: BLE001 - a file we are about to delete
                pass
            self.partial.unlink()
            self.n, self.resume_state = 0, {}
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.discarded = (f"{self.partial}: the earlier build's partial file cannot be read ({reason}), "
                              "probably stopped before its first checkpoint; starting again")
            return False
        self._f = f
        for d in (self._images, self._ids, self._labels):
            if d is not None:  # rows after the checkpoint are rewritten
                d.resize(max(self.n_max, self.n), axis=0)
        return True

    def append(self, images: np.ndarray, ids: np.ndarray, labels: np.ndarray | None,
               channel_sums: np.ndarray) -> None:
        """Add a block; channel_sums is (B, 6): per-image sums and sums of squares of R, G, B."""
        k = images.shape[0]
        if k == 0:
            return
        lo, hi = self.n, self.n + k
        if hi > self._images.shape[0]:  # more rows than announced: grow (a caller's miscount, not the build)
            self._stop_raw()  # new chunks get their space when HDF5 writes them
            for d in (self._images, self._ids, self._labels):
                if d is not None:
                    d.resize(hi, axis=0)
        self._write_images(lo, images)
        self._ids[lo:hi] = ids
        if self._labels is not None:
            self._labels[lo:hi] = labels
        self._sums += channel_sums.sum(axis=0)
        self.n = hi

    def _write_images(self, lo: int, images: np.ndarray) -> None:
        """In place when allocated; else whole chunks directly, the rest (ragged ends) through HDF5."""
        if self._raw is not None:
            self._raw.write_rows(lo, images)
            return
        d = self._images
        hi = lo + images.shape[0]
        c = d.chunks[0]
        first = -(-lo // c) * c              # first chunk boundary at or after lo
        last = first + (hi - first) // c * c  # end of the whole chunks
        if d.compression is not None or last <= first:
            d[lo:hi] = images
            return
        if first > lo:
            d[lo:first] = images[: first - lo]
        whole = np.ascontiguousarray(images[first - lo: last - lo])
        # Before h5py 3.16 write_direct_chunk skipped that lock (h5py #2764): two threads writing their
        # own files (a --scheduler local build's shards) failed inside HDF5 or crashed.
        with _h5py_lock:
            for r in range(0, last - first, c):
                d.id.write_direct_chunk((first + r, 0, 0, 0), whole[r: r + c])
        if hi > last:
            d[last:hi] = images[last - lo:]

    def _stop_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def checkpoint(self, state: dict | None = None) -> None:
        """Record how far the build got (and the caller's JSON state) and flush.

        A build killed after this point resumes from here with --resume.
        """
        if state is not None:
            self.resume_state = state
        self._f.attrs["resume_state"] = json.dumps(self.resume_state)
        self._f.attrs["build_key"] = self.build_key
        self._f.attrs["rows_done"] = self.n
        self._f.attrs["channel_sums"] = self._sums
        self._f.flush()

    def commit(self, attrs: dict, shard_key: str | None = None) -> Path:
        """Write the attributes, close, and move the file into place.

        A shard of a cluster build (`shard_key`) also keeps its exact channel
        sums, from which the whole file's mean and std are combined.
        """
        self._stop_raw()
        for d in (self._images, self._ids, self._labels):
            if d is not None:
                d.resize(self.n, axis=0)
        a = self._f.attrs
        for key in ("build_key", "rows_done", _CHANNEL_SUMS, "resume_state"):
            if key in a:
                del a[key]
        _write_root_attrs(a, self.n, self._images.shape[1], self._sums, attrs)
        if shard_key is not None:
            a[_SHARD_KEY] = shard_key
            a[_CHANNEL_SUMS] = self._sums
        self._f.close()
        self.partial.replace(self.out)
        return self.out

    def abort(self, keep: bool = False) -> None:
        """Close; delete the partial file unless it is kept for --resume.

        A kept file resumes from its last `checkpoint`, whose row count and
        state agree; rows appended after it are written again when it is reopened.
        """
        try:
            self._stop_raw()
            if self._f.id.valid:
                self._f.close()
        except (OSError, RuntimeError):
            # Closing flushes: on a full disk that fails too (h5py's RuntimeError, which hid the
            # ENOSPC being handled). The error that brought us here is the one to report; a kept
            # file that could not be flushed is damaged, and --resume says so and starts again.
            pass
        finally:
            if not keep:
                self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "GalaxyFileWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._f.id.valid:  # not committed: an error or an interrupt
            self.abort(keep=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))


def _stored_schema(f: h5py.File) -> LabelSchema | None:
    """What the ``labels`` attributes of `f` say its columns are (None: no labels); `_write_schema` writes them."""
    if "labels" not in f:
        return None
    attrs = f["labels"].attrs
    return LabelSchema.from_stored(attrs["columns"], attrs.get("kinds"))


def _write_schema(labels: h5py.Dataset, schema: LabelSchema) -> None:
    labels.attrs["columns"] = np.array(schema.columns, dtype=h5py.string_dtype())
    labels.attrs["kinds"] = np.array(schema.kinds, dtype=h5py.string_dtype())


def _write_root_attrs(a, n: int, size: int, sums: np.ndarray, attrs: dict) -> None:
    """The format's root attributes: mean and std from the exact channel sums, then the build's own."""
    pixels = max(n, 1) * size * size
    mean = sums[:3] / pixels
    var = np.maximum(sums[3:] / pixels - mean**2, 0.0)
    a["format"] = FORMAT_NAME
    a["format_version"] = FORMAT_VERSION
    a["n_images"] = n
    a["mean"] = mean
    a["std"] = np.where(var > 0, np.sqrt(var), 1.0)
    a["normalization"] = NORMALIZATION
    for key, value in attrs.items():
        a[key] = json.dumps(value) if isinstance(value, (dict, list)) else value


@dataclass(frozen=True)
class _Shard:
    """What OUT needs to know of one shard of a cluster build."""

    path: Path
    n_images: int
    size: int
    labels: LabelSchema | None
    chunk_images: int
    compression: str | None
    datasets: dict  # name -> (shape, dtype)
    channel_sums: np.ndarray
    key: str | None = None
    fingerprint: str = ""


def _read_shards(parts: list[Path]) -> list[_Shard]:
    """Each shard's description, one open at a time: a build may have more shards than a process may open."""
    shards = []
    for path in parts:
        with GalaxyFile(path) as s:
            shards.append(_Shard(s.path, s.n_images, s.size, s.label_schema, s.chunk_images, s.compression,
                                 {k: (s._f[k].shape, s._f[k].dtype) for k in ("images", "ids", "labels") if k in s._f},
                                 s.channel_sums, s.shard_key, shard_fingerprint(s)))
    return shards


def write_virtual_galaxy_file(out: str | Path, parts: list[Path], attrs: dict) -> Path:
    """OUT as virtual datasets over the shard files `parts` (in GalaxyID order), atomically.

    Nothing is copied: OUT is a few kB of mappings, with shard paths relative
    to OUT's folder so that the two can move together. Mean and std come from
    the shards' exact channel sums, so they equal a plain build's.
    """
    out = Path(out)
    all_shards = _read_shards(parts)
    shards = [s for s in all_shards if s.n_images > 0] or all_shards[:1]
    n = sum(s.n_images for s in shards)
    size, schema = shards[0].size, shards[0].labels
    layouts = {"images": h5py.VirtualLayout((n, size, size, 3), np.uint8), "ids": h5py.VirtualLayout((n,), np.int64)}
    if schema is not None:
        layouts["labels"] = h5py.VirtualLayout((n, schema.width), np.float32)
    names, manifest, lo = [], [], 0
    for s in shards:
        name = os.path.relpath(s.path, out.parent)
        names.append(name)
        manifest.append({"file": name, "rows": [lo, lo + s.n_images], "key": s.key, "fingerprint": s.fingerprint})
        for key, layout in layouts.items():
            shape, dtype = s.datasets[key]
            layout[lo: lo + s.n_images] = h5py.VirtualSource(name, key, shape=shape, dtype=dtype)
        lo += s.n_images
    partial = out.with_name(out.name + ".partial")
    with _create_untimed(partial) as f:
        for key, layout in layouts.items():
            f.create_virtual_dataset(key, layout, fillvalue=0)
        if schema is not None:
            _write_schema(f["labels"], schema)
        _write_root_attrs(f.attrs, n, size, np.sum([s.channel_sums for s in shards], axis=0),
                          {**attrs, "parts": names, "shards": manifest, "chunk_images": shards[0].chunk_images,
                           "compression": shards[0].compression or ""})
    partial.replace(out)
    return out


def write_consolidated_galaxy_file(out: str | Path, parts: list[Path], attrs: dict, chunk_images: int,
                                   compression: str | None = None, direct_io: bool = True) -> Path:
    """OUT as one plain file holding the shards' rows, copied in order (the same data as a plain build)."""
    shards = _read_shards(parts)
    n = sum(s.n_images for s in shards)
    with GalaxyFileWriter(out, shards[0].size, n, shards[0].labels, chunk_images, compression,
                          direct_io=direct_io) as w:
        for path in parts:
            with GalaxyFile(path) as s:  # one at a time, as in _read_shards
                step = max(s.chunk_images, 256)
                for lo in range(0, s.n_images, step):
                    hi = min(lo + step, s.n_images)
                    # the shard's exact sums once, with its first block: mean and std as a plain build's
                    sums = s.channel_sums[None] if lo == 0 else np.zeros((1, 6))
                    w.append(s.images(lo, hi), s.ids[lo:hi], s.labels(lo, hi) if s.has_labels else None, sums)
        return w.commit(attrs)


def _create_untimed(path: Path) -> h5py.File:
    """A new file (no chunk cache) whose bytes depend only on what is written.

    HDF5 stamps the root group with its creation time unless told not to, so
    two builds of the same input a second apart differed in 20 bytes.
    """
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    # Not the newest superblock: its "open for writing" flag, left set by a killed build,
    # makes HDF5 refuse to reopen the partial file for --resume (h5clear would be needed).
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_LATEST)
    mdc, nslots, _, w0 = fapl.get_cache()
    fapl.set_cache(mdc, nslots, 0, w0)
    fapl.set_alignment(64 * 1024, 4096)  # large allocations (image chunks) on page boundaries, for O_DIRECT
    return h5py.File(h5py.h5f.create(bytes(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def write_galaxy_file(out: str | Path, images: np.ndarray, ids: np.ndarray,
                      labels: np.ndarray | None = None, *, crop: int = 0, source: str = "arrays",
                      chunk_images: int = 64, attrs: dict | None = None,
                      columns: tuple[str, ...] | None = None) -> Path:
    """Write whole in-memory arrays as a galaxyprep file (tests, small derived sets).

    `columns` names the labels' columns (default: the 37 Kaggle ones); their kinds come from the values.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    schema = None
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float32)
        schema = LabelSchema.of_values(CLASS_NAMES if columns is None else tuple(columns), labels)
    with GalaxyFileWriter(out, images.shape[1], images.shape[0], schema, chunk_images) as w:
        w.append(images, np.asarray(ids, dtype=np.int64), labels, _channel_sums(images))
        base = {"crop": crop, "size": images.shape[1], "source": source, "labels_source": "",
                "build_params": {}, "skipped": [], "galaxyprep_version": __version__, "decoder": "none"}
        base.update(attrs or {})
        return w.commit(base)


def _channel_sums(images: np.ndarray) -> np.ndarray:
    """(B, 6) per image: the sums and sums of squares of R, G, B (what `GalaxyFileWriter.append` takes)."""
    x = images.reshape(images.shape[0], -1, 3).astype(np.float64)
    return np.concatenate([x.sum(axis=1), (x * x).sum(axis=1)], axis=1)


def check_joinable(first: GalaxyFile, second: GalaxyFile) -> None:
    """One line naming `second` if its images are not `first`'s crop and size (the two cannot be joined)."""
    if (first.size, first.info.crop) != (second.size, second.info.crop):
        raise InputError(second.path, f"was built with --crop {second.info.crop} --size {second.size}, "
                                      f"{first.path} with --crop {first.info.crop} --size {first.size}: "
                                      "build both alike to join them")


def write_joined_galaxy_file(out: str | Path, first: GalaxyFile, second: GalaxyFile, second_labels: np.ndarray,
                             attrs: dict, made_from: dict | None = None, block_images: int = 256) -> Path:
    """The galaxies of two files of one build as one labelled file, GalaxyIDs ascending, streamed in blocks.

    `first` keeps its labels; `second`'s rows get `second_labels` (one row
    per galaxy of `second`, in its order: e.g. a model's answers for a test
    set). A galaxy of `second` that `first` holds too is left out: `first`'s
    label wins. Crop, build parameters and decoder are `first`'s; `attrs`
    adds to them (the source, and whatever says where the labels came from),
    and `made_from` (JSON) is what `GalaxyFile.made_from` reads back: what
    the caller needs to know whether the file is still the one it would make.
    Written through `GalaxyFileWriter`, so an interrupted join leaves no file;
    memory stays at one block of images, whatever the files hold.
    """
    check_joinable(first, second)
    schema = first.label_schema
    if schema is None:
        raise InputError(first.path, "has no labels; the first file of a join gives the labels' columns")
    second_labels = np.asarray(second_labels, dtype=np.float32)
    if second_labels.shape != (second.n_images, schema.width):
        raise InputError(second.path, f"holds {second.n_images} galaxies but {second_labels.shape[0]} label rows of "
                                      f"{second_labels.shape[1:]} columns were given for them (expected "
                                      f"{schema.width})")
    n_first = first.n_images
    added = np.flatnonzero(~np.isin(second.ids, first.ids))  # rows of `second` that join
    ids = np.concatenate([first.ids, second.ids[added]])
    order = np.argsort(ids, kind="stable")  # both parts ascending: any window of `order` is one
    size = first.size                         # contiguous range of each part
    block = max(1, min(block_images, (16 << 20) // (size * size * 3)))  # 16 MB of pixels (x8 for the sums)
    with GalaxyFileWriter(out, size, len(ids), schema, first.chunk_images) as w:
        for lo in range(0, len(ids), block):
            rows = order[lo:lo + block]
            from_first = rows < n_first
            a = rows[from_first]
            b = added[rows[~from_first] - n_first]
            images = np.empty((len(rows), size, size, 3), dtype=np.uint8)
            labels = np.empty((len(rows), schema.width), dtype=np.float32)
            if a.size:
                images[from_first] = first.images(int(a[0]), int(a[-1]) + 1)
                labels[from_first] = first.labels(int(a[0]), int(a[-1]) + 1)
            if b.size:
                images[~from_first] = second.images(int(b[0]), int(b[-1]) + 1)[b - b[0]]
                labels[~from_first] = second_labels[b]
            w.append(images, ids[rows], labels, _channel_sums(images))
        info = first.info
        base = {"crop": info.crop, "size": size, "build_params": info.build_params, "skipped": [],
                "galaxyprep_version": __version__, "decoder": info.decoder,
                "source": f"{info.source} + {second.info.source}", "labels_source": info.labels_source}
        base.update(attrs)
        if made_from is not None:
            base[_MADE_FROM] = json.dumps(made_from, sort_keys=True)
        return w.commit(base)
