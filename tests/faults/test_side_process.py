"""`flow45 bridge run` answers operators' reads and publishes the event stream from child processes:
off the interpreter lock its batches need. A stuck child shows in the heartbeat; a child comes back
after it dies, and dies with the bridge, even a bridge killed with -9, so no orphan keeps answering
or publishing for a bridge that is gone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bridge.side_process import READS_NICENESS
from bridge.rpc import Rpc
from flow45 import heartbeat
from flow45.errors import Flow45Error

pytestmark = pytest.mark.integration


def _children(pid: int, part: str) -> list[int]:
    """The bridge's live children serving `part` (the last argument of their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid and fields[0] != "Z" and argv[-1] == part.encode():
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _beats(system) -> dict[str, float]:
    return {part: beat["at"] for part, beat in heartbeat.read(system.heartbeat)["parts"].items()}


def _niceness(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[16])


def _until(check, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _answers(url: str) -> bool:
    rpc = Rpc(url, timeout=2)
    try:
        return rpc.read({"type": "whoami"}) == {"user": "reports-ops", "team": "reports"}
    except Flow45Error:
        return False
    finally:
        rpc.close()


def test_reads_and_events_come_from_children_that_are_watched_started_again_and_die_with_the_bridge(system):
    bridge = system.bridge()
    _until(lambda: _children(bridge.pid, "reads") and _answers(system.operator_url), what=system.logs())
    # each part beats on its own schedule: the bridge's own at its first relay tick, maybe after the others
    _until(lambda: {"bridge", "bridge.reads", "bridge.events"} <= set(_beats(system)), what=system.logs())
    readers, publishers = _children(bridge.pid, "reads"), _children(bridge.pid, "events")
    assert (len(readers), len(publishers)) == (1, 1), f"the bridge's children: {readers}, {publishers}"
    first = readers[0]
    assert _niceness(first) == READS_NICENESS, "reads yield the CPU to the workers' messages"
    assert _niceness(publishers[0]) == 0, "the event stream keeps up with the ledger"

    os.kill(first, signal.SIGSTOP)  # a stuck reader: named by the heartbeat while the bridge beats on
    try:
        _until(lambda: _beats(system)["bridge"] > _beats(system)["bridge.reads"] + 2.5, what=system.logs())
        found = heartbeat.problems(heartbeat.read(system.heartbeat), _beats(system)["bridge.reads"] + 3, max_age=2)
        named = [line.split(" (")[0] for line in found]
        # the stuck reader is named, the bridge is not (the event stream's beat may lag on a loaded machine)
        assert "bridge.reads: no heartbeat for 3s" in named and not any(n.startswith("bridge:") for n in named), named
    finally:
        os.kill(first, signal.SIGCONT)
    _until(lambda: _answers(system.operator_url), what=system.logs())

    os.kill(first, signal.SIGKILL)
    os.kill(publishers[0], signal.SIGKILL)
    _until(lambda: _children(bridge.pid, "reads") not in ([], [first]), what=system.logs())
    _until(lambda: _children(bridge.pid, "events") not in ([], publishers), what=system.logs())
    _until(lambda: _answers(system.operator_url), what=system.logs())
    assert bridge.poll() is None, "the bridge itself went on"
    log = Path(bridge.log_path).read_text()
    for part in ("reads", "events"):
        assert f"the {part} process exited (code -9); starting it again" in log

    children = _children(bridge.pid, "reads") + _children(bridge.pid, "events")
    bridge.kill()
    bridge.wait()
    _until(lambda: not any(_alive(child) for child in children), what="a child outlived its bridge")
