"""Training under tf.distribute: which process this is, the strategy, each replica's share of the data.

``fit --strategy mirrored`` trains on the GPUs of one machine (on a machine
without one, on its logical CPU devices); ``--strategy multi-worker`` on the
processes that ``TF_CONFIG`` lists, one or more devices each. Either way
``--batch-size`` is per replica: a step takes batch_size x replicas images
(the global batch), and the learning rate is used as given, not scaled.

Input. Keras wraps a PyDataset in a generator dataset under a strategy,
which cannot be sharded by file, so every worker would read every batch
and keep its part (tensorflow #42146); and `on_epoch_end`, which reshuffles
a PyDataset, is not called through that wrapper (same issue). So under a
strategy the input is `distribute_datasets_from_function`: each worker's
pipeline is ``Dataset.range`` over global steps, mapped to only its own
replicas' shares of each step's global batch, which `EpochOrder` chooses
from (seed, epoch, step) as in a single-process run with a batch of
batch_size x replicas. The epoch comes from the step number, not from a
callback, so prefetching never reads a stale order, and a run resumed at
epoch k starts its range at step k x steps_per_epoch. Every replica must
run the same number of steps (each step is a collective), so an epoch is
the whole global batches only: fewer than one global batch of rows, the
last of that epoch's block order, is left out of each epoch.

Validation: each replica evaluates its own part of the validation rows
(disjoint, together all of them, in file order); Keras sums the metric
totals over replicas, so the history's val_rmse and val_loss are those of
the whole validation set, as in a single-process run.

Writing: only the chief (TF_CONFIG task "chief", or worker 0 when there is
none) writes the run directory; the others commit the same epochs to a
scratch folder (saving reads mirrored variables, which may take every
worker), deleted at the end. A resumed run starts every worker from the
chief's last.keras: the run directory must be on storage every worker
sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from galaxyprep import InputError

from ..choices import Strategy
from ..data import EpochOrder, GalaxyBatches
from ..run_dir import RunDir, sha256_file
from .rendezvous import meet

Log = Callable[[str], None]

#: Debug hook: a folder where each worker writes the file rows it read, per step and replica
#: (rows-<pipeline>.json), so that a test can see the shares are disjoint and cover the data.
RECORD_ROWS_ENV = "GALAXYTRAIN_RECORD_ROWS"


@dataclass(frozen=True)
class Role:
    """This process's place in the training: the chief writes the run directory."""

    strategy: Strategy
    task_type: str  # "chief" or "worker"; "local" without multi-worker
    index: int
    n_workers: int
    is_chief: bool
    #: Every task's host:port in TensorFlow's task order (the chief first), and this task's position there.
    hosts: tuple[str, ...] = ()
    position: int = 0

    def describe(self) -> str:
        if self.strategy != "multi-worker":
            return "one process"
        return f"{self.task_type} {self.index}, one of {self.n_workers} workers"


def worker_role(strategy: Strategy, environ: dict | None = None) -> Role:
    """Parse TF_CONFIG for ``multi-worker`` (InputError naming what is wrong); one local process otherwise."""
    if strategy != "multi-worker":
        return Role(strategy, "local", 0, 1, True)
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    example = ('e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", '
               '"index": 0}}')
    if not text:
        raise InputError("TF_CONFIG", f"is not set; --strategy multi-worker needs it in every worker ({example})")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("TF_CONFIG", f"is not JSON ({exc.msg} at character {exc.pos})") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise InputError("TF_CONFIG", f"needs a 'cluster' and a 'task' object ({example})")
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise InputError("TF_CONFIG", f"lists {', '.join(other)}: multi-worker training takes only 'chief' "
                                      "and 'worker' tasks")
    for kind in ("chief", "worker"):
        hosts = cluster.get(kind, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise InputError("TF_CONFIG", f"cluster.{kind} must be a list of 'host:port' strings, got {hosts!r}")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise InputError("TF_CONFIG", f"cluster.{kind} lists {host!r}: a port must be a number from 1 "
                                              "to 65535 after the host ('host:2222')")
    if len(cluster.get("chief", [])) > 1:
        raise InputError("TF_CONFIG", f"lists {len(cluster['chief'])} chiefs; there can be one")
    if not cluster.get("worker"):
        raise InputError("TF_CONFIG", "cluster.worker is empty; list every worker's host:port")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in ("chief", "worker"):
        raise InputError("TF_CONFIG", f"task.type must be 'chief' or 'worker', got {task_type!r}")
    hosts = cluster.get(task_type, [])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(hosts):
        raise InputError("TF_CONFIG", f"task.index {index!r} is not one of the {len(hosts)} {task_type} "
                                      f"entries of cluster.{task_type}")
    n_workers = len(cluster.get("chief", [])) + len(cluster["worker"])
    is_chief = task_type == "chief" or ("chief" not in cluster and index == 0)
    hosts = tuple(cluster.get("chief", [])) + tuple(cluster["worker"])
    position = index if task_type == "chief" else len(cluster.get("chief", [])) + index
    return Role(strategy, task_type, index, n_workers, is_chief, hosts, position)


def scratch_dir(role: Role) -> Path:
    """A fresh folder for a non-chief worker's checkpoints (removed by the caller at the end)."""
    return Path(tempfile.mkdtemp(prefix=f"galaxytrain-{role.task_type}{role.index}-"))


def make_strategy(role: Role, log: Log, join_timeout: float = 0.0):
    """The tf.distribute strategy for `role`; call it before TensorFlow runs any op (after GPU options).

    Multi-worker: TensorFlow's constructor waits, in C++ and holding the GIL,
    until every worker of TF_CONFIG has joined: no timeout, no signal
    handled. The workers meet first in Python (`rendezvous.meet`, bounded by
    `join_timeout` seconds, 0: none), so that TensorFlow finds them all there.
    """
    import tensorflow as tf

    if role.strategy == "multi-worker":
        log(f"waiting for the {role.n_workers} workers of TF_CONFIG to join"
            + (f" (--join-timeout {join_timeout:g} s)" if join_timeout > 0 else ""))
        meet(list(role.hosts), role.position, join_timeout)
        handlers = _python_handlers()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _restore(handlers)  # TensorFlow's runtime installs its own SIGTERM handler: kill was ignored
        where = f"{role.n_workers} workers ({role.describe()})"
    elif role.strategy == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            strategy = tf.distribute.MirroredStrategy()
        else:  # no GPU: the logical CPU devices (one, unless the process configured more)
            strategy = tf.distribute.MirroredStrategy(devices=[d.name for d in tf.config.list_logical_devices("CPU")])
        where = ", ".join(strategy.extended.worker_devices)
    else:
        raise ValueError(f"no tf.distribute strategy for {role.strategy!r}")
    log(f"strategy {role.strategy}: {strategy.num_replicas_in_sync} replica(s) on {where}")
    return strategy


def _python_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers: dict) -> None:
    """Put Python's handlers back (a C library's sigaction replaced them without Python knowing)."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def chief_value(strategy, role: Role, value: int) -> int:
    """The chief's `value` (|value| < 2**24) in every worker; an all-reduce, so also a barrier."""
    return worker_sum(strategy, role, value if role.is_chief else 0)


