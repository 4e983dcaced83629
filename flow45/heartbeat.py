"""How a supervisor learns that a running service's parts are alive: each long-running process
(`serve`, `bridge run`, `scheduler`) rewrites one small JSON file, `heartbeat_file`
(FLOW45_HEARTBEAT_FILE), every loop of each of its parts; `flow45 health` reads it.

    {"pid": 4242, "parts": {"bridge": {"at": 1790000000.5, "error": null}, "scheduler": {...}}}

`at` is the wall-clock time of the part's last loop; `error` what that loop could not do (a
database or broker that did not answer), else null. The file is removed on a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

MIN_INTERVAL = 1.0  # seconds between two writes of the same part's unchanged state

log = logging.getLogger("flow45")


class Heartbeat:
    """The writer, shared by the parts of one process (thread-safe); `path` None writes nothing."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._parts: dict[str, dict] = {}
        self._written: dict[str, float] = {}
        self._looped: dict[str, float] = {}  # part -> its last loop (monotonic), file or not: for the watchdog
        self._failing = False  # the last write failed (said once, not at every loop)

    def beat(self, part: str, error: str | None = None) -> None:
        """The part finished one loop; `error` says what it could not do, if anything."""
        self._looped[part] = time.monotonic()
        if self.path is None:
            return
        now = time.time()
        with self._lock:
            before = self._parts.get(part)
            if before is not None and before["error"] == error and now - self._written.get(part, 0) < MIN_INTERVAL:
                return
            self._parts[part] = {"at": now, "error": error}
            self._written[part] = now
            self._write()

    def stale(self, max_age: float) -> list[str]:
        """The parts whose last loop is more than `max_age` seconds old."""
        now = time.monotonic()
        return sorted(part for part, at in list(self._looped.items()) if now - at > max_age)

    def remove(self) -> None:
        """On a clean stop: no file, no service."""
        if self.path is not None:
            with self._lock, contextlib.suppress(OSError):
                self.path.unlink()

    def _write(self) -> None:
        body = json.dumps({"pid": os.getpid(), "parts": self._parts})
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            temporary.write_text(body)
            os.replace(temporary, self.path)  # readers never see half a file
        except OSError as exc:  # a full or read-only disk must not stop the service; health will say it is stale
            if not self._failing:
                log.warning("heartbeat file %s: cannot write it (%s); `flow45 health` will report this "
                            "service as not running", self.path, exc.strerror or exc)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat file %s: written again", self.path)
        self._failing = False


def read(path: str | os.PathLike) -> dict:
    """The file as written; raises OSError or ValueError when missing or unreadable."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("parts"), dict):
        raise ValueError("not a heartbeat file")
    return data


def problems(data: dict, now: float, max_age: float) -> list[str]:
    """What is wrong with the service the heartbeat `data` describes, one line each."""
    pid = data.get("pid")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return [f"process {pid} is not running"]
    except (PermissionError, TypeError, ValueError):
        pass  # alive under another user, or no pid written: the ages below decide
    found = []
    if not data["parts"]:
        found.append(f"process {pid} has no running parts yet")
    for part, state in sorted(data["parts"].items()):
        age = now - float(state.get("at", 0))
        if age > max_age:
            found.append(f"{part}: no heartbeat for {age:.0f}s (process {pid}; more than {max_age:g}s)")
        elif state.get("error"):
            found.append(f"{part}: {state['error']}")
    return found
