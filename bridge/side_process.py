"""The bridge's side parts, operators' reads and the event stream, each in a process of its own.

Why: a burst of dashboard reads is tens of milliseconds of Python per page, and the event stream
builds a few events per task instance. On threads of the bridge they hold the interpreter lock that
the committers and the IO loop need, and every database round trip of a batch waits to take it back:
the workers' hops wait behind them. In a child process they take only the CPU (reads at a lower
priority: what the workers' messages leave).

The bridge's side thread `SideProcess` starts the child (`python -m bridge.side_process PID PART`),
hands it the settings on its stdin, forwards the heartbeat lines it writes to its stdout to the
bridge's heartbeat (`bridge.reads`, `bridge.events`), and starts it again after it dies. The child
serves its part until its stdin closes, which happens when the bridge stops or dies, even by kill -9
(the kernel closes the pipe), so no child outlives its bridge.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bridge.side_thread import SideThread
from flow45.errors import Flow45Error
from flow45.heartbeat import MIN_INTERVAL
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")

STOP_WAIT = 1.0  # seconds a stopping bridge waits for the child before killing it
# Under a CPU that is short, the workers' hops go first: at 0 a burst of reads still moved the
# hop's p99 by +12-15 ms, at 10 by +1-8 ms (benchmarks/e2e.py --dashboard-mode burst).
READS_NICENESS = 10
PARTS = {"reads": ("bridge.reads", "ReadServer", READS_NICENESS),
         # The stream must keep up with the ledger: at the workers' priority.
         "events": ("bridge.events", "EventPublisher", 0)}
_ROOT = str(Path(__file__).resolve().parent.parent)  # where `bridge` is importable from


class SideProcess(SideThread):
    """A part of the bridge (one of PARTS) served by a child process: `SideThread.run` starts it
    again after it exits, as it reconnects the other side threads."""

    def __init__(self, part: str, settings: Settings, heartbeat=None) -> None:
        super().__init__(settings, heartbeat)
        self.part = part
        self._child: subprocess.Popen | None = None

    def stop(self) -> None:
        """The child is told at once, and its output's end wakes `_follow`."""
        super().stop()
        child = self._child
        if child is not None:
            _close_quietly(child.stdin)

    def _serve(self) -> None:
        child = self._child = subprocess.Popen(
            [sys.executable, "-m", "bridge.side_process", str(os.getpid()), self.part],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_environment())
        served = False
        try:
            if self._stop.is_set():  # stop() came before the child was there to tell
                return
            child.stdin.write(self.settings.model_dump_json().encode() + b"\n")
            child.stdin.flush()
            served = self._follow(child.stdout.fileno())
        except (OSError, ValueError):
            pass  # it died before reading its settings (told below), or stop() closed its stdin
        finally:
            _close_quietly(child.stdin)  # tells the child to stop
            try:
                child.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()
        if self._stop.is_set():
            return
        exited = f"the {self.part} process exited (code {child.returncode}); starting it again"
        if not served:
            raise Flow45Error(exited)  # waits longer each time
        self._failed(exited)  # it served: started again after the shortest wait

    def _follow(self, fd: int) -> bool:
        """Pass the child's beats on until it exits or the bridge stops; whether it ever served."""
        served, pending = False, b""
        while not self._stop.is_set():
            if not select.select([fd], [], [], 0.25)[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return served  # the child is gone
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                ready, self._error = json.loads(line)
                served = served or ready
                (self.ready.set if ready else self.ready.clear)()
                self.beat()
        return served


def _child_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}


def _close_quietly(pipe) -> None:
    try:
        pipe.close()
    except OSError:
        pass  # the child had gone: nothing left to tell


class _PipeBeat:
    """The child's heartbeat: what it would write, sent to the parent as a JSON line (a change at
    once, the same state at most once a second, as `Heartbeat` writes)."""

    def __init__(self, out, server: SideThread):
        self.out, self.server = out, server
        self._lock = threading.Lock()
        self._last: tuple | None = None
        self._sent = 0.0

    def beat(self, _part: str, error: str | None = None) -> None:
        state = (self.server.ready.is_set(), error)
        now = time.monotonic()
        with self._lock:
            if state == self._last and now - self._sent < MIN_INTERVAL:
                return
            self._last, self._sent = state, now
            try:
                self.out.write(json.dumps(state).encode() + b"\n")
                self.out.flush()
            except OSError:
                self.server.stop()  # the parent is gone


def _die_with(parent: int) -> None:
    """Killed by the kernel when the bridge dies (Linux), even while busy with a read, when the end
    of stdin would not be seen; gone at once if the bridge died before this was set."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the end of stdin alone stops the child
    if os.getppid() != parent:
        os._exit(0)


PR_SET_PDEATHSIG = 1


def main(parent: int, part: str) -> None:
    """The child: serve the part until stdin closes."""
    import importlib

    from bridge.logs import quiet_pika
    from flow45.db import connect
    from flow45.settings import use_settings

    _die_with(parent)
    module, name, niceness = PARTS[part]
    os.nice(niceness)
    beats = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to the log, never into the beats
    for asked in (signal.SIGINT, signal.SIGTERM):  # a terminal's Ctrl-C, or systemd's stop, reach the bridge too
        signal.signal(asked, signal.SIG_IGN)  # and it stops us: otherwise it would start us again meanwhile
    logging.basicConfig(level=logging.DEBUG if os.environ.get("FLOW45_DEBUG") else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    quiet_pika()
    settings = Settings.model_validate_json(sys.stdin.buffer.readline())
    use_settings(settings)
    connect(settings.database_url)
    server = getattr(importlib.import_module(module), name)(settings)
    server.heartbeat = _PipeBeat(beats, server)

    def until_the_bridge_closes() -> None:
        sys.stdin.buffer.read()  # nothing more comes: returns when the pipe closes
        server.stop()

    threading.Thread(target=until_the_bridge_closes, daemon=True).start()
    server.run()
    # Gone at once, its connections closed and its log flushed: tearing the interpreter down would
    # cost a stopping bridge a few tenths of a second more (reads run at a lower priority).
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
