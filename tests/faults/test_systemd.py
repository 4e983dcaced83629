"""Under systemd (`Type=notify`, `WatchdogSec=`), a service says it is ready, pings the watchdog while
every part loops, and stops pinging while one is stuck, so that systemd restarts it; here the socket
systemd would listen on is the test's own."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.test_side_process import _children, _until

pytestmark = pytest.mark.integration

WATCHDOG_SECONDS = 2.0


class Systemd:
    """What systemd hears on a service's NOTIFY_SOCKET (an abstract socket, as systemd's own can be)."""

    def __init__(self):
        self.name = f"flow45-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    def environment(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": "@" + self.name, "WATCHDOG_USEC": str(int(WATCHDOG_SECONDS * 1e6))}

    def listen(self, seconds: float) -> list[str]:
        """What came within `seconds`."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return got

    def drain(self) -> None:
        """Forget what came so far."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        self.sock.setblocking(True)

    def until(self, state: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while state not in self.listen(0.5):
            assert time.monotonic() < deadline, f"systemd never heard {state}"


def test_a_bridge_pings_the_watchdog_while_its_parts_loop_and_stops_while_one_is_stuck(system):
    systemd = Systemd()
    try:
        bridge = system.spawn("-m", "flow45", "bridge", "run", name="bridge", env=systemd.environment())
        systemd.until("READY=1")
        systemd.until("WATCHDOG=1")
        _until(lambda: _children(bridge.pid, "reads"), what=system.logs())
        reader = _children(bridge.pid, "reads")[0]
        named = "bridge.reads: no loop for over 2s"
        before = Path(bridge.log_path).read_text().count(named)  # a loaded machine may have stalled it once
        os.kill(reader, signal.SIGSTOP)  # a stuck part: the process lives on, its reads go unanswered
        try:
            _until(lambda: Path(bridge.log_path).read_text().count(named) > before, what=system.logs())
            systemd.drain()  # pings sent before it was named
            assert "WATCHDOG=1" not in systemd.listen(2 * WATCHDOG_SECONDS)
            assert bridge.poll() is None  # systemd, not the process, ends it
        finally:
            os.kill(reader, signal.SIGCONT)
        systemd.until("WATCHDOG=1")  # looping again: no restart needed
        bridge.send_signal(signal.SIGTERM)
        systemd.until("STOPPING=1", seconds=10)
        assert bridge.wait(10) == 0
    finally:
        systemd.sock.close()
