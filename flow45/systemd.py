"""systemd's notification protocol (sd_notify(3)) for the long-running services, in units with
`Type=notify` and `WatchdogSec=`: a process says READY=1 once its parts run, STOPPING=1 when it stops,
and WATCHDOG=1 several times per watchdog interval while every part has looped within that interval.
A part that is stuck (a deadlock, a child process stopped) stops the pings, and systemd kills the
process and starts it again: a service that cannot do its job is not left running half-alive, which
exiting 1 alone cannot promise. Without NOTIFY_SOCKET (no systemd) nothing is sent."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

log = logging.getLogger("flow45")
PINGS_PER_INTERVAL = 3  # a ping lost or late is not a restart


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "WATCHDOG=1", ...) to systemd; False when it does not listen."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd notification %s not sent to %s: %s", state, address.lstrip("\0"), exc.strerror or exc)
        return False
    return True


def watchdog_interval(environ=os.environ) -> float | None:
    """The unit's `WatchdogSec=` in seconds when systemd watches this process, else None."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # set for another process (a parent that started us)
    try:
        seconds = int(environ.get("WATCHDOG_USEC", "")) / 1e6
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class Watchdog:
    """Pings systemd's watchdog from the service's main loop (`tick`, called often) while every part
    of `beats` (a `flow45.heartbeat.Heartbeat`) has looped within the interval."""

    def __init__(self, beats, interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.beats, self.clock = beats, clock
        self.interval = watchdog_interval() if interval is None else interval
        self._next = 0.0
        self._stuck: list[str] = []

    def tick(self) -> None:
        if self.interval is None or self.clock() < self._next:
            return
        self._next = self.clock() + self.interval / PINGS_PER_INTERVAL
        stuck = self.beats.stale(self.interval)
        if stuck and stuck != self._stuck:
            log.error("%s: no loop for over %gs; systemd's watchdog is not told the service is alive, so that "
                      "it restarts it", ", ".join(stuck), self.interval)
        elif not stuck and self._stuck:
            log.info("%s looping again", ", ".join(self._stuck))
        self._stuck = stuck
        if not stuck:
            notify("WATCHDOG=1")
