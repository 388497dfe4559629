"""Every worker of TF_CONFIG alive and reachable, before TensorFlow is asked to join them.

MultiWorkerMirroredStrategy's constructor waits inside TensorFlow's C++,
holding the GIL, until every task has joined: a lone worker (a peer never
started, or started with the same index elsewhere) waited for ever, and
SIGTERM and Ctrl-C did nothing there. This meeting happens first, in Python,
on the ports TF_CONFIG gives (TensorFlow takes them after): bounded by a
timeout, interruptible, and with one line for what went wrong.

Each worker listens on its own address, connects to every worker listed
before it and accepts every worker listed after it; over each connection
both sides say who they are. When every pair has spoken, all close, and
TensorFlow's join then finds everyone there.
"""

from __future__ import annotations

import json
import math
import socket
import time

from galaxyprep import InputError

#: How long a socket call may block before the loop looks at the clock (and Python at its signals).
_TICK_S = 0.2


def meet(hosts: list[str], me: int, timeout_s: float, hello: str = "galaxytrain") -> None:
    """Return once every worker in `hosts` (host:port, in task order) has met this one (`me`); else InputError."""
    if len(hosts) < 2:
        return
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else math.inf
    _, port = _split(hosts[me])  # listened for on every interface: the host may name this machine otherwise
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind(("", port))
        except OSError as exc:
            raise InputError("TF_CONFIG", f"this worker cannot listen on {hosts[me]} ({exc.strerror}): another "
                                          "worker there with the same task.index, or another program?") from None
        listener.listen(len(hosts))
        listener.settimeout(_TICK_S)
        met: set[int] = set()
        for other in range(me):  # connect to those listed before
            _say(_connect(hosts[other], deadline, hosts, met, me), me, other, hello, deadline, hosts, met)
            met.add(other)
        while len(met) < len(hosts) - 1:  # accept those listed after
            _check(deadline, hosts, met, me)
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                other = _hear(conn, hello, deadline, hosts, met, me)
                conn.sendall(json.dumps({"hello": hello, "index": me}).encode() + b"\n")
                met.add(other)
    finally:
        listener.close()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _check(deadline: float, hosts: list[str], met: set[int], me: int) -> None:
    if time.monotonic() > deadline:
        missing = [hosts[i] for i in range(len(hosts)) if i != me and i not in met]
        raise InputError("TF_CONFIG", f"not every one of the {len(hosts)} workers joined within the --join-timeout "
                                      f"(missing: {', '.join(missing)}): start the same command in each, with its "
                                      "own task.index")


def _connect(address: str, deadline: float, hosts: list[str], met: set[int], me: int) -> socket.socket:
    host, port = _split(address)
    while True:
        _check(deadline, hosts, met, me)
        try:
            conn = socket.create_connection((host, port), timeout=_TICK_S)
            conn.settimeout(_TICK_S)
            return conn
        except OSError:
            time.sleep(_TICK_S)


def _say(conn: socket.socket, me: int, other: int, hello: str, deadline: float, hosts: list[str],
         met: set[int]) -> None:
    with conn:
        conn.sendall(json.dumps({"hello": hello, "index": me}).encode() + b"\n")
        answer = _hear(conn, hello, deadline, hosts, met, me)
        if answer != other:
            raise InputError("TF_CONFIG", f"{hosts[other]} answered as task {answer}: the workers' TF_CONFIG "
                                          "lists differ")


def _hear(conn: socket.socket, hello: str, deadline: float, hosts: list[str], met: set[int], me: int) -> int:
    """The index a peer says it has (one JSON line), or InputError if what answers is not a worker of ours."""
    data = b""
    while not data.endswith(b"\n"):
        _check(deadline, hosts, met, me)
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
        if len(data) > 4096:
            break
    try:
        message = json.loads(data.decode())
        if message.get("hello") != hello:
            raise ValueError
        return int(message["index"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError("TF_CONFIG", "a program that is not a galaxytrain worker answered on one of the "
                                      "listed addresses") from None
