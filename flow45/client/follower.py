"""What a follower of the ledger keeps besides its last id.

`Seen`: the event stream can bring an event twice (a bridge taking over publishing it), and an event
can come both from the stream and from a read by id: each is handled once.

`Holes`: ledger ids are taken when a transaction writes and seen when it commits, so with several
writers (the bridge's committers, the scheduler) an id can appear after a larger one. A follower
notes the ids skipped over before the newest it has, and looks for each until it appears or is
`wait` seconds old (a rolled back transaction leaves its ids unused for good; through the bridge,
another team's ids never appear): the dashboard's feed and `events --follow` read again from before
the oldest, `notify` keeps its watermark there. Through the bridge the team's event stream brings
late events itself."""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable


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


class Holes:
    """Ids a read in id order skipped over, each looked for again for `wait` seconds."""

    def __init__(self, wait: float = 10.0, limit: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.wait, self.limit, self.clock = wait, limit, clock
        self._missed: dict[int, float] = {}  # id -> when first missed

    def read(self, after: int, ids: Iterable[int]) -> None:
        """A read after `after` returned these ids: those it skipped are holes, those it filled are not."""
        got = sorted(ids)
        now = self.clock()
        for event_id in got:
            self._missed.pop(event_id, None)
        if got and got[-1] > after + 1:
            present = set(got)
            for missing in range(max(after + 1, got[-1] - self.limit), got[-1]):
                if missing not in present:
                    self._missed.setdefault(missing, now)
        if len(self._missed) > self.limit:
            for old in sorted(self._missed)[: len(self._missed) - self.limit]:
                del self._missed[old]

    def reread_after(self, after: int) -> int:
        """Where the next read begins: before the oldest hole still looked for, else `after`."""
        now = self.clock()
        for event_id in [i for i, missed in self._missed.items() if now - missed >= self.wait]:
            del self._missed[event_id]
        return min(min(self._missed, default=after + 1) - 1, after)
