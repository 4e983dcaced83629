"""Lease renewal: while a handler runs, a progress message every lease/3 since the last one."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable

from bridge.sdk.task import Task

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.05


class Heartbeat:
    """One thread for all running tasks of a worker; `beat(task)` sends one progress message."""

    def __init__(
        self, beat: Callable[[Task], None], *, on_exit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._beat = beat
        self._on_exit = on_exit
        self._clock = clock
        self._cond = threading.Condition()
        # (due, seq, id(task)): an entry whose due is not the task's in _due is stale, dropped when it
        # comes up; entries name tasks by id so that a stale one does not keep a finished task alive.
        self._heap: list[tuple[float, int, int]] = []
        self._active: dict[int, Task] = {}  # id(task) -> task, of tasks whose handler runs
        self._due: dict[int, float] = {}  # id(task) -> when its next beat is due
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="flow45-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @staticmethod
    def interval(task: Task) -> float:
        return max(MIN_INTERVAL, task.lease_seconds / 3.0)

    def add(self, task: Task) -> None:
        self.touched(task, adding=True)

    def touched(self, task: Task, *, adding: bool = False) -> None:
        """The lease was just renewed (claim or progress): the next beat is an interval from now."""
        due = self._clock() + self.interval(task)
        key = id(task)
        with self._cond:
            if adding:
                self._active[key] = task
            if self._closed or key not in self._active:
                return
            self._due[key] = due
            heap = self._heap
            earliest = not heap or due < heap[0][0]
            heapq.heappush(heap, (due, next(self._seq), key))
            if len(heap) > 2 * len(self._due) + 1000:  # mostly stale (short tasks, long leases): rebuild
                self._heap = heap = [(when, seq, k) for seq, (k, when) in enumerate(self._due.items())]
                heapq.heapify(heap)
            if earliest:  # else the thread already wakes in time for it: no wake-up per claim
                self._cond.notify()

    def remove(self, task: Task) -> None:
        with self._cond:
            self._active.pop(id(task), None)
            self._due.pop(id(task), None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _next_due(self) -> Task | None:
        """Wait for the earliest beat that is due (stale heap entries are dropped); None when closed."""
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, key = self._heap[0]
                if self._due.get(key) != due:
                    heapq.heappop(self._heap)  # removed, or touched again since
                    continue
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._due[key]
                return self._active[key]
            return None

    def _loop(self) -> None:
        try:
            self._beats()
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def _beats(self) -> None:
        while (task := self._next_due()) is not None:
            if task.cancelled.is_set():
                continue
            try:
                self._beat(task)  # a renewed lease calls touched()
            except Exception:  # noqa: BLE001 - one failed beat must not stop the others
                log.exception("heartbeat for task instance %s failed", task.instance)
            with self._cond:
                scheduled = id(task) in self._due
            if not scheduled and not task.cancelled.is_set():
                self.touched(task)  # not renewed (no answer): try again an interval from now
