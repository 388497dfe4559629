"""`galaxyprep build`: JPEGs + labels -> one chunked HDF5 file.

A pool of worker processes (`decode_pool`) decodes (the centre window with
the C extension, or whole frames with simplejpeg) and crops, resamples and
measures each few images while they are still in the core's cache, a few
batches ahead of the HDF5 writes in the main process. Shared batch slots turn in rotation: memory stays flat whatever
the number of images, and the cores stay busy.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, deque
from contextlib import ExitStack
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .decode import DecodePlan, make_plan, probe_size, window_decoder_available
from .decode_pool import DecodePool
from .errors import InputError
from .galaxy_file import GalaxyFileWriter, is_galaxy_file
from .outputs import check_output, disk_errors, exclusive_lock
from .sources import ImageSource, Labels, Problem, read_id_list, read_labels
from .split import HOLDOUT_FRACTION, HOLDOUT_SEED, in_holdout
from .version import __version__

ON_ERROR = ("skip", "fail")
CHECKPOINT_EVERY = 8  # batches between resume checkpoints (each flushes the file)
MAX_PIXELS = 64 * 10**6  # far above any survey cutout (Kaggle: 424x424), far below a decompression bomb
AHEAD = 3             # batches decoding while one is written (3 measured a little steadier than 2)
COMPRESSION = ("none", "gzip", "lzf")
SPLITS = ("train", "holdout")


@dataclass
class BuildConfig:
    """Every parameter of a build; stored in the file's `build_params`."""

    images: Path
    out: Path
    labels: Path | None = None
    crop: int = 200
    size: int = 96
    workers: int | None = None       # decode workers (forked processes, threads where fork is not native); default: all cores
    limit: int | None = None         # first N galaxies by GalaxyID
    ids_file: Path | None = None     # only these GalaxyIDs
    on_error: str = "skip"           # skip: leave bad items out and list them; fail: stop, write nothing
    resume: bool = False             # continue an interrupted build's .partial file
    compression: str = "none"        # none | gzip | lzf
    chunk_images: int | None = None  # images per HDF5 chunk; default about 1 MiB a chunk
    batch_size: int = 256            # images per decode/resample batch
    dct_scaling: bool = True         # decode at a reduced scale in the DCT domain where possible
    processes: bool | None = None    # decode in forked processes (default where fork is native) or threads;
                                     # --scheduler local: spawned worker processes if True (default: threads)
    direct_io: bool = True           # pixels written in place with O_DIRECT where the file system allows
    crop_decode: bool = True         # decode only the centre window (the C extension), where it was built
    overwrite: bool = False          # replace an existing --out that is not a galaxyprep file
    scheduler: str | None = None     # "local" (a LocalCluster of this machine's cores) or a Dask scheduler's address
    shard_images: int | None = None  # images per shard file of a cluster build; default from the number of images
    consolidate: bool = False        # cluster build: copy the shards into one plain file instead of virtual datasets
    split: str | None = None         # train | holdout: only that side of the GalaxyID hash split (galaxyprep.split)
    holdout_fraction: float = HOLDOUT_FRACTION  # --split: the holdout's share of the galaxies
    split_seed: int = HOLDOUT_SEED   # --split: the hash's seed

    def validate(self) -> None:
        if self.on_error not in ON_ERROR:
            raise InputError("--on-error", f"{self.on_error!r} is not one of {', '.join(ON_ERROR)}")
        if self.compression not in COMPRESSION:
            raise InputError("--compression", f"{self.compression!r} is not one of {', '.join(COMPRESSION)}")
        for name in ("crop", "size", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", "must be at least 1")
        if (self.consolidate or self.shard_images is not None) and self.scheduler is None:
            option = "--consolidate" if self.consolidate else "--shard-images"
            raise InputError(option, "only applies to a cluster build; add --scheduler local or an address")
        if self.split is not None and self.split not in SPLITS:
            raise InputError("--split", f"{self.split!r} is not one of {', '.join(SPLITS)}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise InputError("--holdout-fraction", f"must be between 0 and 1, got {self.holdout_fraction}")
        if self.size > self.crop:
            raise InputError("--size", f"{self.size} is larger than --crop {self.crop}: that would upsample")
        for name in ("limit", "workers", "chunk_images", "shard_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')}", f"must be at least 1, got {value}")

    def params(self) -> dict:
        """The parameters that make the file (not `overwrite`, which only says what may be replaced)."""
        d = asdict(self)
        del d["overwrite"]
        if self.scheduler is None:  # a plain build's record (and bytes) as before the cluster options
            for key in ("scheduler", "shard_images", "consolidate"):
                del d[key]
        if self.split is None:  # likewise without a split
            for key in ("split", "holdout_fraction", "split_seed"):
                del d[key]
        for key in ("images", "out", "labels", "ids_file"):
            d[key] = None if d[key] is None else str(d[key])
        return d


@dataclass
class BuildSummary:
    """What a build did, for the terminal summary and for tests."""

    out: Path
    n_written: int
    skipped: list[Problem] = field(default_factory=list)
    images_without_labels: int = 0
    labels_without_images: int = 0
    not_in_id_list: int = 0
    left_by_id_list: int = 0     # images (with labels, if any) that the --ids list did not name
    other_split: int = 0         # images on the other side of --split
    split: str = ""              # how --split chose, for the summary line
    ignored_files: int = 0
    duplicates: list[str] = field(default_factory=list)  # GalaxyIDs stored twice with the same bytes: one used
    seconds: float = 0.0
    resumed_from: int = 0
    plan: dict = field(default_factory=dict)
    decoder: str = ""
    parts: list[Path] = field(default_factory=list)  # the shard files a virtual OUT reads from
    labels: str = ""  # what the label columns are (LabelSchema.describe), for the summary

    @property
    def images_per_second(self) -> float:
        return (self.n_written - self.resumed_from) / max(self.seconds, 1e-9)

    def lines(self) -> list[str]:
        mb = sum(p.stat().st_size for p in [self.out, *self.parts] if p.exists()) / 1e6
        out = [f"wrote {self.n_written:,} images to {self.out} ({mb:,.1f} MB) in {self.seconds:.1f} s "
               f"({self.images_per_second:,.0f} images/s)"]
        if self.decoder:
            out.append(f"decoder: {self.decoder}")
        if self.labels:
            out.append(f"labels: {self.labels}")
        if self.resumed_from:
            out.append(f"resumed after {self.resumed_from:,} images already written")
        if self.skipped:
            kinds = Counter(p.problem.split(" (")[0].split(",")[0] for p in self.skipped)
            out.append(f"left out {len(self.skipped):,} item(s): " + "; ".join(f"{n} x {k}" for k, n in kinds.most_common()))
        if self.images_without_labels:
            out.append(f"{self.images_without_labels:,} image(s) have no label row: not built")
        if self.labels_without_images:
            out.append(f"{self.labels_without_images:,} label row(s) have no image: not built")
        if self.left_by_id_list:
            out.append(f"{self.left_by_id_list:,} image(s) not in the --ids list: not built")
        if self.not_in_id_list:
            out.append(f"{self.not_in_id_list:,} ID(s) of the --ids list were not found")
        if self.other_split:
            out.append(f"{self.other_split:,} image(s) of the other side of the split: not built ({self.split})")
        if self.ignored_files:
            out.append(f"ignored {self.ignored_files:,} file(s) not named <GalaxyID>.jpg")
        if self.duplicates:
            out.append(f"{len(self.duplicates):,} GalaxyID(s) stored more than once with the same bytes, one copy "
                       f"used: {'; '.join(self.duplicates[:3])}" + (" ..." if len(self.duplicates) > 3 else ""))
        return out


def default_chunk_images(size: int) -> int:
    """Whole images per chunk, about 1 MiB (h5py's default chunk cache), a power of two."""
    per = max(1, (1 << 20) // (size * size * 3))
    return 1 << (per.bit_length() - 1)


def build(config: BuildConfig, progress: Callable[[int, int], None] | None = None,
          report: Callable[[str], None] | None = None) -> BuildSummary:
    """Build the HDF5 file; raises InputError (one line) for anything the user must fix.

    progress(done, total) is called after each batch; report(line) for each
    problem as it is found, so the user sees them even during a long build.
    """
    config.validate()
    check_output(config.out, [("--images", config.images), ("--labels", config.labels), ("--ids", config.ids_file)],
                 is_galaxy_file, "galaxyprep HDF5 file", config.overwrite)
    with exclusive_lock(config.out):  # one build per output, for the whole build
        return _build(config, progress, report)


def _build(config: BuildConfig, progress: Callable[[int, int], None] | None,
           report: Callable[[str], None] | None) -> BuildSummary:
    t0 = time.perf_counter()
    say = report or (lambda line: None)
    with ExitStack() as stack:
        session = None
        if config.scheduler is not None:  # connects while the inputs are indexed
            from .cluster_build import ClusterSession, build_on_cluster

            session = stack.enter_context(ClusterSession(config))
        source = ImageSource(config.images)
        summary = BuildSummary(out=Path(config.out), n_written=0, ignored_files=source.ignored,
                               duplicates=list(source.duplicates))
        ids, labels, problems = _select(source, config, summary, say)
        plan = _plan_from_sample(source, ids, config)
        summary.plan = plan.describe()
        summary.decoder = _decoder_name(plan, config.dct_scaling)
        with disk_errors(config.out, "nothing written"):  # creating, filling or committing the file
            if session is not None:
                build_on_cluster(session, source, ids, labels, plan, problems, config, summary, say, progress)
            else:
                _write_file(source, ids, labels, plan, problems, config, summary, say, progress)
    summary.seconds = time.perf_counter() - t0
    return summary


def _select(source: ImageSource, config: BuildConfig, summary: BuildSummary,
            say: Callable[[str], None]) -> tuple[np.ndarray, Labels | None, list[Problem]]:
    """The GalaxyIDs to build, in order, with their labels and the input's problems (said as found)."""
    problems: list[Problem] = list(source.problems)
    ids = np.array(sorted(source.ids), dtype=np.int64)
    labels = None
    if config.labels is not None:
        labels = read_labels(config.labels)
        problems.extend(labels.problems)
        summary.labels = labels.schema.describe()
        have = np.isin(ids, np.fromiter(labels.values.keys(), dtype=np.int64, count=len(labels.values)))
        summary.images_without_labels = int((~have).sum())
        summary.labels_without_images = len(labels.values) - int(have.sum())
        ids = ids[have]
    if config.ids_file is not None:
        wanted = read_id_list(config.ids_file)
        keep = np.isin(ids, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
        summary.not_in_id_list = len(wanted) - int(keep.sum())
        summary.left_by_id_list = int((~keep).sum())
        ids = ids[keep]
    if config.split is not None:
        held = in_holdout(ids, config.holdout_fraction, config.split_seed)
        keep = held if config.split == "holdout" else ~held
        summary.other_split = int((~keep).sum())
        held_out = f"the {config.holdout_fraction:.0%} of GalaxyIDs the hash holds out (seed {config.split_seed})"
        summary.split = f"--split {config.split}: " + (held_out if config.split == "holdout" else "all but " + held_out)
        ids = ids[keep]
    if config.limit is not None:
        ids = ids[: config.limit]
    for p in problems:
        say(str(p))
    if config.on_error == "fail" and problems:
        raise InputError(problems[0].file, problems[0].problem + " (--on-error fail: nothing written)")
    if len(ids) == 0:
        raise InputError(config.images, "no images to build" + (" (none has a label row)" if labels else ""))
    return ids, labels, problems


def file_attrs(config: BuildConfig, summary: BuildSummary, skipped: list[Problem]) -> dict:
    """The root attributes that say how a file was built (the writer adds the format's own)."""
    return {
        "crop": config.crop,
        "size": config.size,
        "source": str(config.images),
        "labels_source": "" if config.labels is None else str(config.labels),
        "build_params": config.params(),
        "decode_plan": summary.plan,
        "decoder": summary.decoder,
        "galaxyprep_version": __version__,
        "skipped": [asdict(p) for p in skipped],
        "images_without_labels": summary.images_without_labels,
        "labels_without_images": summary.labels_without_images,
    }


def file_layout(config: BuildConfig) -> tuple[int, str | None]:
    """Images per HDF5 chunk and the compression filter (None for 'none'), for a plain file or every shard."""
    chunk = config.chunk_images or default_chunk_images(config.size)
    return chunk, None if config.compression == "none" else config.compression


def _write_file(source: ImageSource, ids: np.ndarray, labels, plan: DecodePlan, problems: list[Problem],
                config: BuildConfig, summary: BuildSummary, say, progress) -> None:
    """Decode into a new (or resumed) partial file and commit it; fills in `summary`."""
    chunk, compression = file_layout(config)
    key = build_key(config, ids)
    with GalaxyFileWriter(config.out, config.size, len(ids), None if labels is None else labels.schema, chunk,
                          compression, build_key=key, resume=config.resume, direct_io=config.direct_io) as writer:
        if writer.discarded:
            say(writer.discarded)
        # a resumed partial file carries how many ids it had consumed and what was bad among them
        start = int(writer.resume_state.get("ids_done", 0))
        bad = [Problem(**p) for p in writer.resume_state.get("bad", [])]
        summary.resumed_from = writer.n if start else 0
        try:
            _run_batches(source, ids, start, plan, config, writer, labels, bad, say, progress)
        except BrokenProcessPool:
            raise InputError(config.images, "a decode worker process died (killed, out of memory, or a crash "
                                            "in the JPEG decoder); nothing written, rerun the build") from None
        skipped = problems + bad
        summary.skipped = skipped
        summary.n_written = writer.n
        if writer.n == 0:
            raise InputError(config.images, "no image could be decoded; nothing written")
        writer.commit(file_attrs(config, summary, skipped))


def _plan_from_sample(source: ImageSource, ids: np.ndarray, config: BuildConfig) -> DecodePlan:
    """Plan from the most common JPEG size among the first images: one odd file cannot set it."""
    sizes: Counter = Counter()
    for gid in ids[:64]:
        try:
            sizes[probe_size(source.read(int(gid)))] += 1
        except (ValueError, OSError):
            continue
    if not sizes:
        raise InputError(config.images, "none of the first images is a readable JPEG")
    (height, width), _ = sizes.most_common(1)[0]
    if height * width > MAX_PIXELS:  # refused from the header, before anything is allocated for it
        raise InputError(config.images, f"the JPEG headers say {width}x{height} pixels, over the "
                                        f"{MAX_PIXELS // 10**6} Mpx this tool decodes: not a Galaxy Zoo cutout")
    try:
        return make_plan(height, width, config.crop, config.size, config.dct_scaling,
                         window=config.crop_decode and window_decoder_available())
    except ValueError as exc:
        raise InputError("--crop", str(exc)) from None


def build_key(config: BuildConfig, ids: np.ndarray) -> str:
    """What must match for --resume to continue a partial file."""
    params = config.params()
    for volatile in ("workers", "resume", "batch_size", "on_error", "processes", "direct_io", "scheduler",
                     "consolidate"):
        params.pop(volatile, None)
    digest = hashlib.sha256(ids.tobytes()).hexdigest()[:16]
    return json.dumps({"params": params, "ids": digest, "version": __version__}, sort_keys=True)


def _run_batches(source: ImageSource, ids: np.ndarray, start: int, plan: DecodePlan, config: BuildConfig,
                 writer: GalaxyFileWriter, labels, bad: list[Problem], say, progress) -> None:
    """Decode and resample on the pool, AHEAD batches ahead of the HDF5 writes.

    The main process only writes. Images that fail to decode are appended to
    `bad` (or stop the build with --on-error fail). Every CHECKPOINT_EVERY
    batches the writer records how many ids were consumed, for --resume.
    """
    workers = config.workers or os.cpu_count() or 1
    bsz = config.batch_size
    size = plan.size
    batches = [ids[i: i + bsz] for i in range(start, len(ids), bsz)]
    in_flight: deque[list[Future]] = deque()
    # AHEAD + 1 slots turn in rotation: AHEAD batches decoding while one is written.
    slots = AHEAD + 1
    with DecodePool(source, plan, bsz, slots, workers, processes=config.processes) as pool:
        for k in range(min(AHEAD, len(batches))):
            in_flight.append(pool.submit(k % slots, batches[k]))
        if progress:
            progress(start, len(ids))
        for k, batch in enumerate(batches):
            errors = [e for f in in_flight.popleft() for e in f.result()]
            if k + AHEAD < len(batches):  # into the slot of batch k - 1, written
                in_flight.append(pool.submit((k + AHEAD) % slots, batches[k + AHEAD]))
            ok = np.ones(len(batch), dtype=bool)
            for i, message in errors:
                ok[i] = False
                problem = Problem(source.describe(source.ids[int(batch[i])]), message)
                say(str(problem))
                if config.on_error == "fail":
                    raise InputError(problem.file, problem.problem + " (--on-error fail: nothing written)")
                bad.append(problem)
            out, sm = pool.images[k % slots, : len(batch)], pool.sums[k % slots, : len(batch)]
            if not ok.all():
                out, sm = out[ok], sm[ok]
            kept = batch[ok]
            y = None
            if labels is not None:
                y = (np.stack([labels.values[int(g)] for g in kept]) if len(kept)
                     else np.empty((0, labels.schema.width), np.float32))
            writer.append(out.reshape(len(kept), size, size, 3), kept, y, sm)
            del out, sm
            consumed = min(start + (k + 1) * bsz, len(ids))
            if (k + 1) % CHECKPOINT_EVERY == 0:
                writer.checkpoint({"ids_done": consumed, "bad": [asdict(p) for p in bad]})
            if progress:
                progress(consumed, len(ids))


def _decoder_name(plan: DecodePlan, dct_scaling: bool) -> str:
    scaling = "DCT scaling" if dct_scaling else "full-size decode"
    if plan.window is not None:
        return f"galaxyprep window decoder (system libjpeg-turbo, centre window only, {scaling})"
    import simplejpeg

    return f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo, full frame, {scaling})"
