"""Outputs that never clobber what the tool did not make, and one writer per output.

Every command that writes a file or folder checks it first with
`check_output` (not one of the command's inputs, not a folder where a file is
meant, not an existing file of another kind unless ``--overwrite``) and holds
`exclusive_lock` on it for the whole job, so that a second job on the same
output stops at once with one line naming the first one's PID instead of
interleaving its writes with it.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, outputs are still guarded
    fcntl = None


#: Errors that are the disk's doing (full, over quota, read-only, failing, file too large), not the tool's.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def disk_problem(exc: BaseException) -> str | None:
    """One line for an OSError the disk caused, else None (anything else is a bug: a traceback)."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    # os.strerror, not exc.strerror: HDF5's errors carry a multi-line report there
    return f"cannot write: {os.strerror(exc.errno)}"


@contextmanager
def disk_errors(out: str | Path, kept: str) -> Iterator[None]:
    """The disk's OSErrors in the block as one InputError naming `out`, and saying what is `kept`."""
    try:
        yield
    except OSError as exc:
        problem = disk_problem(exc)
        if problem is None:
            raise
        raise InputError(out, f"{problem}; {kept}") from None


def same_path(a: str | Path, b: str | Path) -> bool:
    """True when a and b name the same file (through links too), existing or not."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(out: str | Path, inputs: Iterable[tuple[str, str | Path | None]], is_ours: Callable[[Path], bool],
                 kind: str, overwrite: bool = False) -> None:
    """Refuse an output that would destroy something the user did not ask to replace.

    `inputs`: (option, path) of what the command reads; `is_ours(path)` says
    whether an existing file is of the kind this command writes (`kind`, for
    the message). A file of that kind is replaced (atomically, by the writer).
    """
    out = Path(out)
    for option, path in inputs:
        if path is not None and same_path(out, path):
            raise InputError(out, f"is also the command's {option}; an output never replaces an input, "
                                  "choose another name")
    if out.is_dir():
        raise InputError(out, f"is a folder; give the name of the {kind} to write")
    if out.exists() and not overwrite and not is_ours(out):
        raise InputError(out, f"exists and is not a {kind}; refusing to replace it (use --overwrite, "
                              "or another name)")


def lock_path(target: str | Path) -> Path:
    """The lock file of an output: hidden, beside it (never inside a folder the job writes)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def exclusive_lock(target: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `target` for the block; InputError naming the holder if another has it.

    The lock is the kernel's (flock) on a file beside the target holding the
    holder's PID, so it dies with its process, kill -9 included: a stale lock
    file never blocks anyone.
    """
    if fcntl is None:
        yield
        return
    path = lock_path(target)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only folder or file system, a full disk: before anything is done
            raise InputError(target, f"cannot write in {path.parent} ({exc.strerror or exc}); choose an output "
                                     "in a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(target, f"is being written by another job (PID {holder}); wait for it to end, "
                                     "or choose another output") from None
        # The holder before us may have removed the file between our open and our lock.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
