"""Which events a follower has handled already: the event stream can bring one twice (a bridge taking
over publishing), and an event can come both from the stream and from a read by id."""

from __future__ import annotations

import itertools


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