def worker_sum(strategy, role: Role, value: int) -> int:
    """The sum of every worker's `value` (|sum| < 2**24: exact in float32), in every worker."""
    if role.n_workers == 1:
        return int(value)
    import tensorflow as tf

    local = strategy.num_replicas_in_sync // role.n_workers  # each of this worker's replicas adds its share
    share = float(value) / local

    @tf.function
    def reduce():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            "SUM", tf.constant(share, tf.float32)))

    return int(round(float(strategy.experimental_local_results(reduce())[0])))


def check_same_training(strategy, role: Role, key: dict) -> None:
    """Every worker must train the same model on the same data; else all stop with one line, none hangs.

    `key` is what defines the training (options, data, split, replicas); its
    hash is compared with the chief's, and the count of differing workers is
    summed, so the chief fails too rather than wait in a collective.
    """
    if role.n_workers == 1:
        return
    mine = int(hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:6], 16)  # 24 bits
    differ = worker_sum(strategy, role, int(chief_value(strategy, role, mine) != mine))
    if differ:
        raise InputError("TF_CONFIG", f"{differ} of the {role.n_workers} workers train with other options or "
                                      "data than the chief (fit's options, the data file's images, the split); "
                                      "run the same command in every worker")


def chief_state(out: Path, epochs_done: int) -> dict:
    """A non-chief worker's starting state: the chief's, read from the shared run directory."""
    from ..run_dir import new_state

    if epochs_done == 0:
        return new_state()
    run = RunDir(out)
    state = run.read_state()
    where = "; the run directory must be on storage every worker sees"
    if state is None or int(state.get("epochs_done", -1)) != epochs_done:
        raise InputError(out, f"the chief resumes at epoch {epochs_done + 1} but this worker cannot read that "
                              f"state in {run.state.name}{where}")
    if not run.last.exists() or sha256_file(run.last) != state.get("last_sha256"):
        raise InputError(run.last, f"is missing or does not match the chief's {run.state.name}{where}")
    return state


def lost_peer(exc: Exception) -> str:
    """TensorFlow's message for a worker that stopped, in one line."""
    text = " ".join(str(getattr(exc, "message", exc)).split())
    if "aborted by: " in text:
        text = text.split("aborted by: ", 1)[1]
    text = text.split(" The tasks have crashed.")[0].split(" [Op:")[0]
    return "a worker stopped or cannot be reached (" + (text[:300] + ("..." if len(text) > 300 else "")) + ")"


# -- the input: each replica's share ------------------------------------------------------------------

def train_share(order: EpochOrder, seed: int, epoch: int, step: int, replica: int,
                n_replicas: int) -> tuple[np.ndarray, np.random.Generator]:
    """Replica `replica`'s positions of global batch `step` of `epoch`, and its own generator.

    The global batch is `order`'s (a full one: its batch size is the global
    batch); its positions in ascending order are cut into `n_replicas` equal
    parts, so each part is few contiguous runs of the file, then shuffled.
    """
    positions, _ = order.batch(epoch, step)
    part = np.array_split(np.sort(positions), n_replicas)[replica]
    rng = np.random.default_rng([seed, epoch, step, replica, n_replicas])
    return (part[rng.permutation(len(part))] if order.shuffle else part), rng


