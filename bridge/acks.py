"""Inbox acknowledgements: a delivery is acked only once its change committed (or its dead-letter
copy was confirmed), with `multiple` over the longest run of finished deliveries."""

from __future__ import annotations

import bisect


class AckTracker:
    def __init__(self) -> None:
        self._outstanding: list[int] = []  # delivery tags received and not yet acked, ascending
        self._finished: set[int] = set()

    def received(self, tag: int) -> None:
        bisect.insort(self._outstanding, tag)

    def finished(self, tags: list[int]) -> list[tuple[int, bool]]:
        """Mark tags finished; returns the (tag, multiple) acks to send now."""
        self._finished.update(tags)
        acks: list[tuple[int, bool]] = []
        prefix = 0
        while prefix < len(self._outstanding) and self._outstanding[prefix] in self._finished:
            prefix += 1
        if prefix:
            acks.append((self._outstanding[prefix - 1], prefix > 1))
        rest = [t for t in self._outstanding[prefix:] if t in self._finished]
        acks.extend((t, False) for t in rest)
        done = set(self._outstanding[:prefix]) | set(rest)
        self._outstanding = [t for t in self._outstanding if t not in done]
        self._finished -= done
        return acks

    def forget(self, tags: list[int]) -> None:
        """Deliveries given back (nacked): no longer ours to ack."""
        gone = set(tags)
        self._outstanding = [t for t in self._outstanding if t not in gone]
        self._finished -= gone
