"""A worker's slots: at most `concurrency` deliveries in hand at once, the others wait their turn.

A delivery holds its slot from the moment it is begun (its claim sent) until it is done with:
its handler has reported and the bridge has answered, or it was refused or requeued. So no more is
claimed than can run, whichever thread sends the claim.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

from bridge.sdk.transport import Delivery


class Slots:
    """`begin(delivery)` is called with a slot held and returns False when it is done with the
    delivery already (the slot is then free again); `release()` frees a slot later."""

    def __init__(self, begin: Callable[[Delivery], bool], stopping: threading.Event):
        self._begin = begin
        self._stopping = stopping  # once set, nothing more is begun
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._size = self._free = 0
        # Arrived while none was free, each with when it arrived (monotonic).
        self._waiting: collections.deque[tuple[Delivery, float]] = collections.deque()

    def open(self, size: int) -> None:
        self._size = self._free = size

    def arrived(self, delivery: Delivery) -> bool:
        """Begin the delivery if a slot is free, else it waits; False if the worker is stopping."""
        with self._lock:
            if self._stopping.is_set():
                return False
            if self._free == 0:
                self._waiting.append((delivery, time.monotonic()))
                return True
            self._free -= 1
        if not self._begin(delivery):
            self.release()
        return True

    def longest_wait(self) -> float:
        """Seconds the delivery first in line has waited for a slot (0 when none waits)."""
        with self._lock:
            return time.monotonic() - self._waiting[0][1] if self._waiting else 0.0

    def release(self) -> None:
        """A slot is free again: the next waiting delivery takes it, or it counts as free."""
        while True:
            with self._lock:
                if not self._waiting or self._stopping.is_set():
                    self._free += 1
                    self._changed.notify_all()
                    return
                delivery, _arrived = self._waiting.popleft()
            if self._begin(delivery):
                return

    def drain(self) -> list[Delivery]:
        """The deliveries still waiting (once stopping: none will be begun), for requeueing."""
        with self._lock:
            waiting, self._waiting = [delivery for delivery, _arrived in self._waiting], collections.deque()
        return waiting

    def wait_all_free(self) -> None:
        with self._lock:
            self._changed.wait_for(lambda: self._free >= self._size)
