"""The watchdog's rule: ping only while every part of the service has looped within the interval, and
only in the process systemd watches."""

from __future__ import annotations

import os
import socket
import uuid

from flow45 import systemd
from flow45.heartbeat import Heartbeat


def test_the_interval_is_systemds_only_for_the_process_it_names():
    usec = {"WATCHDOG_USEC": "60000000"}
    assert systemd.watchdog_interval(usec) == 60.0
    assert systemd.watchdog_interval({**usec, "WATCHDOG_PID": str(os.getpid())}) == 60.0
    assert systemd.watchdog_interval({**usec, "WATCHDOG_PID": str(os.getpid() + 1)}) is None  # a parent's
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval({}) is None


def test_a_part_that_stopped_looping_stops_the_pings_until_it_loops_again(monkeypatch):
    name = f"flow45-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    now = [1000.0]
    monkeypatch.setattr("flow45.heartbeat.time.monotonic", lambda: now[0])
    beats = Heartbeat(None)  # no file: the watchdog needs none
    watchdog = systemd.Watchdog(beats, interval=30.0, clock=lambda: now[0])

    def pings_after(seconds: float) -> int:
        now[0] += seconds
        watchdog.tick()
        count = 0
        try:
            while listener.recv(64) == b"WATCHDOG=1":
                count += 1
        except BlockingIOError:
            return count

    try:
        beats.beat("bridge")
        beats.beat("scheduler")
        assert pings_after(0) == 1
        assert pings_after(5) == 0  # a third of the interval between pings
        beats.beat("bridge")
        assert pings_after(6) == 1
        beats.beat("bridge")
        assert pings_after(20) == 0  # the scheduler's last loop is 31 s old
        beats.beat("scheduler")
        beats.beat("bridge")
        assert pings_after(0) == 0 and pings_after(10) == 1  # looping again; next at its time
    finally:
        listener.close()
