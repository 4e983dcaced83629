"""What a follower of the ledger keeps besides its last id.

`Seen`: the event stream can bring an event twice (a bridge taking over publishing it), and an event
can come both from the stream and from a read by id: each is handled once.

`Holes`: ledger ids are taken when a transaction writes and seen when it commits, so with several
writers (the bridge's committers, the scheduler) an id can appear after a larger one. A follower
notes the ids skipped over before the newest it has, and looks for each until it appears, or until it
is `wait` seconds old and every write transaction open when it was missed has ended (then it never
will: a rolled back transaction's, or another team's). Where the database cannot say which writers
are open (through the bridge), `wait` alone decides; a writer open past `LONGEST` is not waited for.
The dashboard's feed and `events --follow` read again from before the oldest, `notify` keeps its
watermark there, and the bridge's event stream publishes late events when they come.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, Callable, Iterable


class Seen:
    """The newest `size` ids handed on, oldest first."""

    def __init__(self, size: int = 20_000):
        self.size = size
        self._ids: dict[int, None] = {}

    def add(self, event_id: int) -> bool:
        """True the first time an id comes."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            for old in list(itertools.islice(self._ids, len(self._ids) - self.size)):
                del self._ids[old]
        return True

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._ids


LONGEST = 600.0  # seconds a hole is looked for at most, whatever transaction may still hold it


class Holes:
    """Ids a read in id order skipped over, each looked for again while it may still commit.
    `writers`: the database's dialect (`open_writers`, `oldest_open_writer`), or None: time alone decides."""

    def __init__(self, wait: float = 10.0, limit: int = 10_000, clock: Callable[[], float] = time.monotonic,
                 writers: Any = None):
        self.wait, self.limit, self.clock, self.writers = wait, limit, clock, writers
        self._missed: dict[int, tuple[float, Any]] = {}  # id -> when first missed, and the writers open then
        self._first_missed = math.inf  # no hole was missed before (checked on each read again: keep it cheap)

    def read(self, after: int, ids: Iterable[int]) -> None:
        """A read after `after` returned these ids: those it skipped are holes, those it filled are not."""
        got = sorted(ids)
        self.filled(got)
        if got and got[-1] > after + 1:
            present = set(got)
            skipped = [i for i in range(max(after + 1, got[-1] - self.limit), got[-1])
                       if i not in present and i not in self._missed]
            if skipped:
                # Asked after the read: a writer that held a skipped id then is open now or has ended.
                missed = (self.clock(), self.writers.open_writers() if self.writers else None)
                self._missed.update(dict.fromkeys(skipped, missed))
                self._first_missed = min(self._first_missed, missed[0])
        if len(self._missed) > self.limit:
            for old in sorted(self._missed)[: len(self._missed) - self.limit]:
                del self._missed[old]

    def settle(self, through: int) -> None:
        """Every id up to `through` has come or never will (the event stream says so): none is a hole."""
        if self._missed and min(self._missed) <= through:
            self._missed = {i: at_mark for i, at_mark in self._missed.items() if i > through}
            self._first_missed = min((at for at, _ in self._missed.values()), default=math.inf)

    def clear(self) -> None:
        self._missed.clear()
        self._first_missed = math.inf

    def filled(self, ids: Iterable[int]) -> None:
        """These ids came: no longer holes."""
        for event_id in ids:
            self._missed.pop(event_id, None)

    def missing(self) -> list[int]:
        """The holes still looked for, oldest first (after giving up those that will not come)."""
        self._give_up()
        return sorted(self._missed)

    def reread_after(self, after: int) -> int:
        """Where the next read begins: before the oldest hole still looked for, else `after`."""
        self._give_up()
        return min(min(self._missed, default=after + 1) - 1, after)

    def _give_up(self) -> None:
        """Drop the holes looked for once more since their writers ended, and those of `wait` seconds
        whose writers are unknown or that are LONGEST old; a hole of `wait` seconds whose writers have
        all ended is looked for once more (one may have committed it since the last read)."""
        now = self.clock()
        if not self._missed or now - self._first_missed < self.wait:
            return
        due = {(at, mark) for at, mark in set(self._missed.values()) if mark is _WRITERS_ENDED or now - at >= self.wait}
        if not due:
            return
        gone = {(at, mark) for at, mark in due if mark is None or mark is _WRITERS_ENDED or now - at >= LONGEST}
        waiting = due - gone
        oldest_open = self.writers.oldest_open_writer() if waiting else None
        ended = {(at, mark) for at, mark in waiting if oldest_open >= mark}
        if gone or ended:
            self._missed = {i: (at_mark[0], _WRITERS_ENDED) if at_mark in ended else at_mark
                            for i, at_mark in self._missed.items() if at_mark not in gone}
        self._first_missed = min((at for at, _ in set(self._missed.values())), default=math.inf)


_WRITERS_ENDED = object()  # the mark of a hole to look for once more: every writer open when it was missed has ended
