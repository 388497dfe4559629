"""`galaxyprep build --scheduler`: the build as Dask tasks, one shard file each, then OUT over them.

h5py objects do not pickle and one HDF5 file cannot take writes from many
processes (dask #2488), so each task decodes one GalaxyID-ordered run of
images with the same kernels as a plain build and writes it as a shard
file, ``OUT.parts/part-NNNNN.h5``, itself a complete galaxyprep file that
keeps its exact channel sums. The client then writes OUT as virtual datasets
over the shards (or one copied file with ``consolidate``); its mean and std,
combined from the sums, are a plain build's bit for bit, and so is every
pixel, id and label.

A task writes under a name of its own and renames the finished shard into
place, so a worker killed mid-task (which Dask reschedules on another)
leaves only a stray file that the client removes, never a half shard.
`--resume` keeps the finished shards whose key matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .atomic import write_json_atomic
from .decode import DecodePlan
from .decode_pool import block_buffer, decode_resample
from .errors import InputError
from .galaxy_file import GalaxyFile, GalaxyFileWriter, write_consolidated_galaxy_file, write_virtual_galaxy_file
from .label_schema import LabelSchema
from .sources import ImageSource, Labels, Problem
from .version import __version__

if TYPE_CHECKING:  # build imports this module
    from .builder import BuildConfig, BuildSummary

#: A shard per this many images at least, and at most (a few hundred shards for any Galaxy Zoo set).
SHARD_IMAGES_MIN, SHARD_IMAGES_MAX = 1024, 65536
#: A shard's file: its build's generation, then its index. A rebuild writes a new generation beside the
#: old one, and OUT switches to it only when it is complete; a stale copy of OUT then finds its shards
#: gone, never a newer build's pixels under its old names.
_PART = "part-{gen}-{index:05d}.h5"
#: The marker of a generation being built, with its build key: --resume takes that generation up again.
_BUILDING = "building-{gen}.json"
CONNECT_TIMEOUT_S = 20  # to reach a scheduler given by address
ANSWER_GRACE_S = 10  # and this much more for it to answer Dask's handshake


def parts_folder(out: str | Path) -> Path:
    """Where a cluster build of `out` keeps its shard files: beside it, on the same storage."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def default_shard_images(n_images: int, chunk_images: int) -> int:
    """A power of two giving at most ~256 shards, within the bounds, a whole number of chunks.

    It depends only on the number of images (not on the cluster), so that a
    resumed build cuts the same shards.
    """
    want = max(SHARD_IMAGES_MIN, min(SHARD_IMAGES_MAX, -(-n_images // 256)))
    return _whole_chunks(1 << (want - 1).bit_length(), chunk_images)


def shard_bounds(n_images: int, chunk_images: int, shard_images: int | None = None) -> list[tuple[int, int]]:
    """Each shard's [start, stop): whole chunks, within one chunk of each other, none over the shard size.

    Equal shards keep the last round short: 5,866 images cut at 1,024 left one
    of two workers 746 images to do while the other did 1,024 (7% of the
    build). Whole chunks keep every chunk of the virtual dataset in one shard.
    """
    limit = _whole_chunks(shard_images, chunk_images) if shard_images else default_shard_images(n_images,
                                                                                                 chunk_images)
    chunks = -(-n_images // chunk_images)
    count = -(-n_images // limit)
    base, extra = divmod(chunks, count)  # base + 1 <= limit's chunks, as count = ceil(chunks / them)
    bounds, lo = [], 0
    for k in range(count):
        hi = min(n_images, lo + (base + (k < extra)) * chunk_images)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _whole_chunks(n: int, chunk: int) -> int:
    return -(-n // chunk) * chunk


@dataclass(frozen=True)
class ShardTask:
    """One shard: everything a worker needs, small enough to send (its own slice of the source)."""

    index: int
    source: ImageSource
    ids: np.ndarray
    labels: np.ndarray | None
    plan: DecodePlan
    out: str
    key: str
    record: dict  # the root attributes that say how the file was built (file_attrs)
    chunk_images: int
    compression: str | None
    batch_size: int
    direct_io: bool
    progress_topic: str = ""  # the Dask event topic that hears how far the shard is ("": none)
    label_schema: LabelSchema | None = None  # what the label columns are (with `labels`)


@dataclass(frozen=True)
class ShardResult:
    index: int
    n_written: int
    bad: list[Problem]


def build_shard(task: ShardTask) -> ShardResult:
    """Decode, resample and write one shard (runs on a Dask worker, one thread)."""
    out = Path(task.out)
    mine = out.with_name(f"{out.stem}.{uuid.uuid4().hex[:12]}.h5")  # this attempt's own name
    plan, size = task.plan, task.plan.size
    buf = block_buffer(plan)
    bad: list[Problem] = []
    batch = min(task.batch_size, len(task.ids))
    images_buf = np.empty((batch, size, size * 3), np.uint8)  # once a task: fresh pages cost faults
    sums_buf = np.empty((batch, 6), np.float64)
    report = _progress_reporter(task)
    with GalaxyFileWriter(mine, size, len(task.ids), task.label_schema if task.labels is not None else None,
                          task.chunk_images, task.compression,
                          direct_io=task.direct_io) as writer:
        for lo in range(0, len(task.ids), batch):
            ids = task.ids[lo: lo + batch]
            images, sums = images_buf[: len(ids)], sums_buf[: len(ids)]
            labels = None if task.labels is None else task.labels[lo: lo + len(ids)]
            errors = decode_resample(task.source, ids, plan, buf, images, sums)
            if errors:  # the usual case has none, and writes the buffers as they are
                ok = np.ones(len(ids), dtype=bool)
                for i, message in errors:
                    ok[i] = False
                    bad.append(Problem(task.source.describe(task.source.ids[int(ids[i])]), message))
                images, sums, ids = images[ok], sums[ok], ids[ok]
                labels = None if labels is None else labels[ok]
            writer.append(images.reshape(-1, size, size, 3), ids, labels, sums)
            report(min(lo + batch, len(task.ids)))
        writer.commit({**task.record, "skipped": [asdict(p) for p in bad]}, shard_key=task.key)
    os.replace(writer.out, out)
    return ShardResult(task.index, writer.n, bad)


def _progress_reporter(task: ShardTask) -> Callable[[int], None]:
    """Tells the client, as a Dask event, how many of the shard's images are done; a no-op outside a worker.

    A shard of GZ DESI (65,536 images) takes half a minute on a core, and a
    big cluster runs them all at once: counted by finished shards, progress
    would stand still and then jump to the end.
    """
    if not task.progress_topic:
        return lambda n: None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # called directly, not as a Dask task
        return lambda n: None
    return lambda n: worker.log_event(task.progress_topic, [task.index, n])  # safe from the task's thread


def finished_shard(task: ShardTask) -> ShardResult | None:
    """The result of a shard already on disk with this task's key (for --resume), else None."""
    path = Path(task.out)
    if not path.is_file():
        return None
    try:
        with GalaxyFile(path) as f:
            if f.shard_key != task.key:
                return None
            return ShardResult(task.index, f.n_images, [Problem(**p) for p in f.info.skipped])
    except InputError:  # damaged or foreign: built again
        return None


def _worker_check(parts: str, images: str, version: str) -> str:
    """Runs on every worker: what it cannot see or run, or '' (the storage and the version must be shared)."""
    for path in (parts, images):
        if not os.path.exists(path):
            return f"cannot see {path}"
    return "" if __version__ == version else f"runs galaxyprep {__version__}"


def build_on_cluster(session: ClusterSession, source: ImageSource, ids: np.ndarray, labels: Labels | None,
                     plan: DecodePlan, problems: list[Problem], config: BuildConfig, summary: BuildSummary,
                     say: Callable[[str], None], progress: Callable[[int, int], None] | None) -> None:
    """Build OUT from shards decoded on a Dask cluster; fills in `summary` as a plain build does."""
    from .builder import build_key, file_attrs, file_layout

    out = Path(config.out)
    parts = parts_folder(out).resolve()
    chunk, compression = file_layout(config)
    # Connected before OUT.parts/ is touched: a rebuild whose scheduler cannot be reached leaves the
    # old shards (and so the old OUT) as they were, and no empty folder.
    client = session.client()
    _prepare_parts_folder(parts)
    _check_workers(client, parts, os.path.abspath(config.images))  # a worker's working folder is not ours
    base_key = build_key(config, ids)
    bounds = shard_bounds(len(ids), chunk, config.shard_images)
    keys = [hashlib.sha256(f"{base_key}|{index}|".encode() + ids[lo:hi].tobytes()).hexdigest()[:32]
            for index, (lo, hi) in enumerate(bounds)]
    gen = _generation(parts, base_key, keys, config.resume)
    attrs = file_attrs(config, summary, [])
    topic = f"galaxyprep-progress-{uuid.uuid4().hex}"  # this build's own
    tasks = []
    for index, ((lo, hi), key) in enumerate(zip(bounds, keys)):
        part_ids = ids[lo: hi]
        y = None if labels is None else np.stack([labels.values[int(g)] for g in part_ids])
        shard = str(parts / _PART.format(gen=gen, index=index))
        tasks.append(ShardTask(index, source.subset(part_ids), part_ids, y, plan, shard, key, attrs, chunk,
                               compression, config.batch_size, config.direct_io, topic,
                               None if labels is None else labels.schema))
    results: dict[int, ShardResult] = {}
    if config.resume:
        for task in tasks:
            if (done := finished_shard(task)) is not None:
                results[task.index] = done
    summary.resumed_from = sum(r.n_written for r in results.values())
    todo = [t for t in tasks if t.index not in results]
    total = len(ids)
    done_ids = sum(len(t.ids) for t in tasks if t.index in results)
    if progress:
        progress(done_ids, total)
    try:
        _run(client, todo, results, config.on_error, say, lambda n: progress and progress(n, total), done_ids, topic)
    except InputError:
        if config.on_error == "fail":  # nothing written means no shards of this build either
            _remove_all_but(parts, keep=_files_of_out(out, parts))
            _remove_empty(parts)
        raise
    ordered = [results[t.index] for t in tasks]
    skipped = problems + [p for r in ordered for p in r.bad]
    summary.skipped = skipped
    summary.n_written = sum(r.n_written for r in ordered)
    if summary.n_written == 0:
        raise InputError(config.images, "no image could be decoded; nothing written")
    shard_files = [Path(t.out) for t in tasks]
    final = file_attrs(config, summary, skipped)
    if config.consolidate:
        write_consolidated_galaxy_file(out, shard_files, final, chunk, compression, config.direct_io)
        _remove_all_but(parts, keep=set())  # the old generation's too: the plain OUT replaced its OUT
        _remove_empty(parts)
    else:
        write_virtual_galaxy_file(out, shard_files, final)  # the switch: OUT now maps this generation
        _remove_all_but(parts, keep={p.name for p in shard_files})
        summary.parts = shard_files


#: How often the client counts the images the workers report done (seconds).
PROGRESS_EVERY_S = 0.5


def _run(client, todo: list[ShardTask], results: dict[int, ShardResult], on_error: str,
         say: Callable[[str], None], advance: Callable[[int], None], done_ids: int, topic: str) -> None:
    """Submit the shards and collect them as they finish, in any order; problems said as they come.

    Progress counts finished shards whole and, of the running ones, the
    images their workers report (Dask events, one a batch), every
    PROGRESS_EVERY_S; the callbacks all run in this thread.
    """
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    running: dict[int, int] = {}  # shard index -> images its worker reported done
    closed: set[int] = set()      # finished: a late event (or a retried attempt's) no longer counts
    lock = threading.Lock()

    def heard(event) -> None:  # on the client's event loop
        index, n = event[1]
        with lock:
            if index not in closed:
                running[index] = max(running.get(index, 0), n)

    futures: list = []
    client.subscribe_topic(topic, heard)
    try:
        futures = client.map(build_shard, todo, pure=False,
                             key=[f"galaxyprep-shard-{t.index}-{t.key[:8]}" for t in todo])
        by_key = {f.key: t for f, t in zip(futures, todo)}
        finished: queue.Queue = queue.Queue()  # each future as it ends, put there from the client's loop
        for future in futures:
            future.add_done_callback(finished.put)
        remaining, last = len(futures), done_ids
        while remaining:
            for future in _ended(finished, PROGRESS_EVERY_S):
                remaining -= 1
                task = by_key[future.key]
                try:
                    result = future.result()
                except KilledWorker:
                    raise InputError(task.source.describe(task.source.ids[int(task.ids[0])]),
                                     f"shard {task.index} ({len(task.ids)} images from here) killed its worker "
                                     "each time it ran (a crash in the decoder, or out of memory); the finished "
                                     "shards are kept: rerun with --resume") from None
                results[task.index] = result
                for problem in result.bad:
                    say(str(problem))
                if on_error == "fail" and result.bad:
                    p = result.bad[0]
                    raise InputError(p.file, p.problem + " (--on-error fail: nothing written)")
                done_ids += len(task.ids)
                with lock:
                    closed.add(task.index)
                    running.pop(task.index, None)
            with lock:
                now = done_ids + sum(running.values())
            if now != last:
                advance(now)
                last = now
    except (InputError, KeyboardInterrupt, FutureCancelledError):
        client.cancel(futures)
        raise
    finally:
        if client.status == "running":  # a lost scheduler is the error to report, not this
            client.unsubscribe_topic(topic)


def _ended(finished: queue.Queue, timeout: float) -> list:
    """The futures that have ended: waits up to `timeout` for the first, then takes what else is there."""
    try:
        ended = [finished.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            ended.append(finished.get_nowait())
        except queue.Empty:
            return ended


class ClusterSession:
    """A Dask client, connected in a background thread while the build indexes its inputs.

    Importing Dask (0.2-0.45 s) and starting a LocalCluster or reaching a
    remote scheduler overlap with listing the images, reading the labels and
    planning the decode, which a build does first anyway.
    """

    def __init__(self, config: BuildConfig):
        self._config = config
        self._stack = ExitStack()
        # A daemon thread, not an executor's: a connection that never completes (a port that is not a
        # Dask scheduler's) must not keep the process alive at exit.
        self._future: Future = Future()
        threading.Thread(target=self._connect_into_future, name="dask-connect", daemon=True).start()

    def _connect_into_future(self) -> None:
        try:
            self._future.set_result(self._connect())
        except BaseException as exc:  # handed to the build's thread by client()
            self._future.set_exception(exc)

    def _connect(self):
        try:  # in this thread: importing distributed takes 0.2-0.45 s
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("--scheduler", "needs dask.distributed: pip install 'galaxyzoo-toolkit[cluster]'") \
                from None
        config, stack = self._config, self._stack
        if config.scheduler == "local":
            workers = config.workers or os.cpu_count() or 1
            # ":0": the status page (and HTTP routes, served even without the dashboard) on a free port;
            # silenced: a restarted worker is ours to report
            common = dict(dashboard_address=":0", silence_logs=logging.CRITICAL)
            if config.processes:
                # Started as Dask's configuration says (spawn by default), never forked here: this process
                # runs Dask's threads and perhaps a progress bar's, and a child forked while one of them
                # held a lock (stderr's, seen in CI) waits for it forever. Spawned workers import anew:
                # ~0.8 s more than threads.
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, **common)
            else:
                # Threads of this process, Dask's choice for work that releases the GIL: the decode is one
                # GIL-free C call per 8 images (or a nogil numba kernel). It starts in 30 ms where forked
                # workers took 100-250 ms of a 0.65 s build, and spawned ones ~0.8 s.
                cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=False, **common)
            stack.callback(cluster.close)
            target = cluster
        else:
            target = _checked_address(config.scheduler)
        # Not the default client, and closed by close() rather than as a context manager: it is made in
        # this thread and closed in the build's (a client's context variable belongs to its thread).
        try:
            client = Client(target, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {config.scheduler}", f"cannot reach the Dask scheduler ({exc})") from None
        stack.callback(client.close)
        return client

    def client(self):
        """The connected client (waits for the connection; raises its InputError).

        A remote address gets CONNECT_TIMEOUT_S plus ANSWER_GRACE_S in all:
        Dask's own timeout covers reaching the port, not a service there that
        accepts the connection and never answers Dask's handshake (an HTTP
        server: it waited 12 minutes, holding the output's lock).
        """
        if self._config.scheduler == "local":
            return self._future.result()  # our own cluster starting: it ends, one way or the other
        try:
            return self._future.result(timeout=CONNECT_TIMEOUT_S + ANSWER_GRACE_S)
        except FutureTimeout:
            raise InputError(f"--scheduler {self._config.scheduler}",
                             f"no Dask scheduler answered within {CONNECT_TIMEOUT_S + ANSWER_GRACE_S} s: the port "
                             "accepts connections but does not speak Dask's protocol (a dashboard or other "
                             "HTTP port?); give the scheduler's address, tcp://HOST:8786 by default") from None

    def close(self) -> None:
        if self._config.scheduler == "local" or self._future.done():
            try:
                self._future.result()  # never leave a cluster starting behind us
            except Exception:  # its error was raised to the build already, or the build failed before
                pass
        self._stack.close()

    def __enter__(self) -> "ClusterSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _checked_address(address: str) -> str:
    """A scheduler address as Dask reads it, or one line: a Client made from a malformed one failed
    and then, at exit, spent 40 s closing and printed a traceback."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=False)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as exc:
        raise InputError(f"--scheduler {address}", f"not a scheduler address ({exc}); give local or "
                                                   "tcp://HOST:PORT") from None
    return address


def _check_workers(client, parts: Path, images: str) -> None:
    answers = client.run(_worker_check, str(parts), images, __version__)
    if not answers:
        raise InputError(f"--scheduler {client.scheduler.address}", "the cluster has no workers")
    for worker, problem in sorted(answers.items()):
        if problem:
            raise InputError(f"worker {worker}", f"{problem}; the images and the output's folder must be on "
                                                 f"storage every worker mounts at the same path, and every worker "
                                                 f"must run galaxyprep {__version__}")


def _prepare_parts_folder(parts: Path) -> None:
    """Create the shard folder; one holding anything but our shards and markers is refused.

    Nothing is removed here: a rebuild writes its own generation beside the
    shards of the OUT it replaces, which stays readable until the new one is
    complete.
    """
    if parts.exists() and not parts.is_dir():
        raise InputError(parts, "exists and is not a folder; a cluster build keeps its shards there")
    parts.mkdir(parents=True, exist_ok=True)
    foreign = [p.name for p in parts.iterdir() if not _ours(p.name)]
    if foreign:
        raise InputError(parts, f"holds files a cluster build did not write ({', '.join(sorted(foreign)[:3])}); "
                                "refusing to write shards there")


def _ours(name: str) -> bool:
    return (name.startswith("part-") and ".h5" in name) or name.startswith("building-") \
        or (name.startswith(".building-") and name.endswith(".tmp"))


def _generation(parts: Path, key: str, shard_keys: list[str], resume: bool) -> str:
    """This build's generation: with --resume, the one whose shards it can take up; else a new one.

    An interrupted build left its marker (with its build key); a finished
    one whose OUT was lost left only its shards, found by their shard keys.
    """
    if resume:
        marked = []
        for marker in sorted(parts.glob(_BUILDING.format(gen="*"))):
            try:
                if json.loads(marker.read_text(encoding="utf-8")).get("key") == key:
                    marked.append(marker.name[len("building-"):-len(".json")])
            except (OSError, ValueError):
                continue
        found = {p.name.split("-")[1] for p in parts.glob("part-*-*.h5")}
        for gen in marked + sorted(found - set(marked)):
            if any(_holds(parts / _PART.format(gen=gen, index=i), k) for i, k in enumerate(shard_keys)):
                write_json_atomic(parts / _BUILDING.format(gen=gen), {"key": key})
                return gen
        if marked:
            return marked[0]
    gen = uuid.uuid4().hex[:8]
    write_json_atomic(parts / _BUILDING.format(gen=gen), {"key": key})
    return gen


def _holds(path: Path, shard_key: str) -> bool:
    """Whether `path` is a finished shard of that key."""
    if not path.is_file():
        return False
    try:
        with GalaxyFile(path) as f:
            return f.shard_key == shard_key
    except InputError:
        return False


def _files_of_out(out: Path, parts: Path) -> set[str]:
    """The shard files a complete OUT maps (none if OUT is not a readable virtual file)."""
    try:
        with GalaxyFile(out) as f:
            return {p.name for p in f.parts if p.parent.resolve() == parts.resolve()}
    except InputError:
        return set()


def _remove_all_but(parts: Path, keep: set[str]) -> None:
    """Every shard, attempt and marker in `parts` but the files named in `keep`."""
    for p in parts.iterdir():
        if p.name not in keep and _ours(p.name):
            p.unlink(missing_ok=True)


def _remove_empty(parts: Path) -> None:
    try:
        parts.rmdir()
    except OSError:  # a file of someone else's, or of a complete OUT: kept
        pass
