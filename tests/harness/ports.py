"""Ports for the throwaway servers: below the kernel's ephemeral range, each held by one test process.

A port from bind(0) comes from the ephemeral range, the one every outgoing connection takes its own
port from: a node killed and started again on its port could find it taken by a client's socket, and
test processes running side by side could pick the same one. A port here comes from below that range
and is reserved by a lock on a file every test process on the machine sees, held until the process
ends (the kernel drops the lock then, however it ends).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

_LOCKS = Path(tempfile.gettempdir()) / "flow45-test-ports"
_SPAN = 10_000
_held: list[int] = []  # lock files' descriptors, open for the process's life


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _reserve(port: int) -> int | None:
    """The descriptor holding the port's lock, or None if another test process holds it."""
    fd = os.open(_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def free_port() -> int:
    """A loopback port nothing listens on, that no other test process will be given."""
    high = _ephemeral_start()
    low = max(1024, high - _SPAN)
    if high - low < 1000:  # an unusual ephemeral range: the kernel's pick is the best there is
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    _LOCKS.mkdir(exist_ok=True)
    for _ in range(200):
        port = random.randrange(low, high)
        fd = _reserve(port)
        if fd is None:
            continue
        if _bindable(port):
            _held.append(fd)
            return port
        os.close(fd)  # something else on the machine has it: no need to keep it from other test processes
    raise RuntimeError(f"no free port between {low} and {high} after 200 tries")