def val_shares(n: int, per_replica: int, n_replicas: int) -> list[list[np.ndarray]]:
    """Positions 0..n-1 in file order as [step][replica], every replica the same number of steps, none empty.

    Steps: ceil(n / (per_replica x replicas)); rows are spread as evenly as
    possible, so a replica's batch may be a few rows short of per_replica.
    """
    n_steps = max(1, -(-n // (per_replica * n_replicas)))
    if n < n_steps * n_replicas:
        raise InputError("--val-fraction", f"leaves {n} validation images for {n_replicas} replicas; each needs "
                                           "at least one: use a larger --val-fraction or 0")
    return [np.array_split(step, n_replicas) for step in np.array_split(np.arange(n, dtype=np.int64), n_steps)]


class RowRecord:
    """With GALAXYTRAIN_RECORD_ROWS set: the file rows each step and replica of this worker read."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        self._rows: dict[tuple, list[int]] = {}

    def add(self, kind: str, epoch: int, step: int, replica: int, rows: np.ndarray) -> None:
        if self.folder is not None:
            self._rows[(kind, int(epoch), int(step), int(replica))] = [int(r) for r in rows]

    def write(self, name: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = [[*key, rows] for key, rows in sorted(self._rows.items())]
        (self.folder / f"rows-{name}.json").write_text(json.dumps(entries))


def distributed_batches(strategy, batches: GalaxyBatches, first_step: int, last_step: int,
                        share: Callable[[int, int], tuple[np.ndarray, np.random.Generator]],
                        threads: int, prefetch: int, record: Callable[[int, int, np.ndarray], None] | None = None):
    """Global steps [first_step, last_step) as a DistributedDataset; each pipeline reads its replicas' shares only.

    ``share(step, replica)`` gives a global replica's positions into
    `batches`' rows and its generator. A worker's pipeline yields one
    per-replica batch for each of its local replicas per step, in replica
    order, which is how tf.distribute hands a worker's elements to its devices.
    """
    import tensorflow as tf

    size = batches.view.size
    width = batches.label_width

    def make(ctx):
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        first_replica = ctx.input_pipeline_id * local

        def load(k):
            step, replica = divmod(int(k), local)
            replica += first_replica
            positions, rng = share(step, replica)
            if record is not None:
                record(step, replica, batches.rows[positions])
            x, y = batches.batch_at(positions, rng)
            return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)

        def shaped(x, y):
            return tf.ensure_shape(x, (None, size, size, 3)), tf.ensure_shape(y, (None, width))

        ds = tf.data.Dataset.range(first_step * local, last_step * local)
        ds = ds.map(lambda k: tf.numpy_function(load, [k], (tf.float32, tf.float32)),
                    num_parallel_calls=threads, deterministic=True)
        return ds.map(shaped).prefetch(prefetch)

    return strategy.distribute_datasets_from_function(make)


# -- Keras 3.15 under tf.distribute ---------------------------------------------------------------------

def pin_keras(model: keras.Model, strategy, role: Role, per_replica: int, size: int) -> None:
    """Work around two Keras 3.15 failures under MultiWorkerMirroredStrategy, on this model only.

    keras #20585 / tensorflow #72388 (Keras 3 with MultiWorkerMirroredStrategy):

    1. `fit` builds the model's compiled state from a first batch of the
       distributed iterator and averages it with ``strategy.reduce``, which
       fails under MultiWorkerMirroredStrategy ("Attempt to convert a value
       (PerReplica...)"). The state is built here from shapes alone, under
       the scope, and fit's step is skipped (it would also read, and
       throw away, a batch per call).
    2. Each step's logs are reduced with ``strategy.reduce("MEAN", v,
       axis=0)``, which fails on the scalar losses and metrics ("Invalid
       reduction dimension 0 for input with 0 dimensions"). The steps'
       outputs get a length-1 axis, which that reduction removes again.

    The epoch's numbers that the history keeps come from the metric
    variables, summed over every replica, not from these per-step logs.
    """
    batch = (np.zeros((per_replica, size, size, 3), np.float32),
             np.zeros((per_replica, int(model.output_shape[-1])), np.float32))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = _no_symbolic_build
    if role.strategy == "multi-worker" and role.n_workers > 1:
        model.train_step = _with_axis(model.train_step)
        model.test_step = _with_axis(model.test_step)


def _no_symbolic_build(iterator=None, data_batch=None) -> None:
    return None


def _with_axis(step):
    def wrapped(data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

    return wrapped


def weights_fingerprint(model: keras.Model) -> str:
    """First 16 hex digits of SHA-256 over every weight (dtype, shape, bytes, in order): equal models, equal hash."""
    h = hashlib.sha256()
    for weight in model.weights:
        a = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
